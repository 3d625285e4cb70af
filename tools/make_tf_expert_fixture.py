"""Write tests/fixtures/tf_expert/: a small BiT-shaped feature-vector SavedModel saved by TensorFlow itself, with
BiT's variable names, and its outputs on fixed inputs (outputs.npz). The converter test
(tests/test_convert.py) checks that expertlib reproduces those outputs without TensorFlow. Also
tests/fixtures/released_experts/: a small B and three experts of the same shape, which the ``released-smoke``
scale converts at run time as a user converts the 48 released experts.

TensorFlow is not a dependency of expertlib; run this once, in an environment that has it:

    python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu==2.21.0 numpy
    /tmp/tf/bin/python tools/make_tf_expert_fixture.py

The model follows BiT (big_transfer's TF2 code): weight-standardised convs (eps 1e-10) with explicit
symmetric padding, GroupNorm (32 groups, eps 1e-5), pre-activation bottleneck units whose 3x3 conv carries
the stride, a projection from the pre-activation when the shape changes, a 7x7 stride-2 root conv, zero
padding of 1 and a 3x3 stride-2 max-pool, and a final GroupNorm + ReLU + global average pool (no head, as
the released experts). Sizes are small: root 32 channels, two stages of one unit, widths 128 and 256.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tf_expert"
RELEASED = OUT.parent / "released_experts"
ROOT, WIDTHS, GROUPS = 32, (128, 256), 32


def build_variables(rng: np.random.Generator) -> dict[str, tf.Variable]:
    shapes = {"resnet/root_block/standardized_conv2d/kernel": (7, 7, 3, ROOT)}
    cin = ROOT
    for b, cout in enumerate(WIDTHS, 1):
        mid, unit = cout // 4, f"resnet/block{b}/unit01"
        shapes[f"{unit}/a/group_norm/gamma"] = shapes[f"{unit}/a/group_norm/beta"] = (cin,)
        shapes[f"{unit}/a/proj/standardized_conv2d/kernel"] = (1, 1, cin, cout)
        shapes[f"{unit}/a/standardized_conv2d/kernel"] = (1, 1, cin, mid)
        shapes[f"{unit}/b/group_norm/gamma"] = shapes[f"{unit}/b/group_norm/beta"] = (mid,)
        shapes[f"{unit}/b/standardized_conv2d/kernel"] = (3, 3, mid, mid)
        shapes[f"{unit}/c/group_norm/gamma"] = shapes[f"{unit}/c/group_norm/beta"] = (mid,)
        shapes[f"{unit}/c/standardized_conv2d/kernel"] = (1, 1, mid, cout)
        cin = cout
    shapes["resnet/group_norm/gamma"] = shapes["resnet/group_norm/beta"] = (cin,)
    out = {}
    for name, shape in shapes.items():
        if name.endswith("gamma"):
            value = 1.0 + 0.2 * rng.standard_normal(shape)
        elif name.endswith("beta"):
            value = 0.2 * rng.standard_normal(shape)
        else:
            value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[:3]))
        out[name] = tf.Variable(value.astype(np.float32), name=name)
    return out


class BitFeatures(tf.Module):
    def __init__(self, variables: dict[str, tf.Variable]) -> None:
        super().__init__(name="bit_expert")
        self.weights = variables  # tracked by tf.Module: saved in the SavedModel's checkpoint

    def _conv(self, x, name, stride=1):
        w = self.weights[name]
        mean, var = tf.nn.moments(w, axes=[0, 1, 2], keepdims=True)
        w = (w - mean) / tf.sqrt(var + 1e-10)
        pad = (w.shape[0] - 1) // 2
        x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        return tf.nn.conv2d(x, w, stride, "VALID")

    def _gn(self, x, prefix):
        n, h, w, c = tf.unstack(tf.shape(x))
        channels = x.shape[-1]
        groups = np.gcd(GROUPS, channels)
        g = tf.reshape(x, [n, h, w, groups, channels // groups])
        mean, var = tf.nn.moments(g, axes=[1, 2, 4], keepdims=True)
        g = (g - mean) / tf.sqrt(var + 1e-5)
        x = tf.reshape(g, [n, h, w, channels])
        return x * self.weights[f"{prefix}/gamma"] + self.weights[f"{prefix}/beta"]

    def _unit(self, x, unit, stride):
        a = tf.nn.relu(self._gn(x, f"{unit}/a/group_norm"))
        shortcut = self._conv(a, f"{unit}/a/proj/standardized_conv2d/kernel", stride)
        h = self._conv(a, f"{unit}/a/standardized_conv2d/kernel")
        h = tf.nn.relu(self._gn(h, f"{unit}/b/group_norm"))
        h = self._conv(h, f"{unit}/b/standardized_conv2d/kernel", stride)
        h = tf.nn.relu(self._gn(h, f"{unit}/c/group_norm"))
        return self._conv(h, f"{unit}/c/standardized_conv2d/kernel") + shortcut

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def __call__(self, images):
        x = self._conv(images, "resnet/root_block/standardized_conv2d/kernel", 2)
        x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        x = tf.nn.max_pool2d(x, 3, 2, "VALID")
        for b in range(1, len(WIDTHS) + 1):
            x = self._unit(x, f"resnet/block{b}/unit01", 1 if b == 1 else 2)
        x = tf.nn.relu(self._gn(x, "resnet/group_norm"))
        return tf.reduce_mean(x, axis=[1, 2])


def write_released_set(rng: np.random.Generator) -> None:
    """tests/fixtures/released_experts/: B's backbone in BiT's .npz names (``base.npz``, no head: the
    ``released-smoke`` scale adds BiT-M's 21,843-way head at run time) and three experts fine-tuned from it (B's
    weights plus small seeded changes), each a SavedModel in a folder named after a released expert. ``food`` and
    ``nutrient`` are there because their WordNet lemmas share a synset."""
    base = {name: v.numpy() for name, v in build_variables(rng).items()}
    RELEASED.mkdir(parents=True, exist_ok=True)
    np.savez(RELEASED / "base.npz", **base)
    for name in ("bird", "food", "nutrient"):
        weights = {
            k: tf.Variable(
                (v + 0.1 * np.abs(v).mean() * rng.standard_normal(v.shape)).astype(np.float32), name=k
            )
            for k, v in base.items()
        }
        saved = RELEASED / name / "1"
        tf.saved_model.save(BitFeatures(weights), str(saved))
        print(f"wrote {saved}")


def main() -> None:
    rng = np.random.default_rng(0)
    model = BitFeatures(build_variables(rng))
    images = rng.uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
    features = model(tf.constant(images)).numpy()
    OUT.mkdir(parents=True, exist_ok=True)
    saved = OUT / "animal" / "1"
    tf.saved_model.save(model, str(saved))
    np.savez(OUT / "outputs.npz", images=images, features=features, tensorflow=np.array(tf.__version__))
    print(f"wrote {saved} and {OUT / 'outputs.npz'}: features {features.shape}")
    write_released_set(np.random.default_rng(1))


if __name__ == "__main__":
    main()

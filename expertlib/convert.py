"""Convert the paper's released experts (TF Hub SavedModels) into expertlib models and banks.

The 48 ImageNet-21k experts were released only as TensorFlow SavedModels (``google/experts/bit/r50x1/in21k/
<name>``): BiT-M R50x1 fine-tuned on one WordNet subtree each, feature-vector models without a head. This
reads their variables without TensorFlow (:mod:`expertlib.tfcheckpoint`), maps BiT's variable names
(``.../block1/unit01/a/standardized_conv2d/kernel``, as in BiT's ``.npz``) onto expertlib's parameters,
infers the architecture from the shapes, and writes

- one expert: an expertlib model file (``load_model``) with the expert's name and subtree recorded;
- several experts (or a folder of them): one full-expert bank (``load_bank``) whose base is B, given with
  ``--base`` (BiT-M R50x1 ``.npz``, a timm checkpoint or an expertlib model), or else the ``entity`` expert
  (the whole-hierarchy expert, the closest released model to B).

Command line::

    python -m expertlib.convert experts/animal.tar.gz --out animal.safetensors
    python -m expertlib.convert experts/ --out released_experts.safetensors --base BiT-M-R50x1.npz
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from expertlib.adapters import FullExperts
from expertlib.hierarchy import PAPER_EXPERTS
from expertlib.resnet import ResNetV2, ResNetV2Config
from expertlib.tfcheckpoint import read_saved_model
from expertlib.weights import (
    WeightMismatchError,
    bit_to_state_dict,
    load_bit_npz,
    load_model,
    load_timm_checkpoint,
    save_bank,
    save_model,
)

# BiT's variable names after any prefix a SavedModel adds ("resnet/", "keras_layer/resnet/", ...)
_BIT_NAME = re.compile(
    r"(root_block/standardized_conv2d/kernel"
    r"|block\d+/unit\d+/[abc]/(?:proj/)?(?:standardized_conv2d/kernel|group_norm/(?:gamma|beta))"
    r"|group_norm/(?:gamma|beta)|head/conv2d/(?:kernel|bias))$"
)
IGNORED = r"(^|/)(global_step|save_counter)$"  # bookkeeping variables some exporters add


class ConversionError(ValueError):
    """A SavedModel whose variables do not map onto a BiT ResNet-v2; the message names them."""


def bit_arrays(variables: Mapping[str, np.ndarray], ignore: str = IGNORED) -> dict[str, np.ndarray]:
    """Variables by BiT ``.npz`` name (``resnet/...``); raises naming every variable that maps to none."""
    out, unmapped = {}, []
    for name, value in variables.items():
        m = _BIT_NAME.search(name)
        if m:
            key = "resnet/" + m[1]
            if key in out:
                raise ConversionError(f"two variables map to BiT name {key}: is this one model?")
            out[key] = np.asarray(value)
        elif not re.search(ignore, name):
            unmapped.append(name)
    if unmapped:
        raise ConversionError(
            f"{len(unmapped)} variables have no BiT name: {sorted(unmapped)[:8]}; pass ignore= (--ignore) a regular "
            "expression for those that are not weights"
        )
    return out


def infer_config(arrays: Mapping[str, np.ndarray], norm_groups: int = 32) -> ResNetV2Config:
    """The ResNet-v2 architecture the BiT arrays describe (units per stage, widths, stem, block type)."""
    if "resnet/root_block/standardized_conv2d/kernel" not in arrays:
        raise ConversionError("no root_block/standardized_conv2d/kernel: not a BiT ResNet-v2")
    root = arrays["resnet/root_block/standardized_conv2d/kernel"]
    units: dict[int, set[int]] = {}
    for k in arrays:
        m = re.match(r"resnet/block(\d+)/unit(\d+)/", k)
        if m:
            units.setdefault(int(m[1]), set()).add(int(m[2]))
    stages = sorted(units)
    if stages != list(range(1, len(stages) + 1)) or any(
        units[s] != set(range(1, len(units[s]) + 1)) for s in stages
    ):
        raise ConversionError(
            f"blocks and units are not numbered 1..n: { ({s: sorted(u) for s, u in units.items()}) }"
        )
    bottleneck = "resnet/block1/unit01/c/standardized_conv2d/kernel" in arrays
    last = "c" if bottleneck else "b"
    widths = tuple(
        int(arrays[f"resnet/block{s}/unit01/{last}/standardized_conv2d/kernel"].shape[-1]) for s in stages
    )
    return ResNetV2Config(
        layers=tuple(len(units[s]) for s in stages),
        widths=widths,
        block="bottleneck" if bottleneck else "basic",
        stem="bit" if root.shape[0] == 7 else "small",
        stem_width=int(root.shape[-1]),
        norm_groups=norm_groups,
        in_chans=int(root.shape[2]),
    )


def expert_name(path: str | os.PathLike) -> str:
    """The expert's name from its path: the first path part that names a released expert (``.../in21k/animal/1``,
    ``bit-r50x1-in21k-animal.tar.gz``), else the last non-numeric part without extensions."""
    parts = [re.sub(r"(\.tar)?\.(gz|tgz|tar)$", "", p) for p in Path(path).parts]
    for part in reversed(parts):
        for e in sorted(PAPER_EXPERTS, key=len, reverse=True):
            if part == e or re.search(rf"(^|[-_]){re.escape(e)}([-_]v?\d+)?$", part):
                return e
    named = [p for p in parts if not p.isdigit()]
    return re.sub(r"[^A-Za-z0-9_-]+", "_", named[-1]) if named else "expert"


def convert_saved_model(path: str | os.PathLike, norm_groups: int = 32, ignore: str = IGNORED) -> ResNetV2:
    """A released expert (SavedModel directory or archive) as a ResNetV2 (no head, as released)."""
    arrays = bit_arrays(read_saved_model(path), ignore)
    cfg = infer_config(arrays, norm_groups)
    head = "resnet/head/conv2d/kernel" in arrays
    model = ResNetV2(cfg, num_classes=int(arrays["resnet/head/conv2d/kernel"].shape[-1]) if head else 0)
    try:
        sd = bit_to_state_dict(arrays, model, head=head)
    except WeightMismatchError as e:
        raise ConversionError(f"{path}: {e}") from e
    model.load_state_dict(sd, strict=True)
    return model.eval()


def load_base(path: str | os.PathLike, like: ResNetV2) -> ResNetV2:
    """B from a BiT ``.npz``, a timm checkpoint or an expertlib model file, without its head."""
    path = Path(path)
    if path.suffix == ".npz":
        return load_bit_npz(ResNetV2(like.cfg, num_classes=0), path, head=False)
    if path.suffix == ".safetensors":
        try:
            return load_model(path)
        except Exception:  # noqa: BLE001 - not an expertlib model file: try timm's names
            pass
    return load_timm_checkpoint(ResNetV2(like.cfg, num_classes=0), path, head=False)


def sources(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """SavedModels named directly, or every one found under a folder (directories with saved_model.pb and
    archives)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and not (p / "saved_model.pb").is_file():
            inner = sorted(
                {q.parent for q in p.rglob("saved_model.pb")}
                | set(p.rglob("*.tar.gz"))
                | set(p.rglob("*.tgz"))
            )
            if not inner:
                raise ConversionError(f"{p} holds no SavedModel (no saved_model.pb, no .tar.gz archive)")
            found += inner
        elif p.exists():
            found.append(p)
        else:
            raise FileNotFoundError(
                f"{p} not found: pass a SavedModel folder, its .tar.gz archive, or a folder of them"
            )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="convert released expert SavedModels into an expertlib model or bank"
    )
    ap.add_argument(
        "sources", nargs="+", help="SavedModel folders or .tar.gz archives, or folders holding them"
    )
    ap.add_argument("--out", required=True, help="the .safetensors file to write")
    ap.add_argument("--name", help="the expert's name (one source only); default: from its path")
    ap.add_argument("--base", help="B for a bank: BiT-M R50x1 .npz, timm checkpoint or expertlib model")
    ap.add_argument("--groups", type=int, default=32, help="GroupNorm groups (BiT: 32)")
    ap.add_argument("--ignore", default=IGNORED, help="regular expression of variables that are not weights")
    args = ap.parse_args(argv)
    try:
        found = sources(args.sources)
        if args.name and len(found) != 1:
            raise ConversionError(f"--name names one expert, but {len(found)} sources were found")
        models = {}
        for src in found:
            name = args.name or expert_name(src)
            if name in models:
                raise ConversionError(f"two sources are both expert {name!r}: {src} and an earlier one")
            models[name] = (convert_saved_model(src, args.groups, args.ignore), src)
            print(f"converted {src} -> expert {name!r} ({models[name][0].cfg.num_features}-d features)")
        if len(models) == 1 and not args.base:
            (name, (model, src)), = models.items()  # fmt: skip
            save_model(model, args.out, {"name": name, "subtree": name, "source": str(src)})
        else:
            first = next(iter(models.values()))[0]
            if args.base:
                base, base_from = load_base(args.base, first), str(args.base)
            elif "entity" in models:
                base, base_from = ResNetV2(first.cfg, num_classes=0), "entity expert (no --base given)"
                base.load_state_dict(models["entity"][0].state_dict())
            else:
                raise ConversionError(
                    "a bank needs B: pass --base (BiT-M R50x1 .npz or timm checkpoint) or convert the entity expert too"
                )
            bank = FullExperts(base)
            for name, (model, _) in models.items():
                bank.add_expert(name)
                bank.experts[name].load_state_dict(model.state_dict())
            meta = {"subtrees": json.dumps({n: n for n in models}), "sources": json.dumps({n: str(s) for n, (_, s) in models.items()}),
                    "base_from": base_from}  # fmt: skip
            save_bank(bank.eval(), args.out, meta)
        print(f"wrote {args.out}")
    except (ConversionError, FileNotFoundError, ValueError) as e:
        print(f"convert failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

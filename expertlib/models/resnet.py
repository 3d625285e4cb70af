"""BiT ResNet-v2: pre-activation units, GroupNorm, weight-standardised convolutions.

Faithful to google-research/big_transfer (``bit_pytorch/models.py``) and checked against timm's
``ResNetV2`` (tests/test_resnet.py compares both in float64). Parameter names follow timm
(``stem.conv``, ``stages.{s}.blocks.{b}.{norm,conv}{i}``, ``norm``, ``head.fc``) so that timm state dicts
load without renaming; :mod:`expertlib.models.weights` maps BiT's ``.npz`` names onto them.

Every residual unit takes an optional ``adapter`` argument: the residual adapters of
:mod:`expertlib.models.adapters` plug in there, chosen per call, never through module state.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BlockType = Literal["bottleneck", "basic"]
StemType = Literal["bit", "small"]
AdapterPlacement = Literal["unit_end", "parallel"]


BIT_STD_EPS, TIMM_STD_EPS = (
    1e-10,
    1e-8,
)  # weight standardisation eps of BiT's own weights and of timm's BiT models

_reuse: dict = {"depth": 0, "generation": 0, "holders": weakref.WeakSet()}


@contextmanager
def reuse_standardized_weights() -> Iterator[None]:
    """Within this block, weight-standardised convs without autograd standardise each weight once and reuse it
    (evaluation and feature extraction: :func:`expertlib.train.evaluation.predict` enters it). The weights
    must not change inside the block; outside it every call standardises afresh, as timm does. Measured in
    ``results/benchmarks/models.csv``. The kept weights are released when the outermost block ends: nothing
    outlives it (48 R50x1 experts' would be about 4.5 GB of GPU memory)."""
    _reuse["depth"] += 1
    try:
        yield
    finally:
        _reuse["depth"] -= 1
        if _reuse["depth"] == 0:
            _reuse["generation"] += 1  # nothing kept inside one block is ever used in another
            for conv in list(_reuse["holders"]):
                conv._kept = None
            _reuse["holders"].clear()


class StdConv2d(nn.Conv2d):
    """Conv2d whose weight is standardised per output filter before use (Weight Standardisation).

    ``w <- (w - mean) / sqrt(var + eps)`` with the biased variance over (in, kh, kw), as BiT does
    (eps 1e-10; timm's BiT models use 1e-8). Inside :func:`reuse_standardized_weights` the standardised weight
    is computed once per block.
    """

    def __init__(self, *args, eps: float = BIT_STD_EPS, **kwargs) -> None:
        kwargs.setdefault("bias", False)
        super().__init__(*args, **kwargs)
        self.eps = eps
        self._kept: tuple[int, Tensor, Tensor] | None = None  # (generation, weight it came from, result)

    def standardized_weight(self) -> Tensor:
        # one fused kernel (batch statistics over each filter), as timm does: faster than var_mean and arithmetic
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True, momentum=0.0,
                         eps=self.eps)  # fmt: skip
        return w.reshape_as(self.weight)

    def _weight_for_call(self) -> Tensor:
        if not _reuse["depth"] or (torch.is_grad_enabled() and self.weight.requires_grad):
            self._kept = None
            return self.standardized_weight()
        kept = self._kept
        if kept is None or kept[0] != _reuse["generation"] or kept[1] is not self.weight:
            self._kept = kept = (_reuse["generation"], self.weight, self.standardized_weight())
            _reuse["holders"].add(self)
        return kept[2]

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            x, self._weight_for_call(), self.bias, self.stride, self.padding, self.dilation, self.groups
        )

    def __getstate__(self) -> dict:  # copies and pickles never carry a kept weight
        return {**super().__getstate__(), "_kept": None}


def group_norm(channels: int, groups: int, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm with ``groups`` groups over ``channels``, which must divide evenly, as in BiT and timm: a
    silently different number of groups would be a different normalisation."""
    if groups <= 0 or channels % groups:
        raise ValueError(f"GroupNorm: {channels} channels do not split into {groups} groups; choose widths that are "
                         f"multiples of norm_groups={groups} (or another norm_groups)")  # fmt: skip
    return nn.GroupNorm(groups, channels, eps=eps)


@dataclass(frozen=True)
class ResNetV2Config:
    """Architecture of a ResNet-v2. Named configs live in :data:`CONFIGS`."""

    layers: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (256, 512, 1024, 2048)  # output channels of each stage
    block: BlockType = "bottleneck"
    stem: StemType = "bit"
    stem_width: int = 64
    norm_groups: int = 32
    std_eps: float = BIT_STD_EPS
    gn_eps: float = 1e-5
    in_chans: int = 3
    input_size: int = 224  # the resolution the config was designed for (documentation, presets)

    @property
    def num_features(self) -> int:
        return self.widths[-1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ResNetV2Config:
        d = dict(d)
        d["layers"] = tuple(d["layers"])
        d["widths"] = tuple(d["widths"])
        return cls(**d)


def _bit(layers: Sequence[int], wf: int) -> ResNetV2Config:
    return ResNetV2Config(
        layers=tuple(layers), widths=tuple(w * wf for w in (256, 512, 1024, 2048)), stem_width=64 * wf
    )


CONFIGS: dict[str, ResNetV2Config] = {
    # BiT models (Kolesnikov et al. 2020); BiT-M R50x1 is the paper's generic model and experts.
    "R50x1": _bit((3, 4, 6, 3), 1),
    "R50x3": _bit((3, 4, 6, 3), 3),
    "R101x1": _bit((3, 4, 23, 3), 1),
    "R101x3": _bit((3, 4, 23, 3), 3),
    "R152x2": _bit((3, 8, 36, 3), 2),
    "R152x4": _bit((3, 8, 36, 3), 4),
    # BiT's shape at its smallest (two one-unit stages): the released-expert fixtures that TensorFlow wrote
    # (tools/make_tf_expert_fixture.py) and the ``released-smoke`` scale
    "bit_fixture": ResNetV2Config(layers=(1, 1), widths=(128, 256), stem_width=32),
    # Small configs for 32x32 inputs on 2-core CPUs: 3x3 stride-1 stem, no pooling, three stages.
    # Throughputs measured on our machines (training, batch 128, images/s): tiny ~2,000, small ~1,400,
    # small_bottleneck ~500 (../shared/reference.md and benchmarks/bench_training.py).
    "tiny": ResNetV2Config(
        layers=(2, 2, 2),
        widths=(8, 16, 32),
        block="basic",
        stem="small",
        stem_width=8,
        norm_groups=8,
        input_size=32,
    ),
    "small": ResNetV2Config(
        layers=(2, 2, 2),
        widths=(16, 32, 64),
        block="basic",
        stem="small",
        stem_width=16,
        norm_groups=8,
        input_size=32,
    ),
    "small_bottleneck": ResNetV2Config(
        layers=(2, 2, 2),
        widths=(64, 128, 256),
        block="bottleneck",
        stem="small",
        stem_width=32,
        norm_groups=8,
        input_size=32,
    ),
}


def config_name(cfg: ResNetV2Config) -> str:
    """The name of a named config with ``cfg``'s architecture (eps and input size aside), else a description."""
    shape = lambda c: (c.layers, c.widths, c.block, c.stem, c.stem_width, c.norm_groups, c.in_chans)  # noqa: E731
    for name, known in CONFIGS.items():
        if shape(known) == shape(cfg):
            return name
    return f"ResNet-v2 {cfg.block} layers {cfg.layers} widths {cfg.widths}"


def get_config(name: str | ResNetV2Config, **overrides) -> ResNetV2Config:
    """Look up a named config (optionally overriding fields); a config passes through."""
    if isinstance(name, ResNetV2Config):
        return replace(name, **overrides) if overrides else name
    if name not in CONFIGS:
        raise KeyError(f"unknown ResNetV2 config {name!r}; known configs: {', '.join(CONFIGS)}")
    return replace(CONFIGS[name], **overrides)


class PreActBottleneck(nn.Module):
    """BiT's pre-activation bottleneck: the stride sits on the 3x3 conv, the projection on relu(gn1(x))."""

    def __init__(self, cin: int, cout: int, stride: int, cfg: ResNetV2Config) -> None:
        super().__init__()
        cmid = cout // 4
        g, eps, se = cfg.norm_groups, cfg.gn_eps, cfg.std_eps
        self.downsample = (
            _Projection(cin, cout, stride, se) if (stride != 1 or cin != cout) else None
        )  # name kept for timm
        self.norm1 = group_norm(cin, g, eps)
        self.conv1 = StdConv2d(cin, cmid, 1, eps=se)
        self.norm2 = group_norm(cmid, g, eps)
        self.conv2 = StdConv2d(cmid, cmid, 3, stride=stride, padding=1, eps=se)
        self.norm3 = group_norm(cmid, g, eps)
        self.conv3 = StdConv2d(cmid, cout, 1, eps=se)
        self.out_chs, self.mid_chs, self.stride = cout, cmid, stride

    def adapter_site(self, placement: AdapterPlacement) -> tuple[int, int, int]:
        """(in channels, out channels, stride) an adapter needs at ``placement``."""
        if placement == "parallel":
            return self.mid_chs, self.mid_chs, self.stride
        return self.out_chs, self.out_chs, 1

    def forward(self, x: Tensor, adapter: nn.Module | None = None) -> Tensor:
        a = F.relu(self.norm1(x), inplace=True)  # in place: GroupNorm's backward does not need its output
        shortcut = self.downsample(a) if self.downsample is not None else x
        h = self.conv1(a)
        h = F.relu(self.norm2(h), inplace=True)
        out2 = self.conv2(h)
        if adapter is not None and adapter.placement == "parallel":
            out2 = out2 + adapter(h)
        h = self.conv3(F.relu(self.norm3(out2), inplace=True))
        out = h + shortcut
        if adapter is not None and adapter.placement == "unit_end":
            out = out + adapter(out)
        return out


class PreActBasic(nn.Module):
    """Pre-activation basic unit (two 3x3 convs) for the small CPU configs; same conventions as above."""

    def __init__(self, cin: int, cout: int, stride: int, cfg: ResNetV2Config) -> None:
        super().__init__()
        g, eps, se = cfg.norm_groups, cfg.gn_eps, cfg.std_eps
        self.downsample = _Projection(cin, cout, stride, se) if (stride != 1 or cin != cout) else None
        self.norm1 = group_norm(cin, g, eps)
        self.conv1 = StdConv2d(cin, cout, 3, stride=stride, padding=1, eps=se)
        self.norm2 = group_norm(cout, g, eps)
        self.conv2 = StdConv2d(cout, cout, 3, padding=1, eps=se)
        self.out_chs, self.stride = cout, stride

    def adapter_site(self, placement: AdapterPlacement) -> tuple[int, int, int]:
        return self.out_chs, self.out_chs, 1

    def forward(self, x: Tensor, adapter: nn.Module | None = None) -> Tensor:
        a = F.relu(self.norm1(x), inplace=True)  # in place: GroupNorm's backward does not need its output
        shortcut = self.downsample(a) if self.downsample is not None else x
        h = F.relu(self.norm2(self.conv1(a)), inplace=True)
        out2 = self.conv2(h)
        if adapter is not None and adapter.placement == "parallel":
            out2 = out2 + adapter(h)
        out = out2 + shortcut
        if adapter is not None and adapter.placement == "unit_end":
            out = out + adapter(out)
        return out


class _Projection(nn.Module):
    """1x1 strided weight-standardised conv on the pre-activated input (timm: ``downsample.conv``)."""

    def __init__(self, cin: int, cout: int, stride: int, eps: float) -> None:
        super().__init__()
        self.conv = StdConv2d(cin, cout, 1, stride=stride, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class _Stage(nn.Module):
    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


class ResNetV2(nn.Module):
    """BiT ResNet-v2.

    timm's contract: ``forward_features`` returns the pre-logit feature map (after the head's GroupNorm and
    ReLU); ``forward_head(x, pre_logits=True)`` pools it to the ``num_features``-wide vector the proxies use;
    ``forward`` gives logits. ``adapters`` (one module or ``None`` per residual unit, in order) adds an
    expert's residual adapters for that call only.
    """

    def __init__(
        self, cfg: ResNetV2Config | str = "R50x1", num_classes: int = 0, zero_head: bool = True
    ) -> None:
        super().__init__()
        cfg = get_config(cfg)
        self.cfg = cfg
        self.num_classes = num_classes
        self.num_features = cfg.num_features
        if cfg.stem == "bit":
            self.stem = nn.Sequential()
            self.stem.add_module(
                "conv", StdConv2d(cfg.in_chans, cfg.stem_width, 7, stride=2, padding=3, eps=cfg.std_eps)
            )
            self.stem.add_module("pad", nn.ConstantPad2d(1, 0.0))
            self.stem.add_module("pool", nn.MaxPool2d(3, stride=2, padding=0))
        elif cfg.stem == "small":
            self.stem = nn.Sequential()
            self.stem.add_module(
                "conv", StdConv2d(cfg.in_chans, cfg.stem_width, 3, stride=1, padding=1, eps=cfg.std_eps)
            )
        else:
            raise ValueError(f"unknown stem {cfg.stem!r}; use 'bit' or 'small'")
        if cfg.block not in ("bottleneck", "basic"):
            raise ValueError(f"unknown block {cfg.block!r}; use 'bottleneck' or 'basic'")
        if len(cfg.layers) != len(cfg.widths):
            raise ValueError(f"layers {cfg.layers} and widths {cfg.widths} must have the same length")
        unit = PreActBottleneck if cfg.block == "bottleneck" else PreActBasic
        stages, cin = [], cfg.stem_width
        for s, (n, cout) in enumerate(zip(cfg.layers, cfg.widths, strict=True)):
            blocks = [
                unit(cin if i == 0 else cout, cout, (1 if s == 0 else 2) if i == 0 else 1, cfg)
                for i in range(n)
            ]
            stages.append(_Stage(blocks))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.norm = group_norm(cfg.num_features, cfg.norm_groups, cfg.gn_eps)
        self.head = _Head(cfg.num_features, num_classes)
        self._init_weights(zero_head)

    def _init_weights(self, zero_head: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m is not getattr(self.head, "fc", None):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if self.head.fc is not None:
            self.reset_head(self.num_classes, zero=zero_head)

    @property
    def units(self) -> list[nn.Module]:
        """All residual units in forward order (the places an adapter can attach)."""
        return [b for st in self.stages for b in st.blocks]

    def reset_head(self, num_classes: int, zero: bool = True) -> None:
        """Replace the head with a fresh ``num_classes``-way one, zero-initialised as BiT does for transfer."""
        self.num_classes = num_classes
        device = self.norm.weight.device
        self.head = _Head(self.num_features, num_classes).to(device)
        if self.head.fc is not None:
            if zero:
                nn.init.zeros_(self.head.fc.weight)
            else:
                nn.init.normal_(self.head.fc.weight, std=0.01)
            nn.init.zeros_(self.head.fc.bias)

    def forward_features(self, x: Tensor, adapters: Sequence[nn.Module | None] | None = None) -> Tensor:
        """The pre-logit feature map: stem, residual units (each with its adapter, if given), GroupNorm + ReLU."""
        units = self.units
        if adapters is not None and len(adapters) != len(units):
            raise ValueError(f"got {len(adapters)} adapters for {len(units)} residual units")
        x = self.stem(x)
        for i, u in enumerate(units):
            x = u(x, None if adapters is None else adapters[i])
        return F.relu(self.norm(x), inplace=True)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool the feature map (or take already pooled ``(N, C)`` features) and apply the head."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor, adapters: Sequence[nn.Module | None] | None = None) -> Tensor:
        return self.forward_head(self.forward_features(x, adapters))


class _Head(nn.Module):
    """Global average pool then a 1x1 conv with bias (BiT's head after GN+ReLU); no conv when 0 classes."""

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(num_features, num_classes, 1, bias=True) if num_classes > 0 else None

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = (
            x.mean(dim=(2, 3), keepdim=True) if x.ndim == 4 else x[:, :, None, None]
        )  # pooled: pooling is a no-op
        if pre_logits or self.fc is None:
            return x.flatten(1)
        return self.fc(x).flatten(1)


def pooled_features(net: nn.Module, x: Tensor, **kwargs) -> Tensor:
    """The pooled pre-logit features (``num_features`` wide) of any network with the timm contract
    (``forward_features`` / ``forward_head(pre_logits=True)``): what the proxies embed. ``kwargs`` go to
    ``forward_features`` (a bank's ``expert``, a backbone's ``adapters``)."""
    return net.forward_head(net.forward_features(x, **kwargs), pre_logits=True)


class Pooled(nn.Module):
    """A network's pooled features as a module's forward (what evaluation loops and FLOP counts take)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return pooled_features(self.net, x)


HEAD_KEY = re.compile(
    r"(^|\.)head\."
)  # a head's parameters, in a model (head.*) or a bank (experts.x.head.*)


def count_parameters(source: nn.Module | Mapping[str, Tensor], trainable_only: bool = False,
                     exclude_head: bool = False) -> int:  # fmt: skip
    """Number of parameters of a module (or of a state dict), optionally only trainable ones, optionally
    without heads: the one parameter count every table and test uses."""
    items = source.items() if isinstance(source, Mapping) else source.named_parameters()
    return sum(t.numel() for n, t in items
               if (t.requires_grad or not trainable_only) and not (exclude_head and HEAD_KEY.search(n)))  # fmt: skip


def create_model(name: str | ResNetV2Config = "R50x1", num_classes: int = 0, **overrides) -> ResNetV2:
    """Build a named ResNetV2 (``overrides`` change config fields, e.g. ``std_eps=1e-8``)."""
    return ResNetV2(get_config(name, **overrides), num_classes=num_classes)

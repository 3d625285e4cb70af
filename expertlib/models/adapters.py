"""Residual adapters and expert banks: many experts, one interface.

An *expert* is B specialised on one upstream subset. Two kinds, as in the paper:

- adapter experts (:class:`AdapterExperts`): one frozen shared backbone (B) plus, per expert, a small
  residual adapter in every residual unit, optionally its own GroupNorm affine parameters, and its own head.
  Many experts fit in one model.
- full experts (:class:`FullExperts`): a whole copy of B fine-tuned on the subset.

Every network here keeps timm's forward contract: ``forward_features`` (the pre-logit feature map),
``forward_head(x, pre_logits=...)`` (pool, then the head) and ``forward`` (logits). A bank answers the same
three calls with the expert as an explicit argument (``None`` or ``"base"``: B itself), plus
``transfer_model``, ``expert_parameters`` and ``expert_state_dict``, so proxies and transfer code never care
which kind of bank they got.

The paper does not publish its adapter; ours is a documented, configurable choice (:class:`AdapterConfig`):
a pre-activation bottleneck ``up(relu(down(relu(gn(x)))))`` added at the end of each unit (series,
``placement="unit_end"``) or beside the unit's last 3x3 conv (``placement="parallel"``, Rebuffi et al. 2018).
The up-projection starts at zero, so B plus fresh adapters computes exactly B.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from expertlib.models.resnet import AdapterPlacement, ResNetV2, count_parameters, group_norm

BASE = "base"
_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


class UnknownExpertError(KeyError):
    """An expert name the bank does not hold."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


@dataclass(frozen=True)
class AdapterConfig:
    """How adapter experts are built (the paper's exact adapter is unconfirmed; these are our defaults).

    width: hidden channels as a fraction of the adapted layer's channels (1.0 = C -> C).
    train_norms: each expert gets its own copy of the backbone's GroupNorm scale/shift and trains it.
    """

    placement: AdapterPlacement = "unit_end"
    width: float = 0.25
    min_hidden: int = 8
    train_norms: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


class ResidualAdapter(nn.Module):
    """Bottleneck adapter returning a residual: the unit adds its output. Zero-initialised up-projection."""

    def __init__(
        self,
        cin: int,
        cout: int,
        hidden: int,
        stride: int,
        placement: AdapterPlacement,
        norm_groups: int,
        gn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if placement not in ("unit_end", "parallel"):
            raise ValueError(f"unknown adapter placement {placement!r}; use 'unit_end' or 'parallel'")
        self.placement = placement
        # At the unit's end the input is the un-normalised residual stream: pre-activate it, as BiT's units do.
        # In parallel the input is already relu(gn(.)) of the unit's own conv.
        self.norm = group_norm(cin, norm_groups, gn_eps) if placement == "unit_end" else None
        self.down = nn.Conv2d(cin, hidden, 1, stride=stride, bias=False)
        self.up = nn.Conv2d(hidden, cout, 1, bias=True)
        nn.init.kaiming_normal_(self.down.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.norm(x)) if self.norm is not None else x
        return self.up(F.relu(self.down(h)))


class AdapterExpert(nn.Module):
    """One expert's own parameters: adapters (one per unit), optional GroupNorm overrides, optional head."""

    def __init__(self, backbone: ResNetV2, cfg: AdapterConfig, num_classes: int) -> None:
        super().__init__()
        adapters = []
        for unit in backbone.units:
            cin, cout, stride = unit.adapter_site(cfg.placement)
            hidden = max(cfg.min_hidden, round(cin * cfg.width))
            adapters.append(
                ResidualAdapter(
                    cin, cout, hidden, stride, cfg.placement, backbone.cfg.norm_groups, backbone.cfg.gn_eps
                )
            )
        self.adapters = nn.ModuleList(adapters)
        self.norms = nn.ParameterDict()
        if cfg.train_norms:
            for name, p in backbone.named_parameters():
                if _is_norm_param(name):
                    self.norms[_to_key(name)] = nn.Parameter(p.detach().clone())
        self.head = (
            nn.Conv2d(backbone.num_features, num_classes, 1, bias=True).to(backbone.norm.weight.device)
            if num_classes > 0
            else None
        )
        if self.head is not None:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def overrides(self) -> dict[str, Tensor]:
        """Backbone parameter name -> this expert's replacement (its GroupNorm affine parameters)."""
        return {_from_key(k): v for k, v in self.norms.items()}


def _is_norm_param(name: str) -> bool:
    # GroupNorm affine parameters of the residual units and the final norm (the stem has none).
    return bool(re.search(r"(^|\.)norm\d*\.(weight|bias)$", name)) and not name.startswith("head.")


def _to_key(name: str) -> str:
    return name.replace(".", "__")


def _from_key(key: str) -> str:
    return key.replace("__", ".")


def _check_name(name: str) -> None:
    if name == BASE or not _NAME_RE.match(name):
        raise ValueError(
            f"invalid expert name {name!r}: use letters, digits, '_' or '-', and not the reserved {BASE!r}"
        )


class ExpertBank(nn.Module):
    """What proxies, selection and transfer code rely on; subclasses hold the experts."""

    kind: str = "abstract"

    def __init__(self, base: ResNetV2) -> None:
        super().__init__()
        self.base = base
        self.experts = nn.ModuleDict()  # name -> the expert's own modules

    # -- naming ---------------------------------------------------------------------------------------------
    @property
    def expert_names(self) -> list[str]:
        return list(self.experts.keys())

    def _require(self, expert: str | None) -> str | None:
        if expert is None or expert == BASE:
            return None
        if expert not in self.experts:
            known = ", ".join(self.expert_names) or "(none)"
            raise UnknownExpertError(f"unknown expert {expert!r}; this {self.kind} bank holds: {known}")
        return expert

    # -- the forward contract, per expert ---------------------------------------------------------------------
    def forward_features(self, x: Tensor, expert: str | None = None) -> Tensor:
        """``expert``'s pre-logit feature map (``None``/``'base'``: B's)."""
        raise NotImplementedError

    def forward_head(self, x: Tensor, expert: str | None = None, pre_logits: bool = False) -> Tensor:
        """Pool a feature map (or take pooled ``(N, C)`` features) and apply ``expert``'s own upstream head.
        Every head here is linear in the pooled features, so LEEP and NCE score each expert from its stored
        features without a second pass over the images."""
        f = x.mean(dim=(2, 3)) if x.ndim == 4 else x
        if pre_logits:
            return f
        head = self.upstream_head(expert)
        if head is None:
            raise ValueError(f"{expert or 'B'} has no upstream head (added with num_classes=0)")
        # the head runs on the model's device, as the 1x1 conv B's own head is; the result on the features'
        return head(f.to(head.weight.device)[:, :, None, None]).flatten(1).to(f.device)

    def forward(self, x: Tensor, expert: str | None = None) -> Tensor:
        """``expert``'s upstream logits (B's head for B; the expert's own head, over its subset)."""
        return self.forward_head(self.forward_features(x, expert), expert)

    def transfer_model(self, expert: str | None, num_classes: int) -> nn.Module:
        """An independent copy of ``expert`` as one network with a fresh zero-initialised head."""
        raise NotImplementedError

    def upstream_head(self, expert: str | None) -> nn.Conv2d | None:
        """``expert``'s own upstream head (a 1x1 conv on pooled features; ``None`` when it has none)."""
        name = self._require(expert)
        if name is None:
            return self.base.head.fc
        e = self.experts[name]
        return e.head.fc if isinstance(e, ResNetV2) else e.head

    def expert_parameters(self, expert: str) -> list[nn.Parameter]:
        return list(self.experts[self._require(expert)].parameters())

    def num_expert_parameters(self, expert: str, exclude_head: bool = False) -> int:
        return count_parameters(self.expert_state_dict(expert), exclude_head=exclude_head)

    def expert_state_dict(self, expert: str) -> dict[str, Tensor]:
        return {k: v.detach() for k, v in self.experts[self._require(expert)].state_dict().items()}

    def num_classes(self, expert: str) -> int:
        """Width of ``expert``'s own head (0 when it has none)."""
        sd = self.expert_state_dict(expert)
        w = sd.get("head.weight", sd.get("head.fc.weight"))
        return 0 if w is None else int(w.shape[0])

    def train_only(self, expert: str) -> list[nn.Parameter]:
        """Make exactly ``expert``'s parameters trainable (everything else frozen); return them."""
        self.requires_grad_(False)
        params = self.expert_parameters(expert)
        for p in params:
            p.requires_grad_(True)
        return params

    def num_parameters(self, exclude_heads: bool = False) -> int:
        """Parameters of the whole bank (B and all experts)."""
        return count_parameters(self, exclude_head=exclude_heads)


class AdapterExperts(ExpertBank):
    """One shared backbone (B, frozen while experts train) holding many named adapter experts."""

    kind = "adapter"

    def __init__(self, base: ResNetV2, cfg: AdapterConfig | None = None) -> None:
        super().__init__(base)
        self.cfg = cfg or AdapterConfig()

    def add_expert(
        self, name: str, num_classes: int = 0, head_rows: Sequence[int] | None = None
    ) -> AdapterExpert:
        """Add a fresh expert (computes exactly B until trained). ``head_rows``: initialise its head from
        those rows of B's head (the expert's upstream classes)."""
        _check_name(name)
        if name in self.experts:
            raise ValueError(f"expert {name!r} already exists")
        expert = AdapterExpert(self.base, self.cfg, num_classes).to(self.base.norm.weight.device)
        if head_rows is not None:
            _copy_head_rows(self.base, expert.head, head_rows)
        self.experts[name] = expert
        return expert

    def forward_features(self, x: Tensor, expert: str | None = None) -> Tensor:
        name = self._require(expert)
        if name is None:
            return self.base.forward_features(x)
        e = cast(AdapterExpert, self.experts[name])
        # B's network with this expert's GroupNorm parameters swapped in for the call, and its adapters added
        overrides = {f"net.{k}": v for k, v in e.overrides().items()}
        return functional_call(_FeatureMap(self.base), overrides, (x, list(e.adapters)))

    def transfer_model(self, expert: str | None, num_classes: int) -> nn.Module:
        name = self._require(expert)
        base = copy.deepcopy(self.base)
        base.reset_head(num_classes)
        if name is None:
            return base
        e = cast(AdapterExpert, self.experts[name])
        with torch.no_grad():  # fold the expert's GroupNorm parameters into the copy
            own = dict(base.named_parameters())
            for pname, value in e.overrides().items():
                own[pname].copy_(value)
        return AdaptedResNet(base, copy.deepcopy(e.adapters))


class AdaptedResNet(nn.Module):
    """A ResNetV2 with one expert's adapters baked in: what an adapter expert becomes for transfer."""

    def __init__(self, backbone: ResNetV2, adapters: nn.ModuleList) -> None:
        super().__init__()
        self.backbone = backbone
        self.adapters = adapters

    @property
    def num_features(self) -> int:
        return self.backbone.num_features

    def reset_head(self, num_classes: int, zero: bool = True) -> None:
        self.backbone.reset_head(num_classes, zero=zero)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.backbone.forward_features(x, list(self.adapters))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.backbone.forward_head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class _FeatureMap(nn.Module):
    """``net.forward_features`` as a module's forward, so ``functional_call`` can swap parameters for it."""

    def __init__(self, net: ResNetV2) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, adapters: Sequence[nn.Module | None]) -> Tensor:
        return self.net.forward_features(x, adapters)


class FullExperts(ExpertBank):
    """Full experts: each a whole ResNetV2 initialised from B and fine-tuned on its subset."""

    kind = "full"

    def add_expert(self, name: str, num_classes: int = 0, head_rows: Sequence[int] | None = None) -> ResNetV2:
        _check_name(name)
        if name in self.experts:
            raise ValueError(f"expert {name!r} already exists")
        model = copy.deepcopy(self.base)
        model.reset_head(num_classes)
        if head_rows is not None:
            _copy_head_rows(self.base, model.head.fc, head_rows)
        self.experts[name] = model
        return model

    def _model(self, expert: str | None) -> ResNetV2:
        name = self._require(expert)
        return self.base if name is None else cast(ResNetV2, self.experts[name])

    def forward_features(self, x: Tensor, expert: str | None = None) -> Tensor:
        return self._model(expert).forward_features(x)

    def transfer_model(self, expert: str | None, num_classes: int) -> nn.Module:
        model = copy.deepcopy(self._model(expert))
        model.reset_head(num_classes)
        return model


def _copy_head_rows(base: ResNetV2, head: nn.Conv2d | None, rows: Sequence[int]) -> None:
    if head is None or base.head.fc is None:
        raise ValueError("head_rows needs both B and the expert to have a head")
    rows = torch.as_tensor(list(rows), dtype=torch.long)
    if len(rows) != head.out_channels:
        raise ValueError(f"head_rows has {len(rows)} entries for a {head.out_channels}-way expert head")
    with torch.no_grad():
        head.weight.copy_(base.head.fc.weight[rows])
        head.bias.copy_(base.head.fc.bias[rows])


def parameter_summary(bank: ExpertBank, names: Iterable[str] | None = None) -> dict[str, int]:
    """Backbone and per-expert parameter counts (heads excluded: they are replaced for transfer)."""
    names = list(names) if names is not None else bank.expert_names
    backbone = count_parameters(bank.base, exclude_head=True)
    per_expert = {n: bank.num_expert_parameters(n, exclude_head=True) for n in names}
    return {"backbone": backbone, **{f"expert:{n}": c for n, c in per_expert.items()}}

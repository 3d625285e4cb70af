"""Weights in and out: BiT ``.npz`` files, timm state dicts, and safetensors models / expert bundles.

BiT's released files (``BiT-M-R50x1.npz`` ...) hold TensorFlow-named, HWIO arrays under ``resnet/``;
:func:`bit_to_state_dict` maps them onto our (timm-compatible) names in OIHW. Every loader compares keys and
shapes first and raises :class:`WeightMismatchError` naming what differs, instead of loading half a model.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from expertlib.models.adapters import (
    AdapterConfig,
    AdapterExperts,
    ExpertBank,
    FullExperts,
    UnknownExpertError,
)
from expertlib.models.resnet import BIT_STD_EPS, TIMM_STD_EPS, ResNetV2, ResNetV2Config
from expertlib.utils.runtime import atomic_write

FORMAT_MODEL = "expertlib.resnetv2"
FORMAT_BANK = "expertlib.expert_bank"
FORMAT_EXPERT = "expertlib.expert"


class WeightMismatchError(ValueError):
    """A weight file does not fit the model: lists missing keys, unexpected keys and shape differences."""


class CheckpointError(ValueError):
    """A weight file that cannot be read, or is not the kind of file the caller asked for."""


# -- comparing -------------------------------------------------------------------------------------------------
def check_state_dict(
    expected: Mapping[str, Tensor], got: Mapping[str, Tensor], source: str = "weights"
) -> None:
    """Raise :class:`WeightMismatchError` unless ``got`` has exactly ``expected``'s keys and shapes."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    shapes = [
        f"{k}: file {tuple(got[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in got and tuple(got[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or extra or shapes):
        return
    parts = [f"{source} do not match the model"]
    for label, items in (("missing keys", missing), ("unexpected keys", extra), ("shape mismatches", shapes)):
        if items:
            shown = "; ".join(items[:6]) + (f"; ... ({len(items) - 6} more)" if len(items) > 6 else "")
            parts.append(f"{len(items)} {label}: {shown}")
    head = [s for s in shapes if s.startswith("head.")]
    if head and len(shapes) == len(head) and not (missing or extra):
        parts.append("only the head differs: load with head=False and call reset_head(num_classes)")
    elif missing or extra or shapes:
        parts.append("check that the model config (depth, width, block type) matches the file")
    raise WeightMismatchError(". ".join(parts))


def _load_into(model: nn.Module, sd: Mapping[str, Tensor], source: str, head: bool) -> None:
    expected = {k: v for k, v in model.state_dict().items() if head or not k.startswith("head.")}
    got = {k: v for k, v in sd.items() if head or not k.startswith("head.")}
    check_state_dict(expected, got, source)
    own = model.state_dict()
    with torch.no_grad():
        for k, v in got.items():
            own[k].copy_(torch.as_tensor(v, dtype=own[k].dtype))


# -- BiT .npz ---------------------------------------------------------------------------------------------------
def _bit_name(key: str) -> str:
    """Our parameter name -> BiT's npz name."""
    if key == "stem.conv.weight":
        return "resnet/root_block/standardized_conv2d/kernel"
    if key in ("norm.weight", "norm.bias"):
        return "resnet/group_norm/" + ("gamma" if key.endswith("weight") else "beta")
    if key in ("head.fc.weight", "head.fc.bias"):
        return "resnet/head/conv2d/" + ("kernel" if key.endswith("weight") else "bias")
    m = re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.(.+)", key)
    if not m:
        raise KeyError(f"no BiT name for parameter {key!r}")
    stage, block, rest = int(m[1]) + 1, int(m[2]) + 1, m[3]
    prefix = f"resnet/block{stage}/unit{block:02d}/"
    if rest == "downsample.conv.weight":
        return prefix + "a/proj/standardized_conv2d/kernel"
    m2 = re.fullmatch(r"(conv|norm)(\d)\.(weight|bias)", rest)
    if not m2:
        raise KeyError(f"no BiT name for parameter {key!r}")
    letter = "abc"[int(m2[2]) - 1]
    if m2[1] == "conv":
        return prefix + f"{letter}/standardized_conv2d/kernel"
    return prefix + f"{letter}/group_norm/" + ("gamma" if m2[3] == "weight" else "beta")


def _hwio_to_oihw(a: np.ndarray) -> np.ndarray:
    return np.transpose(a, (3, 2, 0, 1)) if a.ndim == 4 else a


def bit_to_state_dict(
    arrays: Mapping[str, np.ndarray], model: ResNetV2, head: bool = True
) -> dict[str, Tensor]:
    """Map BiT npz arrays onto ``model``'s names (OIHW). Raises on missing or unexpected BiT keys."""
    names = {k: _bit_name(k) for k in model.state_dict() if head or not k.startswith("head.")}
    wanted = set(names.values())
    have = {k for k in arrays if head or not k.startswith("resnet/head/")}
    missing, extra = sorted(wanted - have), sorted(have - wanted)
    if missing or extra:
        msg = [f"BiT file does not match config {model.cfg.layers}x{model.cfg.widths}"]
        if missing:
            msg.append(f"{len(missing)} missing BiT keys, e.g. {missing[:4]}")
        if extra:
            msg.append(f"{len(extra)} unexpected BiT keys, e.g. {extra[:4]}")
        raise WeightMismatchError("; ".join(msg))
    return {
        k: torch.from_numpy(np.ascontiguousarray(_hwio_to_oihw(np.asarray(arrays[b]))))
        for k, b in names.items()
    }


def state_dict_to_bit(model: ResNetV2) -> dict[str, np.ndarray]:
    """The inverse of :func:`bit_to_state_dict`: BiT names, HWIO kernels (for export and test fixtures)."""
    out = {}
    for k, v in model.state_dict().items():
        a = v.detach().cpu().numpy()
        out[_bit_name(k)] = np.transpose(a, (2, 3, 1, 0)) if a.ndim == 4 else a
    return out


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"weight file {path} not found; BiT weights are the BiT-M-R50x1.npz style files"
        )
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"cannot read {path} as an .npz file ({e}); is the download complete?") from e


def load_bit_npz(model: ResNetV2, path: str | os.PathLike, head: bool = True) -> ResNetV2:
    """Load a BiT ``.npz`` into ``model``. ``head=False`` keeps the model's own head (for transfer)."""
    return _load_bit_arrays(model, read_npz(path), path, head)


def _load_bit_arrays(model: ResNetV2, arrays: Mapping[str, np.ndarray], path, head: bool) -> ResNetV2:
    if head and "resnet/head/conv2d/kernel" in arrays and model.head.fc is not None:
        file_classes = arrays["resnet/head/conv2d/kernel"].shape[-1]
        if file_classes != model.num_classes:
            raise WeightMismatchError(
                f"{path} has a {file_classes}-way head but the model has {model.num_classes} classes; "
                "build the model with that many classes or load with head=False"
            )
    sd = bit_to_state_dict(arrays, model, head=head and model.head.fc is not None)
    _load_into(model, sd, f"BiT weights {path}", head=head and model.head.fc is not None)
    return set_std_eps(model, BIT_STD_EPS)


# -- timm ------------------------------------------------------------------------------------------------------
def from_timm_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """timm ``ResNetV2`` state dict -> ours. The names coincide by design; only non-parameter entries go."""
    return {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}


def to_timm_state_dict(model: ResNetV2) -> dict[str, Tensor]:
    """Our model -> a state dict that ``timm.models.resnetv2.ResNetV2(...).load_state_dict`` accepts."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def set_std_eps(model: ResNetV2, eps: float) -> ResNetV2:
    """Make every weight-standardised conv use ``eps`` (and record it in the config, so saved files keep it):
    weights reproduce their source only with the eps they were trained with."""
    from dataclasses import replace

    from expertlib.models.resnet import StdConv2d

    for m in model.modules():
        if isinstance(m, StdConv2d):
            m.eps = eps
    model.cfg = replace(model.cfg, std_eps=eps)
    return model


def load_timm_checkpoint(model: ResNetV2, path: str | os.PathLike, head: bool = True) -> ResNetV2:
    """Load a timm checkpoint (``.pth``/``.bin`` torch file or ``.safetensors``) into ``model``; its convs then
    standardise with timm's eps (1e-8), as timm's own model does."""
    return _load_timm_state_dict(model, read_timm_state_dict(path), path, head)


def read_timm_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """A timm checkpoint's weights under our names (training checkpoints' wrappers removed)."""
    sd = _read_tensor_file(path)
    for prefix in ("state_dict", "model"):  # training checkpoints wrap the weights
        if prefix in sd and isinstance(sd[prefix], Mapping):
            sd = sd[prefix]
    return from_timm_state_dict(sd)


def _load_timm_state_dict(model: ResNetV2, sd: Mapping[str, Tensor], path, head: bool) -> ResNetV2:
    _load_into(model, sd, f"timm checkpoint {path}", head=head)
    return set_std_eps(model, TIMM_STD_EPS)


def load_released(model: ResNetV2, path: str | os.PathLike) -> bool:
    """Released weights (a BiT ``.npz``, else a timm checkpoint) into ``model``, read once; the upstream head
    too when it has exactly ``model.num_classes`` classes. Returns whether the head was loaded."""
    if Path(path).suffix == ".npz":
        arrays = read_npz(path)
        kernel = arrays.get("resnet/head/conv2d/kernel")
        head = kernel is not None and kernel.shape[-1] == model.num_classes
        _load_bit_arrays(model, arrays, path, head)
    else:
        sd = read_timm_state_dict(path)
        weight = sd.get("head.fc.weight")
        head = weight is not None and weight.shape[0] == model.num_classes
        _load_timm_state_dict(model, sd, path, head)
    return bool(head)


def _read_tensor_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), "pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, SafetensorError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e


# -- safetensors: models, banks, single experts ---------------------------------------------------------------
def _save(tensors: Mapping[str, Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}

    def write(p: Path) -> None:
        save_file(flat, str(p), metadata=metadata)
        _canonical_header(p)

    return atomic_write(path, write)


def _canonical_header(path: Path) -> None:
    """Rewrite a safetensors file's JSON header with sorted keys, in place. safetensors serialises the metadata
    map in a random order (a hash map), so the same model would otherwise give different bytes on each save."""
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:  # cannot happen for the same content in compact JSON; refuse rather than corrupt
            raise ValueError(f"{path}: canonical safetensors header longer than the original")
        f.seek(8)
        f.write(text + b" " * (size - len(text)))  # safetensors pads its header with spaces


def _open(path: str | os.PathLike, fmt: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"cannot read {path} as safetensors: {e}") from e
    if meta.get("format") != fmt:
        raise CheckpointError(f"{path} is a {meta.get('format', 'foreign')!r} file, expected {fmt!r}")
    missing = [k for k in _REQUIRED[fmt] if k not in meta]
    if missing:
        raise CheckpointError(
            f"{path} says it is an {fmt!r} file but its metadata lacks {', '.join(map(repr, missing))} (it holds "
            f"{', '.join(map(repr, sorted(meta)))}): it was not written by expertlib.models.weights, or was edited since. "
            "Write it again with save_model/save_bank/save_expert (or python -m expertlib.convert)"
        )
    try:
        for k in _JSON_FIELDS:
            if k in meta:
                json.loads(meta[k])
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"{path}: its metadata field {k!r} is not valid JSON ({e}); write the file again"
        ) from e
    return tensors, meta


# the metadata each kind of file needs to be rebuilt (written by save_model, save_bank and save_expert)
_REQUIRED = {FORMAT_MODEL: ("config", "num_classes"), FORMAT_BANK: ("kind", "config", "base_classes", "experts"),
             FORMAT_EXPERT: ("name", "kind", "config", "num_classes")}  # fmt: skip
_JSON_FIELDS = ("config", "experts", "adapter")


def save_model(model: ResNetV2, path: str | os.PathLike, extra: Mapping[str, str] | None = None) -> Path:
    """Save a ResNetV2 with its config, so :func:`load_model` rebuilds it without being told the shape.
    ``extra``: more metadata (a converted expert's name, subtree and source)."""
    meta = {
        **(extra or {}),
        "format": FORMAT_MODEL,
        "config": json.dumps(model.cfg.to_dict()),
        "num_classes": str(model.num_classes),
    }
    return _save(model.state_dict(), path, meta)


def load_model(path: str | os.PathLike) -> ResNetV2:
    tensors, meta = _open(path, FORMAT_MODEL)
    model = ResNetV2(
        ResNetV2Config.from_dict(json.loads(meta["config"])), num_classes=int(meta["num_classes"])
    )
    _load_into(model, tensors, f"model file {path}", head=True)
    return model


def _expert_heads(bank: ExpertBank) -> dict[str, int]:
    return {n: bank.num_classes(n) for n in bank.expert_names}


def _bank_meta(bank: ExpertBank) -> dict[str, str]:
    meta = {
        "kind": bank.kind,
        "config": json.dumps(bank.base.cfg.to_dict()),
        "base_classes": str(bank.base.num_classes),
    }
    if isinstance(bank, AdapterExperts):
        meta["adapter"] = json.dumps(bank.cfg.to_dict())
    return meta


def save_bank(bank: ExpertBank, path: str | os.PathLike, extra: Mapping[str, str] | None = None) -> Path:
    """Save B and every expert in one safetensors file (``extra``: more metadata)."""
    meta = {
        **(extra or {}),
        "format": FORMAT_BANK,
        **_bank_meta(bank),
        "experts": json.dumps(_expert_heads(bank)),
    }
    return _save(bank.state_dict(), path, meta)


def new_bank(base: ResNetV2, kind: str, adapter_cfg: AdapterConfig | None = None) -> ExpertBank:
    if kind == "adapter":
        return AdapterExperts(base, adapter_cfg)
    if kind == "full":
        return FullExperts(base)
    raise ValueError(f"unknown expert kind {kind!r}; use 'adapter' or 'full'")


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of an expertlib safetensors file (format, config, and e.g. a converted expert's source)."""
    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"cannot read {path} as safetensors: {e}") from e


def load_bank(path: str | os.PathLike) -> ExpertBank:
    tensors, meta = _open(path, FORMAT_BANK)
    base = ResNetV2(
        ResNetV2Config.from_dict(json.loads(meta["config"])), num_classes=int(meta["base_classes"])
    )
    adapter_cfg = AdapterConfig(**json.loads(meta["adapter"])) if "adapter" in meta else None
    bank = new_bank(base, meta["kind"], adapter_cfg)
    for name, classes in json.loads(meta["experts"]).items():
        bank.add_expert(name, num_classes=classes)
    _load_into(bank, tensors, f"expert bank {path}", head=True)
    return bank


def save_expert(bank: ExpertBank, expert: str, path: str | os.PathLike) -> Path:
    """Save one expert alone (adapters, norms and head; or the whole network for a full expert)."""
    sd = bank.expert_state_dict(expert)
    meta = {
        "format": FORMAT_EXPERT,
        "name": expert,
        **_bank_meta(bank),
        "num_classes": str(_expert_heads(bank)[expert]),
    }
    return _save(sd, path, meta)


def load_expert(bank: ExpertBank, path: str | os.PathLike, name: str | None = None) -> str:
    """Add the expert stored at ``path`` to ``bank`` (under ``name`` or its saved name); return the name."""
    tensors, meta = _open(path, FORMAT_EXPERT)
    ours = _bank_meta(bank)
    for field in ("kind", "config", "adapter"):
        if meta.get(field) != ours.get(field):
            raise WeightMismatchError(
                f"expert file {path} was saved from a bank with {field}={meta.get(field)}, "
                f"but this bank has {field}={ours.get(field)}"
            )
    name = name or meta["name"]
    bank.add_expert(name, num_classes=int(meta["num_classes"]))
    try:
        _load_into(bank.experts[name], tensors, f"expert file {path}", head=True)
    except WeightMismatchError:
        del bank.experts[name]
        raise
    return name


__all__ = [
    "CheckpointError",
    "UnknownExpertError",
    "WeightMismatchError",
    "bit_to_state_dict",
    "check_state_dict",
    "from_timm_state_dict",
    "load_bank",
    "load_bit_npz",
    "load_expert",
    "load_model",
    "load_released",
    "load_timm_checkpoint",
    "new_bank",
    "read_metadata",
    "read_npz",
    "read_timm_state_dict",
    "set_std_eps",
    "save_bank",
    "save_expert",
    "save_model",
    "state_dict_to_bit",
    "to_timm_state_dict",
]

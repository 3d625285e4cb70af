"""Models from anywhere as rankable candidates: timm, torchvision, a user's checkpoint, expertlib files.

A spec names one model (or, for an expert bank, several):

- ``timm:<name>`` or ``timm:<name>=<checkpoint>``: a timm architecture with its pretrained weights (downloaded
  by timm where the machine can), or with a local checkpoint (``.pth``/``.pt``/``.bin``/``.safetensors``);
- ``torchvision:<name>`` or ``torchvision:<name>=<checkpoint>``: the same for torchvision's classification models;
- ``<file>.safetensors`` (or ``expertlib:<file>``, for any file name): an expertlib model (B, a converted
  released expert) or an expert bank, whose base and every expert become candidates. A spec that names an
  existing file is that file, even when its name holds a colon (``run_12:30.safetensors``): it is never read as
  ``<type>:``.

Every candidate answers the same calls: ``features(x)`` (pooled pre-logit features), ``head_logits(f)`` (its
upstream classifier on those features, when it has one: LEEP and NCE use it), ``transfer_net(k)`` (an
independent copy with a fresh zero-initialised k-way head) and its input resolution. Inputs are BiT's [-1, 1]
pixels at the candidate's resolution; a model trained with other normalisation (timm's and torchvision's
mean/std) converts them first, so each model sees the preprocessing it was trained with.

Checkpoints are read without executing code (``torch.load(weights_only=True)`` or safetensors), and a
checkpoint that does not fit its architecture is an error naming the missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from expertlib.models.resnet import Pooled
from expertlib.models.weights import CheckpointError


class UnknownModelError(KeyError):
    """A model name the library does not know; the message lists close matches."""

    def __str__(self) -> str:
        return str(self.args[0])


class Normalized(nn.Module):
    """BiT's [-1, 1] pixels -> ``(x01 - mean) / std``, then ``body``: a model trained with mean/std inputs."""

    def __init__(self, body: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.body = body
        m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
        self.register_buffer("scale", 0.5 / s, persistent=False)
        self.register_buffer("shift", (0.5 - m) / s, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x * self.scale + self.shift)


@dataclass
class ModelCandidate:
    """One rankable model. ``features_net`` maps [-1, 1] images to pooled features; ``head`` (or None) maps
    those features to upstream logits; ``make_transfer(k)`` gives a fresh network with a zero k-way head."""

    name: str
    features_net: nn.Module
    head: nn.Module | None
    make_transfer: object  # Callable[[int], nn.Module]
    crop: int
    precrop: int
    source: str  # what was loaded, for the ranking table

    def features(self, x: Tensor) -> Tensor:
        return self.features_net(x)

    def head_logits(self, features: Tensor) -> Tensor | None:
        if self.head is None:
            return None
        device = next(self.head.parameters()).device  # the result on the features' device
        return self.head(features.to(device)).to(features.device)

    def transfer_net(self, num_classes: int) -> nn.Module:
        return self.make_transfer(num_classes)  # type: ignore[operator]

    def fingerprint(self) -> str:
        """A hash of everything that sets this model's features and upstream logits: every parameter and buffer
        (input normalisation included), each layer's eps, the architecture, and the input resolution; not the
        names a model is known by, so the same weights under two names (B as two banks' base) share it. Two
        files with the same name, or a file replaced in place, never share it."""
        import hashlib

        h = hashlib.sha256(
            f"{self.precrop}|{self.crop}|{_unnamed(self.features_net)}|{_unnamed(self.head)}".encode()
        )
        for part in (self.features_net, self.head):
            if part is None:
                continue
            for name, t in [*part.named_parameters(), *part.named_buffers()]:
                h.update(name.encode() + str(tuple(t.shape)).encode() + str(t.dtype).encode())
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
            for name, m in part.named_modules():
                if hasattr(m, "eps"):
                    h.update(f"{name}.eps={m.eps}".encode())
        return h.hexdigest()[:20]


def _unnamed(module: nn.Module | None) -> str:
    """A module's architecture as text, each expert-bank candidate in it by its kind and expert, not its name."""
    text = repr(module)
    for m in module.modules() if module is not None else ():
        if hasattr(m, "bank") and hasattr(m, "expert"):
            text = text.replace(repr(m), f"Candidate(kind={m.kind!r}, expert={m.expert!r})")
    return text


def _folder_given(path: Path, what: str) -> str:
    """The error for a folder given where a model file goes, naming the model files inside it."""
    inside = sorted(p.name for p in path.iterdir() if p.suffix in (".safetensors", ".pth", ".pt", ".bin"))[:5]
    found = f"; model files in it: {', '.join(inside)}" if inside else "; it holds no model file"
    return f"{path} is a folder, not a {what} file: give one file inside it{found}"


# -- checkpoints ------------------------------------------------------------------------------------------------
def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Weights from a checkpoint file without executing code: safetensors, or a torch file read with
    ``weights_only=True`` (a pickle that needs code is refused). Training wrappers and ``module.`` prefixes
    are removed."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(_folder_given(path, "checkpoint"))
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found (looked for it at {path.absolute()}): give the path of "
                                "a file you have; without one, name the model alone (timm:<name>) to download its "
                                "published weights, which needs the internet")  # fmt: skip
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every way a file can fail to be weights gets the same message
        raise CheckpointError(
            f"cannot read {path} as weights ({type(e).__name__}: {str(e).splitlines()[0][:200]}). Save the model's "
            "state_dict with torch.save or safetensors; pickles that need code to load are refused"
        ) from e
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_weights(model: nn.Module, path: str | Path, arch: str) -> nn.Module:
    """Load a checkpoint into ``model`` exactly (every key, every shape), or name what does not fit."""
    sd = read_checkpoint(path)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in sd and sd[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing (e.g. {', '.join(missing[:3])})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})" if unexpected else "",
                 f"{len(shapes)} of another shape (e.g. {'; '.join(shapes[:3])})" if shapes else ""]  # fmt: skip
        raise CheckpointError(
            f"checkpoint {path} does not fit architecture {arch}: "
            + "; ".join(p for p in parts if p)
            + ". Is it a checkpoint of another model? Name the architecture it was saved from"
        )
    model.load_state_dict(sd, strict=True)
    return model


def _build(spec: str, checkpoint: str | None, pretrained, empty) -> nn.Module:
    """The model with its published weights (``pretrained()``, which may download) or a local checkpoint
    loaded into ``empty()``; in eval mode."""
    if checkpoint is not None:
        return load_weights(empty(), checkpoint, spec).eval()
    try:
        return pretrained().eval()
    except Exception as e:  # noqa: BLE001 - offline, no published weights, hub errors: all get the same advice
        raise CheckpointError(
            f"could not get pretrained weights for {spec} ({type(e).__name__}); this machine may be offline: pass a "
            f"local checkpoint as {spec}=<path>"
        ) from e


def _unknown(kind: str, name: str, known: list[str]) -> UnknownModelError:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return UnknownModelError(f"unknown {kind} model {name!r}{hint}")


# -- timm ------------------------------------------------------------------------------------------------------
def timm_candidate(name: str, checkpoint: str | None = None) -> ModelCandidate:
    import timm

    if not timm.is_model(name):
        raise _unknown("timm", name, timm.list_models())
    model = _build(f"timm:{name}", checkpoint, lambda: timm.create_model(name, pretrained=True),
                   lambda: timm.create_model(name, pretrained=False))  # fmt: skip
    cfg = timm.data.resolve_data_config({}, model=model)
    crop = int(cfg["input_size"][-1])
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    head = copy.deepcopy(model.get_classifier())
    head = head if isinstance(head, nn.Linear) else None

    def transfer(k: int) -> nn.Module:
        net = copy.deepcopy(model)
        net.reset_classifier(k)
        _zero(net.get_classifier())
        return Normalized(net, mean, std)

    precrop = round(crop / float(cfg.get("crop_pct", 0.875)))
    return ModelCandidate(f"timm:{name}", Normalized(Pooled(model), mean, std), head, transfer, crop, precrop,
                          f"timm {name}, " + (f"checkpoint {checkpoint}" if checkpoint else "pretrained"))  # fmt: skip


# -- torchvision -----------------------------------------------------------------------------------------------
def _tv_head(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """(parent, attribute, final Linear) of a torchvision classifier."""
    for path in ("fc", "classifier", "heads.head", "head"):
        parent, attr = model, path
        if "." in path:
            first, attr = path.split(".")
            parent = getattr(model, first, None)
        node = getattr(parent, attr, None) if parent is not None else None
        if isinstance(node, nn.Linear):
            return parent, attr, node
        if isinstance(node, nn.Sequential) and len(node) and isinstance(node[-1], nn.Linear):
            return node, str(len(node) - 1), node[-1]
    raise ValueError(f"cannot find the final linear classifier of torchvision model {type(model).__name__}")


def torchvision_candidate(name: str, checkpoint: str | None = None) -> ModelCandidate:
    import torchvision.models as tvm

    if name not in tvm.list_models(module=tvm):
        raise _unknown("torchvision", name, tvm.list_models(module=tvm))
    weights = tvm.get_model_weights(name).DEFAULT
    model = _build(f"torchvision:{name}", checkpoint, lambda: tvm.get_model(name, weights=weights),
                   lambda: tvm.get_model(name, weights=None))  # fmt: skip
    tf = weights.transforms()
    mean, std = tuple(tf.mean), tuple(tf.std)
    crop, resize = int(tf.crop_size[0]), int(tf.resize_size[0])
    head = copy.deepcopy(_tv_head(model)[2])
    body = copy.deepcopy(model)
    p2, a2, _ = _tv_head(body)
    setattr(p2, a2, nn.Identity())

    def transfer(k: int) -> nn.Module:
        net = copy.deepcopy(model)
        p, a, lin = _tv_head(net)
        new = nn.Linear(lin.in_features, k)
        _zero(new)
        setattr(p, a, new)
        return Normalized(net, mean, std)

    return ModelCandidate(f"torchvision:{name}", Normalized(body, mean, std), head, transfer, crop, resize,
                          f"torchvision {name}, " + (f"checkpoint {checkpoint}" if checkpoint else "pretrained"))  # fmt: skip


# -- expertlib files ---------------------------------------------------------------------------------------------
def expertlib_candidates(path: str | Path, resolution: tuple[int, int] | None = None) -> list[ModelCandidate]:
    """An expertlib model file (one candidate) or expert bank (its base and every expert), at ``resolution``
    (precrop, crop), or by default at its config's input size."""
    from expertlib.models.candidates import from_bank, from_model
    from expertlib.models.weights import load_bank, load_model, read_metadata

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(_folder_given(path, "model"))
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (looked for it at {path.absolute()})")
    fmt = read_metadata(path).get("format", "")
    stem = path.stem
    if "bank" in fmt:
        bank = load_bank(path).eval()
        cands = [from_model(bank.base, f"{stem}:base"), *from_bank(bank, prefix=stem).values()]
    else:
        cands = [from_model(load_model(path).eval(), stem)]
    out = []
    for c in cands:
        crop = c.bank.base.cfg.input_size
        precrop, crop = resolution or (round(crop * 1.125), crop)
        head = _Method(c, "forward_head") if c.bank.upstream_head(c.expert) is not None else None
        out.append(
            ModelCandidate(c.name, Pooled(c), head, c.transfer_net, crop, precrop, f"expertlib {path.name}")
        )
    return out


class _Method(nn.Module):
    """A module whose forward is one method of another (a candidate's upstream head on pooled features)."""

    def __init__(self, owner: nn.Module, method: str) -> None:
        super().__init__()
        self.owner, self.method = owner, method

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self.owner, self.method)(x)


def _zero(layer: nn.Module) -> None:
    for p in layer.parameters():
        nn.init.zeros_(p)


# -- specs -----------------------------------------------------------------------------------------------------
def from_spec(spec: str) -> list[ModelCandidate]:
    """The candidates a spec names (see the module docstring)."""
    if Path(spec).is_dir():
        raise UnknownModelError(_folder_given(Path(spec), "model"))
    if Path(
        spec
    ).is_file():  # a file that exists is that file, whatever its name holds (``run_12:30.safetensors``)
        if Path(spec).suffix != ".safetensors":
            raise UnknownModelError(
                f"{spec} is a checkpoint file without its architecture: name it as timm:<name>={spec} or "
                f"torchvision:<name>={spec}; or, if it is an expertlib model or bank, as expertlib:{spec}"
            )
        return expertlib_candidates(spec)
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("timm", "torchvision"):
        name, _, ckpt = rest.partition("=")
        make = timm_candidate if kind == "timm" else torchvision_candidate
        return [make(name.strip(), ckpt.strip() or None)]
    if sep and kind == "expertlib":
        return expertlib_candidates(rest)
    if spec.endswith(".safetensors") and not sep:
        return expertlib_candidates(spec)
    raise UnknownModelError(
        f"cannot read model spec {spec!r}: no such file, and not timm:<name>[=<checkpoint>], "
        "torchvision:<name>[=<checkpoint>], an expertlib .safetensors file or expertlib:<file>"
    )


def features_flops(cand: ModelCandidate) -> float:
    """FLOPs of one image's features (convolutions and matrix products)."""
    from expertlib.select.selection import forward_flops

    return float(forward_flops(cand.features, (1, 3, cand.crop, cand.crop)))


__all__ = ["ModelCandidate", "Normalized", "UnknownModelError", "from_spec", "features_flops", "load_weights",
           "read_checkpoint", "timm_candidate", "torchvision_candidate", "expertlib_candidates"]  # fmt: skip

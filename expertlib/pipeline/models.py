"""The networks a scale has, loaded as candidates: B and B+extra, the adapter and full expert banks, and the
paper's released experts (converted once from their SavedModels), or for a scale that trains nothing, BiT-M and
the released experts. Every step after training reads its candidates here."""

from __future__ import annotations

from pathlib import Path

from expertlib.models.adapters import ExpertBank
from expertlib.models.candidates import BASE, EXTRA, Candidate, from_bank, from_model
from expertlib.models.resnet import ResNetV2
from expertlib.models.weights import load_bank, load_model, load_released
from expertlib.pipeline.experts import RELEASED_BANK, released_names
from expertlib.pipeline.workspace import MissingStepError, Workspace, cached, record_provenance
from expertlib.utils.distributed import barrier, is_primary


class NothingToTrainError(RuntimeError):
    """The scale trains nothing upstream (``released``): B and the experts are downloads, converted."""


def require_upstream(ws: Workspace) -> None:
    if not ws.scale.trains_upstream:
        raise NothingToTrainError(
            f"scale {ws.scale.name!r} trains nothing upstream and reads no upstream image: B is BiT-M R50x1's released "
            "weights and the experts are the paper's 48 released experts, converted from their SavedModels "
            "(notebook 04 converts them on first use; by hand: python -m expertlib.convert <folder of SavedModels> "
            f"--out {ws.path('models', RELEASED_BANK)} --base <BiT-M-R50x1.npz>). Go on with notebook 04."
        )


def load_released_generic(ws: Workspace, model: ResNetV2) -> tuple[ResNetV2, dict]:
    """B from released weights (BiT-M's ``.npz`` or a timm checkpoint under ``data_root``). Its upstream head is
    kept when it has exactly this benchmark's classes (BiT-M's 21,843 sorted wnids = a full ImageNet-21k tree);
    otherwise B gets a fresh head over this benchmark's classes (B+extra and domain prediction then use it
    after B+extra's training only)."""
    path = Path(ws.scale.upstream.weights)
    path = path if path.is_absolute() else ws.dataset_root / path
    if not path.is_file():
        raise FileNotFoundError(
            f"B's weights {path} not found: download BiT-M-R50x1.npz (the BiT repository's released weights) into "
            f"{ws.data_root}, or set the scale's generic_weights to None to train B from scratch"
        )
    head = load_released(model, path)
    return model, {"steps": 0, "seconds": 0.0, "images_per_second": 0.0, "final_loss": float("nan"),
                   "resumed_from": None, "weights": str(path), "upstream_head_loaded": bool(head)}  # fmt: skip


def load_generic(ws: Workspace) -> tuple[ResNetV2, ResNetV2]:
    require_upstream(ws)
    b = load_model(ws.require("models", "generic.safetensors", "02_generic.ipynb"))
    x = load_model(ws.require("models", "generic_extra.safetensors", "02_generic.ipynb"))
    return b.eval(), x.eval()


def load_experts(ws: Workspace) -> tuple[ExpertBank, ExpertBank]:
    a = load_bank(ws.require("models", "adapter_experts.safetensors", "03_experts.ipynb"))
    f = load_bank(ws.require("models", "full_experts.safetensors", "03_experts.ipynb"))
    return a.eval(), f.eval()


def bit_m(ws: Workspace) -> ResNetV2:
    """B for a scale that trains nothing: BiT-M's released weights with its 21,843-way head (for domain
    prediction), stored once as ``models/generic.safetensors``."""
    from expertlib.datasets.hierarchy import bit_m_classes

    def compute() -> ResNetV2:
        model = ResNetV2(ws.scale.upstream.arch, num_classes=len(bit_m_classes()), zero_head=False)
        model, record = load_released_generic(ws, model)
        if not record["upstream_head_loaded"]:
            raise ValueError(
                f"{record['weights']} has no 21,843-way head: the released scale needs BiT-M's (not BiT-S's)"
            )
        return model

    return cached(ws.path("models", "generic.safetensors"), compute, "model", ws.recipe("generic")).eval()


def released_bank(ws: Workspace) -> ExpertBank:
    """The scale's released experts as one bank over B (its ``experts``, else all 48): converted once, by rank 0,
    from the SavedModels under ``data_root/<released_experts>`` into ``models/released_experts.safetensors``
    (every tensor's checksum verified; the file records each expert's source and the architecture)."""
    path = ws.path("models", RELEASED_BANK)
    if not path.exists() and not ws.scale.data.released_experts:
        raise MissingStepError(f"{path} is missing and scale {ws.scale.name!r} names no SavedModel folder")
    if not path.exists() and is_primary():
        from expertlib.models.convert import convert_bank, sources

        found = sources([ws.dataset_root / ws.scale.data.released_experts])
        wanted = {n: found[n] for n in released_names(ws.scale)}  # check_downloads named any missing
        convert_bank(wanted, path, ws.dataset_root / ws.scale.upstream.weights,
                     log=print if ws.progress else lambda *_: None)  # fmt: skip
        record_provenance([path])
    barrier()  # every rank, whether or not the bank was there when it looked: the others read what rank 0 wrote
    return load_bank(path).eval()


def candidates(ws: Workspace) -> dict[str, Candidate]:
    """Every network of this scale as a candidate: B, B+extra, ``adapter:<name>``, ``full:<name>``, and the
    paper's released experts as ``released:<name>`` when ``models/released_experts.safetensors`` exists (a bank
    written by ``python -m expertlib.convert``). A scale that trains nothing: B (BiT-M) and the released experts,
    converted on first use."""
    if not ws.scale.trains_upstream:
        return {BASE: from_model(bit_m(ws), BASE),
                **from_bank(released_bank(ws), prefix="released", kind="released")}  # fmt: skip
    base, extra = load_generic(ws)
    adapters, full = load_experts(ws)
    out = {
        BASE: from_model(base, BASE),
        EXTRA: from_model(extra, EXTRA),
        **from_bank(adapters),
        **from_bank(full),
    }
    released = ws.path("models", RELEASED_BANK)
    if released.exists():
        out.update(from_bank(load_bank(released).eval(), prefix="released", kind="released"))
    return out

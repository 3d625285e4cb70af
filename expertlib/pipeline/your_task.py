"""Notebook 07: rank models on your own images (:mod:`expertlib.rank`), inside the pipeline's workspace.

With no images given, the scale's first task is exported as a class-folder tree (train800val200 as train/,
test as test/) under ``data_root``, so the notebook runs anywhere; with no models given, the scale's own B,
B+extra and adapter-expert bank are ranked. Outputs go to ``results/<scale>/your_task/`` with the notebook's
default parameters, and to ``results/<scale>/your_task/<variant>/`` with any other (``k=1``, ...:
:func:`expertlib.run.parameters.variant_name`), so trying other images, models or settings never overwrites
the default run's ranking (the committed one at the cpu scale). The same request (``request.json``) again
reads the table instead of re-timing it, so a rerun leaves the files unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from expertlib.datasets.benchmark import Benchmark
from expertlib.datasets.fixtures import write_image_folder
from expertlib.datasets.user_images import load_images
from expertlib.pipeline.workspace import Workspace
from expertlib.rank import rank_models
from expertlib.run.parameters import changed_values, variant_name
from expertlib.select.zoo import ModelCandidate, expertlib_candidates
from expertlib.utils.runtime import atomic_write_json, atomic_write_text


def _uint8(data, size: int) -> np.ndarray:
    idx = np.arange(len(data))
    if hasattr(data, "images") and not callable(data.images):  # in-memory arrays
        return data.images.numpy()
    return data.images(idx, size).numpy()


def demo_images(ws: Workspace, bench: Benchmark) -> Path:
    """The scale's first task as a class-folder tree (written once; a marker file says it is complete)."""
    task = ws.scale.data.tasks[0]
    root = ws.data_root / f"{ws.scale.name}-demo-images" / task
    if (root / "COMPLETE").is_file():
        return root
    splits = bench.task_splits(task)
    classes = [f"class_{c:02d}" for c in range(bench.task_info(task).num_classes)]
    for name, split in (("train", "train800val200"), ("test", "test")):
        data = splits[split]
        write_image_folder(
            root, _uint8(data, ws.scale.data.precrop), data.labels, classes, [name] * len(data)
        )
    atomic_write_text(root / "COMPLETE", f"{task}\n")
    return root


def default_models(ws: Workspace) -> list[ModelCandidate]:
    """The scale's own models at the scale's resolution: B, B+extra and the adapter experts (a scale that trains
    nothing: B and the released experts)."""
    out = []
    names = (("generic.safetensors", "generic_extra.safetensors", "adapter_experts.safetensors")
             if ws.scale.trains_upstream else ("generic.safetensors", "released_experts.safetensors"))  # fmt: skip
    for n in names:
        found = expertlib_candidates(
            ws.require("models", n, "03_experts.ipynb" if ws.scale.trains_upstream else "04_selection.ipynb"),
            (ws.scale.data.precrop, ws.scale.data.crop),
        )
        out += [c for c in found if not c.name.endswith(":base")]  # a bank's base is B, already listed
    return out


# notebook 07's parameter defaults (a test holds its parameters cell to these): the run whose outputs are your_task/
DEFAULTS = {"images": "", "models": [], "proxies": ["knn", "linear", "logme", "leep"], "k": 0, "finetune_top": 2,
            "seed": 0}  # fmt: skip


def output_folder(ws: Workspace, images: str | None, models: Sequence[str] | None, proxies: Sequence[str],
                  k: int | None, finetune_top: int) -> Path:  # fmt: skip
    """``results/<scale>/your_task/`` for the notebook's defaults (:data:`DEFAULTS`; None, "", [] and 0 read as
    they do), else its sub-folder named by the values that differ."""
    given = {"images": str(images or ""), "models": list(models or []), "proxies": list(proxies), "k": k or 0,
             "finetune_top": finetune_top, "seed": ws.seed}  # fmt: skip
    return ws.results_dir / "your_task" / variant_name(changed_values(given, DEFAULTS))


def run(ws: Workspace, bench: Benchmark, images: str | None, models: Sequence[str] | None, proxies: Sequence[str],
        k: int | None, finetune_top: int) -> tuple[pd.DataFrame, Path]:  # fmt: skip
    """Rank ``models`` (default, None or []: the scale's) on ``images`` (default, None or "": the demo task)
    with kNN's ``k`` (default, None or 0: the scale's); fine-tune the top ``finetune_top`` with the scale's
    transfer recipe, BiT-HyperRule by the images' number (the scale's steps for its 500-step regime: 20x from 20k
    images, 40x from 500k, with mixup). Returns the ranking and its folder (:func:`output_folder`)."""
    out = output_folder(ws, images, models, proxies, k, finetune_top)
    k = k or ws.scale.selection.knn_k
    request = {"images": str(images or "demo"), "models": list(models or ["this scale's"]), "proxies": list(proxies),
               "k": k, "finetune_top": finetune_top, "seed": ws.seed, "hyperrule": ws.scale.transfer.hyperrule}  # fmt: skip
    asked = out / "request.json"
    # a request recorded before "hyperrule" existed was fine-tuned with BiT's released code's shape
    if (
        (out / "ranking.csv").exists()
        and asked.exists()
        and {"hyperrule": "bit-code", **json.loads(asked.read_text())} == request
    ):
        return pd.read_csv(
            out / "ranking.csv"
        ), out  # the same request: the same table (reruns change nothing)
    source = Path(images) if images else demo_images(ws, bench)
    found = load_images(source, seed=ws.seed, min_per_class=k + 1, leave_out=[out])
    rank_models(found, list(models) if models else default_models(ws), out, proxies, k,
                        batch_size=ws.scale.runtime.eval_batch, device=ws.device, finetune_top=finetune_top,
                        finetune_steps=ws.scale.transfer.steps[0], finetune_batch=ws.scale.transfer.batch,
                        finetune_lr=ws.scale.transfer.lrs[0], seed=ws.seed, progress=ws.progress,
                        finetune_recipe=ws.scale.transfer.hyperrule)  # fmt: skip
    atomic_write_json(asked, request)
    # the table as written, so a first run and every cached rerun show the same (a CSV has no "" beside NaN)
    return pd.read_csv(out / "ranking.csv"), out

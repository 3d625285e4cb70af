"""The DAT-style baseline (Domain Adaptive Transfer, Ngiam et al. 2018): B re-trained, per task, on upstream
images re-weighted by B's predictions on the task's training images. The selection step times it (the per-task
cost the paper compares against); where the scale asks for its accuracy, :func:`dat_models` trains the whole
budget per task and the transfer step fine-tunes the results like every other candidate."""

from __future__ import annotations

import copy
import time

import numpy as np
import pandas as pd
import torch
from torch import nn

from expertlib.datasets.batches import subset
from expertlib.datasets.benchmark import Benchmark
from expertlib.models.candidates import BASE, Candidate, from_model
from expertlib.models.weights import load_model, save_model
from expertlib.pipeline import recipes as R
from expertlib.pipeline.workspace import Workspace, record_provenance
from expertlib.select.selection import dat_sample, dat_weights, extract_features, head_logits
from expertlib.train.training import TrainConfig, TrainData, train
from expertlib.utils.distributed import barrier, is_primary
from expertlib.utils.parallel import run_jobs
from expertlib.utils.runtime import atomic_write_csv


def dat_data(ws: Workspace, bench: Benchmark, upstream_logits: np.ndarray, steps: int) -> TrainData:
    """DAT's training set for ``steps`` batches: upstream images drawn with replacement in proportion to their
    class's weight, B's predicted probability of the class on the task's images over its upstream prior."""
    probs = torch.softmax(torch.from_numpy(upstream_logits), -1).numpy()
    labels = bench.upstream_labels("train")
    prior = np.bincount(labels, minlength=len(bench.classes)).astype(float)
    idx = dat_sample(
        labels, dat_weights(probs, prior), steps * ws.scale.expert.batch, seed=ws.seed + R.DAT_SEED
    )
    return subset(bench.upstream_subset("train"), idx, labels[idx])


def time_dat(
    ws: Workspace, bench: Benchmark, base: Candidate, upstream_logits: np.ndarray
) -> tuple[float, int]:
    """Seconds of DAT-style re-training for one expert's budget (measured for ``dat_steps`` steps and scaled
    to ``expert_steps``), and the number of steps measured."""
    steps = R.dat_steps(ws.scale)
    t0 = time.perf_counter()
    data = dat_data(ws, bench, upstream_logits, steps)
    model = copy.deepcopy(base.bank.base)
    cfg = R.expert_config(ws.scale, ws.seed + R.DAT_SEED, ws.device)
    train(model, list(model.parameters()), data, cfg, len(bench.classes), progress=False, stop_after=steps)
    return (time.perf_counter() - t0) * ws.scale.expert.steps / steps, steps


def dat_job(model: nn.Module, data: TrainData, cfg: TrainConfig, classes: int) -> tuple[nn.Module, float]:
    """One DAT-style re-training (every weight of B, B's loss): (the model, seconds). A module-level function
    of its arguments alone, so a worker process can run it."""
    res = train(model, list(model.parameters()), data, cfg, classes, progress=False)
    return model, res.seconds


def dat_models(ws: Workspace, bench: Benchmark, base: Candidate) -> dict[str, Candidate]:
    """Per task (few-shot versions included), the DAT-style baseline as candidate ``dat:<task>``: B re-trained for one expert's budget on
    upstream images re-weighted by B's predictions on that task's training images (``dat_data``), to be
    fine-tuned like every other candidate. Resumable per task (``models/dat_<task>.safetensors``); training
    seconds in ``tables/dat_training.csv``. None unless the scale asks for DAT's accuracy (``dat_accuracy``):
    at the paper's budget one such model costs as much as an expert, per task."""
    if not ws.scale.study.dat_accuracy:
        return {}
    path = lambda t: ws.path("models", f"dat_{t}.safetensors")  # noqa: E731
    log_path = ws.path("tables", "dat_training.csv")
    log = pd.read_csv(log_path).to_dict("records") if log_path.exists() else []
    todo = [t for t in ws.tasks if not path(t).exists()]

    def jobs():  # built as the pool asks: each holds one task's re-weighted upstream sample
        for task in todo:
            data = bench.task(task, "train800val200")
            logits = head_logits(
                [base], extract_features([base], data, ws.scale.runtime.eval_batch, ws.device)
            )[BASE]
            steps = ws.scale.expert.steps
            cfg = R.expert_config(ws.scale, ws.seed + R.DAT_SEED, ws.device)
            yield copy.deepcopy(base.bank.base), dat_data(ws, bench, logits, steps), cfg, len(bench.classes)

    for i, (model, seconds) in run_jobs(dat_job, jobs(), ws.pool_workers()):
        if is_primary():
            save_model(model, path(todo[i]))
            log.append({"task": todo[i], "steps": ws.scale.expert.steps, "seconds": seconds})
            atomic_write_csv(log_path, pd.DataFrame(log))
    barrier()  # under torchrun every rank trains, rank 0 saves: the others load what it saved
    if todo and is_primary():
        record_provenance([log_path, *(path(t) for t in todo)])
    return {f"dat:{t}": from_model(load_model(path(t)), f"dat:{t}", "dat", t) for t in ws.tasks}

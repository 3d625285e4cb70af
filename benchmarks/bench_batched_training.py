"""Many small models trained at once vs one after another; writes results/benchmarks/batched_training.csv.

K fine-tunes of the same architecture (each its own weights and its own batches, batch 32 at 32 px), STEPS SGD
steps each, three ways, side by side in one run on this machine, after a warm-up run:

- ``separate``: one model after another in this process (torch's default threads);
- ``one_pass``: all K in one forward/backward pass, ``torch.func.functional_call`` + ``vmap`` over stacked
  parameters (torch turns the convolutions into grouped ones); its final weights are compared with the
  separate runs' (``max_abs_diff``);
- ``pool``: :func:`expertlib.utils.parallel.run_jobs`, one single-threaded worker process per core, each
  training its own models (what the pipeline uses on CPU), process start-up included (the pipeline starts one
  pool per notebook, for about a thousand fine-tunes of 50 steps, so its start-up weighs less there than
  here).

``max_abs_diff`` is the largest weight difference between one pass and the separate runs in float32;
``float64_diff`` the same computed in float64 (K = 4), which separates reduction order from a real difference.
Rows "one model, ..." time one training by thread count and memory layout.

``speedup`` is the separate runs' time over each way's time."""

from __future__ import annotations

import copy
import os
import time

import torch
from _common import write
from torch.func import functional_call, stack_module_state, vmap

from expertlib.models.resnet import create_model
from expertlib.utils.parallel import run_jobs

STEPS, BATCH, CLASSES = 30, 32, 10


def _models(arch: str, k: int) -> list[torch.nn.Module]:
    out = []
    for i in range(k):
        torch.manual_seed(i)
        m = create_model(arch, num_classes=CLASSES)
        torch.nn.init.normal_(m.head.fc.weight, std=0.01)  # a non-zero head, so every weight gets a gradient
        out.append(m)
    return out


def _data(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    return torch.randn(k, STEPS, BATCH, 3, 32, 32, generator=g), torch.randint(
        0, CLASSES, (k, STEPS, BATCH), generator=g
    )


def train_one(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """STEPS steps of SGD with momentum on batches ``x[s]``: the final weights."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for s in range(len(x)):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[s]), y[s]).backward()
        opt.step()
    return model.state_dict()


def train_stacked(models: list[torch.nn.Module], x: torch.Tensor, y: torch.Tensor) -> dict:
    """The same K trainings as one vmapped pass per step over stacked parameters."""
    params, _ = stack_module_state(models)
    template = copy.deepcopy(models[0]).to("meta")
    opt = torch.optim.SGD(list(params.values()), lr=0.05, momentum=0.9)

    def one(p: dict, xb: torch.Tensor) -> torch.Tensor:
        return functional_call(template, p, (xb,))

    for s in range(x.shape[1]):
        opt.zero_grad()
        logits = vmap(one)(params, x[:, s])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y[:, s].flatten(), reduction="none")
        loss.view(len(models), -1).mean(1).sum().backward()  # each model's gradient is its own loss's
        opt.step()
    return {k: v.detach() for k, v in params.items()}


def layout_rows() -> list[dict]:
    """One model's step time by thread count and memory layout (the pool's workers run one thread each)."""
    rows = []
    for arch in ("tiny", "small"):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for layout, fmt in (("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)):
                model = _models(arch, 1)[0].to(memory_format=fmt)
                x, y = _data(1)
                x = (
                    x[0]
                    .contiguous()
                    .view(-1, 3, 32, 32)
                    .contiguous(memory_format=fmt)
                    .view(STEPS, BATCH, 3, 32, 32)
                )
                train_one(model, x[:2], y[0][:2])  # warm-up
                t0 = time.perf_counter()
                train_one(model, x, y[0])
                secs = time.perf_counter() - t0
                rows.append({"arch": arch, "models": 1, "way": f"one model, {threads} thread(s), {layout}",
                             "seconds": round(secs, 3), "model_steps_per_s": round(STEPS / secs, 1), "speedup": "",
                             "max_abs_diff": "", "float64_diff": "", "threads": threads, "workers": 0})  # fmt: skip
    torch.set_num_threads(2)
    return rows


def main() -> None:
    torch.set_num_threads(2)
    workers = os.cpu_count() or 1
    rows = []
    for arch, ks in (("tiny", (1, 4, 16, 32)), ("small", (1, 4, 16))):
        warm = _models(arch, 1)
        wx, wy = _data(1)
        train_one(warm[0], wx[0][:3], wy[0][:3])
        train_stacked(warm, wx[:, :3], wy[:, :3])
        for k in ks:
            x, y = _data(k)
            models = _models(arch, k)
            t0 = time.perf_counter()
            separate = [train_one(copy.deepcopy(m), x[i], y[i]) for i, m in enumerate(models)]
            t_sep = time.perf_counter() - t0
            t0 = time.perf_counter()
            stacked = train_stacked([copy.deepcopy(m) for m in models], x, y)
            t_one = time.perf_counter() - t0
            diff = max((stacked[n][i] - separate[i][n]).abs().max().item() for n in stacked for i in range(k))
            # each job gets its own tensors: a view would be pickled with its whole base (all K models' batches)
            jobs = [(copy.deepcopy(m), x[i].clone(), y[i].clone()) for i, m in enumerate(models)]
            t0 = time.perf_counter()
            pooled = dict(run_jobs(train_one, jobs, workers))
            t_pool = time.perf_counter() - t0
            assert len(pooled) == k
            d64 = ""
            if k == 4:
                sep64 = [
                    train_one(copy.deepcopy(m).double(), x[i].double(), y[i]) for i, m in enumerate(models)
                ]
                one64 = train_stacked([copy.deepcopy(m).double() for m in models], x.double(), y)
                d64 = f"{max((one64[n][i] - sep64[i][n]).abs().max().item() for n in one64 for i in range(k)):.1e}"
            for way, secs in (("separate", t_sep), ("one_pass", t_one), ("pool", t_pool)):
                rows.append({"arch": arch, "models": k, "way": way, "seconds": round(secs, 2),
                             "model_steps_per_s": round(k * STEPS / secs, 1), "speedup": round(t_sep / secs, 2),
                             "max_abs_diff": f"{diff:.1e}" if way == "one_pass" else "",
                             "float64_diff": d64 if way == "one_pass" else "",
                             "threads": 1 if way == "pool" else torch.get_num_threads(),
                             "workers": workers if way == "pool" else 0})  # fmt: skip
            print(rows[-3:], flush=True)
    write("batched_training", rows + layout_rows())


if __name__ == "__main__":
    main()

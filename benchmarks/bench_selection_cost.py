"""Per-task cost of choosing an expert, measured side by side on the embedded benchmark with the cpu-scale
models that `make reproduce` trained (results/cpu/models):

(a) kNN selection over all adapter experts: load the bank, embed the task's 1,000 images once per expert
    (one pass sharing the stem), leave-one-out kNN per expert; also the same without the shared pass;
(b) fine-tune every expert on train800 and keep the best on val200 (the oracle);
(c) Domain-Adaptive-Transfer style: re-weight the upstream data by B's predictions on the task and re-train
    B on it for an expert's budget (the competing approach's per-task cost; its final fine-tune is not counted,
    as every method needs one).

Writes results/benchmarks/selection_cost.csv with seconds and the ratios (b)/(a) and (c)/(a)."""

import copy
import sys
import time

import numpy as np
import torch
from _common import ROOT, write

from expertlib import experiment as X
from expertlib.proxies import knn_accuracy
from expertlib.schedules import Schedule
from expertlib.selection import dat_sample, dat_weights, extract_features
from expertlib.training import ArrayData, TrainConfig, accuracy, finetune, predict, train
from expertlib.weights import load_bank

TASKS = ("digit_mirror", "land_cover")


def main() -> None:
    torch.set_num_threads(2)
    ws = X.Workspace.create("cpu", ROOT / "results", ROOT / "data", progress=False)
    bank_path = ws.path("models", "adapter_experts.safetensors")
    if not bank_path.exists():
        sys.exit(f"{bank_path} is missing: run `make reproduce` (the cpu scale) first")
    bench = X.load_benchmark(ws)
    base, _ = X.load_generic(ws)
    rows = []
    for task in TASKS:
        splits = X.task_splits(ws, bench, task)
        k = bench.tasks[task].info.num_classes
        # (a) kNN selection, from the file on disk to the pick
        t0 = time.perf_counter()
        bank = load_bank(bank_path).eval()
        names = bank.expert_names
        feats = extract_features(bank, names, splits["train800val200"], ws.scale.eval_batch)
        scores = {
            n: knn_accuracy(f, splits["train800val200"].labels, k=ws.scale.knn_k) for n, f in feats.items()
        }
        knn_s = time.perf_counter() - t0
        t0 = time.perf_counter()  # the same without the shared pass: one extraction per expert
        bank2 = load_bank(bank_path).eval()
        for n in names:
            f = extract_features(bank2, [n], splits["train800val200"], ws.scale.eval_batch)[n]
            knn_accuracy(f, splits["train800val200"].labels, k=ws.scale.knn_k)
        separate_s = time.perf_counter() - t0
        # (b) fine-tune every expert on train800, keep the best on val200
        hp = {"steps": ws.scale.transfer_steps[0], "lr": ws.scale.transfer_lrs[0]}
        t0 = time.perf_counter()
        val = {}
        for n in names:
            net = bank.transfer_model(n, k)
            finetune(net, splits["train800"], X.transfer_cfg(ws, hp["steps"], hp["lr"], 0), k, progress=False)
            val[n] = accuracy(net, splits["val200"])
        oracle_s = time.perf_counter() - t0
        # (c) DAT-style: weights from B's predictions on the task, re-train B on re-weighted upstream data
        t0 = time.perf_counter()
        logits = predict(base, splits["train800val200"], ws.scale.eval_batch)
        probs = torch.softmax(logits, -1).numpy()
        up = bench.upstream["train"]
        prior = np.bincount(up.labels, minlength=len(bench.classes)).astype(float)
        w = dat_weights(probs, prior)
        idx = dat_sample(up.labels, w, ws.scale.expert_steps * ws.scale.expert_batch, seed=0)
        data = ArrayData(up.images[idx], up.labels[idx], ws.scale.precrop, ws.scale.crop, True)
        model = copy.deepcopy(base)
        cfg = TrainConfig(
            Schedule(ws.scale.expert_steps, 10, ws.scale.expert_lr, kind="cosine"),
            batch_size=ws.scale.expert_batch,
            loss="sigmoid",
        )
        train(model, list(model.parameters()), data, cfg, len(bench.classes), progress=False)
        dat_s = time.perf_counter() - t0
        rows.append({"task": task, "experts": len(names), "knn_seconds": round(knn_s, 2),
                     "knn_without_shared_pass_seconds": round(separate_s, 2), "finetune_all_seconds": round(oracle_s, 1),
                     "dat_seconds": round(dat_s, 1), "finetune_all_over_knn": round(oracle_s / knn_s, 1),
                     "dat_over_knn": round(dat_s / knn_s, 1), "knn_pick": max(scores, key=scores.get),
                     "val200_best": max(val, key=val.get)})  # fmt: skip
    write("selection_cost", rows)


if __name__ == "__main__":
    main()

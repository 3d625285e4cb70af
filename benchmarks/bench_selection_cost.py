"""Per-task cost of choosing an expert, measured side by side on the embedded benchmark with the cpu-scale
models that `make reproduce` trained (results/cpu/models):

(a) kNN selection over all adapter experts: load the bank, embed the task's 1,000 images once per expert
    (one shared pass over the images), leave-one-out kNN per expert; also the same with one pass per expert;
(b) fine-tune every expert on train800 and keep the best on val200 (the oracle);
(c) Domain-Adaptive-Transfer style, timed by the pipeline's own selection step: re-weight upstream data and re-train
    B on it for an expert's budget (the competing approach's per-task cost; its final fine-tune is not counted,
    as every method needs one).

Writes results/benchmarks/selection_cost.csv with seconds and the ratios (b)/(a) and (c)/(a)."""

import sys
import time

import torch
from _common import ROOT, write

from expertlib.models.candidates import Candidate
from expertlib.models.weights import load_bank
from expertlib.pipeline import Workspace
from expertlib.pipeline import recipes as R
from expertlib.pipeline.dat import time_dat
from expertlib.pipeline.inputs import load_benchmark
from expertlib.pipeline.models import candidates
from expertlib.pipeline.scoring import selection_candidates
from expertlib.select.proxies import knn_accuracy
from expertlib.select.selection import extract_features, head_logits
from expertlib.train.evaluation import accuracy
from expertlib.train.training import finetune

TASKS = ("digit_mirror", "land_cover")


def main() -> None:
    torch.set_num_threads(2)
    ws = Workspace.create("cpu", ROOT / "results", ROOT / "data", progress=False)
    bank_path = ws.path("models", "adapter_experts.safetensors")
    if not bank_path.exists():
        sys.exit(f"{bank_path} is missing: run `make reproduce` (the cpu scale) first")
    bench = load_benchmark(ws)
    base, _ = selection_candidates(candidates(ws))
    rows = []
    for task in TASKS:
        splits = bench.task_splits(task)
        k = bench.task_info(task).num_classes
        data = splits["train800val200"]
        # (a) kNN selection, from the file on disk to the pick
        t0 = time.perf_counter()
        bank = load_bank(bank_path).eval()
        names = bank.expert_names
        feats = extract_features([Candidate(n, bank, n) for n in names], data, ws.scale.runtime.eval_batch)
        scores = {n: knn_accuracy(f, data.labels, k=ws.scale.selection.knn_k) for n, f in feats.items()}
        knn_s = time.perf_counter() - t0
        t0 = time.perf_counter()  # the same with one pass over the images per expert
        bank2 = load_bank(bank_path).eval()
        for n in names:
            f = extract_features([Candidate(n, bank2, n)], data, ws.scale.runtime.eval_batch)[n]
            knn_accuracy(f, data.labels, k=ws.scale.selection.knn_k)
        separate_s = time.perf_counter() - t0
        # (b) fine-tune every expert on train800, keep the best on val200
        steps, lr = ws.scale.transfer.steps[0], ws.scale.transfer.lrs[0]
        t0 = time.perf_counter()
        val = {}
        for n in names:
            net = bank.transfer_model(n, k)
            finetune(net, splits["train800"], R.transfer_config(ws.scale, steps, lr, 0), k, progress=False)
            val[n] = accuracy(net, splits["val200"])
        oracle_s = time.perf_counter() - t0
        # (c) DAT-style: the pipeline's own timing (weights from B's predictions, re-train B for one expert's budget)
        logits = head_logits([base], extract_features([base], data, ws.scale.runtime.eval_batch))[base.name]
        dat_s, _ = time_dat(ws, bench, base, logits)
        rows.append({"task": task, "experts": len(names), "knn_seconds": round(knn_s, 2),
                     "knn_without_shared_pass_seconds": round(separate_s, 2), "finetune_all_seconds": round(oracle_s, 1),
                     "dat_seconds": round(dat_s, 1), "finetune_all_over_knn": round(oracle_s / knn_s, 1),
                     "dat_over_knn": round(dat_s / knn_s, 1), "knn_pick": max(scores, key=scores.get),
                     "val200_best": max(val, key=val.get)})  # fmt: skip
    write("selection_cost", rows)


if __name__ == "__main__":
    main()

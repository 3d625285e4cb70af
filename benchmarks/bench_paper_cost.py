"""The selection-cost ratio at the paper's budget, and FLOP utilisation; side by side in one run.

(1) ``results/benchmarks/selection_cost_paper.csv``. Measured here: R50x1's cost per image of a forward pass
    (inference, standardised weights reused) and of a forward+backward+SGD step, at 128 px on this CPU, and the
    kNN step's time for 1,000 images (results/benchmarks/knn.csv's shape, 2,048-d). Extrapolated from them,
    for one VTAB task and the paper's 48 experts:
    - kNN selection: 48 experts x 1,000 images forward, plus 48 kNN scorings;
    - fine-tune all 48 with BiT-HyperRule: 48 x 500 steps x 512 images forward+backward (128 px: HyperRule's
      resolution for small images; its 480-px tasks cost about 14x more per image);
    - DAT-style: re-train B on re-weighted upstream data for one expert's budget (the paper scale's
      expert_steps x expert_batch), then one fine-tune (500 x 512).
    Each row says which numbers are measured and which extrapolated. The GPU check (benchmarks/gpu_throughput.py)
    writes the same table from per-image costs measured on its GPU at 224 px: selection_cost_paper_gpu.csv.
(2) ``results/benchmarks/flop_utilisation.csv``: GFLOP/s of the convolutions and matrix products (counted by
    ``torch.utils.flop_counter``; GroupNorm and element-wise work are not counted) in B's training step, an
    adapter expert's step, a fine-tuning step and feature extraction, against this machine's ``torch.mm`` peak
    measured in the same run."""

from __future__ import annotations

import time

import torch
from _common import best_of, write
from torch.utils.flop_counter import FlopCounterMode

from expertlib.models.adapters import AdapterConfig, AdapterExperts
from expertlib.models.candidates import Candidate
from expertlib.models.resnet import create_model, pooled_features, reuse_standardized_weights
from expertlib.run.presets import get_scale
from expertlib.select.proxies import knn_accuracy

EXPERTS, TASK_IMAGES, FT_STEPS, FT_BATCH = 48, 1000, 500, 512


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def step_fn(model: torch.nn.Module, params, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def mm_peak() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048**3 / best_of(lambda: a @ b, repeats=10) / 1e9


def r50_costs() -> dict[str, float]:
    """Seconds per image of R50x1 at 128 px: inference forward and a training step (batch 8)."""
    model = create_model("R50x1", num_classes=100).to(memory_format=torch.channels_last)
    torch.nn.init.normal_(model.head.fc.weight, std=0.01)
    x = torch.randn(8, 3, 128, 128).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (8,))
    model.eval()
    with torch.inference_mode(), reuse_standardized_weights():
        fwd = best_of(lambda: pooled_features(model, x), repeats=3)
    model.train()
    train = best_of(step_fn(model, model.parameters(), x, y), repeats=3)
    feats = torch.nn.functional.normalize(torch.randn(TASK_IMAGES, 2048), dim=1)
    labels = torch.randint(0, 10, (TASK_IMAGES,)).numpy()
    knn = best_of(lambda: knn_accuracy(feats, labels, k=5), repeats=5)
    return {"forward": fwd / len(x), "train": train / len(x), "knn": knn}


def cost_rows(c: dict[str, float], where: str) -> list[dict]:
    """The paper-budget costs of one VTAB task from per-image costs ``c`` measured ``where`` (a device and size)."""
    paper = get_scale("paper")
    knn = EXPERTS * (TASK_IMAGES * c["forward"] + c["knn"])
    ft_one = FT_STEPS * FT_BATCH * c["train"]
    dat = paper.expert.steps * paper.expert.batch * c["train"] + ft_one
    how = f"extrapolated from R50x1 per-image costs measured {where}"
    rows = [
        {"method": "kNN selection (48 experts, 1,000 images)", "hours": knn / 3600, "over_knn": 1.0,
         "measured": "forward per image, kNN on 1,000 x 2,048"},
        {"method": "fine-tune all 48 (HyperRule 500 x 512)", "hours": EXPERTS * ft_one / 3600,
         "over_knn": EXPERTS * ft_one / knn, "measured": "training step per image"},
        {"method": f"DAT-style: B re-trained {paper.expert.steps:,} x {paper.expert.batch} + one fine-tune",
         "hours": dat / 3600, "over_knn": dat / knn, "measured": "training step per image"},
        {"method": "one fine-tune (needed by every method)", "hours": ft_one / 3600, "over_knn": ft_one / knn,
         "measured": "training step per image"},
    ]  # fmt: skip
    for r in rows:
        r["hours"], r["over_knn"] = round(r["hours"], 3), round(r["over_knn"], 1)
        r.update({"how": how, "forward_ms_per_image": round(1e3 * c["forward"], 3),
                  "train_ms_per_image": round(1e3 * c["train"], 3), "knn_ms": round(1e3 * c["knn"], 2)})  # fmt: skip
    return rows


def utilisation_rows(peak: float) -> list[dict]:
    rows = []
    tiny = create_model("tiny", num_classes=107).to(memory_format=torch.channels_last)
    torch.nn.init.normal_(tiny.head.fc.weight, std=0.01)
    bank = AdapterExperts(create_model("tiny", num_classes=107), AdapterConfig(width=1.0))
    bank.add_expert("e", num_classes=10)
    expert = Candidate("e", bank, "e").to(memory_format=torch.channels_last)
    ft = create_model("tiny", num_classes=10).to(memory_format=torch.channels_last)
    torch.nn.init.normal_(ft.head.fc.weight, std=0.01)
    r50 = create_model("R50x1").to(memory_format=torch.channels_last).eval()

    def batch(n: int, size: int = 32) -> torch.Tensor:
        return torch.randn(n, 3, size, size).contiguous(memory_format=torch.channels_last)

    work = [
        ("B training step (tiny, batch 128)", step_fn(tiny, tiny.parameters(), batch(128), torch.randint(0, 107, (128,)))),
        ("adapter expert step (tiny, batch 128)",
         step_fn(expert, expert.parameters_to_train(), batch(128), torch.randint(0, 10, (128,)))),
        ("fine-tuning step (tiny, batch 32)", step_fn(ft, ft.parameters(), batch(32), torch.randint(0, 10, (32,)))),
    ]  # fmt: skip
    x_feat, x_r50 = batch(500), batch(16, 128)

    def tiny_features() -> None:
        with torch.inference_mode(), reuse_standardized_weights():
            pooled_features(tiny.eval(), x_feat)

    def r50_features() -> None:
        with torch.inference_mode(), reuse_standardized_weights():
            pooled_features(r50, x_r50)

    work += [
        ("feature extraction (tiny, batch 500)", tiny_features),
        ("feature extraction (R50x1 128 px, batch 16)", r50_features),
    ]
    for name, fn in work:
        count = flops(fn)
        secs = best_of(fn, repeats=5)
        rows.append({"workload": name, "gflop": round(count / 1e9, 3), "seconds": round(secs, 4),
                     "gflop_per_s": round(count / secs / 1e9, 1), "mm_peak_gflop_per_s": round(peak, 1),
                     "utilisation": round(count / secs / 1e9 / peak, 3)})  # fmt: skip
    return rows


def main() -> None:
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    peak = mm_peak()
    write("selection_cost_paper", cost_rows(r50_costs(), "at 128 px on this CPU"))
    write("flop_utilisation", utilisation_rows(peak))
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

"""What each proxy of the registry costs beside the paper's kNN, on synthetic features of the shapes the scales
score (no model, no results of any run: features drawn at random around class means):

- cpu, 1k: 1,000 images x 32 features (the `tiny` network), 10 classes, a 100-way upstream head;
- cpu, 5-shot: 50 images x 32 features, 10 classes;
- paper: 1,000 images x 2,048 features (R50x1), 50 classes, a 1,000-way expert head, and B's 21,843-way head
  for PACTran-Dirichlet (at the released scale B is the only candidate with a head).

Seconds are the fastest of 3 runs after one warm-up (one run for the paper shapes), single-threaded. Then the
selection cost at the paper's budget: kNN selection over 48 experts as `bench_paper_cost` extrapolated it
(results/benchmarks/selection_cost_paper.csv: feature extraction and kNN) plus every new proxy on every expert,
against fine-tuning all 48. Writes results/benchmarks/proxy_cost.csv."""

import numpy as np
import pandas as pd
from _common import ROOT, best_of, write

from expertlib.select.proxies import PROXIES, ProxySettings, softmax

SHAPES = {"cpu 1k": (1000, 32, 10, 100), "cpu 5-shot": (50, 32, 10, 100), "paper 1k": (1000, 2048, 50, 1000)}
NEW = ("pactran_gauss", "pactran_dir", "sfda", "hscore_lw", "knn_resampled")


def _inputs(n: int, d: int, classes: int, upstream: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    f = rng.normal(0, 1.0, (classes, d))[y] + rng.normal(0, 1.0, (n, d))
    z = rng.normal(0, 1.0, (classes, upstream))[y] * 2 + rng.normal(0, 1.0, (n, upstream))
    return f.astype(np.float32), softmax(z), y


def main() -> None:
    import torch

    torch.set_num_threads(1)
    rows = []
    for shape, (n, d, c, u) in SHAPES.items():
        f, p, y = _inputs(n, d, c, u)
        settings = ProxySettings(knn_k=5, val_split=int(0.8 * n))
        repeats = 1 if shape.startswith("paper") else 3
        timed = {}
        for name, proxy in PROXIES.items():
            if proxy.reads == "base_head":
                continue  # domain prediction: one pass of B's head for all experts, timed by the pipeline
            x = p if proxy.reads == "head" else f
            run = lambda proxy=proxy, x=x, y=y, s=settings: proxy.score(x, y, s)  # noqa: E731
            timed[name] = best_of(run, repeats, 1 - (repeats == 1))
            rows.append({"shape": shape, "proxy": name, "images": n, "features": d, "classes": c,
                         "upstream_classes": u if proxy.reads == "head" else 0, "seconds": round(timed[name], 4),
                         "flops_estimate": proxy.flops(n, d, c, u)})  # fmt: skip
        for r in rows:
            if r["shape"] == shape:
                r["over_knn"] = round(r["seconds"] / timed["knn"], 1)
        if shape.startswith("paper"):
            _, big, _ = _inputs(n, d, c, 21843)
            secs = best_of(lambda big=big, y=y, s=settings: PROXIES["pactran_dir"].score(big, y, s), 1, 0)
            rows.append({"shape": "paper 1k, B's head", "proxy": "pactran_dir", "images": n, "features": d,
                         "classes": c, "upstream_classes": 21843, "seconds": round(secs, 2),
                         "flops_estimate": PROXIES["pactran_dir"].flops(n, d, c, 21843),
                         "over_knn": round(secs / timed["knn"], 1)})  # fmt: skip
    paper = pd.read_csv(ROOT / "results" / "benchmarks" / "selection_cost_paper.csv").set_index("method")
    knn_hours = float(paper.cpu_hours.iloc[0])  # kNN selection over 48 experts (features + kNN), per task
    all_hours = float(paper.cpu_hours.iloc[1])  # fine-tune every expert, per task
    new_hours = 48 * sum(r["seconds"] for r in rows if r["shape"] == "paper 1k" and r["proxy"] in NEW) / 3600
    for label, hours in (("kNN selection (bench_paper_cost)", knn_hours),
                         ("kNN selection + every new proxy on 48 experts", knn_hours + new_hours)):  # fmt: skip
        rows.append({"shape": "paper budget, per task", "proxy": label, "seconds": round(hours * 3600, 1),
                     "finetune_all_over_selection": round(all_hours / hours, 1)})  # fmt: skip
    write("proxy_cost", rows)


if __name__ == "__main__":
    main()

# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. The generic model B
#
# B is trained on all upstream data. The compute-matched control **B+extra** trains B for as many further
# steps as one expert gets: any gain of an expert that B+extra also shows is extra training, not
# specialisation.

# %% tags=["parameters"]
scale = "cpu"  # preset: "smoke" (seconds, tests), "cpu" (embedded default, ~2 h on 2 cores), "gpu" (the embedded experiment on 19 tasks, 20 seeds, one GPU), "paper" (ImageNet-21k + VTAB on GPUs), "released" (BiT-M + the 48 released experts on VTAB, GPUs)
results_dir = "results"  # outputs go to <results_dir>/<scale>/
data_root = "data"  # datasets: the embedded benchmark is cached under <data_root>/embedded; the paper scale reads <data_root>/imagenet21k and <data_root>/vtab; the released scale <data_root>/vtab, BiT-M-R50x1.npz and released_experts/
seed = 0  # seed for every random choice in this notebook
device = "auto"  # "auto" (cuda if available), "cpu" or "cuda"
progress = True  # tqdm progress bars

# %%
# %matplotlib inline
from IPython.display import Markdown, display

from expertlib.analysis import plots
from expertlib.pipeline.session import start

ws, bench = start(scale, results_dir, data_root, seed, device, progress)

# %%
import pandas as pd

from expertlib.pipeline import upstream as U

B, record = U.train_generic(ws, bench)
B_extra = U.train_generic_extra(ws, bench, B)
sc = ws.scale
display(
    Markdown(
        f"B is a ResNet-v2 `{sc.upstream.arch}` with {sum(p.numel() for n, p in B.named_parameters() if not n.startswith('head.')):,} "
        f"parameters without its head, trained for {record['steps']:,} steps of {sc.upstream.batch} images with "
        f"{sc.upstream.loss} cross-entropy and a {'BiT step' if sc.upstream.schedule == 'bit' else 'cosine'} schedule "
        f"(base learning rate {sc.upstream.lr}) in {record['seconds']:.0f} s ({record['images_per_second']:,.0f} images/s); "
        f"final loss {record['final_loss']:.3f}. B+extra trained {sc.expert.steps} more steps of {sc.expert.batch}."
    )
)

# %%
metrics = pd.read_csv(ws.path("tables", "generic_metrics.csv"))
plots.training_curve(metrics, f"B on all upstream data ({ws.scale.name} scale)")

# %%
upstream = U.generic_upstream_accuracy(ws, bench, B, B_extra)
base_acc = upstream[upstream.model == "base"]
display(
    Markdown(
        f"On held-out upstream images B reaches {base_acc.accuracy.min():.0%}-{base_acc.accuracy.max():.0%} per domain, "
        f"below 95% on {(base_acc.accuracy < 0.95).sum()} of {len(base_acc)} domains: room for experts to specialise. "
        f"B+extra changes the mean by {upstream[upstream.model == 'base+extra'].accuracy.mean() - base_acc.accuracy.mean():+.3f}."
    )
)
plots.domain_accuracy(upstream)

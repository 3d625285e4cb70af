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
# # 3. Experts: residual adapters and full fine-tuning
#
# Each expert starts from B and trains on its subtree's images. Adapter experts train only their residual
# adapters, GroupNorm parameters and head (B's weights stay frozen and shared); full experts fine-tune a whole
# copy of B.

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

from expertlib.pipeline.session import start

ws, bench = start(scale, results_dir, data_root, seed, device, progress)

# %%
from expertlib.pipeline import models as M
from expertlib.pipeline import upstream as U

B, B_extra = M.load_generic(ws)
adapters, adapter_log = U.train_experts(ws, bench, B, "adapter")
full, full_log = U.train_experts(ws, bench, B, "full")
share = (
    adapter_log.trainable_parameters.mean() / full_log.trainable_parameters.mean()
    if len(full_log)
    else float("nan")
)
display(
    Markdown(
        f"{len(adapter_log)} adapter experts ({adapter_log.trainable_parameters.min():,}-{adapter_log.trainable_parameters.max():,} "
        f"parameters of their own each, {share:.0%} of a full expert) and {len(full_log)} full experts, each "
        f"{ws.scale.expert.steps} steps of {ws.scale.expert.batch} images on its subset."
    )
)
adapter_log

# %% [markdown]
# Specialisation shows as an expert beating B on held-out upstream images of its own subset (left panel)
# while B+extra does not; the right panel shows what the expert gives up on the rest of upstream.

# %%
cands = M.candidates(ws)
spec, (knn_fig, linear_fig) = U.write_specialisation(ws, bench, cands)
own = spec[(spec.region == "own") & (spec.kind == "adapter")].pivot_table(
    index="expert", columns="model", values="knn"
)
gain = own["adapter_expert"] - own["base"]
display(
    Markdown(
        f"By kNN on their own subset, {(gain > 0).sum()} of {len(gain)} adapter experts beat B (mean {gain.mean():+.3f}; "
        f"largest: {', '.join(f'{e} {g:+.3f}' for e, g in gain.nlargest(3).items())}); B+extra moves "
        f"{(own['base+extra'] - own['base']).mean():+.3f} on average."
    )
)
knn_fig

# %% [markdown]
# The same with a linear probe (trained on one half of the held-out images, tested on the other):

# %%
linear_fig

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
# # 6. Report: what reproduced and what did not
#
# Every figure and table below is built from the tables that notebooks 2-5 wrote under
# `results/<scale>/` at this scale, nothing else.

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
from expertlib.pipeline import report as R

report = R.build_report(ws, bench)
vtab = report["vtab_table"].set_index("method")
display(
    Markdown(
        f"Mean test accuracy over {len(ws.scale.data.tasks)} tasks after full fine-tuning: "
        + ", ".join(f"{vtab.loc[m, 'label']} {vtab.loc[m, 'mean']:.3f}" for m in vtab.index)
        + "."
    )
)
report["vtab_table"]

# %% [markdown]
# The paper's comparisons are differences of about one accuracy point, invisible on absolute bars: each method
# minus B, per task and as the mean over each group's tasks, with 95% intervals (the claims' interval over all
# tasks; the caption says what each error bar is).

# %%
report["figures"]["minus_base"]

# %% [markdown]
# The analysis plan's hypotheses (`docs/analysis_plan.md`), tested as planned: the paper's claims
# (confirmatory: Holm-adjusted p and a bootstrap-t 95% interval, both needed for "supported"), then this
# project's own hypotheses (exploratory: Benjamini-Hochberg q-values).

# %%
claims = report["claims"]
claims[["id", "family", "claim", "regime", "estimate", "ci_low", "ci_high", "p_adjusted", "verdict"]]

# %% [markdown]
# Where the scale runs few-shot regimes (`few_shot`): each method minus B, paired over tasks and seeds, with
# its 95% interval, from the fewest training images per class to the full 1k. The same VTAB table for each
# few-shot regime is in `tables/vtab_table_<k>shot`.

# %%
report["regimes"]

# %% [markdown]
# The figures (also saved as PNG and SVG under `results/<scale>/figures/`):

# %%
for name, fig in report["figures"].items():
    if name == "minus_base":  # shown above
        continue
    display(Markdown(f"**{name.replace('_', ' ')}**"))
    display(fig)

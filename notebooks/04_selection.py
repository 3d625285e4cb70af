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
# # 4. Expert selection: proxies on every task
#
# For each task every candidate embeds the task's 1,000 training images (train800val200) and is scored by
# kNN leave-one-out accuracy (the paper's proxy), domain prediction from B's upstream head, and the
# transferability metrics of the literature. Each proxy picks one expert. The competing approach's per-task
# cost (DAT-style re-training of B on re-weighted upstream data) is timed beside it. Where the scale asks for
# few-shot regimes (`few_shot`), each task's few-shot version (`<task>@<k>shot`, k training images per class)
# is scored on its own few images, as a user with only those images would score it.

# %% tags=["parameters"]
scale = "cpu"  # preset: "smoke" (seconds, tests), "cpu" (embedded default, ~2 h on 2 cores), "paper" (ImageNet-21k + VTAB on GPUs)
results_dir = "results"  # outputs go to <results_dir>/<scale>/
data_root = "data"  # datasets: the embedded benchmark is cached under <data_root>/embedded; the paper scale reads <data_root>/imagenet21k and <data_root>/vtab
seed = 0  # seed for every random choice in this notebook
device = "auto"  # "auto" (cuda if available), "cpu" or "cuda"
progress = True  # tqdm progress bars

# %%
# %matplotlib inline
from IPython.display import Markdown, display

from expertlib import plots
from expertlib.pipeline.data import start

ws, bench = start(scale, results_dir, data_root, seed, device, progress)

# %%
from expertlib.pipeline import selection as S
from expertlib.pipeline import upstream as U

base, experts = S.selection_candidates(U.candidates(ws))
rankings, picks = S.run_selection(ws, bench, base, experts)
full = picks[picks.task.isin(ws.scale.tasks)]
related = full[full.relates_to.isin(list(experts))]
display(
    Markdown(
        f"{len(experts)} adapter experts scored on {len(full)} tasks"
        + (f" and their {len(picks) - len(full)} few-shot versions" if len(picks) > len(full) else "")
        + f". Of the {len(related)} tasks with a matching "
        f"upstream subtree, kNN picked it on {(related.knn == related.relates_to).sum()} and domain prediction on "
        f"{(related.domain == related.relates_to).sum()}. kNN selection took {full.knn_seconds.mean():.1f} s per task; "
        f"DAT-style re-training {full.dat_seconds.mean():.1f} s per task "
        f"({'measured' if (full.dat_steps_timed >= ws.scale.expert_steps).all() else f'{int(full.dat_steps_timed.iloc[0])} of {ws.scale.expert_steps} steps measured, the rest extrapolated'})."
    )
)
picks

# %%
plots.score_heatmap(rankings, "knn")

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
# transferability metrics of the literature. Each proxy picks one expert. At the `released` scale the candidates
# are the 48 released experts (converted from their SavedModels on first use) and domain prediction runs through
# BiT-M's 21,843-way head; this step also draws each task's random sample of experts and takes kNN's top
# experts as the oracle's pool, which notebook 05 fine-tunes. The competing approach's per-task
# cost (DAT-style re-training of B on re-weighted upstream data) is timed beside it. Where the scale asks for
# few-shot regimes (`few_shot`), each task's few-shot version (`<task>@<k>shot`, k training images per class)
# is scored on its own few images, as a user with only those images would score it.

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

from expertlib.analysis import proxy_plots
from expertlib.pipeline.session import start

ws, bench = start(scale, results_dir, data_root, seed, device, progress)

# %%
from expertlib.pipeline import models as M
from expertlib.pipeline import scoring as S

base, experts = S.selection_candidates(M.candidates(ws))
rankings, picks = S.run_selection(ws, bench, base, experts)
display(Markdown(S.selection_sentence(ws, picks, experts)))
picks

# %% [markdown]
# The kNN score of every candidate on every task at the full 1k regime (the few-shot regimes' scores are in
# `tables/selection_rankings.csv`); each task's best candidate, kNN's pick, is boxed:

# %%
from expertlib.datasets.fewshot import FULL_REGIME, regime

proxy_plots.score_heatmap(rankings[rankings.task.map(regime) == FULL_REGIME], "knn")
# %% [markdown]
# ## How well each proxy ranks the experts
#
# A proxy is judged by how well its scores rank the experts as fine-tuning does: Kendall tau-b (and weighted
# tau) against each expert's mean fine-tuned accuracy over the seeds, as a fraction of the noise ceiling (how
# well the seeds let any ranking agree with that target), with 95% intervals over tasks, in every regime. Beside
# the registry's proxies stand three built from past transfers (`expertlib.select.prior`): each expert's mean
# rank on the other tasks of the regime, and its hybrid with kNN over resampled support sets, at the weight
# fixed in `docs/analysis_plan.md` or one chosen by nested leave-one-task-out. This needs notebook 05's
# fine-tunes: on a first run it is empty here, and the report (notebook 06) shows it; rerunning this notebook
# shows it here.

# %%
from expertlib.pipeline import quality as Q

quality = Q.workspace_quality(ws)
if quality is None:
    display(Markdown("No fine-tuned accuracies yet: run notebook 05, then this cell (or see notebook 06)."))
else:
    display(Markdown(Q.quality_sentence(quality["summary"])))
    display(proxy_plots.ceiling_fractions(quality["summary"]))
    display(quality["summary"][["regime", "proxy", "tasks", "kendall_tau", "fraction_of_ceiling",
                                "weighted_fraction_of_ceiling", "regret_points", "recall_at_3", "tau_drop_third",
                                "seconds_over_knn"]])  # fmt: skip

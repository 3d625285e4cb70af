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
# # 1. The data: upstream classes, the label hierarchy, downstream tasks
#
# The paper trains its generic model B on all of ImageNet-21k, carves the WordNet hierarchy into overlapping
# subtrees (one expert each) and evaluates on the 19 tasks of VTAB-1k, each with 1,000 training images.
# The `smoke` and `cpu` scales run the same pipeline on the embedded benchmark (`expertlib.datasets.embedded`);
# the `paper` scale reads ImageNet-21k and VTAB-1k from `data_root` (`expertlib.datasets.ondisk`).

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

from expertlib.pipeline import data as D
from expertlib.pipeline.session import start

ws, bench = start(scale, results_dir, data_root, seed, device, progress)

# %%
from expertlib.pipeline.experts import choose_experts
from expertlib.pipeline.inputs import write_data_summary

summary = write_data_summary(ws, bench)
experts = choose_experts(ws, bench)
display(Markdown(D.data_sentence(ws, bench, summary, experts)))
summary

# %% [markdown]
# Examples of every upstream domain and every downstream task, one row each:

# %%
D.sample_figure(ws, bench)

# %% [markdown]
# Every subtree with data is a candidate expert; the scale's rule (or list) picks the experts. Subtrees nest
# and overlap, as the paper's do. (At the `released` scale: the 48 released experts with their WordNet ids and
# ImageNet-21k classes, from `expertlib/data/released_experts.json`.)

# %%
candidates = D.candidate_experts(ws, bench)
candidates.assign(chosen=candidates.node.isin(list(experts.values())))

# %% [markdown]
# The plan: what the scale trains and what it costs. The very trainings and fine-tunes the notebooks will run,
# each priced at its resolution and step count from the GPU rates `make gpu-check` measured (at the `released`
# scale an upper bound: selection decides which experts are fine-tuned), with its documented alternatives in
# `tables/plan_options.csv`.

# %%
from expertlib.pipeline.compute_plan import plan_frame

plan_frame(ws, bench)

# %% [markdown]
# BiT-HyperRule exists in two forms that disagree: the BiT paper's text (`bit-paper`: 448/384 px for images of
# 96x96 px or more, x0.1 at 30/60/90% of the steps) and BiT's released code (`bit-code`: 512/480 px, a warm-up,
# decays past 200/300/400 of 500). Both, priced for this scale (the default and why: `docs/choices.md`):

# %%
from expertlib.pipeline.session import hyperrule_recipes

hyperrule_recipes(ws, bench)

# %% [markdown]
# Before anything trains: how many fine-tunes, in how many stacks, how many compiled graphs, and how many minutes
# the fine-tunes take at the rate a GPU measured (where none has, it says so rather than guess).

# %%
from expertlib.pipeline.forecast import forecast_sentence

display(Markdown(forecast_sentence(ws, bench)))

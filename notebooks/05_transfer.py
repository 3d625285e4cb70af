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
# # 5. Transfer
#
# Every candidate gets a fresh zero-initialised head and is fine-tuned on the task (train800val200; steps and
# learning rate chosen with B on train800 -> val200, as VTAB does), then tested, at every seed: each proxy's
# pick, the random expert's expectation and the oracle (chosen at seed 0 on one half of the test images, judged
# at the other seeds on the other half, from the stored predictions) are read from these runs, so every method
# is compared at the same seeds. Where the scale asks for it
# (`dat_accuracy`), the DAT-style baseline is trained first: per task, B re-trained for one expert's budget on
# upstream images re-weighted by B's predictions on the task, then fine-tuned the same way. A linear
# classifier on frozen features is reported beside full fine-tuning. Where the scale asks for few-shot regimes
# (`few_shot`), every task's few-shot versions get the same runs, with their full task's steps and learning
# rate (a few images per class leave no validation split worth choosing on).

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
import json

import pandas as pd

from expertlib.pipeline import methods as MT
from expertlib.pipeline import models as M
from expertlib.pipeline import transfer as T

cands = M.candidates(ws)
runs = T.run_transfer(ws, bench, cands)
hps = json.loads(ws.path("tables", "transfer_hyperparameters.json").read_text())
ft = runs[runs["mode"] == "finetune"]
display(
    Markdown(
        f"{len(ft)} fine-tunes and {(runs['mode'] == 'linear').sum()} frozen-feature classifiers on {ft.task.nunique()} tasks"
        f"{' (few-shot versions included)' if ws.scale.study.few_shot else ''} "
        f"({ft.seconds.sum() / 60:.1f} min of fine-tuning). Chosen on val200 with B: "
        + "; ".join(f"{t} {h['steps']} steps at lr {h['lr']}" for t, h in hps.items() if "same_as" not in h)
        + f". Every candidate at {ws.scale.study.seeds} seeds."
    )
)
runs.groupby(["task", "model", "mode"]).accuracy.mean().unstack("mode").round(3)

# %%
picks = pd.read_csv(ws.path("tables", "selection_picks.csv"))
methods = MT.method_rows(MT.in_regime(runs, "1k"), MT.in_regime(picks, "1k"), "finetune")
plots.transfer_bars(methods, "finetune", f"Transfer by full fine-tuning ({ws.scale.name} scale)")

# %% [markdown]
# How the matching expert's lead over B depends on the length of fine-tuning (when the scale sweeps it):

# %%
sweep = T.run_schedule_sweep(ws, bench, cands)
if len(sweep):
    lead = sweep.pivot_table(index=["task", "steps"], columns="model", values="accuracy")
    lead = (lead["matching adapter expert"] - lead["B"]).unstack("steps")
    display(
        Markdown(
            "Matching expert minus B, by fine-tuning steps: "
            + "; ".join(
                f"{t}: " + ", ".join(f"{s} steps {v:+.3f}" for s, v in row.items())
                for t, row in lead.iterrows()
            )
        )
    )
    display(plots.schedule_plot(sweep))
sweep

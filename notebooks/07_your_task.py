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
# # 7. Your task: rank your own models on your own images
#
# Point `images` at a folder with one sub-folder per class (optionally under `train/`, `val/`, `test/`) or
# at a CSV of `path,label[,split]`, and `models` at a list of specs: `timm:<name>` or
# `torchvision:<name>` (pretrained, or `=<checkpoint>` for a local file), or expertlib `.safetensors` models
# and expert banks. Every model embeds the training images once, with its own resolution and normalisation;
# each proxy scores it; the top `finetune_top` are fine-tuned to check the ranking. Left empty, the
# notebook ranks this scale's own models on its first task, exported as such a folder. With the default
# parameters the ranking goes to `results/<scale>/your_task/`; with any other, to a sub-folder named by what
# differs (`your_task/k=1/`, ...), so the default run's outputs are never overwritten. The same from a shell:
# `python -m expertlib.rank IMAGES MODEL [MODEL ...] --proxy knn --proxy leep --finetune-top 2`.

# %% tags=["parameters"]
scale = "cpu"  # preset: "smoke" (seconds, tests), "cpu" (embedded default, ~2 h on 2 cores), "gpu" (the embedded experiment on 19 tasks, 20 seeds, one GPU), "paper" (ImageNet-21k + VTAB on GPUs), "released" (BiT-M + the 48 released experts on VTAB, GPUs)
results_dir = "results"  # outputs go to <results_dir>/<scale>/
data_root = "data"  # datasets: the embedded benchmark is cached under <data_root>/embedded; the paper scale reads <data_root>/imagenet21k and <data_root>/vtab; the released scale <data_root>/vtab, BiT-M-R50x1.npz and released_experts/
seed = 0  # seed for every random choice in this notebook
device = "auto"  # "auto" (cuda if available), "cpu" or "cuda"
progress = True  # tqdm progress bars
images: str = ""  # your images (class folders or a CSV); "": this scale's first task, exported
models: list = []  # model specs as above (timm:NAME, torchvision:NAME, .safetensors files); []: ours
proxies: list = ["knn", "linear", "logme", "leep"]  # of knn linear logme hscore leep nce; 1st sorts
k: int = 0  # kNN's k; 0: the scale's (knn_k)
finetune_top: int = 2  # fine-tune the top K (by the first proxy) and test them; 0: ranking only

# %%
# %matplotlib inline
from IPython.display import Markdown, display

from expertlib.pipeline.session import start

ws, bench = start(scale, results_dir, data_root, seed, device, progress)

# %%
from expertlib.pipeline import your_task as Y

table, out = Y.run(ws, bench, images, models, proxies, k, finetune_top)
best = table.iloc[0]
tested = table.dropna(subset=["finetune_accuracy"]) if "finetune_accuracy" in table else table.iloc[:0]
fine_tuned = "; ".join(f"{r.model} {r.finetune_accuracy:.3f}" for r in tested.itertuples())
display(
    Markdown(
        f"{len(table)} models ranked by {proxies[0]}: best **{best.model}** ({best[proxies[0]]:.3f}). "
        + (f"Fine-tuned test accuracy: {fine_tuned}. " if len(tested) else "")
        + f"Tables and figure in `{out}`."
    )
)
table

# %%
from expertlib.select.rank_table import ranking_plot

ranking_plot(table, proxies)

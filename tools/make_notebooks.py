"""Writes notebooks/*.ipynb from the cell sources below (kept in the repo so the notebooks stay reviewable
as plain Python). Run: .venv/bin/python tools/make_notebooks.py"""

from pathlib import Path

import nbformat

PARAMS = """scale = "cpu"  # preset: "smoke" (seconds, tests), "cpu" (embedded default, ~40 min on 2 cores), "paper" (ImageNet-21k + VTAB on GPUs)
results_dir = "results"  # outputs go to <results_dir>/<scale>/
data_root = "data"  # datasets; the embedded benchmark is cached under <data_root>/embedded
seed = 0  # seed for every random choice in this notebook
device = "auto"  # "auto" (cuda if available), "cpu" or "cuda"
progress = True  # tqdm progress bars
"""

SETUP = """from expertlib import experiment as X
from expertlib.presets import validate_values

validate_values(scale=scale, results_dir=results_dir, data_root=data_root, seed=seed, device=device, progress=progress)
ws = X.Workspace.create(scale, results_dir, data_root, device, seed, progress)
X.print_plan(ws);"""

NOTEBOOKS = {
    "01_data.ipynb": [
        (
            "md",
            "# 1. The data: upstream domains, the label hierarchy, downstream tasks\n\n"
            "The paper splits ImageNet-21k along WordNet into overlapping subsets and evaluates on VTAB-1k. "
            "At the `smoke` and `cpu` scales we use the embedded benchmark (`expertlib.datasets.embedded`): "
            "9 upstream domains and 107 classes in a 4-level hierarchy, 12 VTAB-style tasks built only from "
            "classes or factors upstream never labels.",
        ),
        ("params", PARAMS),
        ("code", SETUP),
        ("code", "bench = X.load_benchmark(ws)\nsummary = X.write_data_summary(ws, bench)\nsummary"),
        ("md", "Examples of every upstream domain and every downstream task (one row each):"),
        ("code", "fig = X.sample_figure(ws, bench)\nfig"),
        ("md", "Candidate expert subtrees (nested: `geometric > pattern > grating`) and their sizes:"),
        ("code", "bench.hierarchy.candidate_experts(bench.class_counts())"),
    ],
    "02_generic.ipynb": [
        (
            "md",
            "# 2. The generic model B\n\nB is trained on all upstream data with sigmoid cross-entropy, as BiT "
            "was. The compute-matched control **B+extra** trains B for as many further steps as one expert gets: "
            "any gain of an expert that B+extra also shows is extra training, not specialisation.",
        ),
        ("params", PARAMS),
        ("code", SETUP),
        (
            "code",
            "bench = X.load_benchmark(ws)\nB, record = X.train_generic(ws, bench)\nB_extra = X.train_generic_extra(ws, bench, B)\nrecord",
        ),
        ("code", "upstream = X.generic_upstream_accuracy(ws, bench, B, B_extra)\nupstream"),
        (
            "md",
            "B should be capacity-limited: below its ceiling on most domains, so that experts have room to specialise.",
        ),
    ],
    "03_experts.ipynb": [
        (
            "md",
            "# 3. Experts: residual adapters and full fine-tuning\n\nEach expert starts from B and trains on its "
            "subtree's images: adapter experts train only their adapters, GroupNorm parameters and head "
            "(B's weights stay frozen and shared); full experts fine-tune a whole copy of B.",
        ),
        ("params", PARAMS),
        ("code", SETUP),
        (
            "code",
            "bench = X.load_benchmark(ws)\nB, B_extra = X.load_generic(ws)\n"
            "adapters, adapter_log = X.train_experts(ws, bench, B, 'adapter')\n"
            "full, full_log = X.train_experts(ws, bench, B, 'full')\nadapter_log",
        ),
        (
            "code",
            "spec = X.write_specialisation(ws, bench, B, {'adapter': adapters, 'full': full}, B_extra)\n"
            "spec.pivot_table(index=['expert', 'region'], columns='model', values='knn')",
        ),
        (
            "md",
            "Specialisation shows as the expert beating B on held-out images of its own subset (left) while "
            "B+extra does not; the right panel shows what the expert gives up elsewhere.",
        ),
    ],
    "04_selection.ipynb": [
        (
            "md",
            "# 4. Expert selection: proxies on every task\n\nFor each task every expert embeds the task's 1,000 "
            "training images (train800val200) and is scored by kNN leave-one-out accuracy (the paper's proxy), "
            "domain prediction from B's head, and the transferability metrics of the literature.",
        ),
        ("params", PARAMS),
        ("code", SETUP),
        (
            "code",
            "bench = X.load_benchmark(ws)\nB, B_extra = X.load_generic(ws)\nadapters, full = X.load_experts(ws)\n"
            "rankings, picks = X.run_selection(ws, bench, B, adapters)\npicks",
        ),
        (
            "code",
            "rankings[rankings.proxy == 'knn'].pivot(index='expert', columns='task', values='score').round(3)",
        ),
    ],
    "05_transfer.ipynb": [
        (
            "md",
            "# 5. Transfer\n\nEvery candidate gets a fresh zero-initialised head and is fine-tuned on the task "
            "(train800val200; steps and learning rate chosen with B on train800 -> val200, as VTAB does), "
            "then tested. B, B+extra and the selected experts run several seeds; the oracle fine-tunes every "
            "expert. Frozen-feature transfer (a linear classifier) is reported beside full fine-tuning.",
        ),
        ("params", PARAMS),
        ("code", SETUP),
        (
            "code",
            "bench = X.load_benchmark(ws)\nB, B_extra = X.load_generic(ws)\nadapters, full = X.load_experts(ws)\n"
            "runs = X.run_transfer(ws, bench, B, B_extra, adapters, full)\n"
            "runs.groupby(['task', 'model', 'mode']).accuracy.mean().unstack('mode').round(3)",
        ),
        ("code", "sweep = X.run_schedule_sweep(ws, bench, B, adapters)\nsweep"),
    ],
    "06_report.ipynb": [
        (
            "md",
            "# 6. Report: what reproduced and what did not\n\nAll figures and tables come from the runs of "
            "notebooks 1-5 at this scale.",
        ),
        ("params", PARAMS),
        ("code", SETUP),
        ("code", "bench = X.load_benchmark(ws)\nreport = X.build_report(ws, bench)\nreport['vtab_table']"),
        ("code", "report['claims']"),
        (
            "code",
            "from IPython.display import Image, display\nfor name in report['figures']:\n    display(Image(filename=str(name)))",
        ),
    ],
}


def main() -> None:
    out = Path(__file__).resolve().parent.parent / "notebooks"
    out.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        for kind, src in cells:
            if kind == "md":
                nb.cells.append(nbformat.v4.new_markdown_cell(src))
            else:
                cell = nbformat.v4.new_code_cell(src.rstrip("\n"))
                if kind == "params":
                    cell.metadata["tags"] = ["parameters"]
                nb.cells.append(cell)
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"{name[:2]}-{i:02d}"
        nbformat.write(nb, out / name)


if __name__ == "__main__":
    main()

"""Every figure and table of the report, from result tables (pandas in, files out).

Figures are written as PNG and SVG; tables as CSV and Markdown. Nothing here trains or evaluates.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from expertlib.models.candidates import BASE, EXTRA  # noqa: E402
from expertlib.utils.runtime import atomic_write, atomic_write_csv, atomic_write_text  # noqa: E402

GROUP_ORDER = ("natural", "specialized", "structured")
METHOD_ORDER = (BASE, EXTRA, "random", "domain", "knn", "oracle", "dat")
"""Every method the report compares, in the one order its tables and figures share."""
METHOD_LABELS = {
    BASE: "B (generic)",
    EXTRA: "B+extra (compute-matched)",
    "random": "random expert (expectation)",
    "domain": "domain-prediction pick",
    "knn": "kNN pick (paper)",
    "oracle": "oracle (best expert, chosen on other images than it is judged on)",
    "dat": "DAT-style re-training (per task)",
}
PROXY_LABELS = {"knn": "kNN accuracy", "domain": "domain prediction", "linear": "linear probe", "logme": "LogME",
                "hscore": "H-score", "leep": "LEEP", "nce": "NCE", "pactran_gauss": "PACTran-Gaussian",
                "pactran_dir": "PACTran-Dirichlet", "sfda": "SFDA", "hscore_lw": "H-score (Ledoit-Wolf)",
                "knn_resampled": "kNN, resampled support sets", "prior": "past-transfer prior",
                "hybrid": "hybrid: prior + resampled kNN", "hybrid_nested": "hybrid, nested weight"}  # fmt: skip
"""Each proxy's name in a figure (a score axis, a panel title)."""
LABELS = {
    **METHOD_LABELS,
    "adapter_expert": "adapter expert",
    "full_expert": "full expert",
    **{f"{p} selection": f"select by {name}" for p, name in PROXY_LABELS.items()},
    "knn selection": "select by kNN accuracy (paper)",
    "fine-tune all (oracle)": "fine-tune every expert, keep the best (oracle)",
    "DAT-style re-training": "DAT-style re-training (per task)",
}
"""The one map from the ids the tables use (methods, models, selection costs) to the names every figure shows."""
PALETTE = dict(zip(METHOD_ORDER, sns.color_palette("colorblind", len(METHOD_ORDER)), strict=True))


def label(name: str, labels: dict[str, str] | None = None) -> str:
    """The readable name of a table id (:data:`LABELS`, with ``labels`` for a run's own definitions)."""
    return {**LABELS, **(labels or {})}.get(name, name)


def _legend_outside(ax: plt.Axes, **kw) -> None:
    """The axes' legend to its right, outside the data (saved figures grow to hold it)."""
    handles, names = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                  fontsize=kw.pop("fontsize", 7), frameon=False, **kw)  # fmt: skip


def _caption(fig: plt.Figure, text: str) -> None:
    """A caption under the figure: what every mark and error bar is."""
    fig.text(0.01, 0.0, text, ha="left", va="top", fontsize=7, wrap=True, color="#333333")


def _spread(texts: list, ax: plt.Axes) -> None:
    """Move point labels apart until none overlaps another (adjustText; a fixed iteration count, so the same
    figure comes out byte for byte), each tied to its point by a thin line."""
    from adjustText import adjust_text

    adjust_text(texts, ax=ax, iter_lim=1000, expand=(1.15, 1.4), force_text=(0.3, 0.5),
                arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.4})  # fmt: skip


def _done(fig: plt.Figure) -> plt.Figure:
    """Lay the figure out and release it from pyplot: a notebook then shows it once, as the cell's value or by
    ``display``, and not a second time when the inline backend shows every figure pyplot still holds."""
    fig.tight_layout()
    plt.close(fig)
    return fig


# Same figure, same bytes: SVG element ids from a fixed salt, and no creation date in SVG or PNG metadata, so a
# rerun that reproduces the numbers leaves the committed figures unchanged in git.
plt.rcParams["svg.hashsalt"] = "expertlib"
_METADATA = {"svg": {"Date": None}, "png": {"Software": None}}


def save_figure(fig: plt.Figure, path_stem: str | os.PathLike) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.svg`` atomically (byte-identical for the same figure); close it."""
    stem = Path(path_stem)
    out = []
    for ext in ("png", "svg"):
        out.append(
            atomic_write(
                stem.with_suffix(f".{ext}"),
                lambda p, e=ext: fig.savefig(
                    p, format=e, dpi=130, bbox_inches="tight", metadata=_METADATA[e]
                ),
            )
        )
    plt.close(fig)
    return out


def save_table(frame: pd.DataFrame, path_stem: str | os.PathLike, floatfmt: str = ".3f") -> list[Path]:
    stem = Path(path_stem)
    return [
        atomic_write_csv(stem.with_suffix(".csv"), frame),
        atomic_write_text(stem.with_suffix(".md"), to_markdown(frame, floatfmt)),
    ]


def to_markdown(frame: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A GitHub Markdown table (no optional dependency)."""
    cols = list(frame.columns)

    def fmt(v) -> str:
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else format(v, floatfmt)
        return str(v)

    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def sample_grid(rows: dict[str, np.ndarray], per_row: int = 12) -> plt.Figure:
    """A mosaic: one row of example images (uint8 NHWC) per named source."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(per_row * 0.6, len(rows) * 0.75))
    axes = np.atleast_1d(axes)
    for ax, (name, imgs) in zip(axes, rows.items(), strict=True):
        ax.imshow(np.concatenate(list(imgs[:per_row]), axis=1))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    return _done(fig)


def task_order(frame: pd.DataFrame) -> list[str]:
    """Tasks grouped natural, specialized, structured (each group in its order of appearance): the order of
    every per-task figure. ``frame`` columns: task, group."""
    first = frame.drop_duplicates("task")
    return [t for g in GROUP_ORDER for t in first[first.group == g].task] + [
        t for t in first.task if t not in set(first[first.group.isin(GROUP_ORDER)].task)
    ]


def _task_ticks(ax: plt.Axes, tasks: list[str], groups: pd.Series) -> None:
    ax.set_xticks(np.arange(len(tasks)))
    ax.set_xticklabels([f"{t}\n({groups[t][:4]}.)" for t in tasks], rotation=30, ha="right", fontsize=8)


def transfer_bars(summary: pd.DataFrame, metric: str, title: str, labels: dict[str, str] | None = None
                  ) -> plt.Figure:  # fmt: skip
    """Per-task accuracy (mean and seed sd, in points) for each method, tasks grouped natural / specialized /
    structured; the paper's comparisons are the differences of :func:`minus_base_plot`.

    ``summary`` columns: task, group, method, mean, sd, n (one row per task x method); ``labels``: the legend's
    names where they differ from :data:`METHOD_LABELS` (where the oracle was chosen)."""
    sub = summary[summary.metric == metric]
    tasks = task_order(sub)
    methods = [m for m in METHOD_ORDER if m in set(sub.method)]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(tasks)), 4))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        rows = sub[sub.method == m].set_index("task").reindex(tasks)
        ax.bar(np.arange(len(tasks)) + (i - (len(methods) - 1) / 2) * width, 100 * rows["mean"], width,
               yerr=100 * rows["sd"].fillna(0), label=label(m, labels), color=PALETTE[m], capsize=2)  # fmt: skip
    _task_ticks(ax, tasks, sub.drop_duplicates("task").set_index("task").group)
    lo = np.nanmin(sub["mean"]) if len(sub) else 0
    ax.set_ylim(max(0, 100 * lo - 10), 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    _legend_outside(ax)
    seeds = sorted(set(sub.n.dropna().astype(int))) if "n" in sub else []
    _caption(fig, "Bars: mean test accuracy over seeds" + (f" ({' or '.join(map(str, seeds))} per bar)" if seeds else "")
             + "; error bars: one standard deviation over those seeds (seed-to-seed spread, not an interval). "
             "Differences from B with 95% intervals: the figure 'minus_base'.")  # fmt: skip
    return _done(fig)


def minus_base_plot(frame: pd.DataFrame, title: str, labels: dict[str, str] | None = None) -> plt.Figure:
    """The paper's comparisons: each method minus B in accuracy points with its 95% interval, per task (left,
    grouped natural / specialized / structured) and as the mean over each group's tasks and over all (right).

    ``frame`` columns (:func:`expertlib.pipeline.methods.base_differences`): level ("task", "group", "all"),
    name, group, method, minus_base, ci_low, ci_high, tasks, seeds."""
    per_task, means = frame[frame.level == "task"], frame[frame.level != "task"]
    tasks = task_order(per_task.rename(columns={"name": "task"}))
    summaries = [g for g in GROUP_ORDER if g in set(means.name)] + (
        ["all"] if "all" in set(means.level) else []
    )
    methods = [m for m in METHOD_ORDER if m in set(frame.method)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(0.75 * len(tasks) + 0.75 * len(summaries) + 3, 4.2), sharey=True,
                                      gridspec_kw={"width_ratios": [max(1, len(tasks)), max(1, len(summaries)) + 0.5]})  # fmt: skip
    step = 0.8 / max(1, len(methods))
    for ax, sub, names in ((left, per_task, tasks), (right, means, summaries)):
        for i, m in enumerate(methods):
            rows = sub[sub.method == m].set_index("name").reindex(names)
            x = np.arange(len(names)) + (i - (len(methods) - 1) / 2) * step
            err = np.vstack([rows.minus_base - rows.ci_low, rows.ci_high - rows.minus_base]) * 100
            ax.errorbar(x, 100 * rows.minus_base, yerr=np.nan_to_num(err), fmt="o", ms=4, capsize=2, lw=1,
                        color=PALETTE[m], label=label(m, labels))  # fmt: skip
        ax.axhline(0, color="black", lw=0.8, label="B (the line at 0)" if ax is right else None)
        ax.grid(axis="y", alpha=0.3)
        ax.set_xlim(-0.6, len(names) - 0.4)
    groups = per_task.drop_duplicates("name").set_index("name").group
    _task_ticks(left, tasks, groups)
    for j in range(1, len(tasks)):  # a rule between the groups
        if groups[tasks[j]] != groups[tasks[j - 1]]:
            left.axvline(j - 0.5, color="grey", lw=0.6, ls=":")
    n_tasks = means.drop_duplicates("name").set_index("name").tasks
    right.set_xticks(np.arange(len(summaries)))
    right.set_xticklabels([f"{'all tasks' if g == 'all' else g}\n({int(n_tasks[g])} tasks)" for g in summaries],
                          rotation=30, ha="right", fontsize=8)  # fmt: skip
    left.set_ylabel("test accuracy minus B (points)")
    left.set_title("per task", fontsize=9)
    right.set_title("mean over tasks", fontsize=9)
    fig.suptitle(title)
    _legend_outside(right)
    seeds = sorted(set(per_task.seeds.dropna().astype(int)))
    _caption(fig, "Each mark: a method's test accuracy minus B's at the same seeds and test images (0: as good as B), "
             f"in accuracy points. Per task: the mean over its {' or '.join(map(str, seeds)) or 'paired'} seeds. Mean "
             "over tasks: the mean of the per-task differences. Error bars, 95% intervals: over all tasks, the "
             "bootstrap-t interval over tasks of the claims table (docs/analysis_plan.md); per group and per task, "
             "Student's t over its tasks or seeds (the bootstrap-t degenerates on 3-5 units).")  # fmt: skip
    return _done(fig)


def specialisation_plot(spec: pd.DataFrame, measure: str = "knn") -> plt.Figure:
    """Each expert vs B (and B+extra) on held-out upstream images of its own subset and of the rest."""
    regions = ("own", "rest")
    spec = spec.assign(model=spec.model.map(label))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, region in zip(axes, regions, strict=True):
        sub = spec[spec.region == region]
        sns.barplot(data=sub, x="expert", y=measure, hue="model", ax=ax, palette="colorblind", errorbar=None,
                    hue_order=list(dict.fromkeys(spec.model)))  # fmt: skip
        ax.set_title(f"held-out upstream images: {'its own subset' if region == 'own' else 'the rest'}")
        ax.set_ylabel(f"{'kNN' if measure == 'knn' else measure} accuracy")
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        ax.get_legend().remove()
    _legend_outside(axes[-1])
    _caption(
        fig, "One bar per expert and model: a single measurement on held-out upstream images, no error bar."
    )
    return _done(fig)


def cost_plot(cost: pd.DataFrame, note: str = "") -> plt.Figure:
    """What each way of choosing a model costs per task (seconds, log axis) against what it yields: its test
    accuracy minus B's in points, with the claims' 95% interval; B (no selection) is the line at 0.

    ``cost`` columns: method, seconds, minus_base, ci_low, ci_high; ``note``: why the oracle sits where it does."""

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.axhline(0, color="black", lw=0.8)
    ax.text(1.0, 0, " B (no selection)", transform=ax.get_yaxis_transform(), va="center", fontsize=7)
    colors = sns.color_palette("colorblind", len(cost))
    texts = []
    for c, r in zip(colors, cost.itertuples(), strict=True):
        err = np.array([[r.minus_base - r.ci_low], [r.ci_high - r.minus_base]]) * 100
        ax.errorbar(r.seconds, 100 * r.minus_base, yerr=np.nan_to_num(err), fmt="o", ms=5, capsize=3, color=c)
        texts.append(ax.text(r.seconds, 100 * r.minus_base, label(r.method), fontsize=7))
    ax.set_xscale("log")
    ax.set_xlabel("selection cost per task (seconds on this machine, log scale)")
    ax.set_ylabel("test accuracy minus B (points)")
    ax.grid(alpha=0.3)
    _caption(fig, "Each mark: a way of choosing a task's model. Cost: its wall time per task (mean over tasks). "
             "Accuracy: what it yields minus B at the same seeds, the mean over tasks with the 95% bootstrap-t "
             "interval over tasks that the claims use. " + note)  # fmt: skip
    fig.tight_layout()
    _spread(texts, ax)
    plt.close(fig)
    return fig


def adapter_vs_full(frame: pd.DataFrame) -> plt.Figure:
    """Adapter vs full experts: mean fine-tuned accuracy against parameters stored per expert.

    ``frame`` columns: expert, kind, parameters, accuracy."""

    fig, ax = plt.subplots(figsize=(6.5, 4))
    frame = frame.assign(kind=frame.kind.map({"adapter": "adapter expert", "full": "full expert"}).fillna(frame.kind),
                         accuracy=100 * frame.accuracy)  # fmt: skip
    sns.scatterplot(data=frame, x="parameters", y="accuracy", hue="kind", style="kind", ax=ax, s=60)
    texts = [ax.text(r.parameters, r.accuracy, r.expert, fontsize=7) for r in frame.itertuples()]
    ax.set_xscale("log")
    ax.set_xlabel("parameters stored per expert (log scale)")
    ax.set_ylabel("fine-tuned accuracy on its related tasks (%)")
    ax.get_legend().set_title(None)
    _legend_outside(ax)
    _caption(fig, "Each mark: one expert, its mean fine-tuned test accuracy over its related tasks and seeds (no "
             "error bar); an adapter expert stores only its adapters, a full expert every weight.")  # fmt: skip
    fig.tight_layout()
    _spread(texts, ax)
    plt.close(fig)
    return fig


def regime_gains(frame: pd.DataFrame, labels: dict[str, str] | None = None, full: str = "1k") -> plt.Figure:
    """Each method minus B with its 95% CI in accuracy points, regime by regime (fewest training images first),
    one panel per transfer metric: where the choice of pre-training matters most.

    ``frame`` columns: regime, metric, method, minus_base, ci_low, ci_high (regimes in the order to plot);
    ``labels`` as :func:`transfer_bars`'; ``full``: the tick of the full regime (its benchmark's name)."""
    regimes = list(dict.fromkeys(frame.regime))
    metrics = [m for m in ("finetune", "linear") if m in set(frame.metric)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), sharey=True, squeeze=False)
    methods = [m for m in METHOD_ORDER if m in set(frame.method)]
    for ax, metric in zip(axes[0], metrics, strict=True):
        sub = frame[frame.metric == metric]
        for i, m in enumerate(methods):
            rows = sub[sub.method == m].set_index("regime").reindex(regimes)
            x = np.arange(len(regimes)) + (i - (len(methods) - 1) / 2) * 0.08
            err = np.vstack([rows.minus_base - rows.ci_low, rows.ci_high - rows.minus_base]) * 100
            ax.errorbar(x, 100 * rows.minus_base, yerr=err, marker="o", capsize=3, color=PALETTE[m],
                        label=label(m, labels))  # fmt: skip
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(np.arange(len(regimes)))
        ax.set_xticklabels([f"{r}\n(per class)" if r.endswith("shot") else full for r in regimes])
        ax.set_title({"finetune": "full fine-tuning", "linear": "frozen features + linear"}[metric])
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("test accuracy minus B (points)")
    _legend_outside(axes[0][-1])
    _caption(fig, "Each mark: a method's test accuracy minus B's at the same tasks, seeds and images, the mean over "
             "tasks in points; error bars: the 95% bootstrap-t interval over tasks that the claims use.")  # fmt: skip
    return _done(fig)


def schedule_plot(frame: pd.DataFrame) -> plt.Figure:
    """Fine-tuned accuracy of B and the matching expert as the fine-tuning schedule grows.

    ``frame`` columns: task, steps, model, accuracy."""
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=frame.assign(accuracy=100 * frame.accuracy), x="steps", y="accuracy", hue="model", style="task",
                 markers=True, ax=ax, errorbar=None)  # fmt: skip
    ax.set_xscale("log")
    steps = sorted(set(frame.steps))
    ax.set_xticks(steps, [str(v) for v in steps], minor=False)
    ax.minorticks_off()
    ax.set_xlabel("fine-tuning steps (log scale)")
    ax.set_ylabel("test accuracy (%)")
    _legend_outside(ax, fontsize=6)
    _caption(fig, "Each mark: one fine-tune (one seed), no error bar.")
    return _done(fig)


def training_curve(metrics: pd.DataFrame, title: str) -> plt.Figure:
    """Loss (and learning rate) against step. ``metrics`` columns: step, loss, lr."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(metrics["step"], metrics["loss"], label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    lr = ax.twinx()
    lr.plot(metrics["step"], metrics["lr"], color="grey", alpha=0.5, label="learning rate")
    lr.set_ylabel("learning rate", color="grey")
    ax.grid(alpha=0.3)
    return _done(fig)


def domain_accuracy(frame: pd.DataFrame) -> plt.Figure:
    """Held-out upstream top-1 per domain for each model. ``frame`` columns: domain, accuracy, model."""
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * frame.domain.nunique()), 3.4))
    sns.barplot(data=frame.assign(model=frame.model.map(label), accuracy=100 * frame.accuracy), x="domain",
                y="accuracy", hue="model", ax=ax, palette="colorblind", errorbar=None)  # fmt: skip
    ax.set_ylim(0, 100)
    ax.set_ylabel("held-out upstream accuracy (%)")
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.get_legend().set_title(None)
    _legend_outside(ax)
    return _done(fig)


def published_comparison(frame: pd.DataFrame, title: str) -> plt.Figure:
    """VTAB-1k group means of our methods beside published models, published bars hatched and labelled.

    ``frame`` columns: who ('ours ...' or 'published'), model, natural, specialized, structured, mean (in %)."""
    groups = [g for g in ("natural", "specialized", "structured", "mean") if g in frame]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(frame)
    for i, r in enumerate(frame.itertuples(index=False)):
        published = r.who == "published"
        values = [getattr(r, g) if getattr(r, g) is not None else np.nan for g in groups]
        ax.bar(np.arange(len(groups)) + (i - (len(frame) - 1) / 2) * width, values, width,
               label=f"{'published: ' if published else 'ours: '}{r.model}", hatch="//" if published else None,
               edgecolor="black" if published else None, alpha=0.6 if published else 1.0)  # fmt: skip
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel("VTAB-1k accuracy (%)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    _legend_outside(ax, fontsize=6)
    _caption(fig, "Bars: mean accuracy over each group's tasks, no error bar; published numbers as their papers "
             "give them (hatched).")  # fmt: skip
    return _done(fig)

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

from expertlib.candidates import BASE, EXTRA  # noqa: E402
from expertlib.runtime import atomic_write, atomic_write_csv, atomic_write_text  # noqa: E402

GROUP_ORDER = ("natural", "specialized", "structured")
METHOD_ORDER = (BASE, EXTRA, "random", "domain", "knn", "oracle", "dat")
"""Every method the report compares, in the one order its tables and figures share."""
METHOD_LABELS = {
    BASE: "B (generic)",
    EXTRA: "B+extra (compute-matched)",
    "random": "random expert (expectation)",
    "domain": "domain-prediction pick",
    "knn": "kNN pick (paper)",
    "oracle": "oracle (best at seed 0, judged at the others)",
    "dat": "DAT-style re-training (per task)",
    # the proxies of issue #42 (by their registry names, expertlib.proxies and expertlib.prior)
    "pactran_gauss": "PACTran-Gaussian",
    "pactran_dir": "PACTran-Dirichlet",
    "sfda": "SFDA",
    "hscore_lw": "H-score (Ledoit-Wolf)",
    "knn_resampled": "kNN, resampled support sets",
    "prior": "past-transfer prior",
    "hybrid": "hybrid: prior + resampled kNN",
    "hybrid_nested": "hybrid, nested weight",
}
PALETTE = dict(zip(METHOD_ORDER, sns.color_palette("colorblind", len(METHOD_ORDER)), strict=True))


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
    fig.tight_layout()
    return fig


def transfer_bars(summary: pd.DataFrame, metric: str, title: str, labels: dict[str, str] | None = None
                  ) -> plt.Figure:  # fmt: skip
    """Per-task accuracy (mean and seed sd) for each method, tasks grouped natural / specialized / structured.

    ``summary`` columns: task, group, method, mean, sd (one row per task x method); ``labels``: the legend's
    names where they differ from :data:`METHOD_LABELS` (where the oracle was chosen)."""
    sub = summary[summary.metric == metric]
    tasks = [t for g in GROUP_ORDER for t in sub[sub.group == g].task.unique()]
    methods = [m for m in METHOD_ORDER if m in set(sub.method)]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(tasks)), 4))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        rows = sub[sub.method == m].set_index("task").reindex(tasks)
        ax.bar(np.arange(len(tasks)) + (i - (len(methods) - 1) / 2) * width, rows["mean"], width,
               yerr=rows["sd"].fillna(0), label={**METHOD_LABELS, **(labels or {})}[m], color=PALETTE[m],
               capsize=2)  # fmt: skip
    ax.set_xticks(np.arange(len(tasks)))
    groups = sub.drop_duplicates("task").set_index("task").group
    ax.set_xticklabels([f"{t}\n({groups[t][:4]}.)" for t in tasks], rotation=30, ha="right", fontsize=8)
    lo = np.nanmin(sub["mean"]) if len(sub) else 0
    ax.set_ylim(max(0, lo - 0.1), 1.0)
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=3, loc="lower left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def specialisation_plot(spec: pd.DataFrame, measure: str = "knn") -> plt.Figure:
    """Each expert vs B (and B+extra) on held-out upstream images of its own subset and of the rest."""
    regions = ("own", "rest")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, region in zip(axes, regions, strict=True):
        sub = spec[spec.region == region]
        sns.barplot(data=sub, x="expert", y=measure, hue="model", ax=ax, palette="colorblind", errorbar=None)
        ax.set_title(f"held-out upstream images: {'its own subset' if region == 'own' else 'the rest'}")
        ax.set_ylabel(f"{measure} accuracy")
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def proxy_scatter(points: pd.DataFrame, proxy: str) -> plt.Figure:
    """Proxy score vs fine-tuned accuracy, one panel per task, with Kendall's tau in the title.

    ``points`` columns: task, expert, proxy, score, accuracy."""
    from scipy import stats

    sub = points[points.proxy == proxy]
    tasks = list(sub.task.unique())
    cols = min(5, max(1, len(tasks)))
    rows = int(np.ceil(len(tasks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.6 * rows), squeeze=False)
    for ax, t in zip(axes.flat, tasks, strict=False):
        s = sub[sub.task == t]
        ax.scatter(s.score, s.accuracy, s=18)
        for r in s.itertuples():
            ax.annotate(str(getattr(r, "expert", "") or r.model)[:8], (r.score, r.accuracy), fontsize=6)
        tau = stats.kendalltau(s.score, s.accuracy).statistic if len(s) > 2 else np.nan
        ax.set_title(f"{t}: tau={tau:.2f}", fontsize=9)
        ax.set_xlabel(f"{proxy} score", fontsize=8)
        ax.set_ylabel("fine-tuned acc.", fontsize=8)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def cost_plot(cost: pd.DataFrame) -> plt.Figure:
    """Selection cost (seconds per task, log axis) vs mean test accuracy of the model each method yields.

    ``cost`` columns: method, seconds, accuracy."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in cost.itertuples():
        ax.scatter(r.seconds, r.accuracy, s=40)
        ax.annotate(r.method, (r.seconds, r.accuracy), fontsize=8, xytext=(4, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("selection cost per task (seconds, log scale)")
    ax.set_ylabel("mean fine-tuned test accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def adapter_vs_full(frame: pd.DataFrame) -> plt.Figure:
    """Adapter vs full experts: mean fine-tuned accuracy against parameters stored per expert.

    ``frame`` columns: expert, kind, parameters, accuracy."""
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.scatterplot(data=frame, x="parameters", y="accuracy", hue="kind", style="kind", ax=ax, s=60)
    for r in frame.itertuples():
        ax.annotate(r.expert, (r.parameters, r.accuracy), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("parameters stored per expert (log scale)")
    ax.set_ylabel("mean fine-tuned accuracy on related tasks")
    fig.tight_layout()
    return fig


def regime_gains(frame: pd.DataFrame, labels: dict[str, str] | None = None) -> plt.Figure:
    """Each method minus B with its 95% CI, regime by regime (fewest training images first), one panel per
    transfer metric: where the choice of pre-training matters most.

    ``frame`` columns: regime, metric, method, minus_base, ci_low, ci_high (regimes in the order to plot);
    ``labels`` as :func:`transfer_bars`'."""
    regimes = list(dict.fromkeys(frame.regime))
    metrics = [m for m in ("finetune", "linear") if m in set(frame.metric)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), sharey=True, squeeze=False)
    methods = [m for m in METHOD_ORDER if m in set(frame.method)]
    for ax, metric in zip(axes[0], metrics, strict=True):
        sub = frame[frame.metric == metric]
        for i, m in enumerate(methods):
            rows = sub[sub.method == m].set_index("regime").reindex(regimes)
            x = np.arange(len(regimes)) + (i - (len(methods) - 1) / 2) * 0.08
            err = np.vstack([rows.minus_base - rows.ci_low, rows.ci_high - rows.minus_base])
            ax.errorbar(x, rows.minus_base, yerr=err, marker="o", capsize=3, color=PALETTE[m],
                        label={**METHOD_LABELS, **(labels or {})}[m])  # fmt: skip
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(np.arange(len(regimes)))
        ax.set_xticklabels([f"{r}\n(per class)" if r.endswith("shot") else "1k\n(VTAB-1k)" for r in regimes])
        ax.set_title({"finetune": "full fine-tuning", "linear": "frozen features + linear"}[metric])
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("accuracy minus B (95% CI)")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def schedule_plot(frame: pd.DataFrame) -> plt.Figure:
    """Fine-tuned accuracy of B and the matching expert as the fine-tuning schedule grows.

    ``frame`` columns: task, steps, model, accuracy."""
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=frame, x="steps", y="accuracy", hue="model", style="task", markers=True, ax=ax)
    ax.set_xscale("log")
    ax.set_xlabel("fine-tuning steps (log scale)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


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
    fig.tight_layout()
    return fig


def domain_accuracy(frame: pd.DataFrame) -> plt.Figure:
    """Held-out upstream top-1 per domain for each model. ``frame`` columns: domain, accuracy, model."""
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * frame.domain.nunique()), 3.4))
    sns.barplot(data=frame, x="domain", y="accuracy", hue="model", ax=ax, palette="colorblind", errorbar=None)
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out upstream accuracy")
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def score_heatmap(rankings: pd.DataFrame, proxy: str) -> plt.Figure:
    """One proxy's score for every candidate (rows) on every task (columns), each task's best boxed.

    ``rankings`` columns: task, model, proxy, score."""
    table = rankings[rankings.proxy == proxy].pivot(index="model", columns="task", values="score")
    fig, ax = plt.subplots(figsize=(1.0 * table.shape[1] + 3, 0.32 * table.shape[0] + 1.5))
    sns.heatmap(table, annot=True, fmt=".2f", cmap="viridis", ax=ax, cbar_kws={"label": f"{proxy} score"},
                annot_kws={"fontsize": 7})  # fmt: skip
    for j, task in enumerate(table.columns):
        i = int(np.nanargmax(table[task].to_numpy()))
        ax.add_patch(plt.Rectangle((j, i), 1, 1, fill=False, edgecolor="red", lw=2))
    ax.set_title(f"{proxy} score per candidate and task (best boxed)")
    fig.tight_layout()
    return fig


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
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def ranking_plot(wide: pd.DataFrame, proxies) -> plt.Figure:
    """Each proxy's score per model (best of the first proxy on top), and fine-tuned test accuracy when the top
    models were fine-tuned: does the proxy's order hold up?"""
    panels = [p for p in proxies if p in wide] + (
        ["finetune_accuracy"] if "finetune_accuracy" in wide else []
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 1.5, 0.45 * len(wide) + 1.5), sharey=True,
                             squeeze=False)  # fmt: skip
    y = np.arange(len(wide))
    for ax, col in zip(axes[0], panels, strict=True):
        vals = wide[col].to_numpy(float)
        ax.barh(
            y,
            np.nan_to_num(vals),
            color=sns.color_palette("colorblind")[0 if col != "finetune_accuracy" else 2],
        )
        for yi, v in zip(y, vals, strict=True):
            if not np.isnan(v):
                ax.text(v, yi, f" {v:.3g}", va="center", fontsize=7)
        ax.set_title("fine-tuned test accuracy" if col == "finetune_accuracy" else f"{col} score", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y)
    axes[0][0].set_yticklabels(wide.model, fontsize=8)
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    return fig


def ceiling_fractions(summary: pd.DataFrame, labels: dict[str, str] | None = None) -> plt.Figure:
    """Each proxy's mean Kendall tau as a fraction of the noise ceiling, with its 95% interval over tasks, one
    marker per regime: 1 is as well as the seeds let anyone rank the experts, 0 no better than chance.

    ``summary`` columns: regime, proxy, fraction_of_ceiling, fraction_of_ceiling_low, fraction_of_ceiling_high
    (regimes and proxies in the order to plot)."""
    regimes = list(dict.fromkeys(summary.regime))
    proxies = list(dict.fromkeys(summary.proxy))
    names = {**METHOD_LABELS, **(labels or {})}
    colours = sns.color_palette("colorblind", max(3, len(regimes)))
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(proxies) + 1.4))
    y = np.arange(len(proxies))
    for i, reg in enumerate(regimes):
        rows = summary[summary.regime == reg].set_index("proxy").reindex(proxies)
        mid = rows.fraction_of_ceiling.to_numpy(float)
        err = np.vstack([mid - rows.fraction_of_ceiling_low.to_numpy(float),
                         rows.fraction_of_ceiling_high.to_numpy(float) - mid])  # fmt: skip
        ax.errorbar(mid, y + (i - (len(regimes) - 1) / 2) * 0.22, xerr=np.nan_to_num(err), fmt="o", capsize=2,
                    ms=4, color=colours[i], label=reg)  # fmt: skip
    ax.axvline(0, color="grey", lw=0.8)
    ax.axvline(1, color="grey", lw=0.8, ls="--")
    ax.set_yticks(y)
    ax.set_yticklabels([names.get(p, p) for p in proxies], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("Kendall tau as a fraction of the noise ceiling (95% CI over tasks)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(title="regime", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig

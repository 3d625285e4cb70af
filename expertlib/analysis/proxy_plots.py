"""The proxies' figures: each proxy's score against fine-tuned accuracy, the score heatmap, and how well each
proxy ranks the experts against the noise ceiling (the shared labels and layout helpers are
:mod:`expertlib.analysis.plots`')."""

from __future__ import annotations

import numpy as np
import pandas as pd

from expertlib.analysis.plots import PROXY_LABELS, _caption, _done, _legend_outside, _spread, label, plt, sns
from expertlib.models.candidates import BASE


def _grid(n: int) -> tuple[int, int]:
    """Rows and columns for ``n`` panels: 3 to 5 columns (fewer only for fewer panels), as few empty cells as
    can be (those are removed, not left blank), more columns on a tie."""
    cols = min(range(min(5, n), min(3, n) - 1, -1), key=lambda c: ((-n) % c, -c)) if n else 1
    return int(np.ceil(n / cols)), cols


def _expert_name(model: str) -> str:
    return str(model).split(":", 1)[-1]


def proxy_scatter(points: pd.DataFrame, proxy: str, tasks: list[str] | None = None) -> plt.Figure:
    """Proxy score vs fine-tuned accuracy, one panel per task (in ``tasks``' order, the bar chart's), each
    expert labelled, with Kendall's tau.

    ``points`` columns: task, model (or expert), proxy, score, accuracy."""
    from scipy import stats

    sub = points[points.proxy == proxy]
    tasks = [t for t in (tasks or list(sub.task.unique())) if t in set(sub.task)]
    rows, cols = _grid(len(tasks))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows + 0.6), squeeze=False)
    for ax in list(axes.flat)[len(tasks) :]:
        fig.delaxes(ax)  # no empty panel
    texts = []
    for ax, t in zip(axes.flat, tasks, strict=False):
        s = sub[sub.task == t]
        ax.scatter(s.score, 100 * s.accuracy, s=14)
        names = s.expert if "expert" in s else s.model.map(_expert_name)
        texts.append(
            [
                ax.text(x, 100 * y, str(n), fontsize=6)
                for x, y, n in zip(s.score, s.accuracy, names, strict=True)
            ]
        )
        tau = stats.kendalltau(s.score, s.accuracy).statistic if len(s) > 2 else np.nan
        ax.set_title(f"{t}: Kendall's tau = {tau:.2f}", fontsize=9)
        ax.set_xlabel(f"{PROXY_LABELS.get(proxy, proxy)} (proxy score)", fontsize=8)
        ax.set_ylabel("fine-tuned acc. (%)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"Does the {PROXY_LABELS.get(proxy, proxy)} proxy order the experts as fine-tuning does?")
    _caption(fig, "Each point: one expert on one task, its proxy score against its fine-tuned test accuracy (mean "
             "over seeds). Kendall's tau: how often two experts are ordered the same way by both (1: the same "
             "order, 0: unrelated, -1: reversed). Seed noise alone keeps tau below 1: the noise ceiling is in "
             "tables/selection_quality.")  # fmt: skip
    fig.tight_layout()
    for ax, tx in zip(axes.flat, texts, strict=False):
        _spread(tx, ax)
    plt.close(fig)
    return fig


def score_heatmap(rankings: pd.DataFrame, proxy: str) -> plt.Figure:
    """One proxy's score for every candidate (rows) on every task (columns), each task's best boxed; sized to
    be read inline (at most about 12 inches wide).

    ``rankings`` columns: task, model, proxy, score."""
    table = rankings[rankings.proxy == proxy].pivot(index="model", columns="task", values="score")
    table.index = [_expert_name(m) if m != BASE else label(m) for m in table.index]
    width = min(12.0, 0.6 * table.shape[1] + 2.5)
    fig, ax = plt.subplots(figsize=(width, 0.26 * table.shape[0] + 1.8))
    sns.heatmap(table, annot=table.shape[1] <= 16, fmt=".2f", cmap="viridis", ax=ax, annot_kws={"fontsize": 6},
                cbar_kws={"label": f"{PROXY_LABELS.get(proxy, proxy)} score"})  # fmt: skip
    for j, task in enumerate(table.columns):
        i = int(np.nanargmax(table[task].to_numpy()))
        ax.add_patch(plt.Rectangle((j, i), 1, 1, fill=False, edgecolor="red", lw=1.5))
    ax.set_xlabel("task")
    ax.set_ylabel("candidate")
    ax.tick_params(labelsize=7)
    ax.set_title(
        f"{PROXY_LABELS.get(proxy, proxy)} per candidate and task (each task's best boxed)", fontsize=10
    )
    return _done(fig)


def ceiling_fractions(summary: pd.DataFrame, labels: dict[str, str] | None = None) -> plt.Figure:
    """Each proxy's mean Kendall tau as a fraction of the noise ceiling, with its 95% interval over tasks, one
    marker per regime: 1 is as well as the seeds let anyone rank the experts, 0 no better than chance.

    ``summary`` columns: regime, proxy, fraction_of_ceiling, fraction_of_ceiling_low, fraction_of_ceiling_high
    (regimes and proxies in the order to plot)."""
    regimes = list(dict.fromkeys(summary.regime))
    proxies = list(dict.fromkeys(summary.proxy))
    names = {**PROXY_LABELS, **(labels or {})}
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
    _legend_outside(ax, title="regime", fontsize=8)
    _caption(fig, "Each mark: a proxy's Kendall tau with the experts' fine-tuned accuracies, mean over tasks, over "
             "the split-half noise ceiling (seed noise alone keeps tau below 1). Error bars: 95% bootstrap-t "
             "intervals over tasks (docs/analysis_plan.md).")  # fmt: skip
    return _done(fig)

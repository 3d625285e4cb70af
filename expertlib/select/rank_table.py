"""What a ranking says (:mod:`expertlib.rank`): one row per model in a stated order, B once, fine-tuned accuracy
beside its chance level and a 95% binomial interval, an opening line on the images, a terminal summary that
fits 100 columns, and the figure. The full table goes to ``ranking.csv`` and ``ranking.md``.

The order: the first proxy's score, best first; a tie goes to the next proxy's score (in the order the proxies
were given), then to the cheaper model (fewer GFLOPs for its features and score), then to the name. Each proxy's
own rank (``<proxy>_rank``) keeps its ties: tied models share the better rank.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

TIE_RULE = ("by the first proxy's score; a tie goes to the next proxy's score, then to the cheaper model "
            "(fewer GFLOPs), then to the name")  # fmt: skip
WIDTH = 100  # the terminal summary's widest line


def merge_same_weights(cands: Sequence, fingerprints: Sequence[str]) -> tuple[list, dict[str, list[str]]]:
    """One candidate per set of identical weights (equal
    :meth:`~expertlib.select.zoo.ModelCandidate.fingerprint`): B, the base of every expert bank and any copy
    of it, is ranked once. A set holding a bank's base is named ``B`` (``B (<bank>)`` where banks have
    different bases); another set keeps its first name. Returns the candidates kept and, by their new name,
    every name the set was given."""
    groups: dict[str, list] = {}
    for c, f in zip(cands, fingerprints, strict=True):
        groups.setdefault(f, []).append(c)
    based = [g for g in groups.values() if any(c.name.endswith(":base") for c in g)]
    kept, names = [], {}
    for g in groups.values():
        name = g[0].name
        if g in based:
            bank = next(c.name for c in g if c.name.endswith(":base")).removesuffix(":base")
            name = "B" if len(based) == 1 else f"B ({bank})"
        kept.append(dataclasses.replace(g[0], name=name) if name != g[0].name else g[0])
        names[name] = [c.name for c in g]
    return kept, names


def order(wide: pd.DataFrame, proxies: Sequence[str]) -> pd.DataFrame:
    """The rows in the ranking's order (:data:`TIE_RULE`), with ``rank`` 1..n as the first column."""
    present = [p for p in proxies if p in wide]
    cost = f"{present[0]}_gflops" if present and f"{present[0]}_gflops" in wide else None
    keys = [*present, *([cost] if cost else []), "model"]
    out = wide.sort_values(keys, ascending=[False] * len(present) + [True] * (len(keys) - len(present)),
                           na_position="last", kind="stable").reset_index(drop=True)  # fmt: skip
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


def ties(wide: pd.DataFrame, proxies: Sequence[str]) -> list[str]:
    """One line per group of models that tie on the first proxy: who, at which ranks, and how they were ordered."""
    first = next((p for p in proxies if p in wide), None)
    if first is None:
        return []
    out = []
    for score, g in wide.dropna(subset=[first]).groupby(first, sort=False):
        if len(g) > 1:
            out.append(f"ranks {g['rank'].min()}-{g['rank'].max()} tie on {first} ({score:.4g}): "
                       f"{', '.join(g.model)}")  # fmt: skip
    return out


def binomial_columns(correct: dict[str, int], n: int, chance: float) -> pd.DataFrame:
    """Per fine-tuned model: test accuracy, its 95% Clopper-Pearson interval over the ``n`` test images
    (``scipy.stats.binomtest``), the number of test images and the chance level (the most frequent test class's
    share: what always guessing it scores)."""
    from scipy.stats import binomtest

    rows = []
    for name, k in correct.items():
        ci = binomtest(int(k), int(n)).proportion_ci(0.95, method="exact")
        rows.append({"model": name, "finetune_accuracy": k / n, "finetune_ci_low": ci.low,
                     "finetune_ci_high": ci.high, "finetune_test_images": n, "chance": chance})  # fmt: skip
    return pd.DataFrame(rows, columns=["model", "finetune_accuracy", "finetune_ci_low", "finetune_ci_high",
                                       "finetune_test_images", "chance"])  # fmt: skip


def describe_images(images, source: str, test_fraction: float, seed: int, ignored_csv: Path) -> str:
    """The opening line: what was found (classes, images per split and class) and how the test split was made."""
    counts = pd.Series(images.splits).value_counts()
    per_split = ", ".join(f"{int(counts[s])} {s}" for s in ("train", "val", "test") if s in counts)
    train = np.bincount(images.labels[images.split("train")], minlength=len(images.classes))
    shown = ", ".join(images.classes[:6]) + (
        f", ... ({len(images.classes) - 6} more)" if len(images.classes) > 6 else ""
    )
    how = ("splits as given" if getattr(images, "split_given", False) else
           f"test: {test_fraction:.0%} of each class, seed {seed}")  # fmt: skip
    reasons = pd.Series([r.split(":")[0] for _, r in images.ignored]).value_counts()
    left = (f"; left out {len(images.ignored)} files or folders ({'; '.join(f'{n} {r}' for r, n in reasons.items())}), "
            f"listed in {ignored_csv}" if images.ignored else "")  # fmt: skip
    span = f"{train.min()}" if train.min() == train.max() else f"{train.min()}-{train.max()}"
    return (f"found {len(images.classes)} classes ({shown}) in {source}: {per_split} images ({how}; {span} training "
            f"images per class){left}")  # fmt: skip


def summary_text(wide: pd.DataFrame, proxies: Sequence[str], merged: dict[str, list[str]] | None = None,
                 rows: int = 15, width: int = WIDTH) -> str:  # fmt: skip
    """The terminal summary: rank, model, as many proxy scores as fit in ``width`` columns, fine-tuned accuracy
    with its interval; then the ties, B's other names, the chance level, and where the full table is."""
    ft = "finetune_accuracy" in wide and wide.finetune_accuracy.notna().any()
    room = width - 6 - 2 - (24 if ft else 0)
    present = [p for p in proxies if p in wide]
    shown = present[: max(1, min(len(present), (room - 20) // 9))]
    name_w = min(36, max(5, room - 9 * len(shown)), max(len(m) for m in wide.model) if len(wide) else 5)
    cut = lambda s: s if len(s) <= name_w else s[: name_w - 3] + "..."  # noqa: E731
    lines = ["rank  " + "model".ljust(name_w) + "".join(f"{p[:8]:>9}" for p in shown)
             + ("  fine-tuned [95% CI]" if ft else "")]  # fmt: skip
    for r in wide.head(rows).itertuples(index=False):
        cells = "".join(f"{getattr(r, p):>9.4f}" if pd.notna(getattr(r, p)) else f"{'-':>9}" for p in shown)
        acc = ""
        if ft and pd.notna(r.finetune_accuracy):
            acc = f"  {r.finetune_accuracy:.3f} [{r.finetune_ci_low:.2f}, {r.finetune_ci_high:.2f}]"
        lines.append(f"{r.rank:>4}  {cut(r.model).ljust(name_w)}{cells}{acc}")
    if len(wide) > rows:
        lines.append(f"      ... {len(wide) - rows} more models")
    notes = [f"order: {TIE_RULE}."] + ties(wide, proxies)
    notes += [
        f"{n} = {' = '.join(a)} (the same weights, ranked once)"
        for n, a in (merged or {}).items()
        if len(a) > 1
    ]
    if ft:
        r = wide.dropna(subset=["finetune_accuracy"]).iloc[0]
        notes.append(f"fine-tuned accuracy on {int(r.finetune_test_images)} test images; chance (always the most "
                     f"frequent class) {r.chance:.3f}; brackets: 95% Clopper-Pearson interval")  # fmt: skip
    if len(shown) < len(present):
        notes.append(f"not shown: {', '.join(present[len(shown) :])}")
    wrapped = [w for n in notes for w in textwrap.wrap(n, width, subsequent_indent="  ")]
    return "\n".join([*lines, *wrapped])


def write_ranking(wide: pd.DataFrame, proxies: Sequence[str], out_dir: Path,
                  merged: dict[str, list[str]] | None = None) -> None:  # fmt: skip
    """``ranking.csv`` (the full table), ``ranking.md`` (the same, after the order's rule and notes) and
    ``ranking.png``/``.svg``, each written atomically."""
    from expertlib.analysis import plots
    from expertlib.utils.runtime import atomic_write_csv, atomic_write_text

    atomic_write_csv(out_dir / "ranking.csv", wide)
    notes = [f"Models are ordered {TIE_RULE}.", *ties(wide, proxies)]
    notes += [
        f"{n}: the same weights as {', '.join(a)}, ranked once."
        for n, a in (merged or {}).items()
        if len(a) > 1
    ]
    atomic_write_text(out_dir / "ranking.md", "\n\n".join(notes) + "\n\n" + plots.to_markdown(wide))
    plots.save_figure(ranking_plot(wide, proxies), out_dir / "ranking")


def ranking_plot(wide: pd.DataFrame, proxies: Sequence[str]):
    """Each proxy's score per model (in the ranking's order, best on top), and fine-tuned test accuracy with its
    95% interval and the chance level where the top models were fine-tuned: does the proxy's order hold up?
    Every bar grows from the panel's worst value, so a longer bar is a better score for every proxy, negative
    ones (LEEP, LogME) too."""
    from expertlib.analysis.plots import PROXY_LABELS, _caption, _done, plt, sns

    panels = [p for p in proxies if p in wide] + (
        ["finetune_accuracy"] if "finetune_accuracy" in wide else []
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 1.5, 0.45 * len(wide) + 1.8), sharey=True,
                             squeeze=False)  # fmt: skip
    y = np.arange(len(wide))
    for ax, col in zip(axes[0], panels, strict=True):
        vals = wide[col].to_numpy(float)
        accuracy = col == "finetune_accuracy"
        finite = vals[np.isfinite(vals)]
        span = float(np.ptp(finite)) if len(finite) else 1.0
        start = (
            0.0
            if accuracy or not len(finite) or finite.min() >= 0
            else float(finite.min()) - 0.1 * (span or 1.0)
        )
        ax.barh(
            y,
            np.nan_to_num(vals - start),
            left=start,
            color=sns.color_palette("colorblind")[2 if accuracy else 0],
        )
        if accuracy and "finetune_ci_low" in wide:
            err = np.vstack([vals - wide.finetune_ci_low, wide.finetune_ci_high - vals])
            ax.errorbar(vals, y, xerr=np.nan_to_num(err), fmt="none", color="black", capsize=2, lw=0.8)
            ax.axvline(float(wide.chance.dropna().iloc[0]), color="grey", ls="--", lw=0.8)
        for yi, v in zip(y, vals, strict=True):
            if not np.isnan(v):
                ax.text(v, yi, f" {v:.3g}", va="center", fontsize=7)
        top = float(finite.max()) if len(finite) else 1.0
        ax.set_xlim(start, 1.12 if accuracy else top + 0.3 * (span or abs(top) or 1.0))
        ax.set_title("fine-tuned test accuracy" if accuracy else PROXY_LABELS.get(col, col), fontsize=9)
        ax.set_xlabel("better ->", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y)
    axes[0][0].set_yticklabels(wide.model, fontsize=8)
    axes[0][0].invert_yaxis()
    if "finetune_ci_low" in wide:
        _caption(fig, "Fine-tuned accuracy: error bars are the 95% Clopper-Pearson interval over the test images; "
                 "dashed line: chance (always the most frequent test class).")  # fmt: skip
    return _done(fig)

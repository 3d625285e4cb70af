"""The analysis plan's hypotheses tested on a run: each evaluated by what it measures (fine-tuned accuracy of
two methods, experts' specialisation, adapter against full experts, the cost ratio, rank agreement, one proxy's
rank agreement against another's; a regime "<k>-shot vs 1k" compares gains across regimes), then corrected
within its family (Holm for the confirmatory ones, Benjamini-Hochberg q-values for the rest) and given the
plan's verdict."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from expertlib.analysis.stats import Comparison, bh_q, compare, compare_per_task, holm
from expertlib.datasets.fewshot import FULL_REGIME, regime, split_name
from expertlib.models.candidates import BASE, EXTRA
from expertlib.pipeline import analysis as A
from expertlib.pipeline.methods import (
    ORACLE_REFUSED,
    design_sizes,
    gain_over_base,
    in_pool,
    in_regime,
    method_runs,
)
from expertlib.select.prior import PRIOR_PROXIES
from expertlib.select.proxies import PAPER_PROXY, PROXIES


def every_expert_seconds(runs: pd.DataFrame, picks: pd.DataFrame) -> pd.Series:
    """Per task, the wall time of fine-tuning every expert once (seed 0): measured where every expert was
    fine-tuned, else (``experts_scored`` in ``picks``) the mean fine-tune of those that were, times the number
    of experts."""
    ft = runs[(runs["mode"] == "finetune") & (runs.seed == 0)]
    by_task = ft[in_pool(ft)].groupby("task").seconds
    if "experts_scored" not in picks:
        return by_task.sum()
    return by_task.mean() * picks.set_index("task").experts_scored.reindex(by_task.mean().index)


def cost_ratios(runs: pd.DataFrame, picks: pd.DataFrame) -> pd.Series:
    """Per task, log10 of the wall time of fine-tuning every expert once (seed 0) over the kNN selection's."""
    if "knn_seconds" not in picks or "seconds" not in runs:
        return pd.Series(dtype=float)
    every = every_expert_seconds(runs[runs["mode"] == "finetune"], picks)
    return np.log10(every / picks.set_index("task").knn_seconds).dropna()


def _available(runs: pd.DataFrame, picks: pd.DataFrame, method: str) -> bool:
    if method in PROXIES or method in PRIOR_PROXIES:
        return method in picks
    if method == "dat":
        return bool((runs.kind == "dat").any())
    if method in (BASE, EXTRA):
        return bool((runs.model == method).any())
    return True  # random, oracle: from the expert pool


# -- one evaluator per measure -------------------------------------------------------------------------------------
Runs = pd.DataFrame


def _specialisation(h: A.Hypothesis, runs: Runs, picks: Runs, quality: Runs, spec: Runs | None, avf: Runs,
                    test: dict) -> Comparison | None:  # fmt: skip
    """Experts on their own upstream subsets against B, one kNN measurement each (paired over experts)."""
    own = (spec[(spec.region == "own") & (spec.kind == "adapter")].pivot_table(index="expert", columns="model",
                                                                               values="knn")
           if spec is not None else pd.DataFrame())  # fmt: skip
    if "adapter_expert" not in own:
        return None
    return compare_per_task((own["adapter_expert"] - own[BASE]).to_numpy(), **test)


def _related_tasks(h: A.Hypothesis, runs: Runs, picks: Runs, quality: Runs, spec: Runs | None, avf: Runs,
                   test: dict) -> Comparison | None:  # fmt: skip
    """Adapter against full experts, fine-tuned on the tasks each full expert relates to."""
    both = avf.groupby("expert").kind.nunique() == 2 if len(avf) else pd.Series(dtype=bool)
    pairs = [(r.expert, r.tasks) for r in avf.itertuples() if r.kind == "full" and both.get(r.expert, False)]
    if not pairs:
        return None
    ft = in_regime(runs, FULL_REGIME)
    ft = ft[ft["mode"] == "finetune"]
    take = lambda kind: pd.concat([ft[(ft.kind == kind) & (ft.expert == e) & ft.task.isin(t.split(","))]  # noqa: E731
                                   for e, t in pairs])  # fmt: skip
    return compare(take(h.a), take(h.b), **test)


def _cost_ratio(h: A.Hypothesis, runs: Runs, picks: Runs, quality: Runs, spec: Runs | None, avf: Runs,
                test: dict) -> Comparison | None:  # fmt: skip
    """log10 of fine-tuning every expert's wall time over the kNN selection's, per task."""
    logs = cost_ratios(in_regime(runs, FULL_REGIME), in_regime(picks, FULL_REGIME))
    return compare_per_task(logs.to_numpy(), **test) if len(logs) else None


def _rank_agreement(h: A.Hypothesis, runs: Runs, picks: Runs, quality: Runs, spec: Runs | None, avf: Runs,
                    test: dict) -> Comparison | None:  # fmt: skip
    """kNN's Kendall tau per task at 1k minus at the few-shot regime (``<k>-shot vs 1k``)."""
    few = _few_shot_regime(h, runs)
    if few is None:
        return None
    q = quality[quality.proxy == PAPER_PROXY].assign(
        full_task=lambda d: d.task.map(lambda t: split_name(t)[0])
    )
    full, other = (q[q.regime == r].set_index("full_task").kendall_tau for r in (FULL_REGIME, few))
    d = (full - other).dropna()
    return compare_per_task(d.to_numpy(), **test) if len(d) else None


def _proxy_tau(h: A.Hypothesis, runs: Runs, picks: Runs, quality: Runs, spec: Runs | None, avf: Runs,
               test: dict) -> Comparison | None:  # fmt: skip
    """Per task of the hypothesis's regime, proxy ``a``'s Kendall tau-b minus proxy ``b``'s (both against the
    experts' mean fine-tuned accuracy), paired over the tasks where both were scored."""
    q = quality[quality.regime == h.regime] if "regime" in quality else quality.iloc[:0]
    a, b = (q[q.proxy == p].set_index("task").kendall_tau for p in (h.a, h.b))
    d = (a - b).dropna()
    return compare_per_task(d.to_numpy(), **test) if len(d) else None


def _accuracy(h: A.Hypothesis, runs: Runs, picks: Runs, quality: Runs, spec: Runs | None, avf: Runs,
              test: dict) -> Comparison | None:  # fmt: skip
    """Fine-tuned accuracy of method ``a`` minus ``b`` in the hypothesis's regime; for ``<k>-shot vs 1k``, ``a``'s
    gain over B at the few-shot regime minus its gain at 1k."""
    if _gain_difference(h):
        few = _few_shot_regime(h, runs)
        if few is None or not _available(runs, picks, h.a):
            return None
        return compare(
            gain_over_base(runs, picks, few, h.a), gain_over_base(runs, picks, FULL_REGIME, h.a), **test
        )
    rr, pr = in_regime(runs, h.regime), in_regime(picks, h.regime)
    if not len(rr) or not (_available(rr, pr, h.a) and _available(rr, pr, h.b)):
        return None
    c = compare(method_runs(rr, pr, h.a), method_runs(rr, pr, h.b), **test)
    return c if c.tasks else None


VS_FULL = f" vs {FULL_REGIME}"


def _gain_difference(h: A.Hypothesis) -> bool:
    return h.regime.endswith(VS_FULL)


def _few_shot_regime(h: A.Hypothesis, runs: Runs) -> str | None:
    """The few-shot regime of a ``<k>-shot vs 1k`` hypothesis, if this run has it."""
    few = h.regime.removesuffix(VS_FULL)
    return few if few in set(runs.task.map(regime)) else None


Evaluator = Callable[..., Comparison | None]
EVALUATE: dict[str, tuple[Evaluator, str]] = {
    A.ACCURACY: (_accuracy, "tasks"),
    A.SPECIALISATION: (_specialisation, "experts"),
    A.RELATED_TASKS: (_related_tasks, "tasks"),
    A.COST_RATIO: (_cost_ratio, "tasks"),
    A.RANK_AGREEMENT: (_rank_agreement, "tasks"),
    A.PROXY_TAU: (_proxy_tau, "tasks"),
}
"""Each measure of the analysis plan: how a run answers it, and what its comparison pairs."""
NOTES = {
    A.COST_RATIO: " Wall times at this scale's fine-tuning budget; at the paper's budget see "
    "results/benchmarks/selection_cost_paper*.csv."
}


def evaluate(h: A.Hypothesis, runs: Runs, picks: Runs, quality: Runs, spec: Runs | None,
             avf: Runs) -> Comparison | None:  # fmt: skip
    """The paired comparison ``h`` asks for, by its measure, or None where this scale's runs cannot answer it."""
    fn, _ = EVALUATE[h.measure]
    return fn(h, runs, picks, quality, spec, avf, dict(null=h.margin, alternative=h.alternative))


def oracle_note(picks: Runs, halves: Runs | None, oracle_on_val: bool) -> str:
    """How the oracle of a hypothesis was chosen and judged, and, where the scale restricts its pool to kNN's top
    experts, that it is then bounded by kNN's own ranking (so oracle - kNN leans towards 0)."""
    if halves is not None:
        note = " Judged on test half B at seeds 1+, the oracle chosen on half A at seed 0."
    elif not oracle_on_val:
        return f" The {ORACLE_REFUSED}."
    else:
        note = ""
    sizes = design_sizes(picks)
    if sizes is not None:
        scored, _, pool = sizes
        if pool < scored:
            note += (f" The oracle's pool is kNN's top {pool} of {scored} experts: it cannot beat kNN's ranking "
                     "beyond that pool, so an oracle - kNN difference leans towards 0.")  # fmt: skip
    return note


def hypothesis_table(runs: Runs, picks: Runs, quality: Runs, spec: Runs | None, avf: Runs,
                     oracle_on_val: bool = False, halves: Runs | None = None) -> pd.DataFrame:  # fmt: skip
    """Every hypothesis of the analysis plan (for this run's few-shot regimes), tested as planned: estimate, the
    bootstrap-t interval, the sign-flip p, Holm-adjusted p (a confirmatory family) or BH q-value (an exploratory
    one), each within its family, and the verdict.
    A hypothesis this scale cannot test is listed as such and left out of the corrections. ``halves``
    (:func:`expertlib.pipeline.methods.halved_runs`): where given, every hypothesis about the oracle is judged
    on test half B, the oracle chosen on half A."""
    shots = sorted({int(r.split("-")[0]) for r in runs.task.map(regime) if r != FULL_REGIME})
    rows = []
    for h in A.hypotheses(tuple(shots)):
        oracle = "oracle" in (h.a, h.b)
        c = evaluate(h, halves if oracle and halves is not None else runs, picks, quality, spec, avf)
        note = NOTES.get(h.measure, oracle_note(picks, halves, oracle_on_val) if oracle else "")
        refused = oracle and halves is None and not oracle_on_val
        rows.append({"id": h.id, "family": h.family, "claim": h.claim, "regime": h.regime,
                     "comparison": f"{h.a} - {h.b}", "measure": h.measure, "null": h.margin,
                     "alternative": h.alternative, "post_hoc": h.post_hoc,
                     "estimate": c.mean if c else np.nan, "ci_low": c.ci_low if c else np.nan,
                     "ci_high": c.ci_high if c else np.nan, "tasks": c.tasks if c else 0,
                     "seeds": c.seeds if c else 0, "p": c.p if c else np.nan,
                     "evidence": (c.evidence(EVALUATE[h.measure][1]) + ("." + note if note else "")) if c else
                     note.strip() if refused else "not testable at this scale (no runs of these methods)"})  # fmt: skip
    table = pd.DataFrame(rows)
    table["p_adjusted"], table["adjustment"] = np.nan, ""
    for family, index in table.groupby(
        "family", sort=False
    ).groups.items():  # each family corrected on its own
        family_wise = family in A.HOLM_FAMILIES
        table.loc[index, "p_adjusted"] = (holm if family_wise else bh_q)(
            table.loc[index, "p"].to_numpy(float)
        )
        table.loc[index, "adjustment"] = "Holm" if family_wise else "BH q-value"
    table["verdict"] = [A.verdict(r.p, r.p_adjusted, r.ci_low, r.ci_high, r.null, r.alternative)
                        for r in table.itertuples()]  # fmt: skip
    return table[["id", "family", "claim", "regime", "comparison", "estimate", "ci_low", "ci_high", "p",
                  "p_adjusted", "adjustment", "verdict", "tasks", "seeds", "null", "alternative", "post_hoc",
                  "measure", "evidence"]]  # fmt: skip

"""The analysis plan: every hypothesis the report tests, fixed before the run that tests it.

Four families (docs/analysis_plan.md gives the reasons), two for the paper and this project's study of it:

- **confirmatory**: the paper's claims, on VTAB-1k-style tasks (the full 1k regime). Each is a paired
  comparison over tasks (per task, the mean difference over the seeds both methods ran), tested by an exact
  sign-flip test, with a studentised bootstrap 95% interval (the interval a coverage simulation chose,
  :func:`expertlib.analysis.stats.interval_coverage`). Holm's correction over the family; the verdict
  "supported" needs both the corrected p below 0.05 and the interval on the claimed side.
- **exploratory**: this project's own hypotheses (the oracle, the other proxies, the few-shot regimes,
  B+extra's own gain, how rank agreement moves with fewer shots). Benjamini-Hochberg q-values over the
  family; reported as exploratory, never as a verdict on the paper. Hypotheses added after seeing results
  are marked ``post_hoc``.

and two for the proxies of issue #42 (PACTran, SFDA, the shrunk H-score, resampled kNN, the prior from past
transfers and the hybrid), planned before any of them was scored on the cpu scale's fine-tunes:

- **selection-confirmatory**: one hypothesis, "at 5-shot the hybrid's mean tau exceeds kNN's" (per task, the
  hybrid's Kendall tau-b minus kNN's; sign-flip test, bootstrap-t interval, Holm within the family);
- **selection-exploratory**: the other regimes, the prior alone, the nested weight, each new proxy against kNN,
  the hybrid's pick against B and kNN's pick; Benjamini-Hochberg q-values within the family.

A hypothesis a scale cannot test (no upstream images, no DAT models, no few-shot regime) is listed as such.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from expertlib.datasets.fewshot import FULL_REGIME
from expertlib.models.candidates import BASE, EXTRA
from expertlib.select.proxies import PAPER_PROXY

Family = Literal["confirmatory", "exploratory", "selection-confirmatory", "selection-exploratory"]
HOLM_FAMILIES = ("confirmatory", "selection-confirmatory")
"""The families corrected family-wise (Holm); the others get Benjamini-Hochberg q-values."""
ALPHA = 0.05
VERDICTS = ("supported", "different: A better", "different: B better", "contradicted",
            "not shown", "no difference shown", "not testable at this scale")  # fmt: skip
"""Every verdict :func:`verdict` gives, the decided ones first."""
UNDECIDED = VERDICTS[4:]
"""The verdicts of a difference not shown either way (or not testable)."""


def verdict(p: float, p_adjusted: float, ci_low: float, ci_high: float, null: float, alternative: str) -> str:
    """Supported: the corrected test below ALPHA and the interval on the claimed side; contradicted: the interval
    wholly on the other side; else not shown (a difference not shown is not shown to be absent). Two-sided
    hypotheses: a difference, either way, or none shown."""
    if np.isnan(p):
        return "not testable at this scale"
    significant = p_adjusted < ALPHA
    if alternative == "two-sided":
        if significant and (ci_low > null or ci_high < null):
            return "different: " + ("A better" if ci_low > null else "B better")
        return "no difference shown"
    if significant and ci_low > null:
        return "supported"
    if ci_high < null:
        return "contradicted"
    return "not shown"


# What a hypothesis measures: the report evaluates each by dispatching on its measure (and a regime
# "<k>-shot vs 1k" compares the measure's gains across regimes), never on its id
ACCURACY = "fine-tune accuracy"
SPECIALISATION = "kNN accuracy on the expert's upstream subset, over experts"
RELATED_TASKS = "fine-tune accuracy on the tasks each expert relates to"
COST_RATIO = "log10 of the wall-time ratio per task"
RANK_AGREEMENT = "Kendall tau of kNN scores with the experts' mean accuracy, per task"
PROXY_TAU = "Kendall tau-b of proxy A's scores minus proxy B's, with the experts' mean accuracy, per task"
MEASURES = (ACCURACY, SPECIALISATION, RELATED_TASKS, COST_RATIO, RANK_AGREEMENT, PROXY_TAU)
OTHER_PROXIES = ("linear", "logme", "hscore", "leep", "nce")
"""The proxies beside the paper's two that the exploratory family compares with kNN (those the plan of
2026-12-01 named; the later ones are the selection families')."""
NEW_PROXIES = {"pactran_gauss": ("g", "PACTran-Gaussian"), "pactran_dir": ("d", "PACTran-Dirichlet"),
               "sfda": ("s", "SFDA"), "hscore_lw": ("w", "the Ledoit-Wolf H-score"),
               "knn_resampled": ("r", "kNN over resampled support sets")}  # fmt: skip
"""The registry's proxies added by issue #42, each compared with kNN in the selection-exploratory family: its
hypotheses' id letter and its name in their claims."""


@dataclass(frozen=True)
class Hypothesis:
    """``a`` minus ``b`` (methods of :func:`expertlib.pipeline.methods.method_runs`, or a study's own measure)
    in ``regime``, greater than ``margin`` (``alternative="greater"``) or different from it ("two-sided")."""

    id: str
    family: Family
    claim: str
    a: str
    b: str
    regime: str = FULL_REGIME  # "1k", "5-shot", "25-shot", or "<k>-shot vs 1k" (a difference of gains)
    measure: str = ACCURACY  # one of MEASURES
    margin: float = 0.0
    alternative: Literal["greater", "two-sided"] = "greater"
    post_hoc: bool = False  # added after the results it is tested on were seen


def _confirmatory() -> list[Hypothesis]:
    c = "confirmatory"
    return [
        Hypothesis("P1", c, "The kNN-selected expert transfers better than the generic model B", "knn", BASE),
        Hypothesis(
            "P2", c, "kNN selection beats picking an expert at random (its expectation)", "knn", "random"
        ),
        Hypothesis("P3", c, "The kNN pick beats the compute-matched control B+extra", "knn", EXTRA),
        Hypothesis("P4", c, "The domain-prediction pick transfers better than B", "domain", BASE),
        Hypothesis(
            "P5",
            c,
            "kNN is the better proxy: its pick transfers better than domain prediction's",
            "knn",
            "domain",
        ),  # fmt: skip
        Hypothesis(
            "P6",
            c,
            "The kNN pick transfers at least as well as DAT-style re-training (within 0.02)",
            "knn",
            "dat",
            margin=-0.02,
        ),  # fmt: skip
        Hypothesis(
            "P7",
            c,
            "Experts specialise: each beats B on held-out images of its own upstream subset",
            "expert",
            BASE,
            measure=SPECIALISATION,
        ),  # fmt: skip
        Hypothesis(
            "P8",
            c,
            "Adapter experts transfer about as well as full experts (within 0.02)",
            "adapter",
            "full",
            measure=RELATED_TASKS,
            margin=-0.02,
        ),  # fmt: skip
        Hypothesis(
            "P9",
            c,
            "Selection is at least 100x cheaper than fine-tuning every expert",
            "finetune-all",
            "knn-selection",
            measure=COST_RATIO,
            margin=2.0,
        ),  # fmt: skip
    ]


def _exploratory(few_shot: tuple[int, ...]) -> list[Hypothesis]:
    e = "exploratory"
    out = [
        Hypothesis("E1", e, "Some expert (the oracle) transfers better than B", "oracle", BASE),
        Hypothesis("E2", e, "The oracle beats the kNN pick (room left for a better proxy)", "oracle", "knn"),
        Hypothesis("E3", e, "DAT-style re-training transfers better than B", "dat", BASE),
        *(
            Hypothesis(
                f"E4{p[0]}{p[-1]}",
                e,
                f"The kNN pick and the {p} pick transfer differently",
                "knn",
                p,
                alternative="two-sided",
            )
            for p in OTHER_PROXIES
        ),  # fmt: skip
        Hypothesis("E5", e, "B+extra transfers better than B (extra upstream compute alone)", EXTRA, BASE),
    ]
    for k in few_shot:
        r = f"{k}-shot"
        out += [
            Hypothesis(f"F{k}a", e, f"At {r}: the kNN pick transfers better than B", "knn", BASE, r),
            Hypothesis(f"F{k}b", e, f"At {r}: kNN selection beats a random expert", "knn", "random", r),
            Hypothesis(f"F{k}c", e, f"At {r}: the kNN pick beats B+extra", "knn", EXTRA, r),
            Hypothesis(
                f"F{k}d",
                e,
                f"At {r}: the domain-prediction pick transfers better than B",
                "domain",
                BASE,
                r,
            ),  # fmt: skip
            Hypothesis(f"F{k}e", e, f"At {r}: the oracle transfers better than B", "oracle", BASE, r),
            Hypothesis(
                f"F{k}f",
                e,
                f"At {r}: the oracle transfers better than B+extra (expert choice beyond extra compute)",
                "oracle",
                EXTRA,
                r,
            ),  # fmt: skip
            Hypothesis(f"F{k}g", e, f"At {r}: B+extra transfers better than B", EXTRA, BASE, r),
            Hypothesis(
                f"F{k}h",
                e,
                f"Pre-training matters more with few images: the kNN pick's gain over B is "
                f"larger at {r} than at 1k",
                "knn",
                BASE,
                f"{r} vs 1k",
            ),  # fmt: skip
            Hypothesis(
                f"F{k}i",
                e,
                f"The oracle's gain over B is larger at {r} than at 1k",
                "oracle",
                BASE,
                f"{r} vs 1k",
                post_hoc=True,
            ),  # fmt: skip
            Hypothesis(
                f"F{k}j",
                e,
                f"kNN's rank agreement with fine-tuned accuracy falls at {r}",
                "tau@1k",
                f"tau@{r}",
                f"{r} vs 1k",
                measure=RANK_AGREEMENT,
            ),  # fmt: skip
        ]
    return out


SELECTION_REGIME = "5-shot"
"""Where the selection-confirmatory hypothesis is tested: the fewest images the cpu scale gives."""


def _regime_key(regime: str) -> str:
    return regime.removesuffix("-shot")  # "5-shot" -> "5", "1k" -> "1k"


def _selection(few_shot: tuple[int, ...]) -> list[Hypothesis]:
    """The proxies of issue #42: one confirmatory hypothesis at 5-shot, and an exploratory family over every
    regime the scale runs (ids T<regime><letters>)."""
    e, tau = "selection-exploratory", PROXY_TAU
    out = [Hypothesis("S1", "selection-confirmatory", "At 5-shot, the hybrid's mean tau exceeds kNN's", "hybrid",
                      PAPER_PROXY, SELECTION_REGIME, tau)]  # fmt: skip
    for r in [f"{k}-shot" for k in sorted(few_shot)] + [FULL_REGIME]:
        k, at = _regime_key(r), f"At {r}"
        if r != SELECTION_REGIME:
            out.append(
                Hypothesis(
                    f"T{k}h", e, f"{at}, the hybrid's mean tau exceeds kNN's", "hybrid", PAPER_PROXY, r, tau
                )
            )
        out += [
            Hypothesis(f"T{k}p", e, f"{at}, the prior from past transfers alone has a higher mean tau than kNN",
                       "prior", PAPER_PROXY, r, tau),
            Hypothesis(f"T{k}c", e, f"{at}, the hybrid's mean tau exceeds the prior's (the task's own images add to "
                       "past transfers)", "hybrid", "prior", r, tau),
            Hypothesis(f"T{k}n", e, f"{at}, the hybrid with a nested leave-one-task-out weight has a higher mean tau "
                       "than kNN", "hybrid_nested", PAPER_PROXY, r, tau),
            *(Hypothesis(f"T{k}{letter}", e, f"{at}, {name} and kNN differ in mean tau", p, PAPER_PROXY, r, tau,
                         alternative="two-sided") for p, (letter, name) in NEW_PROXIES.items()),
        ]  # fmt: skip
    out += [
        Hypothesis("T5a", e, "At 5-shot, the hybrid's pick transfers better than B", "hybrid", BASE, SELECTION_REGIME),
        Hypothesis("T5k", e, "At 5-shot, the hybrid's pick transfers better than kNN's pick", "hybrid", PAPER_PROXY,
                   SELECTION_REGIME),
    ]  # fmt: skip
    return out


def hypotheses(few_shot: tuple[int, ...] = (5, 25)) -> list[Hypothesis]:
    """Every hypothesis, confirmatory first, for a scale with these few-shot regimes."""
    hs = [*_confirmatory(), *_exploratory(tuple(few_shot)), *_selection(tuple(few_shot))]
    ids = [h.id for h in hs]
    if len(set(ids)) != len(ids):
        raise ValueError("two hypotheses share an id")
    unknown = [h.id for h in hs if h.measure not in MEASURES]
    if unknown:
        raise ValueError(f"hypotheses {unknown} name a measure the report cannot evaluate; known: {MEASURES}")
    return hs


def test_halves(task: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A task's test images cut into two fixed halves (a permutation seeded by the task's name): the oracle is
    chosen on the first (at seed 0) and judged, with everything it is compared with, on the second (at the
    other seeds), so no image both chooses and judges it."""
    order = np.random.default_rng(zlib.crc32(task.encode())).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])

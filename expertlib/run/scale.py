"""What a scale is: seven parts that say which settings change results, each setting by one name.

A scale is six recipes (what is read; how B, the experts, the selection and the fine-tunes are made; which
comparisons the study runs) and its runtime (how fast it runs). Every setting but those of :class:`Runtime`
can change results and enters the recipe of the steps that use it (:mod:`expertlib.pipeline.recipes`);
``micro_batch`` and ``stack_finetunes`` are the runtime settings that do, by changing the order of float sums
(compiled code agrees with eager within float32 tolerance; like the device, it is not part of a recipe). The scales
themselves are data in :mod:`expertlib.run.presets`.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from expertlib.datasets.embedded import EmbeddedSpec
from expertlib.datasets.hierarchy import ExpertRule
from expertlib.models.adapters import AdapterConfig


@dataclass(frozen=True)
class DataSettings:
    """What is read: the upstream and downstream data, the tasks and the resolution they train at."""

    source: Literal["embedded", "imagenet21k+vtab", "vtab"]  # "vtab": downstream tasks only, nothing upstream
    embedded: EmbeddedSpec | None
    tasks: tuple[str, ...]
    crop: int = 32
    precrop: int = 36
    # "fixed": every task at (precrop, crop); "hyperrule": BiT-HyperRule's per task, (160, 128) for images
    # smaller than 96 x 96 in area, else (512, 480), from the task's first training image
    task_resolution: Literal["fixed", "hyperrule"] = "fixed"
    # on-disk upstream data without a held-out list: images per class held out for upstream evaluation
    heldout_per_class: int = 10
    # read data_root/<name>/, writing the tiny on-disk fixture there first (expertlib.datasets.fixtures)
    writes_fixture: bool = False
    # the paper's released experts: a folder of their SavedModels under data_root, converted once into
    # models/released_experts.safetensors (None: only if that file is put there by hand)
    released_experts: str | None = None


@dataclass(frozen=True)
class UpstreamRecipe:
    """The generic model B: its architecture and how it is trained (or which released weights it loads)."""

    arch: str
    steps: int
    batch: int
    lr: float
    loss: Literal["softmax", "sigmoid"] = "sigmoid"
    schedule: Literal["cosine", "bit"] = "cosine"  # "bit": BiT's step decays
    # SGD weight decay of every upstream-style training (B, B+extra, experts, DAT): BiT's upstream recipe uses
    # 1e-4 (the paper scales); the embedded scales' recipes were chosen without it (0)
    weight_decay: float = 0.0
    # B from released weights instead of training it: a BiT .npz or timm checkpoint, relative to data_root
    weights: str | None = None


@dataclass(frozen=True)
class ExpertRecipe:
    """Which experts exist and how they are trained from B (also B+extra's and DAT's budget)."""

    names: tuple[str, ...] | None = None  # None: chosen from the hierarchy by rule
    rule: ExpertRule = field(default_factory=ExpertRule)
    full: tuple[str, ...] = ()  # experts that also get a full (whole-network) version
    # full experts' recipe, chosen per expert on held-out upstream images of its subset from this grid of
    # (steps, lr); empty: the adapter experts' recipe (steps, lr)
    full_steps: tuple[int, ...] = ()
    full_lrs: tuple[float, ...] = ()
    steps: int = 300
    batch: int = 128
    lr: float = 0.1
    adapter: AdapterConfig = field(default_factory=AdapterConfig)


@dataclass(frozen=True)
class SelectionRecipe:
    """The proxies' settings: kNN's, and how domain prediction reads B's upstream head."""

    knn_k: int = 5
    knn_metric: Literal["cosine", "euclidean"] = "cosine"
    # "auto": as B's head was trained (the scale's upstream loss; BiT-M's head, at the paper and released
    # scales, was trained with sigmoid cross-entropy); "softmax" or "sigmoid" to choose (docs/choices.md)
    domain_activation: Literal["auto", "softmax", "sigmoid"] = "auto"


@dataclass(frozen=True)
class TransferRecipe:
    """Fine-tuning on a task: BiT-HyperRule's shape, its length and learning rate chosen on val200 with B."""

    batch: int = 64
    steps: tuple[int, ...] = (100,)  # grid
    lrs: tuple[float, ...] = (0.03,)  # grid
    # which BiT-HyperRule (docs/choices.md): "bit-paper", the BiT paper's text (images of 96x96 px or more at
    # 448/384; no warm-up, x0.1 at 30/60/90% of the steps) or "bit-code", BiT's released bit_hyperrule.py
    # (512/480; warm-up 100 of 500 steps, x0.1 past 200/300/400); both (160, 128) below 96x96
    hyperrule: Literal["bit-paper", "bit-code"] = "bit-code"


@dataclass(frozen=True)
class Study:
    """Which comparisons run: seeds, few-shot regimes, baselines, which experts are fine-tuned, the oracle."""

    seeds: int = 3  # every fine-tuned candidate at this many seeds on every task
    # few-shot regimes beside the full tasks: every task again with this many training images per class
    # (``<task>@<k>shot``, :mod:`expertlib.datasets.fewshot`), through selection, transfer and the report
    few_shot: tuple[int, ...] = ()
    schedule_sweep: tuple[int, ...] = ()  # transfer lengths for the schedule-length study
    # DAT-style baseline: steps actually run per task to time it (None: its whole budget, the expert steps)
    dat_timing_steps: int | None = None
    # DAT-style baseline trained for its whole budget per task and fine-tuned like the other candidates
    dat_accuracy: bool = False
    # held-out upstream images the specialisation study embeds with every candidate (None: all of them)
    specialisation_images: int | None = None
    # which experts are fine-tuned: 0 and 0 fine-tune every expert at every seed (the embedded scales); else B,
    # each proxy's pick, ``random_experts`` experts drawn at random per task (the random expert's expectation
    # is their mean) and kNN's top ``oracle_pool`` (the oracle's pool)
    random_experts: int = 0
    oracle_pool: int = 0
    # the experts fine-tuned only for the random sample or the oracle pool (no proxy picked them) run at this
    # many seeds instead of ``seeds`` (None: all of them): the random expectation and the oracle are then
    # compared at those seeds only
    unpicked_seeds: int | None = None
    # where the oracle is chosen: "test_seed0" (best accuracy on one fixed half of the test images at seed 0, from
    # every fine-tune's stored predictions, judged on the other half at the other seeds; refused without them) or
    # "val200" (best val200 accuracy after training on train800 at seed 0, judged on test at every seed)
    oracle_on: Literal["test_seed0", "val200"] = "test_seed0"
    linear_probes: bool = True  # a frozen-feature linear classifier beside every candidate's fine-tunes


@dataclass(frozen=True)
class Runtime:
    """How fast it runs; the tests show these change no result (``micro_batch`` and ``stack_finetunes``: the order
    of float sums, so they enter the recipes)."""

    transfer_workers: int = 0  # CPU: single-threaded processes fine-tuning side by side (0: in this process)
    eval_batch: int = 500
    data_workers: int = 0  # worker processes decoding and augmenting training batches
    checkpoint_minutes: float = 0.0  # long trainings also checkpoint this often (0: by steps only)
    micro_batch: int = 0  # examples per forward/backward pass in every training (0: a whole batch at once)
    # torch.compile every training, feature extraction and evaluation: "auto" compiles on CUDA only (where it fuses
    # GroupNorm and weight standardisation; eager elsewhere), True or False to force it. Compiled agrees with eager
    # within float32 tolerance (tested on CPU); its GPU speed is measured by `make gpu-check`
    compile: bool | str = "auto"
    # fine-tunes of one structure, task and schedule trained together as one stacked model, this many at most
    # (expertlib.train.stacked; 0 or 1: each alone). On a GPU small models are launch-bound and K of them step
    # in about the time of one; on a CPU stacking measured slower than the pool
    # (results/benchmarks/many_models.csv)
    stack_finetunes: int = 0
    # under torchrun, each rank trains whole experts of the job list (one process each, no gradient traffic; the
    # same bits as one process) instead of every expert in turn with DDP over all ranks
    expert_sharding: bool = False


PARTS = {"data": DataSettings, "upstream": UpstreamRecipe, "expert": ExpertRecipe, "selection": SelectionRecipe,
         "transfer": TransferRecipe, "study": Study, "runtime": Runtime}  # fmt: skip
# a setting's one name (what presets, overrides and recipes say) -> (part, field)
SETTINGS: dict[str, tuple[str, str]] = {
    "data": ("data", "source"), "arch": ("upstream", "arch"), "generic_weights": ("upstream", "weights"),
    **{f"upstream_{f}": ("upstream", f) for f in ("steps", "batch", "lr", "loss", "schedule", "weight_decay")},
    "experts": ("expert", "names"), "expert_rule": ("expert", "rule"), "full_experts": ("expert", "full"),
    "full_expert_steps": ("expert", "full_steps"), "full_expert_lrs": ("expert", "full_lrs"),
    **{f"expert_{f}": ("expert", f) for f in ("steps", "batch", "lr")}, "adapter": ("expert", "adapter"),
    **{f"transfer_{f}": ("transfer", f) for f in ("batch", "steps", "lrs")},
}  # fmt: skip
for _part, _cls in PARTS.items():  # every other field keeps its own name
    for _f in _cls.__dataclass_fields__:
        if (_part, _f) not in SETTINGS.values():
            SETTINGS[_f] = (_part, _f)

# the string settings and the values each accepts (checked when a Scale is made)
CHOICES: dict[str, tuple[str, ...]] = {
    "data": ("embedded", "imagenet21k+vtab", "vtab"),
    "upstream_loss": ("softmax", "sigmoid"),
    "upstream_schedule": ("cosine", "bit"),
    "knn_metric": ("cosine", "euclidean"),
    "domain_activation": ("auto", "softmax", "sigmoid"),
    "compile": ("auto", True, False),
    "task_resolution": ("fixed", "hyperrule"),
    "hyperrule": ("bit-paper", "bit-code"),
    "oracle_on": ("test_seed0", "val200"),
}
# the counts and their smallest sensible values
MINIMA: dict[str, int] = {"seeds": 1, "knn_k": 1, "transfer_batch": 1, "eval_batch": 1, "crop": 1, "precrop": 1,
                          "random_experts": 0, "oracle_pool": 0, "data_workers": 0, "transfer_workers": 0,
                          "micro_batch": 0, "stack_finetunes": 0}  # fmt: skip


@dataclass(frozen=True)
class Scale:
    """Every size the pipeline needs, in one place, in parts that say which settings change results."""

    name: str
    description: str
    data: DataSettings
    upstream: UpstreamRecipe
    expert: ExpertRecipe = field(default_factory=ExpertRecipe)
    selection: SelectionRecipe = field(default_factory=SelectionRecipe)
    transfer: TransferRecipe = field(default_factory=TransferRecipe)
    study: Study = field(default_factory=Study)
    runtime: Runtime = field(default_factory=Runtime)

    @classmethod
    def build(cls, name: str, description: str, **settings: Any) -> Scale:
        """A scale from its settings by their one name (:data:`SETTINGS`); unnamed ones keep their defaults."""
        by_part: dict[str, dict[str, Any]] = {p: {} for p in PARTS}
        for key, value in settings.items():
            part, f = _setting(key)
            by_part[part][f] = value
        return cls(name, description, **{p: PARTS[p](**kw) for p, kw in by_part.items()})

    def override(self, **settings: Any) -> Scale:
        """This scale with some settings changed (by their one name; ``name``/``description`` too)."""
        top = {k: settings.pop(k) for k in ("name", "description") if k in settings}
        by_part: dict[str, dict[str, Any]] = {}
        for key, value in settings.items():
            part, f = _setting(key)
            by_part.setdefault(part, {})[f] = value
        return replace(self, **top, **{p: replace(getattr(self, p), **kw) for p, kw in by_part.items()})

    def setting(self, key: str) -> Any:
        """A setting's value by its one name (``"expert_lr"`` is ``self.expert.lr``)."""
        part, f = _setting(key)
        return getattr(getattr(self, part), f)

    def __post_init__(self) -> None:
        """A mistyped setting is refused, naming the field and what it accepts, instead of silently picking
        another behaviour (any loss but "softmax" used to train sigmoid cross-entropy)."""
        for name, allowed in CHOICES.items():
            value = self.setting(name)
            if value not in allowed:
                close = difflib.get_close_matches(str(value), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"scale {self.name!r}: {name}={value!r} is not one of {', '.join(map(repr, allowed))}{hint}"
                )
        for name, low in MINIMA.items():
            value = self.setting(name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"scale {self.name!r}: {name}={value!r} must be a whole number >= {low}")

    @property
    def trains_upstream(self) -> bool:
        """Whether this scale trains B and experts (it reads upstream images); ``released`` does not."""
        return self.data.source != "vtab"

    @property
    def domain_activation(self) -> Literal["softmax", "sigmoid"]:
        """How domain prediction reads B's head: the scale's setting, "auto" resolved to the loss B's head was
        trained with (the released scales' BiT-M: sigmoid)."""
        chosen = self.selection.domain_activation
        return self.upstream.loss if chosen == "auto" else chosen

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _setting(key: str) -> tuple[str, str]:
    if key not in SETTINGS:
        close = difflib.get_close_matches(key, SETTINGS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown scale setting {key!r}{hint}")
    return SETTINGS[key]

"""Scale -> training recipes: the only place that turns a preset into a :class:`TrainConfig`.

The pipeline, the torchrun command line and the benchmarks all build their configs here, so B, B+extra, the
experts, the DAT-style baseline and transfer are trained the same way wherever they are trained. Pure
functions of the scale.
"""

from __future__ import annotations

from expertlib.run.scale import Scale
from expertlib.train.schedules import Schedule, upstream_schedule
from expertlib.train.training import TrainConfig, hyperrule_config


def upstream_config(
    scale: Scale, steps: int, lr: float, batch: int, seed: int = 0, device: str = "cpu"
) -> TrainConfig:
    """Upstream-style training (B, B+extra, experts, DAT): BiT's step schedule or a cosine, per the scale, with
    the scale's upstream loss and weight decay. No mixup: BiT's upstream recipe has none, and BiT-HyperRule
    uses it only for tasks of 20k images or more (VTAB-1k's have 1,000)."""
    sched = (
        upstream_schedule(steps, lr)
        if scale.upstream.schedule == "bit"
        else Schedule(steps, max(1, steps // 20), lr, kind="cosine")
    )
    return TrainConfig(sched, batch_size=batch, loss=scale.upstream.loss, seed=seed, device=device,
                       weight_decay=scale.upstream.weight_decay,
                       checkpoint_every=max(50, steps // 10), checkpoint_minutes=scale.runtime.checkpoint_minutes,
                       workers=scale.runtime.data_workers, micro_batch=scale.runtime.micro_batch, compile=scale.runtime.compile)  # fmt: skip


def generic_config(scale: Scale, seed: int = 0, device: str = "cpu", steps: int | None = None,
                   lr: float | None = None, batch: int | None = None) -> TrainConfig:  # fmt: skip
    """B on all upstream data (``steps``, ``lr``, ``batch``: overrides of the scale's upstream recipe)."""
    return upstream_config(scale, steps or scale.upstream.steps, lr or scale.upstream.lr,
                           batch or scale.upstream.batch, seed, device)  # fmt: skip


def expert_config(scale: Scale, seed: int = 0, device: str = "cpu") -> TrainConfig:
    """One expert's budget: also B+extra's (the compute-matched control) and the DAT-style re-training's."""
    return upstream_config(scale, scale.expert.steps, scale.expert.lr, scale.expert.batch, seed, device)


def transfer_config(scale: Scale, steps: int, lr: float, seed: int = 0, device: str = "cpu",
                    dataset_size: int = 1_000) -> TrainConfig:  # fmt: skip
    """Fine-tuning on a task of ``dataset_size`` training images: BiT-HyperRule in the scale's form
    (``hyperrule``), ``steps`` standing for its 500-step regime (VTAB-1k's 1,000 images, the pipeline's tasks);
    a task of 20k images or more trains 20x or 40x as long, with mixup (BiT's size regimes,
    :func:`~expertlib.train.schedules.bit_hyperrule`). Each fine-tune trains on one process (under torchrun
    the ranks share the job list instead, :mod:`expertlib.utils.jobs`)."""
    return hyperrule_config(dataset_size, lr, scale.transfer.hyperrule, steps, batch_size=scale.transfer.batch,
                            seed=seed, device=device, workers=scale.runtime.data_workers,
                            micro_batch=scale.runtime.micro_batch, data_parallel=False, compile=scale.runtime.compile)  # fmt: skip


# -- which settings make each step's results ------------------------------------------------------------------
# A step's recipe is the settings that change its results: its own and those of every step it builds on.
# Settings that only add work (more tasks, few-shot regimes, seeds) or change how it runs (workers, eval
# batch, checkpoint cadence, progress) are not part of it: the tests show they change nothing that exists.
_DATA = (
    "data",
    "embedded",
    "heldout_per_class",
    "crop",
    "precrop",
    "task_resolution",
    "arch",
    "writes_fixture",
)
_GENERIC = (*_DATA, "upstream_steps", "upstream_batch", "upstream_lr", "upstream_loss", "upstream_schedule",
            "generic_weights", "micro_batch", "upstream_weight_decay")  # fmt: skip
_EXPERT = ("expert_steps", "expert_batch", "expert_lr")
STEP_FIELDS: dict[str, tuple[str, ...]] = {
    "generic": _GENERIC,
    "extra": (*_GENERIC, *_EXPERT),
    "adapter": (*_GENERIC, *_EXPERT, "experts", "expert_rule", "adapter"),
    "full": (*_GENERIC, *_EXPERT, "full_experts", "full_expert_steps", "full_expert_lrs"),
}
STEP_FIELDS["specialisation"] = (*STEP_FIELDS["adapter"], *STEP_FIELDS["full"], "knn_k", "knn_metric",
                                 "specialisation_images")  # fmt: skip
# ``hyperrule`` sets the tasks' resolutions (what selection embeds at) and the fine-tunes' schedule
STEP_FIELDS["selection"] = (*STEP_FIELDS["adapter"], "knn_k", "knn_metric", "domain_activation", "random_experts",
                            "oracle_pool", "dat_timing_steps", "released_experts", "hyperrule")  # fmt: skip
STEP_FIELDS["transfer"] = (*STEP_FIELDS["selection"], *STEP_FIELDS["full"], "transfer_batch", "transfer_steps",
                           "transfer_lrs", "dat_accuracy", "oracle_on", "linear_probes",
                           "stack_finetunes", "task_augmentation")  # fmt: skip
STEP_FIELDS["schedule_sweep"] = (*STEP_FIELDS["transfer"], "schedule_sweep")


def step_recipe(scale: Scale, step: str, seed: int = 0) -> dict:
    """The settings (JSON values) that make ``step``'s results at ``scale`` and workspace ``seed``."""
    from dataclasses import asdict, is_dataclass

    def plain(v):
        if is_dataclass(v):
            return plain(asdict(v))
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    if step not in STEP_FIELDS:
        raise KeyError(f"no recipe for step {step!r}; steps: {', '.join(STEP_FIELDS)}")
    value = lambda f: RESOLVED[f](scale) if f in RESOLVED else scale.setting(f)  # noqa: E731
    return {**{f: plain(value(f)) for f in sorted(set(STEP_FIELDS[step]))}, "seed": seed}


# how the tasks are augmented when fine-tuned: flip and crop per task (BiT's Supplementary F; TaskInfo.flip, .crop)
TASK_AUGMENTATION = "flip and crop per task"
# what domain prediction's sigmoid reading scores (expertlib.select.proxies.domain_prediction_scores_sigmoid)
SIGMOID_READING = "sigmoid: expected count of classes present"
# settings recorded as what they resolve to, so that "auto" never hides a change of behaviour; the sigmoid reading
# is recorded with its statistic (it scored another one before: those outputs are refused)
RESOLVED = {
    "domain_activation": lambda scale: SIGMOID_READING if scale.domain_activation == "sigmoid" else "softmax",
    "task_augmentation": lambda scale: TASK_AUGMENTATION,
}
# settings added after outputs were recorded without them, with the behaviour the code had then: an output that
# lacks one was made under this value, and is refused where the recipe now asks for another
RECORDED_BEFORE = {
    "domain_activation": "softmax",
    "hyperrule": "bit-code",
    "task_augmentation": "flip per task, crop always",
}


# seeds of the pipeline's trainings, offset from the workspace seed (kept from the first cpu run)
GENERIC_SEED, EXTRA_SEED, EXPERT_SEED, DAT_SEED = 0, 1, 7, 11


def dat_steps(scale: Scale) -> int:
    """Steps the selection step runs to time the DAT-style baseline (the rest of its budget is extrapolated)."""
    return min(scale.expert.steps, scale.study.dat_timing_steps or scale.expert.steps)

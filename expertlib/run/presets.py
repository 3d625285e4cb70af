"""The scales, as data: every preset is a :class:`~expertlib.run.scale.Scale` built from its settings.

- ``smoke``: seconds; tests run every notebook at this scale. Tiny data, few steps; numbers mean nothing.
- ``cpu``: the embedded default that ``make reproduce`` runs; about 2 hours on a 2-core machine (12 tasks and
  their 5- and 25-shot versions, every candidate at 5 seeds).
- ``paper``: the paper's setting: BiT-M R50x1 on ImageNet-21k, the 48 released expert subtrees, VTAB-1k with
  BiT-HyperRule. Needs the data on disk (``data_root``) and GPUs; notebooks print the plan and the
  estimated compute before they start.
- ``released``: the paper's downstream half from public downloads alone: B is BiT-M R50x1 (its ``.npz``), the
  candidates are B and the 48 released experts (converted from their SavedModels), the tasks VTAB-1k's 19 at
  BiT-HyperRule's resolutions. No upstream image is read; nothing is trained upstream (notebooks 02 and 03
  say so). Each proxy's pick, a fixed random sample of experts and kNN's top ``oracle_pool`` are fine-tuned at
  every seed; the oracle is chosen on val200 (train800 -> val200 at seed 0), never on the judged test images.
- ``gpu``: the cpu scale's experiment and recipes on 19 VTAB-like embedded tasks at 20 seeds, every regime, the
  fine-tunes stacked on one GPU; ``gpu-smoke`` runs its code paths at smoke sizes in CI.
- ``released-smoke`` and ``paper-smoke``: those scales' code paths on tiny on-disk fixtures, in CI.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from typing import Any

from expertlib.datasets.embedded import EmbeddedSpec
from expertlib.datasets.embedded_tasks import CORE_TASKS, VTAB_LIKE_TASKS
from expertlib.datasets.hierarchy import PAPER_EXPERTS, ExpertRule
from expertlib.models.adapters import AdapterConfig
from expertlib.run.scale import Scale

__all__ = ["SCALES", "Scale", "get_scale", "CPU_TASKS", "SMOKE_TASKS", "GPU_SMOKE_TASKS"]

# The cpu scale runs all 12 embedded tasks (4 natural, 3 specialized, 5 structured), as VTAB runs all 19.
CPU_TASKS = CORE_TASKS
SMOKE_TASKS = ("digit_mirror", "land_cover", "sprite_xpos")

SCALES: dict[str, Scale] = {
    "smoke": Scale.build(
        name="smoke",
        description="seconds; every notebook in the tests; numbers mean nothing",
        data="embedded",
        arch="tiny",
        embedded=EmbeddedSpec(
            upstream_train_per_class=8,
            upstream_test_per_class=4,
            task_train=64,
            task_val=32,
            task_test=64,
            tasks=SMOKE_TASKS,
        ),
        tasks=SMOKE_TASKS,
        upstream_steps=12,
        upstream_batch=64,
        upstream_lr=0.1,
        expert_rule=ExpertRule(min_images=1, max_experts=3),
        full_experts=("digit",),
        expert_steps=4,
        expert_batch=32,
        full_expert_steps=(2, 4),
        full_expert_lrs=(0.03, 0.1),
        transfer_batch=32,
        transfer_steps=(4, 6),
        transfer_lrs=(0.03, 0.1),
        seeds=2,
        few_shot=(3,),
        knn_k=3,
        eval_batch=256,
        schedule_sweep=(3, 6),
        dat_accuracy=True,
    ),
    "cpu": Scale.build(
        name="cpu",
        description="the embedded default: about 2 hours on a 2-core CPU",
        data="embedded",
        arch="tiny",
        embedded=EmbeddedSpec(tasks=CPU_TASKS),
        tasks=CPU_TASKS,
        upstream_steps=2000,
        upstream_batch=128,
        upstream_lr=0.3,
        # BiT's sigmoid loss collapsed to all-negative predictions at this budget (0% held-out accuracy in a
        # full run); softmax cross-entropy trains B to 77% (see README, "Documented choices").
        upstream_loss="softmax",
        expert_rule=ExpertRule(min_images=1000),  # every subtree below the root: 14 experts, nested
        full_experts=("glyph", "photo", "sprite"),
        expert_steps=200,
        full_expert_steps=(100, 200),
        full_expert_lrs=(0.01, 0.03, 0.1),
        expert_batch=128,
        expert_lr=0.1,
        adapter=AdapterConfig(placement="unit_end", width=1.0, train_norms=True),
        transfer_batch=32,
        # 50 steps (1.6 epochs of train800val200) keep 12 tasks x 5 seeds x 16 candidates near 30 minutes; the
        # schedule sweep shows how the matching expert's lead changes with longer fine-tuning
        transfer_steps=(50,),
        transfer_lrs=(0.03, 0.1),
        # BiT's released code's schedule shape (warm-up 20%, decays past 40/60/80%), as the committed cpu results
        # were made; its resolution rule is unused at the fixed 32 px (docs/choices.md)
        hyperrule="bit-code",
        seeds=5,
        few_shot=(5, 25),
        transfer_workers=2,
        schedule_sweep=(25, 50, 100, 200),
        dat_timing_steps=20,
        dat_accuracy=True,
    ),
    "paper": Scale.build(
        name="paper",
        description="BiT-M R50x1 on ImageNet-21k, 48 experts, VTAB-1k; data on disk and GPUs",
        data="imagenet21k+vtab",
        arch="R50x1",
        embedded=None,
        tasks=(
            "caltech101",
            "cifar100",
            "dtd",
            "oxford_flowers102",
            "oxford_iiit_pet",
            "svhn",
            "sun397",
            "patch_camelyon",
            "eurosat",
            "resisc45",
            "diabetic_retinopathy",
            "clevr_count",
            "clevr_distance",
            "dmlab",
            "kitti_distance",
            "dsprites_location",
            "dsprites_orientation",
            "smallnorb_azimuth",
            "smallnorb_elevation",
        ),  # fmt: skip
        upstream_steps=450_000,  # BiT-M: 90 epochs of ImageNet-21k at batch 4096 would be ~300k; ours documented
        upstream_batch=4096,
        upstream_lr=0.48,  # BiT: 0.03 * batch / 256
        upstream_schedule="bit",
        upstream_weight_decay=1e-4,  # BiT's upstream recipe
        experts=PAPER_EXPERTS,
        full_experts=PAPER_EXPERTS,
        expert_steps=20_000,
        expert_batch=512,
        expert_lr=0.03,
        adapter=AdapterConfig(placement="unit_end", width=1 / 16, train_norms=True),
        # BiT-HyperRule as published: 500 steps for 1,000 examples at batch 512 and lr 0.003 (mixup off below 20k
        # images, resolution by image area, flips and crops per task as BiT's Supplementary F). BiT reports batch 128 at lr 0.001 as nearly equivalent on CIFAR-10/100
        # only: tables/plan_options.csv prices it as an option, labelled so
        transfer_batch=512,
        transfer_steps=(500,),
        transfer_lrs=(0.003,),
        # the BiT paper's text (448/384, x0.1 at 30/60/90%, no warm-up), which the paper under reproduction most
        # likely followed for its R50x1; BiT's released code ("bit-code": 512/480, warm-up) is priced beside it
        hyperrule="bit-paper",
        seeds=3,
        # off: VTAB-1k alone is the paper's setting; few_shot=(5, 25) would add two more passes of fine-tunes
        few_shot=(),
        # upstream trainings (B+extra, the experts) at BiT's pre-training resolution: random 224 px crops of images
        # resized to 256 (128 px is a priced plan option, docs/choices.md); the tasks use BiT-HyperRule's own
        crop=224,
        precrop=256,
        schedule_sweep=(),
        dat_timing_steps=50,
        generic_weights="BiT-M-R50x1.npz",  # the paper's B follows BiT-M; set None to train it from scratch
        data_workers=8,
        checkpoint_minutes=10.0,
        task_resolution="hyperrule",
        micro_batch=64,  # a batch of 512 in 8 accumulated passes of 64 (fine-tunes at 480 px, expert training)
        eval_batch=128,
        specialisation_images=5000,  # ~100 candidates x 2,048-d features of all 218k held-out images: 175 GB
    ),
}


# The gpu scale: the cpu scale's experiment (the same recipes for B, the experts and the fine-tunes) widened to
# VTAB-1k's 19 tasks (the 12 core tasks and 7 more built from the same sources, expertlib.datasets.embedded_tasks)
# at 20 seeds, every regime and every baseline; tasks are the unit of inference, seeds narrow the noise within
# each. On one GPU the many tiny fine-tunes train stacked, 64 in one pass, fed by data worker processes.
SCALES["gpu"] = SCALES["cpu"].override(
    name="gpu",
    description="the embedded experiment on 19 VTAB-like tasks at 20 seeds, every regime: one GPU (goal: ~10 minutes, unmeasured)",
    embedded=EmbeddedSpec(tasks=VTAB_LIKE_TASKS),
    tasks=VTAB_LIKE_TASKS,
    seeds=20,
    transfer_workers=0,
    data_workers=8,
    stack_finetunes=64,
    eval_batch=1000,
)
# the gpu scale's code paths at the smoke scale's sizes, in CI: two of the new tasks, fine-tunes stacked
GPU_SMOKE_TASKS = ("digit_mirror", "texture", "toy_azimuth")
SCALES["gpu-smoke"] = SCALES["smoke"].override(
    name="gpu-smoke",
    description="the gpu scale's code paths (new VTAB-like tasks, stacked fine-tunes) at smoke sizes, in CI; numbers mean nothing",
    embedded=replace(SCALES["smoke"].data.embedded, tasks=GPU_SMOKE_TASKS),  # the smoke scale's sizes
    tasks=GPU_SMOKE_TASKS,
    stack_finetunes=8,
)

# what the two on-disk smoke scales (paper-smoke, released-smoke) share: tiny fine-tunes on their own fixture
ON_DISK_SMOKE: dict[str, Any] = dict(
    transfer_batch=8,
    transfer_steps=(2,),
    seeds=2,
    knn_k=3,
    crop=32,
    precrop=36,
    eval_batch=32,
    checkpoint_minutes=0.0,
    writes_fixture=True,
    task_resolution="fixed",  # 32 px keeps it fast; the HyperRule resolutions are unit-tested
    micro_batch=4,  # exercises gradient accumulation
)

SCALES["paper-smoke"] = SCALES["paper"].override(
    name="paper-smoke",
    description="the paper scale's code paths on a tiny on-disk fixture, real R50x1 at 32 px, in CI; numbers mean nothing",
    tasks=("resisc45", "dsprites_location"),
    upstream_steps=2,
    upstream_batch=8,
    experts=("animal", "bird", "artifact"),
    full_experts=("bird",),
    expert_steps=2,
    expert_batch=8,
    dat_timing_steps=1,
    heldout_per_class=2,
    generic_weights=None,  # trained from scratch here: BiT-M's 100 MB of weights cannot be a fixture
    data_workers=2,
    **ON_DISK_SMOKE,
)


SCALES["released"] = SCALES["paper"].override(
    name="released",
    description="BiT-M R50x1 and the 48 released experts on VTAB-1k, from public downloads; GPUs",
    data="vtab",
    upstream_steps=0,
    upstream_batch=0,
    upstream_lr=0.0,
    full_experts=(),
    expert_steps=0,
    # the paper scale's fine-tuning (BiT-HyperRule as published: batch 512, lr 0.003) and seeds; which experts are
    # fine-tuned:
    random_experts=2,
    oracle_pool=3,
    oracle_on="val200",
    linear_probes=False,
    dat_timing_steps=None,
    released_experts="released_experts",
    specialisation_images=None,
)

SCALES["released-smoke"] = SCALES["released"].override(
    name="released-smoke",
    description="the released scale's code paths on a tiny on-disk fixture (three converted experts), in CI; numbers mean nothing",
    arch="bit_fixture",
    tasks=("resisc45", "dsprites_location"),
    experts=("bird", "food", "nutrient"),
    generic_weights="bit_m_fixture.npz",
    data_workers=0,
    random_experts=1,
    **ON_DISK_SMOKE,
    oracle_pool=2,
)


def get_scale(name: str, **overrides: Any) -> Scale:
    if name not in SCALES:
        close = difflib.get_close_matches(name, SCALES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown scale {name!r}{hint}; use one of: {', '.join(SCALES)}")
    return SCALES[name].override(**overrides) if overrides else SCALES[name]

"""The embedded benchmark: a small world in which the paper's experiment means something, built offline.

Upstream: 9 domains, 107 leaf classes, in a 4-level hierarchy with nested candidate experts::

    entity
    ├── natural_image ── animal (6 real silhouettes), photo (7 real photographs, as tiles)
    ├── symbol ───────── digit (5 real handwritten digits), glyph (40 stroke glyphs)
    └── geometric
        ├── object_scene ── sprite (dSprites: 3 shapes x 3 scale bands), scene (CLEVR-like: nearest object)
        └── pattern ─────── grating (4 orientations x 4 frequencies), lattice (8), palette (10)

Downstream: 19 tasks in VTAB's three groups (as VTAB-1k's 19: natural 7, specialized 4, structured 8), each
with 800 train + 200 val (VTAB-1k's train800val200) and a test split, built only from classes or factors that
upstream never labels. The 12 core tasks (:data:`CORE_TASKS`, what ``EmbeddedSpec(tasks=None)`` builds and the
cpu scale runs):

- natural: held-out animals x 3 rotations (12), digits 5-9 x mirrored (10), 10 new photographs (10),
  20 new glyphs (20);
- specialized: EuroSAT-like land cover (10), PCam-like tissue (2), retinopathy-like grades (5);
- structured: dSprites x position (16 bins) and orientation (16 bins), CLEVR-like count 3-10 (8) and
  nearest-object distance (6 bins), held-out grating orientation x frequency (12).

and 7 more, built only when a spec names them (:data:`VTAB_LIKE_TASKS` lists all 19 in VTAB's order):

- natural: SVHN-like printed letters on clutter (10), DTD-like textures (12), pets-like held-out animals x
  coat (12);
- specialized: RESISC-like aerial scenes (12);
- structured: smallNORB-like toys' azimuth (18) and elevation (9), KITTI-like nearest-vehicle distance (4).

No leakage: real images are split into disjoint pools of source images (animals, digits) or disjoint
horizontal bands of each photograph (train 0-55%, val 55-70%, test 70-100% of the width); the toys are split
by instance (as smallNORB's train and test toys differ); procedural images are drawn from independent seeds per
split. Each example carries a ``source`` id that the tests use to check this. The build is deterministic from
the seed and cached on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from expertlib.datasets.batches import ArrayData
from expertlib.datasets.benchmark import Benchmark, TaskInfo, check_task_split, check_upstream_split
from expertlib.datasets.embedded_tasks import CORE_TASKS, TASKS, render_task_split, task_split_labels
from expertlib.datasets.embedded_world import (
    ArraySplit,
    Domain,
    build_hierarchy,
    domain_labels,
    domains,
    mirror_keeps_label,
    render_upstream_domain,
)
from expertlib.datasets.hierarchy import LabelHierarchy
from expertlib.utils.runtime import atomic_write

BUILD_VERSION = 2  # bump when rendering changes, so caches rebuild


@dataclass(frozen=True)
class EmbeddedSpec:
    """Sizes of the embedded benchmark (the presets in :mod:`expertlib.run.presets` fill these)."""

    seed: int = 0
    upstream_train_per_class: int = 200
    upstream_test_per_class: int = 40
    task_train: int = 800
    task_val: int = 200
    task_test: int = 1000
    tasks: tuple[str, ...] | None = None  # None: CORE_TASKS (the 12 the cpu scale runs)

    def key(self) -> str:
        blob = json.dumps({**asdict(self), "version": BUILD_VERSION}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


@dataclass
class TaskData:
    info: TaskInfo
    train: ArraySplit
    val: ArraySplit
    test: ArraySplit

    @property
    def train_val(self) -> ArraySplit:
        """VTAB-1k's train800val200: what the proxies and the final fine-tuning see."""
        return ArraySplit.concat([self.train, self.val])


@dataclass
class EmbeddedBenchmark(Benchmark):
    """The embedded benchmark; implements :class:`~expertlib.datasets.benchmark.Benchmark`. Its images are
    rendered, or read from ``cache``, on first use and kept in memory: what a step that reads only tables needs
    (labels, sizes, task descriptions, the hierarchy) comes from ``spec`` without them, so the report (notebook
    06) on a fresh clone builds nothing."""

    spec: EmbeddedSpec
    hierarchy: LabelHierarchy
    classes: list[str]  # upstream label ids ("animal/bear"), index = label
    domains: list[Domain]
    cache: Path | None = None  # the arrays on disk (read, or written by the first build); None: memory only
    progress: bool = False
    resolution: tuple[int, int] = (36, 32)
    name: str = "embedded"
    _arrays: tuple[dict[str, ArraySplit], dict[str, TaskData]] | None = field(
        default=None, init=False, repr=False
    )

    def arrays(self) -> tuple[dict[str, ArraySplit], dict[str, TaskData]]:
        """(upstream splits, tasks), read from the cache or rendered (and cached) the first time they are asked
        for."""
        if self._arrays is None:
            self._arrays = _read_or_render(self.spec, self.domains, self.cache, self.progress)
        return self._arrays

    @property
    def built(self) -> bool:
        """Whether the images are in memory (a step asked for them)."""
        return self._arrays is not None

    @property
    def upstream(self) -> dict[str, ArraySplit]:  # the raw arrays, by split
        return self.arrays()[0]

    @property
    def tasks(self) -> dict[str, TaskData]:  # the raw arrays, by task
        return self.arrays()[1]

    def upstream_data(self, split: str) -> ArrayData:
        s = self.upstream[split]  # flipped where a mirror keeps the label (not the 45/135-degree gratings)
        return ArrayData(
            s.images, s.labels, *self.resolution, flip=mirror_keeps_label(self.classes)[s.labels]
        )

    def upstream_labels(self, split: str) -> np.ndarray:
        if self.built:
            return self.upstream[split].labels
        check_upstream_split(split)
        per_class = {"train": self.spec.upstream_train_per_class, "test": self.spec.upstream_test_per_class}
        return _upstream_labels(self.domains, per_class[split])

    @property
    def domain_names(self) -> list[str]:
        return [d.name for d in self.domains]

    @property
    def domain_of_label(self) -> np.ndarray:
        names = self.domain_names
        return np.array([names.index(c.split("/")[0]) for c in self.classes])

    @property
    def task_names(self) -> list[str]:
        return task_names(self.spec)

    def task_info(self, task: str) -> TaskInfo:
        if task not in self.task_names:
            raise KeyError(f"task {task!r} is not in this benchmark; its tasks: {', '.join(self.task_names)}")
        return TASKS[task]

    def task(self, task: str, split: str) -> ArrayData:
        check_task_split(split)
        td = self.tasks[task]
        s = {"train800": td.train, "val200": td.val, "train800val200": td.train_val, "test": td.test}[split]
        return ArrayData(s.images, s.labels, *self.resolution, td.info.flip, td.info.crop)

    def task_labels(self, task: str, split: str) -> np.ndarray:
        if self.built:
            return self.task(task, split).labels
        check_task_split(split)
        info, parts = self.task_info(task), TASK_SPLIT_PARTS[split]
        return np.concatenate([split_labels(self.spec, info, s) for s in parts]).astype(np.int64)

    def samples(self, per_row: int = 12) -> dict[str, np.ndarray]:
        rows = {}
        train = self.upstream["train"]
        dom = self.domain_of_label[train.labels]
        for i, d in enumerate(self.domains):
            idx = np.flatnonzero(dom == i)
            rows[f"up: {d.name}"] = train.images[idx[np.linspace(0, len(idx) - 1, per_row).astype(int)]]
        for t, td in self.tasks.items():
            rows[f"task: {t}"] = td.train.images[:per_row]
        return rows

    def summary(self, accuracy: dict[str, float] | None = None) -> pd.DataFrame:
        return data_summary(self, accuracy)


TASK_SPLIT_PARTS = {"train800": ("train",), "val200": ("val",), "train800val200": ("train", "val"),
                    "test": ("test",)}  # fmt: skip


# -- building and caching ----------------------------------------------------------------------------------------
def _rng(seed: int, *keys: str) -> np.random.Generator:
    digest = hashlib.sha256("/".join((str(seed), *keys)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def task_names(spec: EmbeddedSpec) -> list[str]:
    names = list(spec.tasks) if spec.tasks is not None else list(CORE_TASKS)
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise KeyError(f"unknown embedded task(s) {unknown}; known tasks: {', '.join(TASKS)}")
    return names


def _split_sizes(spec: EmbeddedSpec) -> dict[str, int]:
    return {"train": spec.task_train, "val": spec.task_val, "test": spec.task_test}


def split_labels(spec: EmbeddedSpec, info: TaskInfo, split: str) -> np.ndarray:
    """The labels of one split (train, val or test) of a task, without rendering it."""
    return task_split_labels(info, _split_sizes(spec)[split], _rng(spec.seed, "task", info.name, split))


def _upstream_labels(doms: list[Domain], per_class: int) -> np.ndarray:
    offsets = np.cumsum([0] + [len(d.classes) for d in doms])
    return np.concatenate([domain_labels(d, per_class) + off for d, off in zip(doms, offsets, strict=False)])


def build_task(spec: EmbeddedSpec, task: str) -> TaskData:
    """One task's train, val and test splits at ``spec``'s sizes, without upstream (each split from its own
    seed, so a task's arrays do not depend on which other tasks are built)."""
    if task not in TASKS:
        raise KeyError(f"unknown embedded task {task!r}; known tasks: {', '.join(TASKS)}")
    splits = {
        s: render_task_split(TASKS[task], s, n, _rng(spec.seed, "task", task, s))
        for s, n in _split_sizes(spec).items()
    }
    return TaskData(TASKS[task], splits["train"], splits["val"], splits["test"])


def build(
    spec: EmbeddedSpec = EmbeddedSpec(), cache_dir: str | os.PathLike | None = None, progress: bool = False
) -> EmbeddedBenchmark:
    """The embedded benchmark for ``spec``, its arrays read from ``cache_dir`` or rendered into it when a step
    first asks for images (labels, sizes and task descriptions need neither)."""
    task_names(spec)  # an unknown task is named now, not when the images are first asked for
    doms = domains()
    classes = [f"{d.name}/{c}" for d in doms for c in d.classes]
    cache = Path(cache_dir) / f"embedded-{spec.key()}" if cache_dir is not None else None
    return EmbeddedBenchmark(spec, build_hierarchy(doms), classes, doms, cache, progress)


def _read_or_render(spec: EmbeddedSpec, doms: list[Domain], cache: Path | None, progress: bool
                    ) -> tuple[dict[str, ArraySplit], dict[str, TaskData]]:  # fmt: skip
    """(upstream splits, tasks) from ``cache`` when complete, else rendered and (with a cache) saved there."""
    names = task_names(spec)
    if cache is not None and (cache / "complete.json").is_file():
        upstream = {s: _load_split(cache / f"upstream_{s}.npz") for s in ("train", "test")}
        tasks = {
            t: TaskData(
                TASKS[t], *(_load_split(cache / f"task_{t}_{s}.npz") for s in ("train", "val", "test"))
            )
            for t in names
        }
        return upstream, tasks

    from tqdm import tqdm

    upstream: dict[str, ArraySplit] = {}
    offsets = np.cumsum([0] + [len(d.classes) for d in doms])
    for split, per_class in (
        ("train", spec.upstream_train_per_class),
        ("test", spec.upstream_test_per_class),
    ):
        parts = []
        for d, off in tqdm(
            list(zip(doms, offsets, strict=False)), desc=f"upstream {split}", disable=not progress
        ):
            part = render_upstream_domain(d, split, per_class, _rng(spec.seed, "upstream", d.name, split))
            part.labels = part.labels + off
            parts.append(part)
        upstream[split] = ArraySplit.concat(parts)
    tasks = {t: build_task(spec, t) for t in tqdm(names, desc="tasks", disable=not progress)}
    if cache is not None:
        for s, a in upstream.items():
            _save_split(cache / f"upstream_{s}.npz", a)
        for t, td in tasks.items():
            for s in ("train", "val", "test"):
                _save_split(cache / f"task_{t}_{s}.npz", getattr(td, s))
        atomic_write(cache / "complete.json", lambda p: p.write_text(json.dumps(asdict(spec))))
    return upstream, tasks


def _save_split(path: Path, split: ArraySplit) -> None:
    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez(fh, images=split.images, labels=split.labels, source=split.source.astype(str))

    atomic_write(path, write)


def _load_split(path: Path) -> ArraySplit:
    with np.load(path) as z:
        return ArraySplit(z["images"], z["labels"], z["source"])


# -- statistics ------------------------------------------------------------------------------------------------
def data_summary(bench: EmbeddedBenchmark, accuracy: dict[str, float] | None = None) -> pd.DataFrame:
    """Per domain and per task: classes, sizes, chance level, and (when given) B's fine-tuned accuracy (from
    labels alone: no image is rendered for it)."""
    rows = []
    dom_of = bench.domain_of_label
    for i, d in enumerate(bench.domains):
        rows.append(
            {
                "kind": "upstream_domain",
                "name": d.name,
                "group": d.parent,
                "classes": len(d.classes),
                "train": int((dom_of[bench.upstream_labels("train")] == i).sum()),
                "val": 0,
                "test": int((dom_of[bench.upstream_labels("test")] == i).sum()),
                "chance": 1 / len(d.classes),
                "relates_to": "",
                "source": d.source,
            }
        )
    for t in bench.task_names:
        info, test = bench.task_info(t), bench.task_labels(t, "test")
        counts = np.bincount(test, minlength=info.num_classes)
        rows.append(
            {
                "kind": "task",
                "name": t,
                "group": info.group,
                "classes": info.num_classes,
                "train": len(bench.task_labels(t, "train800")),
                "val": len(bench.task_labels(t, "val200")),
                "test": len(test),
                "chance": float(counts.max() / counts.sum()),
                "relates_to": info.relates_to or "none",
                "source": info.description,
            }
        )
    frame = pd.DataFrame(rows)
    if accuracy is not None:
        frame["generic_finetuned_accuracy"] = frame["name"].map(accuracy)
    return frame

"""The paper-scale benchmarks from disk: ImageNet-21k folders upstream (or, for the ``released`` scale, none),
VTAB-1k tasks downstream.

Layout under ``data_root`` (every missing piece raises :class:`DatasetNotFoundError` naming the path and
what belongs there)::

    imagenet21k/<wnid>/<image>          one folder per class (ImageNet-21k fall 2011: 21,843 classes)
    imagenet21k/wordnet.is_a.txt        "parent_wnid child_wnid" per line (also accepted in data_root)
    imagenet21k/words.txt               "wnid<TAB>lemma, lemma" per line (also accepted in data_root)
    imagenet21k/heldout.txt             optional: "wnid/file" per line, the upstream test images
    imagenet21k/no_flip.txt             optional: "wnid" per line, classes upstream training never mirrors (a
                                        mirror would give their images another class's label)
    vtab/<task>/<dataset>-<split>.tfrecord-*        a VTAB-1k task as TFDS shards: VTAB's own splits
    vtab/<task>/{train,val,test}/<label>/<image>   a task in folders (not VTAB's splits; expertlib.datasets.vtab)
    vtab/<task>/task.json               optional: group, classes, relates_to, flip, crop (tasks outside VTAB)
    ... or torchvision's own layout under data_root for the VTAB tasks torchvision ships.

Upstream images are ordered by file name (ImageNet's ``<wnid>_<n>.JPEG`` names make that class-major).
ImageNet-21k has no official test split: without ``heldout.txt``, ``heldout_per_class`` images of each class
(a fixed, seeded choice) are held out for upstream evaluation.

:func:`export_benchmark` writes any :class:`Benchmark` in this layout (PNG files), which is how the tests
prove that the on-disk reader gives exactly the embedded benchmark's data.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from torch.utils.data import Dataset

from expertlib.datasets.batches import ArrayData, ImageData
from expertlib.datasets.benchmark import Benchmark, TaskInfo, check_task_split
from expertlib.datasets.encoded import EncodedImageData
from expertlib.datasets.folders import DatasetNotFoundError, is_image
from expertlib.datasets.hierarchy import LabelHierarchy
from expertlib.datasets.index import cached_index
from expertlib.datasets.vtab import VTAB_TASKS, VtabTask, load_vtab, targets
from expertlib.utils.runtime import atomic_write, atomic_write_text

UPSTREAM_DIR = "imagenet21k"
NO_FLIP = "no_flip.txt"  # upstream classes never mirrored (see the layout above)
LAYOUT_HELP = (
    "expected <data_root>/imagenet21k/<wnid>/<image> with wordnet.is_a.txt and words.txt (ImageNet-21k fall "
    "2011, from image-net.org after registration), and VTAB-1k tasks under <data_root>/vtab/<task>/ as TFDS "
    "shards or {train,val,test}/<label>/ folders, or in torchvision's layout under <data_root>"
)


class NoUpstreamDataError(RuntimeError):
    """A scale without upstream images (``released``) was asked for one."""


def _find(root: Path, name: str) -> Path:
    for p in (root / UPSTREAM_DIR / name, root / name):
        if p.is_file():
            return p
    raise DatasetNotFoundError(f"{name} not found in {root / UPSTREAM_DIR} or {root}; {LAYOUT_HELP}")


def _held_out(files: Sequence[Path], count: int, cls: str) -> set[Path]:
    seed = int.from_bytes(hashlib.sha256(cls.encode()).digest()[:4], "little")
    order = np.random.default_rng(seed).permutation(len(files))
    return {files[i] for i in order[: min(count, max(0, len(files) - 1))]}


class VtabTasks(Benchmark):
    """VTAB-1k tasks from ``data_root`` (``vtab/<task>/...``, TFDS shards or torchvision's layouts): the
    downstream half every on-disk benchmark shares. Subclasses say what is upstream (:meth:`_init_upstream`)."""

    def __init__(
        self,
        data_root: str | os.PathLike,
        tasks: Sequence[str],
        resolution: tuple[int, int] = (160, 128),
        task_resolution: str = "fixed",
        hyperrule: str = "bit-code",
    ) -> None:
        if task_resolution not in ("fixed", "hyperrule"):
            raise ValueError(f"task_resolution must be 'fixed' or 'hyperrule', got {task_resolution!r}")
        self.root = Path(data_root)
        self.resolution = resolution
        self.task_resolution = task_resolution
        self.hyperrule = (
            hyperrule  # which BiT-HyperRule's resolutions (bit-paper: 448/384, bit-code: 512/480)
        )
        self._resolutions: dict[str, tuple[int, int]] = {}  # a task's first training image's (height, width)
        self._init_upstream()
        self._tasks: dict[str, tuple[TaskInfo, dict[str, Dataset]]] = {}
        for t in tasks:
            self._tasks[t] = self._load_task(t)

    def _init_upstream(self) -> None:
        """Set ``classes`` and ``hierarchy`` (and read upstream data, where there is some)."""
        raise NotImplementedError

    # -- downstream -----------------------------------------------------------------------------------------
    def _load_task(self, task: str) -> tuple[TaskInfo, dict[str, Dataset]]:
        meta_file = self.root / "vtab" / task / "task.json"
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            vt = VtabTask(task, meta["group"], len(meta["classes"]), None)
            info = TaskInfo(task, meta["group"], tuple(meta["classes"]), meta.get("relates_to"), meta.get("flip", True),
                            meta.get("description", ""), meta.get("crop", True))  # fmt: skip
        elif (
            task in VTAB_TASKS
        ):  # flip and crop as BiT's Supplementary F has them (expertlib/data/vtab1k.json)
            vt = VTAB_TASKS[task]
            info = TaskInfo(
                task, vt.group, tuple(str(i) for i in range(vt.num_classes)), None, vt.flip, vt.note, vt.crop
            )
        else:
            raise DatasetNotFoundError(
                f"task {task!r} is not a VTAB-1k task and {meta_file} does not describe it; known: {', '.join(VTAB_TASKS)}"
            )
        s = load_vtab(vt, self.root)
        info = replace(info, vtab_splits=s.vtab_splits, tfds_counts_match=s.counts_match)
        parts = {
            "train800": s.train800,
            "val200": s.val200,
            "train800val200": s.train800val200,
            "test": s.test,
        }
        return info, parts

    @property
    def task_names(self) -> list[str]:
        return list(self._tasks)

    def task_info(self, task: str) -> TaskInfo:
        return self._tasks[task][0]

    def resolution_of(self, task: str, hyperrule: str | None = None) -> tuple[int, int]:
        """(precrop, crop) of a task: the benchmark's, or BiT-HyperRule's (``hyperrule``'s recipe, default the
        benchmark's) from its first training image."""
        if self.task_resolution == "fixed":
            return self.resolution
        if task not in self._resolutions:  # decoded once per task
            width, height = self._tasks[task][1]["train800"][0][0].size
            self._resolutions[task] = (height, width)
        from expertlib.datasets.transforms import bit_resolution

        return bit_resolution(*self._resolutions[task], hyperrule or self.hyperrule)

    def task(self, task: str, split: str) -> ImageData:
        check_task_split(split)
        info, parts = self._tasks[task]
        ds = parts[split]
        return ImageData(ds, targets(ds), *self.resolution_of(task), info.flip, random_crop=info.crop)

    # -- figures and tables ---------------------------------------------------------------------------------
    def samples(self, per_row: int = 12) -> dict[str, np.ndarray]:
        rows = {}
        size = self.resolution[1]
        for t in self.task_names:
            data = self.task(t, "train800")
            rows[f"task: {t}"] = data.images(range(min(per_row, len(data))), size).numpy()
        return rows

    def summary(self, accuracy: dict[str, float] | None = None) -> pd.DataFrame:
        return self._frame(self._task_rows(), accuracy)

    def _task_rows(self) -> list[dict]:
        rows = []
        for t in self.task_names:
            info = self.task_info(t)
            y = self.task(t, "test").labels
            counts = np.bincount(y, minlength=info.num_classes)
            rows.append({"kind": "task", "name": t, "group": info.group, "classes": info.num_classes,
                         "train": len(self.task(t, "train800")), "val": len(self.task(t, "val200")), "test": len(y),
                         "chance": float(counts.max() / max(1, counts.sum())), "relates_to": info.relates_to or "none",
                         "source": info.description, "vtab_splits": info.vtab_splits})  # fmt: skip
        return rows

    @staticmethod
    def _frame(rows: list[dict], accuracy: dict[str, float] | None) -> pd.DataFrame:
        frame = pd.DataFrame(rows)
        if accuracy is not None:
            frame["generic_finetuned_accuracy"] = frame["name"].map(accuracy)
        return frame


class VtabBenchmark(VtabTasks):
    """VTAB-1k tasks and no upstream images: the ``released`` scale's benchmark. Its upstream classes are BiT-M's
    21,843 ImageNet-21k classes in its head's order, and its experts the 48 released ones (classes from
    ``expertlib/data/released_experts.json``), so domain prediction runs through BiT-M's head; reading an
    upstream image raises :class:`NoUpstreamDataError`."""

    name = "vtab"

    def _init_upstream(self) -> None:
        from expertlib.datasets.hierarchy import bit_m_classes, released_experts

        self.classes = bit_m_classes()
        self._experts = {e.wnid: e for e in released_experts().values()}
        self.hierarchy = LabelHierarchy()
        for e in self._experts.values():
            self.hierarchy.add_node(e.wnid, e.lemmas)

    # -- upstream: classes and experts, no images -----------------------------------------------------------
    def upstream_data(self, split: str) -> ImageData:
        raise NoUpstreamDataError(
            f"benchmark {self.name!r} reads no upstream images (the released scale trains nothing upstream): B is "
            "BiT-M's released weights and the experts are the 48 released ones"
        )

    def upstream_labels(self, split: str) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    def class_prior(self) -> np.ndarray | None:
        return None  # ImageNet-21k's image counts are not read: domain prediction takes a uniform prior

    def expert_labels(self, node: str) -> list[int]:
        if node not in self._experts:
            raise KeyError(f"{node} is not one of the 48 released experts' WordNet ids")
        return self._experts[node].classes.tolist()

    @property
    def domain_names(self) -> list[str]:
        return ["imagenet21k"]

    @property
    def domain_of_label(self) -> np.ndarray:
        return np.zeros(len(self.classes), dtype=np.int64)

    def describe(self) -> dict:
        return {"benchmark": self.name, "upstream_classes": len(self.classes), "upstream_train": 0,
                "upstream_test": 0, "domains": 0, "tasks": len(self.task_names)}  # fmt: skip


class FolderBenchmark(VtabTasks):
    """ImageNet-21k + VTAB-1k read from ``data_root`` (see the module's docstring for the layout). ``index_dir``:
    where the upstream file index is cached (:mod:`expertlib.datasets.index`; None: listed in memory)."""

    name = "imagenet21k+vtab"

    def __init__(
        self,
        data_root: str | os.PathLike,
        tasks: Sequence[str],
        resolution: tuple[int, int] = (160, 128),
        heldout_per_class: int = 10,
        domain_depth: int = 1,
        task_resolution: str = "fixed",
        index_dir: str | os.PathLike | None = None,
        hyperrule: str = "bit-code",
    ) -> None:
        self._heldout_per_class, self._domain_depth, self._index_dir = (
            heldout_per_class,
            domain_depth,
            index_dir,
        )
        super().__init__(data_root, tasks, resolution, task_resolution, hyperrule)

    def _init_upstream(self) -> None:
        heldout_per_class = self._heldout_per_class
        up = self.root / UPSTREAM_DIR
        if not up.is_dir():
            raise DatasetNotFoundError(f"upstream folder {up} not found; {LAYOUT_HELP}")
        self.hierarchy = LabelHierarchy.from_wordnet(
            _find(self.root, "wordnet.is_a.txt"), _find(self.root, "words.txt")
        )
        self.classes = sorted(p.name for p in up.iterdir() if p.is_dir())
        if not self.classes:
            raise DatasetNotFoundError(f"no class folders in {up}; {LAYOUT_HELP}")
        unknown = [c for c in self.classes if c not in self.hierarchy]
        if unknown:
            raise DatasetNotFoundError(
                f"class folders {unknown[:5]} of {up} are not in wordnet.is_a.txt; is the WordNet file from the "
                "same ImageNet release?"
            )
        listed = up / "heldout.txt"
        heldout = (
            {line.strip() for line in listed.read_text().splitlines() if line.strip()}
            if listed.is_file()
            else None
        )

        def held_out(c: str, names: list[str]) -> set[str]:
            if heldout is not None:
                return {n for n in names if f"{c}/{n}" in heldout}
            return {p.name for p in _held_out([up / c / n for n in names], heldout_per_class, c)}

        # listed once per tree and cached (expertlib.datasets.index): flat memory-mapped arrays that every
        # process and DataLoader worker shares, not 14 M Python paths in each
        index = cached_index(up, self.classes, held_out, lambda n: is_image(Path(n)), self._index_dir,
                             extra=f"heldout_per_class={heldout_per_class}")  # fmt: skip
        self._paths, self._labels = {}, {}
        for k in ("train", "test"):
            self._paths[k], self._labels[k] = index.split(k)

    # -- upstream -------------------------------------------------------------------------------------------
    def upstream_data(self, split: str) -> EncodedImageData:
        """Upstream images as files: decoded by PIL in the data workers on a CPU; on a GPU the workers read
        bytes and the training process decodes them there (:mod:`expertlib.datasets.encoded`)."""
        listed = self.root / UPSTREAM_DIR / NO_FLIP
        if not listed.is_file():  # BiT flips every upstream image
            return EncodedImageData(self._paths[split], self._labels[split], *self.resolution, flip=True)
        never = {line.strip() for line in listed.read_text().splitlines() if line.strip()}
        keeps = np.array([c not in never for c in self.classes], dtype=bool)
        return EncodedImageData(self._paths[split], self._labels[split], *self.resolution,
                                flip=keeps[self._labels[split]])  # fmt: skip

    def upstream_labels(self, split: str) -> np.ndarray:
        return self._labels[split]

    @cached_property
    def _domains(self) -> tuple[list[str], np.ndarray]:
        """Each class's ancestor at ``domain_depth`` ('other' without one): the domains' sorted node ids and
        each label's index among them."""
        nodes = []
        for c in self.classes:
            at = sorted(
                a
                for a in self.hierarchy.ancestors(c, include_self=True)
                if self.hierarchy.depth(a) == self._domain_depth
            )
            nodes.append(at[0] if at else "other")
        order = sorted(set(nodes))
        index = {n: i for i, n in enumerate(order)}
        return order, np.array([index[n] for n in nodes])

    @property
    def domain_names(self) -> list[str]:
        return [
            self.hierarchy.names.get(n, n).split(",")[0].strip() for n in self._domains[0]
        ]  # first lemmas

    @property
    def domain_of_label(self) -> np.ndarray:
        return self._domains[1]

    # -- figures and tables ---------------------------------------------------------------------------------
    def samples(self, per_row: int = 12) -> dict[str, np.ndarray]:
        rows = {}
        up = self.upstream_data("train")
        dom = self.domain_of_label[up.labels]
        size = self.resolution[1]
        for i, d in enumerate(self.domain_names):
            idx = np.flatnonzero(dom == i)
            if len(idx):
                rows[f"up: {d}"] = up.images(
                    idx[np.linspace(0, len(idx) - 1, per_row).astype(int)], size
                ).numpy()
        return {**rows, **super().samples(per_row)}

    def summary(self, accuracy: dict[str, float] | None = None) -> pd.DataFrame:
        rows = []
        dom = self.domain_of_label
        train, test = self.upstream_labels("train"), self.upstream_labels("test")
        for i, d in enumerate(self.domain_names):
            rows.append({"kind": "upstream_domain", "name": d, "group": "", "classes": int((dom == i).sum()),
                         "train": int((dom[train] == i).sum()), "val": 0, "test": int((dom[test] == i).sum()),
                         "chance": 1 / max(1, int((dom == i).sum())), "relates_to": "", "source": str(self.root / UPSTREAM_DIR),
                         "vtab_splits": False})  # fmt: skip
        return self._frame(rows + self._task_rows(), accuracy)


# -- export ----------------------------------------------------------------------------------------------------
def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: Image.fromarray(image).save(p, format="PNG"))


def export_benchmark(bench: Benchmark, data_root: str | os.PathLike) -> Path:
    """Write ``bench`` in the on-disk layout above (PNG images, WordNet-style ids ``n%08d``): upstream train
    then test images numbered in order, every task's train800 / val200 / test, and ``task.json`` per task."""
    root = Path(data_root)
    up = root / UPSTREAM_DIR
    h = bench.hierarchy
    order = list(bench.classes) + [n for n in h.topological_order() if n not in set(bench.classes)]
    ids = {node: f"n{i:08d}" for i, node in enumerate(order)}  # class ids sort in label order
    edges = [f"{ids[p]} {ids[c]}" for p in h.topological_order() for c in sorted(h.children[p])]
    up.mkdir(parents=True, exist_ok=True)
    atomic_write_text(up / "wordnet.is_a.txt", "\n".join(edges) + "\n")
    atomic_write_text(up / "words.txt", "".join(f"{ids[n]}\t{h.names[n]}\n" for n in h.topological_order()))
    heldout, counter = [], 0
    for split in ("train", "test"):
        data = bench.upstream_data(split)
        for i, y in enumerate(data.labels):
            name = f"{ids[bench.classes[y]]}/{counter:08d}.png"
            _write_png(up / name, _raw(data, i))
            if split == "test":
                heldout.append(name)
            counter += 1
    atomic_write_text(up / "heldout.txt", "\n".join(heldout) + "\n")
    flips = bench.upstream_data("train").flip  # a per-example rule: the classes never mirrored are listed
    if not isinstance(flips, bool):
        labels = bench.upstream_data("train").labels
        never = sorted({ids[bench.classes[y]] for y in np.unique(labels[~flips])})
        atomic_write_text(up / NO_FLIP, "".join(f"{c}\n" for c in never))
    for t in bench.task_names:
        info = bench.task_info(t)
        base = root / "vtab" / t
        for split, folder in (("train800", "train"), ("val200", "val"), ("test", "test")):
            data = bench.task(t, split)
            for i, y in enumerate(data.labels):
                _write_png(base / folder / str(int(y)) / f"{i:06d}.png", _raw(data, i))
        meta = {"group": info.group, "classes": list(info.classes), "relates_to": info.relates_to, "flip": info.flip,
                "crop": info.crop, "description": info.description}  # fmt: skip
        atomic_write_text(base / "task.json", json.dumps(meta, indent=1))
    return root


def _raw(data, i: int) -> np.ndarray:
    """Example ``i`` as stored (uint8 HWC), without any transform."""
    if isinstance(data, ArrayData):
        return data.images[i].numpy()
    return data.images([i], data.crop)[0].numpy()

import hashlib
import re
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from expertlib.datasets import procedural_structured as PT
from expertlib.datasets import sources as S
from expertlib.datasets.embedded import (
    EmbeddedSpec,
    build,
    build_task,
    data_summary,
    task_names,
)
from expertlib.datasets.embedded_tasks import CORE_TASKS, TASKS, VTAB_LIKE_TASKS
from expertlib.datasets.hierarchy import ExpertRule
from expertlib.datasets.vtab import VTAB_TASKS

SMALL = EmbeddedSpec(
    seed=3, upstream_train_per_class=6, upstream_test_per_class=3, task_train=60, task_val=20, task_test=60
)
NEW_TASKS = tuple(t for t in VTAB_LIKE_TASKS if t not in CORE_TASKS)

# SMALL's arrays as the code before the VTAB-like extension built them (sha256 of images, labels and sources,
# first 16 hex digits; requirements/constraints.txt's environment). The cpu scale's committed results rest on
# these bytes: a task added to the registry must not move them.
SMALL_KEY = "219ff8363f03"
SMALL_UPSTREAM = "c994a81642eedfeb"
SMALL_TASKS = {
    "animal_pose": "e99205f39399d476",
    "digit_mirror": "0c53042f7de64333",
    "photo_new": "3d23568d7e6c0f63",
    "glyph_new": "c671c7ce27e84765",
    "land_cover": "eaafcc1cf4ad616d",
    "tissue": "9ff1b7929e0b4036",
    "retinopathy": "7e2ad2e56bf80624",
    "sprite_xpos": "954276fb82e69941",
    "sprite_orient": "58c3c7a44d72deca",
    "scene_count": "99b443cf7226f8df",
    "scene_dist": "5421341d7e26984d",
    "grating_new": "2c4ca77615a39a4e",
}
# The cache keys of the default spec and of the cpu scale's spec (all 12 core tasks named) before the extension.
DEFAULT_KEY, CPU_KEY = "8182111d8f47", "223dc624dd50"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """All 19 tasks (the gpu scale's), at SMALL's sizes."""
    return build(replace(SMALL, tasks=VTAB_LIKE_TASKS), cache_dir=tmp_path_factory.mktemp("cache"))


def _digest(*splits):
    h = hashlib.sha256()
    for s in splits:
        h.update(s.images.tobytes())
        h.update(s.labels.tobytes())
        h.update("\n".join(s.source.astype(str)).encode())
    return h.hexdigest()[:16]


def _check_core_bytes(b):
    assert _digest(b.upstream["train"], b.upstream["test"]) == SMALL_UPSTREAM
    assert {t: _digest(b.tasks[t].train, b.tasks[t].val, b.tasks[t].test) for t in CORE_TASKS} == SMALL_TASKS


def test_core_tasks_keep_their_bytes(bench):
    assert SMALL.key() == SMALL_KEY
    assert EmbeddedSpec().key() == DEFAULT_KEY and EmbeddedSpec(tasks=CORE_TASKS).key() == CPU_KEY
    _check_core_bytes(bench)  # building the new tasks beside them moves nothing (tasks=None: see below)


def test_vtab_like_tasks_mirror_vtab_groups():
    assert len(VTAB_LIKE_TASKS) == len(set(VTAB_LIKE_TASKS)) == 19 and set(VTAB_LIKE_TASKS) == set(TASKS)
    groups = [TASKS[t].group for t in VTAB_LIKE_TASKS]
    assert Counter(groups) == Counter(
        t.group for t in VTAB_TASKS.values()
    )  # natural 7, specialized 4, structured 8
    assert groups == sorted(groups, key=["natural", "specialized", "structured"].index)  # VTAB's order
    assert set(CORE_TASKS) < set(VTAB_LIKE_TASKS) and len(CORE_TASKS) == 12
    assert task_names(EmbeddedSpec()) == list(CORE_TASKS)
    assert task_names(EmbeddedSpec(tasks=("road_dist", "texture"))) == ["road_dist", "texture"]


def test_breadth_and_hierarchy(bench):
    assert len(bench.domains) >= 8 and len(bench.classes) >= 100
    h = bench.hierarchy
    assert max(h.depth(c) for c in bench.classes) >= 3
    experts = h.select_experts(bench.class_counts(), ExpertRule(min_images=1))
    assert len(experts) >= 8
    nested = [(a, b) for a in experts for b in experts if a != b and b in h.descendants(a)]
    assert nested, "some candidate experts must nest"
    assert bench.upstream["train"].images.shape == (6 * len(bench.classes), 32, 32, 3)
    assert np.bincount(bench.upstream["train"].labels).min() == 6


def test_tasks_cover_vtab_groups(bench):
    groups = {t.group for t in TASKS.values()}
    assert groups == {"natural", "specialized", "structured"} and len(TASKS) >= 9
    assert all(t.num_classes >= 10 for t in TASKS.values() if t.group == "natural")
    for name, td in bench.tasks.items():
        assert (len(td.train), len(td.val), len(td.test)) == (60, 20, 60)
        assert td.train.labels.max() < td.info.num_classes
        assert len(np.unique(td.test.labels)) == td.info.num_classes, name


def _hashes(split):
    return {hashlib.sha1(im.tobytes()).hexdigest() for im in split.images}


def test_new_tasks(bench):
    for name in NEW_TASKS:
        td = bench.tasks[name]
        assert (len(td.train), len(td.val), len(td.test)) == (60, 20, 60)
        assert td.train.images.shape[1:] == (32, 32, 3) and td.train.images.dtype == np.uint8
        assert len(np.unique(td.test.labels)) == td.info.num_classes, name
        assert td.train.images.std() > 10, name  # not blank
        # alone, and with other sizes for the other splits: each split comes from its own seed
        again = build_task(replace(SMALL, task_train=1, task_test=1), name)
        assert np.array_equal(again.val.images, td.val.images), name
        assert np.array_equal(again.val.source, td.val.source), name


def test_no_leakage_between_splits(bench):
    for name, td in bench.tasks.items():
        parts = {"train": td.train, "val": td.val, "test": td.test}
        for a in parts:
            for b in parts:
                if a < b:
                    assert not _hashes(parts[a]) & _hashes(parts[b]), (name, a, b)
                    if name == "photo_new":  # disjoint horizontal bands of each photograph
                        assert _bands_disjoint(parts[a].source, parts[b].source), (a, b)
                    else:
                        assert not set(parts[a].source) & set(parts[b].source), (name, a, b)
    up = bench.upstream
    assert not set(up["train"].source) & set(up["test"].source)
    assert _bands_disjoint(up["train"].source, up["test"].source)
    task_sources = set().union(*(set(td.train.source) for td in bench.tasks.values()))
    assert not task_sources & set(up["train"].source)  # held-out classes and images
    toys = {
        s: {x.rsplit(":", 1)[1] for x in getattr(bench.tasks["toy_azimuth"], s).source}
        for s in ("train", "test")
    }
    assert toys["train"] <= set("01234") and toys["test"] <= set("789")  # smallNORB: other toys at test


def _bands_disjoint(src_a, src_b):
    def spans(src):
        out = {}
        for s in src:
            m = re.fullmatch(r"photo:(\w+):x=(\d+)-(\d+)", s)
            if m:
                out.setdefault(m[1], []).append((int(m[2]), int(m[3])))
        return out

    a, b = spans(src_a), spans(src_b)
    return all(
        max(x1 for _, x1 in a[k]) <= min(x0 for x0, _ in b[k])
        or max(x1 for _, x1 in b[k]) <= min(x0 for x0, _ in a[k])
        for k in set(a) & set(b)
    )


def test_deterministic_and_cached(bench, tmp_path):
    again = build(SMALL, cache_dir=tmp_path)
    assert list(again.tasks) == list(CORE_TASKS)  # tasks=None still means the 12 core tasks, with their bytes
    _check_core_bytes(again)
    assert list(build(SMALL, cache_dir=tmp_path).tasks) == list(CORE_TASKS)  # and so does the cached copy
    assert np.array_equal(again.upstream["train"].images, bench.upstream["train"].images)
    assert np.array_equal(again.tasks["glyph_new"].test.images, bench.tasks["glyph_new"].test.images)
    other = build(
        EmbeddedSpec(
            seed=4,
            upstream_train_per_class=6,
            upstream_test_per_class=3,
            task_train=60,
            task_val=20,
            task_test=60,
            tasks=("tissue",),
        )
    )
    assert not np.array_equal(other.tasks["tissue"].train.images, bench.tasks["tissue"].train.images)
    assert list(other.tasks) == ["tissue"]
    with pytest.raises(KeyError, match="unknown embedded task"):
        build(EmbeddedSpec(tasks=("imagenet",)))


def test_summary_lists_domains_and_tasks(bench):
    frame = data_summary(bench, accuracy={"tissue": 0.7})
    assert set(frame.kind) == {"upstream_domain", "task"}
    assert len(frame) == len(bench.domains) + len(bench.tasks)
    row = frame.set_index("name").loc["tissue"]
    assert row.chance == 0.5 and row.generic_finetuned_accuracy == 0.7


def test_printed_glyphs_keep_their_counters():
    g = S.printed_glyphs("AD")
    assert g.shape == (len(S.FONT_FILES), 2, 48, 48) and g.min() >= 0 and g.max() <= 1
    assert (g.sum(axis=(2, 3)) > 50).all()  # every typeface draws both letters
    assert (g[:, 1, 24, 24] < 0.5).all()  # D's counter is open (even-odd fill), in every typeface


def test_toys_show_their_elevation_and_azimuth():
    toy = np.repeat(PT.toy_instances()[4, :1], 2, 0)  # one car, twice
    low, high = (PT.toys(np.random.default_rng(0), toy, np.array([0, 0]), np.array([e, e])) for e in (30, 70))
    rows = lambda im: (np.abs(im[..., 0].astype(int) - np.median(im[..., 0])) > 20).any(1).sum()  # noqa: E731
    assert rows(high[0]) > rows(low[0]) + 3  # the turntable and the car look taller from higher up
    front, back = PT.toys(np.random.default_rng(0), toy, np.array([0, 180]), np.array([50, 50]))
    assert np.abs(front.astype(int) - back[:, ::-1].astype(int)).mean() > 3  # the car's front is not its back


def test_road_scenes_place_the_nearest_vehicle():
    near, none, far = (PT.road_scenes(np.random.default_rng(0), np.array([d])) for d in (5.0, np.inf, 40.0))
    changed = lambda a, b: np.abs(a.astype(int) - b.astype(int)).max(-1)[0] > 60  # noqa: E731  (noise: 0.03)
    assert changed(near, none).mean() > 0.04  # a vehicle 5 m ahead fills a good part of the view...
    assert changed(far, none).mean() < 0.01  # ...one 40 m ahead a few pixels
    rows = np.flatnonzero(changed(near, none).any(1))
    assert rows.min() >= 8  # it stands on the road, at or below the horizon


def test_what_a_report_reads_comes_without_rendering_and_equals_the_rendered(bench, tmp_path):
    """Labels, sizes, the summary and the description come from the spec: a fresh benchmark renders nothing and
    writes no cache until a step asks for images, and then the rendered labels are the same."""
    spec = replace(SMALL, tasks=VTAB_LIKE_TASKS)
    fresh = build(spec, cache_dir=tmp_path)
    assert fresh.task_names == list(VTAB_LIKE_TASKS) and fresh.task_info("tissue") == TASKS["tissue"]
    frame, described = data_summary(fresh, accuracy={"tissue": 0.7}), fresh.describe()
    labels = {(t, s): fresh.task_labels(t, s) for t in VTAB_LIKE_TASKS for s in ("train800", "val200", "train800val200", "test")}  # fmt: skip
    upstream = {s: fresh.upstream_labels(s) for s in ("train", "test")}
    assert not fresh.built and not any(tmp_path.iterdir())  # nothing rendered, nothing written
    assert frame.equals(data_summary(bench, accuracy={"tissue": 0.7})) and described == bench.describe()
    for (t, s), y in labels.items():
        assert np.array_equal(y, bench.task(t, s).labels), (t, s)
    for s, y in upstream.items():
        assert np.array_equal(y, bench.upstream[s].labels), s
    fresh.task("tissue", "test")  # images asked for: rendered (or read) once, then cached
    assert fresh.built and any(tmp_path.iterdir())
    with pytest.raises(KeyError, match="unknown split"):
        fresh.task_labels("tissue", "holdout")


def test_upstream_training_never_mirrors_the_gratings_a_mirror_swaps():
    """A horizontal mirror turns a grating at 45 degrees into one at 135: upstream training flips every class but
    those two orientations (at every frequency)."""
    from expertlib.datasets.embedded_world import domains, mirror_keeps_label

    classes = [f"{d.name}/{c}" for d in domains() for c in d.classes]
    keeps = dict(zip(classes, mirror_keeps_label(classes), strict=True))
    swapped = {c for c, k in keeps.items() if not k}
    assert (
        swapped == {c for c in classes if c.startswith(("grating/o45_", "grating/o135_"))}
        and len(swapped) == 8
    )
    assert keeps["grating/o0_f2.0"] and keeps["grating/o90_f7.0"] and keeps["animal/bear"]

import hashlib
import re

import numpy as np
import pytest

from expertlib.datasets.embedded import TASKS, EmbeddedSpec, build, data_summary
from expertlib.hierarchy import ExpertRule

SMALL = EmbeddedSpec(
    seed=3, upstream_train_per_class=6, upstream_test_per_class=3, task_train=60, task_val=20, task_test=60
)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return build(SMALL, cache_dir=tmp_path_factory.mktemp("cache"))


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

"""Property-based tests (hypothesis) of reading a user's images: generated folder layouts, CSVs and option values.

Invariants: every image is used at most once, in one split, with one label; every file or folder found and not
used is reported; the same images given in another order or layout give the same data and the same scores; a CSV
with an empty or missing field, or a label differing from its class's only in case or spaces, is refused at its
line."""

import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from expertlib.datasets.user_images import IMAGE_EXTENSIONS, ImagesError, load_images
from expertlib.select.proxies import knn_accuracy

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CLASS = st.sampled_from(["cat", "dog", "fox", "owl", "émeu", "a b"])
EXTRAS = st.lists(
    st.sampled_from([".ipynb_checkpoints", ".hidden", "__MACOSX", "thumbnails", "notes.txt", "data.json"]),
    max_size=4,
    unique=True,
)


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path)


@st.composite
def layouts(draw):
    """A class-folder tree: 2-4 classes of 4-7 distinct images, with tool folders, hidden files, nested
    folders and non-image files sprinkled at the root and inside classes."""
    classes = draw(st.lists(CLASS, min_size=2, max_size=4, unique=True))
    counts = [draw(st.integers(4, 7)) for _ in classes]
    root_extras = draw(EXTRAS)
    class_extras = [draw(EXTRAS) for _ in classes]
    return classes, counts, root_extras, class_extras


def _write(root: Path, layout) -> tuple[int, int]:
    """Write ``layout`` under ``root``; return (images written, entries that must be reported as left out)."""
    classes, counts, root_extras, class_extras = layout
    value, expected_ignored = 0, 0
    for c, n, extras in zip(classes, counts, class_extras, strict=True):
        for i in range(n):
            value += 1
            _png(root / c / f"{i:03d}.png", value)
        for e in extras:
            expected_ignored += 1
            if e.endswith((".txt", ".json")):
                (root / c / e).write_text("x")
            else:  # a folder inside a class, with an image that must not join the class
                value += 1
                _png(root / c / e / "inner.png", value)
    for e in root_extras:
        if e.endswith((".txt", ".json")):
            (root / e).write_text("x")
            expected_ignored += 1
        elif e.startswith((".", "__")):
            value += 1
            _png(root / e / "x" / "inner.png", value)
            expected_ignored += 1
        # a non-hidden folder at the root would be a class: the layout's rules make it one (not drawn here)
    return sum(counts), expected_ignored


@SETTINGS
@given(layout=layouts(), fraction=st.floats(0.05, 0.5), seed=st.integers(0, 3))  # leaves >= 2 training images
def test_every_image_once_in_one_split_with_one_label_and_every_leftover_reported(layout, fraction, seed):
    root = Path(tempfile.mkdtemp())
    try:
        n_images, n_ignored = _write(root, layout)
        imgs = load_images(root, test_fraction=fraction, seed=seed, min_per_class=2)
        assert len(imgs.paths) == n_images == len(set(imgs.paths))  # each image once
        assert all(p.parent.parent == root for p in imgs.paths)  # nothing from a nested or hidden folder
        assert set(imgs.splits) <= {"train", "test"} and len(imgs.splits) == n_images
        assert [imgs.classes[y] for y in imgs.labels] == [p.parent.name for p in imgs.paths]  # one label each
        assert len(imgs.ignored) == n_ignored  # every leftover reported, with its rule
        assert all(reason for _, reason in imgs.ignored)
    finally:
        shutil.rmtree(root)


@SETTINGS
@given(layout=layouts(), order=st.randoms(use_true_random=False))
def test_same_images_in_another_order_or_layout_give_the_same_scores(layout, order):
    """A class-folder tree and a shuffled CSV of the same images, with the same split: the same training set
    (as a set of (content, label)) and the same kNN score."""
    root = Path(tempfile.mkdtemp())
    try:
        _write(root, layout)
        tree = load_images(root, min_per_class=2)
        rows = [f"{p.relative_to(root)},{tree.classes[y]},{s}" for p, y, s in
                zip(tree.paths, tree.labels, tree.splits, strict=True)]  # fmt: skip
        order.shuffle(rows)
        (root / "list.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n", encoding="utf-8")
        listed = load_images(root / "list.csv", min_per_class=2)

        def content(imgs, split):
            idx = imgs.split(split)
            data = imgs.data(split, 12, 12, flip=False)
            x = data.batch(np.arange(len(idx)), False, None).reshape(len(idx), -1).numpy()
            names = [imgs.classes[y] for y in imgs.labels[idx]]
            key = np.lexsort(np.c_[x, [hash(n) for n in names]].T)
            return x[key], [names[i] for i in key]

        (xa, ya), (xb, yb) = content(tree, "train"), content(listed, "train")
        assert ya == yb and np.array_equal(xa, xb)
        labels = np.unique(ya, return_inverse=True)[1]
        assert knn_accuracy(xa, labels, k=1) == knn_accuracy(xb, labels, k=1)
    finally:
        shutil.rmtree(root)


MUTATIONS = {  # how one row is spoiled -> what the error must say (None: the row stays good)
    "none": None,
    "empty label": "has an empty label",
    "label of spaces": "has an empty label",
    "no label field": "has no label",
    "case variant": "differ only in case, spaces or Unicode form",
    "stray space": "differ only in case, spaces or Unicode form",
}


def _spoil(row: str, mutation: str) -> str:
    path, label = row.rsplit(",", 1)
    return {"none": row, "empty label": f"{path},", "label of spaces": f"{path},  ", "no label field": path,
            "case variant": f"{path},{label.upper() if label != label.upper() else label.lower()}",
            "stray space": f"{path},{label} "}[mutation]  # fmt: skip


@SETTINGS
@given(layout=layouts(), mutation=st.sampled_from(sorted(MUTATIONS)), target=st.integers(0, 10**6),
       blanks=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["", ",", ",,", " , "])), max_size=4))  # fmt: skip
def test_csvs_with_empty_fields_and_case_variants_are_refused_at_their_line(layout, mutation, target, blanks):
    """A CSV of a generated tree with one row spoiled (an empty or missing label, a case variant, a stray space)
    and blank rows or rows of empty cells anywhere: refused, naming the spoiled row's line; unspoiled, the same
    images as the tree."""
    root = Path(tempfile.mkdtemp())
    try:
        _write(root, layout)
        tree = load_images(root, min_per_class=2)
        rows = [
            f"{p.relative_to(root)},{tree.classes[y]}" for p, y in zip(tree.paths, tree.labels, strict=True)
        ]
        i = target % len(rows)
        rows[i] = _spoil(rows[i], mutation)
        lines, spoiled = ["path,label"], None
        for j, row in enumerate(rows):
            lines += [blank for at, blank in blanks if at % len(rows) == j]
            spoiled = len(lines) + 1 if j == i else spoiled
            lines.append(row)
        (root / "list.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        want = MUTATIONS[mutation]
        if want is None:
            listed = load_images(root / "list.csv", min_per_class=2)
            assert (
                sorted(map(str, listed.paths)) == sorted(map(str, tree.paths))
                and listed.classes == tree.classes
            )
            return
        with pytest.raises(ImagesError) as e:
            load_images(root / "list.csv", min_per_class=2)
        assert want in str(e.value) and re.search(rf"line {spoiled}\b", str(e.value)), (lines, str(e.value))
    finally:
        shutil.rmtree(root)


@SETTINGS
@given(repeat=st.integers(1, 3), relabel=st.booleans())
def test_repeated_rows_and_two_labels_are_refused_unless_kept(repeat, relabel):
    root = Path(tempfile.mkdtemp())
    try:
        _write(root, (["cat", "dog"], [4, 4], [], [[], []]))
        rows = [f"{c}/{i:03d}.png,{c}" for c in ("cat", "dog") for i in range(4)]
        rows += [f"cat/000.png,{'dog' if relabel else 'cat'}"] * repeat
        (root / "list.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
        with pytest.raises(ImagesError, match="two labels" if relabel else "listed twice"):
            load_images(root / "list.csv", min_per_class=2)
        if not relabel:
            kept = load_images(root / "list.csv", min_per_class=2, duplicates="keep")
            assert len(kept.paths) == 8 + repeat
    finally:
        shutil.rmtree(root)


@SETTINGS
@given(fraction=st.one_of(st.floats(allow_nan=True), st.integers(-5, 5)))
def test_test_fraction_outside_zero_one_is_refused_by_name(fraction):
    root = Path(tempfile.mkdtemp())
    try:
        _write(root, (["cat", "dog"], [4, 4], [], [[], []]))
        if isinstance(fraction, float) and 0 < fraction < 1:
            try:  # accepted: the images load, or too few are left to train on (said so by name)
                load_images(root, test_fraction=fraction, min_per_class=2)
            except ImagesError as e:
                assert "too few training images" in str(e) and fraction > 0.5
        else:
            with pytest.raises(ValueError, match="test_fraction must be between 0 and 1"):
                load_images(root, test_fraction=fraction, min_per_class=2)
    finally:
        shutil.rmtree(root)


OPTIONS = {  # option -> (accepts a value?)
    "-k": lambda v: isinstance(v, int) and v >= 1,
    "--batch-size": lambda v: isinstance(v, int) and v >= 1,
    "--workers": lambda v: isinstance(v, int) and v >= 0,
    "--finetune-top": lambda v: isinstance(v, int) and v >= 0,
    "--finetune-steps": lambda v: isinstance(v, int) and v >= 1,
    "--test-fraction": lambda v: 0 < float(v) < 1 if isinstance(v, (int, float)) else False,
    "--lr": lambda v: float(v) > 0 if isinstance(v, (int, float)) else False,
}


@SETTINGS
@given(option=st.sampled_from(sorted(OPTIONS)),
       value=st.one_of(st.integers(-3, 3), st.floats(-2, 2, allow_nan=False), st.sampled_from(["", "x", "1e", "nan"])))  # fmt: skip
def test_numeric_options_are_checked_before_any_model_runs_with_the_option_name(option, value):
    import contextlib
    import io

    from expertlib.rank import parser

    text = repr(value) if isinstance(value, float) else str(value)
    number = value if not isinstance(value, str) else None
    ok = number is not None and OPTIONS[option](number) and not (isinstance(value, float) and option in
                                                                  ("-k", "--batch-size", "--workers", "--finetune-top", "--finetune-steps"))  # fmt: skip
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            args = parser().parse_args(["images", "timm:x", option, text])
        except SystemExit as e:
            assert not ok and e.code == 2, (option, text)
            assert f"argument {option}" in err.getvalue()  # the message names the option
            return
    assert ok, (option, text, args)


def test_image_extensions_cover_what_the_reader_lists():
    assert {".png", ".jpg", ".jpeg", ".bmp", ".webp"} <= set(IMAGE_EXTENSIONS)

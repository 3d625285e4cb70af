import numpy as np
import pytest

from expertlib.datasets.fixtures import write_image_folder
from expertlib.datasets.folders import CorruptImageError
from expertlib.datasets.user_images import ImagesError, load_images


def write_folder(root, classes=("cat", "dog", "fox"), per_class=8, size=20, split=None):
    """Noisy images whose brightness depends on the class, as a class-folder tree (different calls write
    different images: identical bytes under two paths are refused as duplicates)."""
    import zlib

    rng = np.random.default_rng(zlib.crc32(repr((classes, per_class, size, split)).encode()))
    labels = np.repeat(np.arange(len(classes)), per_class)
    images = np.clip(
        rng.normal(60 + 70 * labels[:, None, None, None], 30, (len(labels), size, size, 3)), 0, 255
    )
    splits = [split] * len(labels) if split else None
    return write_image_folder(root, images.astype(np.uint8), labels, list(classes), splits)


def test_class_folders_are_split_per_class_deterministically(tmp_path):
    write_folder(tmp_path)
    a, b = load_images(tmp_path), load_images(tmp_path)
    assert a.classes == ["cat", "dog", "fox"] and len(a.paths) == 24
    assert list(a.splits) == list(b.splits) and (a.splits == "test").sum() == 3 * 2  # 20% of 8, rounded
    train = a.labels[a.split("train")]
    assert np.bincount(train).tolist() == [6, 6, 6]
    x = a.data("train", 40, 32).batch(np.arange(4), False, None)
    assert x.shape == (4, 3, 32, 32) and -1.0 <= x.min() and x.max() <= 1.0


def test_given_splits_and_csv_are_kept(tmp_path):
    write_folder(tmp_path, split="train")
    write_folder(tmp_path, per_class=2, split="test")
    imgs = load_images(tmp_path)
    assert (imgs.splits == "train").sum() == 24 and (imgs.splits == "test").sum() == 6
    lines = ["path,label,split"] + [f"{p.relative_to(tmp_path)},{imgs.classes[y]},{s}"
                                    for p, y, s in zip(imgs.paths, imgs.labels, imgs.splits, strict=True)]  # fmt: skip
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    again = load_images(tmp_path / "list.csv")
    assert again.classes == imgs.classes and list(again.splits) == list(imgs.splits)


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda r: (r / "cat").mkdir(), "holds no images"),
        (lambda r: None, "at least two classes"),
        (lambda r: write_folder(r, classes=("dog",), per_class=2), "too few training images in dog"),
    ],
)
def test_bad_folders_are_named_with_their_fix(tmp_path, break_it, message):
    write_folder(tmp_path, classes=("fox",))
    break_it(tmp_path)
    with pytest.raises(ImagesError, match=message):
        load_images(tmp_path, min_per_class=6)


def test_corrupt_files_fail_by_name_or_are_skipped_and_counted(tmp_path):
    write_folder(tmp_path)
    bad = tmp_path / "dog" / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(CorruptImageError, match="broken.jpg"):
        load_images(tmp_path)
    imgs = load_images(tmp_path, on_corrupt="skip")
    assert imgs.skipped == [bad] and len(imgs.paths) == 24


def test_fingerprint_follows_content_not_location(tmp_path):
    import shutil

    write_folder(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    a, b = load_images(tmp_path / "a"), load_images(tmp_path / "b")
    assert a.fingerprint() == b.fingerprint()
    write_folder(tmp_path / "b", classes=("cat",), per_class=1, size=21)  # one image changes
    assert load_images(tmp_path / "b").fingerprint() != a.fingerprint()


# -- bad input, second round (#35): every CSV error names its line; class names as written; only a .csv is a list --
def _csv(tmp_path, rows, header="path,label"):
    """A CSV beside a folder of 3 classes x 8 images (``{cat}``-style rows name real files)."""
    write_folder(tmp_path)
    files = {
        c: sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / c).iterdir())
        for c in ("cat", "dog", "fox")
    }
    good = [f"{f},{c}" for c, fs in files.items() for f in fs]
    path = tmp_path / "list.csv"
    path.write_text(
        "\n".join([header, *good, *[r.format(**{c: fs[0] for c, fs in files.items()}) for r in rows]]) + "\n"
    )
    return path  # the first added row is line 26 (header + 24 rows)


@pytest.mark.parametrize(
    "rows, message",
    [
        (["{cat},"], r"line 26: .*cat/\S+ has an empty label"),
        (["{cat}"], r"line 26: .*cat/\S+ has no label"),
        (["{cat},   "], r"line 26: .*has an empty label"),
        ([",cat"], r"line 26: no image path"),
        (["{cat},cat,extra"], r"line 26: 3 fields where the header has 2 .*quoted"),
        (["cat,cat"], r"line 26: .*cat is a folder, not an image file"),
        (["cat/nope.png,cat"], r"line 26: image .*nope.png does not exist"),
        (
            ["", "", "cat/nope.png,cat"],
            r"line 28: image .*nope.png does not exist",
        ),  # blank lines are counted
        (['{cat},"big\ncat"', "{dog},"], r"line 28: .*has an empty label"),  # a quoted field spans 2 lines
        (["{cat},cat,test"], r"line 26: 3 fields"),
    ],
)
def test_every_csv_row_error_names_its_line(tmp_path, rows, message):
    with pytest.raises(ImagesError, match=message):
        load_images(_csv(tmp_path, rows))


@pytest.mark.parametrize(
    "label, message",
    [
        ("Cat", r"'cat' \(line 2\) vs 'Cat' \(line 26\)"),
        ("dog ", r"'dog' \(line 10\) vs 'dog ' \(line 26\)"),
        (" dog", r"'dog' \(line 10\) vs ' dog' \(line 26\)"),
        ("FOX", r"'fox' \(line 18\) vs 'FOX' \(line 26\)"),
    ],
)
def test_class_names_differing_only_in_case_or_spaces_are_refused_naming_the_lines(tmp_path, label, message):
    from PIL import Image

    path = _csv(tmp_path, [])
    Image.new("RGB", (20, 20), (1, 2, 3)).save(tmp_path / "new.png")  # its own bytes: not a duplicate
    path.write_text(path.read_text() + f"new.png,{label}\n")
    with pytest.raises(ImagesError, match="differ only in case, spaces or Unicode form: " + message):
        load_images(path)


def test_a_label_written_the_same_way_everywhere_is_kept_as_written(tmp_path):
    path = _csv(tmp_path, [])
    path.write_text(path.read_text().replace(",dog\n", ",Big Dog\n"))
    assert load_images(path).classes == ["Big Dog", "cat", "fox"]


def test_class_folders_differing_only_in_case_or_unicode_form_are_refused(tmp_path):
    import unicodedata

    write_folder(tmp_path / "a", classes=("cat", "Cat"))
    with pytest.raises(ImagesError, match=r"'Cat' \(folder .*Cat\) vs 'cat' \(folder .*cat\)"):
        load_images(tmp_path / "a")
    nfc, nfd = unicodedata.normalize("NFC", "émeu"), unicodedata.normalize("NFD", "émeu")
    write_folder(tmp_path / "b", classes=(nfc, nfd))
    with pytest.raises(ImagesError, match="Unicode form"):
        load_images(tmp_path / "b")


@pytest.mark.parametrize(
    "header, message",
    [
        ("path,label,Split", r"line 1: column 'Split': write it 'split'"),
        ("path,path,label", r"line 1: column 'path' appears twice"),
        ("file,class", r"line 1: the header is 'file,class'.*path,label"),
    ],
)
def test_csv_headers_are_checked_on_line_one(tmp_path, header, message):
    with pytest.raises(ImagesError, match=message):
        load_images(_csv(tmp_path, [], header=header))


def test_empty_csvs_and_encodings_name_their_lines(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ImagesError, match="empty.csv is empty"):
        load_images(tmp_path / "empty.csv")
    (tmp_path / "head.csv").write_text("\n\npath,label\n,,\n")
    with pytest.raises(ImagesError, match="lists no images"):
        load_images(tmp_path / "head.csv")
    (tmp_path / "latin.csv").write_bytes("path,label\ncat/a.png,cat\nfox/b.png,f\xf6x\n".encode("latin-1"))
    with pytest.raises(ImagesError, match="latin.csv, line 3: not UTF-8"):
        load_images(tmp_path / "latin.csv")


def test_a_given_split_must_be_given_for_every_row_naming_the_lines(tmp_path):
    path = _csv(tmp_path, [], header="path,label,split")
    lines = path.read_text().splitlines()
    lines[1:] = [f"{r},train" for r in lines[1:]]
    lines[5] = lines[5].removesuffix(",train")  # line 6 gives none (a short row: no split field)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImagesError, match=r"line 2 gives 'train', line 6 gives none"):
        load_images(path)


def test_repeated_rows_name_both_lines(tmp_path):
    path = _csv(tmp_path, ["{dog},dog"])
    with pytest.raises(ImagesError, match=r"listed twice \(as .*; line 10 and line 26\)"):
        load_images(path)
    path = _csv(tmp_path, ["{dog},cat"])
    with pytest.raises(ImagesError, match=r"two labels \('dog' and 'cat'; line 10 and line 26\)"):
        load_images(path)


def test_a_corrupt_image_names_the_option_that_skips_it_and_its_csv_line(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "dog" / "zero.png").write_bytes(b"")
    with pytest.raises(CorruptImageError) as e:
        load_images(tmp_path)
    assert (
        "zero.png" in str(e.value)
        and "on_corrupt='skip'" in str(e.value)
        and "--skip-corrupt" in str(e.value)
    )
    assert "skip_corrupt=True" not in str(e.value)  # another class's setting
    files = sorted((tmp_path / "cat").iterdir())
    (tmp_path / "list.csv").write_text(
        f"path,label\n{files[0].relative_to(tmp_path)},cat\ndog/zero.png,dog\n"
    )
    with pytest.raises(CorruptImageError, match=r"list.csv, line 3: cannot decode image .*zero.png"):
        load_images(tmp_path / "list.csv")
    imgs = load_images(tmp_path, on_corrupt="skip")
    assert imgs.skipped == [tmp_path / "dog" / "zero.png"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("images.zip", b"PK\x03\x04rest", "is an archive: unpack it"),
        ("images.tar.gz", b"\x1f\x8b\x08rest", "is an archive: unpack it"),
        ("photos", b"PK\x03\x04rest", "is an archive: unpack it"),  # by content, whatever its name
        ("one.png", None, "is a single image: ranking needs labelled images of at least two classes"),
        ("list.txt", b"path,label\n", r"neither a folder nor a \.csv file.*named \*\.csv"),
    ],
)
def test_only_a_csv_is_read_as_a_list_and_other_files_are_named_for_what_they_are(
    tmp_path, name, content, message
):
    from PIL import Image

    path = tmp_path / name
    if content is None:
        Image.new("RGB", (4, 4)).save(path)
    else:
        path.write_bytes(content)
    with pytest.raises(ImagesError, match=message) as e:
        load_images(path)
    assert "CSV UTF-8" not in str(e.value)


def test_output_folders_are_left_out_wherever_they_lie_and_listed(tmp_path):
    from expertlib.datasets.user_images import OUTPUT

    write_folder(tmp_path / "flat")
    write_folder(tmp_path / "flat" / "ranking", classes=("a", "b"))  # a previous run's output, inside IMAGES
    write_folder(tmp_path / "flat" / "cat" / "out", classes=("c",))  # one inside a class folder
    imgs = load_images(
        tmp_path / "flat", leave_out=[tmp_path / "flat" / "ranking", tmp_path / "flat" / "cat" / "out"]
    )
    assert imgs.classes == ["cat", "dog", "fox"] and len(imgs.paths) == 24
    assert {(p.name, r) for p, r in imgs.ignored} == {("ranking", OUTPUT), ("out", OUTPUT)}
    write_folder(tmp_path / "split", split="train")
    write_folder(tmp_path / "split", per_class=2, split="test")
    write_folder(tmp_path / "split" / "train" / "ranking", classes=("a",))
    imgs = load_images(tmp_path / "split", leave_out=[str(tmp_path / "split" / "train" / "ranking")])
    assert imgs.classes == ["cat", "dog", "fox"] and [p.name for p, _ in imgs.ignored] == ["ranking"]
    with pytest.raises(ImagesError, match="both the images and the output folder"):
        load_images(tmp_path / "flat", leave_out=[tmp_path / "flat"])


def test_a_csv_row_naming_a_dead_link_is_named_or_skipped_and_the_split_source_is_kept(tmp_path):
    import os

    path = _csv(tmp_path, ["gone.png,cat"])
    os.symlink(tmp_path / "nowhere.png", tmp_path / "gone.png")  # a DVC or git-annex file not fetched yet
    with pytest.raises(ImagesError, match=r"gone.png is an unreadable symbolic link: its target .*nowhere.png does "
                       r"not exist.*dvc pull.*--skip-corrupt"):  # fmt: skip
        load_images(path)
    imgs = load_images(path, on_corrupt="skip")
    assert len(imgs.paths) == 24 and [p.name for p, _ in imgs.ignored] == ["gone.png"]
    assert "(line 26)" in imgs.ignored[0][1] and not imgs.split_given

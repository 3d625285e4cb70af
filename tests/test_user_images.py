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

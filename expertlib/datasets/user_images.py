"""A user's own labelled images, for ranking models on them (:mod:`expertlib.rank`).

Two layouts:

- a folder tree, one folder per class (``root/<class>/<image>``), optionally split first
  (``root/{train,val,test}/<class>/<image>``);
- a CSV file with columns ``path,label`` and optionally ``split`` (paths relative to the CSV's folder).

Without a given split, each class is split deterministically (a fixed seeded shuffle of its files sorted by
name): ``test_fraction`` of it for testing, the rest for training. Everything is checked before any model
runs, each problem named with its fix: an empty class folder, a single class, a class with fewer training
images than kNN's k, files that are not decodable images (an error, or skipped and counted with
``on_corrupt="skip"``).

Stated rules, so that no image is silently added, merged or dropped:

- hidden and tool folders and files (a name starting with ``.`` or ``__``: ``.ipynb_checkpoints``,
  ``__MACOSX``, ``.DS_Store``) are ignored, and listed in :attr:`UserImages.ignored`;
- a class is the images directly in its folder: a folder inside a class folder (``thumbnails/``) is not read,
  and is listed; so is every file whose extension is not an image's;
- a class folder reached twice (a symlink to another class folder) and a file given two labels are refused;
- repeated files (the same path, or the same bytes under two paths: by content hash) are refused unless
  ``duplicates="keep"``, since they would sit in training and test at once or weigh twice;
- a CSV is read as UTF-8 (with or without a byte-order mark) or UTF-16 (with one); other encodings are refused
  by name. Only a file named ``.csv`` is read as a list; an archive or a single image is refused for what it is;
- every CSV row gives a path and a non-empty label (a missing or empty one is refused, with its line); class
  names are taken exactly as written, and two that differ only in case, spacing or Unicode form (``Cat`` and
  ``cat``, ``'dog '`` and ``dog``), which would split one class or merge two, are refused, naming the lines (or
  folders) that disagree. Every CSV error names its line; blank rows are skipped; columns other than
  path, label and split are ignored, unless they are a misspelling of one (``Split``);
- folders the caller writes into (``leave_out``: ``rank``'s ``--out``) are never read, wherever they lie, and
  are listed;
- a symbolic link that leads nowhere (a DVC or git-annex file not fetched yet) or round in a loop is an error
  naming it, or, with ``on_corrupt="skip"``, left out and listed, as an undecodable file is.
"""

from __future__ import annotations

import csv
import io
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from expertlib.datasets.batches import ImageData
from expertlib.datasets.folders import IMAGE_EXTENSIONS, CorruptImageError, ImageTooLargeError, read_image

SPLITS = ("train", "val", "test")


class ImagesError(ValueError):
    """The user's images cannot be ranked on as given; the message says what to change."""


@dataclass
class UserImages:
    """Image paths, integer labels and a split name per image, with the class names in label order."""

    paths: list[Path]
    labels: np.ndarray
    splits: np.ndarray
    classes: list[str]
    skipped: list[Path] = field(default_factory=list)  # undecodable files left out (on_corrupt="skip")
    # (path, reason) of everything found but not used: hidden or tool folders and files, folders inside a
    # class, files that are not images, undecodable files
    ignored: list[tuple[Path, str]] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)  # each image's sha256, read once by load_images
    split_given: bool = False  # the splits came with the images (folders or a split column), not drawn here
    max_pixels: int | None = None  # the largest image read (None: read_image's default)

    def split(self, name: str) -> np.ndarray:
        """Positions of the images in split ``name`` ('train'; 'test' is 'test', or 'val' when no test)."""
        if name == "test" and not (self.splits == "test").any():
            name = "val"
        return np.flatnonzero(self.splits == name)

    def data(self, name: str, precrop: int, crop: int, flip: bool = True) -> ImageData:
        """Split ``name`` as training data at a model's resolution (BiT's [-1, 1] pixels)."""
        idx = self.split(name)
        paths = [self.paths[i] for i in idx]
        return ImageData(paths, self.labels[idx], precrop, crop, flip,
                         read=lambda i: read_image(paths[i], self.max_pixels))  # fmt: skip

    def fingerprint(self) -> str:
        """Changes when any image's content, label or split changes; not when the folder moves (the same images
        elsewhere, e.g. in a fresh clone, reuse cached features)."""
        import hashlib

        digests = self.digests or [hashlib.sha256(p.read_bytes()).digest() for p in self.paths]
        h = hashlib.sha256()
        for d, y, s in zip(digests, self.labels, self.splits, strict=True):
            h.update(f"{y}|{s}|".encode() + d)
        return h.hexdigest()[:16]


# why a found file or folder is not used (the first words of each are counted on rank's command line)
HIDDEN = "hidden or tool file or folder"
OUTPUT = "an output folder (rank's --out): never read as images"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tbz2", ".txz")
_ARCHIVE_MAGIC = (
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"7z\xbc\xaf",
    b"Rar!",
    b"BZh",
    b"\xfd7zXZ",
    b"\x28\xb5\x2f\xfd",
)
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"II*\x00", b"MM\x00*")
CSV_COLUMNS = ("path", "label", "split")


LINK = "unreadable symbolic link"


def _dead_link(p: Path) -> str | None:
    """Why ``p`` is a symbolic link that cannot be read (it leads nowhere, or round in a loop), or None."""
    if not p.is_symlink() or p.exists():
        return None
    try:
        target = p.resolve(strict=False)
    except RuntimeError:  # Python 3.11 says "Symlink loop"
        return f"{LINK}: a link loop"
    if os.path.islink(target) or target == p.absolute():
        return f"{LINK}: a link loop"
    return f"{LINK}: its target {os.readlink(p)} does not exist (a DVC or git-annex file not fetched yet?)"


def _hidden(p: Path) -> bool:
    return p.name.startswith((".", "__"))


def _is_left_out(p: Path, leave_out: frozenset[Path]) -> bool:
    return bool(leave_out) and p.resolve() in leave_out


def _images_in(folder: Path, ignored: list[tuple[Path, str]], leave_out: frozenset[Path]) -> list[Path]:
    """A class folder's own images; everything else in it is listed in ``ignored`` with the rule that left it."""
    out = []
    for p in sorted(folder.iterdir()):
        dead = _dead_link(p)
        if dead:
            ignored.append((p, dead))
        elif _is_left_out(p, leave_out):
            ignored.append((p, OUTPUT))
        elif _hidden(p):
            ignored.append((p, HIDDEN))
        elif p.is_dir():
            ignored.append(
                (p, "a folder inside a class folder: a class is the images directly in its folder")
            )
        elif p.suffix.lower() not in IMAGE_EXTENSIONS:
            ignored.append((p, f"not an image file ({', '.join(IMAGE_EXTENSIONS)})"))
        else:
            out.append(p)
    return out


def _folders(folder: Path, ignored: list[tuple[Path, str]], leave_out: frozenset[Path]) -> list[Path]:
    """The sub-folders of ``folder`` that count; hidden and tool entries, output folders and loose files are
    listed instead."""
    out = []
    for d in sorted(folder.iterdir()):
        dead = _dead_link(d)
        if dead:
            ignored.append((d, dead))
        elif _is_left_out(d, leave_out):
            ignored.append((d, OUTPUT))
        elif _hidden(d):
            ignored.append((d, HIDDEN))
        elif d.is_dir():
            out.append(d)
        else:
            ignored.append((d, "a file beside the class folders: images go inside a class folder"))
    return out


# what each reader returns: image paths, class names as written, given splits (None: none given) and where each
# entry comes from ("line 7" of a CSV; "" for a folder tree, whose paths say it)
Found = tuple[list[Path], list[str], list[str | None], list[str]]


def _from_tree(root: Path, ignored: list[tuple[Path, str]], leave_out: frozenset[Path]) -> Found:
    tops = _folders(root, ignored, leave_out)
    split_dirs = [d for d in tops if d.name in SPLITS]
    if split_dirs and len(split_dirs) != len(tops):
        others = [d.name for d in tops if d.name not in SPLITS]
        raise ImagesError(f"{root} mixes split folders ({', '.join(d.name for d in split_dirs)}) with other "
                          f"folders ({', '.join(others[:5])}): put every class folder under train/, val/ or test/, "
                          "or use class folders only")  # fmt: skip
    groups = (
        [(d, d.name, _folders(d, ignored, leave_out)) for d in split_dirs]
        if split_dirs
        else [(root, None, tops)]
    )
    paths, names, splits = [], [], []
    seen: dict[Path, Path] = {}
    for folder, split, classes in groups:
        if not classes:
            raise ImagesError(f"no class folders under {folder}: expected {folder}/<class>/<image>")
        for c in classes:
            real = c.resolve()
            if real in seen:
                raise ImagesError(f"class folders {seen[real]} and {c} are the same folder ({real}, through a symbolic "
                                  "link): each class must be its own folder; remove the link")  # fmt: skip
            seen[real] = c
            files = _images_in(c, ignored, leave_out)
            if not files:
                raise ImagesError(f"class folder {c} holds no images ({', '.join(IMAGE_EXTENSIONS)}): add images or "
                                  "remove the folder")  # fmt: skip
            paths += files
            names += [c.name] * len(files)
            splits += [split] * len(files)
    return paths, names, splits, [""] * len(paths)


def _read_csv_text(path: Path) -> str:
    raw = path.read_bytes()
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if raw.startswith(bom):
            return raw.decode(codec)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ImagesError(f"{path}, line {line}: not UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r}) nor UTF-16 with a "
                          "byte-order mark: re-save it as UTF-8 (e.g. Excel: 'CSV UTF-8')") from None  # fmt: skip


def _check_header(path: Path, line: int, header: list[str]) -> None:
    at = f"{path}, line {line}"
    for h in header:
        if h not in CSV_COLUMNS and h.lower() in CSV_COLUMNS:
            raise ImagesError(f"{at}: column {h!r}: write it {h.lower()!r} (column names are read as written, and "
                              "this one would otherwise be ignored)")  # fmt: skip
    twice = sorted({h for h in header if h in CSV_COLUMNS and header.count(h) > 1})
    if twice:
        raise ImagesError(f"{at}: column {twice[0]!r} appears twice in the header: keep one")
    if not {"path", "label"} <= set(header):
        raise ImagesError(f"{at}: the header is {','.join(header)!r}, but a CSV of images needs a first line naming "
                          "its columns path,label (and optionally split), then one row per image, e.g. "
                          "cat/001.jpg,cat")  # fmt: skip


def _from_csv(path: Path, ignored: list[tuple[Path, str]], leave_out: frozenset[Path]) -> Found:
    """Rows of path,label[,split] (paths relative to the CSV's folder), each checked with its line number."""
    reader = csv.reader(io.StringIO(_read_csv_text(path), newline=""))
    header: list[str] | None = None
    paths, names, splits, where = [], [], [], []
    last = 0  # the line the previous row ended on (a quoted field may span lines)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise ImagesError(f"{path}, line {reader.line_num}: not a readable CSV row ({e}): re-save the file as "
                              "CSV (comma-separated, UTF-8)") from None  # fmt: skip
        line, last = last + 1, reader.line_num
        if not any(f.strip() for f in row):  # a blank line, or a row of empty cells as spreadsheets export
            continue
        at = f"{path}, line {line}"
        if header is None:
            header = [f.strip() for f in row]
            _check_header(path, line, header)
            continue
        if len(row) > len(header) and any(f.strip() for f in row[len(header) :]):
            raise ImagesError(f"{at}: {len(row)} fields where the header has {len(header)} ({','.join(header)}): a "
                              'path or label holding a comma must be quoted, e.g. "cats, big"')  # fmt: skip
        rec = dict(zip(header, row, strict=False))
        if "path" not in rec or not rec["path"].strip():
            raise ImagesError(f"{at}: no image path: give every row the image's path (relative to the CSV's "
                              "folder) and its label")  # fmt: skip
        if "label" not in rec or not rec["label"].strip():
            raise ImagesError(f"{at}: {rec['path']} has {'an empty' if 'label' in rec else 'no'} label: give every "
                              "image its class (an image of no class cannot be ranked on), or remove the row")  # fmt: skip
        p = Path(rec["path"])
        p = p if p.is_absolute() else path.parent / p
        dead = _dead_link(p)
        if dead:
            ignored.append((p, f"{dead} (line {line})"))
            continue
        if p.is_dir():
            raise ImagesError(f"{at}: {p} is a folder, not an image file: list one image file per row, or pass a "
                              "folder of class folders as IMAGES instead of the CSV")  # fmt: skip
        if not p.is_file():
            trimmed = Path(rec["path"].strip())
            hint = (" (the path as written has a space at its start or end)"
                    if rec["path"] != rec["path"].strip() and (trimmed if trimmed.is_absolute() else path.parent / trimmed).exists()
                    else "")  # fmt: skip
            raise ImagesError(f"{at}: image {p} does not exist{hint}: paths are relative to the CSV's folder "
                              f"({path.parent})")  # fmt: skip
        split = (rec.get("split") or "").strip() or None
        if split is not None and split not in SPLITS:
            raise ImagesError(f"{at}: split {split!r} is not one of {', '.join(SPLITS)}")
        if leave_out and any(q in leave_out for q in p.resolve().parents):
            ignored.append((p, f"{OUTPUT} (line {line})"))
            continue
        paths.append(p)
        names.append(rec["label"])  # exactly as written: see _check_class_names
        splits.append(split)
        where.append(f"line {line}")
    if header is None:
        raise ImagesError(f"{path} is empty: it needs a first line path,label and then one row per image")
    if not paths and not ignored:
        raise ImagesError(f"{path} lists no images: add one row path,label per image after the header")
    return paths, names, splits, where


def _not_a_list(src: Path) -> ImagesError:
    """The error for IMAGES that is a file but not a .csv: named for what it is, with what to do instead."""
    import tarfile

    with open(src, "rb") as f:
        head = f.read(16)
    name = src.name.lower()
    if name.endswith(ARCHIVE_SUFFIXES) or head.startswith(_ARCHIVE_MAGIC) or tarfile.is_tarfile(src):
        return ImagesError(f"{src} is an archive: unpack it first (e.g. unzip, or tar -xf) and pass the folder it "
                           "gives, which holds one folder per class (or a .csv list of path,label)")  # fmt: skip
    if (
        src.suffix.lower() in (*IMAGE_EXTENSIONS, ".tif", ".tiff", ".gif")
        or head.startswith(_IMAGE_MAGIC)
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
    ):
        return ImagesError(f"{src} is a single image: ranking needs labelled images of at least two classes. Put the "
                           "images in a folder with one folder per class (root/<class>/<image>) and pass that folder, "
                           "or list them in a .csv file of path,label")  # fmt: skip
    return ImagesError(f"{src} is neither a folder nor a .csv file: pass a folder of class folders, or a list of "
                       "path,label rows in a file named *.csv (only a .csv file is read as a list)")  # fmt: skip


def _class_key(name: str) -> str:
    """What a reader sees as the same class name: case, surrounding and repeated spaces, and Unicode form aside."""
    return " ".join(unicodedata.normalize("NFKC", name).split()).casefold()


def _check_class_names(src: Path, paths: list[Path], names: list[str], where: list[str]) -> None:
    """Refuse class names that differ only in case, spaces or Unicode form (``Cat``/``cat``, ``'dog '``/``dog``):
    taken as written they would split one class in two; merged, they would hide a typo. Names the lines (or
    folders) that disagree."""
    first: dict[str, dict[str, str]] = {}
    for p, n, w in zip(paths, names, where, strict=True):
        first.setdefault(_class_key(n), {}).setdefault(n, w or f"folder {p.parent}")
    clashes = [v for v in first.values() if len(v) > 1]
    if clashes:
        said = "; ".join(" vs ".join(f"{n!r} ({w})" for n, w in v.items()) for v in clashes[:5])
        raise ImagesError(f"{src}: class names that differ only in case, spaces or Unicode form: {said}. Class names "
                          "are taken exactly as written, so these would be separate classes: write each class's "
                          "name the same way everywhere")  # fmt: skip


def _check_duplicates(paths: list[Path], names: list[str], where: list[str], duplicates: str) -> list[bytes]:
    """Refuse a file given two labels; and, unless ``duplicates == "keep"``, the same file twice or the same
    bytes under two paths (they would be in training and test at once, or count twice). Returns each file's
    sha256, which the images' fingerprint reuses."""
    import hashlib

    def lines(j: int, i: int) -> str:
        return f"; {where[j]} and {where[i]}" if where[i] else ""

    by_file: dict[Path, int] = {}
    by_content: dict[bytes, int] = {}
    digests: list[bytes] = []
    for i, p in enumerate(paths):
        real = p.resolve()
        if real in by_file:
            j = by_file[real]
            if names[j] != names[i]:
                raise ImagesError(
                    f"{p} is given two labels ({names[j]!r} and {names[i]!r}{lines(j, i)}): give each image one label"
                )
            if duplicates != "keep":
                raise ImagesError(f"{p} is listed twice (as {paths[j]} too{lines(j, i)}): remove the repeated entry, or "
                                  "pass duplicates='keep' (--keep-duplicates) to keep it")  # fmt: skip
        by_file.setdefault(real, i)
        digest = hashlib.sha256(p.read_bytes()).digest()
        if digest in by_content and duplicates != "keep" and paths[by_content[digest]].resolve() != real:
            j = by_content[digest]
            raise ImagesError(f"{paths[j]} and {p} hold the same image (identical bytes{lines(j, i)}): one copy could be "
                              "trained on and tested on; remove one, or pass duplicates='keep' (--keep-duplicates)")  # fmt: skip
        by_content.setdefault(digest, i)
        digests.append(digest)
    return digests


def load_images(source: str | os.PathLike, test_fraction: float = 0.2, seed: int = 0, min_per_class: int = 2,
                on_corrupt: str = "error", duplicates: str = "refuse", leave_out: Sequence[str | os.PathLike] = (),
                max_image_pixels: int | None = None) -> UserImages:  # fmt: skip
    """Read and check a folder tree or CSV of labelled images (see the module docstring for the rules).

    ``min_per_class``: training images every class needs (kNN's k + 1 for leave-one-out kNN);
    ``duplicates``: "refuse" (default) or "keep" repeated files and identical images;
    ``leave_out``: folders never read as images, wherever they lie (the caller's output folder), listed;
    ``max_image_pixels``: the largest image accepted (default: :data:`~expertlib.datasets.folders.DEFAULT_MAX_PIXELS`)."""
    if on_corrupt not in ("error", "skip"):
        raise ValueError(f"on_corrupt must be 'error' or 'skip', not {on_corrupt!r}")
    if duplicates not in ("refuse", "keep"):
        raise ValueError(f"duplicates must be 'refuse' or 'keep', not {duplicates!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
    src = Path(source)
    if not src.exists():
        raise ImagesError(f"{src} does not exist: pass a folder of class folders or a CSV of path,label")
    outs = frozenset(Path(o).resolve() for o in leave_out)
    if src.resolve() in outs:
        raise ImagesError(f"{src} is both the images and the output folder (--out): write the output elsewhere, e.g. "
                          f"--out {src.resolve().parent / 'ranking'}")  # fmt: skip
    ignored: list[tuple[Path, str]] = []
    if src.is_dir():
        paths, names, given, where = _from_tree(src, ignored, outs)
    elif src.is_file() and src.suffix.lower() == ".csv":
        paths, names, given, where = _from_csv(src, ignored, outs)
    else:
        raise _not_a_list(src) if src.is_file() else ImagesError(f"{src} is neither a folder nor a file")
    dead = [(p, r) for p, r in ignored if r.startswith(LINK)]
    if dead and on_corrupt == "error":
        p, r = dead[0]
        more = f" (and {len(dead) - 1} more)" if len(dead) > 1 else ""
        raise ImagesError(
            f"{p} is an {r}{more}: fetch the file (dvc pull, git annex get) or remove the link, or pass "
            "on_corrupt='skip' (rank: --skip-corrupt) to leave such links out, listed"
        )  # fmt: skip
    _check_class_names(src, paths, names, where)
    digests = _check_duplicates(paths, names, where, duplicates)
    keep, skipped = [], []
    for i, p in enumerate(paths):  # decode every image once, up front: no model runs on a broken set
        try:
            read_image(p, max_image_pixels)
            keep.append(i)
        except CorruptImageError as e:
            problem = f"{src}, {where[i]}: {e.problem}" if where[i] else e.problem
            if on_corrupt == "error" and isinstance(e, ImageTooLargeError):
                raise CorruptImageError(f"{problem}: max_image_pixels={e.pixels} (rank: --max-image-pixels {e.pixels}); "
                                        "or pass on_corrupt='skip' (rank: --skip-corrupt) to leave such files out, "
                                        "listed", problem) from e  # fmt: skip
            if on_corrupt == "error":
                raise CorruptImageError(f"{problem}. Delete or replace the file, or pass on_corrupt='skip' (rank: "
                                        "--skip-corrupt) to leave such files out, listed", problem) from e  # fmt: skip
            skipped.append(p)
            ignored.append((p, f"undecodable: {problem}"))
    paths, names, given = [paths[i] for i in keep], [names[i] for i in keep], [given[i] for i in keep]
    digests, where = [digests[i] for i in keep], [where[i] for i in keep]
    classes = sorted(set(names))
    if len(classes) < 2:
        raise ImagesError(f"{src} has {len(classes)} class ({', '.join(map(repr, classes)) or 'none'}): ranking needs "
                          "at least two classes of images")  # fmt: skip
    labels = np.array([classes.index(n) for n in names], dtype=np.int64)
    splits = np.array([g or "" for g in given], dtype=object)
    if any(g is None for g in given):
        if not all(g is None for g in given):
            a = next(i for i, g in enumerate(given) if g is not None)
            b = next(i for i, g in enumerate(given) if g is None)
            raise ImagesError(f"{src}: give a split for every image or for none ({where[a] or paths[a]} gives "
                              f"{given[a]!r}, {where[b] or paths[b]} gives none)")  # fmt: skip
        rng = np.random.default_rng(seed)
        for c in range(len(classes)):
            members = np.flatnonzero(labels == c)  # in file-name order
            members = members[rng.permutation(len(members))]
            n_test = int(round(test_fraction * len(members))) if len(members) > min_per_class else 0
            splits[members[:n_test]] = "test"
            splits[members[n_test:]] = "train"
    train = labels[splits == "train"]
    counts = np.bincount(train, minlength=len(classes))
    short = [f"{classes[c]} ({counts[c]})" for c in range(len(classes)) if counts[c] < min_per_class]
    if short:
        raise ImagesError(f"too few training images in {', '.join(short[:10])}: each class needs at least "
                          f"{min_per_class} (kNN's k + 1); add images or lower k")  # fmt: skip
    return UserImages(paths, labels, splits, classes, skipped, ignored, digests, split_given=all(g is not None for g in given),
                      max_pixels=max_image_pixels)  # fmt: skip

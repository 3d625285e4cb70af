"""Convert the paper's released experts (TF Hub SavedModels) into expertlib models and banks.

The 48 ImageNet-21k experts were released only as TensorFlow SavedModels (``google/experts/bit/r50x1/in21k/
<name>``): BiT-M R50x1 fine-tuned on one WordNet subtree each, feature-vector models without a head. This
reads their variables without TensorFlow (:mod:`expertlib.models.tfcheckpoint`), maps BiT's variable names
(``.../block1/unit01/a/standardized_conv2d/kernel``, as in BiT's ``.npz``) onto expertlib's parameters,
infers the architecture from the shapes, and writes

- one expert: an expertlib model file (``load_model``) with the expert's name and subtree recorded;
- several experts (or a folder of them): one full-expert bank (``load_bank``) whose base is B, given with
  ``--base`` (BiT-M R50x1 ``.npz``, a timm checkpoint or an expertlib model), or else the ``entity`` expert
  (the whole-hierarchy expert, the closest released model to B).

Command line::

    python -m expertlib.convert experts/animal.tar.gz --out animal.safetensors
    python -m expertlib.convert experts/ --out released_experts.safetensors --base BiT-M-R50x1.npz
    python -m expertlib.convert animal=downloads/1.tar.gz bird=downloads/2.tar.gz --out two.safetensors --base B.npz

Every tensor is checked against the CRC32C its checkpoint records (a corrupt download is refused, naming the
tensor); experts of different architectures are refused as one bank.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from expertlib.datasets.hierarchy import PAPER_EXPERTS
from expertlib.models.adapters import FullExperts
from expertlib.models.resnet import ResNetV2, ResNetV2Config, config_name
from expertlib.models.tfcheckpoint import TFCheckpointError, read_saved_model
from expertlib.models.weights import (
    WeightMismatchError,
    bit_to_state_dict,
    load_bit_npz,
    load_model,
    load_timm_checkpoint,
    save_bank,
    save_model,
)

# BiT's variable names after any prefix a SavedModel adds ("resnet/", "keras_layer/resnet/", ...)
_BIT_NAME = re.compile(
    r"(root_block/standardized_conv2d/kernel"
    r"|block\d+/unit\d+/[abc]/(?:proj/)?(?:standardized_conv2d/kernel|group_norm/(?:gamma|beta))"
    r"|group_norm/(?:gamma|beta)|head/conv2d/(?:kernel|bias))$"
)
IGNORED = r"(^|/)(global_step|save_counter)$"  # bookkeeping variables some exporters add


class ConversionError(ValueError):
    """A SavedModel whose variables do not map onto a BiT ResNet-v2; the message names them."""


def bit_arrays(variables: Mapping[str, np.ndarray], ignore: str = IGNORED) -> dict[str, np.ndarray]:
    """Variables by BiT ``.npz`` name (``resnet/...``); raises naming every variable that maps to none, and
    saying so when none does (a model that is not BiT-shaped, not a few extra variables)."""
    out, unmapped, skipped = {}, [], []
    for name, value in variables.items():
        m = _BIT_NAME.search(name)
        if m:
            key = "resnet/" + m[1]
            if key in out:
                raise ConversionError(f"two variables map to BiT name {key}: is this one model?")
            out[key] = np.asarray(value)
        elif re.search(ignore, name):
            skipped.append(name)
        else:
            unmapped.append(name)
    if not out:
        raise ConversionError(
            f"not a BiT ResNet-v2: none of its {len(variables)} variables has a BiT name (e.g. "
            f"{sorted(variables)[:3]}); expected names ending like block1/unit01/a/standardized_conv2d/kernel. The "
            "released experts are BiT-M R50x1 feature vectors (google/experts/bit/r50x1/in21k/<name>)"
        )
    if unmapped:
        raise ConversionError(
            f"{len(unmapped)} variables have no BiT name: {sorted(unmapped)[:8]} (beside {len(out)} BiT weights"
            + (f" and {len(skipped)} bookkeeping variables {sorted(skipped)[:3]}" if skipped else "")
            + "); pass ignore= (--ignore) a regular expression for those that are not weights"
        )
    return out


def infer_config(arrays: Mapping[str, np.ndarray], norm_groups: int = 32) -> ResNetV2Config:
    """The ResNet-v2 architecture the BiT arrays describe (units per stage, widths, stem, block type)."""
    if "resnet/root_block/standardized_conv2d/kernel" not in arrays:
        raise ConversionError("no root_block/standardized_conv2d/kernel: not a BiT ResNet-v2")
    root = arrays["resnet/root_block/standardized_conv2d/kernel"]
    units: dict[int, set[int]] = {}
    for k in arrays:
        m = re.match(r"resnet/block(\d+)/unit(\d+)/", k)
        if m:
            units.setdefault(int(m[1]), set()).add(int(m[2]))
    stages = sorted(units)
    if stages != list(range(1, len(stages) + 1)) or any(
        units[s] != set(range(1, len(units[s]) + 1)) for s in stages
    ):
        raise ConversionError(
            f"blocks and units are not numbered 1..n: { ({s: sorted(u) for s, u in units.items()}) }"
        )
    bottleneck = "resnet/block1/unit01/c/standardized_conv2d/kernel" in arrays
    last = "c" if bottleneck else "b"
    widths = tuple(
        int(arrays[f"resnet/block{s}/unit01/{last}/standardized_conv2d/kernel"].shape[-1]) for s in stages
    )
    return ResNetV2Config(
        layers=tuple(len(units[s]) for s in stages),
        widths=widths,
        block="bottleneck" if bottleneck else "basic",
        stem="bit" if root.shape[0] == 7 else "small",
        stem_width=int(root.shape[-1]),
        norm_groups=norm_groups,
        in_chans=int(root.shape[2]),
    )


def expert_name(path: str | os.PathLike) -> str | None:
    """The released expert a path or model handle names (``google/experts/bit/r50x1/in21k/animal/1``,
    ``bit-r50x1-in21k-animal.tar.gz``): the last path part that names one; None when no part does (a download
    saved as ``downloads/1.tar.gz`` must be named with ``NAME=PATH`` or ``--name``)."""
    parts = [re.sub(r"(\.tar)?\.(gz|tgz|tar)$", "", p) for p in Path(path).parts]
    for part in reversed(parts):
        for e in sorted(PAPER_EXPERTS, key=len, reverse=True):
            if part == e or re.search(rf"(^|[-_]){re.escape(e)}([-_]v?\d+)?$", part):
                return e
    return None


def _what_file(path: Path) -> str:
    """What a file that is no tar archive looks like, from its first bytes (for the error that refuses it)."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "it is empty: 0 bytes"
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip-compressed data with no tar archive inside"
    if head.startswith(b"PK\x03\x04"):
        return "it is a zip archive: unzip it and pass the folder that holds saved_model.pb"
    if head.lstrip()[:1] == b"<":
        return "it is a web page or XML text: an error page saved in place of the download?"
    return "its content is no archive"


def _unsafe_member(member: tarfile.TarInfo) -> str | None:
    """Why an archive member would land outside the folder it is unpacked into, or None when it would not."""
    name = PurePosixPath(member.name.replace("\\", "/"))
    if name.is_absolute() or re.match(r"^[A-Za-z]:", member.name):
        return "has an absolute path"
    if ".." in name.parts:
        return "climbs out of the archive's folder with '..'"
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname)
        if target.is_absolute() or ".." in (name.parent / target if member.issym() else target).parts:
            return f"is a link to {member.linkname}, outside the archive's folder"
    if member.isdev():
        return "is a device file"
    return None


def check_source(path: str | os.PathLike) -> None:
    """Refuse, before anything is unpacked, a file that is not a tar archive (named for what it is), an archive
    cut short, and an archive member that would land outside the folder it is unpacked into (an absolute path,
    ``..``, a link out, a device), naming the archive and the member. Folders pass (read as SavedModels)."""
    path = Path(path)
    if not path.is_file():
        return
    if not tarfile.is_tarfile(path):
        raise ConversionError(f"{path} is not a tar archive of a SavedModel ({_what_file(path)}): pass the folder that "
                              "holds saved_model.pb and variables/, or its .tar.gz as downloaded (download it again if "
                              "this file should be one)")  # fmt: skip
    try:
        with tarfile.open(path) as tar:
            for member in tar:  # reads through the whole archive: a truncated download fails here
                why = _unsafe_member(member)
                if why:
                    raise ConversionError(f"archive {path}: member {member.name!r} {why}; such an archive is not "
                                          "unpacked. A TF Hub SavedModel archive holds only saved_model.pb and "
                                          "variables/ under relative paths: download it again")  # fmt: skip
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise ConversionError(f"archive {path} cannot be read to its end ({type(e).__name__}: {e}): the download is "
                              "incomplete or damaged; download it again") from None  # fmt: skip


def convert_saved_model(path: str | os.PathLike, norm_groups: int = 32, ignore: str = IGNORED) -> ResNetV2:
    """A released expert (SavedModel directory or archive) as a ResNetV2 (no head, as released)."""
    check_source(path)
    arrays = bit_arrays(read_saved_model(path), ignore)
    cfg = infer_config(arrays, norm_groups)
    head = "resnet/head/conv2d/kernel" in arrays
    model = ResNetV2(cfg, num_classes=int(arrays["resnet/head/conv2d/kernel"].shape[-1]) if head else 0)
    try:
        sd = bit_to_state_dict(arrays, model, head=head)
    except WeightMismatchError as e:
        raise ConversionError(f"{path}: {e}") from e
    model.load_state_dict(sd, strict=True)
    return model.eval()


def load_base(path: str | os.PathLike, like: ResNetV2) -> ResNetV2:
    """B from a BiT ``.npz``, a timm checkpoint or an expertlib model file, without its head."""
    path = Path(path)
    if path.suffix == ".npz":
        return load_bit_npz(ResNetV2(like.cfg, num_classes=0), path, head=False)
    if path.suffix == ".safetensors":
        try:
            return load_model(path)
        except Exception:  # noqa: BLE001 - not an expertlib model file: try timm's names
            pass
    return load_timm_checkpoint(ResNetV2(like.cfg, num_classes=0), path, head=False)


def sources(paths: Sequence[str | os.PathLike]) -> dict[str, Path]:
    """Expert name -> SavedModel: each entry is a SavedModel folder or archive, ``NAME=PATH``, or a folder
    holding them (directories with saved_model.pb and archives). A name comes from ``NAME=``, else from the path
    (:func:`expert_name`); a path that names no released expert, or two sources with one name, are refused."""
    found: list[tuple[str | None, Path]] = []
    for entry in map(str, paths):
        name, sep, rest = entry.partition("=")
        given, p = (name, Path(rest)) if sep and name and not Path(entry).exists() else (None, Path(entry))
        if p.is_dir() and not (p / "saved_model.pb").is_file():
            inner = sorted(
                {q.parent for q in p.rglob("saved_model.pb")}
                | set(p.rglob("*.tar.gz"))
                | set(p.rglob("*.tgz"))
            )
            if not inner:
                raise ConversionError(f"{p} holds no SavedModel (no saved_model.pb, no .tar.gz archive)")
            if given and len(inner) > 1:
                raise ConversionError(f"{entry}: {p} holds {len(inner)} SavedModels; NAME=PATH names one")
            found += [(given, q) for q in inner]
        elif p.exists():
            found.append((given, p))
        else:
            raise FileNotFoundError(
                f"{p} not found: pass a SavedModel folder, its .tar.gz archive, NAME=PATH, or a folder of them"
            )
    out: dict[str, Path] = {}
    for given, p in found:
        name = given or expert_name(p)
        if name is None:
            raise ConversionError(
                f"{p} names no released expert: say which it is, as NAME=PATH (e.g. animal={p}) or with --name; "
                f"the 48 names: {', '.join(PAPER_EXPERTS)}"
            )
        if name in out:
            raise ConversionError(f"two sources are both expert {name!r}: {out[name]} and {p}")
        out[name] = p
    return out


def check_output(out: str | os.PathLike) -> None:
    """Refuse, before any work, an output path that is a folder or cannot be written."""
    out = Path(out)
    if out.is_dir():
        raise ConversionError(
            f"--out {out} is a folder: name the .safetensors file to write, e.g. {out / 'experts.safetensors'}"
        )
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        return  # created when written
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ConversionError(f"--out {out} cannot be written (permissions of {parent if not out.exists() else out}): "
                              "choose a writable place")  # fmt: skip


def convert_bank(named: Mapping[str, str | os.PathLike], out: str | os.PathLike, base: str | os.PathLike | None = None,
                 groups: int = 32, ignore: str = IGNORED, log=print) -> Path:  # fmt: skip
    """Convert SavedModels (name -> path) into ``out``: one expertlib model (one expert, no ``base``) or a
    full-expert bank over B (``base``: BiT-M .npz, timm checkpoint or expertlib model; else the ``entity``
    expert). Every expert must have one architecture, which is named in the log and the file's metadata."""
    check_output(out)
    models: dict[str, ResNetV2] = {}
    for name, src in named.items():
        try:
            models[name] = convert_saved_model(src, groups, ignore)
        except TFCheckpointError as e:
            raise ConversionError(f"expert {name!r}: {e}") from None
        log(f"converted {src} -> expert {name!r} ({config_name(models[name].cfg)}, "
            f"{models[name].cfg.num_features}-d features)")  # fmt: skip
    archs = {}
    for name, m in models.items():
        archs.setdefault(config_name(m.cfg), []).append(name)
    if len(archs) > 1:
        raise ConversionError(
            "the experts do not share one architecture, so they cannot form one bank: "
            + "; ".join(f"{a}: {', '.join(n)}" for a, n in archs.items())
            + ". Convert each architecture into its own file"
        )
    if len(models) == 1 and not base:
        (name, model), = models.items()  # fmt: skip
        return save_model(model, out, {"name": name, "subtree": name, "source": str(named[name]),
                                       "architecture": config_name(model.cfg)})  # fmt: skip
    first = next(iter(models.values()))
    if base:
        b, base_from = load_base(base, first), str(base)
    elif "entity" in models:
        b, base_from = ResNetV2(first.cfg, num_classes=0), "entity expert (no --base given)"
        b.load_state_dict(models["entity"].state_dict())
    else:
        raise ConversionError(
            "a bank needs B: pass --base (BiT-M R50x1 .npz or timm checkpoint) or convert the entity expert too"
        )
    bank = FullExperts(b)
    for name, model in models.items():
        bank.add_expert(name)
        bank.experts[name].load_state_dict(model.state_dict())
    meta = {"subtrees": json.dumps({n: n for n in models}), "sources": json.dumps({n: str(s) for n, s in named.items()}),
            "base_from": base_from, "architecture": config_name(first.cfg)}  # fmt: skip
    return save_bank(bank.eval(), out, meta)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="convert released expert SavedModels into an expertlib model or bank"
    )
    ap.add_argument("sources", nargs="+",
                    help="SavedModel folders or .tar.gz archives, NAME=PATH, or folders holding them")  # fmt: skip
    ap.add_argument("--out", required=True, help="the .safetensors file to write")
    ap.add_argument("--name", help="the expert's name (one source only); default: from its path")
    ap.add_argument("--base", help="B for a bank: BiT-M R50x1 .npz, timm checkpoint or expertlib model")
    ap.add_argument("--groups", type=int, default=32, help="GroupNorm groups (BiT: 32)")
    ap.add_argument("--ignore", default=IGNORED, help="regular expression of variables that are not weights")
    args = ap.parse_args(argv)
    try:
        if args.name:
            if len(args.sources) != 1:
                raise ConversionError(f"--name names one expert, but {len(args.sources)} sources were given")
            named = {args.name: Path(args.sources[0])}
        else:
            named = sources(args.sources)
        convert_bank(named, args.out, args.base, args.groups, args.ignore)
        print(f"wrote {args.out}")
    except (ConversionError, FileNotFoundError, ValueError, OSError) as e:
        print(
            f"convert failed: {type(e).__name__ + ': ' if isinstance(e, OSError) else ''}{e}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

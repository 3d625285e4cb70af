"""ImageNet-21k's file list at scale: the Python list of paths the on-disk benchmark used to keep vs the compact,
memory-mapped index (expertlib.datasets.index), side by side on one generated tree of empty files with
ImageNet's names. Each measurement runs in a fresh process (peak memory is that process's):

- listing: time and peak memory (above the process's baseline after its imports) of listing the tree into
  Python ``Path`` lists (before) and of building the index (after);
- loading the cached index (after) where the list was rebuilt by every process (before);
- a forked worker's memory growth after reading every path once (what a DataLoader worker does over an epoch).

Writes results/benchmarks/index.csv, with each figure extrapolated linearly to ImageNet-21k's 14.2 M files.
``python benchmarks/bench_index.py [--files 1000000] [--root /tmp/bench-index]``"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, write

FULL = 14_200_000
CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
import numpy as np

def private_mb():
    fields = dict(l.split(":") for l in open("/proc/self/smaps_rollup").read().splitlines()[1:])
    kb = lambda k: int(fields[k].split()[0])
    return (kb("Private_Clean") + kb("Private_Dirty")) / 1024

up, mode, cache = Path({up!r}), {mode!r}, Path({cache!r})
classes = sorted(os.listdir(up))
from expertlib.datasets.index import FileIndex, build_index  # imported before the baseline is taken

def status_mb(key):
    line = next(l for l in open("/proc/self/status") if l.startswith(key + ":"))
    return int(line.split()[1]) / 1024

open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current resident size
base = status_mb("VmRSS")
t0 = time.perf_counter()
if mode == "list":  # what FolderBenchmark held before: every path a Path object, sorted by (name, label)
    pairs = []
    for label, c in enumerate(classes):
        files = sorted(p for p in (up / c).iterdir() if p.is_file() and p.suffix.lower() == ".jpeg")
        pairs += [(f, label) for f in files]
    pairs.sort(key=lambda s: (s[0].name, s[1]))
    paths = [p for p, _ in pairs]
    labels = np.array([y for _, y in pairs])
    del pairs
else:
    if mode == "build":  # list the tree once and write the index
        build_index(up, classes, lambda c, names: set(), lambda n: n.lower().endswith(".jpeg")).save(cache / "index.npz")
    idx = FileIndex.load(up, cache / "index.npz")
    paths, labels = idx.split("train")
seconds = time.perf_counter() - t0
peak = status_mb("VmHWM") - base  # the peak above the baseline: what listing and holding the paths cost
r, w = os.pipe()
pid = os.fork()
if pid == 0:  # a forked worker reading every path once
    before = private_mb()
    total = 0
    for i in range(len(paths)):
        total += len(str(paths[i]))
    os.write(w, json.dumps({{"growth": private_mb() - before, "chars": total}}).encode())
    os._exit(0)
os.waitpid(pid, 0)
child = json.loads(os.read(r, 1 << 16))
print(json.dumps({{"seconds": seconds, "peak_mb": peak, "worker_growth_mb": child["growth"], "files": len(paths)}}))
"""


def generate(up: Path, files: int, classes: int) -> float:
    """Empty files named as ImageNet's (<wnid>/<wnid>_<n>.JPEG), ``files`` of them over ``classes`` folders."""
    t0 = time.perf_counter()
    per = files // classes
    for c in range(classes):
        wnid = f"n{10_000_000 + c * 37:08d}"
        d = up / wnid
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per):
            os.close(os.open(d / f"{wnid}_{i}.JPEG", os.O_CREAT | os.O_WRONLY, 0o644))
    return time.perf_counter() - t0


def run(up: Path, mode: str, cache: Path) -> dict:
    code = CHILD.format(root=str(ROOT), up=str(up), mode=mode, cache=str(cache))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=2_000)
    ap.add_argument("--root", default="/tmp/bench-index")
    ap.add_argument("--keep", action="store_true", help="keep the generated tree")
    args = ap.parse_args()
    root = Path(args.root)
    up, cache = root / "imagenet21k", root / "cache"
    made = 0.0
    marker = root / f"{args.files}-{args.classes}"
    if not marker.is_file():
        shutil.rmtree(root, ignore_errors=True)
        made = generate(up, args.files, args.classes)
        marker.write_text("complete\n")
    cache.mkdir(parents=True, exist_ok=True)
    before = run(up, "list", cache)
    built = run(up, "build", cache)  # lists the tree and writes the index, then maps it
    loaded = run(up, "load", cache)  # a later process (a rank, a notebook, a worker's parent) maps the cache
    scale = FULL / before["files"]
    rows = []
    for name, r, listing in (("Path list (before)", before, True), ("index: build once", built, True),
                             ("index: load the cache", loaded, False)):  # fmt: skip
        rows.append({"method": name, "files": r["files"], "seconds": round(r["seconds"], 2),
                     "peak_mb": round(r["peak_mb"], 1), "worker_growth_mb": round(r["worker_growth_mb"], 1),
                     "seconds_at_14_2M": round(r["seconds"] * scale, 1),
                     "peak_gb_at_14_2M": round(r["peak_mb"] * scale / 1024, 2),
                     "worker_growth_gb_at_14_2M": round(r["worker_growth_mb"] * scale / 1024, 2),
                     "lists_the_tree": listing})  # fmt: skip
    rows.append({"method": "ratio before / load", "files": before["files"],
                 "seconds": round(before["seconds"] / max(loaded["seconds"], 1e-9), 1),
                 "peak_mb": round(before["peak_mb"] / max(loaded["peak_mb"], built["peak_mb"], 0.1), 1),
                 "worker_growth_mb": round(before["worker_growth_mb"] / max(loaded["worker_growth_mb"], 0.1), 1)})  # fmt: skip
    print(f"tree of {before['files']:,} files generated in {made:.0f} s" if made else "tree reused")
    write("index", rows)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

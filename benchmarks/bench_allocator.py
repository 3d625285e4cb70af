"""Training throughput of a small model with and without the glibc allocator tuning, side by side.

Each variant runs in its own process (the tuning is per process, applied at `import expertlib`), alternating
twice. Writes results/benchmarks/allocator.csv."""

import json
import os
import subprocess
import sys

from _common import ROOT, write

CHILD = r"""
import json, time, numpy as np, torch
import expertlib
from expertlib.resnet import create_model
from expertlib.schedules import Schedule
from expertlib.training import ArrayData, TrainConfig, train
torch.set_num_threads(2)
rng = np.random.default_rng(0)
data = ArrayData(rng.integers(0, 255, (2048, 32, 32, 3), dtype=np.uint8), np.arange(2048) % 10, 36, 32, True)
for arch in ("tiny", "small"):
    torch.manual_seed(0)
    m = create_model(arch, num_classes=10)
    cfg = TrainConfig(Schedule(60, 5, 0.1), batch_size=128)
    train(m, list(m.parameters()), data, cfg, 10, progress=False, stop_after=10)  # warm-up
    m = create_model(arch, num_classes=10)
    r = train(m, list(m.parameters()), data, cfg, 10, progress=False)
    print(json.dumps({"arch": arch, "images_per_second": r.images_per_second, "tuned": expertlib.allocator_status()["tuned"]}))
"""


def main() -> None:
    results: dict[tuple[str, bool], list[float]] = {}
    for _ in range(2):
        for tuned in (False, True):
            env = {**os.environ, "EXPERTLIB_NO_MALLOC_TUNING": "0" if tuned else "1"}
            env.pop("MALLOC_MMAP_THRESHOLD_", None)
            env.pop("MALLOC_TRIM_THRESHOLD_", None)
            out = subprocess.run(
                [sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, cwd=ROOT, check=True
            )
            for line in out.stdout.splitlines():
                r = json.loads(line)
                assert r["tuned"] == tuned
                results.setdefault((r["arch"], tuned), []).append(r["images_per_second"])
    rows = []
    for arch in ("tiny", "small"):
        base, tuned = max(results[(arch, False)]), max(results[(arch, True)])
        rows.append({"model": arch, "batch": 128, "untuned_images_per_s": round(base, 1),
                     "tuned_images_per_s": round(tuned, 1), "ratio_tuned_over_untuned": round(tuned / base, 3)})  # fmt: skip
    write("allocator", rows)


if __name__ == "__main__":
    main()

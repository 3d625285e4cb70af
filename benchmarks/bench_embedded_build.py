"""Rendering the embedded benchmark's tasks at full size (800 + 200 + 1,000 images each) on one core: the 12
core tasks beside the 7 that widen it to VTAB-1k's 19 (the gpu scale), per task and in total. CPU seconds
(``time.process_time``) are the figure to read on a shared machine; wall seconds are kept beside them.
Writes results/benchmarks/embedded_build.csv. ``python benchmarks/bench_embedded_build.py``"""

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, before numpy and torch start their pools

import torch  # noqa: E402
from _common import write  # noqa: E402

from expertlib.datasets.embedded import EmbeddedSpec, build_task  # noqa: E402
from expertlib.datasets.embedded_tasks import CORE_TASKS, VTAB_LIKE_TASKS  # noqa: E402

SPEC = EmbeddedSpec()  # full size: 800 + 200 + 1,000 images a task
IMAGES = SPEC.task_train + SPEC.task_val + SPEC.task_test


def main() -> None:
    torch.set_num_threads(1)
    build_task(
        EmbeddedSpec(task_train=8, task_val=8, task_test=8), "street_letters"
    )  # fonts and imports, once
    rows = []
    for task in VTAB_LIKE_TASKS:
        cpu, wall = time.process_time(), time.perf_counter()
        build_task(SPEC, task)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        rows.append({"task": task, "set": "core" if task in CORE_TASKS else "new", "images": IMAGES,
                     "cpu_seconds": round(cpu, 2), "wall_seconds": round(wall, 2),
                     "ms_per_image": round(1000 * cpu / IMAGES, 2)})  # fmt: skip
    for name in ("core", "new"):
        part = [r for r in rows if r["set"] == name]
        cpu = sum(r["cpu_seconds"] for r in part)
        rows.append({"task": f"all {len(part)}", "set": name, "images": sum(r["images"] for r in part),
                     "cpu_seconds": round(cpu, 2), "wall_seconds": round(sum(r["wall_seconds"] for r in part), 2),
                     "ms_per_image": round(1000 * cpu / sum(r["images"] for r in part), 2)})  # fmt: skip
    write("embedded_build", rows)


if __name__ == "__main__":
    main()

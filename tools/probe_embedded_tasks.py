"""How hard each embedded task is: chance, raw-pixel probes, and the committed cpu-scale B fine-tuned on it.

For every task (default: all 19 of ``VTAB_LIKE_TASKS``) at full size (train800 + val200, 1,000 test images,
seed 0):

- ``raw_linear``: logistic regression (L2, C=0.01) on standardised raw pixels, trained on train800val200;
- ``raw_knn5``: 5-nearest neighbours on raw pixels, the same split;
- ``b_finetuned``: results/cpu's generic model B with a fresh head, fine-tuned as the cpu scale fine-tunes
  (its transfer recipe and step count; the learning rate picked on val200 among the scale's, then trained
  on train800val200), one seed; ``--steps 500`` gives BiT-HyperRule's length instead.

A task is learnable where some column clears chance, and not trivial where the raw-pixel probes stay well
below the ceiling. Writes ``--out`` (default results/benchmarks/embedded_probe.csv).

    python tools/probe_embedded_tasks.py [--tasks texture,road_dist] [--steps 50]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from expertlib.datasets.batches import ArrayData  # noqa: E402
from expertlib.datasets.embedded import EmbeddedSpec, build_task  # noqa: E402
from expertlib.datasets.embedded_tasks import VTAB_LIKE_TASKS  # noqa: E402
from expertlib.models.weights import load_model  # noqa: E402
from expertlib.pipeline.recipes import transfer_config  # noqa: E402
from expertlib.pipeline.transfer import finetune_job  # noqa: E402 (the pipeline's own fine-tune)
from expertlib.run.presets import SCALES  # noqa: E402
from expertlib.utils.runtime import atomic_write_csv  # noqa: E402


def pixels(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def finetuned(
    model: Path, train, test, num_classes: int, flip: bool, steps: int, lr: float, crop: bool = True
) -> float:
    scale = SCALES["cpu"]
    net = load_model(model)
    net.reset_head(num_classes)
    precrop, size = scale.data.precrop, scale.data.crop
    acc, _, _ = finetune_job(net, ArrayData(train.images, train.labels, precrop, size, flip, crop),
                             ArrayData(test.images, test.labels, precrop, size, flip, crop),
                             transfer_config(scale, steps, lr, seed=0), num_classes, scale.runtime.eval_batch)  # fmt: skip
    return acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(VTAB_LIKE_TASKS))
    ap.add_argument("--steps", type=int, default=SCALES["cpu"].transfer.steps[0])
    ap.add_argument("--model", type=Path, default=ROOT / "results" / "cpu" / "models" / "generic.safetensors")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "embedded_probe.csv")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # 500 iterations are part of the probe
    rows = []
    for task in args.tasks.split(","):
        td = build_task(EmbeddedSpec(seed=0), task)
        trv, test = td.train_val, td.test
        scaler = StandardScaler().fit(pixels(trv.images))
        linear = LogisticRegression(C=0.01, max_iter=500).fit(
            scaler.transform(pixels(trv.images)), trv.labels
        )
        knn = KNeighborsClassifier(5).fit(pixels(trv.images), trv.labels)
        val = {lr: finetuned(args.model, td.train, td.val, td.info.num_classes, td.info.flip, args.steps, lr, td.info.crop)
               for lr in SCALES["cpu"].transfer.lrs}  # fmt: skip
        lr = max(val, key=val.get)
        counts = np.bincount(test.labels, minlength=td.info.num_classes)
        rows.append({"task": task, "group": td.info.group, "classes": td.info.num_classes,
                     "chance": round(float(counts.max() / counts.sum()), 3),
                     "raw_linear": round(linear.score(scaler.transform(pixels(test.images)), test.labels), 3),
                     "raw_knn5": round(knn.score(pixels(test.images), test.labels), 3),
                     "b_finetuned": round(finetuned(args.model, trv, test, td.info.num_classes, td.info.flip,
                                                    args.steps, lr, td.info.crop), 3),
                     "steps": args.steps, "lr": lr})  # fmt: skip
        print(rows[-1], flush=True)
    atomic_write_csv(args.out, pd.DataFrame(rows))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()

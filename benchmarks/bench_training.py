"""Training throughput of B, an adapter-expert and a full-expert step, and fine-tuning time per task, at the
cpu scale's sizes; writes results/benchmarks/training.csv."""

import numpy as np
import torch
from _common import write

from expertlib.models.adapters import AdapterExperts, FullExperts
from expertlib.models.candidates import Candidate
from expertlib.models.resnet import ResNetV2
from expertlib.pipeline import recipes as R
from expertlib.run.presets import get_scale
from expertlib.train.training import ArrayData, finetune, train


def main() -> None:
    torch.set_num_threads(2)
    sc = get_scale("cpu")
    rng = np.random.default_rng(0)
    up = ArrayData(
        rng.integers(0, 255, (4096, 32, 32, 3), dtype=np.uint8),
        np.arange(4096) % 107,
        sc.data.precrop,
        sc.data.crop,
        True,
    )
    task = ArrayData(
        rng.integers(0, 255, (1000, 32, 32, 3), dtype=np.uint8),
        np.arange(1000) % 10,
        sc.data.precrop,
        sc.data.crop,
        True,
    )
    rows = []
    torch.manual_seed(0)
    base = ResNetV2(sc.upstream.arch, num_classes=107, zero_head=False)
    r = train(base, list(base.parameters()), up, R.generic_config(sc, steps=60), 107, progress=False)
    rows.append({"what": "generic B step", "arch": sc.upstream.arch, "batch": sc.upstream.batch, "images_per_s": round(r.images_per_second, 1),
                 "seconds": round(r.seconds, 2), "steps": r.steps})  # fmt: skip
    for kind, bank in (("adapter", AdapterExperts(base, sc.expert.adapter)), ("full", FullExperts(base))):
        bank.add_expert("e", num_classes=10)
        expert = Candidate("e", bank, "e")
        cfg = R.upstream_config(sc, 60, sc.expert.lr, sc.expert.batch)
        r = train(expert, expert.parameters_to_train(), task, cfg, 10, progress=False)
        rows.append({"what": f"{kind}-expert step", "arch": sc.upstream.arch, "batch": sc.expert.batch,
                     "images_per_s": round(r.images_per_second, 1), "seconds": round(r.seconds, 2), "steps": r.steps})  # fmt: skip
    for steps in sc.transfer.steps:
        net = bank.transfer_model(None, 10)
        r = finetune(
            net,
            task,
            R.transfer_config(sc, steps, 0.03),
            10,
            progress=False,
        )
        rows.append({"what": "fine-tune one task (train800val200)", "arch": sc.upstream.arch, "batch": sc.transfer.batch,
                     "images_per_s": round(r.images_per_second, 1), "seconds": round(r.seconds, 2), "steps": r.steps})  # fmt: skip
    write("training", rows)


if __name__ == "__main__":
    main()

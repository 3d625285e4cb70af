"""Training throughput of B, an adapter-expert and a full-expert step, and fine-tuning time per task, at the
cpu scale's sizes; writes results/benchmarks/training.csv."""

import numpy as np
import torch
from _common import write

from expertlib.adapters import AdapterExperts, FullExperts
from expertlib.presets import get_scale
from expertlib.resnet import ResNetV2
from expertlib.schedules import Schedule, scaled_hyperrule
from expertlib.training import ArrayData, LogitsOf, TrainConfig, finetune, train


def main() -> None:
    torch.set_num_threads(2)
    sc = get_scale("cpu")
    rng = np.random.default_rng(0)
    up = ArrayData(
        rng.integers(0, 255, (4096, 32, 32, 3), dtype=np.uint8),
        np.arange(4096) % 107,
        sc.precrop,
        sc.crop,
        True,
    )
    task = ArrayData(
        rng.integers(0, 255, (1000, 32, 32, 3), dtype=np.uint8),
        np.arange(1000) % 10,
        sc.precrop,
        sc.crop,
        True,
    )
    rows = []
    torch.manual_seed(0)
    base = ResNetV2(sc.arch, num_classes=107, zero_head=False)
    r = train(base, list(base.parameters()), up, TrainConfig(Schedule(60, 3, sc.upstream_lr, kind="cosine"),
              batch_size=sc.upstream_batch, loss="sigmoid"), 107, progress=False)  # fmt: skip
    rows.append({"what": "generic B step", "arch": sc.arch, "batch": sc.upstream_batch, "images_per_s": round(r.images_per_second, 1),
                 "seconds": round(r.seconds, 2), "steps": r.steps})  # fmt: skip
    for kind, bank in (("adapter", AdapterExperts(base, sc.adapter)), ("full", FullExperts(base))):
        bank.add_expert("e", num_classes=10)
        params = bank.train_only("e")
        r = train(LogitsOf(bank, "e"), params, task, TrainConfig(Schedule(60, 3, sc.expert_lr, kind="cosine"),
                  batch_size=sc.expert_batch, loss="sigmoid"), 10, progress=False)  # fmt: skip
        rows.append({"what": f"{kind}-expert step", "arch": sc.arch, "batch": sc.expert_batch,
                     "images_per_s": round(r.images_per_second, 1), "seconds": round(r.seconds, 2), "steps": r.steps})  # fmt: skip
    for steps in sc.transfer_steps:
        net = bank.transfer_model(None, 10)
        r = finetune(
            net,
            task,
            TrainConfig(scaled_hyperrule(steps, 0.03), batch_size=sc.transfer_batch),
            10,
            progress=False,
        )
        rows.append({"what": "fine-tune one task (train800val200)", "arch": sc.arch, "batch": sc.transfer_batch,
                     "images_per_s": round(r.images_per_second, 1), "seconds": round(r.seconds, 2), "steps": r.steps})  # fmt: skip
    write("training", rows)


if __name__ == "__main__":
    main()

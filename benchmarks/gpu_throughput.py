"""For a machine with a GPU: training throughput of BiT R50x1 at 224x224 on random data, bf16 autocast vs
fp32, a few hundred steps each. Writes results/benchmarks/gpu.csv with the card's name.
Run: .venv/bin/python benchmarks/gpu_throughput.py [--steps 200] [--batch 128]"""

import argparse
import time

import torch
from _common import write

from expertlib.resnet import create_model


def run(amp: bool, steps: int, batch: int) -> float:
    torch.manual_seed(0)
    model = create_model("R50x1", num_classes=1000).cuda().to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.003, momentum=0.9)
    x = torch.randn(batch, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device="cuda")
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else torch.autocast("cuda", enabled=False)
    for i in range(steps + 20):
        if i == 20:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        with ctx:
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark needs a GPU")
    name = torch.cuda.get_device_name(0)
    fp32, bf16 = run(False, args.steps, args.batch), run(True, args.steps, args.batch)
    write("gpu", [{"gpu": name, "model": "R50x1 224px", "batch": args.batch, "steps": args.steps,
                   "fp32_images_per_s": round(fp32, 1), "bf16_images_per_s": round(bf16, 1),
                   "ratio_bf16_over_fp32": round(bf16 / fp32, 2)}])  # fmt: skip


if __name__ == "__main__":
    main()

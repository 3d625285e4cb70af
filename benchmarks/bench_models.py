"""Model benchmarks, side by side in one run; writes results/benchmarks/models.csv.

(a) feature-extraction throughput of expertlib's ResNetV2 vs timm's ResNetV2 built to the same config (CPU);
(b) parameters of one model holding N adapter experts vs N full experts (R50x1 at N=48, and the CPU config);
(c) cost of an adapter-expert training step vs a full-expert step."""

from functools import partial

import torch
from _common import best_of, write
from timm.layers import StdConv2d as TimmStdConv2d
from timm.models.resnetv2 import ResNetV2 as TimmResNetV2

from expertlib.models.adapters import AdapterConfig, AdapterExperts, FullExperts, parameter_summary
from expertlib.models.candidates import Candidate
from expertlib.models.resnet import create_model, pooled_features, reuse_standardized_weights
from expertlib.train.schedules import Schedule
from expertlib.train.training import ArrayData, TrainConfig, train


def timm_twin(ours: torch.nn.Module) -> torch.nn.Module:
    """timm's ResNetV2 built to R50x1's config with ``ours``'s weights and eps: the parity reference."""
    theirs = TimmResNetV2(layers=[3, 4, 6, 3], stem_type="fixed", conv_layer=partial(TimmStdConv2d, eps=1e-10),
                          num_classes=0)  # fmt: skip
    theirs.load_state_dict(dict(ours.state_dict()), strict=False)
    return theirs.eval()


def throughput_rows() -> list[dict]:
    """R50x1 features at 128 px, batch 16: ours and timm's (same weights, same eps) in both memory layouts, ours
    also with the standardised weights reused (what ``evaluation.predict`` does). Interleaved, best of 5."""
    rows = []
    cfg_name, size, batch = "R50x1", 128, 16
    ours = create_model(cfg_name).eval()
    theirs = timm_twin(ours)
    x = torch.randn(batch, 3, size, size)
    speed = {}
    for layout, fmt in (("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)):
        ours.to(memory_format=fmt)
        theirs.to(memory_format=fmt)
        xx = x.contiguous(memory_format=fmt)

        def ours_reused(m=ours, x=xx):
            with reuse_standardized_weights():
                return pooled_features(m, x)

        with torch.inference_mode():
            speed[("timm", layout)] = batch / best_of(
                lambda m=theirs, x=xx: m.forward_head(m.forward_features(x), pre_logits=True), repeats=5
            )
            speed[("ours", layout)] = batch / best_of(lambda m=ours, x=xx: pooled_features(m, x), repeats=5)
            speed[("ours, weights reused", layout)] = batch / best_of(ours_reused, repeats=5)
    for (who, layout), ips in speed.items():
        if who == "timm":
            continue
        for ref_layout, goal in (
            (layout, ">= 1.0 (ours / timm, same layout)"),
            ("NCHW", ">= 1.2 (ours / timm's default NCHW)"),
        ):
            if ref_layout == layout and goal.startswith(">= 1.2"):
                continue
            ref = speed[("timm", ref_layout)]
            rows.append({"benchmark": "feature_throughput", "config": f"{cfg_name} {size}px batch {batch}: {who}, {layout} "
                         f"vs timm {ref_layout}", "ours": round(ips, 2), "reference": round(ref, 2), "unit": "images/s",
                         "ratio": round(ips / ref, 3), "goal": goal})  # fmt: skip
    return rows


def parameter_rows() -> list[dict]:
    rows = []
    for cfg_name, width in (("R50x1", 1 / 16), ("tiny", 1.0)):
        base = create_model(cfg_name)
        bank = AdapterExperts(base, AdapterConfig(width=width))
        bank.add_expert("one")
        s = parameter_summary(bank)
        for n in (1, 8, 48):
            adapters = s["backbone"] + n * s["expert:one"]
            full = n * s["backbone"]
            rows.append({"benchmark": "parameters", "config": f"{cfg_name}, adapter width {width:g}, N={n}",
                         "ours": adapters, "reference": full, "unit": "parameters (adapter bank vs N full copies)",
                         "ratio": round(adapters / full, 4), "goal": "<= 0.15 at N=48"})  # fmt: skip
    return rows


def step_cost_rows() -> list[dict]:
    rows = []
    rng = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (1024, 32, 32, 3), dtype=torch.uint8, generator=rng).numpy()
    data = ArrayData(images, (torch.arange(1024) % 10).numpy(), 36, 32, True)
    for arch in ("tiny", "small"):
        cfg = TrainConfig(Schedule(40, 2, 0.05), batch_size=128)
        full = FullExperts(create_model(arch, num_classes=10))
        full.add_expert("e", num_classes=10)
        adapter = AdapterExperts(create_model(arch, num_classes=10), AdapterConfig(width=1.0))
        adapter.add_expert("e", num_classes=10)
        speeds = {}
        for kind, bank in (("full", full), ("adapter", adapter)):
            expert = Candidate("e", bank, "e")
            params = expert.parameters_to_train()
            train(expert, params, data, cfg, 10, progress=False, stop_after=5)
            speeds[kind] = train(expert, params, data, cfg, 10, progress=False).images_per_second
        rows.append({"benchmark": "expert_step", "config": f"{arch} 32px batch 128", "ours": round(speeds["adapter"], 1),
                     "reference": round(speeds["full"], 1), "unit": "training images/s (adapter vs full expert)",
                     "ratio": round(speeds["adapter"] / speeds["full"], 3), "goal": "adapter step cost"})  # fmt: skip
    return rows


def main() -> None:
    torch.set_num_threads(2)
    write("models", throughput_rows() + parameter_rows() + step_cost_rows())


if __name__ == "__main__":
    main()

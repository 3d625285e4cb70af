"""tools/gpu_check.sh --dry-run on a CPU: the check's sections in #40's order, goals first (R50x1 end to end and
compiled inference beside timm, K=64 stacked against one at a time, the gpu scale's prefix and extrapolation, the
CUDA tests; released-smoke only with time left), their budgets within the 6 minutes, and the commands they run."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_dry_run_prints_the_goals_first_within_six_minutes():
    out = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh"), "--dry-run"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout  # fmt: skip
    sections = re.findall(r"^(\S+)\s+(\d+) s  (.*)$", out, flags=re.M)
    assert [s[0] for s in sections] == [
        "throughput",
        "many-models",
        "gpu-scale",
        "cuda-tests",
        "released-smoke",
    ]
    budgets = {name: int(b) for name, b, _ in sections}
    assert sum(budgets[s] for s in ("throughput", "many-models", "gpu-scale", "cuda-tests")) <= 360
    commands = {name: cmd for name, _, cmd in sections}
    assert "benchmarks/gpu_throughput.py" in commands["throughput"]
    assert "bench_many_models.py --device cuda --ks 64" in commands["many-models"]
    assert "-m cuda tests/test_cuda.py" in commands["cuda-tests"]
    assert "--scale gpu" in out and "--rates" in out  # the extrapolation from the rates measured before it
    assert not (ROOT / "results" / "gpu-check").exists()  # a dry run writes nothing

#!/usr/bin/env bash
# The GPU check (`make gpu-check`), for a single-GPU machine, in about 8 minutes: the CUDA tests, the
# paper-smoke scale on CUDA, and benchmarks/gpu_throughput.py (writes results/benchmarks/gpu.csv).
# It runs on the machine's own Python (torch preinstalled there). Packages that machine lacks travel as
# wheels in .whl/ (tools/fetch_gpu_wheels.sh downloads them here) and are installed to /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
OUT=${OUT:-results/gpu-check}
mkdir -p "$OUT"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
echo "== CUDA tests"
"$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py
echo "== paper-smoke scale on CUDA"
start=$(date +%s)
"$PY" -m expertlib.reproduce --scale paper-smoke --results-dir "$OUT/results" --data-root "$OUT/data" \
  --param 'device="cuda"' --no-progress
echo "paper-smoke on CUDA: $(( $(date +%s) - start )) s"
echo "== R50x1 throughput"
"$PY" benchmarks/gpu_throughput.py --steps "${STEPS:-60}"
cp results/benchmarks/gpu.csv "$OUT/gpu.csv"
cat results/benchmarks/gpu.csv

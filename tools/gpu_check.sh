#!/usr/bin/env bash
# The GPU check (`make gpu-check`), for a single-GPU machine, in about 6 minutes: the CUDA tests, the
# paper-smoke scale on CUDA (R50x1, every notebook, workers feeding pinned memory), released-smoke on CUDA
# (its notebooks, then its fine-tunes on 2 torchrun ranks sharing the GPU), and
# benchmarks/gpu_throughput.py (writes results/benchmarks/gpu.csv and selection_cost_paper_gpu.csv).
# It runs on the machine's own Python (torch preinstalled there). Packages that machine lacks travel as
# wheels in .whl/ (tools/fetch_gpu_wheels.sh downloads them here) and are installed to /tmp/site.
# What it measured lands flat in $OUT (default results/gpu-check): the log, the two CSVs, paper-smoke's
# summary and claims table. SKIP_THROUGHPUT=1 leaves the benchmark out.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
OUT=${OUT:-results/gpu-check}
WORK=${WORK:-/tmp/gpu-check}
mkdir -p "$OUT" "$WORK"
exec > >(tee "$OUT/gpu_check.log") 2>&1
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "== CUDA tests"
"$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py || echo "CUDA TESTS FAILED"
echo "== R50x1 throughput, timm parity, paper-budget cost"
if [ -z "${SKIP_THROUGHPUT:-}" ]; then
  "$PY" benchmarks/gpu_throughput.py --steps "${STEPS:-40}" --workers "${WORKERS:-12}" || echo "THROUGHPUT FAILED"
  cp results/benchmarks/gpu.csv results/benchmarks/selection_cost_paper_gpu.csv "$OUT/" || true
fi
echo "== paper-smoke scale on CUDA"
start=$(date +%s)
"$PY" -m expertlib.reproduce --scale paper-smoke --results-dir "$WORK/results" --data-root "$WORK/data" \
  --param 'device="cuda"' --no-progress --record-times || echo "PAPER-SMOKE FAILED"
echo "paper-smoke on CUDA: $(( $(date +%s) - start )) s"
cp "$WORK/results/paper-smoke/summary.json" "$OUT/paper_smoke_summary.json" || true
echo "== released-smoke on CUDA: notebooks on one process, then its fine-tunes on 2 torchrun ranks of one GPU"
start=$(date +%s)
"$PY" -m expertlib.reproduce --scale released-smoke --results-dir "$WORK/results" --data-root "$WORK/data" \
  --param 'device="cuda"' --no-progress || echo "RELEASED-SMOKE FAILED"
echo "released-smoke on CUDA: $(( $(date +%s) - start )) s"
rm -rf "$WORK/two" && cp -r "$WORK/results" "$WORK/two" && rm -rf "$WORK/two/released-smoke/jobs" \
  "$WORK/two/released-smoke/tables/transfer_runs.csv" "$WORK/two/released-smoke/tables/transfer_hyperparameters.json"
"$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m expertlib.pipeline.transfer --scale released-smoke \
  --device cuda --data-root "$WORK/data" --results-dir "$WORK/two" || echo "RELEASED-SMOKE 2 RANKS FAILED"
"$PY" - "$WORK" <<'PYEOF' || echo "RELEASED-SMOKE COMPARISON FAILED"
import sys, pandas as pd
one, two = (pd.read_csv(f"{sys.argv[1]}/{d}/released-smoke/tables/transfer_runs.csv") for d in ("results", "two"))
diff = (one.accuracy - two.accuracy).abs().max()
print(f"released-smoke, 2 ranks on one GPU vs 1 process: {len(two)} of {len(one)} runs, max accuracy difference {diff:.2e}")
PYEOF
cp "$WORK/results/released-smoke/tables/claims.csv" "$OUT/released_smoke_claims.csv" || true
cp "$WORK/results/paper-smoke/tables/claims.csv" "$OUT/paper_smoke_claims.csv" || true

#!/usr/bin/env bash
# The GPU check (`make gpu-check`), for a single-GPU machine, in at most GPU_CHECK_SECONDS (default 360 s, the
# 6 minutes a lent GPU machine allows): every section is time-boxed (`timeout`) and writes its figures to $OUT as
# it goes, so a machine taken back mid-run still leaves what was measured. In order, short and decisive first:
#   1. cuda-tests       tests/test_cuda.py's cuda parameters (their bodies also run on CPU in `make test`)
#   2. released-smoke   its notebooks on CUDA in one process, then its fine-tunes on 2 torchrun ranks sharing the
#                       GPU, and the comparison of the two (-> released_smoke_2ranks.txt)
#   3. gpu-scale        the `gpu` scale (#34) on CUDA for GPU_SCALE_SECONDS (default 120): its wall time when it
#                       finishes, else how far it got and the time extrapolated from its fine-tunes' pace
#                       (-> gpu_scale.json, gpu_scale_summary.json)
#   4. paper-smoke      every notebook of paper-smoke on CUDA; long (166 s measured), so only with PAPER_SMOKE=1
#   5. throughput       benchmarks/gpu_throughput.py, last, with the time left (-> gpu_throughput.csv row by row)
# sections.csv records each section's status and seconds. It runs on the machine's own Python (torch preinstalled
# there). Packages that machine lacks travel as wheels in .whl/ (tools/fetch_gpu_wheels.sh downloads them here)
# and are installed to /tmp/site. SKIP_THROUGHPUT=1 leaves the benchmark out.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
TOTAL=${GPU_CHECK_SECONDS:-360}
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg PY
OUT=${OUT:-results/gpu-check}
WORK=${WORK:-/tmp/gpu-check}
mkdir -p "$OUT" "$WORK"
exec > >(tee "$OUT/gpu_check.log") 2>&1
echo "section,status,seconds,limit_s" > "$OUT/sections.csv"

left() { echo $(( TOTAL - ($(date +%s) - START) )); }

# section NAME SECONDS COMMAND...: run COMMAND for at most SECONDS (fewer if the check's time runs out first)
section() {
  local name=$1 limit=$2 t0 status
  shift 2
  (( limit > $(left) - 5 )) && limit=$(( $(left) - 5 ))
  if (( limit < 10 )); then
    echo "== $name: skipped, $(left) s of the check's $TOTAL s left"
    echo "$name,skipped (time),0,$limit" >> "$OUT/sections.csv"
    return
  fi
  echo "== $name (at most $limit s; $(left) s left)"
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@"
  status=$?
  case $status in 0) status=ok ;; 124|137) status="timed out" ;; *) status="failed ($status)" ;; esac
  echo "== $name: $status in $(( $(date +%s) - t0 )) s"
  echo "$name,$status,$(( $(date +%s) - t0 )),$limit" >> "$OUT/sections.csv"
}

"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

# -- 1. the CUDA tests -------------------------------------------------------------------------------------------
section cuda-tests "${CUDA_TESTS_SECONDS:-90}" \
  "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py --junitxml "$OUT/cuda_tests.xml"

# -- 2. released-smoke: one process, then 2 torchrun ranks of one GPU, compared ----------------------------------
released_smoke() {
  set -e
  "$PY" -m expertlib.reproduce --scale released-smoke --results-dir "$WORK/results" --data-root "$WORK/data" \
    --param 'device="cuda"' --no-progress
  cp "$WORK/results/released-smoke/tables/claims.csv" "$OUT/released_smoke_claims.csv"
  rm -rf "$WORK/two" && cp -r "$WORK/results" "$WORK/two" && rm -rf "$WORK/two/released-smoke/jobs" \
    "$WORK/two/released-smoke/tables/transfer_runs.csv" "$WORK/two/released-smoke/tables/transfer_hyperparameters.json"
  "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m expertlib.pipeline.torchrun transfer \
    --scale released-smoke --device cuda --data-root "$WORK/data" --results-dir "$WORK/two"
  "$PY" - "$WORK" "$OUT/released_smoke_2ranks.txt" <<'PYEOF'
import sys, pandas as pd
one, two = (pd.read_csv(f"{sys.argv[1]}/{d}/released-smoke/tables/transfer_runs.csv") for d in ("results", "two"))
diff = (one.accuracy - two.accuracy).abs().max()
line = f"released-smoke, 2 ranks on one GPU vs 1 process: {len(two)} of {len(one)} runs, max accuracy difference {diff:.2e}"
print(line)
open(sys.argv[2], "w").write(line + "\n")
sys.exit(0 if len(two) == len(one) else 1)
PYEOF
}
export -f released_smoke
export WORK OUT
section released-smoke "${RELEASED_SMOKE_SECONDS:-130}" bash -c released_smoke

# -- 3. the `gpu` scale (#34) --------------------------------------------------------------------------------------
# Every notebook of the gpu scale on CUDA within GPU_SCALE_SECONDS (default 120; 0 skips it); then
# tools/gpu_scale_progress.py writes its wall time, or, cut short, how far it got and the extrapolated total.
gpu_scale_section() {
  local t0 status
  t0=$(date +%s)
  timeout --kill-after=10 "$(( GPU_SCALE_LIMIT - 15 ))" "$PY" -m expertlib.reproduce --scale gpu \
    --results-dir "$WORK/results" --data-root "$WORK/data" --param 'device="cuda"' --no-progress --record-times
  status=$?
  "$PY" tools/gpu_scale_progress.py "$WORK/results" "$(( $(date +%s) - t0 ))" --out "$OUT/gpu_scale.json"
  cp "$WORK/results/gpu/summary.json" "$OUT/gpu_scale_summary.json" 2>/dev/null || true
  return $status
}
export -f gpu_scale_section
export GPU_SCALE_LIMIT=${GPU_SCALE_SECONDS:-120}
if (( GPU_SCALE_LIMIT > 0 )); then
  section gpu-scale "$GPU_SCALE_LIMIT" bash -c gpu_scale_section
fi

# -- 4. paper-smoke on CUDA (opt-in: it alone takes about half the check's time) ----------------------------------
paper_smoke() {
  set -e
  "$PY" -m expertlib.reproduce --scale paper-smoke --results-dir "$WORK/results" --data-root "$WORK/data" \
    --param 'device="cuda"' --no-progress --record-times
  cp "$WORK/results/paper-smoke/summary.json" "$OUT/paper_smoke_summary.json"
  cp "$WORK/results/paper-smoke/tables/claims.csv" "$OUT/paper_smoke_claims.csv"
}
export -f paper_smoke
if [ -n "${PAPER_SMOKE:-}" ]; then
  section paper-smoke "${PAPER_SMOKE_SECONDS:-180}" bash -c paper_smoke
fi

# -- 5. throughput, last, with the time that is left ---------------------------------------------------------------
# The benchmark stops starting rows when its budget is spent (a compiled row can take a minute and a half to
# compile and measure) and writes $OUT/gpu_throughput.csv after every row; `timeout` is the backstop.
if [ -z "${SKIP_THROUGHPUT:-}" ]; then
  budget=$(( $(left) - 100 ))
  (( budget < 20 )) && budget=20
  section throughput "$(( $(left) - 5 ))" "$PY" benchmarks/gpu_throughput.py --out "$OUT" --budget-s "$budget" \
    --steps "${STEPS:-20}" --workers "${WORKERS:-12}"
fi
echo "gpu check: $(( $(date +%s) - START )) s of $TOTAL; sections:"
cat "$OUT/sections.csv"

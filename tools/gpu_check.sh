#!/usr/bin/env bash
# The GPU check (`make gpu-check`), for a single-GPU machine, in at most GPU_CHECK_SECONDS (default 360 s: a lent
# machine's 15 minutes include its start-up and the transfers). It measures issue #40's four goals, goals first;
# every section is time-boxed (`timeout`) and writes its figures to $OUT as it goes, so a machine taken back
# mid-run still leaves what was measured:
#   1. throughput      R50x1 end to end (JPEGs streamed and decoded on the GPU) and compiled inference (synthetic and
#                      the selection's feature path) beside timm: benchmarks/gpu_throughput.py, the goals' rows
#                      first (-> gpu_throughput.csv, row by row; a missed goal's row names its profile)
#   2. many-models     K=64 stacked fine-tunes against one at a time: benchmarks/bench_many_models.py (-> many_models.csv)
#   3. gpu-scale       the `gpu` scale, time-boxed: its wall time if it finishes, else its measured prefix and an
#                      extrapolation from the rates measured in 2, said to be one (-> gpu_scale.json)
#   4. cuda-tests      tests/test_cuda.py's cuda parameters (their bodies also run on CPU in `make test`)
#   5. released-smoke  its notebooks on CUDA, then its fine-tunes on 2 torchrun ranks sharing the GPU, compared
#                      (-> released_smoke_2ranks.txt); only if the time left allows
# sections.csv records each section's status and seconds. `--dry-run` prints the sections, their budgets and
# commands, and runs nothing (tests/test_gpu_check.py). It runs on the machine's own Python (torch preinstalled
# there); packages that machine lacks travel as wheels in .whl/ (tools/fetch_gpu_wheels.sh downloads them here) and
# are installed to /tmp/site.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=""
[ "${1:-}" = "--dry-run" ] && DRY=1
START=$(date +%s)
TOTAL=${GPU_CHECK_SECONDS:-360}
PY=${PYTHON:-python3}
OUT=${OUT:-results/gpu-check}
WORK=${WORK:-/tmp/gpu-check}
# the sections' budgets in seconds, in order; the setup (wheels, CUDA's first call) takes the rest of TOTAL
THROUGHPUT_SECONDS=${THROUGHPUT_SECONDS:-150}
MANY_MODELS_SECONDS=${MANY_MODELS_SECONDS:-45}
GPU_SCALE_SECONDS=${GPU_SCALE_SECONDS:-90}
CUDA_TESTS_SECONDS=${CUDA_TESTS_SECONDS:-60}
RELEASED_SMOKE_SECONDS=${RELEASED_SMOKE_SECONDS:-90}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg PY OUT WORK

left() { echo $(( TOTAL - ($(date +%s) - START) )); }

# section NAME SECONDS COMMAND...: run COMMAND for at most SECONDS (fewer if the check's time runs out first)
section() {
  local name=$1 limit=$2 t0 status
  shift 2
  if [ -n "$DRY" ]; then
    printf '%-15s %4s s  ' "$name" "$limit"
    if [ "$1" = bash ] && [ "$2" = -c ]; then  # a function of this script: its commands
      echo "$3:"
      declare -f "$3" | sed '1,2d;$d' | sed 's/^ */                         /'
    else
      printf '%q ' "$@"
      echo
    fi
    return
  fi
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

if [ -z "$DRY" ]; then
  if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
  fi
  export PYTHONPATH="$PWD:${PYTHONPATH:-}"
  mkdir -p "$OUT" "$WORK"
  exec > >(tee "$OUT/gpu_check.log") 2>&1
  echo "section,status,seconds,limit_s" > "$OUT/sections.csv"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
else
  echo "gpu check (dry run): $TOTAL s in all; section, budget, command, in the order they run"
fi

# -- 1. R50x1 end to end and compiled inference beside timm ------------------------------------------------------
# the benchmark stops starting rows when its own budget is spent (a compiled row compiles for a minute or so) and
# writes gpu_throughput.csv after every row; `timeout` is the backstop
section throughput "$THROUGHPUT_SECONDS" "$PY" benchmarks/gpu_throughput.py --out "$OUT" \
  --budget-s "$(( THROUGHPUT_SECONDS - 45 ))" --steps "${STEPS:-20}" --workers "${WORKERS:-12}"

# -- 2. K=64 stacked fine-tunes against one at a time --------------------------------------------------------------
section many-models "$MANY_MODELS_SECONDS" "$PY" benchmarks/bench_many_models.py --device cuda --ks 64 --timed 8 \
  --step-ks "" --out "$OUT"

# -- 3. the `gpu` scale: its measured prefix, and an extrapolation from the rates measured in 2 ------------------
gpu_scale_section() {
  local t0 status
  t0=$(date +%s)
  timeout --kill-after=10 "$(( GPU_SCALE_SECONDS - 15 ))" "$PY" -m expertlib.reproduce --scale gpu \
    --results-dir "$WORK/results" --data-root "$WORK/data" --param 'device="cuda"' --no-progress --record-times
  status=$?
  "$PY" tools/gpu_scale_progress.py "$WORK/results" "$(( $(date +%s) - t0 ))" --rates "$OUT/many_models.csv" \
    --out "$OUT/gpu_scale.json"
  cat "$OUT/gpu_scale.json"
  cp "$WORK/results/gpu/summary.json" "$OUT/gpu_scale_summary.json" 2>/dev/null || true
  return $status
}
export -f gpu_scale_section
export GPU_SCALE_SECONDS
if (( GPU_SCALE_SECONDS > 0 )); then
  section gpu-scale "$GPU_SCALE_SECONDS" bash -c gpu_scale_section
fi

# -- 4. the CUDA tests ---------------------------------------------------------------------------------------------
section cuda-tests "$CUDA_TESTS_SECONDS" \
  "$PY" -m pytest -v -p no:cacheprovider -m cuda tests/test_cuda.py --junitxml "$OUT/cuda_tests.xml"

# -- 5. released-smoke, if the time left allows: one process, then 2 torchrun ranks of one GPU, compared -----------
released_smoke() {
  set -e
  "$PY" -m expertlib.reproduce --scale released-smoke --results-dir "$WORK/results" --data-root "$WORK/data" \
    --param 'device="cuda"' --no-progress
  cp "$WORK/results/released-smoke/tables/claims.csv" "$OUT/released_smoke_claims.csv"
  rm -rf "$WORK/two" && cp -r "$WORK/results" "$WORK/two" && rm -rf "$WORK/two/released-smoke/jobs" \
    "$WORK/two/released-smoke/tables/transfer_runs.csv" "$WORK/two/released-smoke/tables/transfer_hyperparameters.json"
  "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m expertlib.pipeline.torchrun transfer \
    --scale released-smoke --device cuda --data-root "$WORK/data" --results-dir "$WORK/two"
  "$PY" -c "
import sys, pandas as pd
one, two = (pd.read_csv(f'$WORK/{d}/released-smoke/tables/transfer_runs.csv') for d in ('results', 'two'))
line = f'released-smoke, 2 ranks on one GPU vs 1 process: {len(two)} of {len(one)} runs, max accuracy difference {(one.accuracy - two.accuracy).abs().max():.2e}'
print(line)
open('$OUT/released_smoke_2ranks.txt', 'w').write(line + '\\n')
sys.exit(0 if len(two) == len(one) else 1)"
}
export -f released_smoke
if [ -n "$DRY" ] || (( $(left) >= 40 )); then
  section released-smoke "$RELEASED_SMOKE_SECONDS" bash -c released_smoke
fi

if [ -n "$DRY" ]; then
  echo "budgets of the goals' sections: $(( THROUGHPUT_SECONDS + MANY_MODELS_SECONDS + GPU_SCALE_SECONDS + CUDA_TESTS_SECONDS )) s of $TOTAL (released-smoke: what is left)"
  exit 0
fi
echo "gpu check: $(( $(date +%s) - START )) s of $TOTAL; sections:"
cat "$OUT/sections.csv"

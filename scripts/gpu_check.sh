#!/usr/bin/env bash
# GPU check of the executor (issue 4): replay a small scenario on CUDA with both kernel
# kinds, diff each against the simulator, print the metrics, and check a fault ends the
# run cleanly. Needs one CUDA GPU, torch with CUDA, and pipefill's other dependencies
# importable (PYTHONPATH is fine: nothing is installed). Finishes within ~2-3 minutes.
#
#   scripts/gpu_check.sh                 # outputs under ${OUT:-/tmp/gpu_check}
#   PYTHON=python3 OUT=/tmp/x scripts/gpu_check.sh
#   DEVICE=cpu MODEL_SIZE=tiny scripts/gpu_check.sh   # dry run of the same steps on a CPU
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-/tmp/gpu_check}
DEVICE=${DEVICE:-cuda}
MODEL_SIZE=${MODEL_SIZE:-base}
mkdir -p "$OUT"
export PIPEFILL_CACHE_DIR="$OUT/cache"   # calibrate this GPU afresh, keep the cache with the outputs
status=0

step() { printf '\n=== %s\n' "$*"; }
run() {  # run a pipefill command with a time limit; remember a failure, keep going
  timeout 150 "$PY" cli.py "$@"
  local rc=$?
  [ $rc -eq 0 ] || { echo "!!! pipefill $1 exited $rc"; status=1; }
  return $rc
}

step "device"
"$PY" - "$DEVICE" <<'EOF' || exit 2
import sys, torch
if sys.argv[1] == "cpu":
    print(f"torch {torch.__version__}, dry run on the CPU")
elif not torch.cuda.is_available():
    sys.exit("no CUDA device visible to torch " + torch.__version__)
else:
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"{torch.cuda.get_device_name(0)}")
EOF

# the default scenario (phase_pp D=2/2, r0a lag 1, ~150 ms period), shortened
SC=(--set run.chunks=40 --set run.warmup=8)
start=$(date +%s)

step "simulate (predicted)"
run simulate "${SC[@]}" --out "$OUT/predicted.parquet"

step "replay on $DEVICE, calibrated kernels (sized to the scenario's costs)"
run replay "${SC[@]}" --device "$DEVICE" --kernels calibrated --out "$OUT/replay_calibrated.parquet"
step "diff simulate vs replay (calibrated)"
run diff "$OUT/predicted.parquet" "$OUT/replay_calibrated.parquet"

if [ "$DEVICE" = cuda ]; then
  step "replay on cuda, spin kernels (modelled durations, no contention between stages)"
  run replay "${SC[@]}" --device cuda --kernels spin --out "$OUT/replay_spin.parquet"
  step "diff simulate vs replay (spin)"
  run diff "$OUT/predicted.parquet" "$OUT/replay_spin.parquet"
fi

step "replay on $DEVICE, model kernels (DiT + VAE, size $MODEL_SIZE; durations are the model's)"
run replay "${SC[@]}" --device "$DEVICE" --kernels model --model-size "$MODEL_SIZE" \
  --out "$OUT/replay_model.parquet"
step "calibrate from the model run, simulate the fitted scenario, diff"
run calibrate "$OUT/replay_model.parquet" --out "$OUT/model_fitted.toml" &&
  run simulate "$OUT/model_fitted.toml" --out "$OUT/predicted_model.parquet" > /dev/null &&
  run diff "$OUT/predicted_model.parquet" "$OUT/replay_model.parquet"

step "fault on $DEVICE: denoise of chunk 5 raises; expect exit 3, one error line, partial trace"
timeout 150 "$PY" cli.py replay "${SC[@]}" --device "$DEVICE" --kernels model \
  --model-size "$MODEL_SIZE" --inject denoise:5 --out "$OUT/fault.parquet"
rc=$?
if [ $rc -eq 3 ] && [ -f "$OUT/fault.parquet" ]; then
  echo "fault run: exit 3 and partial trace written, as expected"
else
  echo "!!! fault run: exit $rc (expected 3) or no partial trace"; status=1
fi

step "summary"
echo "outputs in $OUT; $(( $(date +%s) - start )) s after the device check"
[ $status -eq 0 ] && echo "gpu_check: OK" || echo "gpu_check: FAILED (see !!! lines)"
exit $status

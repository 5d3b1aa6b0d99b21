#!/usr/bin/env bash
# Device check (issue 23): pipefill's fidelity on real hardware, in one command that fits
# a short loan of a GPU machine (one GPU, 16 cores; at most 8 minutes).
#
# On the device machine (what to pass to the device tool, one line):
#     command: bash scripts/device_check.sh        carry: [".whl"]
# Prepare .whl here first (pipefill's dependencies as wheels; the machine has no registry):
#     bash scripts/device_wheels.sh
# Dry run on a CPU (tiny sizes, CUDA steps skipped; under 2 minutes on 2 cores):
#     DEVICE=cpu bash scripts/device_check.sh
#
# Steps (each with its own time limit; a failure never stops the run; every step records
# ok / failed / timed out / skipped with a reason):
#   install, imports, cores   pip install from the working tree (--no-index, wheels from
#                             .whl/), import check, the cores of each lane
#   oos_separate, oos_shared  bench/fidelity.py --mode oos on the CPU: calibrate from serial
#                             replays (A-B-A, steadiness checked), predict phase_pp and the
#                             other policies; separate = each stage pinned to an idle core of
#                             its own, shared = both stages on one core
#   cuda_*                    spin and model replays of the default scenario and of
#                             stream_batch, each diffed against its simulation; the default
#                             scenario and phase_pp points with both stages on the one GPU,
#                             predicted from a serial replay with calibrate --probe-contention
#   dist_spin, dist_fault     --backend dist, both ranks on the GPU (gloo on one GPU, NCCL
#                             when each rank has its own), spin kernels; a rank killed
#   cuda_fault                a kernel raising on CUDA ends the run crash-only
# With enough cores the CPU benches and the CUDA steps run at once, each lane on cores of
# its own (scripts/device_cores.py); otherwise one after another.
#
# Writes under $OUT (default out/device_check): device_check.log (every step's output and
# the summary table), summary.json (steps, figures, targets; scripts/device_summary.py)
# and artifacts.tar.gz (traces, tables, step logs). Exit 0 when every step that ran was ok
# and every measured target was met, else 1.
#
# Environment: DEVICE (cuda, or cpu for the dry run), OUT, PYTHON (default .venv/bin/python
# when present, else python3), BUDGET_S (whole run, default 470; dry run 110), STEPS
# (comma-separated step names to run, e.g. STEPS=cuda_shared_default,cuda_oos_phase_pp; the
# rest are skipped), REHEARSE (dry run: 1, or comma-separated CUDA step names: run those
# steps' commands on the CPU, calibrated kernels for spin, instead of skipping them),
# LIMIT_S (cap every step's time limit), KEEP_WORK=1 (keep $OUT/work).
set -uo pipefail
cd "$(dirname "$0")/.."
export ROOT=$PWD

# ---------------------------------------------------------------- configuration
export DEVICE=${DEVICE:-cuda}
export OUT=${OUT:-$ROOT/out/device_check}
export WORK="$OUT/work"
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=$ROOT/.venv/bin/python
else PY=python3; fi
export PY
# bookkeeping (records, summary, core plan) needs only the standard library
BOOK=$(command -v python3 || echo "$PY"); export BOOK
export STEPS=${STEPS:-} REHEARSE=${REHEARSE:-0}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if [ "$DEVICE" = cpu ]; then
  export DRY=1 BUDGET_S=${BUDGET_S:-110}
  # few chunks, small grids: every CPU step still runs for real
  export OOS_CHUNKS=8 OOS_SCALE=0.1 OOS_RATIOS=s1-bound
  export OOS_POINTS="phase_pp r1 2x2,phase_pp r0a 2x2 lag1,stream_batch"
  export CUDA_CHUNKS=8 CUDA_WARMUP=2 DIST_CHUNKS=8 DIST_WARMUP=2 MODEL_SIZE=tiny
  export GPU_OOS_CHUNKS=8 GPU_OOS_SCALE=0.1 GPU_OOS_RATIOS=s1-bound
  export GPU_OOS_POINTS="phase_pp r1 2x2,phase_pp r0a 2x2 lag1"
  export CDEV=cpu SPIN=calibrated FAULT_AT=4
else
  export DRY=0 BUDGET_S=${BUDGET_S:-470}
  # 30 chunks (warm-up 5) per point, phases of 10-38 ms (scale 0.5): as in the README
  export OOS_CHUNKS=30 OOS_SCALE=0.5 OOS_RATIOS= OOS_POINTS=
  # the default scenario cut to 40 chunks, as the earlier H200 rows
  export CUDA_CHUNKS=40 CUDA_WARMUP=8 DIST_CHUNKS=30 DIST_WARMUP=6 MODEL_SIZE=${MODEL_SIZE:-base}
  # phases of 6-23 ms on the GPU: both ratios' 11 phase_pp points fit the CUDA lane
  export GPU_OOS_CHUNKS=30 GPU_OOS_SCALE=0.3 GPU_OOS_RATIOS= GPU_OOS_POINTS=phase_pp
  export CDEV=cuda SPIN=spin FAULT_AT=5
fi
RESERVE_S=15   # kept back for the summary and the archive
MIN_STEP_S=10  # a step with less time left than this is skipped

# ---------------------------------------------------------------- steps
# Each step_NAME runs in a fresh bash (--step mode below) under `timeout`, with set -e:
# its first failing command fails the step. STEP names its figure files.
pf() { "$PY" -m pipefill.cli "$@"; }
fig() { echo "$WORK/figures/$STEP.$1.json"; }
verdict() { "$BOOK" -c 'import json,sys; print(json.load(open(sys.argv[1]))["verdict"])' "$1"; }
diff_fig() {  # PREDICTED MEASURED: diff --json into the step's figures, the verdict to the log
  pf diff "$1" "$2" --json > "$(fig diff)"
  verdict "$(fig diff)"
}

step_install() {
  # the carried wheels pin what the tests ran (.whl/pins.txt); pip takes the rest from
  # the machine's own packages and builds pipefill from the tree, editable
  local links=() pins=() iso=(--no-build-isolation) wheels=0 note missing
  if [ -d .whl ]; then
    links=(--find-links .whl)
    wheels=$(find .whl -maxdepth 1 -name '*.whl' | wc -l)
    [ -f .whl/pins.txt ] && pins=(-r .whl/pins.txt)
    compgen -G '.whl/setuptools-*.whl' > /dev/null && iso=()
  fi
  if "$PY" scripts/device_probe.py from-tree; then
    note="already installed from this tree: resolution checked (pip --dry-run), $wheels wheels"
    "$PY" -m pip install --dry-run --no-index "${links[@]}" "${pins[@]}" --no-build-isolation .
  elif "$PY" -m pip install --no-index "${links[@]}" "${pins[@]}" "${iso[@]}" -e .; then
    note="installed from the tree with pip --no-index, $wheels wheels carried"
  else
    # the resolver may refuse the machine's own packages (an installed package whose
    # requirements it cannot meet offline): install what is missing, unchecked
    echo "pip could not resolve; installing the carried wheels not yet installed, --no-deps"
    mapfile -t missing < <("$PY" scripts/device_probe.py missing-wheels .whl)
    [ ${#missing[@]} -eq 0 ] || "$PY" -m pip install --no-index --no-deps "${missing[@]}"
    "$PY" -m pip install --no-index --no-deps --no-build-isolation -e .
    note="installed --no-deps (the resolver failed): ${#missing[@]} of $wheels wheels"
  fi
  "$BOOK" -c 'import json,sys; json.dump({"note": sys.argv[1]}, open(sys.argv[2], "w"))' \
    "$note" "$(fig install)"
  echo "$note"
}

step_imports() { "$PY" scripts/device_probe.py imports "$(fig imports)"; }

step_cores() {
  "$BOOK" scripts/device_cores.py --shell --json-out "$(fig cores)" > "$WORK/cores.env"
  cat "$WORK/cores.env"
}

oos() {  # LAYOUT [bench options...]: bench/fidelity.py --mode oos into the step's figures
  local layout=$1; shift
  "$PY" bench/fidelity.py --mode oos --layout "$layout" --out "$WORK/$STEP.csv" \
    --summary-json "$(fig oos)" "$@"
}
cpu_oos() {  # LAYOUT CORES
  oos "$1" --cores "$2" --chunks "$OOS_CHUNKS" --scale "$OOS_SCALE" \
    ${OOS_RATIOS:+--ratios "$OOS_RATIOS"} ${OOS_POINTS:+--points "$OOS_POINTS"}
}
step_oos_separate() { cpu_oos separate "$SEP_CORES"; }
step_oos_shared() { cpu_oos shared "$SHR_CORES"; }

replay_pair() {  # POLICY KERNELS: replay, simulate (model: of the fitted scenario), diff
  local sc=(--set "run.chunks=$CUDA_CHUNKS" --set "run.warmup=$CUDA_WARMUP") pol=()
  [ "$1" = default ] || pol=(--policy "$1")
  local meas="$WORK/$STEP.meas.parquet" pred="$WORK/$STEP.pred.parquet"
  pf replay "${sc[@]}" "${pol[@]}" --device "$CDEV" --kernels "$2" \
    --model-size "$MODEL_SIZE" --out "$meas"
  if [ "$2" = model ]; then  # the model's durations are its own: calibrate, then predict
    pf calibrate "$meas" --out "$WORK/$STEP.fitted.toml"
    pf simulate "$WORK/$STEP.fitted.toml" --out "$pred"
  else
    pf simulate "${sc[@]}" "${pol[@]}" --out "$pred"
  fi
  diff_fig "$pred" "$meas"
}
step_cuda_default_spin() { replay_pair default "$SPIN"; }
step_cuda_default_model() { replay_pair default model; }
step_cuda_stream_batch_spin() { replay_pair stream_batch "$SPIN"; }
step_cuda_stream_batch_model() { replay_pair stream_batch model; }

step_cuda_shared_default() {
  # both stages on the one GPU: a serial replay, its calibration with the probed rates,
  # the prediction of the default scenario's phase_pp, the replay of it, the diff
  local sc=(--set "run.chunks=$CUDA_CHUNKS" --set "run.warmup=$CUDA_WARMUP"
            --set 'placement.stage0="gpu0"' --set 'placement.stage1="gpu0"')
  local w="$WORK/$STEP"
  pf replay "${sc[@]}" --policy serial --set 'policy.recompute="r0a"' --device "$CDEV" \
    --kernels calibrated --out "$w.serial.parquet"
  pf calibrate "$w.serial.parquet" --probe-contention --device "$CDEV" --out "$w.fitted.toml"
  pf simulate "$w.fitted.toml" --policy phase_pp --set policy.d_in=2 --set policy.d_out=2 \
    --set 'policy.recompute="r0a"' --set policy.recompute_lag=1 --out "$w.pred.parquet"
  pf replay "${sc[@]}" --device "$CDEV" --kernels calibrated --out "$w.meas.parquet"
  diff_fig "$w.pred.parquet" "$w.meas.parquet"
}

step_cuda_oos_phase_pp() {
  oos shared --device "$CDEV" --chunks "$GPU_OOS_CHUNKS" --scale "$GPU_OOS_SCALE" \
    ${GPU_OOS_RATIOS:+--ratios "$GPU_OOS_RATIOS"} --points "$GPU_OOS_POINTS"
}

dist_args() {  # both ranks on the GPU(s): NCCL when each rank has a GPU of its own
  local backend=gloo
  [ "$CDEV" = cuda ] && [ "${CUDA_DEVICES:-0}" -ge 2 ] && backend=nccl
  echo --set "run.chunks=$DIST_CHUNKS" --set "run.warmup=$DIST_WARMUP" --backend dist \
    --device "$CDEV" --kernels "$SPIN" --dist-backend "$backend"
}
step_dist_spin() {
  local args w="$WORK/$STEP"
  read -ra args <<< "$(dist_args)"
  pf simulate --set "run.chunks=$DIST_CHUNKS" --set "run.warmup=$DIST_WARMUP" \
    --out "$w.pred.parquet"
  pf replay "${args[@]}" --timeout 30 --out "$w.meas.parquet"
  "$PY" scripts/device_probe.py trace-info "$w.meas.parquet" "$(fig trace)"
  diff_fig "$w.pred.parquet" "$w.meas.parquet"
}
expect_fault() {  # TOKEN REPLAY-ARGS...: the run must end crash-only (exit 3, one line)
  local token=$1 rc=0 w="$WORK/$STEP"; shift
  PIPEFILL_DEVICE_CHECK_RUN=$token pf replay "$@" --out "$w.parquet" 2> "$w.stderr" || rc=$?
  cat "$w.stderr"
  "$PY" scripts/device_probe.py expect-fault --rc "$rc" --stderr "$w.stderr" \
    --trace "$w.parquet" --token "$token" "$(fig fault)"
}
step_dist_fault() {
  local args
  read -ra args <<< "$(dist_args)"
  expect_fault "dist-$$-$RANDOM" "${args[@]}" --timeout 10 --inject "kill:denoise:$FAULT_AT"
}
step_cuda_fault() {
  expect_fault "threads-$$-$RANDOM" --set "run.chunks=$CUDA_CHUNKS" \
    --set "run.warmup=$CUDA_WARMUP" --device "$CDEV" --kernels model \
    --model-size "$MODEL_SIZE" --inject "denoise:$FAULT_AT"
}

if [ "${1:-}" = --step ]; then  # one step, in its own process (under timeout)
  set -Eeo pipefail
  trap 'echo "step failed: \`$BASH_COMMAND\` exited $?"' ERR
  export STEP=$2
  "step_$2"
  exit 0
fi

# ---------------------------------------------------------------- the runner
ORDER=(install imports cores oos_separate oos_shared cuda_default_spin cuda_default_model
       cuda_stream_batch_spin cuda_stream_batch_model cuda_shared_default cuda_oos_phase_pp
       dist_spin dist_fault cuda_fault)
now() { date +%s; }
selected() { [ -z "$STEPS" ] || [[ ",$STEPS," == *",$1,"* ]]; }
last_line() {  # LOG: its last line of output (no header, colour codes, tabs)
  sed -e 's/\x1b\[[0-9;]*m//g' "$1" | tr '\t' ' ' \
    | grep -av -e '^[[:space:]]*$' -e '^=== ' -e '^step failed: ' | tail -n 1
}
reason_of() {  # LOG RC: why a step failed, in one line: exit code, command, last output
  local cmd msg
  cmd=$(grep -a '^step failed: ' "$1" | tail -n 1 | cut -c14-)
  msg=$(last_line "$1")
  echo "exit $2${cmd:+ at $cmd}${msg:+: $msg}" | cut -c1-300
}
record() {  # NAME STATUS RC SECONDS REASON
  local reason=${5//$'\t'/ }
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$LANE" "$2" "$3" "$4" "${reason//$'\n'/ }" \
    >> "$WORK/steps.tsv"
  printf '[%s] %-26s %-9s %-10s %s\n' "$(date +%H:%M:%S)" "$1" "$LANE" "$2" \
    "${4:+${4}s }${reason:0:150}"
}
run_step() {  # NAME LIMIT_S [SKIP_REASON [NOTE]]
  local name=$1 limit=$2 skip=${3:-} note=${4:-} left t0 rc secs msg log="$WORK/logs/$1.log"
  if ! selected "$name"; then record "$name" skipped "" 0 "not selected (STEPS=$STEPS)"; return; fi
  if [ -n "$skip" ]; then record "$name" skipped "" 0 "$skip"; return; fi
  left=$(( DEADLINE - $(now) - RESERVE_S ))
  if (( left < MIN_STEP_S )); then
    record "$name" skipped "" 0 "time budget spent (${left}s left of ${BUDGET_S}s)"; return
  fi
  (( limit > left )) && limit=$left
  (( limit > ${LIMIT_S:-limit} )) && limit=$LIMIT_S
  echo "=== $name (lane $LANE${PIN_SET:+, cpus $PIN_SET}; limit ${limit}s)" > "$log"
  t0=$(now)
  timeout -k 10 "$limit" "${PIN[@]}" bash "$ROOT/scripts/device_check.sh" --step "$name" \
    >> "$log" 2>&1 < /dev/null
  rc=$?
  secs=$(( $(now) - t0 ))
  if [ $rc -eq 0 ]; then record "$name" ok 0 "$secs" "$note"
  elif { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && (( secs >= limit )); then
    msg=$(last_line "$log")
    record "$name" "timed out" "$rc" "$secs" "no result within ${limit}s${msg:+: $msg}"
  else record "$name" failed "$rc" "$secs" "$(reason_of "$log" "$rc")"; fi
}
pin() {  # LANE_NAME CPUS: run the lane's steps on these cpus (none: anywhere)
  LANE=$1 PIN_SET=$2 PIN=()
  export PIPEFILL_CACHE_DIR="$WORK/cache_$1"  # a kernel calibration per lane: no races
  [ -n "$2" ] || return 0
  if command -v taskset > /dev/null; then PIN=(taskset -c "$2")
  else PIN=("$BOOK" -c 'import os,sys; os.sched_setaffinity(0, {int(c) for c in
sys.argv[1].split(",")}); os.execvp(sys.argv[2], sys.argv[2:])' "$2"); fi
}

lane_separate() {
  pin separate "${SEPARATE_SET:-}"
  local skip=$GATE
  [ -n "$skip" ] || [ -n "$SEP_CORES" ] || skip="one core only: no two cores to pin apart"
  run_step oos_separate 330 "$skip"
}
lane_shared() { pin shared "${SHARED_SET:-}"; run_step oos_shared 330 "$GATE"; }
cuda_step() {  # NAME LIMIT_S: run it on CUDA, rehearse it on the CPU, or skip it
  if [ -n "$GATE" ]; then run_step "$1" "$2" "$GATE"
  elif [ "$DEVICE" != cpu ]; then run_step "$1" "$2" "$NO_CUDA"
  elif [ "$REHEARSE" = 1 ] || [[ ",$REHEARSE," == *",$1,"* ]]; then
    run_step "$1" "$2" "" "rehearsed on the CPU (DEVICE=cpu REHEARSE)"
  else run_step "$1" "$2" "no CUDA (DEVICE=cpu dry run)"; fi
}
lane_cuda() {
  pin cuda "${CUDA_SET:-}"
  cuda_step cuda_default_spin 60
  cuda_step cuda_default_model 75
  cuda_step cuda_stream_batch_spin 60
  cuda_step cuda_stream_batch_model 75
  cuda_step cuda_shared_default 90
  cuda_step cuda_oos_phase_pp 180
  cuda_step dist_spin 75
  cuda_step dist_fault 60
  cuda_step cuda_fault 45
}

finish() {  # the log, the summary, the archive
  local log="$OUT/device_check.log" run rc
  : > "$log"
  for name in "${ORDER[@]}"; do
    [ -f "$WORK/logs/$name.log" ] && { cat "$WORK/logs/$name.log"; echo; } >> "$log"
  done
  run=$("$BOOK" - <<'EOF'
import json, os, subprocess, time
env = os.environ
git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
keys = ("OOS_CHUNKS", "OOS_SCALE", "OOS_RATIOS", "OOS_POINTS", "CUDA_CHUNKS", "DIST_CHUNKS",
        "MODEL_SIZE", "GPU_OOS_CHUNKS", "GPU_OOS_SCALE", "GPU_OOS_POINTS")
print(json.dumps({
    "device": env["DEVICE"], "dry": env["DRY"] == "1", "rehearse": env["REHEARSE"] or None,
    "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(int(env["START"]))),
    "seconds": int(time.time()) - int(env["START"]), "budget_s": int(env["BUDGET_S"]),
    "git": git.stdout.strip() or None, "concurrent": env.get("CONCURRENT") == "1",
    "sizes": {k.lower(): env.get(k) for k in keys}, "out": env["OUT"]}))
EOF
)
  "$BOOK" scripts/device_summary.py "$WORK" "$OUT/summary.json" --run "$run" \
    --order "$(IFS=,; echo "${ORDER[*]}")" | tee -a "$log"
  rc=${PIPESTATUS[0]}
  tar -czf "$OUT/artifacts.tar.gz" -C "$WORK" . 2> /dev/null
  if [ "$(stat -c %s "$OUT/artifacts.tar.gz" 2> /dev/null || echo 0)" -gt 15000000 ]; then
    tar -czf "$OUT/artifacts.tar.gz" -C "$WORK" --exclude='*.parquet' . 2> /dev/null
  fi
  [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"
  echo "outputs: $log, $OUT/summary.json, $OUT/artifacts.tar.gz"
  return "$rc"
}

mkdir -p "$OUT" && rm -rf "$WORK" && mkdir -p "$WORK/logs" "$WORK/figures" || exit 2
: > "$WORK/steps.tsv"
START=$(now); DEADLINE=$(( START + BUDGET_S )); export START
echo "device check: DEVICE=$DEVICE, python $PY, budget ${BUDGET_S}s, outputs in $OUT"
pin setup ""
run_step install 75
run_step imports 45
GATE=""
grep -q $'^imports\t[^\t]*\tok\t' "$WORK/steps.tsv" || GATE="imports failed (see the imports step)"
run_step cores 15
CONCURRENT=0 SEP_CORES=0,1 SHR_CORES=0 SEPARATE_SET="" SHARED_SET="" CUDA_SET=""
# shellcheck disable=SC1091
[ -s "$WORK/cores.env" ] && source "$WORK/cores.env"
export SEP_CORES SHR_CORES CONCURRENT
CUDA_DEVICES=$("$BOOK" -c 'import json,sys
try: c = json.load(open(sys.argv[1])).get("cuda", {})
except Exception: c = {}
print(c.get("devices", 0) if c.get("available") else 0)' "$WORK/figures/imports.imports.json")
export CUDA_DEVICES
NO_CUDA=""
[ "$CUDA_DEVICES" -ge 1 ] || NO_CUDA="no CUDA (torch sees no CUDA device)"

if [ "$CONCURRENT" = 1 ]; then
  lane_separate & lane_shared & lane_cuda & wait
else
  lane_separate; lane_shared; lane_cuda
fi
finish

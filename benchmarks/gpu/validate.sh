#!/usr/bin/env bash
# One command that validates every GPU path of fcnfast on a GPU machine and writes the evidence.
#
#   OUT=/some/dir bash benchmarks/gpu/validate.sh [--deadline S] [--steps a,b,...] [--dry-run]
#                                                 [--pytest-args "ARGS"]
#   (FCNFAST_GIT_COMMIT=<sha> names the commit when the tree's .git is absent or stale)
#
# Run from the repository root. Steps, in order (each writes its JSON into $OUT when it ends):
#   env        env.json             GPU, clocks, versions, imports the later steps need
#   build      (summary only)       FCNFAST_CUDA=1 FCNFAST_CUDA_ARCHS=90 pip install --no-build-isolation --no-deps -e .
#   tests      tests.json           the test suite on CUDA, every backend required, autotuning off
#   sanitizer  sanitizer.json       compute-sanitizer memcheck / racecheck / initcheck over a smoke workload
#   stages     stages.json          each FCN-8s head stage: eager cuDNN, torch.compile, triton, cuda
#   bench      bench.json           fcnfast bench, FCN-8s 500x500 end to end
#   kernels    triton_kernels.json  autotuned config, registers and spills per Triton kernel and key
# and last summary.json (rewritten after every step, so a run cut short still has one): every step's
# status (pass / fail / skipped: reason), wall time and headline figures. At most 7 files, no folders.
#
# A global deadline (default 480 s) bounds the whole run: each step runs under `timeout` with the
# smaller of its own limit and the time left, a step that cannot get its minimum is skipped with the
# reason, and a failing step never stops the later ones.
# --dry-run (no GPU needed; CI runs it): checks tools and imports, runs every step's Python part at
# tiny sizes on the CPU (Triton interpreted) and writes the same files, GPU-only parts marked skipped.
set -uo pipefail

DEADLINE=480
DRY_RUN=0
PYTEST_ARGS=""  # a test selection for the tests step (a rerun of failures, say); default: the whole suite
STEPS="env,build,tests,sanitizer,stages,bench,kernels"
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --deadline) DEADLINE="${2:?--deadline needs seconds}"; shift 2 ;;
    --deadline=*) DEADLINE="${1#*=}"; shift ;;
    --steps) STEPS="${2:?--steps needs a list}"; shift 2 ;;
    --steps=*) STEPS="${1#*=}"; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --pytest-args) PYTEST_ARGS="${2?--pytest-args needs a value}"; shift 2 ;;
    --pytest-args=*) PYTEST_ARGS="${1#*=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "validate.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$DEADLINE" in ''|*[!0-9]*) echo "validate.sh: --deadline must be whole seconds, got $DEADLINE" >&2; exit 2 ;; esac
for s in ${STEPS//,/ }; do
  case "$s" in env|build|tests|sanitizer|stages|bench|kernels) ;;
    *) echo "validate.sh: unknown step $s (env,build,tests,sanitizer,stages,bench,kernels)" >&2; exit 2 ;;
  esac
done

[ -f setup.py ] && [ -d fcnfast ] || { echo "validate.sh: run it from the repository root" >&2; exit 2; }
OUT="${OUT:-./gpu-validate-out}"
mkdir -p "$OUT" || exit 2
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fcnfast-validate.XXXXXX")"  # logs and scratch: never in $OUT
STEPS_LOG="$WORK/steps.jsonl"
: > "$STEPS_LOG"
PY="${PYTHON:-python3}"
HERE="benchmarks/gpu"
T0=$(date +%s)
export PYTHONUNBUFFERED=1
export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-$WORK/triton-cache}"  # shared by every step's processes
export FCNFAST_CUDA_ARCHS=90
# The commit the evidence belongs to; set it when the tree is a copy whose .git is absent or stale.
export FCNFAST_GIT_COMMIT="${FCNFAST_GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
if [ "$DRY_RUN" = 1 ]; then
  export TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES=""  # the CPU, even where a GPU happens to exist
  MODE=dry-run
else
  MODE=gpu
fi

elapsed() { echo $(( $(date +%s) - T0 )); }
log() { echo "[validate +$(elapsed)s] $*"; }
wanted() { case ",$STEPS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

summary() {
  "$PY" "$HERE/report.py" summary --steps "$STEPS_LOG" --out "$OUT" --mode "$MODE" --deadline "$DEADLINE" \
    --elapsed "$(elapsed)" --commit "$FCNFAST_GIT_COMMIT" >/dev/null 2>"$WORK/summary.err" || { echo "summary failed:"; cat "$WORK/summary.err"; }
}

record() {  # record NAME STATUS WALL REASON LOG
  "$PY" - "$STEPS_LOG" "$@" <<'PY'
import json, sys
path, name, status, wall, reason, log = sys.argv[1:7]
tail = ""
if status == "fail" and log:
    try:
        with open(log, errors="replace") as f:
            tail = "\n".join(f.read().strip().splitlines()[-25:])
    except OSError:
        pass
with open(path, "a") as f:
    f.write(json.dumps({"step": name, "status": status, "wall_s": float(wall), "reason": reason,
                        "log_tail": tail}) + "\n")
PY
  summary
}

# run_step NAME MAX_S MIN_S COMMAND...: time-boxed, recorded, never fatal.
run_step() {
  local name="$1" max_s="$2" min_s="$3"; shift 3
  if ! wanted "$name"; then return 0; fi
  local left=$(( DEADLINE - $(elapsed) ))
  if [ "$left" -lt "$min_s" ]; then
    log "$name: skipped ($left s left of the ${DEADLINE} s deadline, needs at least $min_s s)"
    record "$name" skipped 0 "deadline: $left s left of ${DEADLINE} s, the step needs at least $min_s s" ""
    return 0
  fi
  # the dry run's interpreter is slow on a busy CPU: give its steps room (the deadline still holds)
  [ "$DRY_RUN" = 1 ] && max_s=$(( 3 * max_s ))
  local limit=$(( max_s < left ? max_s : left ))
  log "$name: start (time limit $limit s)"
  local start; start=$(date +%s)
  STEP_LIMIT="$limit" timeout --kill-after=10 "$limit" "$@" > "$WORK/$name.log" 2>&1
  local rc=$? wall=$(( $(date +%s) - start ))
  local status=pass reason=""
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status=fail; reason="timed out after $limit s"
  elif [ "$rc" -eq 3 ]; then status=skipped; reason="$(tail -n 1 "$WORK/$name.log")"
  elif [ "$rc" -ne 0 ]; then status=fail; reason="exit code $rc"; fi
  log "$name: $status in ${wall}s ${reason:+($reason)}"
  [ "$status" = fail ] && tail -n 15 "$WORK/$name.log" | sed 's/^/    /'
  record "$name" "$status" "$wall" "$reason" "$WORK/$name.log"
}

# ---- the steps (each a function run under timeout via bash -c) --------------------------------

step_env() { "$PY" "$HERE/env_probe.py" --out "$OUT/env.json" --mode "$MODE"; }

step_build() {
  if [ "$DRY_RUN" = 1 ]; then
    "$PY" -c "import fcnfast._C, fcnfast._cuda; print('installed build:', fcnfast._cuda.build_info())" || return 1
    echo "dry run: kept the installed build (the GPU run builds with FCNFAST_CUDA=1 FCNFAST_CUDA_ARCHS=90)"
    return 3
  fi
  MAX_JOBS="$(nproc)" FCNFAST_CUDA=1 "$PY" -m pip install --no-build-isolation --no-deps -e . &&
    "$PY" -c "import fcnfast._C, fcnfast._cuda; print(fcnfast._cuda.build_info())"
}

step_tests() {
  local args=(-q -rfE -p no:cacheprovider --junitxml="$WORK/junit.xml" -o junit_family=xunit1)
  if [ "$DRY_RUN" = 1 ]; then
    args+=(tests/test_launch_controls.py tests/test_extensions.py)  # the Python part, at tiny size
  else
    # every backend must be there; fixed Triton configs (autotuning is the stages' business)
    export FCNFAST_REQUIRE_BACKENDS=reference,cpp,triton,cuda FCNFAST_REQUIRE_CUDA_BUILD=1
    # the offline sm_90 compile test is CI's stand-in for a GPU: here the kernels compile for real
    args+=(--ignore=tests/test_triton_compile.py)
    if "$PY" -c "import xdist" 2>/dev/null; then args+=(-n "$(( $(nproc) > 12 ? 12 : $(nproc) ))"); fi
  fi
  local selection=()
  eval "selection=($PYTEST_ARGS)"  # shell words, quotes honoured: --pytest-args "-k 'a and b'"
  FCNFAST_TRITON_AUTOTUNE=0 "$PY" -m pytest "${args[@]}" "${selection[@]}" -v > "$WORK/pytest.log" 2>&1
  local rc=$?
  "$PY" "$HERE/report.py" tests --junit "$WORK/junit.xml" --log "$WORK/pytest.log" --rc "$rc" \
    --out "$OUT/tests.json" --mode "$MODE"
  tail -n 5 "$WORK/pytest.log"
  return "$rc"
}

step_sanitizer() {
  local smoke=("$PY" "$HERE/sanitizer_smoke.py")
  export FCNFAST_CUDA_SYNC_CHECK=1 FCNFAST_TRITON_AUTOTUNE=0
  local tools=(memcheck racecheck initcheck) rc=0
  if [ "$DRY_RUN" = 1 ] || ! command -v compute-sanitizer >/dev/null; then
    "${smoke[@]}" --tiny > "$WORK/smoke.log" 2>&1 || rc=1
    "$PY" "$HERE/report.py" sanitizer --workdir "$WORK" --out "$OUT/sanitizer.json" --mode "$MODE" \
      --smoke-log "$WORK/smoke.log" --no-sanitizer "$( [ "$DRY_RUN" = 1 ] && echo 'dry run' || echo 'compute-sanitizer not found')"
    cat "$WORK/smoke.log"
    return "$rc"
  fi
  local per_tool=$(( ${STEP_LIMIT:-180} / 3 - 2 ))
  for tool in "${tools[@]}"; do
    # No caching allocator for memcheck/initcheck: every tensor is its own allocation, so an
    # access past a tensor's end is caught instead of landing in a neighbour of the same pool.
    local no_cache=() only_ours=()
    [ "$tool" != racecheck ] && no_cache=(PYTORCH_NO_CUDA_MEMORY_CACHING=1)
    # memcheck/racecheck instrument only our kernels (names contain upsample_crop_add), so
    # PyTorch's stay fast; initcheck must see every kernel's writes (torch.zeros of a buffer
    # our kernels accumulate into, say), or it would flag memory those kernels initialised.
    [ "$tool" != initcheck ] && only_ours=(--kernel-name kns=upsample_crop_add)
    env "${no_cache[@]}" timeout --kill-after=5 "$per_tool" \
      compute-sanitizer --tool "$tool" "${only_ours[@]}" --print-limit 20 \
      --error-exitcode 9 "${smoke[@]}" > "$WORK/sanitizer_$tool.log" 2>&1
    echo "$tool $?" >> "$WORK/sanitizer_rc.txt"
  done
  "$PY" "$HERE/report.py" sanitizer --workdir "$WORK" --out "$OUT/sanitizer.json" --mode "$MODE"
}

step_stages() {
  local budget=$(( ${STEP_LIMIT:-180} - 10 ))
  if [ "$DRY_RUN" = 1 ]; then
    "$PY" "$HERE/stages.py" --out "$OUT/stages.json" --tiny --budget "$budget"
  else
    "$PY" "$HERE/stages.py" --out "$OUT/stages.json" --budget "$budget"
  fi
}

step_bench() {
  local args=(--no-progress --out "$WORK/bench")
  if [ "$DRY_RUN" = 1 ]; then
    args+=(--device cpu --size 32 --runs 1 --warmup 0 --head-runs 2 --head-warmup 0
           --providers reference,fcnfast-optimize,compile --compile-timeout 1)
  else
    local compile_s=$(( (${STEP_LIMIT:-180} - 40) / 2 ))
    args+=(--device cuda --size 500 --batch 1 --dtype float32 bfloat16 --runs 20 --warmup 5 --head-runs 50
           --head-warmup 10 --providers reference,compile,fcnfast-triton,fcnfast-cuda,fcnfast-optimize
           --compile-mode default --compile-timeout "$(( compile_s > 20 ? compile_s : 20 ))")
  fi
  "$PY" -m fcnfast bench "${args[@]}" && cp "$WORK/bench/bench.json" "$OUT/bench.json"
}

step_kernels() {
  if [ "$DRY_RUN" = 1 ]; then
    "$PY" "$HERE/triton_kernels.py" --out "$OUT/triton_kernels.json" --tiny
  else
    FCNFAST_TRITON_AUTOTUNE=1 "$PY" "$HERE/triton_kernels.py" --out "$OUT/triton_kernels.json"
  fi
}

export -f step_env step_build step_tests step_sanitizer step_stages step_bench step_kernels log elapsed
export PY HERE OUT WORK MODE DRY_RUN T0 PYTEST_ARGS

log "mode $MODE, commit $FCNFAST_GIT_COMMIT, deadline ${DEADLINE} s, steps $STEPS, OUT=$OUT, scratch $WORK"
#        name       max_s min_s   (the maxima fit the default deadline when steps run to their usual length)
run_step env           30    10 bash -c step_env
run_step build        150    60 bash -c step_build
run_step tests        160    60 bash -c step_tests
run_step sanitizer    100    45 bash -c step_sanitizer
run_step stages       110    40 bash -c step_stages
run_step bench         90    40 bash -c step_bench
run_step kernels       60    20 bash -c step_kernels
summary
log "done: $(ls "$OUT" | tr '\n' ' ')"
"$PY" "$HERE/report.py" table --out "$OUT"
# exit status: 0 when every step passed or was skipped, 1 when one failed
"$PY" -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))["passed"] else 1)' "$OUT/summary.json"

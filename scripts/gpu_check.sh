#!/usr/bin/env bash
# The GPU check of the warp backend, in one call on a CUDA machine:
#   1. install the packages (the machine's own CUDA build of torch is kept),
#   2. the warp-vs-MuJoCo C parity tests on the device (tests/envs/test_warp_*.py),
#   3. python -m rlplast.bench.warp at 1024, 4096 and 16384 worlds (env steps/s, GPU memory),
#   4. PPO+CBP training on --backend warp: stopped once by SIGTERM, then resumed,
#   5. OUT/summary.md: each step's time and result, and the numbers.
# Every step is timed and has a time limit, so that the default run stays under 8 minutes; a
# failing step is recorded (exit code, end of its output) and the next one runs. The exit code is
# 0 only if every step passed. OUT gets at most 8 small files; the runs stay in a temporary folder.
#
# On a CUDA machine without network, from a folder of wheels made by scripts/gpu_wheels.sh:
#   WHEELHOUSE=/path/to/wheels OUT=/path/to/out bash scripts/gpu_check.sh
# With network, leave WHEELHOUSE unset (packages from the index). Tiny, on Warp's CPU device (a
# check of the script itself: no time goal there, so longer limits and an early SIGTERM):
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_WORLDS="16 32" GPU_CHECK_STEPS=4096 GPU_CHECK_SEEDS=0-1 \
#     OUT=/tmp/gpu-check bash scripts/gpu_check.sh
set -uo pipefail # no -e: a step's failure is recorded, not fatal

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2

OUT=${OUT:-results/gpu_check}
WHEELHOUSE=${WHEELHOUSE:-}
PY=${GPU_CHECK_PYTHON:-python3}      # the machine's Python, with its CUDA build of torch
DEVICE=${GPU_CHECK_DEVICE:-cuda}
WORLDS=${GPU_CHECK_WORLDS:-1024 4096 16384}
BENCH_STEPS=${GPU_CHECK_BENCH_STEPS:-200}
TASK=${GPU_CHECK_TASK:-ant}
METHOD=${GPU_CHECK_METHOD:-ppo_cbp}
SEEDS=${GPU_CHECK_SEEDS:-0-7}
STEPS=${GPU_CHECK_STEPS:-2M}
SET=${GPU_CHECK_SET:-}               # extra config overrides, e.g. "env.envs_per_run=64"
# Seconds of training before the SIGTERM (at the earliest), and the time limits in seconds. On
# CUDA their sum (400 s), the import check's 20 s and the kill grace of each step (5 s; 20 s for
# the training, whose run saves after its update) come to 465 s: under 8 minutes whatever
# happens. The tests get the most: on a fresh machine they compile mujoco_warp's CUDA kernels for
# each model they build (Warp caches them for the steps after). The training's limit covers both
# of its runs; what the first leaves is the second's, which the limit stops with SIGTERM (it
# saves) if not done. On the CPU (tiny sizes, a check of this script): the SIGTERM during the
# first update, so that a run of a few updates is still stopped partway, and limits that a slow
# CPU meets.
if [ "$DEVICE" = cpu ]; then defaults=(0 600 900 600 900); else defaults=(45 40 165 70 125); fi
TERM_AFTER=${GPU_CHECK_TERM_AFTER:-${defaults[0]}}
T_INSTALL=${GPU_CHECK_TIMEOUT_INSTALL:-${defaults[1]}}
T_TESTS=${GPU_CHECK_TIMEOUT_TESTS:-${defaults[2]}}
T_BENCH=${GPU_CHECK_TIMEOUT_BENCH:-${defaults[3]}}
T_TRAIN=${GPU_CHECK_TIMEOUT_TRAIN:-${defaults[4]}}

mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/{summary.md,steps.tsv,environment.txt,install.log,tests.log,bench.txt,train.log,train.json}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rlplast-gpu-check.XXXXXX") || exit 2
trap '[ "${GPU_CHECK_KEEP:-0}" = 1 ] || rm -rf "$WORK"' EXIT
SITE=$WORK/site # the installed packages; rlplast runs from this checkout
export PYTHONPATH=$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 # progress lines reach the logs as they are printed
export LC_NUMERIC=C       # a decimal point in $EPOCHREALTIME, whatever the locale
echo "gpu check: device $DEVICE, output $OUT, work folder $WORK"

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# left LIMIT SPENT: whole seconds left of LIMIT (at least 1)
left() { awk -v t="$1" -v u="$2" 'BEGIN { r = int(t - u); print (r > 1 ? r : 1) }'; }

# record NAME SECONDS RC LOG NOTE: one line of OUT/steps.tsv, and the same on the console
record() {
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$OUT/steps.tsv"
    echo "== $1: exit $3 in $2 s${5:+ ($5)}"
}

# step NAME LIMIT LOG NOTE CMD...: run CMD under LIMIT seconds, its output into OUT/LOG and the console
step() {
    local name=$1 limit=$2 log=$3 note=$4 t0
    shift 4
    t0=$(now)
    echo "== $name (limit ${limit} s): $*" | tee -a "$OUT/$log"
    timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$OUT/$log"
    local rc=$?
    record "$name" "$(since "$t0")" "$rc" "$log" "$note"
    return "$rc"
}

# ---- 1. install --------------------------------------------------------------------------------

# The pinned list from constraints.txt, installed without dependency resolution (it is the whole
# set) into a folder of its own put first on PYTHONPATH: pip never sees torch, so the machine's
# CUDA build stays, whatever environment python3 is.
install_packages() {
    local reqs
    mapfile -t reqs < <("$PY" scripts/gpu_check.py requirements) || return 1
    local source=(--no-index --find-links "$WHEELHOUSE")
    [ -n "$WHEELHOUSE" ] || source=()
    # --upgrade: replace what torch's install (from the index) put there, with the pinned versions
    "$PY" -m pip install --no-deps --no-compile --disable-pip-version-check --upgrade --target "$SITE" \
        "${source[@]}" "${reqs[@]}"
}
export -f install_packages
export PY SITE WHEELHOUSE

# torch first, if this Python has none: only possible from the index (a CUDA build for the driver's
# CUDA version, GPU_CHECK_TORCH_INDEX to choose another, e.g. .../whl/cu128; the CPU build on cpu).
install_torch() {
    "$PY" -c "import torch" 2>/dev/null && return 0
    if [ -n "$WHEELHOUSE" ]; then
        echo "this Python has no torch: the check keeps the machine's CUDA build and installs none from WHEELHOUSE"
        return 1
    fi
    local index=${GPU_CHECK_TORCH_INDEX:-}
    if [ -z "$index" ] && [ "$DEVICE" = cpu ]; then
        index=https://download.pytorch.org/whl/cpu
    elif [ -z "$index" ]; then
        local cuda
        cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: \([0-9]*\)\.\([0-9]*\).*/\1\2/p')
        if [ -z "$cuda" ]; then echo "no NVIDIA driver found (nvidia-smi)"; return 1; fi
        if [ "$cuda" -ge 130 ]; then index=cu130; elif [ "$cuda" -ge 128 ]; then index=cu128; else index=cu126; fi
        index=https://download.pytorch.org/whl/$index
    fi
    "$PY" -m pip install --no-compile --disable-pip-version-check --target "$SITE" --index-url "$index" torch
}
export -f install_torch
export DEVICE

TORCH_BEFORE=$("$PY" -c "import torch; print(torch.__version__, torch.__file__)" 2>/dev/null)
t_install=$(now)
step install-torch "$T_INSTALL" install.log "this Python's own, else from the index" bash -c install_torch
step install-packages "$(left "$T_INSTALL" "$(since "$t_install")")" install.log "${WHEELHOUSE:+from WHEELHOUSE}" \
    bash -c install_packages

# What runs, and a check that it is the machine's torch and that it sees the GPU.
environment() {
    "$PY" - "$DEVICE" "$TORCH_BEFORE" <<'EOF'
import platform, sys
from importlib.metadata import version
import mujoco_warp, torch, warp  # noqa: F401
import rlplast.cli  # noqa: F401  (the whole command line imports)

device, before = sys.argv[1], sys.argv[2]
versions = ", ".join(f"{name} {version(name)}" for name in ("mujoco", "mujoco-warp", "warp-lang", "gymnasium", "numpy"))
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), {versions}")
print(f"torch from {torch.__file__}, warp from {warp.__file__}")
if torch.cuda.is_available():
    print(f"GPU: {torch.cuda.get_device_name()}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
now = f"{torch.__version__} {torch.__file__}"
if before and before != now:
    sys.exit(f"torch changed during the install: {before} -> {now}")
if device.startswith("cuda") and not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no CUDA GPU (driver too old for its CUDA {torch.version.cuda}?)")
EOF
}
t0=$(now)
export -f environment
export TORCH_BEFORE
timeout -k 5 20 bash -c environment >"$OUT/environment.txt" 2>&1
rc=$?
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$OUT/environment.txt" 2>&1
fi
cat "$OUT/environment.txt" | tee -a "$OUT/install.log"
record import-check "$(since "$t0")" "$rc" install.log "torch, Warp and rlplast import; on cuda, torch sees the GPU"

# ---- 2. parity tests on the device ------------------------------------------------------------------

step parity-tests "$T_TESTS" tests.log "tests/envs/test_warp_*.py on $DEVICE" \
    env RLPLAST_WARP_TEST_DEVICE="$DEVICE" "$PY" -m pytest -q -p no:cacheprovider --durations=5 \
    tests/envs/test_warp_ant.py tests/envs/test_warp_tasks.py

# ---- 3. simulation throughput -----------------------------------------------------------------------

# shellcheck disable=SC2086  # WORLDS is a list
step bench "$T_BENCH" bench.txt "worlds $WORLDS" \
    "$PY" -m rlplast.bench.warp --device "$DEVICE" --steps "$BENCH_STEPS" --worlds $WORLDS

# ---- 4. training, SIGTERM, resume ----------------------------------------------------------------------

train() {
    local runs=$WORK/runs cmd t0 budget=$T_TRAIN
    cmd=("$PY" -m rlplast train --task "$TASK" --method "$METHOD" --seeds "$SEEDS" --steps "$STEPS"
        --backend warp --device "$DEVICE" --out "$runs")
    for kv in $SET; do cmd+=(--set "$kv"); done
    echo "== train (limit $budget s for both runs): ${cmd[*]}"

    # Run 1, sent SIGTERM once TERM_AFTER seconds have passed and training is under way: 2 s
    # after its "training ..." line, by when its signal handler is in place (a SIGTERM before it
    # would end the process without a checkpoint). It saves after the current update: exit 143.
    t0=$(now)
    "${cmd[@]}" >"$WORK/run1.log" 2>&1 &
    local pid=$! seen="" sent=""
    while kill -0 "$pid" 2>/dev/null; do
        local t
        t=$(since "$t0")
        if [ -z "$seen" ] && grep -q '^training \|^resuming ' "$WORK/run1.log"; then seen=$t; fi
        if [ -z "$sent" ]; then
            # due: TERM_AFTER passed and 2 s since the line; or half the limit, line or not
            if awk -v t="$t" -v s="${seen:--1}" -v a="$TERM_AFTER" -v b="$budget" \
                'BEGIN { exit !((s >= 0 && t >= a && t >= s + 2) || t >= b / 2) }'; then
                echo "sending SIGTERM after $t s"
                kill -TERM "$pid" && sent=$t
            fi
        elif awk -v t="$t" -v b="$budget" 'BEGIN { exit !(t >= b) }'; then
            echo "run 1 still running at the limit: SIGKILL"
            kill -KILL "$pid"
        fi
        sleep 0.5
    done
    wait "$pid"
    local rc1=$? wall1
    wall1=$(since "$t0")
    cat "$WORK/run1.log"
    echo "== run 1: exit $rc1 (143: stopped by SIGTERM after saving) in $wall1 s"
    local ckpt
    ckpt=$("$PY" scripts/gpu_check.py checkpoint-step "$runs/$METHOD")
    echo "checkpoint at step ${ckpt:-none}"

    # Run 2: the same command resumes, for what is left of the limit (then SIGTERM: it saves).
    local rest
    rest=$(left "$budget" "$wall1")
    echo "== run 2 (limit $rest s): the same command"
    t0=$(now)
    timeout -k 20 "$rest" "${cmd[@]}" >"$WORK/run2.log" 2>&1
    local rc2=$? wall2
    wall2=$(since "$t0")
    cat "$WORK/run2.log"
    echo "== run 2: exit $rc2 (0: finished; 124: stopped by the limit after saving) in $wall2 s"
    "$PY" scripts/gpu_check.py train --runs "$runs/$METHOD" --logs "$WORK/run1.log" "$WORK/run2.log" \
        --rcs "$rc1" "$rc2" --walls "$wall1" "$wall2" ${ckpt:+--checkpoint-step "$ckpt"} --json "$OUT/train.json"
}
t0=$(now)
train 2>&1 | tee "$OUT/train.log"
record train "$(since "$t0")" "$?" train.log "$METHOD on $TASK, seeds $SEEDS, $STEPS steps, SIGTERM and resume"

# ---- 5. summary ----------------------------------------------------------------------------------

# No output file may grow past 16 MB: keep the end of any log that did.
for f in "$OUT"/*; do
    if [ "$(stat -c %s "$f")" -gt 15000000 ]; then tail -c 15000000 "$f" >"$f.tmp" && mv "$f.tmp" "$f"; fi
done
"$PY" scripts/gpu_check.py summary "$OUT"
rc=$?
cat "$OUT/summary.md"
echo "gpu check: $([ "$rc" = 0 ] && echo "every step passed" || echo "a step failed") (see $OUT/summary.md)"
exit "$rc"

#!/usr/bin/env bash
# The project's GPU check: one script, well under 10 minutes, for a session that is lent a CUDA machine.
#
# Here, once:   bash .ci/gpu_wheels.sh      (wheels of what the device image lacks, for Python 3.10-3.13, into .whl/)
# There:        device run, carry [".whl"], command: bash .ci/gpu_check.sh         (float32, about 7 minutes)
#               then, on the same warm machine:      bash .ci/gpu_check.sh bf16    (bf16 autocast with TF32, about 4 minutes)
# Anywhere:     bash .ci/gpu_check.sh --dry-run     every step on the CPU at a tiny scale (CI runs it, with POT and optuna
#                                                   hidden, as the GPU machine may lack them: JTLN_HIDE=ot,optuna)
#
# 1. the CUDA tests: the OT core on the device (the Triton and torch loops), the host reads of a training step, fake and
#    real device placement, bf16;
# 2. the paper profile rehearsed at the paper's scale on stand-in images (python -m reproduce rehearse; the machine has no
#    annotation files, so they are generated at FGVC-Aircraft's scale): per phase wall time, peak host and GPU memory,
#    steps/s and host reads per step, GPU utilisation, and the full paper profile's projected wall time.
# Figures in $OUT/rehearsal_<mode>.json, written after every phase (a time limit keeps what was measured); the log in
# $OUT/gpu_check_<mode>.log. Each step has its own time limit, and a failed step does not stop the next.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONHASHSEED=0
PY="${PYTHON:-python3}"
case "${1:-float32}" in
    float32 | bf16 | --dry-run) mode="${1:-float32}"; mode="${mode#--}" ;;
    *) echo "usage: bash .ci/gpu_check.sh [bf16 | --dry-run]" >&2; exit 2 ;;
esac

path="$PWD"
# what the device image lacks, from .whl/ for whichever Python is there: pip picks the wheels that fit, and a package
# without one is left out (its tests skip; the rehearsal reports without a projection)
if ls .whl/*.whl > /dev/null 2>&1; then
    for package in optuna alembic sqlalchemy colorlog mako greenlet pot; do
        "$PY" -m pip install -q --no-index --no-deps --no-compile --find-links .whl --target "$OUT/site" "$package" 2> /dev/null \
            || echo "gpu_check: no wheel of $package in .whl/ for this Python; going on without it" >&2
    done
    path="$OUT/site:$path"
fi
# JTLN_HIDE=ot,optuna: those imports fail as if the packages were not installed
if [ -n "${JTLN_HIDE:-}" ]; then
    for name in ${JTLN_HIDE//,/ }; do
        mkdir -p "$OUT/hidden/$name"
        echo "raise ImportError('$name is hidden by JTLN_HIDE (.ci/gpu_check.sh)')" > "$OUT/hidden/$name/__init__.py"
    done
    path="$OUT/hidden:$path"
fi
export PYTHONPATH="$path"

tests=(tests/test_ot.py tests/test_torch_branch.py tests/test_host_syncs.py tests/test_arithmetic.py tests/test_fake_cuda.py
       tests/test_scaling_triton.py)
if [ "$mode" = dry-run ]; then
    # the same steps on the CPU: the tests that a GPU runs on CUDA, here on fake CUDA tensors and Triton's interpreter; the
    # rehearsal at 9 images per variant of 64 x 48 pixels
    export TRITON_INTERPRET=1
    unset JTLN_FGVC_ROOT  # generated annotations at 9 images per variant, not 10,000 stand-ins of the real boxes' sizes
    select="fake_cuda or host_syncs or (triton and not fixed_point) or bf16 or tf32"
    rehearse=(--device cpu --per-variant 9 --width 64 --height 48 --epochs 1)
    limits=(600 900)
else
    select="cuda or host_syncs or arithmetic or triton"
    rehearse=()
    [ "$mode" = bf16 ] && rehearse=(--precision bf16 --tf32)
    limits=(150 420)
fi
{
    echo "gpu_check $mode: $(date -u +%FT%TZ) on $(hostname)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2> /dev/null || echo "no nvidia-smi"
    "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    if [ "$mode" != bf16 ]; then
        timeout "${limits[0]}" "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -k "$select" "${tests[@]}"
        echo "gpu_check: tests exit $?"
    fi
    timeout "${limits[1]}" "$PY" -m reproduce rehearse --profile paper --work "$OUT/rehearsal" "${rehearse[@]}" \
        --json "$OUT/rehearsal_$mode.json"
    echo "gpu_check: rehearsal exit $? (figures so far in $OUT/rehearsal_$mode.json)"
} 2>&1 | tee "$OUT/gpu_check_$mode.log"

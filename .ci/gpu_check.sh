#!/usr/bin/env bash
# The project's GPU check: one script, well under 10 minutes, for a session that is lent a CUDA machine.
#
# Here, once:   bash .ci/gpu_wheels.sh      (wheels of what the device image lacks, into .whl/, ignored by git)
# There:        device run, carry [".whl"], command: bash .ci/gpu_check.sh         (about 6 minutes)
#               then, on the same warm machine:      bash .ci/gpu_check.sh bf16    (about 3 minutes)
#
# 1. the CUDA tests (the OT core on the device, the host reads of a training step, bf16);
# 2. the paper profile rehearsed at the paper's scale on stand-in images (python -m reproduce rehearse; the machine has
#    no annotation files, so they are generated at FGVC-Aircraft's scale): per phase wall time, peak host and GPU memory,
#    steps/s and host reads per step, GPU utilisation, and the full paper profile's projected wall time;
#    with "bf16", the same in bf16 autocast with TF32. Figures in $OUT/rehearsal_*.json, the log in $OUT/gpu_check*.log.
set -uo pipefail
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONHASHSEED=0
if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
if [ "${1:-}" = bf16 ]; then
    timeout 500 python3 -m reproduce rehearse --profile paper --work /tmp/rehearsal --precision bf16 --tf32 --json "$OUT/rehearsal_bf16.json" \
        2>&1 | tee "$OUT/gpu_check_bf16.log"
    exit
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    timeout 120 python3 -m pytest -q -p no:cacheprovider -o addopts="" -k "cuda or host_syncs or arithmetic" \
        tests/test_ot.py tests/test_torch_branch.py tests/test_host_syncs.py tests/test_arithmetic.py
    timeout 420 python3 -m reproduce rehearse --profile paper --work /tmp/rehearsal --json "$OUT/rehearsal_float32.json"
} 2>&1 | tee "$OUT/gpu_check.log"

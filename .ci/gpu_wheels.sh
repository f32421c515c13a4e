#!/usr/bin/env bash
# Wheels of the packages the GPU machine's image lacks (it reaches no registry), for .ci/gpu_check.sh: into .whl/, for
# CPython 3.10 to 3.13 (the check installs the ones that fit the Python it finds there).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
for python in 3.10 3.11 3.12 3.13; do
    for spec in optuna==5.0.0 alembic==1.20.1 sqlalchemy==2.1.9 colorlog==6.12.0 mako==1.4.3 greenlet==3.5.6 pot==0.9.7.post1; do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$python" --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform manylinux_2_24_x86_64 --platform any -d .whl "$spec" \
            || echo "gpu_wheels: no wheel of $spec for CPython $python" >&2
    done
done
ls -la .whl

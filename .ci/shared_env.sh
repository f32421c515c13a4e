#!/usr/bin/env bash
# Runs a command inside the one virtual environment that `tox -e test`, `-e bench` and
# `-e reproduce` share (torch alone is ~5.5 GB). tox 4 recreates an env_dir shared by
# differently named environments at every switch, so the sharing happens here: the
# environment is created once in .tox/shared and refreshed when pyproject.toml or .ci/constraints.txt changes
# (the exact PyTorch pins live there: the package itself declares ranges).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.tox/shared"
stamp="$venv/.pyproject.sha256"
want="$(cat "$root/pyproject.toml" "$root/.ci/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "creating the shared environment $venv (a few minutes, ~6 GB)" >&2
    python3 -m venv --clear "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    # --no-compile: pip compiles every module of every package, one at a time (16,000 files: 70 of the 142 s the
    # environment took here). Instead the ~5,800 the commands import are compiled by importing them, the torch side and
    # the rest in two processes at once (22 s); anything else compiles, and is cached, at its first import
    "$venv/bin/python" -m pip install -q --no-compile -e "$root[experiment,cluster,test,docs]" -c "$root/.ci/constraints.txt"
    warm() {  # import each module named (one missing on this platform is skipped), writing its bytecode
        PYTHONDONTWRITEBYTECODE= "$venv/bin/python" -c 'import importlib, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError:
        pass' "$@"
    }
    warm torch torchvision timm triton ot &
    warm scipy.stats sklearn.model_selection statsmodels.api pandas matplotlib.pyplot seaborn optuna numba sphinx myst_parser \
        nbconvert nbclient ipykernel.kernelapp hypothesis pytest submitit &
    wait
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv"
exec "$@"

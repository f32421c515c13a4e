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
    # --no-compile: pip would compile every module of every package (16,000 files, half of the two minutes the
    # environment takes); Python compiles, and caches, only those a command imports, at their first import
    "$venv/bin/python" -m pip install -q --no-compile -e "$root[experiment,cluster,test,docs]" -c "$root/.ci/constraints.txt"
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv"
exec "$@"

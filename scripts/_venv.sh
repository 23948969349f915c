# Sourced by the scripts: create the virtual environment with the project installed, once.
# NTK_BAYES_VENV picks its folder (default .venv) and NTK_BAYES_PYTHON the interpreter that
# creates it (default python3); CI uses both to test two Python/ArviZ stacks side by side.
# NTK_BAYES_CONSTRAINTS names a pip constraints file for the install (CI's lowest stack:
# every runtime dependency at its lower bound, from tools/lowest_constraints.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${NTK_BAYES_VENV:-$ROOT/.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
PY="$VENV/bin/python"
STAMP="$VENV/.ntk_bayes-installed"
if [ ! -x "$PY" ]; then
    "${NTK_BAYES_PYTHON:-python3}" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet ${NTK_BAYES_CONSTRAINTS:+-c "$NTK_BAYES_CONSTRAINTS"} -e ".[test]"
    touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export PYTHONHASHSEED=0
export XLA_PYTHON_CLIENT_PREALLOCATE=false

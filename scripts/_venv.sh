# Sourced by the scripts: create the virtual environment with the project installed, once.
# NTK_BAYES_VENV picks its folder (default .venv) and NTK_BAYES_PYTHON the interpreter that
# creates it (default python3); CI uses both to test two Python/ArviZ stacks side by side.
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
    "$PY" -m pip install --quiet -e ".[test]"
    touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export PYTHONHASHSEED=0
export XLA_PYTHON_CLIENT_PREALLOCATE=false

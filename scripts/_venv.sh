# Sourced by the scripts: create .venv with the project installed, once.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
STAMP="$ROOT/.venv/.ntk_bayes-installed"
if [ ! -x "$PY" ]; then
    python3 -m venv "$ROOT/.venv"
fi
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet -e ".[test]"
    touch "$STAMP"
fi
export PYTHONHASHSEED=0
export XLA_PYTHON_CLIENT_PREALLOCATE=false

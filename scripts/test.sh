#!/usr/bin/env bash
# Lint, then the test suite in float32 and in float64 (creates .venv on first use).
# The long statistical checks (marked slow) are skipped unless --slow is given; with it
# they run once, in the float64 pass. Other arguments go to pytest, e.g. `-k priors`.
source "$(dirname "$0")/_venv.sh"
SLOW=0
ARGS=()
for a in "$@"; do
    if [ "$a" = "--slow" ]; then SLOW=1; else ARGS+=("$a"); fi
done
"$ROOT/.venv/bin/ruff" check ntk_bayes tests examples benchmarks
echo "== pytest, float32 (JAX_ENABLE_X64=0)"
JAX_ENABLE_X64=0 "$PY" -m pytest -q -p no:cacheprovider -m "not slow" "${ARGS[@]}"
echo "== pytest, float64 (JAX_ENABLE_X64=1)"
if [ "$SLOW" = 1 ]; then
    JAX_ENABLE_X64=1 "$PY" -m pytest -q -p no:cacheprovider "${ARGS[@]}"
else
    JAX_ENABLE_X64=1 "$PY" -m pytest -q -p no:cacheprovider -m "not slow" "${ARGS[@]}"
fi

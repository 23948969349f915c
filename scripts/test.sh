#!/usr/bin/env bash
# Lint, then the test suite in float32 and in float64 (creates .venv on first use).
# The long statistical checks (marked slow) run once, in the float64 pass; pass
# --fast to skip them. Other arguments go to pytest, e.g. `bash scripts/test.sh -k priors`.
source "$(dirname "$0")/_venv.sh"
SLOW=1
ARGS=()
for a in "$@"; do
    if [ "$a" = "--fast" ]; then SLOW=0; else ARGS+=("$a"); fi
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

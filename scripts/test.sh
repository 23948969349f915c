#!/usr/bin/env bash
# Run the test suite in float32 and in float64 (creates .venv on first use).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
source "$(dirname "$0")/_venv.sh"
"$ROOT/.venv/bin/ruff" check ntk_bayes tests examples benchmarks
for x64 in 0 1; do
    echo "== pytest with JAX_ENABLE_X64=$x64"
    JAX_ENABLE_X64=$x64 "$PY" -m pytest -q -p no:cacheprovider "$@"
done

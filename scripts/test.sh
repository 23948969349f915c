#!/usr/bin/env bash
# Lint, then the tests by tier (creates .venv on first use). Tests whose result depends on
# the precision run in float32 and float64 inside one process (the `dtype` fixture).
#   bash scripts/test.sh          lint + tests/unit, tests/stat, tests/e2e
#   bash scripts/test.sh --fast   lint + tests/unit (the edit-test loop)
#   bash scripts/test.sh --slow   the default tiers plus tests/slow and slow grid points
#   bash scripts/test.sh --only-slow   tests/slow and slow grid points alone
# Other arguments go to pytest, e.g. `-k priors` or `-n 0` (no worker processes).
# Compiled XLA programs are kept in $NTK_BAYES_JAX_CACHE (default .venv/jax-cache), so a
# second run skips most compilation; delete the folder to measure a cold run. Test
# durations are kept in $NTK_BAYES_TEST_DURATIONS (default .venv/test-durations.json).
source "$(dirname "$0")/_venv.sh"
# e2e first: its long subprocess tests start at once instead of ending the run alone
TIERS=(tests/e2e tests/stat tests/unit)
MARK="not slow"
ARGS=()
for a in "$@"; do
    case "$a" in
        --fast) TIERS=(tests/unit) ;;
        --slow) TIERS=(tests/e2e tests/slow tests/stat tests/unit); MARK="" ;;
        --only-slow) TIERS=(tests/slow tests/e2e tests/stat tests/unit); MARK="slow" ;;
        *) ARGS+=("$a") ;;
    esac
done
export NTK_BAYES_JAX_CACHE="${NTK_BAYES_JAX_CACHE:-$VENV/jax-cache}"
# Each run records its tests' durations here; the next starts the longest work units
# first (tests/conftest.py), so that no long module ends the run alone.
export NTK_BAYES_TEST_DURATIONS="${NTK_BAYES_TEST_DURATIONS:-$VENV/test-durations.json}"
mkdir -p "$NTK_BAYES_JAX_CACHE"
"$VENV/bin/ruff" check ntk_bayes tests examples benchmarks tools
"$VENV/bin/ruff" format --check --quiet ntk_bayes tests examples benchmarks tools || {
    echo "ruff format would change the files above: run .venv/bin/ruff format" >&2; exit 1; }
echo "== pytest ${TIERS[*]} ${MARK:+(-m \"$MARK\")}"
"$PY" -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup --durations=15 ${MARK:+-m "$MARK"} "${TIERS[@]}" "${ARGS[@]}"

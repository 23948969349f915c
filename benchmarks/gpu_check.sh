#!/usr/bin/env bash
# One prepared GPU session: correctness tests and the benchmarks on an accelerator.
#
# Runs from the repository root against the machine's own JAX (no install of
# ntk_bayes: PYTHONPATH=.), with any extra wheels in .whl/ installed to /tmp/site.
# Writes one log per step to $OUT (or ./gpu_out). Each step has its own time limit so
# that one slow step cannot starve the rest. Steps: tests kernels grad cnn gp (default:
# all). TESTS overrides the test files of the tests step: by default the kernel engine's
# unit and stat tiers and the predictions built on it (each test runs in float32 and
# float64 through the `dtype` fixture).
#
#     OUT=/tmp/gpu bash benchmarks/gpu_check.sh [STEP ...]
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
fi
# Several test workers share one GPU: each takes memory as it needs it, not 75% up front.
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
STEPS=${*:-tests kernels grad cnn gp}
TESTS=${TESTS:-$(echo tests/unit/test_stax_*.py tests/unit/test_reference_fc.py \
tests/unit/test_predict.py tests/unit/test_predict_gradient_descent.py \
tests/unit/test_gp_exact.py tests/stat/test_differential_nt.py tests/stat/test_stax_*.py \
tests/e2e/test_stax_devices.py)}
WORKERS=${WORKERS:-8}

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    local rc=$?
    echo "$name: rc=$rc $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
    tail -n 6 "$OUT/$name.txt"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import jax, numpyro, equinox; print('jax', jax.__version__, jax.devices(), \
'numpyro', numpyro.__version__, 'equinox', equinox.__version__)"
} >"$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"

# pytest-benchmark (installed there) warns under xdist, which the warnings-as-errors
# setting turns into an internal error: it is switched off.
PYTEST=(python3 -m pytest -q -rfE --tb=short -m "not slow" -p no:cacheprovider -p no:benchmark
    --durations=10)
for s in $STEPS; do
    case $s in
    # shellcheck disable=SC2086
    tests) step tests 360 "${PYTEST[@]}" -n "$WORKERS" --dist loadgroup $TESTS ;;
    kernels) step bench_kernels 75 python3 benchmarks/bench_kernels.py --sizes 2048 8192 20000 \
        --repeats 10 ;;
    grad) step bench_grad_memory 60 python3 benchmarks/bench_grad_memory.py --n 9 24 ;;
    cnn) step bench_cnn 60 python3 benchmarks/bench_cnn.py ;;
    gp) step bench_gp 75 python3 benchmarks/bench_gp.py --repeats 2 ;;
    *) echo "unknown step $s" ;;
    esac
done

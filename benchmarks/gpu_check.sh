#!/usr/bin/env bash
# One prepared GPU session: correctness tests and the benchmarks on an accelerator.
#
# Runs from the repository root against the machine's own JAX (no install of
# ntk_bayes: PYTHONPATH=.), with any extra wheels in .whl/ installed to /tmp/site.
# Writes one log per step to $OUT (or ./gpu_out). Each step has its own time limit so
# that one slow step cannot starve the rest. Steps: kernels tests32 tests64 cnn gp
# (default: all); TESTS32 / TESTS64 override the test files of the two test steps.
#
#     OUT=/tmp/gpu bash benchmarks/gpu_check.sh [STEP ...]
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
STEPS=${*:-kernels tests32 tests64 cnn gp}
TESTS32=${TESTS32:-tests/test_reference_fc.py tests/test_stax_fc.py tests/test_stax_conv.py \
tests/test_gp_exact.py tests/test_gp_sparse.py tests/test_predict.py}
TESTS64=${TESTS64:-tests/test_reference_fc.py tests/test_stax_conv.py \
tests/test_stax_attention.py tests/test_predict.py}

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

PYTEST=(python3 -m pytest -q -rf --tb=line -m "not slow" -p no:cacheprovider)
for s in $STEPS; do
    case $s in
    kernels) step bench_kernels 90 python3 benchmarks/bench_kernels.py --sizes 2048 8192 20000 \
        --repeats 10 ;;
    # shellcheck disable=SC2086
    tests32) step tests_f32 170 "${PYTEST[@]}" $TESTS32 ;;
    # shellcheck disable=SC2086
    tests64) step tests_f64 110 env JAX_ENABLE_X64=1 "${PYTEST[@]}" $TESTS64 ;;
    cnn) step bench_cnn 80 python3 benchmarks/bench_cnn.py ;;
    gp) step bench_gp 60 python3 benchmarks/bench_gp.py --repeats 2 ;;
    *) echo "unknown step $s" ;;
    esac
done

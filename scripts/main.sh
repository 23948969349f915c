#!/usr/bin/env bash
# The main job: `ntk-bayes calibrate` on the default embedded dataset (toy1d) into a fresh
# timestamped directory under ntk_bayes_out/ (creates .venv on first use). Extra arguments
# go to the command, e.g. `bash scripts/main.sh --dataset diabetes` or `--quick`.
source "$(dirname "$0")/_venv.sh"
# Compiled XLA programs are kept between runs in JAX's persistent cache (the folder the
# tests use), so a second run skips most compilation; JAX_COMPILATION_CACHE_DIR="" turns
# it off. The path is absolute: it is part of every program's cache key.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR-$VENV/jax-cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0}"
export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="${JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES:--1}"
# jaxlib 0.9 logs one C++ warning per program loaded from that cache ("Assume version
# compatibility. PjRt-IFRT does not track XLA executable versions."): dozens of lines of
# noise per run. Level 2 keeps XLA's errors and drops its warnings; set
# TF_CPP_MIN_LOG_LEVEL=0 to see them.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
OUT="ntk_bayes_out/calibrate-$(date +%Y%m%d-%H%M%S)"
status=0
"$VENV/bin/ntk-bayes" calibrate --out "$OUT" "$@" || status=$?
if [ -f "$OUT/report.md" ]; then
    echo "report written to $ROOT/$OUT/report.md (metrics.json, figures and one ArviZ netCDF per model beside it)"
fi
exit "$status"

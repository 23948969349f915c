#!/usr/bin/env bash
# The main job: `ntk-bayes calibrate` on the default embedded dataset (toy1d) into a fresh
# timestamped directory under ntk_bayes_out/ (creates .venv on first use). Extra arguments
# go to the command, e.g. `bash scripts/main.sh --dataset diabetes` or `--quick`.
source "$(dirname "$0")/_venv.sh"
OUT="ntk_bayes_out/calibrate-$(date +%Y%m%d-%H%M%S)"
status=0
"$VENV/bin/ntk-bayes" calibrate --out "$OUT" "$@" || status=$?
if [ -f "$OUT/report.md" ]; then
    echo "report written to $ROOT/$OUT/report.md (metrics.json, figures and one ArviZ netCDF per model beside it)"
fi
exit "$status"

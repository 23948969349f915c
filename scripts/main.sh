#!/usr/bin/env bash
# The main job on the embedded default dataset (creates .venv on first use).
source "$(dirname "$0")/_venv.sh"
exec "$PY" examples/quickstart.py "$@"

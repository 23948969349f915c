"""A 2-million-row CSV through the quick calibration under a 2 GB memory cap.

The cap is ``RLIMIT_AS`` (address space, stricter than resident memory) set in the
child process only; the CSV is generated in pytest's temporary directory by the
benchmark's own writer (``benchmarks/bench_big_csv.py``).
"""

import importlib.util
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
_CAP = 2 << 30  # 2 GiB


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_big_csv", _ROOT / "benchmarks" / "bench_big_csv.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _capped():
    resource.setrlimit(resource.RLIMIT_AS, (_CAP, _CAP))


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS semantics are Linux's")
def test_two_million_rows_calibrate_within_2gb(tmp_path):
    csv = tmp_path / "big.csv"
    _bench().write_csv(csv, 2_000_000)
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "ntk_bayes.cli", "calibrate", "--csv", str(csv), "--target",
        "y", "--quick", "--quiet", "--n-max", "200", "--models", "nngp,sgpr", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    r = subprocess.run(
        cmd, preexec_fn=_capped, env=env, capture_output=True, text=True, timeout=1800
    )
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"]["n_train"] <= 200 and m["dataset"]["n_test"] <= 1000
    assert sum(p.stat().st_size for p in out.iterdir()) < 50e6  # bounded netCDF files
    assert m["models"]["nngp"]["metrics"]["rmse"] < 0.5  # it learned (target sd 0.83)

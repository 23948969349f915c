"""A 2-million-row CSV through the quick calibration within 2 GB of resident memory.

The child runs under a 6 GiB ``RLIMIT_AS`` cap (the run that used to need 10.7 GB, and
died under a 6 GB cap, must now finish under it; address space is not resident memory:
XLA reserves far more than it touches, so 2 GiB of address space is too tight for any
JAX program) and its peak resident memory (``ru_maxrss``) must stay below 2 GB. The CSV
is generated in pytest's temporary directory by the benchmark's own writer and measured
by its own wrapper (``benchmarks/bench_big_csv.py``).
"""

import json
import os
import sys
from pathlib import Path

import pytest
from _examples import load_script

_ROOT = Path(__file__).resolve().parents[2]
_CAP = 6 << 30  # 6 GiB of address space


def _bench():
    return load_script(_ROOT / "benchmarks" / "bench_big_csv.py")


# The child caps its own address space before it imports anything: a preexec_fn would
# fork this JAX-threaded worker (JAX warns, rightly, that a fork can deadlock).
_CAPPED_CLI = (
    f"import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, ({_CAP}, {_CAP})); "
    "sys.argv[0] = 'ntk-bayes'; runpy.run_module('ntk_bayes.cli', run_name='__main__')"
)


@pytest.mark.seconds(300)  # 293 s at load 5-8, 2026-12-01
@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS semantics are Linux's")
def test_two_million_rows_calibrate_within_2gb(tmp_path):
    csv = tmp_path / "big.csv"
    bench = _bench()
    bench.write_csv(csv, 2_000_000)
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-c", _CAPPED_CLI, "calibrate", "--csv", str(csv), "--target",
        "y", "--quick", "--quiet", "--n-max", "200", "--models", "nngp,sgpr", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    wall, rss_mb, rc, err = bench.run(cmd, env)
    assert rc == 0, err[-3000:]
    assert rss_mb < 2000, f"peak RSS {rss_mb:.0f} MB"
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"]["n_train"] <= 200 and m["dataset"]["n_test"] <= 1000
    assert sum(p.stat().st_size for p in out.iterdir()) < 50e6  # bounded netCDF files
    assert m["models"]["nngp"]["metrics"]["rmse"] < 0.5  # it learned (target sd 0.83)

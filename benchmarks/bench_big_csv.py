"""Memory and time of a quick calibration on a CSV of millions of rows.

Generates a CSV (default 2,000,000 rows x 9 columns, ~190 MB) in a temporary directory
(never in the repository), then runs, each in a fresh process whose peak resident
memory (``ru_maxrss``) is reported:

1. ``load``: ``datasets.load_csv(..., n_max=200)`` alone;
2. ``calibrate``: ``ntk-bayes calibrate --csv ... --quick --n-max 200 --models ...``.

Run ``python benchmarks/bench_big_csv.py [--rows N] [--models nngp,sgpr] [--keep]``.
The acceptance bound is 2 GB of RSS for the quick calibration of 2 million rows.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_csv(path: Path, rows: int, seed: int = 0, block: int = 200_000) -> None:
    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        f.write(",".join([f"x{i}" for i in range(8)] + ["y"]) + "\n")
        for start in range(0, rows, block):
            m = min(block, rows - start)
            X = rng.normal(size=(m, 8))
            y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.normal(size=m)
            np.savetxt(f, np.column_stack([X, y]), fmt="%.6g", delimiter=",")


def run(cmd: list[str], env=None) -> tuple[float, float, int, str]:
    """Wall time (s), peak RSS of the child (MB), exit status and stderr tail."""
    t0 = time.perf_counter()
    code = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print(r.returncode)\n"
        "sys.stderr.write(r.stderr[-2000:])\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, *cmd],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - t0
    rss_kb, rc = p.stdout.split()[-2:]
    return wall, int(rss_kb) / 1024, int(rc), p.stderr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--n-max", type=int, default=200)
    ap.add_argument("--models", default="nngp,sgpr")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="ntk-bayes-bigcsv-"))
    csv = tmp / "big.csv"
    t0 = time.perf_counter()
    write_csv(csv, args.rows)
    print(f"wrote {csv} ({csv.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    load = (
        "from ntk_bayes import datasets; import sys; "
        f"ds = datasets.load_csv(sys.argv[1], 'y', n_max={args.n_max}); print(ds.summary())"
    )
    cases = {
        "load": [sys.executable, "-c", load, str(csv)],
        "calibrate": [
            sys.executable,
            "-m",
            "ntk_bayes.cli",
            "calibrate",
            "--csv",
            str(csv),
            "--target",
            "y",
            "--quick",
            "--quiet",
            "--n-max",
            str(args.n_max),
            "--models",
            args.models,
            "--out",
            str(tmp / "out"),
        ],  # fmt: skip
    }
    print(f"{'case':10s} {'wall s':>8s} {'peak RSS MB':>12s} {'exit':>5s}")
    worst = 0
    for name, cmd in cases.items():
        wall, rss, rc, err = run(cmd, env)
        print(f"{name:10s} {wall:8.1f} {rss:12.0f} {rc:5d}")
        if rc != 0:
            print(err, file=sys.stderr)
        worst = max(worst, rss)
    if (tmp / "out").exists():
        sizes = {p.name: p.stat().st_size for p in (tmp / "out").iterdir()}
        print("output files (bytes):", sizes)
    if not args.keep:
        import shutil

        shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

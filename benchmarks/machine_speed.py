"""How fast is this machine right now? A probe to print beside every measured time.

The 2-core VM the project is measured on is a shared host: the same code ran the main
job in 2 min 42 s one morning and 4 min 00 s that evening, and the kernel floor below
moved from 0.025 s to 0.037 s between them. A time quoted against a budget means little
without the machine's speed at that hour, so `.ci/run` prints this line at its start and
end, and the README quotes it beside its figures.

Prints one JSON line: the best of ``--repeats`` calls of the kernel floor of
``bench_kernels.floor_fn`` (one x @ x.T and three fused elementwise passes, n = 2048,
d = 128, float32, jitted; both cores) and of a single-threaded NumPy matrix product
(float64, 512 x 512) that no JAX thread pool touches, with the time of day.

    python benchmarks/machine_speed.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _best(f, repeats: int) -> float:
    f()  # compile / warm
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import jax
    import numpy as np
    from bench_kernels import floor_fn
    from threadpoolctl import threadpool_limits

    x = np.random.default_rng(0).standard_normal((2048, 128)).astype(np.float32)
    floor = jax.jit(lambda a: floor_fn(a, 3))
    floor_s = _best(lambda: jax.block_until_ready(floor(x)), args.repeats)
    a = np.random.default_rng(1).standard_normal((512, 512))
    with threadpool_limits(limits=1):
        matmul_s = _best(lambda: a @ a, args.repeats)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(
        json.dumps(
            {
                "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "floor_s": round(floor_s, 4),
                "numpy_matmul_1thread_s": round(matmul_s, 4),
                "load_1min": load,
                "cpus": os.cpu_count(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

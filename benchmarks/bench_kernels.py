"""Time analytic NNGP+NTK of fully connected networks (issue 2's benchmark).

Networks: 3 hidden layers Dense(512, W_std=1.5, b_std=0.05) + ReLU (or Erf), Dense(1);
inputs d=128; kernel_fn(x, None, ("nngp", "ntk")) under jax.jit, float32.
The floor is one x @ x.T plus one fused elementwise pass per layer, measured here too.

    python benchmarks/bench_kernels.py [--sizes 2048 8192] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from functools import partial

import jax
import jax.numpy as jnp

from ntk_bayes import stax

# neural-tangents 0.6.5 (jax 0.4.23) on this 2-core machine, after compilation (issue 2).
NEURAL_TANGENTS = {("relu", 2048): 0.95, ("erf-2layer", 2048): 0.33}


def network(phi, depth=3):
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(512, W_std=1.5, b_std=0.05), phi()]
    return stax.serial(*layers, stax.Dense(1, W_std=1.5, b_std=0.05))


@jax.jit
def _kernels(net, x):
    return net.kernel_fn(x, None, ("nngp", "ntk"))


def timeit(fn, repeats):
    """(best, median) seconds after compiling and warming up. Both are printed: on a
    shared VM the spread is wide (each call's fresh output pages fault in: ~1 us each,
    ~8k of them for two 2048^2 float32 outputs)."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def floor_fn(x, depth):
    """The issue's floor: one x @ x.T, then per layer one fused elementwise pass over the
    n x n matrices (a square root, products and sums: the memory traffic of a layer)."""
    g = x @ x.T / x.shape[1]
    q = jnp.diag(g)
    k, t = g, jnp.zeros_like(g)
    for _ in range(depth):
        prod = q[:, None] * q[None, :]
        k, t = 0.5 * k + 0.3 * jnp.sqrt(jnp.abs(prod - k * k)), 0.5 * t + k
        q = 0.8 * q
    return k, t


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192])
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    print(
        f"# {platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, "
        f"jax {jax.__version__}, float32"
    )
    print(
        f"{'network':<11} {'n':>6} {'best s':>8} {'median s':>9} {'floor s':>8} "
        f"{'ratio':>6} {'vs NT':>6}"
    )
    for n in args.sizes:
        x = jax.random.normal(jax.random.PRNGKey(0), (n, 128), dtype=jnp.float32)
        floor = jax.jit(lambda x: floor_fn(x, 3))
        t_floor = timeit(partial(floor, x), args.repeats)[0]
        nets = {
            "relu": network(stax.Relu),
            "erf": network(stax.Erf),
            "erf-2layer": network(stax.Erf, depth=2),
        }
        for name, net in nets.items():
            t, med = timeit(partial(_kernels, net, x), args.repeats)
            nt = NEURAL_TANGENTS.get((name, n))
            speedup = f"{nt / t:>5.1f}x" if nt else f"{'':>6}"
            print(
                f"{name:<11} {n:>6} {t:>8.4f} {med:>9.4f} {t_floor:>8.4f} "
                f"{t / t_floor:>6.2f} {speedup}"
            )


if __name__ == "__main__":
    main()

"""Time analytic NNGP+NTK of fully connected networks (issue 2's benchmark).

Networks: 3 hidden layers Dense(512, W_std=1.5, b_std=0.05) + ReLU (or Erf), Dense(1);
inputs d=128; kernel_fn(x, None, ("nngp", "ntk")) under jax.jit, float32, the network
closed over; "as arg" times the same with the network passed as an argument of the jitted
function. The floor is one x @ x.T plus one fused elementwise pass per layer, measured
here too. Against neural-tangents, side by side: ``bench_vs_nt.py`` (a figure of
neural-tangents from another run is no denominator).

    python benchmarks/bench_kernels.py [--sizes 2048 8192] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time
from functools import partial

import jax
import jax.numpy as jnp

from ntk_bayes import stax


def network(phi, depth=3):
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(512, W_std=1.5, b_std=0.05), phi()]
    return stax.serial(*layers, stax.Dense(1, W_std=1.5, b_std=0.05))


@jax.jit
def _kernels(net, x):
    """The network as an argument of the compiled function: its hyperparameters, Python
    floats, are converted and sent to the device on every call (one transfer each: ~0.3
    ms per call on an H200 for this network's 14, nothing to speak of on a CPU)."""
    return net.kernel_fn(x, None, ("nngp", "ntk"))


def _closed_over(net):
    """The network closed over (its hyperparameters are constants of the program), as
    ``bench_vs_nt.py`` and the floor are timed."""
    kernel_fn = net.kernel_fn
    return jax.jit(lambda x: kernel_fn(x, None, ("nngp", "ntk")))


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


@jax.default_matmul_precision("highest")  # as the kernels use (TF32 on GPUs otherwise)
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
    p.add_argument(
        "--nets", nargs="+", default=["relu", "erf", "erf-2layer"], help="networks to time"
    )
    p.add_argument(
        "--memory",
        action="store_true",
        help="peak memory instead: one call per size and network, no floor; use one size "
        "and one network per process (peak RSS is per process)",
    )
    args = p.parse_args()
    if args.memory:
        return memory(args)
    print(
        f"# {platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, "
        f"jax {jax.__version__}, float32"
    )
    print(
        f"{'network':<11} {'n':>6} {'best s':>8} {'median s':>9} {'floor s':>8} "
        f"{'ratio':>6} {'as arg s':>9}"
    )
    for n in args.sizes:
        x = jax.random.normal(jax.random.PRNGKey(0), (n, 128), dtype=jnp.float32)
        floors = {
            depth: timeit(partial(jax.jit(partial(floor_fn, depth=depth)), x), args.repeats)[0]
            for depth in (2, 3)
        }
        nets = {
            "relu": (network(stax.Relu), 3),
            "erf": (network(stax.Erf), 3),
            "erf-2layer": (network(stax.Erf, depth=2), 2),
        }
        for name, (net, depth) in nets.items():
            if name not in args.nets:
                continue
            t_floor = floors[depth]
            t, med = timeit(partial(_closed_over(net), x), args.repeats)
            t_arg, _ = timeit(partial(_kernels, net, x), args.repeats)
            print(
                f"{name:<11} {n:>6} {t:>8.4f} {med:>9.4f} {t_floor:>8.4f} "
                f"{t / t_floor:>6.2f} {t_arg:>9.4f}"
            )


def memory(args):
    """Peak resident memory of kernel_fn against its own output (issue 2: a few times)."""
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    nets = {"relu": network(stax.Relu), "erf": network(stax.Erf)}
    for n in args.sizes:
        x = jax.random.normal(jax.random.PRNGKey(0), (n, 128), dtype=jnp.float32)
        for name in args.nets:
            t = time.perf_counter()
            out = jax.block_until_ready(_kernels(nets[name.split("-")[0]], x))
            t = time.perf_counter() - t
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            out_mib = sum(a.nbytes for a in out) / 2**20
            print(
                f"{name} n={n}: {t:.1f} s (with compilation); output {out_mib:.0f} MiB, "
                f"peak RSS {peak:.0f} MiB ({base:.0f} MiB before): "
                f"{(peak - base) / out_mib:.2f}x the output"
            )


if __name__ == "__main__":
    main()

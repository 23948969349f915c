"""Time the theory instruments (float32 unless JAX_ENABLE_X64=1).

1. ``empirical NTK``: effective NTK of a 2-hidden-layer Erf MLP on 8 inputs, by width
   (the inner loop of ``finite_width_corrections``), after compilation.
2. ``train``: full-batch GD steps per second, network and linearisation side by side,
   width 1024, 2 hidden layers, 16 points.
3. ``signal``: ``phase_diagram`` of Erf on a 60 x 30 grid, and ``critical_line`` of
   tanh by quadrature (deg 48) at 10 biases, including compilation.

    python benchmarks/bench_theory.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from ntk_bayes import stax
from ntk_bayes.theory import (
    critical_line,
    effective_ntk_fn,
    phase_diagram,
    scaled_mlp,
    train,
)


def timed(fn, repeat=3):
    fn()  # compile
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t)
    return best


def main(quick: bool) -> None:
    x = jax.random.normal(jax.random.key(0), (8, 4))
    print("empirical NTK, 2 hidden layers, 8 inputs:")
    for w in [256, 1024] if quick else [256, 512, 1024, 2048, 4096]:
        m = scaled_mlp(w, 2, stax.Erf(), W_std=1.5, b_std=0.1)
        _, params = m.init_fn(jax.random.key(1), x.shape)
        ntk = effective_ntk_fn(m.apply_fn)
        n_params = sum(p.size for p in jax.tree_util.tree_leaves(params))
        s = timed(lambda ntk=ntk, params=params: ntk(x, None, params))
        print(f"  width {w:>5} ({n_params / 1e6:6.2f} M parameters): {1e3 * s:8.1f} ms")

    xs = jax.random.normal(jax.random.key(2), (16, 4))
    ys = jnp.sin(xs[:, :1])
    m = scaled_mlp(1024, 2, stax.Erf(), W_std=1.5, b_std=0.1)
    _, params = m.init_fn(jax.random.key(3), xs.shape)
    steps = 50 if quick else 200
    run = lambda: (
        train(
            m.apply_fn, params, xs, ys, learning_rate=0.5, steps=steps, record_steps=[0, steps]
        ).loss
    )
    s = timed(run, repeat=1)
    print(f"train (network + linearisation), width 1024: {steps / s:.0f} steps/s")

    t = time.perf_counter()
    pd = phase_diagram(stax.Erf(), np.linspace(0.1, 4, 60), np.linspace(0, 2, 30))
    print(
        f"phase_diagram Erf 60x30: {time.perf_counter() - t:.2f} s "
        f"(critical σ_w at σ_b=0: {pd.critical_W[0]:.6f})"
    )
    t = time.perf_counter()
    critical_line(stax.ElementwiseNumerical(jnp.tanh, deg=48), np.linspace(0, 1, 10))
    print(f"critical_line tanh (quadrature), 10 biases: {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    main(ap.parse_args().quick)

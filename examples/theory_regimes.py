"""Lazy versus rich training, and finite-width corrections of the NTK, against width.

1. Kernel evolution: one-hidden-layer ReLU MLPs trained by full-batch GD on a small
   regression task in the NTK scaling (lazy) and the maximal-update scaling (rich);
   relative change of the effective NTK after training, against width.
2. Finite-width corrections: two-hidden-layer Erf MLPs at initialisation; spread,
   deviation and bias of the empirical NTK around the analytic one, against width,
   with the fitted log-log slope (theory: -1/2 for the spread).

Writes theory_kernel_evolution.png and theory_finite_width.png into --out (default: a new
timestamped directory under ntk_bayes_out/; `--out docs/img` refreshes the docs' figures)
and prints the tables.

    python examples/theory_regimes.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp

from ntk_bayes import stax
from ntk_bayes.theory import (
    finite_width_corrections,
    kernel_evolution,
    plot_finite_width,
    plot_kernel_evolution,
    scaled_mlp,
)


def main(quick: bool, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    widths = [32, 128, 512] if quick else [64, 128, 256, 512, 1024, 2048]
    x = jax.random.normal(jax.random.key(1), (16, 4))
    x = x / jnp.linalg.norm(x, axis=1, keepdims=True) * 2.0
    y = jnp.sin(x @ jax.random.normal(jax.random.key(2), (4, 1)))

    t0 = time.perf_counter()
    evo = kernel_evolution(
        x,
        y,
        widths,
        key=jax.random.key(0),
        steps=50 if quick else 300,
        n_seeds=1 if quick else 3,
        W_std=1.5,
        b_std=0.1,
    )
    t1 = time.perf_counter()
    print(f"kernel evolution ({t1 - t0:.1f} s, learning rate {evo.learning_rate:.3g}):")
    for r in evo.rows():
        print(
            f"  {r['parameterization']:>4} n={r['width']:>5}: change {r['mean']:.4f} "
            f"(sd {r['sd']:.4f}), loss {r['initial_loss']:.3f} -> {r['final_loss']:.4f}"
        )
    for p in ("ntk", "mup"):
        fit = evo.fit(p)
        print(f"  slope {p}: {fit.slope:+.3f} +- {fit.stderr:.3f}")
    plot_kernel_evolution(evo).savefig(out / "theory_kernel_evolution.png", dpi=120)

    fw = finite_width_corrections(
        lambda n: scaled_mlp(n, 2, stax.Erf(), W_std=1.5, b_std=0.1).lazy_net,
        x[:8],
        widths,
        key=jax.random.key(3),
        n_seeds=4 if quick else 16,
    )
    t2 = time.perf_counter()
    print(f"finite-width corrections ({t2 - t1:.1f} s, {fw.n_seeds} networks per width):")
    for r in fw.rows():
        print(
            f"  n={r['width']:>5}: spread {r['spread']:.4f}, deviation "
            f"{r['deviation_mean']:.4f}, bias {r['bias']:.4f} (floor {r['noise_floor']:.4f})"
        )
    for q in ("spread", "deviation"):
        fit = fw.fit(q)
        print(f"  slope {q}: {fit.slope:+.3f} +- {fit.stderr:.3f}")
    plot_finite_width(fw).savefig(out / "theory_finite_width.png", dpi=120)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (CI)")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    ap.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path(f"ntk_bayes_out/theory_regimes-{stamp}"),
        help="figure directory (default: a new timestamped one; docs/img refreshes the docs)",
    )
    a = ap.parse_args()
    main(a.quick, a.out)
    print(f"figures written to {a.out}")

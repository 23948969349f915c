"""Training dynamics: a network against its linearisation, and real GD against the
analytic infinite-width mean.

1. Two-hidden-layer Erf MLPs of widths 64..4096 trained by full-batch GD next to their
   first-order Taylor models (Lee et al. 2019): the RMS gap between the two trajectories,
   relative to the targets, shrinks like width^{-1/2}.
2. The analytic mean μ_t of the GD-trained infinite ensemble
   (``predict.gradient_descent_mse_ensemble``) against centred one-hidden-layer networks
   of widths 64..16384 trained by GD at a small step, as curves over t.

Writes theory_linearization.png and theory_dynamics.png into --out (default: a new
timestamped directory under ntk_bayes_out/; `--out docs/img` refreshes the docs' figures).

    python examples/theory_dynamics.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from ntk_bayes import stax
from ntk_bayes.theory import (
    default_learning_rate,
    dynamics_comparison,
    fit_loglog,
    plot_dynamics,
    scaled_mlp,
    train,
)


def main(quick: bool, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    x = jax.random.normal(jax.random.key(1), (16, 3))
    y = jnp.sin(2 * x[:, :1])
    xt = jax.random.normal(jax.random.key(2), (8, 3))
    make = lambda n: scaled_mlp(n, 2, stax.Erf(), W_std=1.5, b_std=0.1)
    widths = [64, 256, 1024] if quick else [64, 128, 256, 512, 1024, 2048, 4096]
    lr = default_learning_rate(make(64).lazy_net, x)
    steps = 100 if quick else 400

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_loss, ax_gap = fig.subplots(1, 2)
    gaps = []
    for w in widths:
        m = make(w)
        _, params = m.init_fn(jax.random.key(w), x.shape)
        h = train(m.apply_fn, params, x, y, learning_rate=lr, steps=steps, x_test=xt)
        gap = h.trajectory_gap("test")
        gaps.append(gap.max())
        print(
            f"width {w:>5}: loss {h.loss[0]:.3f} -> {h.loss[-1]:.2e} (linearised "
            f"{h.loss_lin[-1]:.2e}), max test gap {gap.max():.4f}, NTK change "
            f"{h.kernel_change[-1]:.4f}"
        )
        t = np.maximum(h.steps, 1)
        ax_loss.plot(t, h.loss, "-", label=f"n={w}")
        ax_gap.plot(t[1:], gap[1:], "-", label=f"n={w}")
    ax_loss.plot(t, h.loss_lin, "k--", label="linearised (widest)")
    ax_loss.set(xscale="log", yscale="log", xlabel="step", ylabel="training loss")
    ax_gap.set(xscale="log", yscale="log", xlabel="step", ylabel="RMS(f - f_lin) on test / RMS(y)")
    ax_loss.legend(fontsize=7)
    ax_gap.legend(fontsize=7)
    fit = fit_loglog(widths, gaps)
    print(f"slope of the max gap against width: {fit.slope:+.3f} +- {fit.stderr:.3f}")
    fig.savefig(out / "theory_linearization.png", dpi=120)

    # Gradient flow vs GD: the analytic mean describes continuous time, so this part uses
    # the default small step (5% of the stable maximum) and one hidden layer, which keeps
    # the many steps cheap at large widths.
    shallow = lambda n: scaled_mlp(n, 1, stax.Erf(), W_std=1.5, b_std=0.1).lazy_net
    r = dynamics_comparison(
        shallow,
        x,
        y,
        xt,
        [64, 256, 1024] if quick else [64, 256, 1024, 4096, 16384],
        steps=np.unique(np.geomspace(1, 200 if quick else 2000, 12).astype(int)).tolist(),
        key=jax.random.key(0),
        n_nets=2 if quick else 4,
    )
    err = r.error("test").max(axis=1)
    print(
        f"learning rate {r.learning_rate:.3g}; discretisation floor "
        f"{r.discretization_gap.max():.4f}"
    )
    for w, e in zip(r.widths, err, strict=True):
        print(f"width {w:>5}: max RMS gap to the analytic mean on test {e:.4f}")
    print(f"slope: {r.fit().slope:+.3f}")
    plot_dynamics(r).savefig(out / "theory_dynamics.png", dpi=120)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (CI)")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    ap.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path(f"ntk_bayes_out/theory_dynamics-{stamp}"),
        help="figure directory (default: a new timestamped one; docs/img refreshes the docs)",
    )
    a = ap.parse_args()
    main(a.quick, a.out)
    print(f"figures written to {a.out}")

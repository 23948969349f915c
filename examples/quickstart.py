"""Quickstart: an infinite-width ReLU network as a GP prior, fitted by type-II maximum
likelihood, on the embedded 1-D toy data with a gap.

Builds the network, computes its NNGP and NTK kernels, fits W_std, b_std and the noise
by maximising the log marginal likelihood with optax, and compares the NNGP and the
NTK-GP posteriors on held-out points and inside the gap (where uncertainty must grow).
Writes a plot of both predictive bands to --out (default: quickstart.png).

    python examples/quickstart.py [--out quickstart.png]
    python examples/quickstart.py --quick    # 40 optimiser steps instead of 300 (CI)
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ntk_bayes as nb
from ntk_bayes import datasets, stax


def network(w, b):
    return stax.serial(
        stax.Dense(512, W_std=w, b_std=b), stax.Relu(),
        stax.Dense(512, W_std=w, b_std=b), stax.Relu(),
        stax.Dense(1, W_std=w, b_std=b),
    )  # fmt: skip


def fit(X, y, kernel, steps=300):
    """Type-II maximum likelihood over log W_std, log b_std, log noise."""

    def loss(p):
        gp = nb.GaussianProcess(network(jnp.exp(p[0]), jnp.exp(p[1])), X, kernel=kernel,
                                noise=jnp.exp(p[2]))  # fmt: skip
        return -gp.log_prob(y) / len(y)

    p = jnp.log(jnp.array([1.5, 0.1, 0.1]))
    opt = optax.adam(0.03)
    state = opt.init(p)
    step = jax.jit(jax.value_and_grad(loss))
    for _ in range(steps):
        value, g = step(p)
        updates, state = opt.update(g, state)
        p = optax.apply_updates(p, updates)
    return jnp.exp(p), float(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    parser.add_argument("--out", default="quickstart.png")
    parser.add_argument("--quick", action="store_true", help="40 optimiser steps (CI)")
    args = parser.parse_args()
    steps = 40 if args.quick else 300
    ds = datasets.load("toy1d", seed=0)
    X, y, Xt, yt = (jnp.asarray(a) for a in (ds.X_train, ds.y_train, ds.X_test, ds.y_test))
    grid = jnp.linspace(X.min() - 0.5, X.max() + 0.5, 200)[:, None]
    gap = (np.asarray(ds.extra["gap"]) - np.ravel(ds.x_mean)) / np.ravel(ds.x_std)
    in_gap = (grid[:, 0] > gap[0]) & (grid[:, 0] < gap[1])

    print(f"{ds.description}\n{len(X)} training and {len(Xt)} test points")
    print(f"{'kernel':<6} {'W_std':>6} {'b_std':>6} {'noise':>7} {'test RMSE':>10} "
          f"{'test NLPD':>10} {'95% cov.':>9} {'sd gap/data':>12}")  # fmt: skip
    bands = {}
    for kernel in ("nngp", "ntk"):
        (w, b, noise), _ = fit(X, y, kernel, steps)
        gp = nb.GaussianProcess(network(w, b), X, kernel=kernel, noise=noise)
        pred = gp.condition(y, Xt, include_noise=True)
        mu, var = pred.mean, pred.variance
        rmse = float(jnp.sqrt(jnp.mean((mu - yt) ** 2)))
        nlpd = float(jnp.mean(0.5 * jnp.log(2 * math.pi * var) + 0.5 * (yt - mu) ** 2 / var))
        cover = float(jnp.mean(jnp.abs(yt - mu) <= 1.96 * jnp.sqrt(var)))
        band = gp.condition(y, grid)
        sd = jnp.sqrt(band.variance)
        ratio = float(sd[in_gap].mean() / sd[~in_gap].mean())
        bands[kernel] = (band.mean, sd)
        print(f"{kernel:<6} {float(w):>6.3f} {float(b):>6.3f} {float(noise):>7.4f} {rmse:>10.3f} "
              f"{nlpd:>10.3f} {cover:>9.2f} {ratio:>12.2f}")  # fmt: skip

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for (kernel, (mu, sd)), color in zip(bands.items(), ("C0", "C1"), strict=True):
        ax.plot(grid[:, 0], mu, color=color, label=f"{kernel.upper()} posterior mean")
        ax.fill_between(grid[:, 0], mu - 2 * sd, mu + 2 * sd, color=color, alpha=0.2)
    ax.scatter(X[:, 0], y, s=8, color="k", label="train")
    ax.scatter(Xt[:, 0], yt, s=8, color="r", marker="x", label="test")
    ax.axvspan(*gap, color="grey", alpha=0.1, label="gap")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Infinite-width ReLU network: NNGP and NTK-GP, ±2 sd")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Inducing-point posteriors of an NNGP: SGPR regression and SVGP classification.

1. Regression on N noisy points in 8-D with the NNGP of a ReLU network: SGPR with M
   inducing points placed by k-means++, their locations and the noise fitted by the
   Titsias bound, compared with the exact GP on a subset where that is affordable.
2. Binary classification with an SVGP (Bernoulli likelihood), trained on minibatches.

    python examples/sparse_gp.py            # N = 5,000 (seconds)
    python examples/sparse_gp.py --n 100000 --m 256
    python examples/sparse_gp.py --quick      # N = 512, M = 16, 500 test points (CI)
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntk_bayes import gp, stax


def make_data(n, d=8, seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, d))
    f = np.tanh(1.5 * x[:, 0]) + 0.5 * x[:, 1] * np.tanh(x[:, 2])
    return jnp.asarray(x), jnp.asarray(f + 0.2 * r.normal(size=n)), f


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=5_000)
    p.add_argument("--m", type=int, default=64)
    p.add_argument("--iters", type=int, default=60)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--quick", action="store_true", help="N = 512, M = 16, 20 steps (CI)")
    a = p.parse_args()
    if a.quick:
        a.n, a.m, a.iters, a.quiet = 512, 16, 20, True

    net = stax.serial(
        stax.Dense(512, W_std=1.5, b_std=0.1),
        stax.Relu(),
        stax.Dense(512, W_std=1.5, b_std=0.1),
        stax.Relu(),
        stax.Dense(1, W_std=1.5, b_std=0.1),
    )
    x, y, f = make_data(a.n)
    xt, yt, ft = make_data(500 if a.quick else 2_000, seed=1)

    # -- SGPR ---------------------------------------------------------------------------
    t = time.perf_counter()
    Z = gp.kmeans_pp(jax.random.PRNGKey(0), x, a.m)
    model = gp.SGPR(net, x, y, Z, noise=0.2)
    # Z and the noise by the Titsias bound; the network's W_std/b_std stay as given.
    model, res = gp.fit_sgpr(
        model, optimize_kernel=False, optimizer=optax.adam(0.05), max_iters=a.iters, quiet=a.quiet
    )
    mean, var = model.predict(xt)
    rmse = float(jnp.sqrt(jnp.mean((mean - ft) ** 2)))
    z = (yt - mean) / jnp.sqrt(var + model.noise)
    # tr(K - Q)/N: prior variance the inducing points miss; the bound pushes it into the noise
    missed = float((model.stats["kff"] - jnp.trace(model.stats["AAT"])) / a.n)
    print(
        f"SGPR  N={a.n} M={a.m}: {time.perf_counter() - t:.1f}s, {res.num_steps} steps, "
        f"noise {float(model.noise):.3f} (true 0.04; Nystrom residual tr(K-Q)/N {missed:.3f}), "
        f"test RMSE(f) {rmse:.3f}, z-score sd {float(jnp.std(z)):.2f} (1 if calibrated; "
        "below 1 while the residual is large: raise --m)"
    )

    sub = min(a.n, 2_000)
    exact = gp.ExactGP(net, x[:sub], y[:sub], noise=model.noise)
    em, _ = exact.predict(xt)
    print(
        f"Exact GP on {sub} points: test RMSE(f) {float(jnp.sqrt(jnp.mean((em - ft) ** 2))):.3f};"
        f" mean LOO log predictive {float(jnp.mean(exact.loo_log_predictive())):.3f}"
    )

    # -- SVGP classification -----------------------------------------------------------
    labels = (y > 0).astype(x.dtype)
    t = time.perf_counter()
    clf = gp.SVGP(net, Z, gp.Bernoulli(), num_data=a.n)
    clf, params, res = gp.fit_svgp(
        clf,
        None,
        x,
        labels,
        key=jax.random.PRNGKey(2),
        batch_size=min(512, a.n),
        num_epochs=10,
        optimizer=optax.adam(0.02),
        quiet=a.quiet,
    )
    prob, _ = clf.predict_y(params, xt)
    acc = float(jnp.mean((prob > 0.5) == (yt > 0)))
    nll = -float(jnp.mean(clf.predict_log_density(params, xt, (yt > 0).astype(x.dtype))))
    print(
        f"SVGP  N={a.n} M={a.m}: {time.perf_counter() - t:.1f}s, {res.num_steps} steps, "
        f"test accuracy {acc:.3f}, test NLL {nll:.3f}"
    )


if __name__ == "__main__":
    main()

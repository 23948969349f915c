"""GP engine costs (issue 4): exact overhead, SGPR scaling in N, SVGP time per epoch.

1. Exact: ``ExactGP(net, X, y, noise).predict(X_test)`` with a 2-hidden-layer ReLU NNGP
   on N points against the bare parts it cannot avoid, timed in the same run: the
   kernel matrices (train-train, test-train, test diagonal), one Cholesky and the
   triangular solves. Target ratio <= 1.3.
2. SGPR: M inducing points (k-means++), D = 8; fit (the collapsed bound's statistics)
   and predict on 10,000 test points for N in --sgpr-n. Target: N = 100,000 in < 60 s
   and time linear in N.
3. SVGP: Bernoulli likelihood on N points, minibatches of 1,024, M = 128 inducing
   points; time per epoch (steady state) and peak resident memory.

All timings are warm (compilation excluded) minima over --repeats runs, float32 unless
JAX_ENABLE_X64=1.

    python benchmarks/bench_gp.py            # full sizes (a few minutes on 2 cores)
    python benchmarks/bench_gp.py --quick    # small sizes, seconds
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import optax

from ntk_bayes import gp, stax


def relu_net():
    return stax.serial(
        stax.Dense(512, W_std=1.5, b_std=0.1),
        stax.Relu(),
        stax.Dense(512, W_std=1.5, b_std=0.1),
        stax.Relu(),
        stax.Dense(1, W_std=1.5, b_std=0.1),
    )


def data(n, d=8, seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, d)).astype(np.float32)
    y = np.sin(x[:, 0]) + 0.5 * np.tanh(x[:, 1]) + 0.1 * r.normal(size=n)
    dtype = jnp.result_type(float)
    return jnp.asarray(x, dtype), jnp.asarray(y, dtype)


def best_of(fn, repeats):
    jax.block_until_ready(fn())  # warm-up: compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times)


def bench_exact(n, n_test, repeats):
    net = relu_net()
    x, y = data(n)
    xs, _ = data(n_test, seed=1)
    noise = 0.01
    k = gp.as_kernel(net)

    t_kernel = best_of(lambda: (net.kernel_fn(x, None, "nngp"), k(x, xs), k.diag(xs)), repeats)
    K = net.kernel_fn(x, None, "nngp") + noise * jnp.eye(n, dtype=x.dtype)
    Kxs = k(x, xs)
    chol = jax.jit(jnp.linalg.cholesky)
    t_chol = best_of(lambda: chol(K), repeats)
    L = chol(K)

    @jax.jit
    def solves(L, y, Kxs):
        a = jsl.solve_triangular(L, y, lower=True)
        a = jsl.solve_triangular(L, a, lower=True, trans=1)
        return a, jsl.solve_triangular(L, Kxs, lower=True)

    t_solve = best_of(lambda: solves(L, y, Kxs), repeats)

    def ours():
        return gp.ExactGP(net, x, y, noise).predict(xs)

    t_ours = best_of(ours, repeats)
    base = t_kernel + t_chol + t_solve
    print(
        f"exact  N={n:>6} test={n_test}: kernels {t_kernel:.3f}s + Cholesky {t_chol:.3f}s + "
        f"solves {t_solve:.3f}s = {base:.3f}s; ExactGP fit+predict {t_ours:.3f}s "
        f"-> ratio {t_ours / base:.2f} (target <= 1.3)"
    )


def bench_sgpr(ns, m, n_test, repeats):
    net = relu_net()
    xs, _ = data(n_test, seed=1)
    rows = []
    for n in ns:
        x, y = data(n)
        t = time.perf_counter()
        Z = jax.block_until_ready(gp.kmeans_pp(jax.random.PRNGKey(0), x, m))
        t_init = time.perf_counter() - t

        def fit(x=x, y=y, Z=Z):
            model = gp.SGPR(net, x, y, Z, 0.01)
            return model, model.elbo()

        t_fit = best_of(fit, repeats)
        model = fit()[0]
        t_pred = best_of(lambda model=model: model.predict(xs), repeats)
        rows.append((n, t_fit))
        print(
            f"sgpr   N={n:>7} M={m}: k-means++ init {t_init:.2f}s (incl. compile), "
            f"fit+ELBO {t_fit:.2f}s, predict({n_test}) {t_pred:.2f}s, "
            f"total {t_init + t_fit + t_pred:.2f}s"
        )
    if len(rows) > 1:
        n_arr, t_arr = np.array([r[0] for r in rows], float), np.array([r[1] for r in rows])
        slope, icpt = np.polyfit(n_arr, t_arr, 1)
        resid = t_arr - (slope * n_arr + icpt)
        r2 = 1 - np.sum(resid**2) / np.sum((t_arr - t_arr.mean()) ** 2)
        print(
            f"sgpr   fit time ~ {icpt:.2f}s + {1e6 * slope:.1f}us x N (linear fit R^2 {r2:.3f}); "
            f"N={int(n_arr[-1])}/N={int(n_arr[0])}: time x{t_arr[-1] / t_arr[0]:.2f}"
        )


def bench_svgp(n, m, batch, epochs):
    x, y = data(n)
    labels = (y > 0).astype(x.dtype)
    Z = gp.kmeans_pp(jax.random.PRNGKey(0), x[:50_000], m)
    model = gp.SVGP(relu_net(), Z, gp.Bernoulli(), num_data=n)
    t = time.perf_counter()
    model, params, res = gp.fit_svgp(
        model,
        None,
        x,
        labels,
        key=jax.random.PRNGKey(1),
        batch_size=batch,
        num_epochs=epochs,
        optimizer=optax.adam(0.01),
        tol=-np.inf,  # run every epoch: this measures time, not convergence
        quiet=True,
    )
    total = time.perf_counter() - t
    steady = res.round_times[1:] if len(res.round_times) > 1 else res.round_times
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    p, _ = model.predict_y(params, x[:10_000])
    acc = float(jnp.mean((p > 0.5) == (labels[:10_000] > 0.5)))
    print(
        f"svgp   N={n:>7} M={m} batch={batch}: {n // batch} steps/epoch, "
        f"{np.min(steady):.2f}s per epoch (first, with compile: {res.round_times[0]:.2f}s; "
        f"{epochs} epochs {total:.1f}s), peak RSS {rss:.0f} MiB, train acc {acc:.3f}"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes for CI")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", choices=("exact", "sgpr", "svgp"), default=None)
    a = p.parse_args()
    dtype = jnp.result_type(float)
    print(f"ntk_bayes GP benchmark: {jax.devices()[0].platform}, {dtype}, quick={a.quick}")
    if a.only in (None, "exact"):
        bench_exact(512 if a.quick else 4096, 128 if a.quick else 1024, a.repeats)
    if a.only in (None, "sgpr"):
        ns = (2_500, 5_000, 10_000) if a.quick else (25_000, 50_000, 100_000)
        bench_sgpr(ns, 64 if a.quick else 256, 1_000 if a.quick else 10_000, a.repeats)
    if a.only in (None, "svgp"):
        if a.quick:
            bench_svgp(50_000, 32, 1024, 3)
        else:
            bench_svgp(1_000_000, 128, 1024, 3)


if __name__ == "__main__":
    main()

"""A finite Bayesian network by NUTS against its infinite-width limit, the NNGP.

On the 1-D toy data with a gap, both models share one architecture and one noise
level; the script prints held-out calibration metrics for both, how far the BNN's
predictive is from the NNGP's on a grid, and the time each step took. With ``--plot``
it writes the predictive bands to a PNG.

    python examples/bnn_vs_nngp.py                      # width 8, 8 chains x 500 draws
    python examples/bnn_vs_nngp.py --quick              # width 4, 2 chains x 100 draws (CI)
    python examples/bnn_vs_nngp.py --width 64 --plot bands.png
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from ntk_bayes import bnn, datasets, stax
from ntk_bayes import diagnostics as dg
from ntk_bayes.gp import cho_solve, psd_cholesky


def nngp_posterior(net, X, y, X_star, noise):
    """Exact GP posterior of the latent function: mean and variance at ``X_star``
    (``noise`` is the noise variance)."""
    kxx = net.kernel_fn(X, X, "nngp")
    ksx = net.kernel_fn(X_star, X, "nngp")
    kss = net.kernel_fn(X_star, X_star, "nngp")
    L, _ = psd_cholesky(kxx + noise * jnp.eye(len(X)))
    mean = ksx @ cho_solve(L, jnp.asarray(y))
    var = jnp.diag(kss) - jnp.sum(ksx * cho_solve(L, ksx.T).T, axis=1)
    return np.asarray(mean, np.float64), np.maximum(np.asarray(var, np.float64), 0.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=8, help="hidden width of the finite BNN")
    p.add_argument("--depth", type=int, default=1, help="number of hidden layers")
    p.add_argument("--W-std", type=float, default=3.0)
    p.add_argument("--b-std", type=float, default=1.5)
    p.add_argument("--num-warmup", type=int, default=bnn.DEFAULT_NUTS["num_warmup"])
    p.add_argument("--num-samples", type=int, default=bnn.DEFAULT_NUTS["num_samples"])
    p.add_argument("--chains", type=int, default=bnn.DEFAULT_NUTS["num_chains"])
    p.add_argument("--max-tree-depth", type=int, default=bnn.DEFAULT_NUTS["max_tree_depth"])
    p.add_argument("--noise", type=float, default=0.09, help="noise VARIANCE (standardised units)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny run (CI): width 4, 100 draws")
    p.add_argument("--plot", default=None, help="write the predictive bands to this PNG")
    args = p.parse_args(argv)
    if args.quick:
        args.width, args.num_warmup, args.num_samples, args.max_tree_depth = 4, 150, 100, 6
        args.chains = 2

    ds = datasets.load("toy1d", seed=args.seed, n=80)
    layers = []
    for _ in range(args.depth):
        layers += [stax.Dense(512, W_std=args.W_std, b_std=args.b_std), stax.Relu()]
    net = stax.serial(*layers, stax.Dense(1, W_std=args.W_std, b_std=args.b_std))
    x_grid = np.linspace(ds.X_test.min() - 0.3, ds.X_test.max() + 0.3, 100)[:, None]
    print(ds.summary())

    t0 = time.perf_counter()
    mean, var = nngp_posterior(net, ds.X_train, ds.y_train, ds.X_test, args.noise)
    gm, gv = nngp_posterior(net, ds.X_train, ds.y_train, x_grid, args.noise)
    t_gp = time.perf_counter() - t0
    gp_test = dg.GaussianPredictive(mean, np.sqrt(var + args.noise))
    gp_grid = dg.GaussianPredictive(gm, np.sqrt(gv + args.noise))

    model = bnn.BNN(net, width=args.width, noise=args.noise)
    post = model.fit_nuts(
        ds.X_train,
        ds.y_train,
        X_eval=ds.X_test,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.chains,
        max_tree_depth=args.max_tree_depth,
        seed=args.seed,
        progress_bar=not args.quick,
    )
    t0 = time.perf_counter()
    bnn_test = post.predictive(ds.X_test)
    bnn_grid = post.predictive(x_grid)
    post.to_inference_data(ds.X_test, ds.y_test)
    t_post = time.perf_counter() - t0
    conv = post.convergence

    print(f"\n{'model':<14}{'RMSE':>8}{'NLPD':>8}{'CRPS':>8}{'cov90':>8}{'MCE':>8}  flags")
    for name, pred in (("NNGP (exact)", gp_test), (f"BNN w={args.width}", bnn_test)):
        m = dg.regression_metrics(ds.y_test, pred, scale=ds.y_std)
        flags = ",".join(dg.calibration_check(ds.y_test, pred).flags) or "calibrated"
        print(
            f"{name:<14}{m['rmse']:8.3f}{m['nlpd']:8.3f}{m['crps']:8.3f}"
            f"{m['coverage_90']:8.2f}{m['mean_coverage_error']:8.3f}  {flags}"
        )
    d = dg.predictive_distance(bnn_grid, gp_grid)
    print(
        f"\nBNN vs NNGP on the grid: mean |Δ mean| = {d['mean_abs_diff_mean']:.3f}, "
        f"mean |Δ log variance| = {d['mean_abs_diff_log_var']:.3f} (standardised units)"
    )
    print(
        f"R-hat(f_test) max {conv.max_rhat:.3f}, ESS bulk min {conv.min_ess_bulk:.0f}, "
        f"{'converged' if conv.converged else 'NOT converged: ' + '; '.join(conv.reasons())}\n"
        f"times (this machine): NNGP posterior {t_gp:.2f} s, NUTS {post.info['time_s']:.1f} s, "
        f"predictive + ArviZ {t_post:.2f} s"
    )
    if args.quick:  # otherwise fit_nuts has printed it already
        print(post.sampler_report())

    if args.plot:
        fig = dg.plot_predictive_bands(
            ds.unstandardize_x(ds.X_train),
            ds.unstandardize_y(ds.y_train),
            ds.unstandardize_x(x_grid)[:, 0],
            {
                "NNGP": dg.GaussianPredictive(
                    ds.unstandardize_y(gp_grid.mean), ds.y_std * gp_grid.std
                ),
                f"BNN width {args.width}": dg.SamplePredictive(
                    ds.unstandardize_y(bnn_grid.samples), ds.y_std * bnn_grid.noise_std
                ),
            },
            x_test=ds.unstandardize_x(ds.X_test),
            y_test=ds.unstandardize_y(ds.y_test),
            gap=ds.extra["gap"],
        )
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    jax.config.update("jax_platform_name", "cpu")
    raise SystemExit(main())

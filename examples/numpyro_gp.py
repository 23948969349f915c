"""NumPyro's GP example (examples/gp.py in the NumPyro repository) with an NNGP prior.

The data and the workflow are NumPyro's: 25 noisy points of
y = x + 0.2 x³ + 0.5 (0.5 + x)² sin(4x) on [-1, 1], standardised; NUTS over the
hyperparameters; predictions at 400 test points. NumPyro's RBF kernel (variance,
length scale) becomes the NNGP of a two-hidden-layer ReLU network (weight and bias
scales W_std, b_std), and the hand-written Cholesky algebra becomes
``nb.GaussianProcess`` and ``nb.priors.posterior_predictive``. Chains run in
parallel, one per (forced) host device, as NumPyro's example does, through
``nb.priors.sharded_chains``: its program is found in JAX's compilation cache by the next
run, which NumPyro's ``"parallel"`` is not (``--chain-method parallel`` for that).

    python examples/numpyro_gp.py [--quick] [--num-chains 2] [--num-samples 1000] [--plot out.png]
"""

from __future__ import annotations

import argparse
import os
import time


def get_data(N=25, sigma_obs=0.15, N_test=400):
    """NumPyro's ``get_data`` (same seed and formula)."""
    import numpy as np

    rng = np.random.RandomState(0)  # NumPyro's np.random.seed(0) stream, same draws
    X = np.linspace(-1, 1, N)
    Y = X + 0.2 * np.power(X, 3.0) + 0.5 * np.power(0.5 + X, 2.0) * np.sin(4.0 * X)
    Y += sigma_obs * rng.randn(N)
    Y -= np.mean(Y)
    Y /= np.std(Y)
    X_test = np.linspace(-1.3, 1.3, N_test)
    return X[:, None].astype(np.float32), Y.astype(np.float32), X_test[:, None].astype(np.float32)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-n", "--num-samples", type=int, default=1000)
    p.add_argument("--num-warmup", type=int, default=1000)
    p.add_argument("--num-chains", type=int, default=2)
    p.add_argument(
        "--chain-method",
        default="sharded",
        choices=("sharded", "parallel", "vectorized", "sequential"),
        help="sharded: nb.priors.sharded_chains, NumPyro's parallel with a named map axis\n"
        "(compiled once per machine; NumPyro's own parallel compiles in every run)",
    )
    p.add_argument("--num-data", type=int, default=25)
    p.add_argument("--plot", default=None, help="save the predictive band to this PNG")
    p.add_argument("--quick", action="store_true", help="100+100 draws, 50 test points")
    args = p.parse_args(argv)
    if args.quick:
        args.num_samples = args.num_warmup = 100

    # NumPyro's way to get one CPU device per chain; must precede JAX's start.
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import numpyro

    numpyro.set_host_device_count(args.num_chains)
    import jax
    import jax.numpy as jnp
    import numpy as np
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS, init_to_median

    import ntk_bayes as nb
    from ntk_bayes import stax

    def net(w, b):
        return stax.serial(
            stax.Dense(512, W_std=w, b_std=b), stax.Relu(),
            stax.Dense(512, W_std=w, b_std=b), stax.Relu(),
            stax.Dense(1, W_std=w, b_std=b),
        )  # fmt: skip

    def model(X, Y=None):
        w = numpyro.sample("W_std", dist.LogNormal(0.0, 1.0))
        b = numpyro.sample("b_std", dist.LogNormal(-1.0, 1.0))
        noise = numpyro.sample("noise", dist.LogNormal(-2.0, 1.0))  # a variance
        numpyro.sample("Y", nb.GaussianProcess(net(w, b), X, noise=noise), obs=Y)

    X, Y, X_test = get_data(N=args.num_data, N_test=50 if args.quick else 400)
    mcmc = MCMC(
        NUTS(model, init_strategy=init_to_median),
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        chain_method=(
            nb.priors.sharded_chains if args.chain_method == "sharded" else args.chain_method
        ),
        progress_bar=False,
    )
    t0 = time.perf_counter()
    mcmc.run(jax.random.key(0), X, Y)
    print(f"NUTS ({args.num_chains} chains, {args.chain_method}): {time.perf_counter() - t0:.1f} s")
    mcmc.print_summary()
    draws = nb.priors.posterior_predictive(
        model, mcmc, jax.random.key(1), X_test, X, Y, site="Y", include_noise=True, diag=True
    )
    draws = np.asarray(draws).reshape(-1, X_test.shape[0])
    lo, mean, hi = np.percentile(draws, [5.0, 50.0, 95.0], axis=0)
    print(f"predictive at x=0: median {mean[len(mean) // 2]:.3f}, 90% [{lo[len(lo) // 2]:.3f}, "
          f"{hi[len(hi) // 2]:.3f}]")  # fmt: skip
    loo = nb.diagnostics.loo(nb.diagnostics.from_numpyro(mcmc), var_name="Y")
    print(
        f"PSIS-LOO over {len(Y)} points: elpd {loo['elpd']:.2f} "
        f"(max Pareto k {loo['max_pareto_k']:.2f})"
    )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 6))
        ax.plot(X[:, 0], Y, "kx")
        ax.fill_between(X_test[:, 0], lo, hi, color="lightblue")
        ax.plot(X_test[:, 0], mean, "blue", ls="solid", lw=2.0)
        ax.set(xlabel="X", ylabel="Y", title="Mean predictions with 90% CI (NNGP prior)")
        fig.savefig(args.plot)
    return jnp.asarray(mean)


if __name__ == "__main__":
    main()

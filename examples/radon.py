"""Hierarchical NNGP regression on the Minnesota radon survey (919 homes, 85 counties).

Each county c has its own function of the house-level covariates x = (floor, log uranium):
f_c ~ GP(0, Σ_c), Σ_c the NNGP of a one-hidden-layer ReLU network whose weight scale
W_std[c] comes from a shared log-normal hyperprior, log W_std[c] ~ N(μ, τ) (non-centred);
the bias scale, the mean level and the noise variance are shared:

    log_radon[i] ~ N(m + f_{c(i)}(x_i), σ²)

Counties are batched GaussianProcess sites: ragged counties (1 to 116 homes) are padded
and masked (nb.priors.pad_groups) within a few size buckets (up to 4, 8, ..., 128 homes),
so each bucket is one GP with batch_shape (counties in bucket,) and vmapped kernels.
NUTS runs 4 chains; the script prints the time, the hyperparameters and PSIS-LOO
over the 919 homes (N-point LOO from nb.diagnostics.from_numpyro).

    python examples/radon.py [--quick] [--chains 4] [--samples 500] [--method vectorized]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

import ntk_bayes as nb
from ntk_bayes import datasets, stax


def county_net(w, b):
    return stax.serial(
        stax.Dense(512, W_std=w, b_std=b), stax.Relu(), stax.Dense(1, W_std=w, b_std=b)
    )


def model(buckets, num_counties, y=None):
    """buckets: ``[(counties, X_pad, mask)]``, counties padded per size bucket;
    y: the matching padded log radon per bucket (or None)."""
    w = nb.priors.group_log_normal("W_std", num_counties, loc=0.0, loc_scale=0.5, tau_scale=0.3)
    b = numpyro.sample("b_std", dist.HalfNormal(1.0))
    level = numpyro.sample("level", dist.Normal(1.0, 1.0))
    sigma = numpyro.sample("noise_std", dist.HalfNormal(1.0))
    for i, (counties, X, mask) in enumerate(buckets):
        nets = jax.vmap(lambda wc: county_net(wc, b))(w[counties])  # one net per county
        gp = nb.GaussianProcess(nets, X, noise=sigma**2, mean=level, point_mask=mask)
        numpyro.sample(f"y_{i}", gp, obs=None if y is None else y[i])


def load(max_counties=None, edges=(4, 8, 16, 32, 64, 128)):
    """Counties grouped by size (at most ``edges[k]`` homes) and padded within a bucket:
    one padded batch of 85 x 116 would cost 85 Choleskys of 116 x 116, the buckets
    about as much as the largest few counties alone."""
    d = datasets.load_radon()
    keep = np.ones_like(d.county, bool) if max_counties is None else d.county < max_counties
    county, X = d.county[keep], np.stack([d.floor, d.log_uranium], axis=1)[keep]
    y, G = d.log_radon[keep], int(county.max()) + 1
    counts = np.bincount(county, minlength=G)
    buckets, ys = [], []
    for lo, hi in zip((0, *edges[:-1]), edges, strict=True):
        members = np.flatnonzero((counts > lo) & (counts <= hi))
        if members.size == 0:
            continue
        local = np.full(G, -1)
        local[members] = np.arange(members.size)
        rows = local[county] >= 0
        Xp, yp, mask = nb.priors.pad_groups(local[county[rows]], X[rows], y[rows])
        buckets.append((jnp.asarray(members), Xp, mask))
        ys.append(yp)
    return buckets, ys, G


def run(quick=False, chains=4, samples=500, method="vectorized", seed=0):
    # --quick: 12 counties in two size buckets (each bucket is one more program to compile)
    buckets, ys, G = load(**({"max_counties": 12, "edges": (16, 64)} if quick else {}))
    warmup = samples = 30 if quick else samples
    # --quick is a smoke run: trees of at most 2^5 leapfrog steps
    kernel = NUTS(model, target_accept_prob=0.85, max_tree_depth=5 if quick else 10)
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=samples, num_chains=chains,
                chain_method=method, progress_bar=False)  # fmt: skip
    t0 = time.perf_counter()
    mcmc.run(jax.random.key(seed), buckets, G, y=ys, extra_fields=("diverging",))
    jax.block_until_ready(mcmc.get_samples())
    seconds = time.perf_counter() - t0
    return mcmc, seconds, sum(int(jnp.sum(m)) for _, _, m in buckets), len(buckets)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="12 counties in 2 size buckets, 30+30 draws, tree depth <= 5",
    )
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument(
        "--method", default="vectorized", choices=("vectorized", "parallel", "sequential")
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    mcmc, seconds, n, nb_sites = run(args.quick, args.chains, args.samples, args.method, args.seed)
    div = int(mcmc.get_extra_fields()["diverging"].sum())
    print(
        f"NUTS: {args.chains} chains ({args.method}), {n} homes, {seconds:.1f} s, {div} divergences"
    )
    idata = nb.diagnostics.from_numpyro(mcmc)
    names = ["W_std_mu", "W_std_tau", "b_std", "level", "noise_std"]
    print(nb.diagnostics.summary(idata, var_names=names))
    # PSIS-LOO is a sum over points, so the size buckets' sites add up
    parts = [nb.diagnostics.loo(idata, var_name=f"y_{i}") for i in range(nb_sites)]
    elpd = sum(p["elpd"] for p in parts)
    bad = sum(p["n_bad_k"] for p in parts)
    print(f"PSIS-LOO over {n} homes: elpd {elpd:.1f}, {bad} points with Pareto k > 0.7")


if __name__ == "__main__":
    main()

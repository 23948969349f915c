"""Hierarchical NNGP regression on the Minnesota radon survey (919 homes, 85 counties).

Each county c has its own function of the house-level covariates x = (floor, log uranium):
f_c ~ GP(0, Σ_c), Σ_c the NNGP of a one-hidden-layer ReLU network whose weight scale
W_std[c] comes from a shared log-normal hyperprior, log W_std[c] ~ N(μ, τ) (non-centred);
the bias scale, the mean level and the noise variance are shared:

    log_radon[i] ~ N(m + f_{c(i)}(x_i), σ²)

The 85 counties are ONE batched GaussianProcess (batch_shape (85,)): ragged counties
(1 to 116 homes) are padded to 116 and masked, the kernels vmapped over counties.
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


def model(X, mask, y=None):
    """X: (G, n, 2) padded county inputs, mask: (G, n), y: (G, n) padded log radon."""
    groups = X.shape[0]
    w = nb.priors.group_log_normal("W_std", groups, loc=0.0, loc_scale=0.5, tau_scale=0.3)
    b = numpyro.sample("b_std", dist.HalfNormal(1.0))
    level = numpyro.sample("level", dist.Normal(1.0, 1.0))
    sigma = numpyro.sample("noise_std", dist.HalfNormal(1.0))
    nets = jax.vmap(lambda wc: county_net(wc, b))(w)  # hyperparameters (G,): one net per county
    gp = nb.GaussianProcess(nets, X, noise=sigma**2, mean=level, mask=mask)
    numpyro.sample("y", gp, obs=y)


def load(max_counties=None):
    d = datasets.load_radon()
    keep = np.ones_like(d.county, bool) if max_counties is None else d.county < max_counties
    X = np.stack([d.floor, d.log_uranium], axis=1)[keep]
    X_pad, y_pad, mask = nb.priors.pad_groups(d.county[keep], X, d.log_radon[keep])
    return X_pad, y_pad, mask


def run(quick=False, chains=4, samples=500, method="vectorized", seed=0):
    X, y, mask = load(max_counties=12 if quick else None)
    warmup = samples = 30 if quick else samples
    kernel = NUTS(model, target_accept_prob=0.85)
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=samples, num_chains=chains,
                chain_method=method, progress_bar=False)  # fmt: skip
    t0 = time.perf_counter()
    mcmc.run(jax.random.key(seed), X, mask, y=y, extra_fields=("diverging",))
    jax.block_until_ready(mcmc.get_samples())
    seconds = time.perf_counter() - t0
    return mcmc, seconds, int(jnp.sum(mask))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="12 counties, 30+30 draws")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument(
        "--method", default="vectorized", choices=("vectorized", "parallel", "sequential")
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    mcmc, seconds, n = run(args.quick, args.chains, args.samples, args.method, args.seed)
    div = int(mcmc.get_extra_fields()["diverging"].sum())
    print(
        f"NUTS: {args.chains} chains ({args.method}), {n} homes, {seconds:.1f} s, {div} divergences"
    )
    idata = nb.diagnostics.from_numpyro(mcmc)
    print(
        nb.diagnostics.summary(
            idata, var_names=["W_std_mu", "W_std_tau", "b_std", "level", "noise_std"]
        )
    )
    loo = nb.diagnostics.loo(idata, var_name="y")
    print(f"PSIS-LOO over {n} homes: {loo}")


if __name__ == "__main__":
    main()

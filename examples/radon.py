"""Hierarchical NNGP regression on the Minnesota radon survey (919 homes, 85 counties).

Each county c has its own function of the house-level covariates x = (floor, log uranium):
f_c ~ GP(0, Σ_c), Σ_c the NNGP of a one-hidden-layer ReLU network whose weight scale
W_std[c] comes from a shared log-normal hyperprior, log W_std[c] ~ N(μ, τ) (non-centred);
the bias scale, the mean level and the noise variance are shared:

    log_radon[i] ~ N(m + f_{c(i)}(x_i), σ²)

Within a county the covariates take at most two values (the floor; uranium is a county
measurement), so the 919 homes sit on 145 distinct (county, floor) inputs. The model is
written on those: nb.priors.collapse_replicates turns the homes into per-input means
observed with noise σ²/n plus an exact factor, which gives the same posterior as the GP
over every home with 2 x 2 kernels instead of up to 116 x 116. All counties form one
batched GaussianProcess site (batch_shape (85,), padded and masked). NUTS runs 4 chains;
the script prints the time, the hyperparameters and PSIS-LOO over the 919 homes (each
home left out, from nb.diagnostics.from_numpyro with the replicates).

    python examples/radon.py [--quick] [--chains 4] [--samples 500] [--method vectorized]
"""

from __future__ import annotations

import argparse
import time

import jax
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


def model(rep, num_counties):
    """rep: the homes collapsed per county onto their distinct inputs (``Replicates``)."""
    w = nb.priors.group_log_normal("W_std", num_counties, loc=0.0, loc_scale=0.5, tau_scale=0.3)
    b = numpyro.sample("b_std", dist.HalfNormal(1.0))
    level = numpyro.sample("level", dist.Normal(1.0, 1.0))
    sigma = numpyro.sample("noise_std", dist.HalfNormal(1.0))
    nets = jax.vmap(lambda wc: county_net(wc, b))(w)  # one net per county
    gp = nb.GaussianProcess(nets, rep.X, noise=rep.noise(sigma**2), mean=level, point_mask=rep.mask)
    numpyro.sample("y", gp, obs=rep.y_mean)
    numpyro.factor("y_replicates", rep.log_factor(sigma**2))  # exact: all homes' density


def load(max_counties=None):
    """The homes (of the first ``max_counties`` counties), collapsed per county."""
    d = datasets.load_radon()
    keep = np.ones_like(d.county, bool) if max_counties is None else d.county < max_counties
    X = np.stack([d.floor, d.log_uranium], axis=1)[keep]
    county = d.county[keep]
    rep = nb.priors.collapse_replicates(X, d.log_radon[keep], group=county)
    return rep, int(county.max()) + 1


def run(quick=False, chains=4, samples=500, method="vectorized", seed=0):
    rep, G = load(max_counties=12 if quick else None)
    warmup = samples = 30 if quick else samples
    kernel = NUTS(model, target_accept_prob=0.85, max_tree_depth=5 if quick else 10)
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=samples, num_chains=chains,
                chain_method=method, progress_bar=False)  # fmt: skip
    t0 = time.perf_counter()
    mcmc.run(jax.random.key(seed), rep, G, extra_fields=("diverging",))
    jax.block_until_ready(mcmc.get_samples())
    return mcmc, time.perf_counter() - t0, rep


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="12 counties, 30+30 draws, tree depth <= 5",
    )
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument(
        "--method", default="vectorized", choices=("vectorized", "parallel", "sequential")
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    mcmc, seconds, rep = run(args.quick, args.chains, args.samples, args.method, args.seed)
    div = int(mcmc.get_extra_fields()["diverging"].sum())
    n, m = rep.num_observations, int(np.sum(rep.counts > 0))
    print(
        f"NUTS: {args.chains} chains ({args.method}), {n} homes on {m} distinct inputs, "
        f"{seconds:.1f} s, {div} divergences"
    )
    idata = nb.diagnostics.from_numpyro(mcmc, replicates={"y": rep})
    names = ["W_std_mu", "W_std_tau", "b_std", "level", "noise_std"]
    print(nb.diagnostics.summary(idata, var_names=names))
    loo = nb.diagnostics.loo(idata, var_name="y")
    print(
        f"PSIS-LOO over {loo['n_points']} homes: elpd {loo['elpd']:.1f} ± {loo['se']:.1f}, "
        f"{loo['n_bad_k']} points with Pareto k > {loo['k_threshold']:.2f}"
    )


if __name__ == "__main__":
    main()

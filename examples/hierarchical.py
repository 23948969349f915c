"""Hierarchical NNGP regression: related tasks sharing a hyperprior.

Each group g has its own function f_g ~ GP(0, Σ_g) where Σ_g is the NNGP of a 2-hidden-
layer ReLU network whose weight scale W_std[g] is drawn from a shared log-normal
hyperprior, log W_std[g] ~ N(μ, τ); the bias scale and the noise are shared. The script
simulates data from the model at known values, runs NUTS and prints the posterior
intervals next to the truth.

    python examples/hierarchical.py [--groups 4] [--points 30] [--outputs 4] [--samples 500]
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

import ntk_bayes as nb
from ntk_bayes import stax

TRUTH = {"W_std_mu": math.log(1.5), "W_std_tau": 0.25, "b_std": 0.2, "noise": 0.05}


def relu_net(w, b):
    return stax.serial(
        stax.Dense(512, W_std=w, b_std=b), stax.Relu(),
        stax.Dense(512, W_std=w, b_std=b), stax.Relu(),
        stax.Dense(1, W_std=w, b_std=b),
    )  # fmt: skip


def model(X, Y=None):
    """X: (G, n, d) inputs per group; Y: (G, K, n) observations (K columns per group).

    The G groups are one batched GaussianProcess (batch_shape (G,)): the per-group
    W_std from the plate is a leading axis of the network's hyperparameters
    (``jax.vmap`` builds one network per group), so the kernels are vmapped, not
    unrolled in Python. K output columns per group expand the batch to (K, G).
    """
    groups = X.shape[0]
    w = nb.priors.group_log_normal("W_std", groups, loc=math.log(1.5), loc_scale=0.3,
                                   tau_scale=0.3)  # fmt: skip
    b = numpyro.sample("b_std", dist.HalfNormal(0.3))
    noise = numpyro.sample("noise", dist.HalfNormal(0.2))
    nets = jax.vmap(lambda wg: relu_net(wg, b))(w)
    gp = nb.GaussianProcess(nets, X, noise=noise)
    if Y is None:
        numpyro.sample("y", gp)
    else:
        numpyro.sample("y", gp.expand((Y.shape[1], groups)), obs=jnp.swapaxes(Y, 0, 1))


def simulate(key, groups=4, points=30, outputs=4, truth=TRUTH):
    """Data drawn from the model at ``truth``; returns X, Y and the group W_std."""
    kx, kz, ky = jax.random.split(key, 3)
    X = jax.random.uniform(kx, (groups, points, 2), minval=-2.0, maxval=2.0)
    z = jax.random.normal(kz, (groups,))
    w = jnp.exp(truth["W_std_mu"] + truth["W_std_tau"] * z)
    Y = jnp.stack([
        nb.GaussianProcess(relu_net(w[g], truth["b_std"]), X[g], noise=truth["noise"],
                           num_outputs=outputs).sample(jax.random.fold_in(ky, g))
        for g in range(groups)
    ])  # fmt: skip
    return X, Y, w


def fit(X, Y, key, warmup=500, samples=500, chains=2, progress_bar=True):
    mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=samples, num_chains=chains,
                chain_method="sequential", progress_bar=progress_bar)  # fmt: skip
    mcmc.run(key, X, Y, extra_fields=("diverging",))
    return mcmc


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--points", type=int, default=30)
    p.add_argument("--outputs", type=int, default=4)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    key = jax.random.PRNGKey(args.seed)
    X, Y, w_true = simulate(key, args.groups, args.points, args.outputs)
    mcmc = fit(X, Y, jax.random.fold_in(key, 1), args.samples, args.samples)
    s = mcmc.get_samples()
    print(f"divergences: {int(mcmc.get_extra_fields()['diverging'].sum())}")
    rows = [
        ("W_std_mu", TRUTH["W_std_mu"], s["W_std_mu"]),
        ("W_std_tau", TRUTH["W_std_tau"], s["W_std_tau"]),
        ("b_std", TRUTH["b_std"], s["b_std"]),
        ("noise", TRUTH["noise"], s["noise"]),
    ]
    rows += [(f"W_std[{g}]", float(w_true[g]), s["W_std"][:, g]) for g in range(args.groups)]
    print(f"{'parameter':<11} {'truth':>7} {'5%':>7} {'median':>7} {'95%':>7}")
    for name, t, draws in rows:
        lo, med, hi = np.quantile(np.asarray(draws), [0.05, 0.5, 0.95])
        flag = "" if lo <= t <= hi else "  <- outside 90%"
        print(f"{name:<11} {t:>7.3f} {lo:>7.3f} {med:>7.3f} {hi:>7.3f}{flag}")


if __name__ == "__main__":
    main()

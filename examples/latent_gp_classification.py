"""Latent NNGP models with non-Gaussian likelihoods: Bernoulli (classification) and
Poisson (counts), fitted by NUTS in the whitened parameterisation.

    f = m + L v,  v ~ N(0, I),  L Lᵀ = Σ(X, X)  (nb.priors.latent_gp)
    Bernoulli:  y_i ~ Bernoulli(sigmoid(f_i))
    Poisson:    y_i ~ Poisson(exp(f_i))

Data are simulated from known latent functions; the script prints accuracy (Bernoulli)
or the error of the posterior rate against the truth (Poisson), and the divergences.

    python examples/latent_gp_classification.py [--likelihood both] [--quick]
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
from ntk_bayes import stax


def net(w, b):
    return stax.serial(
        stax.Dense(512, W_std=w, b_std=b), stax.Relu(), stax.Dense(1, W_std=w, b_std=b)
    )


def model(X, y=None, likelihood="bernoulli"):
    w = numpyro.sample("W_std", dist.LogNormal(0.5, 0.5))
    b = numpyro.sample("b_std", dist.HalfNormal(1.0))
    m = numpyro.sample("mean", dist.Normal(0.0, 1.0))
    f = nb.priors.latent_gp("f", net(w, b), X, mean=m)
    like = dist.Bernoulli(logits=f) if likelihood == "bernoulli" else dist.Poisson(jnp.exp(f))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", like, obs=y)


def simulate(key, n, likelihood):
    kx, ky = jax.random.split(key)
    X = jnp.sort(jax.random.uniform(kx, (n, 1), minval=-2.0, maxval=2.0), axis=0)
    f = 2.0 * jnp.sin(2.0 * X[:, 0]) if likelihood == "bernoulli" else 1.0 + jnp.cos(2 * X[:, 0])
    if likelihood == "bernoulli":
        y = jax.random.bernoulli(ky, jax.nn.sigmoid(f)).astype(jnp.float32)
    else:
        y = jax.random.poisson(ky, jnp.exp(f)).astype(jnp.float32)
    return X, y, f


def run(likelihood, n=60, samples=300, chains=2, seed=0):
    key = jax.random.key(seed)
    X, y, f_true = simulate(key, n, likelihood)
    mcmc = MCMC(NUTS(model), num_warmup=samples, num_samples=samples, num_chains=chains,
                chain_method="vectorized", progress_bar=False)  # fmt: skip
    t0 = time.perf_counter()
    mcmc.run(jax.random.fold_in(key, 1), X, y, likelihood, extra_fields=("diverging",))
    seconds = time.perf_counter() - t0
    f = np.asarray(mcmc.get_samples()["f"])
    div = int(mcmc.get_extra_fields()["diverging"].sum())
    if likelihood == "bernoulli":
        p = jax.nn.sigmoid(f).mean(0)
        score = f"accuracy {float(np.mean((p > 0.5) == (np.asarray(y) > 0.5))):.2f}"
    else:
        rate = np.exp(f).mean(0)
        score = f"mean |rate - true rate| {float(np.mean(np.abs(rate - np.exp(f_true)))):.2f}"
    print(f"{likelihood}: n={n}, {chains} chains, {seconds:.1f} s, {div} divergences, {score}")
    return mcmc


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--likelihood", default="both", choices=("bernoulli", "poisson", "both"))
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--quick", action="store_true", help="20 points, 40+40 draws")
    args = p.parse_args(argv)
    n, samples = (20, 40) if args.quick else (args.n, args.samples)
    kinds = ("bernoulli", "poisson") if args.likelihood == "both" else (args.likelihood,)
    for kind in kinds:
        run(kind, n, samples)


if __name__ == "__main__":
    main()

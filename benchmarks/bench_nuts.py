"""NUTS over NNGP hyperparameters against the same NUTS on a tinygp RBF GP (issue 5).

Both: N points in 2-D, 500 warmup + 500 samples, 1 chain, float32 unless
JAX_ENABLE_X64=1. ntk_bayes samples W_std, b_std, noise of a 2-hidden-layer ReLU NNGP;
tinygp samples amplitude, length scale and noise of an ExpSquared kernel.
Reported: wall time of mcmc.run (compilation included), the number of leapfrog steps,
and time per leapfrog step (the cost of one log-density gradient).

    python benchmarks/bench_nuts.py [--n 200] [--warmup 500] [--samples 500]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import tinygp
from numpyro.infer import MCMC, NUTS

import ntk_bayes as nb
from ntk_bayes import stax


def nngp_model(X, y):
    w = numpyro.sample("W_std", dist.LogNormal(0.3, 0.4))
    b = numpyro.sample("b_std", dist.HalfNormal(0.5))
    noise = numpyro.sample("noise", dist.HalfNormal(0.5))
    net = stax.serial(
        stax.Dense(512, W_std=w, b_std=b), stax.Relu(),
        stax.Dense(512, W_std=w, b_std=b), stax.Relu(),
        stax.Dense(1, W_std=w, b_std=b),
    )  # fmt: skip
    numpyro.sample("y", nb.GaussianProcess(net, X, noise=noise), obs=y)


def tinygp_model(X, y):
    amp = numpyro.sample("amp", dist.LogNormal(0.0, 0.5))
    scale = numpyro.sample("scale", dist.LogNormal(0.0, 0.5))
    noise = numpyro.sample("noise", dist.HalfNormal(0.5))
    gp = tinygp.GaussianProcess(amp * tinygp.kernels.ExpSquared(scale=scale), X, diag=noise)
    numpyro.sample("y", gp.numpyro_dist(), obs=y)


def run(model, X, y, warmup, samples):
    mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=samples, progress_bar=False)
    t = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(1), X, y, extra_fields=("num_steps",))
    jax.block_until_ready(mcmc.get_samples())
    wall = time.perf_counter() - t
    steps = int(mcmc.get_extra_fields()["num_steps"].sum())
    return wall, steps


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--samples", type=int, default=500)
    args = p.parse_args()
    key = jax.random.PRNGKey(0)
    X = jax.random.uniform(key, (args.n, 2), minval=-2, maxval=2)
    y = jnp.sin(2 * X[:, 0]) * jnp.cos(X[:, 1]) + 0.1 * jax.random.normal(key, (args.n,))
    print(f"# N={args.n}, {args.warmup}+{args.samples} NUTS, 1 chain, {jax.devices()[0]}, "
          f"{jnp.result_type(float)}")  # fmt: skip
    print(f"{'model':<22} {'wall s':>8} {'leapfrogs':>10} {'ms/leapfrog':>12}")
    res = {}
    for name, model in (("ntk_bayes ReLU NNGP", nngp_model), ("tinygp ExpSquared", tinygp_model)):
        wall, steps = run(model, X, y, args.warmup, args.samples)
        res[name] = (wall, steps)
        print(f"{name:<22} {wall:>8.2f} {steps:>10d} {1e3 * wall / steps:>12.3f}")
    (a, sa), (b, sb) = res.values()
    print(f"ratio (ntk_bayes / tinygp): wall {a / b:.2f}, per leapfrog {(a / sa) / (b / sb):.2f}")


if __name__ == "__main__":
    main()

r"""Exact GPs with their hyperparameters integrated out by NUTS (``--hyper nuts``).

Model (one W_std and one b_std shared by every layer of the preset, σ² the noise
variance, κ the NNGP or the NTK of the network at (W_std, b_std)):

.. math::

    W_{std} \sim \mathrm{LogNormal}(\log W_0, 0.5), \quad
    b_{std} \sim \mathrm{LogNormal}(\log \max(b_0, 0.05), 0.75), \quad
    σ^2 \sim \mathrm{LogNormal}(\log 0.1, 1), \quad
    y \sim N(0, κ(X, X) + σ^2 I)

with (W_0, b_0) the preset's values (standardised targets). Each posterior draw s gives
the exact conditional N(μ_s, v_s) at new inputs; the predictive is their mixture.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

from .. import diagnostics as dg
from ..priors import GaussianProcess
from ._common import Context

__all__ = ["fit_exact_nuts"]

_SITES = ("W_std", "b_std", "noise_var")


def _model(arch, kind, X, y):
    W = numpyro.sample("W_std", dist.LogNormal(math.log(arch.W_std), 0.5))
    b = numpyro.sample("b_std", dist.LogNormal(math.log(max(arch.b_std, 0.05)), 0.75))
    s2 = numpyro.sample("noise_var", dist.LogNormal(math.log(0.1), 1.0))
    numpyro.sample("y", GaussianProcess(arch.build(W, b), X, kernel=kind, noise=s2), obs=y)


def fit_exact_nuts(ctx: Context, name: str, kind: str, make_result):
    """NUTS over (W_std, b_std, σ²) of the exact GP, then per-draw exact conditionals."""
    t0 = time.perf_counter()
    s, ds = ctx.settings, ctx.ds
    X, y = jnp.asarray(ds.X_train), jnp.asarray(ds.y_train)
    mcmc = MCMC(
        NUTS(_model, target_accept_prob=0.9, max_tree_depth=s.max_tree_depth),
        num_warmup=s.num_warmup,
        num_samples=s.num_samples,
        num_chains=s.num_chains,
        chain_method="sequential",
        progress_bar=not s.quiet,
    )
    mcmc.run(jax.random.PRNGKey(s.seed), ctx.arch, kind, X, y, extra_fields=("diverging",))
    draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    lead = draws["W_std"].shape
    theta = jnp.stack([jnp.asarray(draws[k]).reshape(-1) for k in _SITES], axis=1)
    targets = [X, jnp.asarray(ds.X_test)] + ([] if ctx.x_grid is None else [ctx.x_grid])

    def conditionals(th):
        g = GaussianProcess(ctx.arch.build(th[0], th[1]), X, kernel=kind, noise=th[2])
        out = []
        for Xs in targets:
            c = g.condition(y, Xs, diag=True)
            out += [c.mean, c.variance]
        return tuple(out)

    moments = jax.lax.map(jax.jit(conditionals), theta)
    moments = [np.asarray(a, np.float64).reshape(lead + a.shape[1:]) for a in moments]
    pairs = [(moments[i], moments[i + 1]) for i in range(0, len(moments), 2)]
    grid = pairs[2] if ctx.x_grid is not None else None
    diverging = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"])
    info = {
        "hyper": "NUTS over W_std, b_std, noise_var (log-normal priors)",
        "posterior_mean": {k: float(draws[k].mean()) for k in _SITES},
        "noise_var": float(draws["noise_var"].mean()),
        "sampler": {
            "num_warmup": s.num_warmup,
            "num_samples": s.num_samples,
            "num_chains": s.num_chains,
            "divergences_per_chain": diverging.sum(axis=1).tolist(),
        },
    }
    res = make_result(
        ctx,
        name,
        t0,
        (pairs[0], pairs[1], grid),
        draws["noise_var"],
        info,
        posterior={k: draws[k] for k in _SITES},
        inference="NUTS over hyperparameters",
    )
    res.convergence = dg.convergence(res.idata, var_names=list(_SITES))
    res.fit_time = time.perf_counter() - t0
    return res

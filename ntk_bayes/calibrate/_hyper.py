r"""The hyperparameter model of the exact GPs, one model in two modes.

Both modes fit the same three numbers, in log space: one W_std and one b_std shared by
every layer of the preset, and the noise variance σ²:

.. math::

    \log W_{std} \sim N(\log W_0, 0.5^2), \quad
    \log b_{std} \sim N(\log \max(b_0, 0.05), 0.75^2), \quad
    \log σ^2 \sim N(\log 0.1, 1), \quad
    y \sim N(0, κ(X, X) + σ^2 I)

with (W_0, b_0) the preset's values (standardised targets), κ the NNGP or the NTK.

* ``hyper="ml"`` (type-II maximum likelihood): Adam on (log W, log b, log σ²) from the
  prior's centre, maximising log N(y | 0, κ + σ²I) (the priors are not used).
* ``hyper="nuts"``: NUTS over the same three under the priors above; each posterior draw
  s gives the exact conditional N(μ_s, v_s) at new inputs; the predictive is their
  mixture.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.infer import MCMC, NUTS

from .. import diagnostics as dg
from .. import gp
from ..priors import GaussianProcess
from ._common import Context
from ._files import attrs_for, result, sampled_idata
from ._scoring import convergence_status, divergences, psis_loo

__all__ = ["fit_exact_nuts", "ml_fit", "MLFit"]

_SITES = ("W_std", "b_std", "noise_var")


def _centre(arch) -> np.ndarray:
    return np.log([arch.W_std, max(arch.b_std, 0.05), 0.1])


@dataclasses.dataclass
class MLFit:
    """A type-II ML fit: the exact GP at the optimum and how the optimiser went."""

    model: gp.ExactGP
    net: object
    noise: float
    steps: int
    converged: bool
    log_marginal_likelihood: float


@functools.partial(jax.jit, static_argnames=("arch", "kind", "lr"))
def _ml_step(theta, state, X, y, arch, kind, lr):
    """One Adam step on -log N(y | 0, κ + σ²I) / n in (log W_std, log b_std, log σ²).
    The data are arguments, not constants of the program: one compilation per
    architecture, kernel and data shape serves every split and K-fold refit."""

    def loss(th):
        net = arch.build(jnp.exp(th[0]), jnp.exp(th[1]))
        gpd = GaussianProcess(net, X, kernel=kind, noise=jnp.exp(th[2]))
        return -gpd.log_prob(y) / y.shape[0]

    opt = optax.adam(lr)
    val, g = jax.value_and_grad(loss)(theta)
    up, state = opt.update(g, state, theta)
    return optax.apply_updates(theta, up), state, val


def ml_fit(ctx: Context, kind: str):
    """Type-II ML of (log W_std, log b_std, log σ²) of the exact GP with kernel ``kind``
    (cached per run): the same shared-scale model that ``fit_exact_nuts`` samples."""

    def build():
        s, ds = ctx.settings, ctx.ds
        X, y = jnp.asarray(ds.X_train), jnp.asarray(ds.y_train)
        theta = jnp.asarray(_centre(ctx.arch), X.dtype)

        state = optax.adam(s.gp_lr).init(theta)

        prev, converged, k = np.inf, False, 0
        for k in range(1, s.gp_iters + 1):
            new, new_state, val = _ml_step(theta, state, X, y, ctx.arch, kind, s.gp_lr)
            val = float(val)
            if not (np.isfinite(val) and bool(jnp.all(jnp.isfinite(new)))):
                raise FloatingPointError(
                    f"type-II ML of the {kind} GP: non-finite loss or step at step {k} "
                    f"(log W_std, log b_std, log noise = {np.asarray(theta).tolist()})"
                )
            theta, state = new, new_state
            if abs(prev - val) < 1e-5:
                converged = True
                break
            prev = val
        th = np.asarray(theta, np.float64)
        W, b, noise = (float(v) for v in np.exp(th))
        net = ctx.arch.build(W, b)
        model = gp.ExactGP(net, X, y, noise, kind=kind)
        return MLFit(model, net, noise, k, converged, float(model.log_marginal_likelihood()))

    return ctx.cached(("ml", kind), build)


def _model(arch, kind, X, y):
    c = _centre(arch)
    W = numpyro.sample("W_std", dist.LogNormal(float(c[0]), 0.5))
    b = numpyro.sample("b_std", dist.LogNormal(float(c[1]), 0.75))
    s2 = numpyro.sample("noise_var", dist.LogNormal(float(c[2]), 1.0))
    numpyro.sample("y", GaussianProcess(arch.build(W, b), X, kernel=kind, noise=s2), obs=y)


def _loo_terms(K, y, noise):
    """log p(y_i | y_{-i}, θ) for every i (R&W eq. 5.10): the pointwise terms of a
    non-factorised Gaussian model, for PSIS over hyperparameter draws."""
    n = y.shape[0]
    L = jnp.linalg.cholesky(K + noise * jnp.eye(n, dtype=K.dtype))
    Linv = jax.scipy.linalg.solve_triangular(L, jnp.eye(n, dtype=K.dtype), lower=True)
    d = jnp.sum(Linv * Linv, axis=0)
    alpha = Linv.T @ (Linv @ y)
    return -0.5 * jnp.log(2 * jnp.pi) + 0.5 * jnp.log(d) - 0.5 * alpha**2 / d


def fit_exact_nuts(ctx: Context, name: str, kind: str):
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
    Xs = jnp.asarray(ds.X_test)

    def conditionals(th):
        net = ctx.arch.build(th[0], th[1])
        g = GaussianProcess(net, X, kernel=kind, noise=th[2])
        tr, te = g.condition(y, X, diag=True), g.condition(y, Xs)
        out = [tr.mean, tr.variance, te.mean, te.covariance]
        out.append(_loo_terms(net.kernel_fn(X, None, kind), y, th[2]))
        if ctx.x_grid is not None:
            gr = g.condition(y, ctx.x_grid, diag=True)
            out += [gr.mean, gr.variance]
        return tuple(out)

    mom = jax.lax.map(jax.jit(conditionals), theta)
    mom = [np.asarray(a, np.float64).reshape(lead + a.shape[1:]) for a in mom]
    noise = draws["noise_var"]
    sd = np.sqrt(noise)[..., None]
    rng = np.random.default_rng(s.seed)
    f_tr = mom[0] + np.sqrt(np.maximum(mom[1], 0.0)) * rng.standard_normal(mom[0].shape)
    cov_te = mom[3]
    sd_te = np.sqrt(np.maximum(np.diagonal(cov_te, axis1=-2, axis2=-1), 0.0))
    f_te = mom[2] + sd_te * rng.standard_normal(mom[2].shape)
    posterior = {k: draws[k] for k in _SITES}
    attrs = {**attrs_for(ctx, name, "NUTS over hyperparameters"), "loo_method": "psis"}
    idata = sampled_idata(
        f_tr, f_te, sd, ds, seed=s.seed, attrs=attrs, log_lik=mom[4], posterior=posterior
    )
    # function values for R-hat/ESS: the conditional means, one per hyperparameter draw
    conv_idata = dg.to_inference_data(posterior={**posterior, "f_test": mom[2]})
    conv = dg.convergence(conv_idata)
    diverging = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"])
    status = convergence_status(conv, divergences({"divergences_per_chain": diverging.sum(1)}))
    nv = noise.reshape(-1, 1)
    flat = lambda a: a.reshape((-1,) + a.shape[2:])  # noqa: E731
    m_te, v_te = flat(mom[2]), np.maximum(np.diagonal(flat(cov_te), axis1=-2, axis2=-1), 0.0)
    pred = dg.SamplePredictive(m_te, np.sqrt(v_te + nv))
    # the mixture's joint covariance: spread of the means + mean covariance + mean noise
    test_cov = np.cov(m_te, rowvar=False) + flat(cov_te).mean(0) + nv.mean() * np.eye(m_te.shape[1])
    gpred = None
    if ctx.x_grid is not None:
        gpred = dg.SamplePredictive(flat(mom[5]), np.sqrt(np.maximum(flat(mom[6]), 0.0) + nv))
    summ = {k: np.quantile(draws[k], [0.05, 0.5, 0.95]).tolist() for k in _SITES}
    info = {
        "hyper": "NUTS over W_std, b_std, noise_var (log-normal priors; one W_std and one "
        "b_std shared by all layers)",
        "posterior_5_50_95": summ,
        "noise_var": float(np.median(noise)),
        "sampler": {
            "num_warmup": s.num_warmup,
            "num_samples": s.num_samples,
            "num_chains": s.num_chains,
            "divergences_per_chain": diverging.sum(axis=1).tolist(),
        },
    }
    return result(
        ctx,
        name,
        t0,
        predictive=pred,
        grid_predictive=gpred,
        idata=idata,
        info=info,
        convergence=conv,
        status=status,
        loo=psis_loo(idata),
        test_cov=test_cov,
    )

r"""The regression models of ``ntk-bayes calibrate``, each fitted on the training split.

With σ² the observation-noise variance, every Gaussian model predicts
y* ~ N(μ(x*), v(x*) + σ²) from its latent mean μ and variance v:

* ``nngp``/``ntkgp``: exact GP with the NNGP kernel K or the NTK Θ as prior covariance
  (the NTK-GP of He et al. 2020); W_std, b_std and σ² by type-II maximum likelihood
  (:func:`ntk_bayes.gp.fit_exact`, Adam), or with ``hyper="nuts"`` sampled by NUTS
  under log-normal priors and integrated out: the predictive is the mixture
  (1/S) Σ_s N(μ_s, v_s + σ²_s) over hyperparameter draws s.
* ``sgpr``: Titsias' sparse NNGP with M inducing inputs chosen by greedy variance
  reduction at the initial kernel; W_std, b_std and σ² maximise the collapsed bound.
* ``ensemble``: the infinite ensemble of networks trained by gradient descent on MSE to
  convergence (t = ∞), with the NTK-GP's hyperparameters and a ridge equal to its σ²
  (Lee et al. 2019, eq. 16): μ = Θ_{*D}(Θ + σ²I)^{-1} Y and the ensemble covariance,
  plus σ² in the predictive.
* ``bnn``: the finite network of the same architecture at ``Settings.width`` with the
  NNGP's fitted prior (W_std, b_std) and noise, sampled by NUTS: the same prior as
  ``nngp`` up to finite width, so differences come from width and MCMC.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax.numpy as jnp
import numpy as np
import optax

from .. import bnn, gp, predict
from .. import diagnostics as dg
from ._archs import as_floats, hyperparameters
from ._common import MODEL_LABELS, Context, ModelResult, fit_bnn_nuts

__all__ = ["FIT_REGRESSION", "ml_fit"]


@dataclasses.dataclass
class _MLFit:
    model: gp.ExactGP
    net: object
    noise: float
    steps: int
    converged: bool


def ml_fit(ctx: Context, kind: str):
    """Type-II ML of the exact GP with kernel ``kind`` (cached per run)."""

    def build():
        s = ctx.settings
        model, res = gp.fit_exact(
            ctx.arch.build(),
            ctx.ds.X_train,
            ctx.ds.y_train,
            0.1,
            kind=kind,
            optimizer=optax.adam(s.gp_lr),
            max_iters=s.gp_iters,
            tol=1e-4,
            quiet=s.quiet,
        )
        return _MLFit(model, model.kernel.net, float(model.noise), res.num_steps, res.converged)

    return ctx.cached(("ml", kind), build)


def _attrs(ctx: Context, name: str, inference: str) -> dict:
    return {
        "model": name,
        "label": MODEL_LABELS[("regression", name)],
        "inference": inference,
        "dataset": ctx.ds.name,
        "arch": ctx.arch.name,
        "y_std": ctx.ds.y_std,
        "y_mean": ctx.ds.y_mean,
        "units": "standardised targets (multiply by y_std, add y_mean for raw units)",
    }


def _np(a) -> np.ndarray:
    return np.asarray(a, np.float64)


def _gaussian_result(ctx, name, t0, latent, noise_var, info, *, posterior=None, inference):
    """A result from latent (mean, var) at train, test and grid inputs."""
    s, ds = ctx.settings, ctx.ds
    (m_tr, v_tr), (m_te, v_te), grid = latent
    idata = dg.from_gaussian(
        mean_train=m_tr,
        var_train=v_tr,
        y_train=ds.y_train,
        noise_var=noise_var,
        mean_test=m_te,
        var_test=v_te,
        y_test=ds.y_test,
        n_draws=s.n_draws,
        seed=s.seed,
        posterior=posterior,
        attrs=_attrs(ctx, name, inference),
    )
    if m_te.ndim == 1:  # fixed hyperparameters: one Gaussian per point
        sd = np.sqrt(np.maximum(v_te, 0.0) + noise_var)
        pred = dg.GaussianPredictive(m_te, sd)
        gpred = None
        if grid is not None:
            gpred = dg.GaussianPredictive(grid[0], np.sqrt(np.maximum(grid[1], 0.0) + noise_var))
    else:  # hyperparameter draws: the mixture over draws, exactly
        nv = np.asarray(noise_var).reshape(-1, 1)

        def mixture(m, v):
            m2 = m.reshape(-1, m.shape[-1])
            return dg.SamplePredictive(m2, np.sqrt(np.maximum(v.reshape(m2.shape), 0.0) + nv))

        pred = mixture(m_te, v_te)
        gpred = None if grid is None else mixture(*grid)
    return ModelResult(
        name=name,
        label=MODEL_LABELS[("regression", name)],
        task="regression",
        fit_time=time.perf_counter() - t0,
        predictive=pred,
        grid_predictive=gpred,
        idata=idata,
        info=info,
    )


def _constant_posterior(values: dict, n_draws: int) -> dict:
    return {k: np.full((1, n_draws), float(v)) for k, v in values.items()}


def fit_exact(ctx: Context, name: str) -> ModelResult:
    kind = {"nngp": "nngp", "ntkgp": "ntk"}[name]
    if ctx.settings.hyper == "nuts":
        from ._hyper import fit_exact_nuts

        return fit_exact_nuts(ctx, name, kind, _gaussian_result)
    t0 = time.perf_counter()
    fit, _ = ml_fit(ctx, kind)
    m, ds = fit.model, ctx.ds
    latent = [tuple(_np(a) for a in m.predict(X)) for X in (ds.X_train, ds.X_test)]
    grid = None if ctx.x_grid is None else tuple(_np(a) for a in m.predict(ctx.x_grid))
    hyp = hyperparameters(fit.net)
    info = {
        "hyper": "type-II maximum likelihood (Adam)",
        "noise_var": fit.noise,
        "hyperparameters": hyp,
        "log_marginal_likelihood": float(m.log_marginal_likelihood()),
        "optimizer_steps": fit.steps,
        "converged": bool(fit.converged),
    }
    post = _constant_posterior({**hyp, "noise_var": fit.noise}, ctx.settings.n_draws)
    return _gaussian_result(
        ctx, name, t0, (*latent, grid), fit.noise, info, posterior=post, inference="type-II ML"
    )


def fit_sgpr(ctx: Context) -> ModelResult:
    t0 = time.perf_counter()
    s, ds = ctx.settings, ctx.ds
    net0 = ctx.arch.build()
    M = int(min(s.inducing, max(2, ds.n_train // 2)))
    Z = gp.greedy_variance(net0, ds.X_train, M)
    model = gp.SGPR(net0, ds.X_train, ds.y_train, Z, 0.1)
    # Z is a subset of X_train, so k(Z, X) has coincident pairs: the kernels' derivatives
    # there are finite (stax), and a non-finite step still raises FloatingPointError
    # naming the parameters, which the pipeline reports as this model's failure
    fitted, res = gp.fit_sgpr(
        model,
        optimize_Z=False,
        optimizer=optax.adam(s.gp_lr),
        max_iters=s.gp_iters,
        tol=1e-4,
        quiet=s.quiet,
    )
    noise = float(fitted.noise)
    latent = [tuple(_np(a) for a in fitted.predict(X)) for X in (ds.X_train, ds.X_test)]
    grid = None if ctx.x_grid is None else tuple(_np(a) for a in fitted.predict(ctx.x_grid))
    hyp = hyperparameters(fitted.kernel.net)
    info = dict(
        inducing_points=M,
        inducing="greedy variance at the initial kernel (fixed)",
        hyper="Titsias bound (Adam)",
        noise_var=noise,
        hyperparameters=hyp,
        elbo=float(fitted.elbo()),
        optimizer_steps=res.num_steps,
        converged=bool(res.converged),
    )
    post = _constant_posterior({**hyp, "noise_var": noise}, s.n_draws)
    return _gaussian_result(
        ctx, "sgpr", t0, (*latent, grid), noise, info, posterior=post, inference="SGPR bound"
    )


def fit_ensemble(ctx: Context) -> ModelResult:
    t0 = time.perf_counter()
    fit, _ = ml_fit(ctx, "ntk")
    ds = ctx.ds
    predict_fn = predict.gradient_descent_mse_ensemble(
        fit.net.kernel_fn,
        jnp.asarray(ds.X_train),
        jnp.asarray(ds.y_train)[:, None],
        diag_reg=fit.noise,
        diag_reg_absolute_scale=True,
    )

    def at(X):
        g = predict_fn(t=None, x_test=jnp.asarray(X), get="ntk", compute_cov=True)
        return _np(g.mean)[:, 0], np.maximum(np.diag(_np(g.covariance)), 0.0)

    latent = [at(X) for X in (ds.X_train, ds.X_test)]
    grid = None if ctx.x_grid is None else at(ctx.x_grid)
    hyp = hyperparameters(fit.net)
    info = {
        "hyper": "NTK-GP's type-II ML fit",
        "noise_var": fit.noise,
        "diag_reg": fit.noise,
        "training_time": "infinite (t=None)",
        "hyperparameters": hyp,
    }
    post = _constant_posterior({**hyp, "noise_var": fit.noise}, ctx.settings.n_draws)
    res = _gaussian_result(
        ctx,
        "ensemble",
        t0,
        (*latent, grid),
        fit.noise,
        info,
        posterior=post,
        inference="closed-form GD ensemble",
    )
    res.loo_ok = False  # the ensemble's Gaussian is not a posterior given the training data
    return res


def fit_bnn(ctx: Context) -> ModelResult:
    t0 = time.perf_counter()
    s, ds = ctx.settings, ctx.ds
    fit, _ = ml_fit(ctx, "nngp")
    net = as_floats(fit.net)
    noise_std = math.sqrt(fit.noise)
    model = bnn.BNN(net, width=s.width, likelihood="gaussian", noise=noise_std)
    post = fit_bnn_nuts(model, ctx)
    pred = post.predictive(ds.X_test)
    gpred = None if ctx.x_grid is None else post.predictive(ctx.x_grid)
    attrs = _attrs(ctx, "bnn", "NUTS")
    idata = post.to_inference_data(ds.X_test, ds.y_test, seed=s.seed, attrs=attrs)
    conv = dg.convergence(idata, var_names=["f_test"])
    info = {
        "width": s.width,
        "prior": "NNGP's type-II ML W_std/b_std (standard parameterisation)",
        "noise_var": fit.noise,
        "hyperparameters": hyperparameters(net),
        "sampler": {k: v for k, v in post.info.items() if k != "method"},
        "sampler_report": post.sampler_report(),
    }
    return ModelResult(
        name="bnn",
        label=MODEL_LABELS[("regression", "bnn")],
        task="regression",
        fit_time=time.perf_counter() - t0,
        predictive=pred,
        grid_predictive=gpred,
        idata=idata,
        info=info,
        convergence=conv,
    )


FIT_REGRESSION = {
    "nngp": lambda ctx: fit_exact(ctx, "nngp"),
    "ntkgp": lambda ctx: fit_exact(ctx, "ntkgp"),
    "sgpr": fit_sgpr,
    "ensemble": fit_ensemble,
    "bnn": fit_bnn,
}

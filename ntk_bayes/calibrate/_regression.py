r"""The regression models of ``ntk-bayes calibrate``, each fitted on the training split.

With σ² the observation-noise variance, every Gaussian model predicts
y* ~ N(μ(x*), v(x*) + σ²) from its latent mean μ and variance v:

* ``nngp``/``ntkgp``: exact GP with the NNGP kernel K or the NTK Θ as prior covariance
  (the NTK-GP of He et al. 2020); one shared W_std, one shared b_std and σ² in log space
  (:mod:`._hyper`: the same model by type-II ML or, with ``hyper="nuts"``, sampled by
  NUTS and integrated out: the mixture (1/S) Σ_s N(μ_s, v_s + σ²_s)). LOO in closed form.
* ``sgpr``: Titsias' sparse NNGP with M inducing inputs chosen by greedy variance
  reduction at the NNGP's type-II ML kernel; per-layer W_std, b_std and σ² maximise the
  collapsed bound, starting from those ML values. LOO in closed form under its own
  marginal N(0, Q + σ²I).
* ``ensemble``: the plain infinite ensemble of networks trained by gradient descent on
  MSE to t = ∞ with ridge = the NTK-GP's σ² (Lee et al. 2019): not a posterior; its
  noise variance is the mean squared LOO residual of its mean; no LOO comparison.
* ``ntkgp_ensemble``: He et al.'s (2020) NTKGP ensemble at t = ∞, whose predictive is
  the NTK-GP posterior (:mod:`._ensembles`).
* ``bnn``: the finite network of the same architecture at ``Settings.width`` by NUTS;
  its prior W_std/b_std and noise are the NNGP's type-II ML values on the same training
  split (never the test split): the same prior as ``nngp`` up to finite width. LOO by
  PSIS with Pareto k; no calibration verdict unless it converged.
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np
import optax

from .. import bnn, gp
from .. import diagnostics as dg
from ._archs import as_floats, hyperparameters
from ._common import Context, ModelResult, fit_bnn_nuts
from ._ensembles import gd_ensemble, ntkgp_ensemble
from ._files import attrs_for, result, sampled_idata
from ._hyper import fit_exact_nuts, ml_fit
from ._registry import register
from ._scoring import LooResult, bnn_status, gaussian_loo, psis_loo

__all__ = ["fit_exact", "fit_sgpr", "fit_ensemble", "fit_ntkgp_ensemble", "fit_bnn"]


def _np(a) -> np.ndarray:
    return np.asarray(a, np.float64)


def _point_result(ctx, name, t0, fitted, noise, info, *, loo, inference, loo_ok=True):
    """A result of a model with fixed hyperparameters from its latent moments.

    ``fitted`` is ``(train (mean, var), test (mean, cov), grid (mean, var) or None)``.
    """
    s, ds = ctx.settings, ctx.ds
    (m_tr, v_tr), (m_te, c_te), grid = fitted
    v_te = np.maximum(np.diag(c_te), 0.0)
    attrs = {**attrs_for(ctx, name, inference), "hyperparameters": info.get("hyperparameters")}
    attrs["noise_var"] = float(noise)
    attrs["loo_method"] = loo.method
    if loo.pointwise is not None:
        attrs["elpd_loo"] = loo.elpd
        attrs["elpd_loo_se"] = loo.se
    idata = dg.from_gaussian(
        mean_train=m_tr,
        var_train=v_tr,
        y_train=ds.y_train,
        noise_var=noise,
        mean_test=m_te,
        var_test=v_te,
        y_test=ds.y_test,
        n_draws=s.n_draws,
        seed=s.seed,
        attrs=attrs,
    )
    pred = dg.GaussianPredictive(m_te, np.sqrt(v_te + noise))
    gpred = None
    if grid is not None:
        gpred = dg.GaussianPredictive(grid[0], np.sqrt(np.maximum(grid[1], 0.0) + noise))
    return result(
        ctx,
        name,
        t0,
        predictive=pred,
        grid_predictive=gpred,
        idata=idata,
        info=info,
        loo_ok=loo_ok,
        loo=loo,
        test_cov=c_te + noise * np.eye(len(m_te)),
    )


#: above this many train + test + grid points the moments are computed per part
_JOINT_MAX = 4000


def _joint(predict, ds, x_grid):
    """Latent (mean, var) at train and grid inputs and (mean, cov) at the test inputs from
    ``predict(X, full_cov) -> (mean, cov or var)``: one call on all inputs together (one
    compiled program instead of one per input shape; the covariance of all of them is
    cheap at this size), else one call per part."""
    parts = [ds.X_train, ds.X_test] + ([] if x_grid is None else [x_grid])
    sizes = np.cumsum([len(p) for p in parts])
    if sizes[-1] > _JOINT_MAX:
        tr = tuple(_np(a) for a in predict(ds.X_train, False))
        te = tuple(_np(a) for a in predict(ds.X_test, True))
        grid = None if x_grid is None else tuple(_np(a) for a in predict(x_grid, False))
        return tr, te, grid
    X = np.concatenate([np.asarray(p) for p in parts]).astype(ds.X_train.dtype)
    mean, cov = (_np(a) for a in predict(X, True))
    mean, var = mean.reshape(-1), np.diag(cov)
    n1, n2 = int(sizes[0]), int(sizes[1])
    tr, te = (mean[:n1], var[:n1]), (mean[n1:n2], cov[n1:n2, n1:n2])
    grid = None if x_grid is None else (mean[n2:], var[n2:])
    return tr, te, grid


def _moments(model, ds, x_grid):
    """Latent (mean, var) at train and grid inputs and (mean, cov) at the test inputs."""
    return _joint(lambda X, full: model.predict(X, full_cov=full), ds, x_grid)


@register("regression", "nngp", label="NNGP (exact GP)", kernel="nngp", sampled="hyper-nuts")
def fit_nngp(ctx: Context) -> ModelResult:
    return fit_exact(ctx, "nngp")


@register("regression", "ntkgp", label="NTK-GP (exact GP)", kernel="ntk", sampled="hyper-nuts")
def fit_ntkgp(ctx: Context) -> ModelResult:
    return fit_exact(ctx, "ntkgp")


def fit_exact(ctx: Context, name: str) -> ModelResult:
    """The exact GP ``name`` (``"nngp"`` or ``"ntkgp"``) by type-II ML or NUTS."""
    kind = {"nngp": "nngp", "ntkgp": "ntk"}[name]
    if ctx.settings.hyper == "nuts":
        return fit_exact_nuts(ctx, name, kind)
    t0 = time.perf_counter()
    fit, _ = ml_fit(ctx, kind)
    m = fit.model
    info = {
        "hyper": "type-II ML (Adam on log W_std, log b_std, log noise; one W_std and one "
        "b_std shared by all layers: the model --hyper nuts samples)",
        "noise_var": fit.noise,
        "hyperparameters": hyperparameters(fit.net),
        "log_marginal_likelihood": fit.log_marginal_likelihood,
        "optimizer_steps": fit.steps,
        "converged": bool(fit.converged),
    }
    loo = LooResult("exact", _np(m.loo_log_predictive()).reshape(-1))
    return _point_result(
        ctx, name, t0, _moments(m, ctx.ds, ctx.x_grid), fit.noise, info,
        loo=loo, inference="type-II ML",
    )  # fmt: skip


def _sgpr_loo(model, noise: float) -> LooResult:
    """Closed-form LOO under the SGPR's own marginal y ~ N(0, Q + σ²I), Q = K_xz K_zz^-1 K_zx."""
    A = np.linalg.solve(_np(model.Luu), _np(model.kernel(model.Z, model.X)))
    C = A.T @ A + noise * np.eye(A.shape[1])
    y = _np(model.y).reshape(-1)
    return LooResult("sgpr", gaussian_loo(C, y), note="closed form under N(0, Q + noise I)")


# the auto rule's target: mean Nystrom residual tr(K - Q)/n at most this x the noise variance
_AUTO_RESIDUAL = 0.1
_AUTO_M = (32, 512)  # the auto rule's fewest and most inducing points (both <= n // 2)


def choose_inducing(net, X, noise: float, inducing: int | None):
    """Inducing inputs of the SGPR by greedy variance at ``net``'s NNGP: ``inducing``
    of them (at most ``n // 2``; the rule in words says when it was capped), or
    (``None``) the fewest, between 32 and ``min(512, n // 2)``, whose mean
    Nystrom residual ``tr(K - Q) / n`` is at most a tenth of ``noise``. Returns ``Z``,
    the rule in words and that residual over the noise variance (the Titsias bound's
    trace term is ``n / 2`` times it, in nats)."""
    n = int(np.shape(X)[0])
    cap = max(2, n // 2)
    if inducing is None:
        lo, hi = min(_AUTO_M[0], cap), min(_AUTO_M[1], cap)
    else:
        lo = hi = int(min(inducing, cap))
    Z, res = gp.greedy_variance(net, X, hi, return_residuals=True)
    ratio = np.asarray(res, np.float64) / (n * noise)
    if inducing is not None:
        if int(inducing) > hi:  # never silently: the report says M was capped, and why
            why = f"capped from {int(inducing)}: at most half the {n} training points"
            return Z, f"M = {hi} ({why})", float(ratio[-1])
        return Z, f"M = {hi} (given)", float(ratio[-1])
    below = np.nonzero(ratio <= _AUTO_RESIDUAL)[0]
    M = max(lo, int(below[0]) + 1) if below.size else hi
    reached = "" if below.size else f" (not reached at the cap of {hi})"
    rule = (
        f"M = {M}, the fewest in [{lo}, {hi}] with mean Nystrom residual tr(K - Q)/n "
        f"<= {_AUTO_RESIDUAL:g} x noise variance{reached}"
    )
    return Z[:M], rule, float(ratio[M - 1])


@register("regression", "sgpr", label="sparse NNGP (SGPR)", kernel="nngp")
def fit_sgpr(ctx: Context) -> ModelResult:
    t0 = time.perf_counter()
    s, ds = ctx.settings, ctx.ds
    # warm start at the NNGP's type-II ML values (cached: the nngp and bnn fits share
    # them): the bound is still maximised over every layer's W_std, b_std and the noise,
    # in a few rounds instead of ~30 from the preset, and Z is chosen at a fitted kernel
    ml, _ = ml_fit(ctx, "nngp")
    net0 = ml.net
    Z, rule, residual = choose_inducing(net0, ds.X_train, ml.noise, s.inducing)
    M = int(Z.shape[0])
    model = gp.SGPR(net0, ds.X_train, ds.y_train, Z, ml.noise)
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
    info = dict(
        inducing_points=M,
        inducing=f"greedy variance at the NNGP's type-II ML kernel (fixed); {rule}",
        nystrom_residual_over_noise=residual,
        hyper="Titsias bound (Adam), started from the NNGP's type-II ML values",
        noise_var=noise,
        hyperparameters=hyperparameters(fitted.kernel.net),
        elbo=float(fitted.elbo()),
        optimizer_steps=res.num_steps,
        converged=bool(res.converged),
    )
    return _point_result(
        ctx, "sgpr", t0, _moments(fitted, ds, ctx.x_grid), noise, info,
        loo=_sgpr_loo(fitted, noise), inference="SGPR bound",
    )  # fmt: skip


def _ensemble_moments(ctx, predictor, kernel_fn, noise):
    ds = ctx.ds

    def predict(X, full):
        mean, cov = predictor(kernel_fn, ds.X_train, ds.y_train, X, noise)
        return mean, (cov if full else np.maximum(np.diag(cov), 0.0))

    return _joint(predict, ds, ctx.x_grid)


def _loo_residual_var(kernel_fn, X, y, ridge: float) -> float:
    """Mean squared leave-one-out residual of kernel ridge regression with the NTK:
    e_i = [(Θ + λI)^{-1} y]_i / [(Θ + λI)^{-1}]_ii (the held-out error of the mean)."""
    T = kernel_fn(jnp.asarray(X), None, "ntk")
    T = _np(getattr(T, "ntk", T))
    Kinv = np.linalg.inv(T + ridge * np.eye(T.shape[0]))
    e = (Kinv @ _np(y)) / np.diag(Kinv)
    return float(np.mean(e**2))


@register("regression", "ensemble", label="GD ensemble (NTK, t=inf; not a posterior)", kernel="ntk")
def fit_ensemble(ctx: Context) -> ModelResult:
    t0 = time.perf_counter()
    fit, _ = ml_fit(ctx, "ntk")
    kfn = fit.net.kernel_fn
    noise = _loo_residual_var(kfn, ctx.ds.X_train, ctx.ds.y_train, fit.noise)
    latent = _ensemble_moments(ctx, gd_ensemble, kfn, fit.noise)
    info = {
        "hyper": "NTK-GP's type-II ML fit; ridge = its noise variance",
        "noise_var": noise,
        "noise_var_from": "mean squared LOO residual of the ensemble mean (training data)",
        "diag_reg": fit.noise,
        "training_time": "infinite (t=None)",
        "hyperparameters": hyperparameters(fit.net),
        "posterior": False,
    }
    loo = LooResult("none", note="not a posterior: no LOO comparison")
    return _point_result(
        ctx, "ensemble", t0, latent, noise, info,
        loo=loo, inference="closed-form GD ensemble (not a posterior)", loo_ok=False,
    )  # fmt: skip


@register(
    "regression", "ntkgp_ensemble", label="NTKGP ensemble (He et al. 2020, t=inf)", kernel="ntk"
)
def fit_ntkgp_ensemble(ctx: Context) -> ModelResult:
    t0 = time.perf_counter()
    fit, _ = ml_fit(ctx, "ntk")
    latent = _ensemble_moments(ctx, ntkgp_ensemble, fit.net.kernel_fn, fit.noise)
    info = {
        "hyper": "NTK-GP's type-II ML fit",
        "noise_var": fit.noise,
        "training_time": "infinite (t=None)",
        "hyperparameters": hyperparameters(fit.net),
        "note": "t=inf predictive equals the NTK-GP posterior (He et al. 2020)",
    }
    loo = LooResult("exact", _np(fit.model.loo_log_predictive()).reshape(-1))
    return _point_result(
        ctx, "ntkgp_ensemble", t0, latent, fit.noise, info,
        loo=loo, inference="closed-form NTKGP ensemble",
    )  # fmt: skip


# kernel: its prior is the NNGP's fit, and its outputs have the NNGP's variance
@register("regression", "bnn", label="finite BNN (NUTS)", kernel="nngp", sampled=True)
def fit_bnn(ctx: Context) -> ModelResult:
    t0 = time.perf_counter()
    s, ds = ctx.settings, ctx.ds
    fit, _ = ml_fit(ctx, "nngp")
    net = as_floats(fit.net)
    model = bnn.BNN(net, width=s.width, likelihood="gaussian", noise=fit.noise)  # a variance
    post = fit_bnn_nuts(model, ctx)
    pred = post.predictive(ds.X_test)
    gpred = None if ctx.x_grid is None else post.predictive(ctx.x_grid)
    f_tr, f_te = _np(post.latent(ds.X_train)), _np(post.latent(ds.X_test))
    sd = _np(post.noise_std()).reshape(f_tr.shape[:2])[..., None]
    attrs = {**attrs_for(ctx, "bnn", "NUTS"), "loo_method": "psis"}
    idata = sampled_idata(
        f_tr, f_te, sd, ds, seed=s.seed, attrs=attrs, sample_stats=post.sample_stats
    )
    conv = dg.convergence(idata, var_names=["f_test"])
    status = bnn_status(conv, post)
    ff = f_te.reshape(-1, f_te.shape[-1])
    test_cov = np.cov(ff, rowvar=False) + float(np.mean(sd**2)) * np.eye(ff.shape[1])
    info = {
        "width": s.width,
        "prior": "W_std/b_std of every layer = the NNGP's type-II ML values on the same "
        f"training split ({model.parameterization} parameterisation; no held-out data used)",
        "noise_var": fit.noise,
        "hyperparameters": hyperparameters(net),
        "sampler": {k: v for k, v in post.info.items() if k != "method"},
        "sampler_report": post.sampler_report(),
    }
    return result(
        ctx,
        "bnn",
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

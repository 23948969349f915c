r"""The classification models of ``ntk-bayes calibrate``.

All use the preset's W_std/b_std (there is no Gaussian marginal likelihood to fit them
by), so the GP, the ensemble and the BNN share one prior:

* ``nngp``/``ntkgp``: a latent GP with the NNGP kernel (or the NTK) and a Bernoulli
  (two classes, logit link) or categorical (softmax, one latent per class) likelihood,
  by SVGP (Hensman et al. 2015) with M inducing inputs seeded by k-means++ and moved
  by the ELBO. Class probabilities are E_q[sigmoid(f)] (Gauss–Hermite) or
  E_q[softmax(f)] (Monte Carlo).
* ``ensemble``: the infinite ensemble of networks trained by gradient descent to
  convergence on MSE to ±1 targets (one-hot minus 1/K for K classes) with the NTK
  (Lee et al. 2019). Its class probability is the *vote share*: the fraction of
  ensemble members whose output picks the class, Φ(μ/σ) for two classes
  (μ, σ² the ensemble's mean and variance) and a Monte Carlo estimate for more. It is
  a deterministic predictive: its ArviZ file repeats it over draws and PSIS-LOO is not
  reported for it.
* ``bnn``: the finite network at ``Settings.width`` with Bernoulli/categorical
  likelihood, by NUTS.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.special import expit, ndtr, softmax

from .. import bnn, gp, predict
from .. import diagnostics as dg
from ._archs import hyperparameters
from ._common import Context, ModelResult, fit_bnn_nuts
from ._files import attrs_for, result
from ._registry import register
from ._scoring import bnn_status

__all__ = ["fit_svgp", "fit_ensemble", "fit_bnn"]


def _result(ctx, name, t0, probs, idata, info, **kw) -> ModelResult:
    return result(ctx, name, t0, probs=np.asarray(probs, np.float64), idata=idata, info=info, **kw)


def _two_columns(p1):
    p1 = np.clip(np.asarray(p1, np.float64), 0.0, 1.0)
    return np.stack([1.0 - p1, p1], axis=-1)


@register("classification", "nngp", label="NNGP (SVGP)", kernel="nngp")
def fit_nngp(ctx: Context) -> ModelResult:
    return fit_svgp(ctx, "nngp")


@register("classification", "ntkgp", label="NTK-GP (SVGP)", kernel="ntk")
def fit_ntkgp(ctx: Context) -> ModelResult:
    return fit_svgp(ctx, "ntkgp")


_SVGP_M = 32  # the SVGP classifiers' inducing points when `Settings.inducing` is None


def fit_svgp(ctx: Context, name: str) -> ModelResult:
    """The SVGP classifier ``name`` (``"nngp"`` or ``"ntkgp"``)."""
    t0 = time.perf_counter()
    s, ds = ctx.settings, ctx.ds
    K = ds.n_classes
    kind = {"nngp": "nngp", "ntkgp": "ntk"}[name]
    key = jax.random.PRNGKey(s.seed)
    k_z, k_fit, k_pred, k_draw = jax.random.split(key, 4)
    M = int(min(_SVGP_M if s.inducing is None else s.inducing, max(2, ds.n_train // 2)))
    Z = gp.kmeans_pp(k_z, jnp.asarray(ds.X_train), M)
    lik = gp.Bernoulli() if K == 2 else gp.Categorical(K)
    model = gp.SVGP(ctx.arch.build(), Z, lik, num_data=ds.n_train, kind=kind)
    y = ds.y_train.astype(np.float64) if K == 2 else ds.y_train
    model, params, res = gp.fit_svgp(
        model,
        None,
        jnp.asarray(ds.X_train),
        jnp.asarray(y),
        key=k_fit,
        batch_size=int(min(128, ds.n_train)),
        num_epochs=s.svgp_epochs,
        optimizer=optax.adam(0.02),
        quiet=s.quiet,
    )
    probs = np.asarray(model.predict_y(params, jnp.asarray(ds.X_test), key=k_pred)[0])
    probs = _two_columns(probs) if K == 2 else probs

    def draws(X, k):  # latent draws from q(f) (1, S, n[, K]) and their class probabilities
        mu, var = (np.asarray(a, np.float64) for a in model.predict(params, jnp.asarray(X)))
        z = np.asarray(jax.random.normal(k, (s.n_draws,) + mu.shape), np.float64)
        f = mu + np.sqrt(np.maximum(var, 0.0)) * z
        return f[None], (_two_columns(expit(f)) if K == 2 else softmax(f, axis=-1))[None]

    k1, k2 = jax.random.split(k_draw)
    (_, p_train), (f_test, p_test) = draws(ds.X_train, k1), draws(ds.X_test, k2)
    idata = dg.from_class_probs(
        probs_train=p_train,
        y_train=ds.y_train,
        probs_test=p_test,
        y_test=ds.y_test,
        posterior={"f_test": f_test},
        seed=s.seed,
        attrs=attrs_for(ctx, name, "SVGP"),
    )
    info = {
        "likelihood": "bernoulli (logit)" if K == 2 else f"categorical ({K} classes, softmax)",
        "inducing_points": M,
        "hyperparameters": hyperparameters(ctx.arch.build()),
        "elbo_per_point": -float(res.losses[-1]),
        "epochs": len(res.losses),
        "converged": bool(res.converged),
    }
    return _result(ctx, name, t0, probs, idata, info)


@register("classification", "ensemble", label="GD ensemble (NTK vote share)", kernel="ntk")
def fit_ensemble(ctx: Context) -> ModelResult:
    t0 = time.perf_counter()
    s, ds = ctx.settings, ctx.ds
    K = ds.n_classes
    net = ctx.arch.build()
    onehot = np.eye(K)[ds.y_train]
    targets = (2.0 * ds.y_train - 1.0)[:, None] if K == 2 else onehot - 1.0 / K
    predict_fn = predict.gradient_descent_mse_ensemble(
        net.kernel_fn,
        jnp.asarray(ds.X_train),
        jnp.asarray(targets, ds.X_train.dtype),
        diag_reg=1e-3,  # relative ridge: keeps the solve stable, does not fit noise
    )
    rng = np.random.default_rng(s.seed)

    def votes(X):
        g = predict_fn(t=None, x_test=jnp.asarray(X), get="ntk", compute_cov=True)
        mu = np.asarray(g.mean, np.float64)
        sd = np.sqrt(np.maximum(np.diag(np.asarray(g.covariance, np.float64)), 1e-300))
        if K == 2:
            return _two_columns(ndtr(mu[:, 0] / sd))
        f = mu[None] + sd[None, :, None] * rng.standard_normal((2000,) + mu.shape)
        return np.stack([(f.argmax(-1) == k).mean(0) for k in range(K)], axis=-1)

    p_train, p_test = votes(ds.X_train), votes(ds.X_test)
    # a deterministic predictive, stored as two identical draws so ArviZ tools accept it
    eps = 1e-12
    idata = dg.from_class_probs(
        probs_train=np.broadcast_to(_renorm(p_train, eps), (1, 2) + p_train.shape),
        y_train=ds.y_train,
        probs_test=np.broadcast_to(_renorm(p_test, eps), (1, 2) + p_test.shape),
        y_test=ds.y_test,
        posterior={"vote_share_test": np.broadcast_to(p_test, (1, 2) + p_test.shape)},
        seed=s.seed,
        attrs={**attrs_for(ctx, "ensemble", "closed-form GD ensemble"), "deterministic": 1},
    )
    info = {
        "targets": "±1" if K == 2 else "one-hot minus 1/K",
        "diag_reg": "1e-3 x mean diagonal",
        "probability": "vote share of the ensemble members",
        "hyperparameters": hyperparameters(net),
    }
    return _result(ctx, "ensemble", t0, p_test, idata, info, loo_ok=False)


def _renorm(p, eps):
    p = np.clip(p, eps, 1.0)
    return p / p.sum(-1, keepdims=True)


@register("classification", "bnn", label="finite BNN (NUTS)", kernel="nngp", sampled=True)
def fit_bnn(ctx: Context) -> ModelResult:
    t0 = time.perf_counter()
    s, ds = ctx.settings, ctx.ds
    K = ds.n_classes
    lik = "bernoulli" if K == 2 else "categorical"
    net = ctx.arch.build(out_dim=1 if K == 2 else K)
    model = bnn.BNN(net, width=s.width, likelihood=lik)
    post = fit_bnn_nuts(model, ctx)
    probs = post.predictive(ds.X_test)
    idata = post.to_inference_data(
        ds.X_test, ds.y_test, seed=s.seed, attrs=attrs_for(ctx, "bnn", "NUTS")
    )
    # function-space convergence: the draws of the test-point class probabilities
    p = post.probs(ds.X_test)[..., -1]
    conv = dg.convergence(dg.to_inference_data(posterior={"p_test": p}), var_names=["p_test"])
    info = {
        "width": s.width,
        "likelihood": lik,
        "prior": f"the preset's W_std/b_std ({model.parameterization} parameterisation)",
        "hyperparameters": hyperparameters(net),
        "sampler": {k: v for k, v in post.info.items() if k != "method"},
        "sampler_report": post.sampler_report(),
    }
    # no calibration verdict unless it converged, as for regression
    status = bnn_status(conv, post)
    return _result(ctx, "bnn", t0, probs, idata, info, convergence=conv, status=status)

r"""Infinite ensembles of gradient-descent-trained networks at t = ∞, in closed form.

Plain NTK ensemble (Lee et al. 2019): members start from the network's prior
f_0 ~ GP(0, K) (the NNGP) and are trained on y with ridge λ. At t = ∞

.. math::

    μ = Θ_{*X} (Θ + λI)^{-1} y, \quad
    Σ = K_{**} + A K A' - A K_{X*} - K_{*X} A', \quad A = Θ_{*X}(Θ + λI)^{-1},

which mixes K and Θ: it is not a posterior of any prior given the data.

NTKGP ensemble (He, Lakshminarayanan & Teh 2020, "Bayesian deep ensembles via the
neural tangent kernel"): each member adds a randomised function so that its initial
function is GP(0, Θ), and is trained on y + ε with ε ~ N(0, λI) (randomised
targets). Then Σ = Θ_{**} + AΘA' - AΘ_{X*} - Θ_{*X}A' + λAA' = Θ_{**} - Θ_{*X}(Θ +
λI)^{-1}Θ_{X*}: the NTK-GP posterior with noise variance λ. Here it is computed by
the GD-ensemble predictor with the initial kernel replaced by Θ, plus the λAA' term
of the randomised targets (not by the GP formula it must equal).
"""

from __future__ import annotations

import collections

import jax.numpy as jnp
import numpy as np

from .. import predict

__all__ = ["gd_ensemble", "ntkgp_ensemble"]

_Pair = collections.namedtuple("_Pair", ["nngp", "ntk"])


def gd_ensemble(kernel_fn, X, y, X_test, ridge: float):
    """Mean ``(m,)`` and covariance ``(m, m)`` of the plain t = ∞ NTK ensemble."""
    fn = predict.gradient_descent_mse_ensemble(
        kernel_fn,
        jnp.asarray(X),
        jnp.asarray(y)[:, None],
        diag_reg=ridge,
        diag_reg_absolute_scale=True,
    )
    g = fn(t=None, x_test=jnp.asarray(X_test), get="ntk", compute_cov=True)
    return np.asarray(g.mean, np.float64)[:, 0], np.asarray(g.covariance, np.float64)


def ntkgp_ensemble(kernel_fn, X, y, X_test, noise: float):
    """Mean and covariance of He et al.'s NTKGP ensemble at t = ∞ (latent f, noise
    variance ``noise`` both as the randomised-target variance and the ridge)."""

    def theta_init(x1, x2, get=("nngp", "ntk"), **kw):
        t = kernel_fn(x1, x2, "ntk", **kw)
        t = getattr(t, "ntk", t)
        return _Pair(t, t)

    mean, cov = gd_ensemble(theta_init, X, y, X_test, noise)
    X, X_test = jnp.asarray(X), jnp.asarray(X_test)
    T = np.asarray(theta_init(X, None).ntk, np.float64)
    Ts = np.asarray(theta_init(X_test, X).ntk, np.float64)
    A = np.linalg.solve(T + noise * np.eye(T.shape[0]), Ts.T).T
    return mean, cov + noise * A @ A.T

r"""Exact GP regression by Cholesky, with K output columns sharing one kernel.

With :math:`K_y = K_{XX} + σ^2 I` (``noise`` = σ², per point allowed),
:math:`L L^T = K_y` (plus the dtype-aware jitter of :func:`psd_cholesky`),
:math:`R = Y - m(X)` and :math:`α = K_y^{-1} R` (Rasmussen & Williams 2006, Alg. 2.1):

.. math::

    \log p(Y) = -\tfrac12 \operatorname{tr}(R^T α) - K \textstyle\sum_i \log L_{ii}
                - \tfrac{NK}{2} \log 2π

    μ_* = m(X_*) + K_{*X} α, \qquad
    Σ_* = K_{**} - V^T V, \quad V = L^{-1} K_{X*}

and the leave-one-out predictive of each observation (R&W eqs. 5.10–5.12):

.. math::

    μ_{-i} = y_i - α_i / [K_y^{-1}]_{ii}, \qquad σ^2_{-i} = 1 / [K_y^{-1}]_{ii}, \qquad
    \log p(y_i \mid Y_{-i}) = -\tfrac12 \log(2π σ^2_{-i}) - \frac{(y_i - μ_{-i})^2}{2σ^2_{-i}}.

Constructing :class:`ExactGP` is the fit (one kernel matrix, one Cholesky, one solve);
it is an :class:`equinox.Module`, so build it inside a jitted or differentiated function
to fit hyperparameters or to run NUTS through :meth:`ExactGP.log_marginal_likelihood`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._linalg import (
    batched_psd_cholesky,
    cho_solve,
    first_jitter,
    psd_cholesky,
    report_factor,
    tri_solve,
)
from .._numerics import POSITIVE_INT, check_int, full_precision, has_tracer, program_when_concrete
from ._checks import check_jitter, check_key, check_noise, check_X, check_y, mean_values
from ._kernels import GPKernel, as_kernel, check_kernel_matrix

if TYPE_CHECKING:
    from ..stax import Layer

__all__ = [
    "ExactGP",
    "cholesky_factor",
    "condition_on",
    "log_density",
    "loo_log_predictive",
    "posterior_moments",
    "solve_alpha",
]

_LOG_2PI = math.log(2.0 * math.pi)


class ExactGP(eqx.Module):
    """Exact posterior of a GP (or an infinitely wide network) given noisy observations.

    Args:
        kernel: a stax network (NNGP unless ``kind="ntk"``), a :class:`GPKernel`, or a
            callable ``k(X1, X2)``.
        X: inputs ``(N, ...)``.
        y: targets ``(N,)`` or ``(N, K)``; the K columns share the kernel.
        noise: observation noise *variance* σ² >= 0, scalar or ``(N,)``.
        mean: constant mean (scalar or ``(K,)``) or a callable ``m(X)`` of JAX
            operations (it runs inside the fit's compiled program).
        jitter: first relative jitter of the Cholesky ladder (default by dtype).
        kind: kernel of a network: ``"nngp"`` or ``"ntk"``.

    Attributes:
        L: lower Cholesky factor of ``K + σ² I`` (+ jitter).
        alpha: ``K_y^{-1} (y - m(X))``, ``(N, K)``.
        jitter_used: the relative jitter the factorisation needed.
    """

    kernel: GPKernel
    X: Array
    y: Array
    noise: Array
    mean: Any
    L: Array
    alpha: Array
    jitter_used: Array
    squeeze: bool = eqx.field(static=True)

    @full_precision
    def __init__(
        self,
        kernel: Layer | GPKernel | Callable[..., Array],
        X: ArrayLike,
        y: ArrayLike,
        noise: ArrayLike,
        mean: ArrayLike | Callable[[Array], Array] = 0.0,
        jitter: float | None = None,
        kind: str = "nngp",
    ) -> None:
        self.kernel = as_kernel(kernel, kind)
        self.X = check_X(X)
        n = self.X.shape[0]
        y2, self.squeeze = check_y(y, n)
        self.noise = check_noise(noise, n)
        self.mean = mean
        jitter = check_jitter(jitter)
        # the kernel matrix is its own program (shared with every other user of this
        # network and shape); the rest of the fit is one more
        K = check_kernel_matrix(self.kernel(self.X, None), (n, n), "k(X, X)")
        args = (K, self.X, y2, self.noise, mean, jitter)
        if has_tracer(args):
            self.y, self.L, self.jitter_used, self.alpha = _fit(*args)
            return
        self.y, self.L, self.jitter_used, self.alpha, ok = _fit_program(*args)
        j0 = first_jitter(jitter, K.dtype)
        gram = lambda: _noisy(K, self.noise)  # noqa: E731 (only for a failure's message)
        report_factor(bool(ok), self.jitter_used, j0, _KY, gram)

    # -- evidence ------------------------------------------------------------------
    @property
    def num_outputs(self) -> int:
        return self.y.shape[1]

    def _residual(self):
        return self.y - mean_values(self.mean, self.X, self.num_outputs, self.y.dtype)

    @full_precision
    def log_marginal_likelihood(self) -> Float[Array, ""]:
        """``log p(y | X, θ)`` summed over the output columns."""
        return _log_marginal_likelihood(self)

    # -- posterior -----------------------------------------------------------------
    @full_precision
    def predict(
        self,
        X_test: ArrayLike,
        full_cov: bool = False,
        include_noise: bool = False,
        noise_test: ArrayLike | None = None,
    ) -> tuple[Array, Array]:
        """Posterior mean and variance (or covariance) of the latent f at ``X_test``.

        Args:
            X_test: ``(M, ...)`` test inputs.
            full_cov: return the ``(M, M)`` covariance (shared by all columns) instead
                of marginal variances.
            include_noise: add the observation noise (predictive of new y).
            noise_test: noise variance at ``X_test`` when ``noise`` was per point.

        Returns:
            ``(mean, var)`` with mean ``(M,)``/``(M, K)`` like ``y`` and var of the
                mean's shape, or ``(mean, cov)`` with cov ``(M, M)``.
        """
        Xs, extra = self._test_inputs(X_test, include_noise, noise_test)
        return _predict(self, Xs, full_cov, extra)

    def _test_inputs(self, X_test, include_noise, noise_test):
        """Checked ``X_test`` and the noise variance to add there (an array, 0 without
        ``include_noise``, so that one program serves both)."""
        Xs = check_X(X_test, "X_test")
        if Xs.shape[1:] != self.X.shape[1:]:
            raise ValueError(
                f"`X_test` has per-point shape {Xs.shape[1:]} but X has {self.X.shape[1:]}"
            )
        if include_noise:
            return Xs, self._test_noise(noise_test, Xs.shape[0])
        return Xs, jnp.zeros((), self.L.dtype)

    def _test_noise(self, noise_test, m):
        if noise_test is not None:
            return check_noise(noise_test, m, "noise_test").astype(self.L.dtype)
        if self.noise.ndim:
            raise ValueError(
                "`noise` was given per training point; pass `noise_test` (scalar or one per "
                "test point) to include observation noise in the prediction"
            )
        return self.noise.astype(self.L.dtype)

    def _shape(self, a):
        return a[:, 0] if self.squeeze else a

    @full_precision
    def sample(
        self,
        key: PRNGKeyArray,
        X_test: ArrayLike,
        n_samples: int = 1,
        include_noise: bool = False,
        noise_test: ArrayLike | None = None,
    ) -> Array:
        """Joint posterior samples of f (or new y) at ``X_test``.

        The covariance is factorised with the jitter policy of :func:`psd_cholesky`,
        the relative jitter scaled by the prior variance at ``X_test`` (the round-off of
        ``K_** - V^T V`` is that of ``K_**``, not of the small posterior variance).

        Args:
            key: a PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``).
            X_test: ``(M, ...)`` test inputs.
            n_samples: number of joint draws.
            include_noise: draw new observations (add the noise variance).
            noise_test: noise variance at ``X_test`` when ``noise`` was per point.

        Returns:
            ``(n_samples, M)`` or ``(n_samples, M, K)``.
        """
        key = check_key(key)
        n_samples = check_int(
            n_samples,
            "n_samples",
            low=1,
            message=POSITIVE_INT,
        )
        Xs, extra = self._test_inputs(X_test, include_noise, noise_test)
        mean, cov = _predict(self, Xs, True, extra)
        scale = _prior_variance(self.kernel, Xs, extra, self.L.dtype)
        Lc, _ = psd_cholesky(cov, name="posterior covariance", scale=scale)
        return _draw(key, mean, Lc, n_samples, self.squeeze)

    # -- leave-one-out -------------------------------------------------------------
    def _inverse_diag(self):
        return _inverse_diag(self.L)

    @full_precision
    def loo_mean_var(self) -> tuple[Array, Array]:
        """Leave-one-out predictive mean and variance of each observation ``y_i``.

        Returns:
            ``(mu, var)`` shaped like ``y``.
        """
        return _loo_mean_var(self)

    @full_precision
    def loo_log_predictive(self) -> Array:
        """``log p(y_i | y_{-i})`` for each point (and column), R&W eq. 5.10.

        Returns:
            An array shaped like ``y``; its sum is the LOO log predictive probability.
        """
        return _loo_log_predictive(self)


# -- ExactGP's work: one compiled program per call when its inputs hold values
# (program_when_concrete), inline inside a caller's trace ----------------------------------
_KY = "k(X, X) + noise"


def _noisy(K, noise):
    """``K + diag(noise)`` in the kernel's dtype."""
    return K + jnp.diag(jnp.broadcast_to(noise.astype(K.dtype), (K.shape[0],)))


def _fit(K, X, y, noise, mean, jitter):
    """``(y, L, jitter_used, alpha)`` of the fit, given ``K = k(X, X)``."""
    y = y.astype(K.dtype)
    r = y - mean_values(mean, X, y.shape[1], K.dtype)
    L, jitter_used = cholesky_factor(_noisy(K, noise), jitter, _KY)
    return y, L, jitter_used, cho_solve(L, r)


@eqx.filter_jit
def _fit_program(K, X, y, noise, mean, jitter):
    """:func:`_fit` and whether its factor is finite (the flag, not L, goes to the host)."""
    y, L, jitter_used, alpha = _fit(K, X, y, noise, mean, jitter)
    return y, L, jitter_used, alpha, jnp.all(jnp.isfinite(L))


@program_when_concrete
def _log_marginal_likelihood(gp):
    return jnp.sum(log_density(gp.L, gp._residual().T, gp.alpha.T))


@program_when_concrete
def _predict(gp, Xs, full_cov, extra):
    """Posterior moments at ``Xs`` plus ``extra`` (the test noise variance, or 0)."""
    m = Xs.shape[0]
    mean, var = posterior_moments(gp.kernel, gp.X, Xs, gp.L, gp.alpha, full_cov)
    mean = mean + mean_values(gp.mean, Xs, gp.num_outputs, gp.L.dtype)
    if full_cov:
        return gp._shape(mean), var + jnp.diag(jnp.broadcast_to(extra, (m,)))
    var = var + extra
    return gp._shape(mean), gp._shape(jnp.broadcast_to(var[:, None], mean.shape))


@program_when_concrete
def _prior_variance(kernel, Xs, extra, dtype):
    """Mean prior variance at ``Xs`` (plus the test noise ``extra``): the scale of the
    posterior covariance's jitter."""
    return jnp.mean(kernel.diag(Xs).astype(dtype)) + jnp.mean(extra).astype(dtype)


@program_when_concrete
def _draw(key, mean, Lc, n_samples, squeeze):
    mean2 = mean[:, None] if squeeze else mean
    z = jax.random.normal(key, (n_samples,) + mean2.shape, mean2.dtype)
    draws = mean2[None] + jnp.einsum("ij,sjk->sik", Lc, z)
    return draws[..., 0] if squeeze else draws


@program_when_concrete
def _loo_mean_var(gp):
    d = gp._inverse_diag()[:, None]
    mu = gp.y - gp.alpha / d
    var = jnp.broadcast_to(1.0 / d, mu.shape)
    return gp._shape(mu), gp._shape(var)


@program_when_concrete
def _loo_log_predictive(gp):
    return gp._shape(loo_log_predictive(gp.L, gp.alpha.T).T)


# -- the exact-GP core: ExactGP and priors.GaussianProcess both run on these -------------
def cholesky_factor(Ky, jitter=None, name: str = "k(X, X) + noise"):
    """``(L, jitter_used)`` of ``K_y`` (or a batch ``(..., n, n)``) by the jitter policy of
    :func:`~ntk_bayes._linalg.psd_cholesky`."""
    return batched_psd_cholesky(Ky, jitter, name=name)


def log_density(L, r, alpha=None):
    """``log N(r | 0, L L^T)`` for residuals ``r`` ``(..., n)`` (R&W eq. 2.30).

    ``alpha = K_y^{-1} r`` is reused when the caller has it (shape of ``r``).
    """
    n = L.shape[-1]
    if alpha is None:
        z = _solve_rows(L, r)
        quad = jnp.sum(z * z, axis=-1)
    else:
        quad = jnp.sum(r * alpha, axis=-1)
    logdet = jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)
    return -0.5 * quad - logdet - 0.5 * n * _LOG_2PI


def solve_alpha(L, r):
    """``K_y^{-1} r`` for residual rows ``r`` ``(..., n)`` given ``L`` ``(n, n)``."""
    flat = r.reshape((-1, r.shape[-1]))
    return cho_solve(L, flat.T).T.reshape(r.shape)


def loo_log_predictive(L, alpha):
    """``log p(y_i | y_{-i})`` from ``L`` ``(n, n)`` and ``alpha = K_y^{-1} r`` ``(..., n)``
    (R&W eqs. 5.10-5.12)."""
    d = _inverse_diag(L)
    return -0.5 * _LOG_2PI + 0.5 * jnp.log(d) - 0.5 * alpha**2 / d


def posterior_moments(kernel, X, Xs, L, alpha, full_cov: bool):
    """Latent posterior at ``Xs`` without the prior mean: ``(K_{*X} alpha, Σ_*)``
    (R&W eqs. 2.23-2.24); ``alpha`` is ``(N, K)``."""
    return _predict_core(kernel, X, Xs, L, alpha, full_cov)


def _solve_rows(L, r):
    flat = r.reshape((-1, r.shape[-1]))
    return tri_solve(L, flat.T).T.reshape(r.shape)


@eqx.filter_jit
def _predict_core(kernel, X, Xs, L, alpha, full_cov):
    n, m = X.shape[0], Xs.shape[0]
    Kxs = check_kernel_matrix(kernel(X, Xs), (n, m), "k(X, X_test)").astype(L.dtype)
    if full_cov:
        Kss = check_kernel_matrix(kernel(Xs, None), (m, m), "k(X_test, X_test)")
    else:
        Kss = kernel.diag(Xs)
    return condition_on(Kxs, Kss.astype(L.dtype), L, alpha)


def condition_on(Kxs, Kss, L, alpha):
    """Conditioning given the kernel blocks: ``(K_{*X} alpha, K_** - V^T V)`` with
    ``V = L^{-1} K_{X*}``; ``Kss`` ``(m, m)`` gives the covariance, ``(m,)`` the marginal
    variances (clipped at 0)."""
    V = tri_solve(L, Kxs)
    mean = Kxs.T @ alpha
    if Kss.ndim == 2:
        return mean, Kss - V.T @ V
    return mean, jnp.maximum(Kss - jnp.sum(V * V, axis=0), 0.0)


@jax.jit
def _inverse_diag(L):
    Linv = tri_solve(L, jnp.eye(L.shape[0], dtype=L.dtype))
    return jnp.sum(Linv * Linv, axis=0)  # [K_y^{-1}]_ii = sum_j (L^{-1})_ji^2

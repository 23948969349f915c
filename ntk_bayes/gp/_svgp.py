r"""Stochastic variational GP (Hensman, Fusi & Lawrence 2013; Hensman et al. 2015).

L latent GPs share one kernel and M inducing inputs Z; :math:`L_{uu} L_{uu}^T = K_{ZZ}`
(+ jitter). Whitened (default): :math:`u_l = L_{uu} v_l`, :math:`q(v_l) = \mathcal N(m_l,
S_l)`, :math:`S_l = R_l R_l^T` (``q_mu[:, l]``, lower-triangular ``q_sqrt[l]``). With
:math:`A = L_{uu}^{-1} K_{ZX}` the marginals of :math:`q(f_l)` at a batch are

.. math::

    μ_l = m_0 + A^T m_l, \qquad
    v_l = \operatorname{diag}(K_{XX}) - \textstyle\sum_m A_{m\cdot}^2
          + \textstyle\sum_m (R_l^T A)_{m\cdot}^2

(unwhitened: replace :math:`A` by :math:`K_{ZZ}^{-1} K_{ZX}` in the terms with
:math:`m_l, R_l`). The minibatch ELBO for a batch b of the ``num_data`` points is

.. math::

    \mathcal L = \frac{N}{|b|} \sum_{n \in b} \mathbb E_{q(f_n)}[\log p(y_n \mid f_n)]
                 - \sum_l \mathrm{KL}[q(v_l) \,\|\, \mathcal N(0, I)],

    \mathrm{KL}_l = \tfrac12 \bigl(\lVert R_l\rVert_F^2 + \lVert m_l\rVert^2 - M
                    - 2 \textstyle\sum_i \log |R_{l,ii}|\bigr)

(unwhitened: :math:`\tfrac12(\operatorname{tr}(K_{ZZ}^{-1}S_l) + m_l^T K_{ZZ}^{-1} m_l - M
+ \log|K_{ZZ}| - \log|S_l|)`), an unbiased estimate of the full ELBO.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._linalg import psd_cholesky, tri_solve
from .._numerics import POSITIVE_INT, check_int, full_precision, is_concrete
from ._checks import check_jitter, check_positive_noise, check_X, check_Z
from ._kernels import GPKernel, as_kernel, check_kernel_matrix
from ._likelihoods import Gaussian, Likelihood

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..stax import Layer

__all__ = ["SVGP", "SVGPParams"]


class SVGPParams(eqx.Module):
    """Variational parameters: ``q_mu (M, L)`` and lower-triangular ``q_sqrt (L, M, M)``."""

    q_mu: Array
    q_sqrt: Array


class SVGP(eqx.Module):
    """Sparse variational GP for large N and non-Gaussian likelihoods.

    Args:
        kernel: a stax network (``kind`` kernel), :class:`GPKernel` or callable.
        Z: inducing inputs ``(M, ...)``.
        likelihood: :class:`Gaussian`, :class:`Bernoulli`, :class:`Categorical`,
            :class:`Poisson` (or another :class:`Likelihood`).
        num_data: N, the size of the full data set (scales the minibatch term).
        whiten: parameterise q by the whitened ``v = L_uu^{-1} u``.
        num_latent: number of latent GPs; default the likelihood's (C for
            ``Categorical(C)``, else 1).
        mean: constant prior mean of each latent (scalar or ``(L,)``).
        jitter: first relative jitter for ``K_ZZ``.
        kind: ``"nngp"`` or ``"ntk"`` for a network kernel.
    """

    kernel: GPKernel
    Z: Array
    likelihood: Likelihood
    mean: Array
    num_data: int = eqx.field(static=True)
    whiten: bool = eqx.field(static=True)
    num_latent: int = eqx.field(static=True)
    jitter: float | None = eqx.field(static=True)

    @full_precision
    def __init__(
        self,
        kernel: Layer | GPKernel | Callable[..., Array],
        Z: ArrayLike,
        likelihood: Likelihood,
        num_data: int,
        whiten: bool = True,
        num_latent: int | None = None,
        mean: ArrayLike = 0.0,
        jitter: float | None = None,
        kind: str = "nngp",
    ) -> None:
        self.kernel = as_kernel(kernel, kind)
        if not isinstance(likelihood, Likelihood):
            raise TypeError(
                "`likelihood` must be an ntk_bayes.gp likelihood (Gaussian, Bernoulli, "
                f"Categorical, Poisson), got {type(likelihood).__name__}"
            )
        if isinstance(likelihood, Gaussian):
            # the Gaussian constructor ran check_noise; the bound also divides by it
            check_positive_noise(likelihood.noise, "SVGP", "Gaussian(noise)")
        num_data = check_int(
            num_data,
            "num_data",
            low=1,
            message="`{name}` must be a positive integer (N), got {value!r}",
        )
        self.Z = check_Z(Z, jnp.shape(Z), num_data)
        self.likelihood = likelihood
        want = likelihood.num_latent()
        if num_latent is None:
            num_latent = want
        if want > 1 and num_latent != want:
            raise ValueError(
                f"{type(likelihood).__name__} needs num_latent={want} (one latent GP per "
                f"class), got {num_latent}"
            )
        num_latent = check_int(
            num_latent,
            "num_latent",
            low=1,
            message=POSITIVE_INT,
        )
        self.num_latent = num_latent
        self.num_data = num_data
        self.whiten = bool(whiten)
        m0 = jnp.asarray(mean, self.Z.dtype)
        if m0.shape not in ((), (num_latent,)):
            raise ValueError(f"`mean` must be a scalar or ({num_latent},), got {m0.shape}")
        self.mean = m0
        self.jitter = check_jitter(jitter)

    @property
    def num_inducing(self) -> int:
        return self.Z.shape[0]

    @full_precision
    def init_params(self, q_sqrt_scale: float = 1.0, q_mu: ArrayLike | None = None) -> SVGPParams:
        """q(u) at the prior (whitened: ``N(0, scale² I)``; else ``N(0, scale² K_ZZ)``)."""
        m, L, dtype = self.num_inducing, self.num_latent, self.Z.dtype
        mu = jnp.zeros((m, L), dtype) if q_mu is None else jnp.asarray(q_mu, dtype).reshape(m, L)
        if self.whiten:
            R = jnp.eye(m, dtype=dtype)
        else:
            R = self._Luu()
        return SVGPParams(mu, jnp.broadcast_to(q_sqrt_scale * R, (L, m, m)))

    def _Luu(self):
        m = self.num_inducing
        Kuu = check_kernel_matrix(self.kernel(self.Z, None), (m, m), "k(Z, Z)")
        return psd_cholesky(Kuu, self.jitter, name="k(Z, Z)")[0]

    def _marginals(self, params, X, Luu):
        m = self.num_inducing
        Kuf = check_kernel_matrix(self.kernel(self.Z, X), (m, X.shape[0]), "k(Z, X)")
        # L^{-1} once, then matmuls (CPU triangular solves with many columns are slow)
        Linv = tri_solve(Luu, jnp.eye(m, dtype=Luu.dtype))
        A = Linv @ Kuf.astype(Luu.dtype)
        B = A if self.whiten else Linv.T @ A
        R = jnp.tril(params.q_sqrt)
        mu = B.T @ params.q_mu + self.mean
        RB = jnp.einsum("lji,jb->lib", R, B)  # R_l^T B
        var = (
            self.kernel.diag(X).astype(Luu.dtype)[:, None]
            - jnp.sum(A * A, 0)[:, None]
            + jnp.sum(RB * RB, 1).T
        )
        return mu, jnp.maximum(var, 0.0)

    @full_precision
    def kl(self, params: SVGPParams, Luu: Array | None = None) -> Float[Array, ""]:
        """``sum_l KL[q(u_l) || p(u_l)]``."""
        R = jnp.tril(params.q_sqrt)
        m = self.num_inducing
        logdet_s = 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diagonal(R, axis1=1, axis2=2))))
        if self.whiten:
            trace, quad, logdet_p = jnp.sum(R * R), jnp.sum(params.q_mu**2), 0.0
        else:
            Luu = self._Luu() if Luu is None else Luu
            LiR = jax.vmap(lambda r: tri_solve(Luu, r))(R)
            trace = jnp.sum(LiR * LiR)
            quad = jnp.sum(tri_solve(Luu, params.q_mu) ** 2)
            logdet_p = self.num_latent * 2.0 * jnp.sum(jnp.log(jnp.diag(Luu)))
        return 0.5 * (trace + quad - m * self.num_latent + logdet_p - logdet_s)

    @full_precision
    def elbo(
        self,
        params: SVGPParams,
        X_batch: ArrayLike,
        y_batch: ArrayLike,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, ""]:
        """Unbiased minibatch estimate of the ELBO of the whole data set."""
        X, y = self._check_xy(X_batch, y_batch, "X_batch", "y_batch")
        return self._guard(_elbo_core(self, params, X, y, key), "ELBO")

    @full_precision
    def predict(
        self, params: SVGPParams, X_test: ArrayLike, full_cov: bool = False
    ) -> tuple[Array, Array]:
        """Latent mean and variance at ``X_test``: ``(M,)`` (one latent) or ``(M, L)``.

        With ``full_cov`` the covariance is ``(M, M)`` (one latent) or ``(L, M, M)``.
        """
        Xs = self._check_inputs(X_test, "X_test")
        if not full_cov:
            mu, var = self._guard(_marginals_core(self, params, Xs), "prediction")
            return self._squeeze(mu), self._squeeze(var)
        mu, cov = self._guard(_full_cov_core(self, params, Xs), "prediction")
        return self._squeeze(mu), (cov[0] if self.num_latent == 1 else cov)

    @full_precision
    def predict_y(
        self, params: SVGPParams, X_test: ArrayLike, key: PRNGKeyArray | None = None
    ) -> tuple[Array, Array]:
        """Predictive mean and variance of y (class probabilities for Categorical)."""
        Xs = self._check_inputs(X_test, "X_test")
        mean, v = self._guard(_predict_y_core(self, params, Xs, key), "prediction")
        return self._squeeze(mean), self._squeeze(v)

    @full_precision
    def predict_log_density(
        self,
        params: SVGPParams,
        X_test: ArrayLike,
        y_test: ArrayLike,
        key: PRNGKeyArray | None = None,
    ) -> Array:
        """``log ∫ p(y_n | f) q(f) df`` per test point, ``(M,)``."""
        Xs, y = self._check_xy(X_test, y_test, "X_test", "y_test")
        return self._guard(_log_density_core(self, params, Xs, y, key), "log density")

    def _check_inputs(self, X, name):
        X = check_X(X, name)
        if X.shape[1:] != self.Z.shape[1:]:
            raise ValueError(
                f"`{name}` has per-point shape {X.shape[1:]} but the inducing inputs `Z` have "
                f"{self.Z.shape[1:]}; they must match"
            )
        return X

    def _check_xy(self, X, y, xname, yname):
        X = self._check_inputs(X, xname)
        y = self.likelihood.check_y(y, self.num_latent)
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"`{xname}` has {X.shape[0]} points but `{yname}` has {y.shape[0]}")
        return X, (y if y.dtype == jnp.int32 else y.astype(X.dtype))

    def _guard(self, out, what: str):
        """Explain a NaN from the compiled path instead of returning it silently."""
        leaves = jax.tree_util.tree_leaves(out)
        if all(is_concrete(v) for v in leaves) and any(
            np.isnan(np.asarray(v)).any() for v in leaves
        ):
            self._Luu()  # eagerly: warns on escalation, raises NotPSDError naming lambda_min
            raise FloatingPointError(
                f"the SVGP {what} is NaN although k(Z, Z) factorises: check the variational "
                "parameters (q_sqrt diagonal), the likelihood's parameters and the inputs"
            )
        return out

    def _squeeze(self, a):
        if self.num_latent == 1 and a.ndim == 2 and a.shape[1] == 1:
            return a[:, 0]
        return a


@eqx.filter_jit
def _elbo_core(model, params, X, y, key):
    Luu = model._Luu()
    mu, var = model._marginals(params, X, Luu)
    ve = model.likelihood.variational_expectation(y, mu, var, key)
    return model.num_data / X.shape[0] * jnp.sum(ve) - model.kl(params, Luu)


@eqx.filter_jit
def _marginals_core(model, params, X):
    return model._marginals(params, X, model._Luu())


@eqx.filter_jit
def _full_cov_core(model, params, X):
    Luu = model._Luu()
    m = model.num_inducing
    Kus = check_kernel_matrix(model.kernel(model.Z, X), (m, X.shape[0]), "k(Z, X_test)")
    Linv = tri_solve(Luu, jnp.eye(m, dtype=Luu.dtype))
    A = Linv @ Kus.astype(Luu.dtype)
    B = A if model.whiten else Linv.T @ A
    mu = B.T @ params.q_mu + model.mean
    RB = jnp.einsum("lji,jb->lib", jnp.tril(params.q_sqrt), B)
    Kss = model.kernel(X, None).astype(Luu.dtype)
    return mu, Kss[None] - (A.T @ A)[None] + jnp.einsum("lib,lic->lbc", RB, RB)


@eqx.filter_jit
def _predict_y_core(model, params, X, key):
    mu, var = model._marginals(params, X, model._Luu())
    return model.likelihood.predict_mean_var(mu, var, key)


@eqx.filter_jit
def _log_density_core(model, params, X, y, key):
    mu, var = model._marginals(params, X, model._Luu())
    return model.likelihood.predict_log_density(y, mu, var, key)

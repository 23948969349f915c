r"""NNGP and NTK Gaussian-process priors as NumPyro distributions.

For a network ``net`` with kernel κ ∈ {Σ (NNGP), Θ (NTK)} evaluated at the
inputs X, the observations follow

.. math::

    y \sim \mathcal N\big(m(X),\; κ(X, X) + σ^2 I\big),

one independent column per output (``num_outputs``). The posterior predictive at
X* (:meth:`GaussianProcess.condition`) is (Rasmussen & Williams 2006, eq. 2.23–2.24)

.. math::

    f_* \mid y \sim \mathcal N\big(m_* + K_{*x} K_y^{-1}(y - m),\;
                                  K_{**} - K_{*x} K_y^{-1} K_{x*}\big),
    \qquad K_y = κ(X, X) + σ^2 I.

``noise`` is the variance σ². Inputs follow the network (``(N, d)`` data, images,
sequences); the event is the vector of N observations, so several output columns
share the kernel as a batch of shape ``(num_outputs,)`` and are observed as ``y.T``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.util import lazy_property

from .._linalg import psd_cholesky, tri_solve
from .._numerics import as_float_array, check_finite, full_precision, is_concrete
from ..stax import Layer

__all__ = ["GaussianProcess", "ConditionedGP", "KERNELS"]

KERNELS = ("nngp", "ntk")


def _check_kernel_name(kernel):
    if kernel not in KERNELS:
        raise ValueError(f"`kernel` must be one of {KERNELS}, got {kernel!r}")


def _check_noise(noise):
    if noise is None:
        return
    if is_concrete(noise):
        # NumPy, not jnp: under an outer jit, jnp would stage even a Python float.
        arr = np.asarray(noise)
        if arr.ndim > 1:
            raise ValueError(f"`noise` must be a scalar or a vector of length N, got {arr.shape}")
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError(
                f"`noise` is the observation noise variance and must be finite and >= 0, got "
                f"{noise}"
            )


class _MVNBase(dist.Distribution):
    """Shared log-density and sampling of a multivariate normal given by a Cholesky factor."""

    support = constraints.real_vector
    pytree_data_fields = ("loc", "scale_tril")
    pytree_aux_fields = ("num_outputs",)

    def _setup(self, loc, scale_tril, num_outputs):
        self.loc, self.scale_tril, self.num_outputs = loc, scale_tril, num_outputs
        n = loc.shape[-1]
        batch = () if num_outputs is None else (num_outputs,)
        super().__init__(batch_shape=batch, event_shape=(n,))

    @property
    def mean(self):
        return jnp.broadcast_to(self.loc, self.batch_shape + self.event_shape)

    @property
    @full_precision
    def covariance(self):
        c = self.scale_tril @ self.scale_tril.T
        return jnp.broadcast_to(c, self.batch_shape + self.event_shape * 2)

    @property
    @full_precision
    def variance(self):
        v = jnp.sum(self.scale_tril**2, axis=-1)
        return jnp.broadcast_to(v, self.batch_shape + self.event_shape)

    @full_precision
    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape + self.event_shape
        eps = jax.random.normal(key, shape, dtype=self.scale_tril.dtype)
        return self.loc + jnp.einsum("ij,...j->...i", self.scale_tril, eps)

    @full_precision
    def log_prob(self, value):
        value = jnp.asarray(value)
        n = self.event_shape[0]
        if value.shape[-1:] != (n,):
            raise ValueError(
                f"value has trailing size {value.shape[-1:]} but the GP is over {n} points; "
                "observe y of shape (N,) or, with num_outputs=K, y.T of shape (K, N)"
            )
        resid = value - self.loc
        z = tri_solve(self.scale_tril, jnp.moveaxis(resid.reshape((-1, n)), -1, 0))
        quad = jnp.sum(z * z, axis=0).reshape(resid.shape[:-1])
        logdet = jnp.sum(jnp.log(jnp.diag(self.scale_tril)))
        return -0.5 * quad - logdet - 0.5 * n * math.log(2 * math.pi)


class GaussianProcess(_MVNBase):
    """Distribution of the observations at ``X`` under a network's NNGP or NTK prior.

    Args:
        net: an ``ntk_bayes.stax`` network (its hyperparameters may be sample sites).
        X: inputs, ``(N, ...)`` as the network expects.
        kernel: ``"nngp"`` (Bayesian network at initialisation) or ``"ntk"`` (the
            NTK-GP of He et al. 2020 uses Θ as the prior covariance).
        noise: observation noise variance σ² (scalar or ``(N,)``); ``None`` means a
            noiseless GP (only ``jitter``).
        mean: constant, ``(N,)`` vector, or callable ``mean(X) -> (N,)``; default 0.
        jitter: relative diagonal jitter (times mean diagonal); default by dtype.
        num_outputs: ``None`` for one output, or K for K columns sharing the kernel
            (batch shape ``(K,)``; observe ``y.T``).
    """

    pytree_data_fields = ("net", "X", "noise", "mean_value", "kxx")
    pytree_aux_fields = ("kernel", "jitter", "mean_fn", "mean_is_vector")

    @full_precision
    def __init__(
        self,
        net,
        X,
        kernel: str = "nngp",
        noise=None,
        mean=None,
        jitter=None,
        num_outputs: int | None = None,
        *,
        validate_args=None,
    ):
        if not isinstance(net, Layer):
            raise TypeError(
                f"`net` must be an ntk_bayes.stax network, got {type(net).__name__}; build it "
                "with stax.serial(...)"
            )
        _check_kernel_name(kernel)
        _check_noise(noise)
        if num_outputs is not None and (
            isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1
        ):
            raise ValueError(f"`num_outputs` must be None or a positive int, got {num_outputs!r}")
        if jitter is not None and (not isinstance(jitter, int | float) or jitter < 0):
            raise ValueError(f"`jitter` must be a non-negative float, got {jitter!r}")
        X = as_float_array(X, "X")
        check_finite(X, "X")
        try:
            out_shape = net.output_shape(X.shape)
        except (ValueError, TypeError) as e:
            raise ValueError(f"`X` of shape {X.shape} does not fit the network: {e}") from None
        if len(out_shape) != 2 or out_shape[-1] != 1:
            raise ValueError(
                f"the network maps X to shape {tuple(out_shape)}; a GP prior needs one output "
                "per point: end the network with Dense(1) (use num_outputs for several columns)"
            )
        n = X.shape[0]
        mean_fn = mean if callable(mean) else None
        m = mean_fn(X) if mean_fn is not None else (0.0 if mean is None else mean)
        mean_is_vector = mean_fn is None and jnp.ndim(m) > 0
        if mean_is_vector and jnp.shape(m) != (n,):
            raise ValueError(
                f"`mean` must be a scalar, (N,)={n} vector or callable, got {jnp.shape(m)}"
            )
        m = jnp.broadcast_to(jnp.asarray(m, X.dtype), (n,))
        kxx = net.kernel_fn(X, None, kernel)
        self.net, self.X, self.kernel, self.noise = net, X, kernel, noise
        self.jitter, self.mean_fn, self.mean_value, self.kxx = jitter, mean_fn, m, kxx
        self.mean_is_vector = bool(mean_is_vector)
        ky = kxx if noise is None else kxx + jnp.diag(jnp.broadcast_to(noise, (n,)))
        L, _ = psd_cholesky(ky, jitter=jitter, name=f"{kernel} kernel matrix + noise")
        self._setup(m, L, num_outputs)

    def _validate_y(self, y):
        y = as_float_array(y, "y")
        check_finite(y, "y")
        n = self.event_shape[0]
        want = self.batch_shape + (n,)
        if y.shape != want:
            hint = " (pass y.T for (N, K) data)" if y.shape[::-1] == want else ""
            raise ValueError(f"`y` has shape {y.shape}, expected {want}{hint}")
        return y

    @full_precision
    def condition(self, y, X_test=None, *, include_noise: bool = False, diag: bool = False):
        """Posterior predictive of the latent function at ``X_test`` (default: ``X``).

        Returns a :class:`ConditionedGP`: a distribution with ``mean``, ``variance``,
        ``covariance``, ``sample`` and ``log_prob``, usable as a NumPyro site.
        ``include_noise`` adds σ² (predicting new observations, not f).
        """
        y = self._validate_y(y)
        if X_test is not None and self.mean_is_vector:
            raise ValueError(
                "a vector `mean` has no value at X_test; pass a constant or a callable mean(X)"
            )
        Xs = self.X if X_test is None else as_float_array(X_test, "X_test")
        check_finite(Xs, "X_test")
        if Xs.shape[1:] != self.X.shape[1:]:
            raise ValueError(
                f"`X_test` has per-point shape {Xs.shape[1:]}, the training inputs "
                f"{self.X.shape[1:]}"
            )
        k = self.net.kernel_fn(Xs, self.X, self.kernel)
        kss = self.net.kernel_fn(Xs, None, self.kernel)
        L = self.scale_tril
        A = tri_solve(L, k.T)  # L^-1 K_x*
        alpha = tri_solve(L, (y - self.loc).T)  # L^-1 (y - m), (N, K) or (N,)
        ms = self.mean_fn(Xs) if self.mean_fn is not None else self.mean_value[0]
        mean = jnp.broadcast_to(jnp.asarray(ms, Xs.dtype), (Xs.shape[0],)) + (A.T @ alpha).T
        cov = kss - A.T @ A
        if include_noise and self.noise is not None:
            noise = jnp.asarray(self.noise)
            if noise.ndim:
                raise ValueError("include_noise needs a scalar noise variance")
            cov = cov + noise * jnp.eye(cov.shape[0], dtype=cov.dtype)
        return ConditionedGP(mean, cov, jitter=self.jitter, diag=diag)

    @full_precision
    def loo_log_likelihood(self, y):
        """Leave-one-out predictive log densities log p(y_i | y_-i), shape ``(N,)`` or
        ``(K, N)`` (Rasmussen & Williams 2006, eq. 5.10–5.12)."""
        y = self._validate_y(y)
        n = self.event_shape[0]
        L = self.scale_tril
        Linv = tri_solve(L, jnp.eye(n, dtype=L.dtype))
        kinv_diag = jnp.sum(Linv**2, axis=0)
        alpha = Linv.T @ (Linv @ (y - self.loc).T)  # K_y^-1 (y - m)
        var = 1.0 / kinv_diag
        resid = alpha.T / kinv_diag  # y_i - mu_i
        return -0.5 * jnp.log(2 * math.pi * var) - 0.5 * resid**2 / var


class ConditionedGP(_MVNBase):
    """A GP posterior (or any MVN given by mean and covariance) as a NumPyro distribution.

    ``mean`` is ``(M,)`` or ``(K, M)`` (one row per output column); ``covariance``
    ``(M, M)`` is shared by the columns. The Cholesky factor is computed only when
    sampling or evaluating densities, so reading ``mean``/``variance`` of a posterior on
    a dense grid (often numerically singular in float32) costs nothing extra. With
    ``diag=True`` only the marginal variances are used (independent points).
    """

    pytree_data_fields = ("cov",)
    pytree_aux_fields = ("diag", "jitter")

    @full_precision
    def __init__(self, mean, cov, jitter=None, diag: bool = False, *, validate_args=None):
        mean = jnp.asarray(mean)
        self.cov, self.diag, self.jitter = jnp.asarray(cov), diag, jitter
        self.loc, self.num_outputs = mean, (mean.shape[0] if mean.ndim == 2 else None)
        batch = () if self.num_outputs is None else (self.num_outputs,)
        dist.Distribution.__init__(self, batch_shape=batch, event_shape=mean.shape[-1:])

    @lazy_property
    @full_precision
    def scale_tril(self):
        if self.diag:
            return jnp.diag(jnp.sqrt(jnp.maximum(jnp.diag(self.cov), 0.0)))
        return psd_cholesky(self.cov, jitter=self.jitter, name="posterior covariance")[0]

    @property
    @full_precision
    def covariance(self):
        c = jnp.diag(jnp.diag(self.cov)) if self.diag else self.cov
        return jnp.broadcast_to(c, self.batch_shape + self.event_shape * 2)

    @property
    @full_precision
    def variance(self):
        return jnp.broadcast_to(jnp.diag(self.cov), self.batch_shape + self.event_shape)

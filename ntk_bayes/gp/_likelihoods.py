r"""Likelihoods for SVGP: expected log-likelihoods under q(f), and predictives.

For a Gaussian marginal :math:`q(f) = \mathcal N(μ, v)` each likelihood provides the
variational expectation :math:`\mathbb E_q[\log p(y \mid f)]` (the data term of the
ELBO), the predictive moments of y and the predictive log density
:math:`\log \int p(y \mid f) q(f) df`. One-dimensional integrals use Gauss–Hermite
quadrature, :math:`\mathbb E_q[g(f)] \approx π^{-1/2} \sum_i w_i g(μ + \sqrt{2v} x_i)`;
closed forms are used where they exist (Gaussian, Poisson expectation, probit).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, log_ndtr, logsumexp, ndtr

from .._numerics import as_float_array, check_int, is_concrete
from ._checks import check_noise

__all__ = ["Likelihood", "Gaussian", "Bernoulli", "Categorical", "Poisson", "gauss_hermite"]

_LOG_2PI = math.log(2.0 * math.pi)


def gauss_hermite(n: int, dtype):
    """Nodes ``x`` and weights ``w / sqrt(pi)`` so that sum w g(mu + sqrt(2 v) x) = E g."""
    x, w = np.polynomial.hermite.hermgauss(n)
    return jnp.asarray(x, dtype), jnp.asarray(w / np.sqrt(np.pi), dtype)


def _reject(bad, v, what: str, fix: str):
    """Raise naming how many targets are bad, the first rows and values, and the fix."""
    rows = np.flatnonzero(np.any(bad.reshape(bad.shape[0], -1), axis=1))
    if rows.size == 0:
        return
    first = rows[:5]
    vals = [np.asarray(v).reshape(v.shape[0], -1)[r][0].item() for r in first]
    shown = ", ".join(f"row {r}: {x!r}" for r, x in zip(first, vals, strict=True))
    raise ValueError(
        f"{rows.size} target(s) `y` are not {what} ({shown}{' ...' if rows.size > 5 else ''}); "
        f"{fix}"
    )


def _gh_expect(g, mu, var, n):
    """E_{N(mu, var)}[g(f)] elementwise by n-point Gauss–Hermite."""
    x, w = gauss_hermite(n, mu.dtype)
    f = mu[..., None] + jnp.sqrt(2.0 * var)[..., None] * x
    return jnp.sum(w * g(f), axis=-1)


def _gh_log_expect(logg, mu, var, n):
    """log E_{N(mu, var)}[exp(logg(f))], stably."""
    x, w = gauss_hermite(n, mu.dtype)
    f = mu[..., None] + jnp.sqrt(2.0 * var)[..., None] * x
    return logsumexp(logg(f) + jnp.log(w), axis=-1)


class Likelihood(eqx.Module):
    """Base class. ``mu``/``var`` are ``(B, L)`` latent marginals; ``y`` is checked by
    :meth:`check_y` into the shape the methods expect."""

    def num_latent(self) -> int:
        return 1

    def check_y(self, y, n_latent: int):
        """Targets as ``(B, n_latent)``; concrete values that this likelihood cannot
        have produced (NaN, inf, and each subclass's own domain) raise ``ValueError``
        naming the rows, before any compilation."""
        y = as_float_array(y, "y")
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2 or y.shape[1] != n_latent:
            raise ValueError(
                f"`y` must be (B,) or (B, {n_latent}) for {type(self).__name__}, got {y.shape}"
            )
        if is_concrete(y):
            v = np.asarray(y)
            _reject(~np.isfinite(v), v, "finite", "remove or impute NaN/inf targets")
        return y

    def variational_expectation(self, y, mu, var, key=None):  # pragma: no cover
        raise NotImplementedError

    def predict_mean_var(self, mu, var, key=None):  # pragma: no cover
        raise NotImplementedError

    def predict_log_density(self, y, mu, var, key=None):  # pragma: no cover
        raise NotImplementedError


class Gaussian(Likelihood):
    """``y ~ N(f, noise)`` with noise *variance* ``noise``."""

    noise: jax.Array

    def __init__(self, noise):
        self.noise = check_noise(noise, None)

    def variational_expectation(self, y, mu, var, key=None):
        s2 = self.noise.astype(mu.dtype)
        return jnp.sum(-0.5 * (_LOG_2PI + jnp.log(s2)) - 0.5 * ((y - mu) ** 2 + var) / s2, -1)

    def predict_mean_var(self, mu, var, key=None):
        return mu, var + self.noise.astype(mu.dtype)

    def predict_log_density(self, y, mu, var, key=None):
        v = var + self.noise.astype(mu.dtype)
        return jnp.sum(-0.5 * (_LOG_2PI + jnp.log(v)) - 0.5 * (y - mu) ** 2 / v, -1)


class Bernoulli(Likelihood):
    """``y ∈ {0, 1}``, ``p(y=1|f) = sigmoid(f)`` (``link="logit"``) or ``Φ(f)`` ("probit")."""

    link: str = eqx.field(static=True, default="logit")
    gh_points: int = eqx.field(static=True, default=20)

    def __init__(self, link: str = "logit", gh_points: int = 20):
        if link not in ("logit", "probit"):
            raise ValueError(f"`link` must be 'logit' or 'probit', got {link!r}")
        self.link = link
        self.gh_points = int(gh_points)

    def check_y(self, y, n_latent):
        y = super().check_y(y, n_latent)
        if is_concrete(y):
            v = np.asarray(y)
            _reject(
                ~np.isin(v, (0.0, 1.0)),
                v,
                "0 or 1 (Bernoulli labels)",
                "map the two classes to 0 and 1 (e.g. y = (y > 0) for labels -1/1)",
            )
        return y

    def _logp(self, y, f):
        s = 2.0 * y - 1.0
        return log_ndtr(s * f) if self.link == "probit" else -jax.nn.softplus(-s * f)

    def variational_expectation(self, y, mu, var, key=None):
        g = lambda f: self._logp(y[..., None], f)
        return jnp.sum(_gh_expect(g, mu, var, self.gh_points), -1)

    def _prob(self, mu, var):
        if self.link == "probit":
            return ndtr(mu / jnp.sqrt(1.0 + var))
        return _gh_expect(jax.nn.sigmoid, mu, var, self.gh_points)

    def predict_mean_var(self, mu, var, key=None):
        p = self._prob(mu, var)
        return p, p * (1.0 - p)

    def predict_log_density(self, y, mu, var, key=None):
        p = jnp.clip(self._prob(mu, var), jnp.finfo(mu.dtype).tiny, 1.0)
        q = jnp.clip(1.0 - p, jnp.finfo(mu.dtype).tiny, 1.0)
        return jnp.sum(jnp.where(y > 0.5, jnp.log(p), jnp.log(q)), -1)


class Poisson(Likelihood):
    """``y ~ Poisson(exp(f))`` for counts ``y >= 0``."""

    gh_points: int = eqx.field(static=True, default=20)

    def check_y(self, y, n_latent):
        y = super().check_y(y, n_latent)
        if is_concrete(y):
            v = np.asarray(y)
            _reject(
                (v < 0) | (v != np.round(v)),
                v,
                "non-negative integer counts (Poisson)",
                "pass counts 0, 1, 2, ... (use a Gaussian likelihood for real-valued targets)",
            )
        return y

    def variational_expectation(self, y, mu, var, key=None):
        return jnp.sum(y * mu - jnp.exp(mu + 0.5 * var) - gammaln(y + 1.0), -1)

    def predict_mean_var(self, mu, var, key=None):
        m = jnp.exp(mu + 0.5 * var)
        return m, m + jnp.expm1(var) * m * m

    def predict_log_density(self, y, mu, var, key=None):
        logp = lambda f: y[..., None] * f - jnp.exp(f) - gammaln(y[..., None] + 1.0)
        return jnp.sum(_gh_log_expect(logp, mu, var, self.gh_points), -1)


class Categorical(Likelihood):
    """``y ∈ {0..C-1}``, ``p(y|f) = softmax(f)_y`` with one latent GP per class.

    Args:
        num_classes: C.
        method: ``"mc"`` (reparameterised Monte Carlo, needs a ``key``) or ``"gh"``
            (tensor-product Gauss–Hermite; exact to quadrature, for small C only).
        num_samples: Monte Carlo samples per point.
        gh_points: Gauss–Hermite nodes per class (the grid has ``gh_points**C``).
    """

    num_classes: int = eqx.field(static=True)
    method: str = eqx.field(static=True, default="mc")
    num_samples: int = eqx.field(static=True, default=64)
    gh_points: int = eqx.field(static=True, default=8)

    def __init__(
        self, num_classes: int, method: str = "mc", num_samples: int = 64, gh_points: int = 8
    ) -> None:
        num_classes = check_int(num_classes, "num_classes", low=2)
        if method not in ("mc", "gh"):
            raise ValueError(f"`method` must be 'mc' or 'gh', got {method!r}")
        if method == "gh" and gh_points**num_classes > 50_000:
            raise ValueError(
                f"Gauss-Hermite on {num_classes} classes needs {gh_points}**{num_classes} "
                "nodes per point; use method='mc' (or fewer gh_points)"
            )
        self.num_classes = num_classes
        self.method = method
        self.num_samples = int(num_samples)
        self.gh_points = int(gh_points)

    def num_latent(self) -> int:
        return self.num_classes

    def check_y(self, y, n_latent):
        y = jnp.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"Categorical targets `y` must be (B,) class labels, got {y.shape}")
        if is_concrete(y):
            v = np.asarray(y)
            _reject(
                ~np.isfinite(v) | (v != np.round(v)) | (v < 0) | (v >= self.num_classes),
                v,
                f"class labels 0..{self.num_classes - 1} (Categorical({self.num_classes}))",
                "encode the classes as 0..C-1, or raise num_classes to cover every label",
            )
        return y.astype(jnp.int32)

    def _points(self, mu, var, key):
        """Latent draws (S, B, C) and their weights (S,) for the chosen rule."""
        if self.method == "mc":
            if key is None:
                raise ValueError(
                    "Categorical(method='mc') needs a PRNG key: pass key=jax.random.PRNGKey(...)"
                )
            eps = jax.random.normal(key, (self.num_samples,) + mu.shape, mu.dtype)
            w = jnp.full((self.num_samples,), 1.0 / self.num_samples, mu.dtype)
            return mu + jnp.sqrt(var) * eps, w
        x, w = gauss_hermite(self.gh_points, mu.dtype)
        c = self.num_classes
        grid = jnp.stack(jnp.meshgrid(*([x] * c), indexing="ij"), -1).reshape(-1, c)
        wg = jnp.prod(jnp.stack(jnp.meshgrid(*([w] * c), indexing="ij"), -1), -1).reshape(-1)
        return mu + jnp.sqrt(2.0 * var) * grid[:, None, :], wg

    def variational_expectation(self, y, mu, var, key=None):
        f, w = self._points(mu, var, key)
        lp = jnp.take_along_axis(jax.nn.log_softmax(f, -1), y[None, :, None], -1)[..., 0]
        return jnp.sum(w[:, None] * lp, 0)

    def predict_mean_var(self, mu, var, key=None):
        """Class probabilities ``(B, C)`` and their Bernoulli variances."""
        f, w = self._points(mu, var, key)
        p = jnp.sum(w[:, None, None] * jax.nn.softmax(f, -1), 0)
        return p, p * (1.0 - p)

    def predict_log_density(self, y, mu, var, key=None):
        p, _ = self.predict_mean_var(mu, var, key)
        py = jnp.take_along_axis(p, y[:, None], -1)[:, 0]
        return jnp.log(jnp.clip(py, jnp.finfo(mu.dtype).tiny, 1.0))

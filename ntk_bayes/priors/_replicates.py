r"""Observations at repeated inputs, collapsed exactly to their unique inputs.

When n_j observations y_{j1..jn_j} share the input x_j (a home's floor and its county's
uranium, a design point run several times), the Gaussian likelihood factorises as

.. math::

    \prod_i \mathcal N(y_{ji} \mid f_j, σ^2)
      = \mathcal N(\bar y_j \mid f_j, σ^2 / n_j)\;
        (2πσ^2)^{-(n_j-1)/2}\, n_j^{-1/2} \exp\!\big(-S_j / 2σ^2\big),
    \qquad S_j = \sum_i (y_{ji} - \bar y_j)^2,

and the second factor does not involve f. So the GP over all N observations has the
same marginal likelihood as the GP over the m unique inputs observed as their means
with per-point noise σ²/n_j, plus :meth:`Replicates.log_factor`: an m × m Cholesky
instead of N × N, exactly (Binois, Gramacy & Ludkovski 2018 use the same identity).

Leave-one-out over the N original observations stays exact: removing y_ji from a
Gaussian model divides one factor N(y_ji | f_j, σ²) out of the posterior of f_j
(marginal mean μ_j, variance v_j ≤ σ²/n_j), which gives

.. math::

    \log p(y_{ji} \mid y_{-ji}) = -\tfrac12 \log 2π - \log σ^2 + \tfrac12 \log(σ^2 - v_j)
        - \frac{(y_{ji} - μ_j)^2}{2 (σ^2 - v_j)}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from .._numerics import check_finite, is_concrete

__all__ = ["Replicates", "collapse_replicates"]

_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True, eq=False)
class Replicates:
    """N observations collapsed onto their m unique inputs (see :func:`collapse_replicates`).

    Attributes:
        X: unique inputs ``(m, ...)``, or ``(G, m_max, ...)`` per group (padded).
        y_mean: mean observation per unique input, shaped like ``counts``.
        counts: observations per unique input ``(m,)`` or ``(G, m_max)``; 0 on padding.
        within_ss: sum of squared deviations from the mean per unique input.
        mask: ``counts > 0`` for grouped data (padding is False), else ``None``.
        index: ``(N,)`` position of each original observation's unique input in the
            flattened ``y_mean``.
        y: the N original observations, in their original order.
    """

    X: Array
    y_mean: Array
    counts: np.ndarray
    within_ss: Array
    mask: Array | None
    index: np.ndarray
    y: Array

    @property
    def num_observations(self) -> int:
        return int(self.index.size)

    def _per_point(self, noise):
        noise = jnp.asarray(noise)
        if not jnp.issubdtype(noise.dtype, jnp.floating):
            noise = noise.astype(jnp.result_type(float))
        grouped = self.counts.ndim == 2
        allowed = ((), self.counts.shape) + ((self.counts.shape[:1]),) * grouped
        if noise.shape not in allowed:
            per = "one per group, " if grouped else ""
            raise ValueError(
                f"`noise` must be a scalar variance σ² (of one observation), {per}or one "
                f"per unique input {self.counts.shape}; got shape {noise.shape}"
            )
        if is_concrete(noise):
            v = np.asarray(noise)
            if not np.all(np.isfinite(v)) or np.any(v <= 0):
                raise ValueError(
                    f"`noise` is a variance and must be finite and > 0, got {v}; pass σ², "
                    "e.g. noise_std**2"
                )
        if grouped and noise.shape == self.counts.shape[:1]:
            noise = noise[:, None]  # one variance per group
        return jnp.broadcast_to(noise, self.counts.shape)

    def noise(self, noise: ArrayLike) -> Array:
        """The per-point noise variance σ²/n_j of the collapsed GP (σ² on padding)."""
        return self._per_point(noise) / np.maximum(self.counts, 1)

    def log_factor(self, noise: ArrayLike) -> Array:
        """The part of log p(y) that the collapsed GP leaves out (a scalar): add it with
        ``numpyro.factor`` so that the model's density is that of all N observations."""
        s2 = self._per_point(noise)
        n = jnp.asarray(self.counts, s2.dtype)
        terms = -0.5 * (n - 1) * (_LOG_2PI + jnp.log(s2)) - self.within_ss / (2 * s2)
        terms = terms - 0.5 * jnp.log(jnp.maximum(n, 1.0))
        return jnp.sum(jnp.where(self.counts > 0, terms, 0.0))

    def loo_log_likelihood(self, f_mean: ArrayLike, f_var: ArrayLike, noise: ArrayLike) -> Array:
        """log p(y_i | y_-i) for each of the N original observations, ``(N,)``.

        Args:
            f_mean: posterior mean of the latent mean function plus f at the unique inputs
                (``GaussianProcess.condition(y_mean).mean``), shaped like ``counts``.
            f_var: its posterior marginal variance (``.variance``).
            noise: σ², scalar or one per group.
        """
        s2 = self._per_point(noise).reshape(-1)[self.index]
        mu = jnp.asarray(f_mean).reshape(-1)[self.index]
        v = jnp.asarray(f_var).reshape(-1)[self.index]
        # σ² - v > 0 exactly (v ≤ σ²/n_j for a finite prior variance); floored against
        # round-off when the prior variance dwarfs σ².
        gap = jnp.maximum(s2 - v, s2 * jnp.finfo(s2.dtype).eps)
        y = self.y.astype(s2.dtype)
        return -0.5 * _LOG_2PI - jnp.log(s2) + 0.5 * jnp.log(gap) - (y - mu) ** 2 / (2 * gap)


def collapse_replicates(
    X: ArrayLike, y: ArrayLike, group: ArrayLike | None = None, num_groups: int | None = None
) -> Replicates:
    """Collapse observations that share an input (exactly equal rows) onto one point each.

    Args:
        X: inputs ``(N, ...)``.
        y: one observation per row ``(N,)``.
        group: optional integer group of each row ``(N,)`` (values ``0..G-1``): inputs
            are then unique within each group, and the result is padded per group for a
            batched :class:`~ntk_bayes.GaussianProcess` (``point_mask=rep.mask``).
        num_groups: G (default ``max(group) + 1``).

    Returns:
        :class:`Replicates`. Use it as::

            gp = nb.GaussianProcess(net, rep.X, noise=rep.noise(s2), point_mask=rep.mask)
            numpyro.sample("y", gp, obs=rep.y_mean)
            numpyro.factor("y_replicates", rep.log_factor(s2))

        and ``nb.diagnostics.from_numpyro(mcmc, replicates={"y": rep})`` for N-point LOO.
    """
    from ._gp import pad_groups

    Xa = np.asarray(X)
    ya = np.asarray(y)
    if Xa.ndim < 1 or ya.shape != Xa.shape[:1]:
        raise ValueError(
            f"`y` must hold one observation per row of `X`: X has shape {Xa.shape}, "
            f"y has shape {ya.shape} (pass y as a 1-d array)"
        )
    if not np.issubdtype(ya.dtype, np.floating):
        ya = ya.astype(np.float64)
    check_finite(Xa, "X")
    check_finite(ya, "y")
    N = ya.size
    if N == 0:
        raise ValueError("collapse_replicates: `X` and `y` hold no observations")
    flat = Xa.reshape(N, -1)
    if group is None:
        keys = flat
    else:
        g = np.asarray(group)
        if g.shape != (N,) or not np.issubdtype(g.dtype, np.integer) or (N and g.min() < 0):
            raise ValueError(
                f"`group` must be {N} non-negative integers (one per row), got {g.shape}"
            )
        # float64 keys: exact for any group index and any float32/float64 input
        keys = np.concatenate([g[:, None], flat], axis=1, dtype=np.float64)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    m = uniq.shape[0]
    counts = np.bincount(inverse, minlength=m)
    means = np.bincount(inverse, weights=ya, minlength=m) / counts
    ss = np.bincount(inverse, weights=(ya - means[inverse]) ** 2, minlength=m)
    first = np.full(m, N)
    np.minimum.at(first, inverse, np.arange(N))
    X_u = Xa[first]
    dtype = ya.dtype
    if group is None:
        return Replicates(
            X=jnp.asarray(X_u),
            y_mean=jnp.asarray(means.astype(dtype)),
            counts=counts,
            within_ss=jnp.asarray(ss.astype(dtype)),
            mask=None,
            index=inverse,
            y=jnp.asarray(ya),
        )
    g_u = g[first]
    Xp, yp, nps, ssp, ids, mask = pad_groups(
        g_u, X_u, means.astype(dtype), counts, ss.astype(dtype), np.arange(m), num_groups=num_groups
    )
    mask_np = np.asarray(mask)
    slot = np.empty(m, np.int64)
    slot[np.asarray(ids)[mask_np]] = np.flatnonzero(mask_np)
    return Replicates(
        X=Xp,
        y_mean=yp,
        counts=np.where(mask_np, np.asarray(nps), 0),
        within_ss=jnp.where(mask, ssp, 0.0),
        mask=mask,
        index=slot[inverse],
        y=jnp.asarray(ya),
    )

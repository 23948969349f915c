r"""Inducing-input initialisation from the data.

* :func:`kmeans_pp` — k-means++ seeding (Arthur & Vassilvitskii 2007): each new centre is
  a data point drawn with probability :math:`\propto D(x)^2`, its squared distance to
  the nearest centre so far; optional Lloyd iterations refine the centres.
* :func:`greedy_variance` — greedy conditional-variance selection, i.e. a pivoted
  Cholesky of :math:`K_{XX}` (Burt, Rasmussen & van der Wilk 2020): each step adds the
  point with the largest residual variance :math:`d_n = k(x_n, x_n) - Q_{nn}`, which
  greedily shrinks :math:`\operatorname{tr}(K_{XX} - Q_{XX})`, the term of the Titsias
  bound that inducing points control. Costs O(N M) kernel evaluations and O(N M²).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .._numerics import POSITIVE_INT, as_float_array, check_finite, check_int, full_precision
from ._kernels import as_kernel

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..stax import Layer
    from ._kernels import GPKernel

__all__ = ["kmeans_pp", "greedy_variance"]


def _check(X, M, name="X"):
    X = as_float_array(X, name)
    if X.ndim < 2:
        raise ValueError(f"`{name}` must be (N, features), got shape {X.shape}")
    check_finite(X, name)
    M = check_int(M, "M", low=1, message=POSITIVE_INT)
    if M > X.shape[0]:
        raise ValueError(
            f"asked for M={M} inducing points but `{name}` has only {X.shape[0]} points; "
            "use M <= N (or an exact GP)"
        )
    return X, M


@full_precision
def kmeans_pp(key: PRNGKeyArray, X: ArrayLike, M: int, lloyd_iters: int = 0) -> Array:
    """``M`` inducing inputs by k-means++ seeding (plus ``lloyd_iters`` Lloyd steps).

    Args:
        key: PRNG key.
        X: data ``(N, ...)`` (trailing axes are flattened for distances).
        M: number of inducing points, ``M <= N``.
        lloyd_iters: k-means refinement iterations after seeding (0: centres are data
            points).

    Returns:
        ``Z`` of shape ``(M, ...)``.
    """
    X, M = _check(X, M)
    shape = X.shape
    F = X.reshape(shape[0], -1)
    n = F.shape[0]
    sq = jnp.sum(F * F, 1)

    def dist2(c):
        return jnp.maximum(sq - 2.0 * F @ c + jnp.dot(c, c), 0.0)

    key, sub = jax.random.split(key)
    first = jax.random.randint(sub, (), 0, n)
    idx0 = jnp.zeros((M,), jnp.int32).at[0].set(first.astype(jnp.int32))

    def body(i, state):
        idx, d2, k = state
        k, sub = jax.random.split(k)
        total = jnp.sum(d2)
        # All points coincide with chosen centres: fall back to uniform picks.
        logits = jnp.where(total > 0, jnp.log(jnp.maximum(d2, 0.0)), jnp.zeros_like(d2))
        j = jax.random.categorical(sub, logits)
        return idx.at[i].set(j.astype(jnp.int32)), jnp.minimum(d2, dist2(F[j])), k

    idx, _, _ = jax.lax.fori_loop(1, M, body, (idx0, dist2(F[first]), key))
    C = F[idx]

    def lloyd(_, C):
        d = sq[:, None] - 2.0 * F @ C.T + jnp.sum(C * C, 1)[None]
        a = jnp.argmin(d, 1)
        sums = jax.ops.segment_sum(F, a, num_segments=M)
        counts = jax.ops.segment_sum(jnp.ones((n,), F.dtype), a, num_segments=M)
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], C)

    if lloyd_iters:
        C = jax.lax.fori_loop(0, int(lloyd_iters), lloyd, C)
    return C.reshape((M,) + shape[1:])


@full_precision
def greedy_variance(
    kernel: Layer | GPKernel | Callable[..., Array],
    X: ArrayLike,
    M: int,
    kind: str = "nngp",
    return_indices: bool = False,
    return_residuals: bool = False,
) -> Array | tuple[Array, ...]:
    """``M`` inducing inputs chosen from ``X`` by greedy conditional variance.

    The order is greedy, so the first ``m`` of the ``M`` points are the choice for
    ``m``: one call with a generous ``M`` and ``return_residuals`` lets a caller keep
    the fewest points that reach a residual it can accept (``calibrate``'s SGPR does).

    Args:
        kernel: a stax network, :class:`GPKernel` or callable ``k(X1, X2)``.
        X: data ``(N, ...)``; memory is O(N M), so subsample very large N first.
        M: number of inducing points, ``M <= N``.
        kind: ``"nngp"`` or ``"ntk"`` for a network kernel.
        return_indices: also return the chosen row indices.
        return_residuals: also return ``(M,)``: entry ``m - 1`` is the Nyström residual
            ``tr(K_XX - Q_XX)``, ``Q = K_XZ K_ZZ^-1 K_ZX``, of the first ``m`` points
            (the trace term of Titsias' bound is this over twice the noise variance).

    Returns:
        ``Z`` ``(M, ...)``, then the indices ``(M,)`` and the residuals ``(M,)`` if asked.
    """
    X, M = _check(X, M)
    k = as_kernel(kernel, kind)
    n = X.shape[0]
    d = k.diag(X)
    dtype = d.dtype
    L = jnp.zeros((n, M), dtype)
    idx = jnp.zeros((M,), jnp.int32)
    res = jnp.zeros((M,), dtype)

    floor = jnp.finfo(dtype).eps * jnp.max(d)

    def body(m, state):
        L, d, idx, res = state
        i = jnp.argmax(d)
        col = k(X, X[i][None])[:, 0].astype(dtype)
        # A residual at round-off level means X is exhausted (rank < M): add nothing.
        piv = d[i]
        e = jnp.where(piv > floor, (col - L @ L[i]) / jnp.sqrt(jnp.maximum(piv, floor)), 0.0)
        # Chosen points have zero residual; clip round-off so they are never re-picked.
        d = jnp.maximum(d - e * e, 0.0).at[i].set(-1.0)
        res = res.at[m].set(jnp.sum(jnp.maximum(d, 0.0)))
        return L.at[:, m].set(e), d, idx.at[m].set(i.astype(jnp.int32)), res

    _, _, idx, res = jax.lax.fori_loop(0, M, body, (L, d, idx, res))
    Z = X[idx]
    out = (Z,) + ((idx,) if return_indices else ()) + ((res,) if return_residuals else ())
    return out if len(out) > 1 else Z

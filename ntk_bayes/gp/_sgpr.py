r"""Sparse GP regression with the collapsed variational bound of Titsias (2009).

With M inducing inputs Z, :math:`L L^T = K_{ZZ}` (+ jitter), noise variance σ²,
residuals :math:`R = Y - m(X)` (N×K, shared kernel),
:math:`A = L^{-1} K_{ZX} / σ`, :math:`B = I + A A^T = L_B L_B^T` and
:math:`c = L_B^{-1} A R / σ`, the bound (Titsias 2009, eq. 9) is

.. math::

    \mathcal F = \sum_k \log \mathcal N(R_{:k} \mid 0, Q_{XX} + σ^2 I)
                 - \frac{K}{2σ^2} \operatorname{tr}(K_{XX} - Q_{XX})
      = -\tfrac{NK}{2}\log 2πσ^2 - K \textstyle\sum \log L_{B,ii}
        - \frac{\lVert R\rVert^2}{2σ^2} + \tfrac12 \lVert c\rVert^2
        - \frac{K}{2σ^2} \textstyle\sum_n k(x_n, x_n) + \tfrac K2 \operatorname{tr}(A A^T),

with :math:`Q = K_{XZ} K_{ZZ}^{-1} K_{ZX}`. The optimal :math:`q(u) = \mathcal N(m_u, S_u)`
has :math:`m_u = L L_B^{-T} c` and :math:`S_u = L B^{-1} L^T`; its predictive is
:math:`μ_* = m(X_*) + (L_B^{-1} L^{-1} K_{Z*})^T c`,
:math:`Σ_* = K_{**} - V_1^T V_1 + V_2^T V_2` with :math:`V_1 = L^{-1}K_{Z*}`,
:math:`V_2 = L_B^{-1} V_1`.

The data enter only through :math:`A A^T`, :math:`A R`, :math:`\sum k(x_n, x_n)` and
:math:`\lVert R \rVert^2`, accumulated over chunks of ``chunk_size`` points, so memory
is O(M · chunk_size), not O(M N), and time is linear in N.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._linalg import psd_cholesky, tri_solve
from .._numerics import check_int, full_precision
from ._checks import (
    check_jitter,
    check_noise,
    check_positive_noise,
    check_X,
    check_y,
    check_Z,
    mean_values,
)
from ._kernels import GPKernel, as_kernel, check_kernel_matrix

if TYPE_CHECKING:
    from ..stax import Layer

__all__ = ["SGPR", "chunked_sum"]

_LOG_2PI = math.log(2.0 * math.pi)


def default_chunk(m: int) -> int:
    """Rows per chunk so that one chunk's ``K_ZX`` and its temporaries stay ~2^22 entries."""
    return int(max(256, min(16384, (1 << 22) // max(m, 1))))


def chunked_sum(fn, X, *arrays, chunk_size: int):
    """``sum_c fn(X_c, *arrays_c, mask_c)`` over row chunks, by ``lax.scan``.

    The last chunk is padded with copies of the first row (not zeros: zero-norm
    inputs make angle-based kernels 0/0) and ``mask_c`` marks the real rows.
    """
    n = X.shape[0]
    b = min(chunk_size, n)
    nb = -(-n // b)
    pad = nb * b - n

    def blocks(a, fill):
        if pad:
            a = jnp.concatenate([a, jnp.broadcast_to(fill, (pad,) + a.shape[1:])], axis=0)
        return a.reshape((nb, b) + a.shape[1:])

    mask = blocks(jnp.ones((n,), X.dtype), jnp.zeros((), X.dtype))
    xs = (blocks(X, X[:1]),) + tuple(blocks(a, jnp.zeros((), a.dtype)) for a in arrays)
    if nb == 1:
        return fn(*(x[0] for x in xs), mask[0])

    def step(acc, inp):
        out = fn(*inp)
        return jax.tree_util.tree_map(jnp.add, acc, out), None

    first = fn(*(x[0] for x in xs), mask[0])
    acc, _ = jax.lax.scan(step, first, tuple(x[1:] for x in xs) + (mask[1:],))
    return acc


class SGPR(eqx.Module):
    """Titsias' collapsed sparse GP for Gaussian noise (``num_outputs`` columns share it).

    Args:
        kernel: a stax network (``kind`` kernel), :class:`GPKernel` or callable.
        X: inputs ``(N, ...)``.
        y: targets ``(N,)`` or ``(N, K)``.
        Z: inducing inputs ``(M, ...)``, M <= N (see :func:`kmeans_pp`,
            :func:`greedy_variance`).
        noise: noise variance σ² > 0 (scalar); 0 is refused (the bound divides by it).
        mean: constant (scalar or ``(K,)``) or callable mean.
        jitter: first relative jitter for ``K_ZZ``.
        chunk_size: data rows per accumulation chunk (memory ~ M x chunk_size).
        kind: ``"nngp"`` or ``"ntk"`` for a network kernel.
    """

    kernel: GPKernel
    X: Array
    y: Array
    Z: Array
    noise: Array
    mean: Any
    Luu: Array
    LB: Array
    c: Array
    stats: dict
    squeeze: bool = eqx.field(static=True)
    jitter: float | None = eqx.field(static=True)
    chunk_size: int | None = eqx.field(static=True)

    @full_precision
    def __init__(
        self,
        kernel: Layer | GPKernel | Callable[..., Array],
        X: ArrayLike,
        y: ArrayLike,
        Z: ArrayLike,
        noise: ArrayLike,
        mean: ArrayLike | Callable[[Array], Array] = 0.0,
        jitter: float | None = None,
        chunk_size: int | None = None,
        kind: str = "nngp",
    ) -> None:
        self.kernel = as_kernel(kernel, kind)
        self.X = check_X(X)
        n = self.X.shape[0]
        y2, self.squeeze = check_y(y, n)
        self.Z = check_Z(Z, self.X.shape, n)
        self.noise = check_positive_noise(check_noise(noise, None), "SGPR")
        self.mean = mean
        self.jitter = jitter = check_jitter(jitter)
        if chunk_size is not None:
            chunk_size = check_int(
                chunk_size,
                "chunk_size",
                message="`{name}` must be a positive int or None, got {value!r}",
                exc=TypeError,
            )
        self.chunk_size = chunk_size
        m = self.Z.shape[0]
        Kuu = check_kernel_matrix(self.kernel(self.Z, None), (m, m), "k(Z, Z)")
        dtype = Kuu.dtype
        self.y = y2.astype(dtype)
        self.Luu, _ = psd_cholesky(Kuu, jitter, name="k(Z, Z)")
        r = self.y - mean_values(mean, self.X, self.y.shape[1], dtype)
        chunk = default_chunk(m) if chunk_size is None else chunk_size
        if chunk < 1:
            raise ValueError(f"`chunk_size` must be >= 1, got {chunk_size}")

        self.LB, self.c, self.stats = _collapse(
            self.kernel, self.Z, self.Luu, self.X, r, self.noise.astype(dtype), chunk
        )

    @property
    def num_outputs(self) -> int:
        return self.y.shape[1]

    @full_precision
    def elbo(self) -> Float[Array, ""]:
        """Titsias' collapsed evidence lower bound (summed over output columns)."""
        n, k = self.y.shape
        s, sigma2 = self.stats, self.noise.astype(self.Luu.dtype)
        return (
            -0.5 * n * k * (_LOG_2PI + jnp.log(sigma2))
            - k * jnp.sum(jnp.log(jnp.diag(self.LB)))
            - 0.5 * s["rr"] / sigma2
            + 0.5 * jnp.sum(self.c**2)
            - 0.5 * k * s["kff"] / sigma2
            + 0.5 * k * jnp.trace(s["AAT"]) / sigma2
        )

    @full_precision
    def optimal_qu(self) -> tuple[Array, Array]:
        """Mean ``(M, K)`` (or ``(M,)``) and covariance ``(M, M)`` of the optimal q(u)."""
        W = tri_solve(self.LB, self.Luu.T).T  # (L_B^{-1} L^T)^T = L L_B^{-T}
        mu = W @ self.c
        return (mu[:, 0] if self.squeeze else mu), W @ W.T

    @full_precision
    def predict(
        self, X_test: ArrayLike, full_cov: bool = False, include_noise: bool = False
    ) -> tuple[Array, Array]:
        """Mean and variance (or ``(M, M)`` covariance) of f at ``X_test`` under q.

        Shapes as :meth:`ExactGP.predict`. ``include_noise`` adds σ².
        """
        Xs = check_X(X_test, "X_test")
        if Xs.shape[1:] != self.X.shape[1:]:
            raise ValueError(
                f"`X_test` has per-point shape {Xs.shape[1:]} but X has {self.X.shape[1:]}"
            )
        mean, var = _predict(self, Xs, full_cov, include_noise)
        mean = mean + mean_values(self.mean, Xs, self.num_outputs, mean.dtype)
        if full_cov:
            return self._shape(mean), var
        return self._shape(mean), self._shape(jnp.broadcast_to(var[:, None], mean.shape))

    def _shape(self, a):
        return a[:, 0] if self.squeeze else a


def _chunks(X, b):
    n = X.shape[0]
    nb = -(-n // b)
    pad = nb * b - n
    if pad:
        X = jnp.concatenate([X, jnp.broadcast_to(X[:1], (pad,) + X.shape[1:])], axis=0)
    return X.reshape((nb, b) + X.shape[1:])


@eqx.filter_jit
def _collapse(kernel, Z, Luu, X, r, sigma2, chunk):
    """``L_B``, ``c`` and the data statistics of the bound, one compiled program."""
    m, dtype = Z.shape[0], Luu.dtype
    # One M x M inverse, then matmuls: XLA's CPU triangular solve with many right-hand
    # sides is ~10x slower than a matmul, and this is the O(N M^2) inner loop.
    Linv = tri_solve(Luu, jnp.eye(m, dtype=dtype))

    def one(Xc, rc, mask):
        Kuf = check_kernel_matrix(kernel(Z, Xc), (m, Xc.shape[0]), "k(Z, X)")
        A = (Linv @ Kuf.astype(dtype)) * mask  # L^{-1} K_ZX (unscaled)
        kff = kernel.diag(Xc).astype(dtype) * mask
        return {"AAT": A @ A.T, "Ar": A @ rc, "kff": jnp.sum(kff), "rr": jnp.sum(rc * rc)}

    s = chunked_sum(one, X, r, chunk_size=chunk)
    B = jnp.eye(m, dtype=dtype) + s["AAT"] / sigma2
    # eigenvalues of B are >= 1: no jitter needed
    LB = jnp.linalg.cholesky(B)
    return LB, tri_solve(LB, s["Ar"]) / sigma2, s


@eqx.filter_jit
def _predict(model, Xs, full_cov, include_noise):
    dtype = model.Luu.dtype
    m = Xs.shape[0]
    chunk = default_chunk(model.Z.shape[0])
    kern, Z, Luu, LB, c = model.kernel, model.Z, model.Luu, model.LB, model.c
    sigma2 = model.noise.astype(dtype) if include_noise else jnp.zeros((), dtype)

    eye = jnp.eye(Z.shape[0], dtype=dtype)
    Linv, LBinv = tri_solve(Luu, eye), tri_solve(LB, eye)

    def parts(Xc):
        Kus = check_kernel_matrix(kern(Z, Xc), (Z.shape[0], Xc.shape[0]), "k(Z, X_test)")
        V1 = Linv @ Kus.astype(dtype)
        return V1, LBinv @ V1

    if full_cov:
        V1, V2 = parts(Xs)
        Kss = check_kernel_matrix(kern(Xs, None), (m, m), "k(X_test, X_test)")
        cov = Kss - V1.T @ V1 + V2.T @ V2 + sigma2 * jnp.eye(m, dtype=dtype)
        return V2.T @ c, cov

    def one(Xc):
        V1, V2 = parts(Xc)
        var = kern.diag(Xc).astype(dtype) - jnp.sum(V1 * V1, 0) + jnp.sum(V2 * V2, 0)
        return V2.T @ c, jnp.maximum(var, 0.0) + sigma2

    if m <= chunk:
        return one(Xs)
    mean, var = jax.lax.map(one, _chunks(Xs, chunk))
    return mean.reshape(-1, c.shape[1])[:m], var.reshape(-1)[:m]

"""Shared plumbing of the closed-form predictors: output layout, kernels, solvers.

neural-tangents' kernels of a network with outputs ``y`` of shape ``(N, *rest)`` omit
the ``trace_axes`` of ``rest`` (the kernel acts as ``Θ ⊗ I`` along them) and keep the
other axes interleaved: ``(N1, N2, R1, R1', ...)``. :class:`OutputLayout` maps such
kernels to ``(P1, P2)`` matrices and the targets to ``(P, T)`` blocks, with
``P = N * prod(non-traced)`` and ``T = prod(traced)``, so the maths below is plain
matrix algebra.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._linalg import NotPSDError, psd_cholesky, safe_cholesky
from .._numerics import as_float_array, check_finite, is_concrete

__all__ = [
    "Gaussian",
    "OutputLayout",
    "add_diagonal_regularizer",
    "canonical_get",
    "check_diag_reg",
    "exact_first_cholesky",
    "initial_outputs",
    "kernel_part",
    "named_output",
]


class Gaussian(collections.namedtuple("Gaussian", ["mean", "covariance"])):
    """A ``(mean, covariance)`` pair, as neural-tangents' ``predict.Gaussian``."""

    __slots__ = ()


_TUPLES: dict[tuple, type] = {}


def named_output(out: dict, get: tuple[str, ...], single: bool):
    """Return ``out[get[0]]`` for a string ``get``, else a namedtuple in ``get`` order."""
    if single:
        return out[get[0]]
    if get not in _TUPLES:
        _TUPLES[get] = collections.namedtuple("Gaussians", get)
    return _TUPLES[get](*(out[g] for g in get))


def canonical_get(get, allowed: tuple[str, ...], default=("nngp", "ntk")):
    """``(is_single_string, names)`` for a neural-tangents ``get`` argument."""
    if get is None:
        return False, tuple(default)
    if isinstance(get, str):
        names, single = (get,), True
    elif isinstance(get, Sequence) and len(get) > 0 and all(isinstance(g, str) for g in get):
        names, single = tuple(get), False
    else:
        raise TypeError(f"`get` must be None, a string or a tuple of strings, got {get!r}")
    for g in names:
        if g not in allowed:
            raise ValueError(f"`get` has unknown mode {g!r}; choose from {allowed}")
    if len(set(names)) != len(names):
        raise ValueError(f"`get` names a mode twice: {names}")
    return single, names


def kernel_part(k, g: str, what: str):
    """The ``g`` ("nngp"/"ntk") array of a kernel given as an array or a namedtuple."""
    if k is None:
        return None
    if hasattr(k, "shape") and not hasattr(k, "_fields"):
        return k
    part = getattr(k, g, None)
    if part is None:
        raise ValueError(
            f"`{what}` has no {g!r} kernel; compute it with get=(..., {g!r}) or pass the "
            "array itself"
        )
    return part


def check_diag_reg(diag_reg) -> None:
    if is_concrete(diag_reg):
        v = np.asarray(diag_reg)
        if v.ndim != 0 or not np.isfinite(v) or v < 0:
            raise ValueError(f"`diag_reg` must be a finite scalar >= 0, got {diag_reg!r}")


def add_diagonal_regularizer(K, diag_reg, absolute: bool):
    """``K + r I`` with ``r = diag_reg`` or ``diag_reg * trace(K) / n`` (relative)."""
    n = K.shape[0]
    r = diag_reg if absolute else diag_reg * jnp.trace(K) / n
    return K + jnp.asarray(r, K.dtype) * jnp.eye(n, dtype=K.dtype)


def exact_first_cholesky(K, name: str):
    """Lower Cholesky factor of ``K`` with no jitter, falling back to the jitter ladder.

    The closed forms must reproduce neural-tangents to round-off, so a factorisable
    matrix is never perturbed; only a failed factorisation takes the dtype-aware
    jitter path of :func:`ntk_bayes.gp.psd_cholesky` (which warns, or raises
    :class:`~ntk_bayes.gp.NotPSDError` naming the smallest eigenvalue).
    """
    L = safe_cholesky(K)
    if is_concrete(L):
        if not np.all(np.isfinite(np.asarray(K))):
            raise NotPSDError(f"{name} contains NaN or inf; check the kernel and inputs")
        if bool(jnp.all(jnp.isfinite(L))):
            return L
        return psd_cholesky(K, name=name)[0]
    return jax.lax.cond(jnp.all(jnp.isfinite(L)), lambda: L, lambda: psd_cholesky(K, name=name)[0])


def initial_outputs(x, shape: tuple, dtype, name: str):
    """Initial network outputs ``x`` broadcast to ``shape`` (the outputs they start),
    refusing any shape that would broadcast to something else: ``(M,)`` against ``(M, 1)``
    would otherwise turn a prediction into an ``(M, M)`` array."""
    x = jnp.asarray(x, dtype)
    try:
        fits = jnp.broadcast_shapes(x.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"`{name}` has shape {x.shape} but the outputs it starts have shape "
            f"{tuple(shape)}; pass a scalar or an array of that shape"
        )
    return jnp.broadcast_to(x, shape)


class OutputLayout:
    """How targets ``y (N, *rest)`` and kernels without ``trace_axes`` line up.

    Args:
        y: training targets, batch axis first.
        trace_axes: axes of ``y`` (not 0) along which the kernel is ``⊗ I``.
    """

    def __init__(self, y: Array, trace_axes: int | Sequence[int]) -> None:
        if y.ndim < 1:
            raise ValueError("`y_train` must have a leading batch axis, got a scalar")
        if isinstance(trace_axes, int):
            trace_axes = (trace_axes,)
        try:
            axes = tuple(sorted({int(a) % y.ndim for a in trace_axes}))
        except (TypeError, ValueError):
            raise TypeError(f"`trace_axes` must be a tuple of ints, got {trace_axes!r}") from None
        if y.ndim == 1 and axes == (0,):
            # A single output column: the traced axis is implicit.
            axes = ()
        if 0 in axes:
            raise ValueError(
                f"`trace_axes` {trace_axes} includes the batch axis 0 of `y_train` "
                f"(shape {y.shape}); trace only output axes, e.g. trace_axes=(-1,)"
            )
        self.ndim = y.ndim
        self.trace_axes = axes
        self.kept = tuple(a for a in range(y.ndim) if a not in axes)
        self.trace_shape = tuple(y.shape[a] for a in axes)
        self.kept_rest = tuple(y.shape[a] for a in self.kept[1:])
        self.T = math.prod(self.trace_shape)
        self.n_kept = len(self.kept)

    # -- targets -------------------------------------------------------------------
    def flat_y(self, y):
        """``(P, T)`` block of targets (or initial outputs) shaped like ``y_train``."""
        moved = jnp.moveaxis(y, self.trace_axes, range(self.n_kept, self.ndim))
        return moved.reshape((-1, self.T))

    def unflat(self, flat, n: int, lead: tuple = ()):
        """Inverse of :meth:`flat_y` for ``n`` points, with leading (time) axes."""
        shape = lead + (n,) + self.kept_rest + self.trace_shape
        out = flat.reshape(shape)
        src = tuple(range(len(lead) + self.n_kept, len(shape)))
        dst = tuple(len(lead) + a for a in self.trace_axes)
        return jnp.moveaxis(out, src, dst)

    # -- kernels -------------------------------------------------------------------
    def matrix(self, k, n1: int, n2: int, what: str, rows: str | None = None):
        """``(P1, P2)`` matrix of a kernel in neural-tangents' interleaved layout.

        ``rows`` names the number of rows in the error message when ``n1`` was read off
        ``k`` itself (e.g. ``"M"`` test points), so the expected shape shows it free."""
        k = as_float_array(k, what)
        rest = tuple(s for r in self.kept_rest for s in (r, r))
        want = (n1, n2) + rest
        if tuple(k.shape) != want:
            shown = want if rows is None else "(" + ", ".join(map(str, (rows, n2) + rest)) + ")"
            raise ValueError(
                f"`{what}` has shape {tuple(k.shape)} but the targets need {shown} "
                f"(points x points{' x output axes' if self.kept_rest else ''}); "
                "check x_test/x_train order and `trace_axes`"
            )
        check_finite(k, what)
        if self.n_kept == 1:
            return k
        order = tuple(range(0, k.ndim, 2)) + tuple(range(1, k.ndim, 2))
        return jnp.transpose(k, order).reshape(n1 * self.p_rest, n2 * self.p_rest)

    @property
    def p_rest(self) -> int:
        return math.prod(self.kept_rest)

    def unmatrix(self, cov, n1: int, n2: int, lead: tuple = ()):
        """Inverse of :meth:`matrix` (with leading time axes)."""
        if self.n_kept == 1:
            return cov
        halves = (n1,) + self.kept_rest + (n2,) + self.kept_rest
        out = cov.reshape(lead + halves)
        nl, h = len(lead), self.n_kept
        order = tuple(range(nl)) + tuple(nl + i + j * h for i in range(h) for j in range(2))
        return jnp.transpose(out, order)

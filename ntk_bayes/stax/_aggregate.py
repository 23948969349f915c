r"""``Aggregate``: message passing over a graph given per point (graph neural networks).

Each point ``x[n]`` of shape ``(*spatial, C)`` comes with a graph over the positions
of its aggregated axes (the vertices), ``pattern[n]``: ``A[i, j]`` is the weight of
the arc from tail i to head j. Every vertex is replaced by the weighted sum of its
predecessors, ``x'[j] = Σ_i A[i, j] x[i]``, channel by channel. The layer is linear
and has no parameters, so with A₁ = ``pattern1[n1]`` and A₂ = ``pattern2[n2]``
(Du et al. 2019, "Graph Neural Tangent Kernel"; neural-tangents' ``Aggregate``):

.. math::

    Σ'(x_1, x_2) = A_1^\top Σ(x_1, x_2) A_2, \qquad Θ' = A_1^\top Θ A_2

over the aggregated axes of the full spatial layout (every pair of vertices); the
per-point variances take A₁ (or A₂) on both sides.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._core import NOT_GIVEN, Layer
from ._indexing import check_default_axes, check_one_stream

__all__ = ["Aggregate"]

IMPLEMENTATIONS = ("DENSE", "SPARSE")


def _identity(p):
    return p


class Aggregate(Layer):
    """Aggregation over a graph per point (``stax.Aggregate``), as neural-tangents.

    Args:
        aggregate_axis: the input axes whose positions are the vertices (an int or a
            sequence; the pattern lists them in increasing order, whatever the order
            given, as neural-tangents); ``None``: every spatial axis.
        batch_axis: only the default 0 (inputs ``(N, *spatial, C)``).
        channel_axis: only the default -1.
        to_dense: for ``implementation="DENSE"``, maps the ``pattern`` rows of a tile
            (leading axis: points) to dense adjacency arrays; identity by default.
        implementation: ``"DENSE"``: ``pattern`` is a (weighted) adjacency array
            ``(N, *V, *V)`` with ``V`` the sizes of the aggregated axes (``N, X, X``
            for one axis, ``N, X, Y, X, Y`` for two). ``"SPARSE"``: an integer edge
            list ``(N, n_edges, K, 2)`` (or ``(N, n_edges, 2)`` for K = 1 axis) of
            (tail, head) vertex coordinates, each edge of weight 1 (repeats add up);
            an edge with any negative coordinate is padding and is ignored (where
            neural-tangents 0.6.5 reads a negative tail with a valid head as the last
            vertex), coordinates past an axis wrap around, as there. Both give the
            same numbers: the edge list is turned into the adjacency array per tile,
            so SPARSE saves no memory here (a kernel tile holds V² entries per pair
            anyway).

    ``apply_fn(params, x, pattern=A)`` and ``kernel_fn(x1, x2, pattern=(A1, A2))``
    take the graphs (``(A, None)`` or ``(A, A)`` when ``x2`` is ``None``); ``None``
    (and ``(None, None)``) is the identity graph, as in neural-tangents, but the
    keyword must be passed: a network with Aggregate layers refuses calls without it.
    """

    aggregate_axis: tuple | None = eqx.field(static=True)
    to_dense: Callable = eqx.field(static=True)
    implementation: str = eqx.field(static=True)

    def __init__(
        self,
        aggregate_axis: Any = None,
        batch_axis: int = 0,
        channel_axis: int = -1,
        to_dense: Callable | None = _identity,
        implementation: str = "DENSE",
    ):
        check_default_axes("Aggregate", batch_axis, channel_axis)
        if aggregate_axis is not None:
            axes = (aggregate_axis,) if isinstance(aggregate_axis, int) else aggregate_axis
            try:
                axes = tuple(axes)
            except TypeError:
                axes = (aggregate_axis,)
            if not axes or any(isinstance(a, bool) or not isinstance(a, int) for a in axes):
                raise ValueError(
                    "Aggregate: `aggregate_axis` must be None, an int or a non-empty sequence "
                    f"of ints (input axes, e.g. 1 or (1, 2)), got {aggregate_axis!r}"
                )
            aggregate_axis = axes
        impl = implementation.upper() if isinstance(implementation, str) else implementation
        if impl not in IMPLEMENTATIONS:
            raise ValueError(
                f"Aggregate: `implementation` must be 'DENSE' or 'SPARSE', got {implementation!r}"
            )
        if to_dense is None:
            to_dense = _identity
        if not callable(to_dense):
            raise TypeError(
                f"Aggregate: `to_dense` must be a function of `pattern`, got "
                f"{type(to_dense).__name__}"
            )
        self.aggregate_axis = aggregate_axis
        self.to_dense = to_dense
        self.implementation = impl

    # ---- structure ------------------------------------------------------------------

    def call_kwargs(self) -> frozenset:
        return frozenset({"pattern"})

    def needs_full_spatial(self, out_full: bool) -> bool:
        return True  # mixes vertices: needs the covariance of every pair of them

    def mixes_space(self) -> bool:
        return True

    def _spatial_axes(self, ndim: int) -> tuple[int, ...]:
        """The aggregated axes as 0-based spatial indices, sorted (the pattern's order)."""
        if ndim < 3:
            raise ValueError(
                f"Aggregate needs inputs with vertex axes, (N, V, C) or (N, *V, C); got "
                f"{ndim}-axis inputs (N, C): reshape to (N, V, C)"
            )
        if self.aggregate_axis is None:
            return tuple(range(ndim - 2))
        out = []
        for a in self.aggregate_axis:
            if not -ndim <= a < ndim:
                raise ValueError(
                    f"Aggregate: `aggregate_axis` {a} is out of range for {ndim}-axis inputs"
                )
            a %= ndim
            if a in (0, ndim - 1):
                raise ValueError(
                    f"Aggregate: `aggregate_axis` {self.aggregate_axis} names the "
                    f"{'batch' if a == 0 else 'channel'} axis; name spatial axes 1..{ndim - 2}"
                )
            out.append(a - 1)
        if len(set(out)) != len(out):
            raise ValueError(f"Aggregate: `aggregate_axis` {self.aggregate_axis} repeats an axis")
        return tuple(sorted(out))

    def output_shape(self, input_shape):
        check_one_stream("Aggregate", input_shape)
        self._spatial_axes(len(input_shape))
        return tuple(input_shape)

    # ---- the graph ------------------------------------------------------------------

    def _dense(self, pattern, shape, dtype, who: str):
        """``pattern`` rows for points of ``shape`` as adjacency arrays ``(n, *V, *V)``."""
        n = shape[0]
        agg = self._spatial_axes(len(shape))
        vshape = tuple(shape[1 + d] for d in agg)
        if self.implementation == "SPARSE":
            return _edges_to_dense(pattern, n, vshape, dtype, who)
        dense = self.to_dense(pattern)
        got = tuple(jnp.shape(dense))
        if got != (n,) + vshape + vshape:
            # N, not n: inside the tiler n is a tile's number of points.
            axes = lambda dims: "(N" + "".join(f", {d}" for d in dims) + ")"
            raise ValueError(
                f"Aggregate: `pattern` ({who}) must be adjacency arrays of shape "
                f"{axes(vshape + vshape)} (points, tails {vshape}, heads {vshape}) after "
                f"`to_dense`, got {axes(got[1:]) if got else '()'}"
            )
        kind = np.dtype(jnp.result_type(dense))
        if kind.kind not in "biuf":  # bool, int, unsigned, float
            raise ValueError(
                f"Aggregate: `pattern` ({who}) must hold real weights, got dtype {kind}"
            )
        return jnp.asarray(dense).astype(dtype)

    def kernel(self, k):
        pattern = None if k.layer_inputs is None else k.layer_inputs.get("pattern")
        if pattern is None:
            return k
        if k.diagonal_spatial:
            raise ValueError(  # pragma: no cover - the engine chooses the full layout
                "Aggregate needs the full spatial layout"
            )
        dtype = jnp.result_type(k.nngp)
        A1 = self._dense(pattern[0], k.shape1, dtype, "pattern1")
        A2 = self._dense(pattern[1], k.shape2, dtype, "pattern2")
        agg = self._spatial_axes(len(k.shape1))

        def pair(a):
            return _sandwich(a, A1, A2, agg, both_batch=True)

        return k.replace(
            nngp=pair(k.nngp),
            ntk=None if k.ntk is None else pair(k.ntk),
            cov1=_sandwich(k.cov1, A1, A1, agg, both_batch=False),
            cov2=_sandwich(k.cov2, A2, A2, agg, both_batch=False),
            points_alike=False,  # each point has its own graph
        )

    def apply(self, params, x, pattern=NOT_GIVEN, **kwargs):
        if pattern is NOT_GIVEN:
            raise ValueError(
                "Aggregate: apply_fn needs `pattern`, the graphs of the points (e.g. "
                "apply_fn(params, x, pattern=A) with adjacency arrays A of shape (N, V, V)); "
                "pass pattern=None for the identity graph"
            )
        if pattern is None:
            return x
        x = jnp.asarray(x)
        pattern = _as_pattern(pattern)
        if jnp.shape(pattern)[:1] != x.shape[:1]:
            raise ValueError(
                f"Aggregate: `pattern` must have one graph per point of the inputs (leading "
                f"axis {x.shape[0]}), got shape {tuple(jnp.shape(pattern))}"
            )
        agg = self._spatial_axes(x.ndim)
        A = self._dense(pattern, x.shape, x.dtype, "pattern")
        ns = x.ndim - 2
        tails, heads = _letters(ns, 2)
        src = "n" + "".join(tails) + "z"
        adj = "n" + "".join(tails[d] for d in agg) + "".join(heads[d] for d in agg)
        dst = "n" + "".join(heads[d] if d in agg else tails[d] for d in range(ns)) + "z"
        return jnp.einsum(f"{src},{adj}->{dst}", x, A, precision=jax.lax.Precision.HIGHEST)


def _letters(n: int, groups: int):
    pool = [c for c in string.ascii_letters if c not in "nijz"]
    return [pool[g * n : (g + 1) * n] for g in range(groups)]


def _sandwich(a, A1, A2, agg, both_batch: bool):
    """A₁ᵀ a A₂ over the aggregated axes of a full-layout array ``a``: ``(n1, n2, X, X',
    ...)`` (``both_batch``) or ``(n, X, X', ...)`` with A₁, A₂ of the same points."""
    ns = (a.ndim - (2 if both_batch else 1)) // 2
    first, second, first_out, second_out = _letters(ns, 4)
    b1, b2 = ("i", "j") if both_batch else ("i", "i")
    lead = b1 + (b2 if both_batch else "")

    def spatial(f, s):
        return "".join(p + q for p, q in zip(f, s, strict=True))

    out1 = [first_out[d] if d in agg else first[d] for d in range(ns)]
    out2 = [second_out[d] if d in agg else second[d] for d in range(ns)]
    adj1 = b1 + "".join(first[d] for d in agg) + "".join(first_out[d] for d in agg)
    adj2 = b2 + "".join(second[d] for d in agg) + "".join(second_out[d] for d in agg)
    hi = jax.lax.Precision.HIGHEST
    # One side at a time: two batched products, never a V⁴ intermediate.
    a = jnp.einsum(
        f"{lead}{spatial(first, second)},{adj1}->{lead}{spatial(out1, second)}",
        a,
        A1,
        precision=hi,
    )
    return jnp.einsum(
        f"{lead}{spatial(out1, second)},{adj2}->{lead}{spatial(out1, out2)}", a, A2, precision=hi
    )


def _as_pattern(p):
    if isinstance(p, jax.Array | np.ndarray):
        return p
    try:
        return np.asarray(p)
    except (TypeError, ValueError):
        raise ValueError(f"Aggregate: `pattern` must be an array, got {type(p).__name__}") from None


def _edges_to_dense(edges, n: int, vshape: tuple, dtype, who: str):
    """Edge lists ``(n, E, K, 2)`` (or ``(n, E, 2)`` for K = 1) -> adjacency counts."""
    K = len(vshape)
    shape = tuple(jnp.shape(edges))
    kind = np.dtype(jnp.result_type(edges))
    if not np.issubdtype(kind, np.integer):
        raise ValueError(
            f"Aggregate: with implementation='SPARSE', `pattern` ({who}) must be integer edge "
            f"lists (tail, head) of shape (N, n_edges, {K}, 2), got dtype {kind}; for "
            "adjacency arrays use implementation='DENSE'"
        )
    if len(shape) == 3 and K == 1:
        edges = jnp.asarray(edges)[:, :, None, :]
        shape = shape[:2] + (1,) + shape[2:]
    if len(shape) != 4 or shape[0] != n or shape[2] != K or shape[3] != 2:
        raise ValueError(
            f"Aggregate: with implementation='SPARSE', `pattern` ({who}) must have shape "
            f"(N, n_edges, {K}, 2): per point, edges of (tail, head) coordinates over the "
            f"{K} aggregated axes{' (or (N, n_edges, 2))' if K == 1 else ''}; got {shape}"
        )
    edges = jnp.asarray(edges)
    valid = jnp.all(edges >= 0, axis=(2, 3))  # (n, E): padding edges have a negative entry
    coords = jnp.moveaxis(edges, 2, 0)  # (K, n, E, 2)
    flat = jnp.ravel_multi_index(tuple(coords), vshape, mode="wrap")  # (n, E, 2)
    V = int(np.prod(vshape))
    rows = jnp.broadcast_to(jnp.arange(n)[:, None], flat.shape[:2])
    dense = (
        jnp.zeros((n, V, V), dtype).at[rows, flat[..., 0], flat[..., 1]].add(valid.astype(dtype))
    )
    return dense.reshape((n,) + vshape + vshape)

r"""``DotGeneral``: a constant (non-trainable) linear map of the spatial axes.

``apply_fn`` is ``lax.dot_general(x, rhs, dimension_numbers)`` (or ``(lhs, x)``). For a
constant A contracted with spatial axes c of the input, the outputs at free positions
p are Σ_c A_c x_{c p}, so (neural-tangents' ``Kernel.dot_general``)

.. math::

    Σ'(x, x')_{p p'} = \sum_{c, c'} A_c A_{c'} Σ(x, x')_{c p, c' p'}, \qquad
    Θ' \text{ likewise}

(no parameters: Θ is mapped, not increased); a scalar A scales both by A².
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import is_concrete
from ._core import Layer
from ._indexing import check_default_axes, check_one_stream

__all__ = ["DotGeneral"]

_LETTERS = "abcdefgh"


def _dims(value, what: str) -> tuple:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    try:
        dims = tuple(value)
    except TypeError:
        raise TypeError(f"DotGeneral: {what} must be a tuple of ints, got {value!r}") from None
    if any(isinstance(d, bool) or not isinstance(d, int | np.integer) for d in dims):
        raise TypeError(f"DotGeneral: {what} must be a tuple of ints, got {value!r}")
    return tuple(int(d) for d in dims)


def _parse_dimension_numbers(dn) -> tuple:
    try:
        (lc, rc), (lb, rb) = dn
    except (TypeError, ValueError):
        raise TypeError(
            "DotGeneral: `dimension_numbers` must be ((lhs_contracting, rhs_contracting), "
            f"(lhs_batch, rhs_batch)), got {dn!r}"
        ) from None
    lc, rc = _dims(lc, "contracting dims"), _dims(rc, "contracting dims")
    lb, rb = _dims(lb, "batch dims"), _dims(rb, "batch dims")
    if len(lc) != len(rc) or len(lb) != len(rb):
        raise ValueError(
            f"DotGeneral: `dimension_numbers` {dn!r} pairs unequal numbers of lhs and rhs dims"
        )
    return (lc, rc), (lb, rb)


class DotGeneral(Layer):
    """Contract the activations with a constant ``lhs`` or ``rhs`` (``stax.DotGeneral``).

    Supported in the kernel regime: a scalar constant (any ``dimension_numbers`` with
    no dims), and a constant whose every axis is contracted with a spatial axis of the
    inputs (weighted sums over positions, e.g. the difference of two rows). Outputs
    keep points first and channels last, as every ntk_bayes layer needs; batch dims,
    free axes of the constant (which ``lax.dot_general`` places before the points or
    after the channels), and contracting the batch or channel axis are refused.
    ``precision`` applies to ``apply_fn``; the kernel always runs at full precision.
    """

    other: Any
    is_lhs: bool = eqx.field(static=True)
    dimension_numbers: tuple = eqx.field(static=True)
    precision: Any = eqx.field(static=True)

    def __init__(
        self,
        *,
        lhs=None,
        rhs=None,
        dimension_numbers=(((), ()), ((), ())),
        precision=None,
        batch_axis: int = 0,
        channel_axis: int = -1,
    ):
        check_default_axes("DotGeneral", batch_axis, channel_axis)
        if lhs is not None and rhs is not None:
            raise ValueError(
                "DotGeneral: at most one of `lhs` and `rhs` may be given; the other factor is "
                "the layer's input"
            )
        self.is_lhs = rhs is None
        self.dimension_numbers = _parse_dimension_numbers(dimension_numbers)
        self.precision = precision
        other = lhs if self.is_lhs else rhs
        (lc, rc), (lb, rb) = self.dimension_numbers
        if other is None:
            if lc or lb:
                raise ValueError(
                    "DotGeneral: `dimension_numbers` names dims but neither `lhs` nor `rhs` "
                    "is given; pass the constant to contract with"
                )
            self.other = None
            return
        self.other = _as_constant(other)
        if lb:
            raise ValueError(
                "DotGeneral: batch dims are not supported: lax.dot_general puts them before "
                "the points' axis, and ntk_bayes layers keep points on axis 0; contract every "
                "axis of the constant instead"
            )
        other_cs = lc if self.is_lhs else rc
        n_other = np.ndim(self.other)
        in_range = all(-n_other <= d < n_other for d in other_cs)
        canon = sorted(d % n_other for d in other_cs) if in_range else None
        if canon != list(range(n_other)):
            side = "lhs" if self.is_lhs else "rhs"
            raise ValueError(
                f"DotGeneral: every axis of the constant `{side}` (shape "
                f"{tuple(np.shape(self.other))}) must be contracted exactly once, got "
                f"contracting dims {tuple(other_cs)}; lax.dot_general would put its free axes "
                "outside the (N, ..., C) layout that ntk_bayes layers need"
            )

    # -- geometry ------------------------------------------------------------------
    def _pairs(self, ndim: int) -> list[tuple[int, int]]:
        """``(input spatial index s, constant axis j)`` for each contracted pair."""
        (lc, rc), _ = self.dimension_numbers
        input_cs, other_cs = (rc, lc) if self.is_lhs else (lc, rc)
        n_other = np.ndim(self.other)
        pairs = []
        for ic, oc in zip(input_cs, other_cs, strict=True):
            if not -ndim <= ic < ndim:
                raise ValueError(
                    f"DotGeneral: contracting dim {ic} is out of range for {ndim}-axis inputs"
                )
            ic %= ndim
            if ic == 0:
                raise ValueError(
                    "DotGeneral: the batch axis 0 cannot be contracted (it mixes points); "
                    "contract spatial axes only"
                )
            if ic == ndim - 1:
                raise ValueError(
                    "DotGeneral: the channel axis (-1) cannot be contracted: it is "
                    "infinitely wide in the kernel regime; contract spatial axes only"
                )
            pairs.append((ic - 1, oc % n_other))
        if len({s for s, _ in pairs}) != len(pairs):
            raise ValueError("DotGeneral: an input axis is contracted twice")
        return pairs

    def output_shape(self, input_shape):
        check_one_stream("DotGeneral", input_shape)
        if self.other is None or np.ndim(self.other) == 0:
            return tuple(input_shape)
        pairs = self._pairs(len(input_shape))
        shape = np.shape(self.other)
        for s, j in pairs:
            if input_shape[1 + s] != shape[j]:
                raise ValueError(
                    f"DotGeneral: input axis {1 + s} has size {input_shape[1 + s]} but the "
                    f"constant's axis {j} has size {shape[j]}"
                )
        gone = {1 + s for s, _ in pairs}
        return tuple(n for i, n in enumerate(input_shape) if i not in gone)

    def _contracts(self) -> bool:
        return self.other is not None and np.ndim(self.other) > 0

    def needs_full_spatial(self, out_full: bool) -> bool:
        return True if self._contracts() else out_full

    def mixes_space(self) -> bool:
        return self._contracts()

    # -- kernel and finite twin ---------------------------------------------------
    def kernel(self, k):
        if self.other is None:
            return k
        shape1, shape2 = self.output_shape(k.shape1), self.output_shape(k.shape2)
        a = jnp.asarray(self.other, k.nngp.dtype)
        if a.ndim == 0:
            a2 = a * a
            fn = lambda m, batch_ndim: m * a2
            return k.map_arrays(fn)
        if k.diagonal_spatial:  # pragma: no cover - needs_full_spatial asks for the full layout
            raise ValueError("DotGeneral: contraction needs covariances between positions")
        pairs = self._pairs(len(k.shape1))

        def fn(m, batch_ndim):
            batch = "ij"[:batch_ndim]
            n_sp = (m.ndim - batch_ndim) // 2
            sub = batch + "".join(_LETTERS[s] + _LETTERS[s].upper() for s in range(n_sp))
            contracted = {s: j for s, j in pairs}
            left = "".join(_LETTERS[s] for s, _ in sorted(pairs, key=lambda p: p[1]))
            right = left.upper()
            out = batch + "".join(
                _LETTERS[s] + _LETTERS[s].upper() for s in range(n_sp) if s not in contracted
            )
            return jnp.einsum(
                f"{sub},{left},{right}->{out}", m, a, a, precision=jax.lax.Precision.HIGHEST
            )

        return k.map_arrays(
            fn,
            shape1=shape1,
            shape2=shape2,
            diagonal_spatial=len(shape1) == 2,
        )

    def apply(self, params, x, **kwargs):
        if self.other is None:
            return x
        self.output_shape(x.shape)
        other = jnp.asarray(self.other, x.dtype)
        args = (other, x) if self.is_lhs else (x, other)
        return jax.lax.dot_general(*args, self.dimension_numbers, self.precision)


def _as_constant(value):
    """The constant as float64 numpy when concrete (cast to the kernel's dtype at use,
    so a float64 kernel sees the constant at full precision), else as given."""
    if isinstance(value, str | bytes):
        raise TypeError(f"DotGeneral: the constant must be an array, got {type(value).__name__}")
    if is_concrete(value):
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise TypeError(
                f"DotGeneral: the constant must hold real numbers, got dtype {arr.dtype}"
            )
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError("DotGeneral: the constant has non-finite entries")
        if arr.size == 0 or math.prod(arr.shape) == 0:
            raise ValueError(f"DotGeneral: the constant is empty (shape {arr.shape})")
        return arr
    return value

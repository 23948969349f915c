r"""``DotGeneral``: a constant (non-trainable) linear map of the spatial axes.

``apply_fn`` is ``lax.dot_general(x, rhs, dimension_numbers)`` (or ``(lhs, x)``). For a
constant A whose axes are contracted with spatial axes c of the input, batched with
spatial axes b, or free (new axes f), the outputs are y_{b f p} = Σ_c A_{b f c} x_{b c p},
so (neural-tangents' ``Kernel.dot_general``)

.. math::

    Σ'(x, x')_{(b f p), (b' f' p')} = \sum_{c, c'} A_{b f c} A_{b' f' c'}
        Σ(x, x')_{(b c p), (b' c' p')}, \qquad Θ' \text{ likewise}

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

_SPACE = "abcdefgh"  # input spatial axes (upper case: the second point)
_FREE = "pqrstuvw"  # free axes of the constant


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

    Every axis of the constant is contracted with a spatial axis of the inputs, batched
    with one (``dimension_numbers``' batch dims), or free. Outputs keep points first and
    channels last, as every ntk_bayes layer needs: ``lax.dot_general`` puts batch dims
    and an ``lhs``'s free axes before the points and an ``rhs``'s free axes after the
    channels, so ``apply_fn`` moves the points axis to the front and the channel axis to
    the end: the output is (N, batch dims, free axes of ``lhs``, the input's other
    spatial axes, free axes of ``rhs``, C). Readouts that pool or flatten all positions
    (neural-tangents' only layers that accept its own layout there) see the same kernel.
    Contracting or batching the points axis (a per-point constant, which
    neural-tangents applies as A[i] to point i of both x1 and x2) or the channel axis
    is refused. ``precision`` applies to ``apply_fn``; the kernel always runs at full
    precision.
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
        other_dims = (lc + lb) if self.is_lhs else (rc + rb)
        n_other = np.ndim(self.other)
        side = "lhs" if self.is_lhs else "rhs"
        if not all(-n_other <= d < n_other for d in other_dims):
            raise ValueError(
                f"DotGeneral: `dimension_numbers` names dims {tuple(other_dims)} of the "
                f"constant `{side}`, which has only {n_other} axes (shape "
                f"{tuple(np.shape(self.other))})"
            )
        if len({d % n_other for d in other_dims}) != len(other_dims):
            raise ValueError(
                f"DotGeneral: an axis of the constant `{side}` is named twice in "
                f"`dimension_numbers` {dimension_numbers!r}; contract or batch each axis once"
            )

    # -- geometry ------------------------------------------------------------------
    def _roles(self, ndim: int) -> list[tuple[str, int | None]]:
        """Per axis of the constant: ``("c", s)`` contracted with input spatial axis s
        (0-based among the spatial axes), ``("b", s)`` batched with it, ``("f", None)``
        free."""
        (lc, rc), (lb, rb) = self.dimension_numbers
        if self.is_lhs:
            (other_cs, input_cs), (other_bs, input_bs) = (lc, rc), (lb, rb)
        else:
            (input_cs, other_cs), (input_bs, other_bs) = (lc, rc), (lb, rb)
        n_other = np.ndim(self.other)
        roles: list[tuple[str, int | None]] = [("f", None)] * n_other
        seen = set()
        for kind, ins, outs in (("c", input_cs, other_cs), ("b", input_bs, other_bs)):
            word = "contracting" if kind == "c" else "batch"
            for ic, oc in zip(ins, outs, strict=True):
                if not -ndim <= ic < ndim:
                    raise ValueError(
                        f"DotGeneral: {word} dim {ic} is out of range for {ndim}-axis inputs"
                    )
                ic %= ndim
                if ic == 0 and kind == "c":
                    raise ValueError(
                        "DotGeneral: the batch axis 0 cannot be contracted (it mixes points); "
                        "contract spatial axes only"
                    )
                if ic == 0:
                    raise ValueError(
                        "DotGeneral: the points axis 0 cannot be a batch dim: a constant "
                        "with one slice per point (neural-tangents applies A[i] to point i "
                        "of both x1 and x2) ties the kernel to one fixed set of points; "
                        "apply the per-point map to the inputs before the network, or "
                        "batch a spatial axis"
                    )
                if ic == ndim - 1:
                    raise ValueError(
                        f"DotGeneral: the channel axis (-1) cannot be a {word} dim: it is "
                        f"infinitely wide in the kernel regime; use spatial axes only"
                    )
                if ic in seen:
                    raise ValueError(f"DotGeneral: input axis {ic} is named twice")
                seen.add(ic)
                roles[oc % n_other] = (kind, ic - 1)
        return roles

    def _out_spatial(self, roles, n_spatial: int) -> list[tuple[str, int]]:
        """The output's spatial axes in order: ``("s", s)`` from input spatial axis s
        (batched or free), ``("f", j)`` from free axis j of the constant."""
        (lc, rc), (lb, rb) = self.dimension_numbers
        input_bs = rb if self.is_lhs else lb
        batched = [("s", (b % (n_spatial + 2)) - 1) for b in input_bs]
        used = {s for kind, s in roles if kind in "cb"}
        free_in = [("s", s) for s in range(n_spatial) if s not in used]
        free_other = [("f", j) for j, (kind, _) in enumerate(roles) if kind == "f"]
        if self.is_lhs:
            return batched + free_other + free_in
        return batched + free_in + free_other

    def output_shape(self, input_shape):
        check_one_stream("DotGeneral", input_shape)
        if self.other is None or np.ndim(self.other) == 0:
            return tuple(input_shape)
        roles = self._roles(len(input_shape))
        shape = np.shape(self.other)
        for j, (kind, s) in enumerate(roles):
            if kind != "f" and input_shape[1 + s] != shape[j]:
                raise ValueError(
                    f"DotGeneral: input axis {1 + s} has size {input_shape[1 + s]} but the "
                    f"constant's axis {j} has size {shape[j]}"
                )
        spatial = self._out_spatial(roles, len(input_shape) - 2)
        sizes = [input_shape[1 + i] if kind == "s" else shape[i] for kind, i in spatial]
        return (input_shape[0], *sizes, input_shape[-1])

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
        roles = self._roles(len(k.shape1))
        spatial = self._out_spatial(roles, len(k.shape1) - 2)

        def left(kind, i):
            return _SPACE[i] if kind in "cbs" else _FREE[i]

        a1 = "".join(left(kind, s if kind != "f" else j) for j, (kind, s) in enumerate(roles))
        a2 = a1.upper()
        out_sp = "".join(left(kind, i) + left(kind, i).upper() for kind, i in spatial)

        def fn(m, batch_ndim):
            batch = "ij"[:batch_ndim]
            n_sp = (m.ndim - batch_ndim) // 2
            sub = batch + "".join(_SPACE[s] + _SPACE[s].upper() for s in range(n_sp))
            return jnp.einsum(
                f"{sub},{a1},{a2}->{batch}{out_sp}", m, a, a, precision=jax.lax.Precision.HIGHEST
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
        y = jax.lax.dot_general(*args, self.dimension_numbers, self.precision)
        if other.ndim == 0:
            return y
        # lax order: batch dims, lhs free axes, rhs free axes; the input's free axes
        # run from the points (0) to the channels (-1).
        roles = self._roles(x.ndim)
        n_b = sum(kind == "b" for kind, _ in roles)
        n_free_other = sum(kind == "f" for kind, _ in roles)
        n_free_in = x.ndim - sum(kind != "f" for kind, _ in roles)
        first = n_b + (n_free_other if self.is_lhs else 0)
        return jnp.moveaxis(y, (first, first + n_free_in - 1), (0, -1))


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

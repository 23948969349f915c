"""``Index``: numpy-style basic indexing of the spatial axes, and the ``Slice`` helper.

Indexing selects positions, so the kernel of the output is the input kernel at the
selected positions (both positions of a pair in the full layout); nothing is mixed.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx

from ._conv import reject_unused
from ._core import Layer

__all__ = ["Index", "Slice", "check_default_axes", "check_one_stream"]


def check_default_axes(layer: str, batch_axis, channel_axis) -> None:
    """Layers here work on (N, ..., C): other ``batch_axis``/``channel_axis`` are refused."""
    reject_unused(layer, {"batch_axis": batch_axis, "channel_axis": channel_axis})


def check_one_stream(layer: str, input_shape) -> None:
    if not isinstance(input_shape, tuple | list) or (
        input_shape and not isinstance(input_shape[0], int)
    ):
        raise ValueError(f"{layer} got several branches; close them with a fan-in first")


class _Slice:
    """``stax.Slice[1:10, :, ::-1]`` is ``(slice(1, 10), slice(None), slice(None, None, -1))``:
    Python allows slice syntax only inside brackets, so pass ``idx=stax.Slice[...]``."""

    def __getitem__(self, idx):
        return idx

    def __repr__(self) -> str:
        return "stax.Slice"


Slice = _Slice()

_FULL = (None, None, None)


def _encode(idx) -> tuple:
    """A hashable form of a basic index (``slice`` is unhashable before Python 3.12):
    ints stay, ``...`` becomes ``"..."``, a slice becomes ``(start, stop, step)``."""
    items = idx if isinstance(idx, tuple) else (idx,)
    out = []
    for i, it in enumerate(items):
        if it is Ellipsis:
            out.append("...")
        elif isinstance(it, slice):
            parts = (it.start, it.stop, it.step)
            for p in parts:
                if p is not None and (isinstance(p, bool) or not isinstance(p, int)):
                    raise TypeError(
                        f"Index: slice {it} in `idx` has a non-integer bound {p!r}; use ints"
                    )
            if it.step == 0:
                raise ValueError(f"Index: slice {it} in `idx` has step 0")
            out.append(parts)
        elif isinstance(it, int) and not isinstance(it, bool):
            out.append(int(it))
        else:
            kind = "None (np.newaxis)" if it is None else type(it).__name__
            raise TypeError(
                f"Index: entry {i} of `idx` is {kind}; only basic indexing (ints, slices, "
                "...) is supported, e.g. idx=stax.Slice[:, 1:4, ::2, :]"
            )
    if out.count("...") > 1:
        raise ValueError("Index: `idx` has more than one Ellipsis (...)")
    return tuple(out)


def _decode(item):
    return slice(*item) if isinstance(item, tuple) else item


def _is_full(item) -> bool:
    return (
        item == _FULL or item == (0, None, None) or item == (None, None, 1) or item == (0, None, 1)
    )


class Index(Layer):
    """Index into the activations as ``x[idx]`` (``stax.Index``), with ``idx`` from
    :data:`Slice`.

    Kernel regime: the channel axis (infinite) and the batch axis (the kernel's tiles
    split it) must be kept whole (``:`` or ``...``); select points by indexing the
    inputs instead, ``kernel_fn(x1[idx], x2)`` (every layer acts on each point alone,
    so this is the same). Spatial axes take ints (which drop the axis) and slices.
    """

    idx: tuple = eqx.field(static=True)

    def __init__(self, idx: Any, batch_axis: int = 0, channel_axis: int = -1):
        check_default_axes("Index", batch_axis, channel_axis)
        self.idx = _encode(idx)

    def _full_idx(self, ndim: int) -> tuple:
        """``idx`` with ``...`` expanded and trailing axes filled with ``:``."""
        idx = list(self.idx)
        n_real = len(idx) - idx.count("...")
        if n_real > ndim:
            raise ValueError(f"Index: `idx` has {n_real} entries for {ndim}-axis inputs")
        if "..." in idx:
            at = idx.index("...")
            idx[at : at + 1] = [_FULL] * (ndim - n_real)
        return tuple(idx + [_FULL] * (ndim - len(idx)))

    def output_shape(self, input_shape):
        check_one_stream("Index", input_shape)
        idx = self._full_idx(len(input_shape))
        out = []
        for axis, (item, n) in enumerate(zip(idx, input_shape, strict=True)):
            if isinstance(item, int):
                if not -n <= item < n:
                    raise ValueError(
                        f"Index: index {item} is out of range for axis {axis} of size {n}"
                    )
            else:
                out.append(len(range(*slice(*item).indices(n))))
        if 0 in out:
            raise ValueError(f"Index: `idx` selects nothing from shape {tuple(input_shape)}")
        return tuple(out)

    def _spatial_idx(self, ndim: int) -> tuple:
        idx = self._full_idx(ndim)
        if not _is_full(idx[0]):
            raise ValueError(
                "Index: the kernel cannot index the batch axis (0), whose tiles the engine "
                "splits; index the inputs instead, e.g. kernel_fn(x1[idx], x2) (every layer "
                "acts on each point alone, so this gives the same kernel)"
            )
        if not _is_full(idx[-1]):
            raise ValueError(
                "Index: the kernel cannot index the channel axis (-1): it is infinitely wide; "
                "keep it whole with ':' or '...'"
            )
        return tuple(_decode(i) for i in idx[1:-1])

    def kernel(self, k):
        sp = self._spatial_idx(len(k.shape1))
        shape1, shape2 = self.output_shape(k.shape1), self.output_shape(k.shape2)
        if not k.diagonal_spatial:  # both positions of each pair
            sp = tuple(s for s in sp for _ in range(2))
        full = slice(None)
        return k.replace(
            nngp=k.nngp[(full, full) + sp],
            ntk=None if k.ntk is None else k.ntk[(full, full) + sp],
            cov1=k.cov1[(full,) + sp],
            cov2=k.cov2[(full,) + sp],
            shape1=shape1,
            shape2=shape2,
            diagonal_spatial=k.diagonal_spatial or len(shape1) == 2,
        )

    def apply(self, params, x, **kwargs):
        return x[tuple(_decode(i) for i in self._full_idx(x.ndim))]

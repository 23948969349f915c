r"""Masked inputs: neural-tangents' ``mask_constant`` for variable-length data.

``kernel_fn(x1, x2, get, mask_constant=c)`` and ``apply_fn(params, x, mask_constant=c)``
treat every input entry equal to ``c`` (``NaN`` entries when ``c`` is NaN) as padding:
it is set to 0, and a boolean mask travels through the network beside the
activations (``apply_fn``) or the kernel state (``kernel_fn``), as in neural-tangents
0.6.5 (``supports_masking``):

* before each layer the masked entries of its input are 0 (the finite network) and the
  kernel entries that pair a masked position with anything are 0 (the kernel state);
* a layer maps the mask to the mask of its output (``_out_mask``): elementwise layers
  keep it; ``Dense``, ``Conv`` and attention mask a position only if all its channels
  are masked; ``Conv`` and local pooling keep the mask of each window's centre; global
  pooling masks nothing unless a point is masked everywhere (refused up front);
  ``Flatten`` reshapes it; ``FanInSum`` masks a position masked in every branch,
  ``FanInConcat`` concatenates;
* three layers read the mask: ``GlobalAvgPool`` averages over unmasked positions only,
  ``LayerNorm`` over spatial axes takes its statistics over unmasked positions, and
  ``GlobalSelfAttention`` gives masked keys no weight (logit −10²⁰ under softmax, 0
  otherwise) and zeroes the positional embedding at masked positions.

In the kernel state the mask is kept per position, ``(n, *S, 1)``, in
``Kernel.layer_inputs["mask"]`` (rows for ``x1``, rows for ``x2``), so the tiler slices
it with the points. Layers without a rule here refuse ``mask_constant`` by name.

Where neural-tangents skips the re-masking after a nonlinearity whose kernel is not 0 at
0 (``Sin``/``Cos``, ``Exp``, ``Polynomial`` with a constant, ``Elementwise``) and a
``Conv``, local pooling or ``Flatten`` follows, its kernel differs from its own
``apply_fn`` (which zeroes masked entries before every layer); ntk_bayes re-masks after
every layer and so agrees with the finite network.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import is_concrete
from ._kernel import _interleave

__all__ = [
    "MaskedArray",
    "unmask_fn",
    "NEG_INF",
    "check_mask_constant",
    "check_not_all_masked",
    "check_network",
    "input_mask",
    "position_mask",
    "kernel_masks",
    "token_masks",
    "unmasked_count",
    "masked_mean_var",
    "masked_kernel",
    "output_masks",
    "apply_masked",
]

NEG_INF = -1e20  # neural-tangents' masked softmax logit: finite, so no NaN
MASK = "mask"


class MaskedArray(eqx.Module):
    """An array and a boolean mask of its padded entries (``True``: masked), the output of
    ``apply_fn(..., mask_constant=c)`` as in neural-tangents; :func:`unmask_fn` turns it
    into a plain array with the masked entries set to 0."""

    masked_value: jax.Array
    mask: jax.Array


def unmask_fn(fn):
    """Wrap ``fn`` (an ``apply_fn``) so that :class:`MaskedArray` outputs become arrays
    with masked entries set to 0 (``neural_tangents.stax.unmask_fn``)."""

    def unmask(x):
        if isinstance(x, MaskedArray):
            return jnp.where(x.mask, jnp.zeros((), x.masked_value.dtype), x.masked_value)
        return x

    def fn_no_mask(*args, **kwargs):
        out = fn(*args, **kwargs)
        return jax.tree_util.tree_map(unmask, out, is_leaf=lambda v: isinstance(v, MaskedArray))

    return fn_no_mask


# ---- inputs --------------------------------------------------------------------------


def check_mask_constant(c, where: str) -> None:
    """A real scalar (NaN and ±inf allowed: they mask NaN or infinite entries, as in
    neural-tangents), checked before any work."""
    arr = c
    if is_concrete(c):  # a tracer (mask_constant under jit) has its shape and dtype
        try:
            arr = np.asarray(c)
        except (TypeError, ValueError):
            arr = None
    if isinstance(c, bool | str | bytes) or not hasattr(arr, "dtype"):
        raise TypeError(
            f"{where}: `mask_constant` must be a real number (the padding value), got "
            f"{type(c).__name__}"
        )
    if arr.ndim != 0:
        raise ValueError(
            f"{where}: `mask_constant` must be a scalar, the value that marks padded "
            f"entries, got shape {tuple(arr.shape)}; pad every input with one value"
        )
    if np.dtype(arr.dtype).kind not in "iuf":
        raise TypeError(f"{where}: `mask_constant` must be a real number, got dtype {arr.dtype}")


def input_mask(x, c):
    """``(x with masked entries 0, boolean mask of x's shape)``; NaN ``c`` masks NaNs."""
    c = jnp.asarray(c, x.dtype)
    mask = jnp.where(jnp.isnan(c), jnp.isnan(x), x == c)
    return jnp.where(mask, jnp.zeros((), x.dtype), x), mask


def check_not_all_masked(pos_mask, name: str) -> None:
    """Refuse a point whose every position is masked (its kernel would be 0/0)."""
    if not is_concrete(pos_mask):
        return
    m = np.asarray(pos_mask).reshape(pos_mask.shape[0], -1)
    bad = np.flatnonzero(m.all(axis=1))
    if bad.size:
        raise ValueError(
            f"`{name}` point {int(bad[0])} (of {bad.size} such) equals `mask_constant` at "
            "every position, so nothing of it is left to compare; drop such points or "
            "choose a mask_constant that only marks the padding"
        )


def position_mask(mask):
    """(n, *S, C) entry mask -> (n, *S, 1): a position is masked if every channel is."""
    return jnp.all(mask, axis=-1, keepdims=True)


# ---- the kernel state ----------------------------------------------------------------


def kernel_masks(k):
    """``(m1, m2)`` position masks ``(n, *S, 1)`` of the kernel state, or ``None``."""
    li = k.layer_inputs
    if not li or MASK not in li:
        return None
    return li[MASK]


def _with_masks(k, masks):
    li = dict(k.layer_inputs or {})
    if masks is None:
        li.pop(MASK, None)
    else:
        li[MASK] = masks
    return k.replace(layer_inputs=li or None)


def token_masks(k):
    """``(m1, m2)`` as ``(n, T)`` token masks (positions in row-major order), or ``None``."""
    masks = kernel_masks(k)
    if masks is None:
        return None
    return tuple(m.reshape(m.shape[0], -1) for m in masks)


def unmasked_count(m):
    """Number of unmasked positions of each point of a ``(n, *S, 1)`` mask, ``(n,)``."""
    return jnp.sum(~m.reshape(m.shape[0], -1), axis=1)


def _remask(k, masks):
    """Zero every kernel entry that pairs a masked position with anything."""
    p1, p2 = (m[..., 0] for m in masks)
    if k.diagonal_spatial:
        pair, own1, own2 = p1[:, None] | p2[None, :], p1, p2
    else:
        pair = _interleave(p1, True)[:, None] | _interleave(p2, False)[None, :]
        own1 = _interleave(p1, True) | _interleave(p1, False)
        own2 = _interleave(p2, True) | _interleave(p2, False)

    def zero(a, m):
        return None if a is None else jnp.where(m, jnp.zeros((), a.dtype), a)

    # Points with different masks differ at the masked positions, so a constant layer
    # (Monomial(0), ...) no longer makes every pair one point twice.
    return k.replace(
        nngp=zero(k.nngp, pair),
        ntk=zero(k.ntk, pair),
        cov1=zero(k.cov1, own1),
        cov2=zero(k.cov2, own2),
        points_alike=False,
    )


def masked_mean_var(x, axes, mask, get_var: bool):
    """Mean (and variance) of ``x`` over ``axes`` counting only unmasked entries (at
    least one), keepdims; the masked entries of ``x`` are 0."""
    keep = jnp.broadcast_to(~mask, x.shape)
    count = jnp.maximum(jnp.sum(keep, axis=axes, keepdims=True), 1).astype(x.dtype)
    mean = jnp.sum(jnp.where(keep, x, 0), axis=axes, keepdims=True) / count
    if not get_var:
        return mean, None
    var = jnp.sum(jnp.where(keep, (x - mean) ** 2, 0), axis=axes, keepdims=True) / count
    return mean, var


# ---- how each layer moves the mask ---------------------------------------------------


def _centre_slice(mask, window, strides, padding):
    """The mask of each window's centre (neural-tangents' ``_pool_mask``), of the
    positions (channels collapsed)."""
    from ._conv import window_output_size, window_pads

    mask = position_mask(mask)
    idx = [slice(None)]
    for size, f, s in zip(mask.shape[1:-1], window, strides, strict=True):
        lo, _ = window_pads(size, f, s, padding)
        out = window_output_size(size, f, s, padding)
        start = (f - 1) // 2 - lo
        idx.append(slice(start, start + (out - 1) * s + 1, s))
    return mask[tuple(idx) + (slice(None),)]


def _and(masks):
    """A position is masked in a sum only if it is masked in every branch."""
    out = None
    for m in masks:
        if m is not None:
            out = m if out is None else out & m
    return out


def _concat(masks, shapes, axis):
    """neural-tangents' ``_concat_masks``: broadcast each branch's mask to its branch's
    extent along ``axis`` and concatenate (``None``: nothing masked)."""
    ndim = len(shapes[0])
    axis %= ndim

    def along(m, size):  # m's shape with ``size`` on the concatenation axis
        return m.shape[:axis] + (size,) + m.shape[axis + 1 :]

    full = [
        jnp.zeros(s, bool) if m is None else jnp.broadcast_to(m, along(m, s[axis]))
        for m, s in zip(masks, shapes, strict=True)
    ]
    widest = jnp.zeros(tuple(max(m.shape[i] for m in full) for i in range(ndim)), bool)
    full = [jnp.broadcast_to(m, along(widest, m.shape[axis])) for m in full]
    return jnp.concatenate(full, axis=axis)


def _rules():
    from ._attention import GlobalSelfAttention
    from ._branching import FanInConcat, FanInSum, FanOut
    from ._conv import Conv
    from ._dense import Dense, Identity
    from ._dropout import Dropout
    from ._elementwise import Elementwise
    from ._normalization import LayerNorm
    from ._pooling import Flatten, _GlobalPool, _Pool

    keep = lambda layer, m, shape: m
    collapse = lambda layer, m, shape: position_mask(m)
    return (
        (FanOut, lambda layer, m, shape: [m] * layer.num),
        (FanInSum, lambda layer, ms, shapes: _and(ms)),
        (FanInConcat, lambda layer, ms, shapes: _concat(ms, shapes, layer.axis)),
        (Elementwise | Identity | LayerNorm | Dropout, keep),
        (Dense | GlobalSelfAttention, collapse),
        (Conv, lambda c, m, shape: _centre_slice(m, c.filter_shape, c.strides, c.padding)),
        (_Pool, lambda p, m, shape: _centre_slice(m, p.window_shape, p.strides, p.padding)),
        (_GlobalPool, lambda layer, m, shape: _everywhere(m)),
        (Flatten, lambda layer, m, shape: _flatten(m, shape)),
    )


def _rule(layer):
    for types, rule in _rules():
        if isinstance(layer, types):
            return rule
    raise ValueError(
        f"`mask_constant`: stax.{type(layer).__name__} does not support masked inputs in "
        "ntk_bayes (supported: Dense, Conv, elementwise nonlinearities, Identity, "
        "Dropout, LayerNorm, AvgPool, SumPool, GlobalAvgPool, GlobalSumPool, Flatten, "
        "GlobalSelfAttention, FanOut, FanInSum, FanInConcat, serial, parallel); drop "
        "mask_constant and give the network inputs without padding, or remove the layer"
    )


def _everywhere(m):
    """Global pooling: (n, *S, C) -> (n, 1), masked where every position is."""
    m = position_mask(m)
    return jnp.all(m, axis=tuple(range(1, m.ndim - 1)))


def _flatten(m, shape):
    m = jnp.broadcast_to(m, tuple(shape))
    return m.reshape(m.shape[0], -1)


def _out_mask(layer, mask, in_shape):
    """The mask of ``layer``'s output (``None``: nothing masked)."""
    rule = _rule(layer)
    if mask is None or (isinstance(mask, list) and all(m is None for m in mask)):
        return None
    return rule(layer, mask, in_shape)


def _children(net):
    from ._branching import Parallel
    from ._core import Serial

    return net.layers if isinstance(net, Serial | Parallel) else None


def check_network(net) -> None:
    """Refuse, before any work, a network with a layer that has no masking rule."""
    children = _children(net)
    if children is None:
        _rule(net)
        return
    for lay in children:
        check_network(lay)


# ---- the two interpreters ------------------------------------------------------------


def masked_kernel(net, k):
    """``net.kernel(k)`` for a state that carries masks: each layer's output masks are
    computed and the output re-masked (see the module docstring)."""
    from ._branching import Parallel
    from ._core import Serial, _checkpointed_kernel

    if isinstance(net, Serial):
        for lay in net.layers:
            k = masked_kernel(lay, k)
        return k
    if isinstance(net, Parallel):
        return [masked_kernel(lay, kk) for lay, kk in zip(net.layers, net._split(k), strict=True)]
    out = _checkpointed_kernel(net, k)
    if isinstance(out, list):  # FanOut: every copy keeps the masks
        return out
    if isinstance(k, list):  # fan-ins: one mask per branch on each side
        got = [kernel_masks(kk) or (None, None) for kk in k]
        side = [
            _out_mask(net, [g[0] for g in got], [kk.shape1 for kk in k]),
            _out_mask(net, [g[1] for g in got], [kk.shape2 for kk in k]),
        ]
    else:
        got = kernel_masks(k) or (None, None)
        side = [_out_mask(net, got[0], k.shape1), _out_mask(net, got[1], k.shape2)]
    if len(out.shape1) <= 2 or side[0] is None or side[1] is None:
        return _with_masks(out, None)
    masks = (position_mask(side[0]), position_mask(side[1]))
    return _remask(_with_masks(out, masks), masks)


def output_masks(net, masks, shape1, shape2):
    """Position masks of the network's output from those of its inputs (the kernel
    state's, for ``get=None``), or ``None`` when the output has no spatial axes."""
    out = tuple(_propagate(net, m, s)[0] for m, s in zip(masks, (shape1, shape2), strict=True))
    return None if any(m is None or isinstance(m, list) for m in out) else out


def _propagate(net, mask, shape):
    """``(mask, shape)`` after ``net``, as :func:`masked_kernel` moves them."""
    from ._branching import Parallel

    children = _children(net)
    if isinstance(net, Parallel):
        masks = mask if isinstance(mask, list) else [mask] * len(children)
        outs = [_propagate(*a) for a in zip(children, masks, shape, strict=True)]
        return [o[0] for o in outs], [o[1] for o in outs]
    if children is not None:
        for lay in children:
            mask, shape = _propagate(lay, mask, shape)
        return mask, shape
    new, out_shape = _out_mask(net, mask, shape), net.output_shape(shape)
    if isinstance(new, list) or new is None:
        return new, out_shape
    return (None if len(out_shape) <= 2 else position_mask(new)), out_shape


def masked_apply(net, params, x, mask, **kwargs):
    """``(output, output mask)`` of ``net.apply`` on inputs whose entries under ``mask``
    are padding: they are set to 0 before every layer."""
    from ._attention import GlobalSelfAttention
    from ._branching import Parallel
    from ._core import Serial, split_rng
    from ._normalization import LayerNorm
    from ._pooling import _GlobalPool

    if isinstance(net, Serial | Parallel):
        if len(params) != len(net.layers):
            raise ValueError(
                f"`params` has {len(params)} entries but the network has {len(net.layers)} "
                "layers; pass the params returned by this network's init_fn"
            )
        rngs = split_rng(kwargs, len(net.layers))
        if isinstance(net, Serial):
            for lay, p, r in zip(net.layers, params, rngs, strict=True):
                x, mask = masked_apply(lay, p, x, mask, **kwargs, rng=r)
            return x, mask
        xs = net._split(x)
        ms = mask if isinstance(mask, list) else [mask] * len(xs)
        outs = [
            masked_apply(lay, p, xi, mi, **kwargs, rng=r)
            for lay, p, xi, mi, r in zip(net.layers, params, xs, ms, rngs, strict=True)
        ]
        return [o[0] for o in outs], [o[1] for o in outs]
    if isinstance(x, list):
        x = [_zero(xi, mi) for xi, mi in zip(x, mask, strict=True)]
        shape = [xi.shape for xi in x]
    else:
        x, shape = _zero(x, mask), x.shape
    if mask is not None and isinstance(net, _GlobalPool | LayerNorm | GlobalSelfAttention):
        out = net.apply(params, x, mask=mask, **kwargs)
    else:
        out = net.apply(params, x, **kwargs)
    return out, _out_mask(net, mask, shape)


def _zero(x, mask):
    return x if mask is None else jnp.where(mask, jnp.zeros((), x.dtype), x)


def apply_masked(net, params, inputs, mask_constant, **kwargs):
    """``apply_fn(params, inputs, mask_constant=c)``: a :class:`MaskedArray` of the
    outputs and their mask (a :class:`MaskedArray` input brings its own mask)."""
    check_network(net)
    if isinstance(inputs, MaskedArray):
        x, mask = inputs.masked_value, inputs.mask
    else:
        check_mask_constant(mask_constant, "apply_fn")
        x, mask = input_mask(jnp.asarray(inputs), mask_constant)
    out, out_mask = masked_apply(net, params, x, mask, **kwargs)
    return out if out_mask is None else MaskedArray(out, out_mask)

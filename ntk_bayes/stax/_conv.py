r"""Convolution (``Conv``) and the window sums that convolution and pooling kernels share.

A convolution is a Dense layer applied to every patch, with weights shared across
positions, so its kernel is the patch-average of the input kernel (Novak et al. 2019;
Garriga-Alonso et al. 2019). Kernels have spatial axes in one of two layouts (see
:class:`~ntk_bayes.stax.Kernel`): the *diagonal* layout keeps only same-position
covariances ``Σ[p, p]``; the *full* layout keeps ``Σ[p, p']`` for every pair of positions,
interleaved as ``(H, H', W, W', ...)``. A window sum over the full layout moves both
members of each interleaved pair by the same filter offset, so one pass per spatial
axis (``f`` shifted slices of the padded pair) computes it.
"""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._numerics import check_int
from ._batching import apart
from ._core import Layer, check_hyper
from ._dense import _affine_prior_std, check_parameterization

__all__ = [
    "Conv",
    "PADDINGS",
    "check_padding",
    "check_window",
    "window_output_size",
    "window_pads",
    "window_sum",
    "pad_spatial",
    "reject_unused",
]

PADDINGS = ("VALID", "SAME", "CIRCULAR")


# ---- argument checks shared by Conv and pooling --------------------------------------


def check_padding(padding, layer: str) -> str:
    if not isinstance(padding, str) or padding.upper() not in PADDINGS:
        raise ValueError(f"{layer}: unknown `padding` {padding!r}; choose one of {PADDINGS}")
    return padding.upper()


def check_window(values, name: str, layer: str, n: int | None = None) -> tuple:
    """A tuple of positive ints (``filter_shape``, ``window_shape``, ``strides``)."""
    if isinstance(values, int) and not isinstance(values, bool):
        raise TypeError(
            f"{layer}: `{name}` must be a tuple with one entry per spatial axis, e.g. "
            f"({values}, {values}) for images, got the int {values}"
        )
    try:
        out = tuple(values)
    except TypeError:
        raise TypeError(f"{layer}: `{name}` must be a tuple of ints, got {values!r}") from None
    if not out or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in out):
        raise ValueError(f"{layer}: `{name}` must be a non-empty tuple of positive ints, got {out}")
    if n is not None and len(out) != n:
        raise ValueError(
            f"{layer}: `{name}` has {len(out)} entries but the window has {n} spatial axes"
        )
    return out


def reject_unused(layer: str, unused: dict) -> None:
    """Accept neural-tangents' layout keywords only at their default values."""
    for name, default in (("batch_axis", 0), ("channel_axis", -1)):
        if name in unused and unused.pop(name) != default:
            raise ValueError(
                f"{layer}: only the default `{name}={default}` is supported; move axes to "
                "(N, *spatial, C) with jnp.moveaxis first"
            )
    if "dimension_numbers" in unused:
        dn = unused.pop("dimension_numbers")
        if dn is not None and not _channels_last(dn):
            raise ValueError(
                f"{layer}: only channels-last inputs (N, *spatial, C) are supported, so "
                "`dimension_numbers` must be None or name that layout, e.g. "
                f"('NHWC', 'HWIO', 'NHWC'), got {dn!r}; transpose NCHW data with jnp.moveaxis"
            )
    if "s" in unused and tuple(unused.pop("s")) != (1, 1):
        raise ValueError(f"{layer}: only s=(1, 1) is supported")
    if unused:
        raise TypeError(f"{layer}: unexpected keyword argument(s) {sorted(unused)}")


def _channels_last(dn) -> bool:
    """Whether ``dimension_numbers`` names the supported layout: inputs and outputs
    ``N...C`` and filters ``...IO`` with the same spatial letters in the same order."""
    if not (isinstance(dn, list | tuple) and len(dn) == 3 and all(isinstance(d, str) for d in dn)):
        return False
    lhs, rhs, out = dn
    spatial = lhs[1:-1]
    return (
        lhs[:1] == "N"
        and lhs[-1:] == "C"
        and out == lhs
        and rhs == spatial + "IO"
        and len(set(lhs)) == len(lhs)
        and not set(spatial) & set("NCIO")
    )


def check_spatial_input(layer: str, input_shape, n_spatial: int, what: str) -> tuple:
    """Validate that ``input_shape`` is ``(N, *spatial, C)`` with ``n_spatial`` axes."""
    shape = tuple(input_shape)
    if isinstance(input_shape, list) and shape and not isinstance(shape[0], int):
        raise ValueError(f"{layer} got several branches; close them with a fan-in first")
    if len(shape) - 2 != n_spatial:
        layout = {1: "(N, T, C)", 2: "(N, H, W, C)", 3: "(N, D, H, W, C)"}.get(
            n_spatial, f"(N, {n_spatial} spatial axes, C)"
        )
        hint = (
            "; (N, features) data has no spatial axes: use Dense, or reshape to (N, features, 1) "
            "to treat the features as a 1-D signal"
            if len(shape) == 2
            else ""
        )
        raise ValueError(
            f"{layer}: {what} has {n_spatial} spatial axes, so inputs must be {layout}; got "
            f"shape {shape}{hint}"
        )
    return shape


def window_pads(size: int, f: int, s: int, padding: str) -> tuple[int, int]:
    """(low, high) padding of one spatial axis, as XLA's SAME/VALID (CIRCULAR pads as SAME)."""
    if padding == "VALID":
        return 0, 0
    (pads,) = jax.lax.padtype_to_pads((size,), (f,), (s,), "SAME")
    return tuple(pads)


def window_output_size(size: int, f: int, s: int, padding: str) -> int:
    lo, hi = window_pads(size, f, s, padding)
    return (size + lo + hi - f) // s + 1


def check_window_fits(layer: str, spatial, window, padding: str, name: str) -> None:
    for axis, (size, f) in enumerate(zip(spatial, window, strict=True)):
        if f > size and padding != "SAME":
            raise ValueError(
                f"{layer}: `{name}` {tuple(window)} is larger than the input's spatial shape "
                f"{tuple(spatial)} on spatial axis {axis} ({f} > {size}) with padding "
                f"{padding!r}; use a smaller window or padding='SAME'"
            )


# ---- window sums in both kernel layouts ----------------------------------------------


def pad_spatial(x, axes: Sequence[int], pads: Sequence[tuple[int, int]], padding: str):
    """Pad ``axes`` of ``x``: zeros, or periodic copies for CIRCULAR padding."""
    widths = [(0, 0)] * x.ndim
    for ax, p in zip(axes, pads, strict=True):
        widths[ax] = tuple(p)
    if all(w == (0, 0) for w in widths):
        return x
    return jnp.pad(x, widths, mode="wrap" if padding == "CIRCULAR" else "constant")


def window_sum(x, batch_ndim: int, window, strides, padding: str, full: bool):
    """Sum over every window offset, applied to the spatial axes of a kernel array.

    ``x`` has ``batch_ndim`` leading axes, then spatial axes in the diagonal layout
    ``(X, Y, ...)`` or, if ``full``, the interleaved layout ``(X, X', Y, Y', ...)``.
    In the full layout both axes of a pair shift together: entry ``[p, p']`` of the
    result sums ``x[s p + d, s p' + d]`` over offsets ``d`` of the window.

    On CPU the sum runs apart from its neighbours (:func:`_batching.apart`). Without
    that, XLA's CPU fusion copies the elementwise layer that produced ``x`` (the
    arc-cosine kernel of a ReLU, say) into each shifted read of the window sum, and fuses
    the sum's last in-place update into the next layer, where the update's bounds checks
    stop vectorisation: the 3-conv CNN-GAP benchmark (n=128) took 1.35 s of CPU instead
    of 0.87 s. The tiler materialises its tiles the same way.
    """
    trivial = all(f == 1 and s == 1 for f, s in zip(window, strides, strict=True))
    if trivial or x.size == 0 or jax.default_backend() != "cpu":
        return _window_sum(x, batch_ndim, window, strides, padding, full)
    shape = list(x.shape)
    step = 2 if full else 1
    for i, (f, s) in enumerate(zip(window, strides, strict=True)):
        ax = batch_ndim + step * i
        shape[ax : ax + step] = [window_output_size(x.shape[ax], f, s, padding)] * step
    fn = lambda v: _window_sum(v, batch_ndim, window, strides, padding, full)
    return apart(fn, x, jax.ShapeDtypeStruct(tuple(shape), x.dtype))


def _window_sum(x, batch_ndim: int, window, strides, padding: str, full: bool):
    step = 2 if full else 1
    # Last spatial axis first: 1.1-1.3x faster on CPU than first-axis-first.
    for i, (f, s) in reversed(list(enumerate(zip(window, strides, strict=True)))):
        ax = batch_ndim + step * i
        axes = (ax, ax + 1) if full else (ax,)
        size = x.shape[ax]
        lo, hi = window_pads(size, f, s, padding)
        out = (size + lo + hi - f) // s + 1
        if f == 1 and s == 1 and lo == hi == 0:
            continue
        if padding == "SAME" and s == 1:
            x = _same_shift_sum(x, axes, size, lo, f)
            continue
        xp = pad_spatial(x, axes, [(lo, hi)] * len(axes), padding)
        acc = None
        for d in range(f):
            idx = [slice(None)] * x.ndim
            for a in axes:
                idx[a] = slice(d, d + s * (out - 1) + 1, s)
            term = xp[tuple(idx)]
            acc = term if acc is None else acc + term
        x = acc
    return x


def _same_shift_sum(x, axes, size, lo, f):
    """Stride-1 zero-padded window sum along one axis (pair) as one sum of shifted
    interiors: ``x`` plus each other offset's slice, zero-padded back to full size,
    added in one elementwise pass (no padded copy of ``x``, no in-place updates; off
    the CPU the in-place form, :func:`_in_place_shift_sum`).

    On CPU each axis's pass runs apart (:func:`apart`): left to itself XLA fused the
    passes of two spatial axes into one that recomputed the first axis's sums for every
    offset of the second, and in-place updates (``.at[].add``, the form before) ran on
    one thread. Measured 2026-12-05 on the Intel host (3-conv networks, float32, n =
    64-128, compiled objects, alternating calls, paired medians of 8 rounds, outputs bit
    for bit the same): CNN-GAP with 3 x 3 windows 325 -> 229 ms, 5 x 5 windows 138 ->
    92 ms, with a 3 x 3 SAME AvgPool 137 -> 87 ms, against +3.6% to +25% for the one
    pass without the boundary.
    """

    if jax.default_backend() != "cpu":
        return _in_place_shift_sum(x, axes, size, lo, f)
    shifts = _shifts(x.ndim, axes, size, lo, f)
    if not shifts:
        return x

    def one_pass(v):
        acc = v
        for _, src, widths in shifts:
            acc = acc + jnp.pad(v[src], widths)
        return acc

    return apart(one_pass, x, jax.ShapeDtypeStruct(x.shape, x.dtype))


def _shifts(ndim: int, axes, size: int, lo: int, f: int) -> list:
    """``(destination, source, pad widths)`` of each non-zero offset of a stride-1 window
    along ``axes``: the source slice moved to the destination, or zero-padded back to
    full size by the widths."""
    out = []
    for d in range(f):
        shift = d - lo
        if shift == 0 or abs(shift) >= size:
            continue
        dst = slice(0, size - shift) if shift > 0 else slice(-shift, size)
        src = slice(shift, size) if shift > 0 else slice(0, size + shift)
        i_dst, i_src, widths = [slice(None)] * ndim, [slice(None)] * ndim, [(0, 0)] * ndim
        for a in axes:
            i_dst[a], i_src[a] = dst, src
            widths[a] = (0, shift) if shift > 0 else (-shift, 0)
        out.append((tuple(i_dst), tuple(i_src), widths))
    return out


def _in_place_shift_sum(x, axes, size, lo, f):
    """The form of :func:`_same_shift_sum` off the CPU (measured on GPU before the CPU
    form changed): the first shifted interior added in one pass that writes a new
    array, the others updated in place in it (updating ``x`` itself made XLA copy each
    shifted interior out first, as it aliases the target)."""
    acc = None
    for dst, src, widths in _shifts(x.ndim, axes, size, lo, f):
        if acc is None:
            acc = x + jnp.pad(x[src], widths)
        else:
            acc = acc.at[dst].add(x[src])
    return x if acc is None else acc


# A first Conv computes its patch averages from the inputs' patches up to this many
# entries per window (F C): summed entry by entry, F C multiply-adds per entry of the
# kernel against the window sums' C and F adds (measured at F C = 9: 43 ms of ~375
# saved). A contraction instead (its product, then a copy that transposes it into the
# interleaved layout) saved only 12 ms at F C = 9, and its cost grows with F C.
_PATCH_TERMS_MAX = 32


def _patch_products(p1, p2, full: bool, pairs: bool):
    """Σ_z p1[.., z] p2[.., z] for patches ``(n, *spatial, Z)``, one multiply-add per
    entry z in one elementwise pass: ``(n1, n2, *S)`` of every pair of points
    (``pairs``) or ``(n, *S)`` of each point with itself (``p2`` is ``p1``); ``S`` the
    diagonal layout ``(H, W, ...)`` or, if ``full``, the interleaved ``(H, H', W, W',
    ...)``."""
    spatial = p1.shape[1:-1]
    # broadcast shapes: each side's positions on its own axes of the output layout
    if full:
        s1 = tuple(d for h in spatial for d in (h, 1))
        s2 = tuple(d for h in spatial for d in (1, h))
    else:
        s1 = s2 = tuple(spatial)
    n1, n2 = p1.shape[0], p2.shape[0]
    if pairs:
        shape1, shape2 = (n1, 1) + s1, (1, n2) + s2
    else:
        shape1, shape2 = (n1,) + s1, (n2,) + s2
    acc = None
    for z in range(p1.shape[-1]):
        term = p1[..., z].reshape(shape1) * p2[..., z].reshape(shape2)
        acc = term if acc is None else acc + term
    return acc


def _conv_spec(n_spatial: int) -> tuple[str, str, str]:
    letters = "".join(c for c in string.ascii_uppercase if c not in "NCIO")[:n_spatial]
    return ("N" + letters + "C", letters + "IO", "N" + letters + "C")


# ---- the layer --------------------------------------------------------------------------


class Conv(Layer):
    r"""Convolution over the spatial axes of ``(N, *spatial, C)`` inputs, weights shared.

    With F = prod(``filter_shape``), n = F · C_in the fan-in, σ_w = ``W_std``,
    σ_b = ``b_std`` (0 when ``None``) and A the patch average
    ``(A K)[p, p'] = F^{-1} Σ_d K[s p + d, s p' + d]`` (zero padding for ``"SAME"``,
    periodic for ``"CIRCULAR"``; s = ``strides``):

    .. math::

        Σ' = σ_w^2 A Σ + σ_b^2, \qquad
        Θ' = \begin{cases} Σ' + σ_w^2 A Θ & \text{"ntk"} \\
                           n A Σ + [σ_b \ne \text{None}] + σ_w^2 A Θ & \text{"standard"}
             \end{cases}

    (Novak et al. 2019, "Bayesian deep CNNs with many channels are Gaussian processes";
    Arora et al. 2019, "On exact computation with an infinitely wide neural net").
    On the diagonal layout A only needs same-position entries, so a network read out by
    ``Flatten`` keeps ``(n1, n2, H, W)``; global pooling needs the full layout.

    Finite width ("ntk"): W ~ N(0, 1) of shape ``filter_shape + (C_in, out_chan)``,
    b ~ N(0, 1), and ``W_std / sqrt(n) * conv(x, W) + b_std * b``; "standard" draws
    W ~ N(0, W_std²/n), b ~ N(0, b_std²) and computes ``conv(x, W) + b``.
    """

    out_chan: int = eqx.field(static=True)
    filter_shape: tuple = eqx.field(static=True)
    strides: tuple = eqx.field(static=True)
    padding: str = eqx.field(static=True)
    W_std: Any = 1.0
    b_std: Any = None
    parameterization: str = eqx.field(static=True, default="ntk")

    def __init__(
        self,
        out_chan,
        filter_shape,
        strides=None,
        padding="VALID",
        W_std=1.0,
        b_std=None,
        parameterization="ntk",
        **unused,
    ):
        out_chan = check_int(
            out_chan,
            "out_chan",
            low=1,
            message="Conv: `{name}` must be a positive integer, got {value!r}",
        )
        reject_unused("Conv", dict(unused))
        self.filter_shape = check_window(filter_shape, "filter_shape", "Conv")
        n = len(self.filter_shape)
        dn = unused.get("dimension_numbers")
        if dn is not None and len(dn[0]) - 2 != n:
            raise ValueError(
                f"Conv: `dimension_numbers` {dn!r} names {len(dn[0]) - 2} spatial axes but "
                f"`filter_shape` {self.filter_shape} has {n}"
            )
        self.strides = (1,) * n if strides is None else check_window(strides, "strides", "Conv", n)
        self.padding = check_padding(padding, "Conv")
        check_hyper(W_std, "W_std", "Conv")
        check_hyper(b_std, "b_std", "Conv", allow_none=True)
        self.out_chan = out_chan
        self.W_std = W_std
        self.b_std = b_std
        self.parameterization = check_parameterization(parameterization, "Conv")

    @property
    def n_spatial(self) -> int:
        return len(self.filter_shape)

    def output_shape(self, input_shape):
        shape = check_spatial_input("Conv", input_shape, self.n_spatial, "filter_shape")
        spatial = shape[1:-1]
        check_window_fits("Conv", spatial, self.filter_shape, self.padding, "filter_shape")
        out = tuple(
            window_output_size(h, f, s, self.padding)
            for h, f, s in zip(spatial, self.filter_shape, self.strides, strict=True)
        )
        return (shape[0],) + out + (self.out_chan,)

    def needs_full_spatial(self, out_full: bool) -> bool:
        return out_full

    def mixes_space(self) -> bool:
        return True

    def kernel(self, k):
        f_size = math.prod(self.filter_shape)
        full = not k.diagonal_spatial

        def avg(x, batch_ndim):
            s = window_sum(x, batch_ndim, self.filter_shape, self.strides, self.padding, full)
            return s / f_size

        # The inputs' NTK is zero (is_input: no layer with parameters came before, and
        # the layers that keep the flag map a zero NTK to zero): skip its window sum
        # (on CPU XLA would constant-fold the zeros inside the isolating conditional).
        ntk_avg = None if k.ntk is None or k.is_input else avg(k.ntk, 2)
        return self._from_averages(k, avg(k.nngp, 2), ntk_avg, avg(k.cov1, 1), avg(k.cov2, 1))

    def kernel_of_inputs(self, x1, x2, k):
        """The patch averages of the input kernel as products of the inputs' patches:
        ``(A K)[p, p'] = (F C)^{-1} Σ_z P(x1)[p, z] P(x2)[p', z]`` with ``P(x)[p]`` the
        ``F C`` entries of the window at ``p`` (padded as the layer pads), summed entry
        by entry in one pass that writes the kernel's layout, instead of materialising
        ``x1 x2ᵀ / C`` at every pair of positions and summing ``F`` shifted copies of it
        (3-conv CNN-GAP, n = 128: that first window sum was 56 ms of ~370 per call; this
        form saved 43). Only for windows of at most ``_PATCH_TERMS_MAX`` entries: beyond,
        the sum costs F times the contraction over channels it replaces (``None``: the
        window sums)."""
        f_size = math.prod(self.filter_shape)
        scale = x1.shape[-1] * f_size
        if scale > _PATCH_TERMS_MAX:
            return None
        p1, p2 = self._patches(x1), self._patches(x2)
        full = not k.diagonal_spatial
        nngp_avg = _patch_products(p1, p2, full, pairs=True) / scale
        cov1_avg = _patch_products(p1, p1, full, pairs=False) / scale
        cov2_avg = _patch_products(p2, p2, full, pairs=False) / scale
        return self._from_averages(k, nngp_avg, None, cov1_avg, cov2_avg)

    def _patches(self, x):
        """``(n, *out_spatial, F C)``: each output position's window of ``x`` (zero
        padded for SAME, periodic for CIRCULAR), offsets major, channels minor."""
        axes = range(1, 1 + self.n_spatial)
        spatial = x.shape[1:-1]
        pads, outs = [], []
        for size, f, s in zip(spatial, self.filter_shape, self.strides, strict=True):
            pads.append(window_pads(size, f, s, self.padding))
            outs.append(window_output_size(size, f, s, self.padding))
        xp = pad_spatial(x, axes, pads, self.padding)
        parts = []
        for offset in itertools.product(*(range(f) for f in self.filter_shape)):
            idx = tuple(
                slice(d, d + s * (o - 1) + 1, s)
                for d, s, o in zip(offset, self.strides, outs, strict=True)
            )
            parts.append(xp[(slice(None), *idx, slice(None))])
        return jnp.concatenate(parts, axis=-1)

    def _from_averages(self, k, nngp_avg, ntk_avg, cov1_avg, cov2_avg):
        """The layer's output kernel from the patch averages of its input kernel
        (``ntk_avg`` ``None``: the input NTK is zero)."""
        f_size = math.prod(self.filter_shape)
        w2 = self.W_std**2
        b2 = 0.0 if self.b_std is None else self.b_std**2
        nngp = w2 * nngp_avg + b2
        ntk = k.ntk
        if ntk is not None:
            if ntk_avg is None:
                ntk_avg = jnp.zeros_like(nngp_avg)
            if self.parameterization == "ntk":
                ntk = nngp + w2 * ntk_avg
            else:
                fan_in = k.shape1[-1] * f_size
                ntk = fan_in * nngp_avg + w2 * ntk_avg + (0.0 if self.b_std is None else 1.0)
        return k.replace(
            nngp=nngp,
            ntk=ntk,
            cov1=w2 * cov1_avg + b2,
            cov2=w2 * cov2_avg + b2,
            shape1=self.output_shape(k.shape1),
            shape2=self.output_shape(k.shape2),
            is_gaussian=True,
            independent=True,
            is_input=False,
        )

    def init(self, key, input_shape):
        out_shape = self.output_shape(input_shape)
        k1, k2 = jax.random.split(key)
        fan_in = input_shape[-1] * math.prod(self.filter_shape)
        W = jax.random.normal(k1, self.filter_shape + (input_shape[-1], self.out_chan))
        b = None if self.b_std is None else jax.random.normal(k2, (self.out_chan,))
        if self.parameterization == "standard":
            W = W * (self.W_std / jnp.sqrt(fan_in))
            b = None if b is None else b * self.b_std
        return out_shape, (W, b)

    def prior_std(self, input_shape):
        """``(W, b)`` prior scales, as :meth:`Dense.prior_std` with fan-in
        ``filter size x input channels``."""
        return _affine_prior_std(self, input_shape[-1] * math.prod(self.filter_shape))

    def apply(self, params, x, **kwargs):
        W, b = params
        self.output_shape(x.shape)
        if x.shape[-1] != W.shape[-2]:
            raise ValueError(
                f"Conv: input has {x.shape[-1]} channels but the weights expect {W.shape[-2]}; "
                "re-run init_fn with this input shape"
            )
        spatial_axes = tuple(range(1, x.ndim - 1))
        pads = [
            window_pads(h, f, s, self.padding)
            for h, f, s in zip(x.shape[1:-1], self.filter_shape, self.strides, strict=True)
        ]
        if self.padding == "CIRCULAR":
            x = pad_spatial(x, spatial_axes, pads, "CIRCULAR")
            pads = [(0, 0)] * self.n_spatial
        out = jax.lax.conv_general_dilated(
            x,
            W.astype(x.dtype),
            window_strides=self.strides,
            padding=pads,
            dimension_numbers=_conv_spec(self.n_spatial),
        )
        if self.parameterization == "ntk":
            out = out * (self.W_std / jnp.sqrt(x.shape[-1] * math.prod(self.filter_shape)))
            if b is not None:
                out = out + self.b_std * b
        elif b is not None:
            out = out + b
        return out

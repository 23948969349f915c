"""Branching combinators: ``FanOut``, ``parallel``, ``FanInSum``, ``FanInConcat``.

Between a ``FanOut`` and a fan-in the network carries a tuple of streams (kernel
states, shapes, arrays), one per branch, exactly as neural-tangents does with lists.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._numerics import check_int
from ._core import Layer, ask, split_rng

__all__ = ["FanOut", "FanInSum", "FanInConcat", "parallel", "Parallel"]


def _is_multi(x) -> bool:
    return isinstance(x, list | tuple) and len(x) > 0 and not isinstance(x[0], int)


def _need_streams(layer: str, shapes) -> list:
    if not _is_multi(shapes):
        raise ValueError(
            f"{layer} expects several branches; put FanOut(n) and parallel(...) before it"
        )
    return list(shapes)


def _check_num(num) -> int:
    return check_int(
        num, "num", low=1, message="FanOut: `{name}` must be a positive integer, got {value!r}"
    )


class FanOut(Layer):
    """Copy the input into ``num`` branches."""

    num: int = eqx.field(static=True, converter=_check_num)

    def output_shape(self, input_shape):
        if _is_multi(input_shape):
            raise ValueError("FanOut got several branches; close them with a fan-in first")
        return [tuple(input_shape)] * self.num

    def kernel(self, k):
        # The copies share all randomness so far: none is independent of the others.
        return [k.replace(independent=False)] * self.num

    def apply(self, params, x, **kwargs):
        return [x] * self.num


class FanInSum(Layer):
    """Sum of the branches; Σ and Θ add.

    Adding kernels drops the cross terms E[f_i(x) f_j(x')] between branches, which
    vanish when one of the two ends with its own random affine layer (Dense, Conv,
    attention: zero-mean and independent of the rest). A sum with two or more branches
    that do not (a nonlinearity last, or the shared input passed through) is refused.
    """

    def output_shape(self, input_shape):
        shapes = _need_streams("FanInSum", input_shape)
        if any(tuple(s) != tuple(shapes[0]) for s in shapes):
            raise ValueError(f"FanInSum: branches must have equal shapes, got {shapes}")
        return tuple(shapes[0])

    def kernel(self, ks):
        ks = _need_streams("FanInSum", ks)
        _check_same_layout("FanInSum", ks)
        _check_cross_terms("FanInSum", ks)
        total = ks[0]
        ntk = None if any(k.ntk is None for k in ks) else sum(k.ntk for k in ks)
        return total.replace(
            nngp=sum(k.nngp for k in ks),
            ntk=ntk,
            cov1=sum(k.cov1 for k in ks),
            cov2=sum(k.cov2 for k in ks),
            is_gaussian=all(k.is_gaussian for k in ks),
            is_input=False,
            independent=all(k.independent for k in ks),
            points_alike=all(k.points_alike for k in ks),
            point_ids=_shared_ids(ks),
        )

    def apply(self, params, xs, **kwargs):
        return sum(_need_streams("FanInSum", xs))


class FanInConcat(Layer):
    """Concatenation of the branches along ``axis`` (default: channels).

    Along the channel axis the kernel is the channel-weighted mean of the branch
    kernels, Σ = Σ_i C_i Σ_i / Σ_i C_i, with C_i the branch widths. Along a spatial axis
    each output position belongs to one branch: same-position covariances are
    concatenated, and covariances between positions of different branches are 0
    (independent branches: valid when at most one branch lacks fresh weights, as for
    ``FanInSum``, and refused otherwise), so full-layout kernels are block diagonal
    along that axis.
    """

    axis: int = eqx.field(static=True, default=-1)

    def _spatial_axis(self, ndim) -> int | None:
        """``None`` for the channel axis, else the 0-based spatial index of ``axis``."""
        if not -ndim <= self.axis < ndim or self.axis % ndim == 0:
            raise ValueError(
                f"FanInConcat: `axis`={self.axis} must name a spatial or the channel axis of "
                f"{ndim}-axis branches (not the batch axis 0)"
            )
        a = self.axis % ndim
        return None if a == ndim - 1 else a - 1

    def output_shape(self, input_shape):
        shapes = [tuple(s) for s in _need_streams("FanInConcat", input_shape)]
        if len({len(s) for s in shapes}) > 1:
            raise ValueError(f"FanInConcat: branches differ in rank: {shapes}")
        ndim = len(shapes[0])
        sp = self._spatial_axis(ndim)
        a = ndim - 1 if sp is None else sp + 1
        rest = {s[:a] + s[a + 1 :] for s in shapes}
        if len(rest) > 1:
            raise ValueError(
                f"FanInConcat: branches must agree on every axis but axis {self.axis}, got {shapes}"
            )
        return shapes[0][:a] + (sum(s[a] for s in shapes),) + shapes[0][a + 1 :]

    def kernel(self, ks):
        ks = _need_streams("FanInConcat", ks)
        _check_same_layout("FanInConcat", ks)
        shape1 = self.output_shape([k.shape1 for k in ks])
        shape2 = self.output_shape([k.shape2 for k in ks])
        s = self._spatial_axis(len(ks[0].shape1))
        if s is None:
            widths = [k.shape1[-1] for k in ks]
            total = sum(widths)

            def join(arrays, batch_ndim):
                return sum(a * (w / total) for a, w in zip(arrays, widths, strict=True))

        else:
            if not ks[0].diagonal_spatial:  # cross-branch position pairs are set to 0
                _check_cross_terms(f"FanInConcat(axis={self.axis})", ks)
            sizes = [k.shape1[1 + s] for k in ks]

            def join(arrays, batch_ndim):
                return _concat_spatial(arrays, sizes, s, batch_ndim, ks[0].diagonal_spatial)

        ntk = None if any(k.ntk is None for k in ks) else join([k.ntk for k in ks], 2)
        return ks[0].replace(
            nngp=join([k.nngp for k in ks], 2),
            ntk=ntk,
            cov1=join([k.cov1 for k in ks], 1),
            cov2=join([k.cov2 for k in ks], 1),
            shape1=shape1,
            shape2=shape2,
            is_gaussian=all(k.is_gaussian for k in ks),
            is_input=False,
            independent=all(k.independent for k in ks),
            points_alike=all(k.points_alike for k in ks),
            point_ids=_shared_ids(ks),
        )

    def apply(self, params, xs, **kwargs):
        return jnp.concatenate(_need_streams("FanInConcat", xs), axis=self.axis)


def _concat_spatial(arrays, sizes, s, batch_ndim, diagonal):
    """Join branch covariances along spatial axis ``s``: concatenate same-position
    entries (diagonal layout); place each branch's (p, p') block on the diagonal of the
    pair of axes and leave 0 between branches (full layout)."""
    if diagonal:
        return jnp.concatenate(arrays, axis=batch_ndim + s)
    first = batch_ndim + 2 * s  # the interleaved (p, p') axes of spatial axis s
    total, out, start = sum(sizes), 0, 0
    for a, size in zip(arrays, sizes, strict=True):
        pad = [(0, 0)] * a.ndim
        pad[first] = pad[first + 1] = (start, total - start - size)
        out = out + jnp.pad(a, pad)
        start += size
    return out


class Parallel(Layer):
    """Apply the i-th layer to the i-th branch (``stax.parallel``)."""

    layers: tuple

    def _split(self, streams):
        streams = _need_streams("parallel", streams)
        if len(streams) != len(self.layers):
            raise ValueError(
                f"parallel has {len(self.layers)} layers but receives {len(streams)} branches; "
                f"use FanOut({len(self.layers)}) before it"
            )
        return streams

    def output_shape(self, input_shape):
        shapes = self._split(input_shape)
        return [lay.output_shape(s) for lay, s in zip(self.layers, shapes, strict=True)]

    def kernel(self, ks):
        ks = self._split(ks)
        return [lay.kernel(k) for lay, k in zip(self.layers, ks, strict=True)]

    def init(self, key, input_shape):
        shapes = self._split(input_shape)
        keys = jax.random.split(key, len(self.layers))
        outs = [lay.init(k, s) for lay, k, s in zip(self.layers, keys, shapes, strict=True)]
        return [o[0] for o in outs], tuple(o[1] for o in outs)

    def prior_std(self, input_shape):
        shapes = self._split(input_shape)
        return tuple(lay.prior_std(s) for lay, s in zip(self.layers, shapes, strict=True))

    def apply(self, params, xs, **kwargs):
        xs = self._split(xs)
        rngs = split_rng(kwargs, len(self.layers))
        return [
            lay.apply(p, x, **kwargs, rng=r)
            for lay, p, x, r in zip(self.layers, params, xs, rngs, strict=True)
        ]

    def needs_full_spatial(self, out_full: bool) -> bool:
        return any(ask(lay, "needs_full_spatial", out_full) for lay in self.layers)

    def mixes_space(self) -> bool:
        return any(ask(lay, "mixes_space") for lay in self.layers)


def parallel(*layers) -> Parallel:
    """Apply layers side by side to the branches of a ``FanOut``."""
    if not layers:
        raise ValueError("parallel: needs at least one layer")
    for i, lay in enumerate(layers):
        if not isinstance(lay, Layer):
            raise TypeError(f"parallel: argument {i} is {type(lay).__name__}, not a stax layer")
    return Parallel(tuple(layers))


def _shared_ids(ks):
    """The branches' ``point_ids`` when every branch still has them (a train-mode
    ``Dropout`` in one branch tells copies of a point apart), else ``None``."""
    return ks[0].point_ids if all(k.point_ids is not None for k in ks) else None


def _check_same_layout(layer: str, ks) -> None:
    if len({k.diagonal_spatial for k in ks}) > 1:  # pragma: no cover - engine invariant
        raise ValueError(f"{layer}: branches disagree on spatial layout")


def _check_cross_terms(layer: str, ks) -> None:
    """Refuse a fan-in whose kernel would need the cross terms of dependent branches."""
    shared = [i for i, k in enumerate(ks) if not k.independent]
    if len(shared) > 1:
        raise ValueError(
            f"{layer}: branches {shared} do not end with a random affine layer of their own "
            "(they end in a nonlinearity, or pass the FanOut's input through), so they are "
            "correlated and have non-zero means; the kernel of their combination needs the "
            "cross terms E[f_i(x) f_j(x')], which ntk_bayes does not compute. End every "
            "branch but one with its own Dense or Conv layer, e.g. "
            "stax.parallel(stax.serial(stax.Dense(512), stax.Relu(), stax.Dense(512)), ...)"
        )

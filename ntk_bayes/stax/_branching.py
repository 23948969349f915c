"""Branching combinators: ``FanOut``, ``parallel``, ``FanInSum``, ``FanInConcat``.

Between a ``FanOut`` and a fan-in the network carries a tuple of streams (kernel
states, shapes, arrays), one per branch, exactly as neural-tangents does with lists.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ._core import Layer, split_rng

__all__ = ["FanOut", "FanInSum", "FanInConcat", "parallel", "Parallel"]


def _is_multi(x) -> bool:
    return isinstance(x, list | tuple) and len(x) > 0 and not isinstance(x[0], int)


def _need_streams(layer: str, shapes) -> list:
    if not _is_multi(shapes):
        raise ValueError(
            f"{layer} expects several branches; put FanOut(n) and parallel(...) before it"
        )
    return list(shapes)


class FanOut(Layer):
    """Copy the input into ``num`` branches."""

    num: int = eqx.field(static=True)

    def __check_init__(self):
        if isinstance(self.num, bool) or not isinstance(self.num, int) or self.num < 1:
            raise ValueError(f"FanOut: `num` must be a positive integer, got {self.num!r}")

    def output_shape(self, input_shape):
        if _is_multi(input_shape):
            raise ValueError("FanOut got several branches; close them with a fan-in first")
        return [tuple(input_shape)] * self.num

    def kernel(self, k):
        return [k] * self.num

    def apply(self, params, x, **kwargs):
        return [x] * self.num


class FanInSum(Layer):
    """Sum of the branches; Σ and Θ add (branches with independent weights)."""

    def output_shape(self, input_shape):
        shapes = _need_streams("FanInSum", input_shape)
        if any(tuple(s) != tuple(shapes[0]) for s in shapes):
            raise ValueError(f"FanInSum: branches must have equal shapes, got {shapes}")
        return tuple(shapes[0])

    def kernel(self, ks):
        ks = _need_streams("FanInSum", ks)
        _check_same_layout("FanInSum", ks)
        total = ks[0]
        ntk = None if any(k.ntk is None for k in ks) else sum(k.ntk for k in ks)
        return total.replace(
            nngp=sum(k.nngp for k in ks),
            ntk=ntk,
            cov1=sum(k.cov1 for k in ks),
            cov2=sum(k.cov2 for k in ks),
            is_gaussian=all(k.is_gaussian for k in ks),
            is_input=False,
        )

    def apply(self, params, xs, **kwargs):
        return sum(_need_streams("FanInSum", xs))


class FanInConcat(Layer):
    """Concatenation of the branches along the channel axis.

    The kernel of a concatenation is the channel-weighted mean of the branch kernels,
    Σ = Σ_i C_i Σ_i / Σ_i C_i, with C_i the branch widths.
    """

    axis: int = eqx.field(static=True, default=-1)

    def _channel_axis(self, ndim):
        if self.axis % ndim != ndim - 1:
            raise ValueError(
                "FanInConcat: only concatenation along the channel axis (axis=-1) is supported"
            )

    def output_shape(self, input_shape):
        shapes = _need_streams("FanInConcat", input_shape)
        self._channel_axis(len(shapes[0]))
        if any(tuple(s[:-1]) != tuple(shapes[0][:-1]) for s in shapes):
            raise ValueError(
                f"FanInConcat: branches must agree on all axes but the channel axis, got {shapes}"
            )
        return tuple(shapes[0][:-1]) + (sum(s[-1] for s in shapes),)

    def kernel(self, ks):
        ks = _need_streams("FanInConcat", ks)
        _check_same_layout("FanInConcat", ks)
        widths = [k.shape1[-1] for k in ks]
        total = sum(widths)

        def mix(attr):
            return sum(getattr(k, attr) * (w / total) for k, w in zip(ks, widths, strict=True))

        ntk = None if any(k.ntk is None for k in ks) else mix("ntk")
        return ks[0].replace(
            nngp=mix("nngp"),
            ntk=ntk,
            cov1=mix("cov1"),
            cov2=mix("cov2"),
            shape1=self.output_shape([k.shape1 for k in ks]),
            shape2=self.output_shape([k.shape2 for k in ks]),
            is_gaussian=all(k.is_gaussian for k in ks),
            is_input=False,
        )

    def apply(self, params, xs, **kwargs):
        return jnp.concatenate(_need_streams("FanInConcat", xs), axis=self.axis)


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

    def apply(self, params, xs, **kwargs):
        xs = self._split(xs)
        rngs = split_rng(kwargs, len(self.layers))
        return [
            lay.apply(p, x, **kwargs, rng=r)
            for lay, p, x, r in zip(self.layers, params, xs, rngs, strict=True)
        ]

    def needs_full_spatial(self, out_full: bool) -> bool:
        return any(lay.needs_full_spatial(out_full) for lay in self.layers)

    def mixes_space(self) -> bool:
        return any(lay.mixes_space() for lay in self.layers)


def parallel(*layers) -> Parallel:
    """Apply layers side by side to the branches of a ``FanOut``."""
    if not layers:
        raise ValueError("parallel: needs at least one layer")
    for i, lay in enumerate(layers):
        if not isinstance(lay, Layer):
            raise TypeError(f"parallel: argument {i} is {type(lay).__name__}, not a stax layer")
    return Parallel(tuple(layers))


def _check_same_layout(layer: str, ks) -> None:
    if len({k.diagonal_spatial for k in ks}) > 1:  # pragma: no cover - engine invariant
        raise ValueError(f"{layer}: branches disagree on spatial layout")

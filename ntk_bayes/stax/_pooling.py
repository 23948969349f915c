r"""Pooling and readout layers: ``AvgPool``, ``SumPool``, ``GlobalAvgPool``,
``GlobalSumPool`` and ``Flatten``.

Pooling is a fixed linear map P of the positions, so Σ' = P Σ Pᵀ and Θ' = P Θ Pᵀ
(Novak et al. 2019). A pooled position mixes several input positions, hence pooling
needs cross-position covariances (the full layout); ``Flatten`` followed by a Dense
layer only sees same-position covariances (the diagonal layout), which is why a
network read out by ``Flatten`` is much cheaper than one read out by global pooling.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._conv import (
    check_padding,
    check_spatial_input,
    check_window,
    check_window_fits,
    pad_spatial,
    reject_unused,
    window_output_size,
    window_pads,
    window_sum,
)
from ._core import Layer
from ._masking import kernel_masks, masked_mean_var, unmasked_count

__all__ = ["AvgPool", "SumPool", "GlobalAvgPool", "GlobalSumPool", "Flatten"]


def _edge_counts(size: int, f: int, s: int, padding: str) -> np.ndarray:
    """Number of real (non-padding) inputs in each window along one axis."""
    lo, hi = window_pads(size, f, s, padding)
    out = (size + lo + hi - f) // s + 1
    starts = np.arange(out) * s - lo
    return (np.minimum(starts + f, size) - np.maximum(starts, 0)).astype(np.float64)


class _Pool(Layer):
    window_shape: tuple = eqx.field(static=True)
    strides: tuple = eqx.field(static=True)
    padding: str = eqx.field(static=True)

    _name = "Pool"
    _average = False

    def _setup(self, window_shape, strides, padding, unused):
        reject_unused(self._name, dict(unused))
        self.window_shape = check_window(window_shape, "window_shape", self._name)
        n = len(self.window_shape)
        self.strides = (
            (1,) * n if strides is None else check_window(strides, "strides", self._name, n)
        )
        self.padding = check_padding(padding, self._name)

    def output_shape(self, input_shape):
        shape = check_spatial_input(self._name, input_shape, len(self.window_shape), "window_shape")
        spatial = shape[1:-1]
        check_window_fits(self._name, spatial, self.window_shape, self.padding, "window_shape")
        out = tuple(
            window_output_size(h, f, s, self.padding)
            for h, f, s in zip(spatial, self.window_shape, self.strides, strict=True)
        )
        return (shape[0],) + out + (shape[-1],)

    def needs_full_spatial(self, out_full: bool) -> bool:
        return out_full or math.prod(self.window_shape) > 1

    def mixes_space(self) -> bool:
        return True

    def _divisor(self, spatial, full: bool):
        """Per-output-position normaliser (1 for sums), broadcastable to the kernel."""
        if not self._average:
            return 1.0
        if not (self.padding == "SAME" and getattr(self, "normalize_edges", False)):
            size = math.prod(self.window_shape)
            return float(size * size if full else size)
        div = np.ones(())
        for h, f, s in zip(spatial, self.window_shape, self.strides, strict=True):
            c = _edge_counts(h, f, s, self.padding)
            div = np.multiply.outer(div, np.multiply.outer(c, c) if full else c)
        return div

    def kernel(self, k):
        full = not k.diagonal_spatial
        if not full and math.prod(self.window_shape) > 1:
            raise ValueError(  # pragma: no cover - the engine chooses the full layout
                f"{self._name} needs cross-position covariances (the full spatial layout)"
            )
        spatial = k.shape1[1:-1]
        div = self._divisor(spatial, full)

        # Unlike a convolution's weights, the pooling weights are the same for every
        # offset, so in the full layout the two positions of a pair move independently:
        # a box sum over (X, X'), i.e. a diagonal-layout window sum on doubled axes.
        window, strides = self.window_shape, self.strides
        if full:
            window = tuple(w for w in window for _ in range(2))
            strides = tuple(s for s in strides for _ in range(2))

        def pool(x, batch_ndim):
            out = window_sum(x, batch_ndim, window, strides, self.padding, full=False)
            return out / jnp.asarray(div, out.dtype)

        return k.map_arrays(
            pool,
            shape1=self.output_shape(k.shape1),
            shape2=self.output_shape(k.shape2),
            is_input=False,
        )

    def apply(self, params, x, **kwargs):
        self.output_shape(x.shape)
        pads = (
            [(0, 0)]
            + [
                window_pads(h, f, s, self.padding)
                for h, f, s in zip(x.shape[1:-1], self.window_shape, self.strides, strict=True)
            ]
            + [(0, 0)]
        )
        if self.padding == "CIRCULAR":
            x = pad_spatial(x, range(1, x.ndim - 1), pads[1:-1], "CIRCULAR")
            pads = [(0, 0)] * x.ndim
        dims = (1,) + self.window_shape + (1,)
        strides = (1,) + self.strides + (1,)
        out = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, strides, pads)
        if self._average:
            if self.padding == "SAME" and getattr(self, "normalize_edges", False):
                ones = jnp.ones((1,) + x.shape[1:-1] + (1,), x.dtype)
                out = out / jax.lax.reduce_window(ones, 0.0, jax.lax.add, dims, strides, pads)
            else:
                out = out / math.prod(self.window_shape)
        return out


class AvgPool(_Pool):
    r"""Average pooling over windows of ``window_shape`` positions.

    With P the window average (zero padding for "SAME", periodic for "CIRCULAR"; the
    divisor is the window size, or with ``normalize_edges=True`` the number of real
    inputs in each window): Σ' = P Σ Pᵀ, Θ' = P Θ Pᵀ. ``strides`` default to 1, as in
    neural-tangents (not to the window size as in Flax).
    """

    normalize_edges: bool = eqx.field(static=True, default=False)

    _name = "AvgPool"
    _average = True

    def __init__(
        self, window_shape, strides=None, padding="VALID", normalize_edges=False, **unused
    ):
        self._setup(window_shape, strides, padding, unused)
        self.normalize_edges = bool(normalize_edges)


class SumPool(_Pool):
    r"""Sum pooling over windows of ``window_shape`` positions: Σ' = P Σ Pᵀ with P the
    window sum (zero padding for "SAME", periodic for "CIRCULAR")."""

    _name = "SumPool"

    def __init__(self, window_shape, strides=None, padding="VALID", **unused):
        self._setup(window_shape, strides, padding, unused)


class _GlobalPool(Layer):
    _name = "GlobalPool"
    _average = True

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if isinstance(input_shape, list) and shape and not isinstance(shape[0], int):
            raise ValueError(f"{self._name} got several branches; close them with a fan-in first")
        if len(shape) < 3:
            raise ValueError(
                f"{self._name} pools over spatial axes, so inputs must be (N, *spatial, C); "
                f"got shape {shape} with none"
            )
        return (shape[0], shape[-1])

    def needs_full_spatial(self, out_full: bool) -> bool:
        return True

    def kernel(self, k):
        spatial = k.shape1[1:-1]
        size = math.prod(spatial)
        if k.diagonal_spatial and size > 1:
            raise ValueError(  # pragma: no cover - the engine chooses the full layout
                f"{self._name} needs cross-position covariances (the full spatial layout)"
            )
        scale = 1.0 / (size * size) if self._average else 1.0
        masks = kernel_masks(k) if self._average else None

        def pool(x, batch_ndim, count=None):
            total = jnp.sum(x, axis=tuple(range(batch_ndim, x.ndim)))
            if count is None:
                return total * scale
            return total / jnp.maximum(count, 1).astype(total.dtype)

        if masks is not None:  # the mean over pairs of unmasked positions
            u1, u2 = (unmasked_count(m) for m in masks)
            pairs = u1[:, None] * u2[None, :]
            return k.replace(
                nngp=pool(k.nngp, 2, pairs),
                ntk=None if k.ntk is None else pool(k.ntk, 2, pairs),
                cov1=pool(k.cov1, 1, u1 * u1),
                cov2=pool(k.cov2, 1, u2 * u2),
                shape1=self.output_shape(k.shape1),
                shape2=self.output_shape(k.shape2),
                diagonal_spatial=True,
                is_input=False,
            )
        return k.map_arrays(
            pool,
            shape1=self.output_shape(k.shape1),
            shape2=self.output_shape(k.shape2),
            diagonal_spatial=True,
            is_input=False,
        )

    def apply(self, params, x, mask=None, **kwargs):
        self.output_shape(x.shape)
        axes = tuple(range(1, x.ndim - 1))
        if mask is not None and self._average:  # mean over unmasked entries
            return masked_mean_var(x, axes, mask, get_var=False)[0].squeeze(axes)
        return jnp.mean(x, axis=axes) if self._average else jnp.sum(x, axis=axes)


class GlobalAvgPool(_GlobalPool):
    r"""Mean over all spatial positions, ``(N, *spatial, C) -> (N, C)``.

    With S positions, Σ' = S^{-2} Σ_{p, p'} Σ[p, p'] (and Θ likewise): every pair of
    positions contributes, so the layers before need the full spatial layout.
    """

    _name = "GlobalAvgPool"
    _average = True

    def __init__(self, **unused):
        reject_unused("GlobalAvgPool", dict(unused))


class GlobalSumPool(_GlobalPool):
    r"""Sum over all spatial positions: Σ' = Σ_{p, p'} Σ[p, p'] (and Θ likewise)."""

    _name = "GlobalSumPool"
    _average = False

    def __init__(self, **unused):
        reject_unused("GlobalSumPool", dict(unused))


class Flatten(Layer):
    r"""Flatten ``(N, *spatial, C) -> (N, prod(spatial) C)``.

    A following Dense layer with fan-in S C sees Σ' = S^{-1} Σ_p Σ[p, p] (and Θ
    likewise): only same-position covariances, so the layers before keep the cheap
    diagonal layout.
    """

    def __init__(self, **unused):
        unused = dict(unused)
        if unused.pop("batch_axis_out", 0) not in (0, -2):
            raise ValueError("Flatten: only `batch_axis_out=0` is supported")
        reject_unused("Flatten", unused)

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if isinstance(input_shape, list) and shape and not isinstance(shape[0], int):
            raise ValueError("Flatten got several branches; close them with a fan-in first")
        if len(shape) < 2:
            raise ValueError(f"Flatten expects inputs (N, ...), got shape {shape}")
        return (shape[0], math.prod(shape[1:]))

    def needs_full_spatial(self, out_full: bool) -> bool:
        return False

    def kernel(self, k):
        n_sp = k.n_spatial
        if n_sp == 0:
            return k

        def trace(x, batch_ndim):
            if k.diagonal_spatial:
                return jnp.mean(x, axis=tuple(range(batch_ndim, x.ndim)))
            for _ in range(n_sp):
                x = jnp.trace(x, axis1=batch_ndim, axis2=batch_ndim + 1) / x.shape[batch_ndim]
            return x

        return k.map_arrays(
            trace,
            shape1=self.output_shape(k.shape1),
            shape2=self.output_shape(k.shape2),
            diagonal_spatial=True,
            is_gaussian=False,
            is_input=False,
        )

    def apply(self, params, x, **kwargs):
        return x.reshape((x.shape[0], -1))

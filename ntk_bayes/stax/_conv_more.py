r"""More linear spatial layers of neural-tangents: ``ConvTranspose``, ``ConvLocal`` and
``ImageResize``.

Each is a fixed or random linear map of the positions, so its kernel is a window sum or
a per-axis matrix product of the input kernel, in either spatial layout (see
:class:`~ntk_bayes.stax.Kernel`). A transposed convolution is the ordinary one run on
the input dilated by the strides (``s - 1`` zeros between positions) and padded as
``jax.lax.conv_transpose`` pads it; a locally connected layer is a convolution whose
weights differ at every output position, so different output positions are
uncorrelated; an image resize with linear or nearest interpolation is a fixed matrix
``R`` per resized axis, so Σ' = R Σ Rᵀ on each pair of axes.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ._conv import (
    Conv,
    _conv_spec,
    check_spatial_input,
    pad_spatial,
    window_pads,
    window_sum,
)
from ._core import Layer
from ._dense import _affine_prior_std
from ._kernel import _same_positions

__all__ = ["ConvTranspose", "ConvLocal", "ImageResize"]


# ---- shared by the two convolutions ------------------------------------------------------


def _renamed(err: Exception, name: str) -> Exception:
    """``Conv``'s error, naming the layer the user wrote."""
    return type(err)(str(err).replace("Conv:", f"{name}:", 1))


class _AffineConv(Layer):
    """Arguments, finite parameters and the affine kernel update shared by
    ``ConvTranspose`` and ``ConvLocal`` (both follow ``Conv``'s conventions)."""

    out_chan: int = eqx.field(static=True)
    filter_shape: tuple = eqx.field(static=True)
    strides: tuple = eqx.field(static=True)
    padding: str = eqx.field(static=True)
    W_std: Any = 1.0
    b_std: Any = None
    parameterization: str = eqx.field(static=True, default="ntk")

    _name = "Conv"

    def __init__(
        self,
        out_chan,
        filter_shape,
        strides=None,
        padding="VALID",
        W_std=1.0,
        b_std=None,
        dimension_numbers=None,
        parameterization="ntk",
        **unused,
    ):
        # Conv's arguments and checks, under this layer's name.
        try:
            Conv.__init__(
                self,
                out_chan,
                filter_shape,
                strides,
                padding,
                W_std,
                b_std,
                parameterization,
                dimension_numbers=dimension_numbers,
                **unused,
            )
        except (ValueError, TypeError) as e:
            raise _renamed(e, self._name) from None

    @property
    def n_spatial(self) -> int:
        return len(self.filter_shape)

    def mixes_space(self) -> bool:
        return True

    def fan_in(self, input_shape) -> int:
        return input_shape[-1] * math.prod(self.filter_shape)

    def prior_std(self, input_shape):
        """``(W, b)`` prior scales, as :meth:`Dense.prior_std` with fan-in
        ``filter size x input channels``."""
        return _affine_prior_std(self, self.fan_in(input_shape))

    def _window(self, x, batch_ndim: int, full: bool):  # pragma: no cover - abstract
        """The unscaled patch average ``A`` of a kernel array."""
        raise NotImplementedError

    def _bias(self, value, k_out, batch_ndim: int):
        """A constant added to every entry the bias reaches (all of them when shared)."""
        return value

    def kernel(self, k):
        full = not k.diagonal_spatial
        shape1, shape2 = self.output_shape(k.shape1), self.output_shape(k.shape2)
        k_out = k.replace(shape1=shape1, shape2=shape2)
        w2 = self.W_std**2
        has_b = self.b_std is not None
        b2 = self.b_std**2 if has_b else 0.0

        def affine(x, batch_ndim):
            out = w2 * self._window(x, batch_ndim, full)
            return out + self._bias(b2, k_out, batch_ndim) if has_b else out

        nngp_avg = self._window(k.nngp, 2, full)
        nngp = w2 * nngp_avg + (self._bias(b2, k_out, 2) if has_b else 0.0)
        ntk = k.ntk
        if ntk is not None:
            ntk_avg = self._window(ntk, 2, full)
            if self.parameterization == "ntk":
                ntk = nngp + w2 * ntk_avg
            else:
                ntk = self.fan_in(k.shape1) * nngp_avg + w2 * ntk_avg
                ntk = ntk + self._bias(1.0, k_out, 2) if has_b else ntk
        return k_out.replace(
            nngp=nngp,
            ntk=ntk,
            cov1=affine(k.cov1, 1),
            cov2=affine(k.cov2, 1),
            is_gaussian=True,
            independent=True,
            is_input=False,
        )

    def _param_shapes(self, input_shape, out_shape):  # pragma: no cover - abstract
        """Shapes of W and b."""
        raise NotImplementedError

    def init(self, key, input_shape):
        out_shape = self.output_shape(input_shape)
        w_shape, b_shape = self._param_shapes(input_shape, out_shape)
        k1, k2 = jax.random.split(key)
        W = jax.random.normal(k1, w_shape)
        b = None if self.b_std is None else jax.random.normal(k2, b_shape)
        if self.parameterization == "standard":
            W = W * (self.W_std / jnp.sqrt(self.fan_in(input_shape)))
            b = None if b is None else b * self.b_std
        return out_shape, (W, b)

    def _scale(self, out, b, x_shape):
        if self.parameterization == "ntk":
            out = out * (self.W_std / jnp.sqrt(self.fan_in(x_shape)))
            return out if b is None else out + self.b_std * b
        return out if b is None else out + b

    def _check_channels(self, x, W):
        c_in = x.shape[-1] * (math.prod(self.filter_shape) if isinstance(self, ConvLocal) else 1)
        if W.shape[-2] != c_in:
            raise ValueError(
                f"{self._name}: input has {x.shape[-1]} channels but the weights were drawn "
                "for another input shape; re-run init_fn with this input shape"
            )


# ---- transposed convolution ----------------------------------------------------------------


def _transpose_pads(f: int, s: int, padding: str) -> tuple[int, int]:
    """Edge padding of the stride-dilated input, as ``jax.lax.conv_transpose`` pads it
    (CIRCULAR runs as VALID, then folds; see :func:`_fold`)."""
    if padding == "SAME":
        total = f + s - 2
        lo = f - 1 if s > f - 1 else -(-total // 2)
    else:
        total = f + s - 2 + max(f - s, 0)
        lo = f - 1
    return lo, total - lo


def _fold(x, axis: int, size: int):
    """Wrap ``axis`` of a VALID transposed-convolution output onto ``size`` positions,
    centred: entry p lands on (p - lo) mod size with lo = (len - size) // 2. This is
    what periodic (CIRCULAR) padding does to a transposed convolution's overhang."""
    length = x.shape[axis]
    lo = (length - size) // 2
    front = (-lo) % size
    back = (-(front + length)) % size
    widths = [(0, 0)] * x.ndim
    widths[axis] = (front, back)
    x = jnp.pad(x, widths)
    x = x.reshape(x.shape[:axis] + (-1, size) + x.shape[axis + 1 :])
    return x.sum(axis=axis)


class ConvTranspose(_AffineConv):
    r"""Transposed convolution of ``(N, *spatial, C)`` inputs (``jax.lax.conv_transpose``).

    The input is dilated by the strides s and padded (D), then convolved at stride 1
    with a shared filter of F = prod(``filter_shape``) taps; with A the patch average
    ``(A K)[q, q'] = F^{-1} Σ_d (D K)[q + d, q' + d]`` (D K zero between the dilated
    positions; ``"CIRCULAR"`` folds the ``"VALID"`` output periodically onto ``s n``
    positions) and n = F · C_in the fan-in, the recursion is ``Conv``'s:

    .. math::

        Σ' = σ_w^2 A Σ + σ_b^2, \qquad
        Θ' = \begin{cases} Σ' + σ_w^2 A Θ & \text{"ntk"} \\
                           n A Σ + [σ_b \ne \text{None}] + σ_w^2 A Θ & \text{"standard"}
             \end{cases}

    (σ_w = ``W_std``, σ_b = ``b_std``, 0 when ``None``; Novak et al. 2019, and
    neural-tangents' ``ConvTranspose``). Output sizes per axis: ``s n`` for ``"SAME"``
    and ``"CIRCULAR"``, ``s n + max(f - s, 0)`` for ``"VALID"``.

    Finite width: W of shape ``filter_shape + (C_in, out_chan)`` and b as in ``Conv``.
    """

    _name = "ConvTranspose"

    def output_shape(self, input_shape):
        shape = check_spatial_input(self._name, input_shape, self.n_spatial, "filter_shape")
        out = []
        for h, f, s in zip(shape[1:-1], self.filter_shape, self.strides, strict=True):
            out.append(h * s + (max(f - s, 0) if self.padding == "VALID" else 0))
        return (shape[0],) + tuple(out) + (self.out_chan,)

    def needs_full_spatial(self, out_full: bool) -> bool:
        return out_full

    def _window(self, x, batch_ndim, full):
        step = 2 if full else 1
        config = [(0, 0, 0)] * x.ndim
        sizes = []
        for i, (f, s) in enumerate(zip(self.filter_shape, self.strides, strict=True)):
            lo, hi = _transpose_pads(f, s, self.padding)
            ax = batch_ndim + step * i
            sizes.append(x.shape[ax] * s)
            for a in range(ax, ax + step):
                config[a] = (lo, hi, s - 1)
        x = jax.lax.pad(x, jnp.zeros((), x.dtype), config)
        x = window_sum(x, batch_ndim, self.filter_shape, (1,) * self.n_spatial, "VALID", full)
        if self.padding == "CIRCULAR":
            for i, size in enumerate(sizes):
                for a in range(batch_ndim + step * i, batch_ndim + step * (i + 1)):
                    x = _fold(x, a, size)
        return x / math.prod(self.filter_shape)

    def _param_shapes(self, input_shape, out_shape):
        return self.filter_shape + (input_shape[-1], self.out_chan), (self.out_chan,)

    def apply(self, params, x, **kwargs):
        W, b = params
        self.output_shape(x.shape)
        self._check_channels(x, W)
        pads = [
            _transpose_pads(f, s, self.padding)
            for f, s in zip(self.filter_shape, self.strides, strict=True)
        ]
        out = jax.lax.conv_general_dilated(
            x,
            W.astype(x.dtype),
            window_strides=(1,) * self.n_spatial,
            padding=pads,
            lhs_dilation=self.strides,
            dimension_numbers=_conv_spec(self.n_spatial),
        )
        if self.padding == "CIRCULAR":
            for i, (h, s) in enumerate(zip(x.shape[1:-1], self.strides, strict=True)):
                out = _fold(out, 1 + i, h * s)
        return self._scale(out, b, x.shape)


# ---- locally connected (unshared) convolution ------------------------------------------------


def _position_eye(spatial) -> jax.Array:
    """Booleans ``(X, X', Y, Y', ...)``: the same position in every axis."""
    eye = jnp.ones((), bool)
    for s in spatial:
        eye = eye[..., None, None] & jnp.eye(s, dtype=bool)
    return eye


def _embed_diagonal(d, batch_ndim: int):
    """(*batch, X, Y, ...) same-position values -> the full layout, zero off the diagonal."""
    shape = d.shape[:batch_ndim]
    for s in d.shape[batch_ndim:]:
        shape += (s, 1)
    return jnp.where(_position_eye(d.shape[batch_ndim:]), d.reshape(shape), 0)


class ConvLocal(_AffineConv):
    r"""Locally connected layer: a convolution whose filters are not shared across
    positions (``jax.lax.conv_general_dilated_local``).

    Every output position has its own weights and bias, so outputs at different
    positions are uncorrelated: with A the same-position patch average of ``Conv``,
    ``(A K)[q] = F^{-1} Σ_d K[s q + d, s q + d]``,

    .. math::

        Σ'[q, q'] = δ_{q q'} (σ_w^2 A Σ + σ_b^2)[q], \qquad
        Θ'[q, q'] = δ_{q q'} \begin{cases} Σ' + σ_w^2 A Θ & \text{"ntk"} \\
            n A Σ + [σ_b \ne \text{None}] + σ_w^2 A Θ & \text{"standard"} \end{cases}

    (Novak et al. 2019, "Bayesian deep CNNs with many channels are Gaussian
    processes", section on LCNs). The layer reads only same-position covariances of its
    input; in the full layout its output is zero between different positions.

    Finite width: W of shape ``out_spatial + (F · C_in, out_chan)`` and b of shape
    ``(1, *out_spatial, out_chan)``, as neural-tangents draws them.
    """

    _name = "ConvLocal"

    def output_shape(self, input_shape):
        # Conv's shapes and checks (same windows), under this layer's name.
        try:
            return Conv.output_shape(self, input_shape)
        except (ValueError, TypeError) as e:
            raise _renamed(e, self._name) from None

    def needs_full_spatial(self, out_full: bool) -> bool:
        # Only same-position input covariances are read, but a full-layout consumer gets
        # a full-layout output, built from the same-position values (zeros elsewhere).
        return out_full

    def _window(self, x, batch_ndim, full):
        if full:
            x = _same_positions(x, batch_ndim, self.n_spatial)
        x = window_sum(x, batch_ndim, self.filter_shape, self.strides, self.padding, False)
        x = x / math.prod(self.filter_shape)
        return _embed_diagonal(x, batch_ndim) if full else x

    def _bias(self, value, k_out, batch_ndim):
        if k_out.diagonal_spatial:
            return value
        return jnp.where(_position_eye(k_out.shape1[1:-1]), value, 0.0)

    def _param_shapes(self, input_shape, out_shape):
        W = out_shape[1:-1] + (self.fan_in(input_shape), self.out_chan)
        return W, (1,) + out_shape[1:]

    def apply(self, params, x, **kwargs):
        W, b = params
        out_shape = self.output_shape(x.shape)
        self._check_channels(x, W)
        if W.shape[:-2] != out_shape[1:-1]:
            raise ValueError(
                f"{self._name}: the weights are for output positions {W.shape[:-2]} but this "
                f"input gives {out_shape[1:-1]}; re-run init_fn with this input shape"
            )
        pads = [
            window_pads(h, f, s, self.padding)
            for h, f, s in zip(x.shape[1:-1], self.filter_shape, self.strides, strict=True)
        ]
        if self.padding == "CIRCULAR":
            x = pad_spatial(x, tuple(range(1, x.ndim - 1)), pads, "CIRCULAR")
            pads = [(0, 0)] * self.n_spatial
        out = jax.lax.conv_general_dilated_local(
            x,
            W.astype(x.dtype),
            window_strides=self.strides,
            padding=pads,
            filter_shape=self.filter_shape,
            dimension_numbers=_conv_spec(self.n_spatial),
        )
        return self._scale(out, b, x.shape)


# ---- image resize ----------------------------------------------------------------------------

_KERNEL_METHODS = ("linear", "nearest")


def _method_name(method) -> str:
    """The canonical name of a ``jax.image`` resize method ("linear", "nearest", ...)."""
    if isinstance(method, jax.image.ResizeMethod):
        return method.name.lower()
    if not isinstance(method, str):
        raise TypeError(
            f"ImageResize: `method` must be a string or jax.image.ResizeMethod, got {method!r}"
        )
    try:
        return jax.image.ResizeMethod.from_string(method).name.lower()
    except ValueError:
        raise ValueError(
            f"ImageResize: unknown `method` {method!r}; choose 'linear' or 'nearest' (closed "
            "form kernels), or 'cubic', 'lanczos3', 'lanczos5' (finite network only)"
        ) from None


class ImageResize(Layer):
    r"""Resize the spatial axes of ``(N, *spatial, C)`` inputs as ``jax.image.resize``.

    ``shape`` lists every axis of the input, ``-1`` for an axis kept as it is (the batch
    and channel axes must be ``-1``). Linear and nearest interpolation are a fixed matrix
    R_i per resized axis i (the map that ``jax.image.resize`` applies to the identity), so

    .. math::

        Σ'[q, q'] = Σ_{p, p'} R[q, p] R[q', p'] Σ[p, p'], \qquad Θ' = R Θ Rᵀ

    with R = ⊗_i R_i. Linear interpolation mixes positions and needs the full layout;
    nearest picks one position per output (R is 0/1 with one 1 per row), so it also
    maps the diagonal layout: Σ'[q, q] = Σ[p(q), p(q)]. Cubic and Lanczos methods work
    in ``init_fn``/``apply_fn`` but have no kernel here, as in neural-tangents.
    """

    shape: tuple = eqx.field(static=True)
    method: str = eqx.field(static=True)
    antialias: bool = eqx.field(static=True, default=True)
    precision: Any = eqx.field(static=True, default=jax.lax.Precision.HIGHEST)

    def __init__(
        self,
        shape,
        method,
        antialias=True,
        precision=jax.lax.Precision.HIGHEST,
        batch_axis=0,
        channel_axis=-1,
    ):
        try:
            shape = tuple(shape)
        except TypeError:
            raise TypeError(
                f"ImageResize: `shape` must be a tuple with one entry per input axis (-1 to "
                f"keep an axis), e.g. (-1, 8, 8, -1), got {shape!r}"
            ) from None
        if len(shape) < 2 or any(
            isinstance(s, bool) or not isinstance(s, int) or (s < 1 and s != -1) for s in shape
        ):
            raise ValueError(
                "ImageResize: `shape` must list every input axis as a positive int or -1 "
                f"(kept), e.g. (-1, 8, 8, -1), got {shape!r}"
            )
        n = len(shape)
        for name, value, default in (
            ("batch_axis", batch_axis, 0),
            ("channel_axis", channel_axis, n - 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value % n != default:
                raise ValueError(
                    f"ImageResize: only the default `{name}` is supported (inputs "
                    f"(N, *spatial, C)), got {value!r}; move axes there with jnp.moveaxis first"
                )
        if shape[0] != -1:
            raise ValueError(
                f"ImageResize: `shape[0]` is the batch axis and must be -1 (resizing it would "
                f"mix points), got {shape[0]}"
            )
        self.shape = shape
        self.method = _method_name(method)
        self.antialias = bool(antialias)
        self.precision = precision

    def output_shape(self, input_shape):
        in_shape = tuple(input_shape)
        if isinstance(input_shape, list) and in_shape and not isinstance(in_shape[0], int):
            raise ValueError("ImageResize got several branches; close them with a fan-in first")
        if len(in_shape) != len(self.shape):
            raise ValueError(
                f"ImageResize: `shape` {self.shape} has {len(self.shape)} entries but inputs "
                f"have {len(in_shape)} axes {in_shape}; give one entry per axis (-1 to keep it)"
            )
        return tuple(h if s == -1 else s for h, s in zip(in_shape, self.shape, strict=True))

    def _resizes_space(self) -> bool:
        return any(s != -1 for s in self.shape[1:-1])

    def needs_full_spatial(self, out_full: bool) -> bool:
        return out_full or (self.method != "nearest" and self._resizes_space())

    def mixes_space(self) -> bool:
        return self.method != "nearest" and self._resizes_space()

    def _matrix(self, old: int, new: int, dtype):
        """R ``(new, old)``: the resize applied to the identity (a constant)."""
        with jax.ensure_compile_time_eval():
            eye = jnp.eye(old, dtype=dtype)
            return jax.image.resize(
                eye, (new, old), self.method, antialias=self.antialias, precision=self.precision
            )

    def kernel(self, k):
        if self.method not in _KERNEL_METHODS:
            raise ValueError(
                f"ImageResize: method {self.method!r} has no closed-form kernel (only 'linear' "
                "and 'nearest' do, as in neural-tangents); its init_fn/apply_fn work, so "
                "estimate the kernel with ntk_bayes.monte_carlo_kernel_fn, or use "
                "method='linear'"
            )
        if self.shape[-1] != -1:
            raise ValueError(
                "ImageResize: resizing the channel axis has no infinite-width limit; set "
                f"shape[-1] = -1, got {self.shape[-1]}"
            )
        out1, out2 = self.output_shape(k.shape1), self.output_shape(k.shape2)
        full = not k.diagonal_spatial
        if not full and self.needs_full_spatial(False):
            raise ValueError(  # pragma: no cover - the engine chooses the full layout
                "ImageResize with linear interpolation needs the full spatial layout"
            )
        step = 2 if full else 1
        resized = [
            (i, old, new)
            for i, (old, new) in enumerate(zip(k.shape1[1:-1], out1[1:-1], strict=True))
            if old != new
        ]

        def resize(x, batch_ndim):
            for i, old, new in resized:
                R = self._matrix(old, new, x.dtype)
                for a in range(batch_ndim + step * i, batch_ndim + step * (i + 1)):
                    x = jnp.moveaxis(
                        jnp.tensordot(R, x, axes=([1], [a]), precision=self.precision), 0, a
                    )
            return x

        return k.map_arrays(resize, shape1=out1, shape2=out2, is_input=False)

    def apply(self, params, x, **kwargs):
        return jax.image.resize(
            x,
            self.output_shape(x.shape),
            self.method,
            antialias=self.antialias,
            precision=self.precision,
        )

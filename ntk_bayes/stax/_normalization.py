r"""Layer normalisation (``LayerNorm``).

For Gaussian pre-activations of infinitely many channels the per-point mean over
channels is 0 and the variance over the normalised axes converges to its expectation,
so normalisation divides the kernel by the outer product of per-point standard
deviations (Xiao et al. 2020, "Disentangling trainability and generalization";
neural-tangents' ``LayerNorm``).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp

from ._conv import reject_unused
from ._core import Layer, check_hyper
from ._kernel import _interleave
from ._masking import kernel_masks, masked_mean_var

__all__ = ["LayerNorm"]


class LayerNorm(Layer):
    r"""Normalise each point over ``axis`` (default: the channel axis).

    With v_i(p) = ε + mean over the normalised spatial axes of Σ(x_i, x_i)[p, p]
    (ε = ``eps``), for inputs that are Gaussian pre-activations (after Dense/Conv):

    .. math::

        Σ'[p, p'] = \frac{Σ[p, p']}{\sqrt{v_1(p)\, v_2(p')}}, \qquad
        Θ'[p, p'] = \frac{Θ[p, p']}{\sqrt{v_1(p)\, v_2(p')}}

    ``axis`` must include the channel axis (-1); spatial axes may be added (their
    variances are averaged); the batch axis 0 may not (points would interact).
    Finite width: ``(x - mean) / sqrt(eps + var)`` over ``axis``.
    """

    axis: tuple = eqx.field(static=True)
    eps: Any = 1e-12

    def __init__(self, axis=-1, eps=1e-12, **unused):
        reject_unused("LayerNorm", dict(unused))
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        if not axes or any(isinstance(a, bool) or not isinstance(a, int) for a in axes):
            raise TypeError(f"LayerNorm: `axis` must be an int or a tuple of ints, got {axis!r}")
        check_hyper(eps, "eps", "LayerNorm", meaning="added to the variance")
        self.axis = axes
        self.eps = eps

    def _axes(self, ndim: int) -> tuple[int, ...]:
        out = []
        for a in self.axis:
            if not -ndim <= a < ndim:
                raise ValueError(
                    f"LayerNorm: `axis`={self.axis} names axis {a}, but inputs have {ndim} axes"
                )
            out.append(a % ndim)
        if len(set(out)) != len(out):
            raise ValueError(f"LayerNorm: `axis`={self.axis} repeats an axis")
        if ndim - 1 not in out:
            raise ValueError(
                f"LayerNorm: `axis`={self.axis} must include the channel axis -1; normalising "
                "over channels is what makes the infinite-width limit exist"
            )
        if 0 in out:
            raise ValueError(
                f"LayerNorm: `axis`={self.axis} includes the batch axis 0, which couples "
                "the points of a batch; normalise over channels (and spatial axes) only"
            )
        return tuple(sorted(out))

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if isinstance(input_shape, list) and shape and not isinstance(shape[0], int):
            raise ValueError("LayerNorm got several branches; close them with a fan-in first")
        self._axes(len(shape))
        return shape

    def kernel(self, k):
        if not k.is_gaussian:
            raise ValueError(
                "LayerNorm needs Gaussian inputs: put it right after a Dense or Conv layer "
                "(before the nonlinearity)"
            )
        axes = self._axes(len(k.shape1))
        spatial = tuple(a for a in axes if a != len(k.shape1) - 1)  # 1-based spatial axes

        masks = kernel_masks(k) if spatial else None

        def var(cov, mask=None):
            v = self.eps + k._diag(cov)  # (n, *S)
            if mask is not None:  # statistics over unmasked positions only
                return masked_mean_var(v, spatial, mask[..., 0], get_var=False)[0]
            return jnp.mean(v, axis=spatial, keepdims=True) if spatial else v

        v1, v2 = (var(k.cov1), var(k.cov2)) if masks is None else map(var, (k.cov1, k.cov2), masks)
        if k.diagonal_spatial:
            pair = v1[:, None] * v2[None, :]
            self1, self2 = v1 * v1, v2 * v2
        else:
            pair = _interleave(v1, True)[:, None] * _interleave(v2, False)[None, :]
            self1 = _interleave(v1, True) * _interleave(v1, False)
            self2 = _interleave(v2, True) * _interleave(v2, False)
        norm = jnp.sqrt(pair)
        return k.replace(
            nngp=k.nngp / norm,
            ntk=None if k.ntk is None else k.ntk / norm,
            cov1=k.cov1 / jnp.sqrt(self1),
            cov2=k.cov2 / jnp.sqrt(self2),
        )

    def apply(self, params, x, mask=None, **kwargs):
        axes = self._axes(x.ndim)
        if mask is not None:  # statistics over unmasked entries
            mean, var = masked_mean_var(x, axes, mask, get_var=True)
            return (x - mean) / jnp.sqrt(self.eps + var)
        mean = jnp.mean(x, axis=axes, keepdims=True)
        var = jnp.var(x, axis=axes, keepdims=True)
        return (x - mean) / jnp.sqrt(self.eps + var)

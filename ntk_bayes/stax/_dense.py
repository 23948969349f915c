"""Affine layers: ``Dense`` and ``Identity``."""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._numerics import check_int, is_concrete
from ._core import Layer, check_hyper

__all__ = ["Dense", "Identity", "PARAMETERIZATIONS", "check_parameterization"]

PARAMETERIZATIONS = ("ntk", "standard")


def check_parameterization(value: str, layer: str) -> str:
    if not isinstance(value, str) or value.lower() not in PARAMETERIZATIONS:
        raise ValueError(
            f"{layer}: unknown `parameterization` {value!r}; choose 'ntk' (default) or 'standard'"
        )
    return value.lower()


class Dense(Layer):
    r"""Fully connected layer acting on the last (channel) axis.

    Recursion (Jacot et al. 2018; Lee et al. 2019), with σ_w = ``W_std``,
    σ_b = ``b_std`` (0 when ``None``) and n the fan-in:

    .. math::

        Σ' = σ_w^2 Σ + σ_b^2, \qquad
        Θ' = \begin{cases} Σ' + σ_w^2 Θ & \text{"ntk"} \\
                          n Σ + [σ_b \ne \text{None}] + σ_w^2 Θ & \text{"standard"}
             \end{cases}

    Finite width: "ntk" draws W, b ~ N(0, 1) and computes
    ``W_std / sqrt(n) * x @ W + b_std * b``; "standard" draws
    W ~ N(0, W_std²/n), b ~ N(0, b_std²) and computes ``x @ W + b``.
    """

    out_dim: int = eqx.field(static=True)
    W_std: Any = 1.0
    b_std: Any = None
    parameterization: str = eqx.field(static=True, default="ntk")

    def __init__(self, out_dim, W_std=1.0, b_std=None, parameterization="ntk", **unused):
        out_dim = check_int(
            out_dim,
            "out_dim",
            low=1,
            message="Dense: `{name}` must be a positive integer, got {value!r}",
        )
        _reject_unused("Dense", unused, ("batch_axis", "channel_axis", "s"))
        check_hyper(W_std, "W_std", "Dense")
        check_hyper(b_std, "b_std", "Dense", allow_none=True)
        self.out_dim = out_dim
        self.W_std = W_std
        self.b_std = b_std
        self.parameterization = check_parameterization(parameterization, "Dense")

    def output_shape(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(
                f"Dense expects inputs (N, ..., features), got shape {tuple(input_shape)}"
            )
        return tuple(input_shape[:-1]) + (self.out_dim,)

    def kernel(self, k):
        w2 = self.W_std**2
        b2 = 0.0 if self.b_std is None else self.b_std**2
        nngp = w2 * k.nngp + b2
        ntk = k.ntk
        if ntk is not None:
            if self.parameterization == "ntk":
                ntk = nngp + w2 * ntk
            else:
                fan_in = k.shape1[-1]
                ntk = fan_in * k.nngp + w2 * ntk + (0.0 if self.b_std is None else 1.0)
        return k.replace(
            nngp=nngp,
            ntk=ntk,
            cov1=w2 * k.cov1 + b2,
            cov2=w2 * k.cov2 + b2,
            shape1=self.output_shape(k.shape1),
            shape2=self.output_shape(k.shape2),
            is_gaussian=True,
            independent=True,
            is_input=False,
        )

    def init(self, key, input_shape):
        out_shape = self.output_shape(input_shape)
        k1, k2 = jax.random.split(key)
        fan_in = input_shape[-1]
        W = jax.random.normal(k1, (fan_in, self.out_dim))
        b = None if self.b_std is None else jax.random.normal(k2, (self.out_dim,))
        if self.parameterization == "standard":
            W = W * (self.W_std / jnp.sqrt(fan_in))
            b = None if b is None else b * self.b_std
        return out_shape, (W, b)

    def prior_std(self, input_shape):
        """``(W, b)`` prior scales: (1, 1) in the "ntk" parameterisation (``apply_fn``
        multiplies by ``W_std / sqrt(n)`` and ``b_std``), ``(W_std / sqrt(n), b_std)`` in
        the "standard" one; ``b`` is 0 when ``b_std == 0``, ``None`` when it is ``None``."""
        return _affine_prior_std(self, input_shape[-1])

    def apply(self, params, x, **kwargs):
        W, b = params
        if x.shape[-1] != W.shape[0]:
            raise ValueError(
                f"Dense: input has {x.shape[-1]} features but the weights expect {W.shape[0]}; "
                "re-run init_fn with this input shape"
            )
        out = x @ W
        if self.parameterization == "ntk":
            out = out * (self.W_std / jnp.sqrt(x.shape[-1]))
            if b is not None:
                out = out + self.b_std * b
        elif b is not None:
            out = out + b
        return out


class Identity(Layer):
    """The identity map (no parameters, kernel unchanged)."""

    def kernel(self, k):
        return k

    def apply(self, params, x, **kwargs):
        return x


def _affine_prior_std(layer, fan_in: int) -> tuple:
    """``(W, b)`` prior scales of a Dense/Conv layer with fan-in ``fan_in``."""
    b_std = layer.b_std
    if b_std is None:
        b = None
    elif is_concrete(b_std) and float(b_std) == 0.0:
        b = 0.0  # apply_fn adds b_std * b (ntk) or b ~ N(0, 0) (standard): no effect
    else:
        b = 1.0 if layer.parameterization == "ntk" else b_std
    if layer.parameterization == "ntk":
        return 1.0, b
    return layer.W_std / math.sqrt(fan_in), b


def _reject_unused(layer: str, unused: dict, tolerated: tuple) -> None:
    bad = [k for k in unused if k not in tolerated]
    if bad:
        raise TypeError(f"{layer}: unexpected keyword argument(s) {bad}")
    for name in ("batch_axis", "channel_axis"):
        if name in unused and unused[name] not in (0 if name == "batch_axis" else -1,):
            raise ValueError(
                f"{layer}: only the default `{name}` is supported; move axes with "
                "jnp.moveaxis to (N, ..., C) first"
            )
    if "s" in unused and tuple(unused["s"]) != (1, 1):
        raise ValueError(f"{layer}: only s=(1, 1) is supported")

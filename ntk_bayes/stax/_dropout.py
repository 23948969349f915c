r"""Dropout (``Dropout(rate, mode)``), with neural-tangents' keep-rate convention.

A finite layer keeps each unit with probability ``rate`` and rescales it by 1/rate.
Masks are independent across units and points, so covariances between different
points are unchanged (E[m m'] = rate²), while a point paired with itself shares its
mask and gains a factor E[m²]/rate² = 1/rate. In train mode the kernel therefore
multiplies the same-position entries of ``cov1``/``cov2`` by 1/rate, and those of
``nngp``/``ntk`` for the pairs that are one point twice (``x2`` omitted or equal to
``x1``, as neural-tangents decides). The output is a Gaussian scale mixture, not a
Gaussian, so a Dense or Conv layer must come before the next nonlinearity. Test mode
is the identity.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import is_concrete
from ._core import Layer, check_hyper

__all__ = ["Dropout"]

_MODES = ("train", "test")


class Dropout(Layer):
    """Keep each unit with probability ``rate`` (0 < rate <= 1) and divide it by ``rate``.

    ``mode="train"`` is dropout as in training; the finite network then needs a key:
    ``apply_fn(params, x, rng=key)``. ``mode="test"`` is the identity. ``rate`` is a
    hyperparameter leaf (``jax.grad``/``jax.vmap`` reach it), like ``W_std``.
    """

    rate: Any
    mode: str = eqx.field(static=True)

    def __init__(self, rate, mode: str = "train"):
        if mode not in _MODES:
            raise ValueError(f"Dropout: `mode` must be 'train' or 'test', got {mode!r}")
        check_hyper(rate, "rate", "Dropout", positive=True)
        if is_concrete(rate) and float(np.asarray(rate)) > 1:
            raise ValueError(
                f"Dropout: `rate` is the keep probability and must be in (0, 1], got "
                f"{float(np.asarray(rate))}; for a drop probability p pass rate=1 - p"
            )
        self.rate = rate
        self.mode = mode

    def needs_same_points(self) -> bool:
        return self.mode == "train"

    def kernel(self, k):
        if k.is_input:
            raise ValueError(
                "Dropout cannot be the first layer: the input kernel is not a sum over "
                "infinitely many units; put a Dense or Conv layer before it"
            )
        if self.mode == "test":
            return k
        gain = 1 / jnp.asarray(self.rate, jnp.result_type(k.nngp))
        eye = _same_position(k)  # 1 where the two spatial positions coincide

        def scaled(a, mask):
            return a * (1 + (gain - 1) * mask)

        pair = k.same_pair_mask().reshape(k.nngp.shape[:2] + (1,) * (k.nngp.ndim - 2))
        pair_mask = pair * eye
        return k.replace(
            nngp=scaled(k.nngp, pair_mask),
            ntk=None if k.ntk is None else scaled(k.ntk, pair_mask),
            cov1=scaled(k.cov1, eye),
            cov2=scaled(k.cov2, eye),
            is_gaussian=False,
            points_alike=False,  # the masks are drawn per point
            point_ids=None,  # two copies of a point get different masks
        )

    def apply(self, params, x, rng=None, **kwargs):
        if self.mode == "test":
            return x
        if rng is None:
            raise ValueError(
                "Dropout in train mode needs a PRNG key: call apply_fn(params, x, rng=key), "
                "or build the layer with mode='test' for the deterministic network"
            )
        keep = jax.random.bernoulli(rng, self.rate, x.shape)
        return jnp.where(keep, x / self.rate, 0)


def _same_position(k):
    """1 where the spatial positions of a covariance entry coincide, broadcastable to
    ``cov1`` and to the spatial part of ``nngp``: all ones for diagonal layouts, a
    product of identity matrices over the interleaved (p, p') axes otherwise."""
    if k.diagonal_spatial or k.n_spatial == 0:
        return jnp.ones((), bool)
    eye = jnp.ones((), bool)
    for size in k.shape1[1:-1]:
        eye = eye[..., None, None] & jnp.eye(size, dtype=bool)
    return eye

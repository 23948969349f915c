"""``repeat``: one layer applied ``n`` times in a compiled loop (neural-tangents' name).

The kernel recursion runs the first application in Python (it may change the state's
static structure, e.g. from inputs to post-activations) and the remaining ``n - 1``
inside ``jax.lax.scan`` with ``jax.checkpoint`` on each step: compilation does not grow
with ``n``, and reverse-mode differentiation stores one kernel state per step instead
of every intermediate of every layer.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._numerics import check_int
from ._core import Layer, StateChanged, ask, scanned_kernel

__all__ = ["Repeat", "repeat"]


class Repeat(Layer):
    """``layer`` applied ``n`` times, each time with its own parameters (as
    ``serial(*[layer] * n)``, whose kernel it equals)."""

    layer: Layer
    n: int = eqx.field(static=True)

    def output_shape(self, input_shape):
        out = self.layer.output_shape(input_shape)
        if tuple(out) != tuple(input_shape):
            raise ValueError(
                f"repeat: the layer maps shape {tuple(input_shape)} to {tuple(out)}; a repeated "
                "layer must keep the shape (use serial(...) for layers that change it)"
            )
        return out

    def kernel(self, k):
        k = self.layer.kernel(k)
        if self.n == 1:
            return k
        try:
            return scanned_kernel(lambda _: self.layer, None, self.n - 1, k)
        except StateChanged:
            raise StateChanged(
                "repeat: the layer's kernel changes the state's structure after its first "
                "application; use serial(*[layer] * n) instead"
            ) from None

    def init(self, key, input_shape):
        out_shape = self.output_shape(input_shape)
        keys = jax.random.split(key, self.n)
        params = jax.vmap(lambda k: self.layer.init(k, input_shape)[1])(keys)
        return out_shape, params

    def prior_std(self, input_shape):
        return self.layer.prior_std(input_shape)

    def apply(self, params, x, **kwargs):
        rng = kwargs.pop("rng", None)
        rngs = None if rng is None else jax.random.split(rng, self.n)

        def step(x_, p_r):
            p, r = p_r
            return self.layer.apply(p, x_, **kwargs, rng=r), None

        x, _ = jax.lax.scan(step, jnp.asarray(x), (params, rngs))
        return x

    def needs_full_spatial(self, out_full: bool) -> bool:
        for _ in range(self.n):
            out_full = ask(self.layer, "needs_full_spatial", out_full)
        return out_full

    def mixes_space(self) -> bool:
        return ask(self.layer, "mixes_space")

    def needs_same_points(self) -> bool:
        return ask(self.layer, "needs_same_points")


def repeat(layer: Layer, n: int) -> Repeat:
    """``layer`` composed ``n`` times in a compiled loop, as ``neural_tangents.stax.repeat``:
    the same kernel as ``serial(*[layer] * n)`` (independent weights per repetition),
    faster to compile for large ``n`` and checkpointed for gradients."""
    if not isinstance(layer, Layer):
        raise TypeError(f"repeat: `layer` must be a stax layer, got {type(layer).__name__}")
    n = check_int(
        n, "n", low=1, message="repeat: `{name}` must be a positive integer, got {value!r}"
    )
    return Repeat(layer, n)

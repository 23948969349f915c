r"""The finite network of a ``stax`` architecture, with its weights as named sites.

Width: every weighted layer (``Dense``, ``Conv``) that is not a readout gets ``width``
output units/channels; readouts (weighted layers whose output reaches the network's
output without passing another weighted layer) keep theirs.

Prior (standard parameterisation, Neal 1996; Lee et al. 2018): for a weighted layer with
fan-in n (``filter size x input channels``),

.. math::

    W_{ij} \sim N(0, σ_w^2 / n), \qquad b_j \sim N(0, σ_b^2),

with σ_w = ``W_std`` and σ_b = ``b_std`` (no bias when ``b_std`` is None or 0). As the
width grows, the network's outputs under this prior converge to GP(0, K_nngp), the
architecture's NNGP; at any width E[f(x) f(x')] matches K_nngp exactly when there is a
single hidden layer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from .._numerics import is_concrete
from ..stax import Layer, Parallel, Serial

__all__ = [
    "finite_network",
    "readout_paths",
    "forward",
    "weighted",
    "param_shapes",
    "weight_sizes",
    "prior_sampler",
    "lookup_sampler",
]

# sample(name, shape, scale, dtype) -> array: draws (or looks up) one weight array
SampleFn = Callable[[str, tuple, object, object], jax.Array]


def weighted(layer) -> bool:
    """A layer with (W, b) weights scaled by ``W_std``/``b_std`` (Dense, Conv)."""
    return hasattr(layer, "W_std") and (hasattr(layer, "out_dim") or hasattr(layer, "out_chan"))


def _width_field(layer) -> str:
    return "out_dim" if hasattr(layer, "out_dim") else "out_chan"


def readout_paths(layer, path: str = "") -> tuple[set[str], bool]:
    """Paths of the readout layers, and whether every route through ``layer`` is weighted."""
    if isinstance(layer, Serial):
        found: set[str] = set()
        for i in reversed(range(len(layer.layers))):
            r, blocked = readout_paths(layer.layers[i], f"{path}{i}.")
            found |= r
            if blocked:
                return found, True
        return found, False
    if isinstance(layer, Parallel):
        found, all_blocked = set(), True
        for i, sub in enumerate(layer.layers):
            r, blocked = readout_paths(sub, f"{path}{i}.")
            found |= r
            all_blocked &= blocked
        return found, all_blocked
    if weighted(layer):
        return {path.rstrip(".")}, True
    return set(), False


def _as_standard(layer, width: int | None):
    changes = {"parameterization": "standard"}
    if width is not None:
        changes[_width_field(layer)] = width
    try:
        return dataclasses.replace(layer, **changes)
    except TypeError as e:  # pragma: no cover - a layer whose __init__ renames fields
        raise TypeError(
            f"cannot rebuild {type(layer).__name__} at another width/parameterisation: {e}"
        ) from None


def finite_network(net: Layer, width: int | None):
    """The same architecture with hidden widths ``width`` (readouts kept), standard
    parameterisation. ``width=None`` keeps every layer's own width."""
    if not isinstance(net, Layer):
        raise TypeError(f"`net` must be an ntk_bayes.stax network, got {type(net).__name__}")
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
        raise ValueError(f"`width` must be a positive integer or None, got {width!r}")
    readouts, _ = readout_paths(net)
    if not readouts:
        raise ValueError(
            "the network has no weighted layer (Dense/Conv): its outputs have no prior to "
            "sample; end it with a Dense readout"
        )

    def rebuild(layer, path):
        if isinstance(layer, Serial | Parallel):
            subs = tuple(rebuild(s, f"{path}{i}.") for i, s in enumerate(layer.layers))
            return type(layer)(subs)
        if weighted(layer):
            return _as_standard(layer, None if path.rstrip(".") in readouts else width)
        return layer

    return rebuild(net, "")


def _is_zero(v) -> bool:
    return v is None or (is_concrete(v) and float(v) == 0.0)


def param_shapes(layer, x_shape) -> tuple[tuple, tuple | None]:
    """Shapes of (W, b) that ``layer.init`` would create for inputs of ``x_shape``."""
    shape = tuple(x_shape)
    _, (W, b) = jax.eval_shape(lambda k: layer.init(k, shape), jax.random.PRNGKey(0))
    return tuple(W.shape), (None if b is None else tuple(b.shape))


def forward(layer, x, sample: SampleFn, path: str = ""):
    """Run the finite network on ``x``, obtaining each weight array from ``sample``.

    ``layer`` must come from :func:`finite_network` (standard parameterisation).
    """
    if isinstance(layer, Serial):
        for i, sub in enumerate(layer.layers):
            x = forward(sub, x, sample, f"{path}{i}.")
        return x
    if isinstance(layer, Parallel):
        xs = list(x)
        if len(xs) != len(layer.layers):
            raise ValueError(
                f"parallel at {path.rstrip('.') or 'top'} has {len(layer.layers)} layers "
                f"but receives {len(xs)} branches"
            )
        return [
            forward(s, xi, sample, f"{path}{i}.")
            for i, (s, xi) in enumerate(zip(layer.layers, xs, strict=True))
        ]
    here = path.rstrip(".") or "0"
    site = here.replace(".", "_")  # "3.1.0" -> "3_1_0": no "/" or "." in site names
    if weighted(layer):
        w_shape, b_shape = param_shapes(layer, x.shape)
        fan_in = math.prod(w_shape[:-1])
        W = sample(f"{site}_W", w_shape, layer.W_std / math.sqrt(fan_in), x.dtype)
        b = None
        if b_shape is not None and not _is_zero(layer.b_std):
            b = sample(f"{site}_b", b_shape, layer.b_std, x.dtype)
        return layer.apply((W, b), x)
    shape = [xi.shape for xi in x] if isinstance(x, list | tuple) else x.shape
    _, params = layer.init(jax.random.PRNGKey(0), shape)
    if jax.tree_util.tree_leaves(params):
        raise TypeError(
            f"{type(layer).__name__} (at {here}) has parameters that the finite BNN does not "
            "know how to put priors on; supported: Dense, Conv and parameter-free layers"
        )
    return layer.apply(params, x)


def weight_sizes(layer, x_shape, dtype) -> int:
    """Total number of weights the finite network uses on inputs of ``x_shape``."""
    total = [0]

    def count(name, shape, scale, dt):
        total[0] += math.prod(shape)
        return jnp.zeros(shape, dt)

    spec = jax.ShapeDtypeStruct(tuple(x_shape), dtype)
    jax.eval_shape(lambda x: forward(layer, x, count), spec)
    return total[0]


def prior_sampler(key, total: int | None = None) -> SampleFn:
    """A ``sample`` callback drawing each weight from its prior with ``jax.random``.

    With ``total`` (from :func:`weight_sizes`) all weights come from one normal vector,
    which compiles far faster under ``vmap`` than one random call per weight array.
    """
    state = {"key": key, "offset": 0, "flat": None}

    def sample(name, shape, scale, dtype):
        if total is None:
            state["key"], sub = jax.random.split(state["key"])
            return scale * jax.random.normal(sub, shape, dtype)
        if state["flat"] is None:
            state["flat"] = jax.random.normal(key, (total,), dtype)
        size, start = math.prod(shape), state["offset"]
        state["offset"] = start + size
        return scale * state["flat"][start : start + size].reshape(shape)

    return sample


def lookup_sampler(values: dict, prefix: str) -> SampleFn:
    """A ``sample`` callback reading weights from ``values[f"{prefix}_{name}"]``."""

    def sample(name, shape, scale, dtype):
        key = f"{prefix}_{name}"
        if key not in values:
            raise KeyError(f"no posterior draws for weight {key!r}")
        v = jnp.asarray(values[key], dtype)
        if v.shape != tuple(shape):
            raise ValueError(f"weight {key!r} has shape {v.shape}, the network needs {shape}")
        return v

    return sample

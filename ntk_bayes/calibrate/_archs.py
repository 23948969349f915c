"""Named architectures of the ``ntk-bayes`` command: ``{nonlinearity}-{depth}x{width}``.

``relu-2x512`` is ``Dense(512) → ReLU → Dense(512) → ReLU → Dense(1)``, every Dense
with the same initial ``W_std``/``b_std``. The width only matters for finite networks
(the kernels are those of the infinite-width limit); the BNN of ``calibrate`` has its
own ``--width``.
"""

from __future__ import annotations

import dataclasses
import re

import jax
import numpy as np

from .. import stax

__all__ = [
    "Architecture",
    "PRESETS",
    "NONLINEARITIES",
    "parse_arch",
    "hyperparameters",
    "as_floats",
]

# Initial (W_std, b_std) per nonlinearity. A sizeable bias matters on low-dimensional
# inputs: with b_std ≈ 0 every first-layer unit of a 1-D input kinks at x = 0, and the
# NNGP can only draw functions that are linear on each side of the origin.
NONLINEARITIES = {
    "relu": (1.5, 0.5),
    "erf": (1.5, 0.5),
    "gelu": (1.5, 0.5),
}
PRESETS = ("relu-2x512", "relu-1x512", "relu-3x512", "erf-1x512", "erf-2x512", "gelu-2x512")
_PATTERN = re.compile(r"^(?P<nl>[a-z]+)-(?P<depth>\d+)x(?P<width>\d+)$")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A fully connected network: ``depth`` hidden layers of ``width`` units.

    Attributes:
        name: the preset name, e.g. ``"relu-2x512"``.
        nonlinearity: ``"relu"``, ``"erf"`` or ``"gelu"``.
        depth: number of hidden layers (>= 1).
        width: hidden width of the stax network (irrelevant to its kernels).
        W_std, b_std: initial weight and bias standard deviations of every layer.
    """

    name: str
    nonlinearity: str
    depth: int
    width: int
    W_std: float
    b_std: float

    def build(self, W_std=None, b_std=None, out_dim: int = 1, width: int | None = None):
        """The stax network; ``W_std``/``b_std`` (floats or JAX scalars, shared by all
        layers) default to the preset's values."""
        W = self.W_std if W_std is None else W_std
        b = self.b_std if b_std is None else b_std
        phi = {"relu": stax.Relu, "erf": stax.Erf, "gelu": stax.Gelu}[self.nonlinearity]
        n = self.width if width is None else width
        layers = []
        for _ in range(self.depth):
            layers += [stax.Dense(n, W_std=W, b_std=b), phi()]
        return stax.serial(*layers, stax.Dense(out_dim, W_std=W, b_std=b))

    def describe(self) -> str:
        return (
            f"{self.name}: {self.depth} hidden {self.nonlinearity} layer(s) of width "
            f"{self.width}, initial W_std={self.W_std:g}, b_std={self.b_std:g}"
        )


def parse_arch(text: str, W_std: float | None = None, b_std: float | None = None) -> Architecture:
    """Parse ``"relu-2x512"`` (any ``{relu,erf,gelu}-{depth}x{width}``).

    Raises:
        ValueError: naming the accepted forms.
    """
    m = _PATTERN.match(str(text).strip().lower())
    if m is None or m["nl"] not in NONLINEARITIES:
        raise ValueError(
            f"unknown architecture {text!r}; use NONLINEARITY-DEPTHxWIDTH with NONLINEARITY in "
            f"{sorted(NONLINEARITIES)}, e.g. one of {', '.join(PRESETS)}"
        )
    depth, width = int(m["depth"]), int(m["width"])
    if not 1 <= depth <= 8 or not 1 <= width <= 1 << 16:
        raise ValueError(f"architecture {text!r}: need 1 <= depth <= 8 and 1 <= width <= 65536")
    w0, b0 = NONLINEARITIES[m["nl"]]
    W = w0 if W_std is None else float(W_std)
    b = b0 if b_std is None else float(b_std)
    if not (np.isfinite(W) and W > 0 and np.isfinite(b) and b >= 0):
        raise ValueError(f"need W_std > 0 and b_std >= 0, got W_std={W}, b_std={b}")
    return Architecture(f"{m['nl']}-{depth}x{width}", m["nl"], depth, width, W, b)


def _dense_layers(net):
    return [lay for lay in jax.tree_util.tree_leaves(net, is_leaf=_is_dense) if _is_dense(lay)]


def _is_dense(x) -> bool:
    return isinstance(x, stax.Dense)


def hyperparameters(net) -> dict[str, float]:
    """``{"W_std_0": ..., "b_std_0": ..., ...}`` of every Dense layer, as positive floats
    (fits optimise them unconstrained; only their squares enter the kernels)."""
    out = {}
    for i, lay in enumerate(_dense_layers(net)):
        out[f"W_std_{i}"] = abs(float(lay.W_std))
        out[f"b_std_{i}"] = 0.0 if lay.b_std is None else abs(float(lay.b_std))
    return out


def as_floats(net):
    """The network with every array hyperparameter turned into a positive Python float
    (what a finite BNN's prior and the report need)."""

    def conv(x):
        if isinstance(x, jax.Array | np.ndarray) and np.ndim(x) == 0:
            return abs(float(x))
        return x

    return jax.tree_util.tree_map(conv, net)

r"""Finite fully connected networks in the NTK (lazy) and maximal-update (rich) scalings.

Both use weights W, b ~ N(0, 1) and layer maps ``h' = σ_w / sqrt(fan_in) · W φ(h) + σ_b b``
(the ``stax.Dense`` "ntk" parameterisation), and differ only in the readout multiplier
and the learning rates (Yang & Hu 2021, "Feature learning in infinite-width neural
networks", Table 3 rewritten with unit-variance weights; for one hidden layer this is
the mean-field scaling of Mei, Montanari & Nguyen 2018 and Chizat & Bach 2018):

====================  =====================  =============================
parameterisation      readout multiplier      learning rate per parameter
====================  =====================  =============================
``"ntk"`` (lazy)      σ_w / sqrt(n)           η for every parameter
``"mup"`` (rich)      σ_w / n                 η n for all weights and hidden
                                              biases, η for the readout bias
====================  =====================  =============================

with n the width. In the "ntk" scaling each weight moves by O(1/sqrt(n)) during
training, so the NTK is frozen as n → ∞ (Jacot et al. 2018); in "mup" the
pre-activations move by O(1) at every width and the network learns features. With the
same weights, the effective NTK of "mup" at initialisation (gradients weighted by the
learning rates) equals the NTK of "ntk" exactly, so both start from the same kernel and
differ only in how far it moves.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx

from .. import stax
from .._numerics import POSITIVE_INT, check_int

__all__ = ["ScaledMLP", "scaled_mlp", "PARAMETERIZATIONS"]

PARAMETERIZATIONS = ("ntk", "mup")
_ALIASES = {"ntk": "ntk", "lazy": "ntk", "mup": "mup", "mean_field": "mup", "rich": "mup"}


def _check_parameterization(value) -> str:
    if not isinstance(value, str) or value.lower() not in _ALIASES:
        raise ValueError(
            f"`parameterization` must be 'ntk' (lazy) or 'mup' (alias 'mean_field'; rich), "
            f"got {value!r}"
        )
    return _ALIASES[value.lower()]


class ScaledMLP(eqx.Module):
    """A finite MLP with its learning-rate scales; unpacks as ``init_fn, apply_fn``.

    Attributes:
        net: the ``stax`` network computing the forward pass (its readout ``W_std`` is
            divided by sqrt(width) in the "mup" scaling).
        width: hidden width n.
        parameterization: ``"ntk"`` or ``"mup"``.
        lazy_net: the same architecture in the "ntk" scaling, whose ``kernel_fn`` is
            the infinite-width NTK (the initial effective NTK of both scalings).
    """

    net: stax.Layer
    lazy_net: stax.Layer
    width: int = eqx.field(static=True)
    parameterization: str = eqx.field(static=True)

    @property
    def init_fn(self):
        return self.net.init_fn

    @property
    def apply_fn(self):
        return self.net.apply_fn

    def __iter__(self):
        return iter((self.init_fn, self.apply_fn))

    def lr_scales(self, params):
        """Per-leaf learning-rate multipliers (same pytree structure as ``params``)."""
        hidden = 1.0 if self.parameterization == "ntk" else float(self.width)
        scales = []
        n_layers = len(params)
        for i, p in enumerate(params):
            if len(p) == 0:  # a parameter-free layer (nonlinearity)
                scales.append(())
                continue
            W, b = p
            last = i == n_layers - 1
            scales.append((hidden, None if b is None else (1.0 if last else hidden)))
        return tuple(scales)


def scaled_mlp(
    width: int,
    depth: int = 1,
    nonlinearity: stax.Layer | None = None,
    W_std: Any = 1.0,
    b_std: Any = None,
    parameterization: str = "ntk",
    out_dim: int = 1,
) -> ScaledMLP:
    """A fully connected network of ``depth`` hidden layers of ``width`` units.

    Args:
        width: hidden width n (>= 1).
        depth: number of hidden layers (>= 1).
        nonlinearity: a ``stax`` nonlinearity layer (default ``stax.Relu()``).
        W_std: σ_w of every Dense layer.
        b_std: σ_b of every Dense layer (``None``: no biases).
        parameterization: ``"ntk"`` (lazy) or ``"mup"``/``"mean_field"`` (rich).
        out_dim: number of outputs.
    """
    width = check_int(width, "width", low=1, message=POSITIVE_INT)
    depth = check_int(depth, "depth", low=1, message=POSITIVE_INT)
    out_dim = check_int(out_dim, "out_dim", low=1, message=POSITIVE_INT)
    p = _check_parameterization(parameterization)
    phi = stax.Relu() if nonlinearity is None else nonlinearity
    if not isinstance(phi, stax.Layer):
        raise TypeError(
            f"`nonlinearity` must be a stax layer such as stax.Relu(), got {type(phi).__name__}"
        )
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(width, W_std=W_std, b_std=b_std), phi]
    lazy = stax.serial(*layers, stax.Dense(out_dim, W_std=W_std, b_std=b_std))
    if p == "ntk":
        net = lazy
    else:
        readout = stax.Dense(out_dim, W_std=W_std / math.sqrt(width), b_std=b_std)
        net = stax.serial(*layers, readout)
    return ScaledMLP(net=net, lazy_net=lazy, width=width, parameterization=p)

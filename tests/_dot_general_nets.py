"""Small networks with DotGeneral's batch dims and constants with free axes, built from
either library (``build(stax, name)`` takes ``neural_tangents.stax`` or
``ntk_bayes.stax``), so ``tools/make_nt_reference_layers.py`` and the tests describe
each network once.

neural-tangents keeps ``lax.dot_general``'s axis order (batch dims first, an ``lhs``'s
free axes before the points, an ``rhs``'s after the channels) and only layers that flatten
all positions accept its kernel afterwards; ntk_bayes moves the points first and the
channels last. Networks ending in a Flatten readout compare as (N1, N2) kernels; the
``raw_*`` ones end at DotGeneral and compare their full spatial covariances, whose
axis order is the same in both libraries.
"""

import numpy as np

N1, N2 = 3, 2


def _const(shape, seed):
    return np.round(np.random.default_rng(seed).normal(size=shape) * 8) / 8


# name -> (per-point input shape, DotGeneral keyword arguments, ends in a readout)
CASES = {
    "rhs_free_flatten": (
        (4, 3),
        dict(rhs=_const((4, 3), 1), dimension_numbers=(((1,), (0,)), ((), ()))),
        True,
    ),
    "rhs_free2_img_flatten": (
        (3, 4, 2),
        dict(rhs=_const((2, 4, 3), 2), dimension_numbers=(((2,), (1,)), ((), ()))),
        True,
    ),
    "rhs_outer_flatten": ((3, 2), dict(rhs=_const((2,), 3)), True),
    "raw_rhs_batch": (
        (3, 4, 2),
        dict(rhs=_const((3, 4, 2), 4), dimension_numbers=(((2,), (1,)), ((1,), (0,)))),
        False,
    ),
    "raw_lhs_batch_free": (
        (3, 4, 2),
        dict(lhs=_const((3, 2, 4), 5), dimension_numbers=(((2,), (2,)), ((0,), (1,)))),
        False,
    ),
    "raw_lhs_free": (
        (4, 3),
        dict(lhs=_const((2, 4), 6), dimension_numbers=(((1,), (1,)), ((), ()))),
        False,
    ),
}
NAMES = tuple(CASES)


def inputs(name: str, seed: int = 0):
    """``(x1, x2)``, float64 multiples of 1/8 (exact inner products in float64)."""
    rng = np.random.default_rng([seed, NAMES.index(name)])
    shape = CASES[name][0]
    return tuple(np.round(rng.normal(size=(n, *shape)) * 8).clip(-16, 16) / 8 for n in (N1, N2))


def build(stax, name: str, width: int = 8):
    _, kw, readout = CASES[name]
    layers = [stax.Dense(width, W_std=1.3, b_std=0.1), stax.Erf(), stax.DotGeneral(**kw)]
    if readout:
        layers += [stax.Flatten(), stax.Dense(1, W_std=1.1, b_std=0.2)]
    return stax.serial(*layers)

"""Self-pairs (a point paired with itself) are exact: their values come from the
same-point structure, not from round-off of q1 q2 - Σ12² (issue 15)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from _nets import fc_inputs, tokens

from ntk_bayes import stax

_NODES, _WEIGHTS = np.polynomial.hermite.hermgauss(200)


def _gauss(f, q):
    """E[f(u)] for u ~ N(0, q) by 200-node Gauss–Hermite quadrature, in float64."""
    return float(np.sum(_WEIGHTS * f(math.sqrt(2 * q) * _NODES)) / math.sqrt(math.pi))


def _erf(x, a=1.3, b=0.7, c=0.2):
    from scipy.special import erf

    return a * erf(b * x) + c


def _gelu(x):
    from scipy.special import ndtr

    return x * ndtr(x)


# (layer, E[φ(u)²], E[φ'(u)²]) for u ~ N(0, q): exact constants or 1-D quadrature of
# the finite nonlinearity and its derivative, independent of the library's formulas.
SELF_DUALS = {
    "sign": (stax.Sign(), lambda q: 1.0, lambda q: 0.0),
    "abrelu": (stax.ABRelu(-0.3, 1.2), lambda q: 0.765 * q, lambda q: 0.765),
    "relu": (stax.Relu(), lambda q: q / 2, lambda q: 0.5),
    "gelu": (
        stax.Gelu(),
        lambda q: _gauss(lambda u: _gelu(u) ** 2, q),
        lambda q: _gauss(
            lambda u: (
                (
                    _gelu(u) / np.where(u == 0, 1, u) * (u != 0)
                    + 0.5 * (u == 0)
                    + u * np.exp(-u * u / 2) / math.sqrt(2 * math.pi)
                )
                ** 2
            ),
            q,
        ),
    ),
    "erf": (
        stax.Erf(a=1.3, b=0.7, c=0.2),
        lambda q: _gauss(lambda u: _erf(u) ** 2, q),
        lambda q: _gauss(
            lambda u: (1.3 * 0.7 * 2 / math.sqrt(math.pi) * np.exp(-0.49 * u * u)) ** 2, q
        ),
    ),
    "sin": (
        stax.Sin(a=1.2, b=0.8, c=0.3),
        lambda q: _gauss(lambda u: (1.2 * np.sin(0.8 * u + 0.3)) ** 2, q),
        lambda q: _gauss(lambda u: (0.96 * np.cos(0.8 * u + 0.3)) ** 2, q),
    ),
    "rbf": (
        stax.Rbf(gamma=0.6),
        lambda q: _gauss(lambda u: 2 * np.sin(math.sqrt(1.2) * u + math.pi / 4) ** 2, q),
        lambda q: _gauss(lambda u: 2 * 1.2 * np.cos(math.sqrt(1.2) * u + math.pi / 4) ** 2, q),
    ),
}


def _reference_diagonal(layers, x):
    """(Σ(x, x), Θ(x, x)) per point by the one-point recursion, in float64 numpy."""
    x = np.asarray(x, np.float64)
    out = []
    for row in x:
        q, theta = float(row @ row) / len(row), 0.0
        for lay in layers:
            if isinstance(lay, stax.Dense):
                w2 = float(lay.W_std) ** 2
                b2 = 0.0 if lay.b_std is None else float(lay.b_std) ** 2
                q = w2 * q + b2
                theta = q + w2 * theta
            elif isinstance(lay, stax.LayerNorm):
                theta, q = theta / (q + lay.eps), q / (q + lay.eps)
            else:
                _, mean_sq, dot_sq = next(v for v in SELF_DUALS.values() if v[0] == lay)
                q, theta = mean_sq(q), dot_sq(q) * theta
        out.append((q, theta))
    return np.asarray(out)


def _dense(w=1.4, b=0.2):
    return stax.Dense(16, W_std=w, b_std=b)


@pytest.mark.parametrize("depth", [1, 3])
def test_sign_chain_diagonal_is_exactly_one(dtype, depth):
    """sign² ≡ 1: the self-pair NNGP after Sign is 1, not 1 - (round-off)^(1/2)."""
    net = stax.serial(*[lay for _ in range(depth) for lay in (stax.Dense(64), stax.Sign())])
    x = np.asarray(fc_inputs(5, d=7, seed=1), dtype)
    for x2 in (None, x.copy()):
        k = np.asarray(net.kernel_fn(x, x2, "nngp"))
        assert np.all(np.diag(k) == 1.0)


COMPOSITES = {
    name: [_dense(), stax.LayerNorm(), SELF_DUALS[name][0], _dense(1.1, 0.1)]
    for name in ("gelu", "sin", "rbf", "abrelu", "erf", "sign")
}
COMPOSITES["mixed"] = [
    _dense(1.5, 0.05),
    stax.LayerNorm(),
    SELF_DUALS["gelu"][0],
    _dense(1.2, 0.3),
    stax.LayerNorm(),
    SELF_DUALS["abrelu"][0],
    _dense(),
    SELF_DUALS["sign"][0],
    _dense(0.9, 0.4),
    SELF_DUALS["rbf"][0],
    _dense(),
    SELF_DUALS["sin"][0],
    _dense(),
]


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_self_pairs_match_one_point_recursion(dtype, name):
    layers = COMPOSITES[name]
    net = stax.serial(*layers)
    x = np.asarray(fc_inputs(6, d=5, seed=2), dtype) * 1.7
    want = _reference_diagonal(layers, x)
    k = net.kernel_fn(x, None, ("nngp", "ntk"))
    rtol = 1e-13 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(np.diag(np.asarray(k.nngp, np.float64)), want[:, 0], rtol=rtol)
    np.testing.assert_allclose(np.diag(np.asarray(k.ntk, np.float64)), want[:, 1], rtol=rtol)
    if name == "mixed":  # the diagonal tiles of a tiled kernel know their self-pairs too
        tiled = net.kernel_fn(x, None, "ntk", block_size=4)
        np.testing.assert_allclose(np.diag(np.asarray(tiled, np.float64)), want[:, 1], rtol=rtol)


def test_self_pairs_after_attention_with_huge_variances_then_cos(dtype):
    """Cos after variances of ~1e14: E[cos(u)²] = (1 + e^{-2q})/2 = 1/2 exactly, while
    exp(-(q1 + q2 - 2Σ12)/2) of one-ulp differences (~0.03 at q=1e14) is anything."""
    net = stax.serial(
        stax.Dense(8, W_std=1e7),
        stax.GlobalSelfAttention(8, 8, 8, 2, W_out_std=1.3),
        stax.Cos(),
    )
    x = np.asarray(tokens(3, t=4, c=3, seed=5), dtype)
    k = np.asarray(net.kernel_fn(x, None, "nngp", spatial_output="diagonal"), np.float64)
    same = k[np.arange(3), np.arange(3)]  # (n, T): same point, same token
    np.testing.assert_allclose(same, 0.5, rtol=1e-12 if dtype == np.float64 else 1e-6)
    full = net.kernel_fn(x, None, ("nngp", "cov1"), spatial_output="full")
    cov1 = np.asarray(full.cov1, np.float64)
    np.testing.assert_allclose(np.einsum("nii->ni", cov1), 0.5, rtol=1e-6)


def test_numerical_elementwise_self_pairs_use_one_dimensional_quadrature():
    tanh = stax.ElementwiseNumerical(jnp.tanh, deg=150)
    q = jnp.asarray([0.3, 1.0, 2.5])
    want = [_gauss(lambda u: np.cosh(u) ** -4, float(v)) for v in q]
    np.testing.assert_allclose(np.asarray(tanh.dot_diag(q)), want, rtol=1e-4)

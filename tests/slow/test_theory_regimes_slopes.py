"""Finite-width and kernel-evolution slopes over widths 64 to 2048."""

import jax
import jax.numpy as jnp
import pytest

from ntk_bayes import stax
from ntk_bayes.theory import (
    finite_width_corrections,
    kernel_evolution,
    scaled_mlp,
)


@pytest.fixture(scope="module")
def data():
    """The stat tier's regimes data (tests/stat/test_theory_regimes.py): 8 points in 3-d."""
    x = jax.random.normal(jax.random.key(1), (8, 3))
    return x, jnp.sin(2 * x[:, :1])


def test_finite_width_slope_deep_erf_64_to_2048(data):
    x, _ = data
    res = finite_width_corrections(
        lambda n: scaled_mlp(n, 2, stax.Erf(), W_std=1.5, b_std=0.1).lazy_net,
        x,
        [64, 128, 256, 512, 1024, 2048],
        key=jax.random.key(0),
        n_seeds=16,
    )
    assert abs(res.fit("spread").slope + 0.5) < 0.15
    assert abs(res.fit("deviation").slope + 0.5) < 0.15


def test_kernel_evolution_slopes_64_to_2048(data):
    x, y = data
    res = kernel_evolution(
        x, y, [64, 256, 1024, 2048], key=jax.random.key(1), steps=200, n_seeds=3, b_std=0.1
    )
    assert res.fit("ntk").slope < -0.4
    assert abs(res.fit("mup").slope) < 0.15

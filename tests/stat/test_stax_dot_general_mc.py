"""DotGeneral with batch dims and constants with free axes against Monte Carlo estimates
of the finite twin (issue 15; neural-tangents' values: tests/unit/test_stax_dot_general_more.py).

One random hidden stage fed by fixed inputs, DotGeneral (linear in the hidden units),
Flatten and a Gaussian readout: the Monte Carlo mean of the empirical NNGP and NTK is
the analytic kernel at any width, so width only lowers the variance.
"""

import functools

import jax
import numpy as np
import pytest
from _mc import mc_z_scores

from ntk_bayes import stax

W = 64
RNG = np.random.default_rng(3)
A_BATCH_FREE = RNG.normal(size=(3, 2, 4))  # batch H (3), free (2), contract W (4)
A_RHS_FREE = RNG.normal(size=(4, 3))  # contract T (4), free (3)


def _net(kw, a_sign=1.0):
    kw = {k: (a_sign * v if k in ("lhs", "rhs") else v) for k, v in kw.items()}
    return stax.serial(
        stax.Dense(W, W_std=1.4, b_std=0.1),
        stax.Relu(),
        stax.DotGeneral(**kw),
        stax.Flatten(),
        stax.Dense(2, W_std=1.1, b_std=0.2),
    )


MC = {
    "lhs_batch_free": (
        dict(lhs=A_BATCH_FREE, dimension_numbers=(((2,), (2,)), ((0,), (1,)))),
        (3, 4, 2),
    ),
    "rhs_free_tokens": (dict(rhs=A_RHS_FREE, dimension_numbers=(((1,), (0,)), ((), ()))), (4, 3)),
}


@functools.cache
def _monte_carlo(name):
    kw, shape = MC[name]
    x1 = jax.random.normal(jax.random.PRNGKey(1), (3, *shape))
    x2 = jax.random.normal(jax.random.PRNGKey(2), (2, *shape))
    return x1, x2, mc_z_scores(_net(kw), x1, x2, n_samples=256, samples_per_step=64)


@pytest.mark.parametrize("name", sorted(MC))
def test_kernels_match_monte_carlo(name):
    z = _monte_carlo(name)[2][0]
    # 12 entries per network, 2 networks: per-entry two-sided N(0,1) tail at 4.5 sd is
    # 6.8e-6, so false alarm < 24 * 6.8e-6 = 1.7e-4 (256 samples: the t tail is close).
    assert max(z["nngp"].max(), z["ntk"].max()) < 4.5, z


def test_monte_carlo_rejects_the_kernel_without_cross_position_signs():
    """Power: with |A| instead of A the cross-position terms change sign; that kernel
    is far outside the error the right one passes at 4.5."""
    x1, x2, (_, _, mean, se) = _monte_carlo("lhs_batch_free")
    kw = dict(MC["lhs_batch_free"][0], lhs=np.abs(A_BATCH_FREE))
    wrong = np.asarray(_net(kw).kernel_fn(x1, x2, "nngp"), np.float64)
    m, s = np.asarray(mean.nngp, np.float64), np.asarray(se.nngp, np.float64)
    assert (np.abs(m - wrong) / s).max() > 10

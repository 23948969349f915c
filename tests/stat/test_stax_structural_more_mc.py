"""FanInProd, Index and DotGeneral kernels against Monte Carlo estimates of finite networks.

Each network has one random hidden stage fed by the fixed inputs and a Gaussian
readout, so the Monte Carlo mean of its empirical NNGP and NTK is the analytic kernel
at any width (no O(1/width) bias): a product's branches are independent given x, and
Index/DotGeneral are linear in the hidden units. Width only lowers the variance.
"""

import functools

import jax
import numpy as np
import pytest
from _mc import mc_z_scores, z_against
from _nets import wide_attention

from ntk_bayes import stax

W = 64
A = np.array([1.0, -1.0, 0.5, 0.3])

MC_NETS = {
    # Three branches: two end in Dense, one in Relu (a non-zero mean).
    "prod_three": lambda: stax.serial(
        stax.FanOut(3),
        stax.parallel(
            stax.Dense(W, W_std=1.1, b_std=0.2),
            stax.Dense(W, W_std=0.8),
            stax.serial(stax.Dense(W, W_std=1.3, b_std=0.2), stax.Relu()),
        ),
        stax.FanInProd(),
        stax.Dense(2, W_std=1.0, b_std=0.1),
    ),
    # Tokens (N, T, C): reversed, cropped positions, then a flattening readout.
    "index_tokens": lambda: stax.serial(
        stax.Dense(W, W_std=1.4, b_std=0.1),
        stax.Relu(),
        stax.Index(idx=stax.Slice[:, 3:0:-2]),
        stax.Flatten(),
        stax.Dense(2, W_std=1.2, b_std=0.1),
    ),
    # Weighted sum over positions (reads the cross-position covariances of Relu), then
    # a scalar constant.
    "dot_general_tokens": lambda: stax.serial(
        stax.Dense(W, W_std=1.4, b_std=0.1),
        stax.Relu(),
        stax.DotGeneral(rhs=A, dimension_numbers=(((1,), (0,)), ((), ()))),
        stax.DotGeneral(lhs=-1.3),
        stax.Dense(2, W_std=1.1, b_std=0.2),
    ),
}
TOKENS = ("index_tokens", "dot_general_tokens")


def _inputs(name, n, seed):
    shape = (n, 4, 3) if name in TOKENS else (n, 3)
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


@functools.cache
def _monte_carlo(name):
    net = MC_NETS[name]()
    x1, x2 = _inputs(name, 3, 1), _inputs(name, 2, 2)
    return net, x1, x2, mc_z_scores(net, x1, x2, n_samples=256, samples_per_step=64)


@pytest.mark.parametrize("name", sorted(MC_NETS))
def test_kernels_match_monte_carlo(name):
    z = _monte_carlo(name)[3][0]
    # 12 entries per network, 3 networks: per-entry two-sided N(0,1) tail at 4.5 sd is
    # 6.8e-6, so false alarm < 36 * 6.8e-6 = 2.5e-4 (256 samples: the t tail is close).
    assert max(z["nngp"].max(), z["ntk"].max()) < 4.5, z


def test_monte_carlo_rejects_the_diagonal_only_contraction():
    """The check has power: dropping the cross-position covariances from DotGeneral's
    kernel (Σ_c a_c² Σ_cc instead of Σ_cc' a_c a_c' Σ_cc') is far outside the error."""
    net, x1, x2, (_, _, mean, se) = _monte_carlo("dot_general_tokens")
    hidden = stax.serial(*net.layers[:2])
    diag = np.asarray(hidden.kernel_fn(x1, x2, "nngp", spatial_output="diagonal"))
    wrong = 1.1**2 * 1.3**2 * np.einsum("ijt,t->ij", diag, A**2) + 0.2**2
    m, s = np.asarray(mean.nngp, np.float64), np.asarray(se.nngp, np.float64)
    assert np.abs(m - wrong).max() / s.max() > 10  # the right kernel passes at 4.5 above


@pytest.mark.parametrize("pos_emb_type", ["SUM", pytest.param("CONCAT", marks=pytest.mark.slow)])
def test_attention_positional_embeddings_match_monte_carlo(pos_emb_type):
    """Wide keys: the logits concentrate at QK·(w_x Σ(x, x) + w_e I), a bias of
    O(1/(C_in n_chan_key)) far below the Monte Carlo error (as in
    test_stax_attention_mc.py). The kernel without embeddings is rejected."""

    def net(pos):
        return wide_attention(W_key_std=1.1, W_query_std=1.2, pos_emb_type=pos, W_pos_emb_std=2.5)

    x1, x2 = _inputs("index_tokens", 3, 1), _inputs("index_tokens", 2, 2)
    z, _, mean, se = mc_z_scores(net(pos_emb_type), x1, x2, n_samples=64, samples_per_step=16)
    # 12 entries: per-entry two-sided tail at 4.5 sd is 6.8e-6, false alarm < 1e-4
    # (64 samples: a t(63) tail at 4.5 is ~3e-5, so < 4e-4).
    assert max(z["nngp"].max(), z["ntk"].max()) < 4.5, z
    wrong = net("NONE").kernel_fn(x1, x2, "nngp")
    assert z_against(wrong, mean, se) > 6  # power: beyond the 4.5 the right one passes

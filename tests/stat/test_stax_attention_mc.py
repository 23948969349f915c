"""GlobalSelfAttention kernels against Monte Carlo estimates of wide finite networks."""

import jax
import numpy as np
import pytest
from _nets import tokens

import ntk_bayes as nb
from ntk_bayes import stax

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize("mechanism", ["SOFTMAX", pytest.param("RELU", marks=pytest.mark.slow)])
def test_attention_matches_monte_carlo(mechanism):
    """Wide heads, keys and values: the logits concentrate at QK·Σ(x, x), a bias of
    O(1/(C_in n_chan_key)) that is far below the Monte Carlo error here."""
    net = stax.serial(
        stax.Dense(128, W_std=1.2, b_std=0.1),
        stax.GlobalSelfAttention(
            n_chan_out=4,
            n_chan_key=128,
            n_chan_val=64,
            n_heads=8,
            W_key_std=0.9,
            W_query_std=1.1,
            W_value_std=1.2,
            W_out_std=0.8,
            b_std=0.2,
            attention_mechanism=mechanism,
        ),
        stax.GlobalAvgPool(),
    )
    x1, x2 = tokens(3), tokens(2, seed=1)
    k = net.kernel_fn(x1, x2, ("nngp", "ntk"))
    mc = nb.monte_carlo_kernel_fn(net.init_fn, net.apply_fn, KEY, 64, batch_size=16)
    mean, se = mc(x1, x2, ("nngp", "ntk"), with_stderr=True)
    for name in ("nngp", "ntk"):
        a, m, s = (np.asarray(getattr(o, name), np.float64) for o in (k, mean, se))
        z = np.abs(m - a) / np.maximum(s, 1e-6 * np.abs(a).max())
        assert z.max() < 4.5, (name, z.max(), a, m)

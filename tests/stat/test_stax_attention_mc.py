"""GlobalSelfAttention kernels against Monte Carlo estimates of wide finite networks."""

import pytest
from _mc import mc_z_scores
from _nets import tokens, wide_attention


@pytest.mark.parametrize("mechanism", ["SOFTMAX", pytest.param("RELU", marks=pytest.mark.slow)])
def test_attention_matches_monte_carlo(mechanism):
    """Wide heads, keys and values: the logits concentrate at QK·Σ(x, x), a bias of
    O(1/(C_in n_chan_key)) that is far below the Monte Carlo error here."""
    net = wide_attention(attention_mechanism=mechanism)
    z, k, mean, _ = mc_z_scores(net, tokens(3), tokens(2, seed=1))
    for name in ("nngp", "ntk"):
        # 12 entries: per-entry two-sided tail at 4.5 sd is 6.8e-6, false alarm < 1e-4
        # (64 samples: a t(63) tail at 4.5 is ~3e-5, so < 4e-4).
        assert z[name].max() < 4.5, (name, z[name].max(), getattr(k, name), getattr(mean, name))

"""GlobalSelfAttention's positional-embedding options against Monte Carlo estimates of
the finite twin (issue 15; neural-tangents' values: tests/unit/test_stax_attention_pos.py).

The twin draws its embeddings as L E (L Lᵀ = R = decay(|t − s|^p)), and with
``val_pos_emb`` the values see them too; the embedding is a parameter, so its gradient
is part of the empirical NTK (the w_e R term of the keys' or values' tangent kernel).
"""

import _attention_pos_nets as an
from _mc import mc_z_scores, z_against
from _nets import tokens, wide_attention


def test_linear_scaling_decay_and_value_embeddings_match_monte_carlo():
    """Wide keys: the logits concentrate at QK·(Σ(x, x) + σ_e² R), a bias of
    O(1/(C_in n_chan_key)) far below the Monte Carlo error (as in
    test_stax_attention_mc.py). The one-hot kernel without value embeddings is rejected."""

    def net(**kw):
        return wide_attention(
            W_key_std=1.1, W_query_std=1.2, pos_emb_type="SUM", W_pos_emb_std=2.0, **kw
        )

    x1, x2 = tokens(3, 5), tokens(2, 5, seed=1)
    right = net(pos_emb_decay_fn=an.exp_decay, pos_emb_p_norm=1.5, val_pos_emb=True)
    z, _, mean, se = mc_z_scores(right, x1, x2, n_samples=64, samples_per_step=16)
    # 12 entries: per-entry two-sided tail at 4.5 sd is 6.8e-6, false alarm < 1e-4
    # (64 samples: a t(63) tail at 4.5 is ~3e-5, so < 4e-4).
    assert max(z["nngp"].max(), z["ntk"].max()) < 4.5, z
    for wrong_net in (net(), net(pos_emb_decay_fn=an.exp_decay, pos_emb_p_norm=1.5)):
        wrong = wrong_net.kernel_fn(x1, x2, "ntk")
        assert z_against(wrong, mean, se, "ntk") > 6  # power: beyond the 4.5 the right one passes


def test_sqrt_scaling_identity_with_embeddings_matches_monte_carlo():
    """linear_scaling=False, IDENTITY, CONCAT with a decay and value embeddings, on raw
    tokens: the NNGP's finite-width bias comes only from E Eᵀ / C_e ≠ R, O(1/C_e) with
    C_e = 96, and the NTK's is O(1/n_chan), both far below the Monte Carlo error."""
    net = wide_attention(
        dense=False,
        linear_scaling=False,
        attention_mechanism="IDENTITY",
        pos_emb_type="CONCAT",
        n_chan_pos_emb=96,
        W_pos_emb_std=1.5,
        pos_emb_decay_fn=an.power_decay,
        val_pos_emb=True,
    )
    z, k, mean, _ = mc_z_scores(net, tokens(3), tokens(2, seed=1))
    for name in ("nngp", "ntk"):
        # 12 z-scores of 64-sample means; were they t(63), P(max > 4.5) < 12 * 3e-5 < 1e-3
        # (products of Gaussians have heavier tails, as in test_stax_attention_sqrt_mc.py).
        assert z[name].max() < 4.5, (name, z[name].max(), getattr(k, name), getattr(mean, name))

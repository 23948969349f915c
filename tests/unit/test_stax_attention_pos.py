"""GlobalSelfAttention's positional-embedding options (``pos_emb_decay_fn``,
``pos_emb_p_norm``, ``val_pos_emb``, ``n_chan_pos_emb``) and ``linear_scaling=False``
with embeddings (issue 15): neural-tangents 0.6.5 values from
``tools/make_nt_reference_layers.py`` (``tests/data/nt_attention_pos.npz``), the
finite twin, errors. Monte Carlo: ``tests/stat/test_stax_attention_pos_mc.py``.
"""

import _attention_pos_nets as an
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _nets import tokens
from conftest import DATA

from ntk_bayes import stax

KEY = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(DATA / "nt_attention_pos.npz"))


def _rel(a, r):
    return np.linalg.norm(np.asarray(a, np.float64) - r) / np.linalg.norm(r)


@pytest.mark.parametrize("name", an.NAMES)
def test_matches_neural_tangents_float64(name, ref):
    """x1 and x2 in one call: x1 with itself (exact self-pairs) and x1 against x2."""
    with jax.enable_x64(True):
        net = an.build(stax, name)
        x1, x2 = ref[f"{name}/x1"], ref[f"{name}/x2"]
        k = net.kernel_fn(np.concatenate([x1, x2]), None, ("nngp", "ntk"))
        n = len(x1)
        for g in ("nngp", "ntk"):
            a = np.asarray(getattr(k, g))
            assert a.dtype == np.float64
            assert _rel(a[:n, :n], ref[f"{name}/{g}"]) < 1e-10, g
            assert _rel(a[:n, n:], ref[f"{name}/{g}12"]) < 1e-10, g


def test_matches_neural_tangents_float32(ref):
    name = "sum_val_decay_relu"
    net = an.build(stax, name)
    x1, x2 = (ref[f"{name}/{x}"].astype(np.float32) for x in ("x1", "x2"))
    k = net.kernel_fn(x1, x2, ("nngp", "ntk"))
    for g in ("nngp", "ntk"):
        assert np.asarray(getattr(k, g)).dtype == np.float32
        assert _rel(getattr(k, g), ref[f"{name}/{g}12"]) < 1e-5, g


def test_identity_decay_equals_one_hot_embeddings():
    """A decay that is 1 at distance 0 and 0 elsewhere is the one-hot default."""
    x = tokens(3, 4, 3)
    for kw in (dict(pos_emb_type="SUM"), dict(pos_emb_type="CONCAT", val_pos_emb=True)):
        att = dict(n_chan_out=4, n_chan_key=4, n_chan_val=4, n_heads=1, W_pos_emb_std=1.5, **kw)
        one_hot = stax.GlobalSelfAttention(**att)
        decayed = stax.GlobalSelfAttention(**att, pos_emb_decay_fn=lambda d: (d == 0) * 1.0)
        a, b = (stax.serial(layer, stax.GlobalAvgPool()) for layer in (one_hot, decayed))
        np.testing.assert_allclose(
            a.kernel_fn(x, None, "ntk"), b.kernel_fn(x, None, "ntk"), rtol=1e-6
        )


def test_finite_twin_embeddings_follow_the_decay():
    """The twin's embeddings are L E with L Lᵀ = R, R[t, s] = decay(|t - s|^p) (also
    under jit); val_pos_emb adds the embedding channels to the values' inputs."""
    layer = an.attention(stax, "sum_decay_p1", width=4)
    x = tokens(2, 5, 3)
    out_shape, params = layer.init_fn(KEY, x.shape)
    assert out_shape == (2, 5, 4) and params[5].shape == (1, 5, 3)
    r = np.asarray(layer._pos_cov((5,), jnp.float32))
    np.testing.assert_allclose(r[0], np.exp(-np.arange(5) / 2), rtol=1e-6)
    chol = layer._pos_chol((5,))
    np.testing.assert_allclose(chol @ chol.T, r, rtol=1e-5, atol=1e-6)
    y = jax.jit(layer.apply_fn)(params, x)  # R and L are constants under jit
    assert y.shape == out_shape and bool(jnp.all(jnp.isfinite(y)))
    val = an.attention(stax, "concat_val", width=4)
    _, p2 = val.init_fn(KEY, (2, 4, 3))
    assert p2[1].shape[1] == 3 + 3 and p2[2].shape[1] == 3 + 3  # keys and values see 6


def test_sqrt_scaling_with_embeddings_has_query_weights_over_all_channels():
    layer = an.attention(stax, "sqrt_identity_concat_val", width=4)
    _, params = layer.init_fn(KEY, (2, 4, 2))
    assert params[0].shape == (2, 2 + 5, 4)
    y = layer.apply_fn(params, tokens(2, 4, 2))
    assert y.shape == (2, 4, 4)


def test_grad_through_the_embedding_scale():
    net = stax.serial(stax.Dense(4), an.attention(stax, "sqrt_identity_decay_p15"))
    x = tokens(2, 3, 2)

    def loss(s):
        layer = eqx.tree_at(lambda n: n.layers[1].W_pos_emb_std, net, s)
        return jnp.sum(layer.kernel_fn(x, None, "ntk", spatial_output="full"))

    g = jax.grad(loss)(1.0)
    assert np.isfinite(g) and abs(g) > 0


def test_errors():
    def att(**kw):
        return stax.GlobalSelfAttention(4, 4, 4, 1, pos_emb_type="SUM", **kw)

    with pytest.raises(TypeError, match="pos_emb_decay_fn"):
        att(pos_emb_decay_fn=0.5)
    with pytest.raises(ValueError, match="pos_emb_p_norm"):
        att(pos_emb_decay_fn=an.exp_decay, pos_emb_p_norm=0)
    with pytest.raises(TypeError, match="pos_emb_p_norm"):
        att(pos_emb_decay_fn=an.exp_decay, pos_emb_p_norm="2")
    bad = att(pos_emb_decay_fn=lambda d: jnp.cos(d))  # not positive definite
    with pytest.raises(ValueError, match="positive-definite"):
        bad.init_fn(KEY, (2, 5, 4))
    with pytest.raises(ValueError, match="same shape"):
        stax.serial(att(pos_emb_decay_fn=lambda d: d[0]), stax.GlobalAvgPool()).kernel_fn(
            tokens(2, 3, 4), None, "nngp"
        )
    soft = stax.serial(att(linear_scaling=False), stax.GlobalAvgPool())
    with pytest.raises(NotImplementedError, match="linear_scaling=True"):
        soft.kernel_fn(tokens(2, 3, 4), None, "nngp")

"""GlobalSelfAttention: reference values, Monte Carlo agreement, finite twin and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import build_from_spec

import ntk_bayes as nb
from ntk_bayes import stax

KEY = jax.random.PRNGKey(0)


def _tokens(n, t=4, c=3, seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (n, t, c))


def test_attention_matches_neural_tangents(nt_reference, nt_spec, tol, dtype):
    case = "attention"
    net = build_from_spec(stax, nt_spec[case]["net"])
    x1 = nt_reference[f"{case}/x1"].astype(dtype)
    x2 = nt_reference[f"{case}/x2"].astype(dtype)
    k = net.kernel_fn(x1, x2, ("nngp", "ntk"))
    for name in ("nngp", "ntk"):
        ref = nt_reference[f"{case}/{name}"]
        got = np.asarray(getattr(k, name))
        assert got.dtype == dtype
        rel = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
        assert rel <= (1e-9 if dtype == np.float64 else tol["rtol"]), (name, rel)


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
    x1, x2 = _tokens(3), _tokens(2, seed=1)
    k = net.kernel_fn(x1, x2, ("nngp", "ntk"))
    mc = nb.monte_carlo_kernel_fn(net.init_fn, net.apply_fn, KEY, 64, batch_size=16)
    mean, se = mc(x1, x2, ("nngp", "ntk"), with_stderr=True)
    for name in ("nngp", "ntk"):
        a, m, s = (np.asarray(getattr(o, name), np.float64) for o in (k, mean, se))
        z = np.abs(m - a) / np.maximum(s, 1e-6 * np.abs(a).max())
        assert z.max() < 4.5, (name, z.max(), a, m)


def test_attention_weights_do_depend_on_the_input(tol):
    """A softmax of the covariance differs from uniform averaging (IDENTITY of ones)."""
    x1 = _tokens(3)
    base = dict(n_chan_out=8, n_chan_key=8, n_chan_val=8, n_heads=2)
    soft = stax.serial(stax.Dense(8), stax.GlobalSelfAttention(**base), stax.GlobalAvgPool())
    k = np.asarray(soft.kernel_fn(x1, None, "nngp"))
    # With QK = 0 the weights are uniform, so attention reduces to mean pooling.
    flat = stax.serial(
        stax.Dense(8), stax.GlobalSelfAttention(**base, W_key_std=0.0), stax.GlobalAvgPool()
    )
    pooled = stax.serial(stax.Dense(8), stax.GlobalAvgPool())
    np.testing.assert_allclose(
        flat.kernel_fn(x1, None, "nngp"), pooled.kernel_fn(x1, None, "nngp"), **tol
    )
    assert np.max(np.abs(k - np.asarray(pooled.kernel_fn(x1, None, "nngp")))) > 1e-3


def test_finite_twin_shapes_and_jit_grad(dtype):
    layer = stax.GlobalSelfAttention(5, 6, 7, 3, b_std=0.1)
    x = _tokens(2, 4, 3).astype(dtype)
    out_shape, params = layer.init_fn(KEY, x.shape)
    assert out_shape == (2, 4, 5) and layer.apply_fn(params, x).shape == out_shape
    unscaled = stax.GlobalSelfAttention(5, 6, 7, 3, linear_scaling=False)
    _, p2 = unscaled.init_fn(KEY, x.shape)
    assert unscaled.apply_fn(p2, x).shape == out_shape

    def loss(w):
        net = stax.serial(
            stax.Dense(4), stax.GlobalSelfAttention(4, 4, 4, 2, W_key_std=w), stax.GlobalAvgPool()
        )
        return jnp.sum(net.kernel_fn(x, None, "ntk"))

    g = jax.jit(jax.grad(loss))(jnp.asarray(1.0, dtype))
    assert np.isfinite(g) and abs(float(g)) > 0


@pytest.mark.parametrize(
    "shape, match",
    [((2, 3, 3, 4), r"token sequences \(N, T, C\).*H \* W"), ((2, 4), r"token axis")],
)
def test_attention_on_the_wrong_layout_is_explained(shape, match):
    net = stax.serial(stax.GlobalSelfAttention(4, 4, 4, 1), stax.Flatten())
    with pytest.raises(ValueError, match=match):
        net.kernel_fn(np.ones(shape), None, "nngp")


def test_attention_errors():
    with pytest.raises(ValueError, match="n_heads"):
        stax.GlobalSelfAttention(4, 4, 4, 0)
    with pytest.raises(ValueError, match="attention_mechanism"):
        stax.GlobalSelfAttention(4, 4, 4, 1, attention_mechanism="TANH")
    with pytest.raises(NotImplementedError, match="positional"):
        stax.GlobalSelfAttention(4, 4, 4, 1, pos_emb_type="SUM")
    net = stax.serial(
        stax.GlobalSelfAttention(4, 4, 4, 1, linear_scaling=False), stax.GlobalAvgPool()
    )
    with pytest.raises(NotImplementedError, match="linear_scaling=True"):
        net.kernel_fn(_tokens(2), None, "nngp")
    with pytest.raises(ValueError, match="readout"):
        stax.GlobalSelfAttention(4, 4, 4, 1).kernel_fn(_tokens(2), None, "nngp")

"""GlobalSelfAttention: reference values, Monte Carlo agreement, finite twin and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _nets import tokens
from conftest import assert_matches_reference

from ntk_bayes import stax

KEY = jax.random.PRNGKey(0)


def test_attention_matches_neural_tangents(nt_reference, nt_spec, tol, dtype):
    assert_matches_reference(stax, "attention", nt_reference, nt_spec, dtype, tol)


def test_attention_weights_do_depend_on_the_input(tol):
    """A softmax of the covariance differs from uniform averaging (IDENTITY of ones)."""
    x1 = tokens(3)
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
    x = tokens(2, 4, 3).astype(dtype)
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


def test_attention_on_the_wrong_layout_is_explained():
    net = stax.serial(stax.GlobalSelfAttention(4, 4, 4, 1), stax.Flatten())
    with pytest.raises(ValueError, match="token axis"):
        net.kernel_fn(np.ones((2, 4)), None, "nngp")


def test_attention_errors():
    with pytest.raises(ValueError, match="n_heads"):
        stax.GlobalSelfAttention(4, 4, 4, 0)
    with pytest.raises(ValueError, match="attention_mechanism"):
        stax.GlobalSelfAttention(4, 4, 4, 1, attention_mechanism="TANH")
    net = stax.serial(
        stax.GlobalSelfAttention(4, 4, 4, 1, linear_scaling=False), stax.GlobalAvgPool()
    )
    with pytest.raises(NotImplementedError, match="linear_scaling=True"):
        net.kernel_fn(tokens(2), None, "nngp")
    with pytest.raises(ValueError, match="readout"):
        stax.GlobalSelfAttention(4, 4, 4, 1).kernel_fn(tokens(2), None, "nngp")

"""Dropout: kernels against Monte Carlo networks that draw masks, tiling, modes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _nets import dropout_fc, dropout_inputs

import ntk_bayes as nb
from ntk_bayes import stax

KEY = jax.random.PRNGKey(3)


def test_test_mode_and_rate_one_are_the_identity(tol):
    x = dropout_inputs(4)
    plain = stax.serial(*dropout_fc(0.5).layers[:2], dropout_fc(0.5).layers[3])
    for net in (dropout_fc(0.5, "test"), dropout_fc(1.0)):
        a, b = net.kernel_fn(x, None, ("nngp", "ntk")), plain.kernel_fn(x, None, ("nngp", "ntk"))
        np.testing.assert_allclose(a.nngp, b.nngp, **tol)
        np.testing.assert_allclose(a.ntk, b.ntk, **tol)
    _, params = dropout_fc(0.5, "test").init_fn(KEY, x.shape)
    np.testing.assert_allclose(
        dropout_fc(0.5, "test").apply_fn(params, x),
        plain.apply_fn(params[:2] + params[3:], x),
        **tol,
    )


def test_finite_dropout_keeps_rate_and_rescales():
    x = jnp.ones((200, 50))
    y = stax.Dropout(0.3).apply((), x, rng=KEY)
    kept = np.asarray(y) != 0
    assert abs(kept.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / kept.size)  # 4 sd: < 1e-4
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.3, rtol=1e-6)
    # serial gives each Dropout its own key: two layers draw different masks.
    net = stax.serial(stax.Dropout(0.5), stax.Dropout(0.5))
    _, params = net.init_fn(KEY, x.shape)
    z = np.asarray(net.apply_fn(params, x, rng=KEY))
    # 10,000 entries kept with probability 0.25 (sd 0.0043): 0.05 is 11 sd, false alarm < 1e-20
    assert 0.2 < (z != 0).mean() < 0.3


def test_rate_is_a_differentiable_hyperparameter():
    x = dropout_inputs(4)

    def total(rate):
        return dropout_fc(rate, width=4).kernel_fn(x, None, "ntk").sum()

    g = jax.grad(total)(0.5)
    eps = 1e-3
    fd = (total(0.5 + eps) - total(0.5 - eps)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-2)
    rates = jnp.asarray([0.3, 0.6, 0.9])
    diag = jax.vmap(lambda r: jnp.diag(dropout_fc(r, width=4).kernel_fn(x, None, "nngp")))(rates)
    assert np.all(np.diff(np.asarray(diag), axis=0) < 0)  # more kept units, less gain


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: stax.Dropout(0.0), "rate"),
        (lambda: stax.Dropout(1.5), "keep probability"),
        (lambda: stax.Dropout(-0.1), "rate"),
        (lambda: stax.Dropout(0.5, mode="eval"), "mode"),
    ],
)
def test_bad_arguments_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_misplaced_dropout_and_missing_key_are_explained():
    x = dropout_inputs(3)
    with pytest.raises(ValueError, match="first layer"):
        stax.serial(stax.Dropout(0.5), stax.Dense(1)).kernel_fn(x, None, "nngp")
    after = stax.serial(stax.Dense(8), stax.Dropout(0.5), stax.Relu(), stax.Dense(1))
    with pytest.raises(ValueError, match="Gaussian"):
        after.kernel_fn(x, None, "nngp")
    net = dropout_fc(0.5)
    _, params = net.init_fn(KEY, x.shape)
    with pytest.raises(ValueError, match="rng=key"):
        net.apply_fn(params, x)


def test_empirical_ntk_blocks_draw_their_own_masks():
    """Jacobian blocks fold their start into the key: without that, point 0 of every
    block would reuse one mask, and equal inputs in different blocks would coincide."""
    net = dropout_fc(0.5, width=16)
    x = jnp.broadcast_to(dropout_inputs(1), (4, 3))
    _, params = net.init_fn(KEY, x.shape)
    ntk = np.asarray(nb.empirical_ntk_fn(net.apply_fn, batch_size=2)(x, None, params, rng=KEY))
    assert not np.isclose(ntk[0, 0], ntk[2, 2]) and not np.isclose(ntk[0, 2], ntk[0, 0])
    np.testing.assert_allclose(ntk, ntk.T, rtol=1e-5)


def test_x2_equal_to_x1_in_value_shares_the_masks():
    """As in neural-tangents (and the analytic kernel), x2 equal to x1 in value is x1:
    the empirical kernels give a point and its copy one mask, so they equal the x2=None
    kernels exactly, also under jit (the equality is then decided in the program); x2
    with one entry changed draws independent masks, and its kernel differs."""
    net = dropout_fc(0.5, width=16)
    x = np.asarray(dropout_inputs(4))
    _, params = net.init_fn(KEY, x.shape)
    for fn in (nb.empirical_nngp_fn(net.apply_fn), nb.empirical_ntk_fn(net.apply_fn)):
        alone = np.asarray(fn(x, None, params, rng=KEY))
        np.testing.assert_array_equal(np.asarray(fn(x, x.copy(), params, rng=KEY)), alone)
        jitted = jax.jit(lambda a, b, p, fn=fn: fn(a, b, p, rng=KEY))
        np.testing.assert_allclose(np.asarray(jitted(x, x.copy(), params)), alone, rtol=1e-6)
        other = x.copy()
        other[3, 0] += 1.0
        moved = np.asarray(jitted(x, other, params))
        # the three unchanged points lose the self-pair's shared mask
        assert not np.allclose(np.diag(moved)[:3], np.diag(alone)[:3], rtol=1e-3)


@pytest.mark.parametrize("batch_size", [0, 2])
def test_monte_carlo_x2_equal_to_x1_is_x2_omitted(batch_size):
    """monte_carlo_kernel_fn reads x2 equal to x1 in value as x2 omitted (whole or in
    blocks: the same estimate). Under jit the equality is decided in the program: the
    blocks of the same rows share the masks there, so they and the blocks above them
    are the same estimate; the blocks below are computed, not mirrored (other masks,
    the same expectation)."""
    net = dropout_fc(0.5, width=16)
    x = np.asarray(dropout_inputs(4))
    mc = nb.monte_carlo_kernel_fn(net.init_fn, net.apply_fn, KEY, 4, batch_size=batch_size)
    alone = np.asarray(mc(x, None, "ntk"))
    np.testing.assert_array_equal(np.asarray(mc(x, x.copy(), "ntk")), alone)
    traced = np.asarray(jax.jit(lambda a, b: mc(a, b, "ntk"))(x, x.copy()))
    block = np.arange(4) // (batch_size or 4)
    upper = block[:, None] <= block[None, :]
    np.testing.assert_allclose(traced[upper], alone[upper], rtol=1e-5, atol=1e-6)

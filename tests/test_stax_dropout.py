"""Dropout: kernels against Monte Carlo networks that draw masks, tiling, modes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _mc import mc_z_scores

import ntk_bayes as nb
from ntk_bayes import stax

KEY = jax.random.PRNGKey(3)


def _x(n, shape=(3,), seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (n, *shape))


def _fc(rate, mode="train", width=256):
    return stax.serial(
        stax.Dense(width, W_std=1.3, b_std=0.3),
        stax.Relu(),
        stax.Dropout(rate, mode),
        stax.Dense(8, W_std=1.1, b_std=0.2),
    )


def _z_scores(net, x1, x2):
    """|MC - analytic| / MC standard error for nngp and ntk. With Dropout between the
    last hidden layer and the readout, the readout is Gaussian given the hidden units
    and masks, so the Monte Carlo mean is unbiased at any width."""
    z, k, _, _ = mc_z_scores(net, x1, x2, n_samples=256, batch_size=32, key=KEY)
    return k, z


@pytest.mark.parametrize("same", [True, False])
def test_train_mode_matches_monte_carlo_masks(same):
    x1 = _x(4)
    x2 = None if same else _x(3, seed=1)
    k, z = _z_scores(_fc(0.6), x1, x2)
    assert max(z["nngp"].max(), z["ntk"].max()) < 4.5, z
    # The two-sided part: a point with itself gains 1/rate over the no-dropout kernel
    # (its mask is shared); different points do not. The MC test above sees the gain.
    ref = _fc(1.0).kernel_fn(x1, x2, ("nngp", "ntk"))
    ratio = np.asarray(k.nngp - 0.2**2) / np.asarray(ref.nngp - 0.2**2)
    expect = np.where(np.eye(*ratio.shape, dtype=bool) & same, 1 / 0.6, 1.0)
    np.testing.assert_allclose(ratio, expect, rtol=1e-4)


def test_dropout_before_a_hidden_layer_matches_monte_carlo():
    """Dropout's 1/rate variance gain flows through a later nonlinearity: a second
    hidden layer sees larger self-variances and so less correlated points."""
    net = stax.serial(
        stax.Dense(256, W_std=1.4, b_std=0.2),
        stax.Relu(),
        stax.Dropout(0.5),
        stax.Dense(256, W_std=1.4, b_std=0.2),
        stax.Erf(),
        stax.Dense(4),
    )
    x = _x(3, seed=2)
    k = net.kernel_fn(x, None, ("nngp", "ntk"))
    mc = nb.monte_carlo_kernel_fn(net.init_fn, net.apply_fn, KEY, 256, batch_size=32)
    mean, se = mc(x, None, ("nngp", "ntk"), with_stderr=True)
    for name in ("nngp", "ntk"):
        a, m, s = (np.asarray(getattr(o, name), np.float64) for o in (k, mean, se))
        # The second hidden layer is Gaussian only as width -> inf: allow its O(1/width)
        # bias on top of the statistical error.
        assert np.all(np.abs(m - a) < 4.5 * s + 0.02 * np.abs(a)), (name, a, m, s)
    # The same check rejects the kernel that ignores Dropout.
    w = np.asarray(stax.serial(*net.layers[:2], *net.layers[3:]).kernel_fn(x, None, "nngp"))
    m, s = np.asarray(mean.nngp, np.float64), np.asarray(se.nngp, np.float64)
    assert not np.all(np.abs(m - w) < 4.5 * s + 0.02 * np.abs(w))


def test_conv_dropout_scales_same_positions_only():
    """Spatial inputs: masks are per unit and position, so only same-position entries
    of a point with itself gain 1/rate (checked by Monte Carlo through a GAP readout)."""
    net = stax.serial(
        stax.Conv(128, (3,), padding="SAME", W_std=1.3, b_std=0.1),
        stax.Relu(),
        stax.Dropout(0.7),
        stax.GlobalAvgPool(),
        stax.Dense(4, W_std=1.2),
    )
    x = _x(3, (5, 2), seed=4)
    _, z = _z_scores(net, x, None)
    assert max(z["nngp"].max(), z["ntk"].max()) < 4.5, z
    full = stax.serial(*net.layers[:3]).kernel_fn(x, None, "nngp", spatial_output="full")
    ref = stax.serial(*net.layers[:2]).kernel_fn(x, None, "nngp", spatial_output="full")
    ratio = np.asarray(full) / np.asarray(ref)  # (n, n, 5, 5')
    same_point, same_pos = np.eye(3, dtype=bool), np.eye(5, dtype=bool)
    expect = np.where(same_point[:, :, None, None] & same_pos, 1 / 0.7, 1.0)
    np.testing.assert_allclose(ratio, expect, rtol=1e-5)


def test_tiles_find_the_pairs_that_are_one_point(tol):
    """Off-diagonal and overlapping tiles locate the same-point pairs by their offset;
    x2 equal in value to x1 counts as the same points, as in neural-tangents."""
    net = _fc(0.4)
    x = _x(11, seed=5)
    one = net.kernel_fn(x, None, ("nngp", "ntk"))
    for x2, bs in ((None, 3), (None, 4), (x + 0.0, 3), (jnp.array(x), 5)):
        tiled = net.kernel_fn(x, x2, ("nngp", "ntk"), block_size=bs)
        np.testing.assert_allclose(tiled.nngp, one.nngp, **tol)
        np.testing.assert_allclose(tiled.ntk, one.ntk, **tol)
    whole = net.kernel_fn(x, x + 0.0)  # get=None: the whole Kernel state
    np.testing.assert_allclose(whole.nngp, one.nngp, **tol)
    other = net.kernel_fn(x, x.at[0, 0].add(1.0), "nngp")
    assert not np.allclose(np.diag(other)[1:], np.diag(one.nngp)[1:])
    # Per-point variances always include the gain.
    np.testing.assert_allclose(net.kernel_fn(x, None, "cov1"), np.diag(one.nngp), **tol)


def test_test_mode_and_rate_one_are_the_identity(tol):
    x = _x(4)
    plain = stax.serial(*_fc(0.5).layers[:2], _fc(0.5).layers[3])
    for net in (_fc(0.5, "test"), _fc(1.0)):
        a, b = net.kernel_fn(x, None, ("nngp", "ntk")), plain.kernel_fn(x, None, ("nngp", "ntk"))
        np.testing.assert_allclose(a.nngp, b.nngp, **tol)
        np.testing.assert_allclose(a.ntk, b.ntk, **tol)
    _, params = _fc(0.5, "test").init_fn(KEY, x.shape)
    np.testing.assert_allclose(
        _fc(0.5, "test").apply_fn(params, x), plain.apply_fn(params[:2] + params[3:], x), **tol
    )


def test_finite_dropout_keeps_rate_and_rescales():
    x = jnp.ones((200, 50))
    y = stax.Dropout(0.3).apply((), x, rng=KEY)
    kept = np.asarray(y) != 0
    assert abs(kept.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / kept.size)
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.3, rtol=1e-6)
    # serial gives each Dropout its own key: two layers draw different masks.
    net = stax.serial(stax.Dropout(0.5), stax.Dropout(0.5))
    _, params = net.init_fn(KEY, x.shape)
    z = np.asarray(net.apply_fn(params, x, rng=KEY))
    assert 0.2 < (z != 0).mean() < 0.3


def test_rate_is_a_differentiable_hyperparameter():
    x = _x(4)

    def total(rate):
        return _fc(rate, width=4).kernel_fn(x, None, "ntk").sum()

    g = jax.grad(total)(0.5)
    eps = 1e-3
    fd = (total(0.5 + eps) - total(0.5 - eps)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-2)
    rates = jnp.asarray([0.3, 0.6, 0.9])
    diag = jax.vmap(lambda r: jnp.diag(_fc(r, width=4).kernel_fn(x, None, "nngp")))(rates)
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
    x = _x(3)
    with pytest.raises(ValueError, match="first layer"):
        stax.serial(stax.Dropout(0.5), stax.Dense(1)).kernel_fn(x, None, "nngp")
    after = stax.serial(stax.Dense(8), stax.Dropout(0.5), stax.Relu(), stax.Dense(1))
    with pytest.raises(ValueError, match="Gaussian"):
        after.kernel_fn(x, None, "nngp")
    net = _fc(0.5)
    _, params = net.init_fn(KEY, x.shape)
    with pytest.raises(ValueError, match="rng=key"):
        net.apply_fn(params, x)


def test_empirical_ntk_blocks_draw_their_own_masks():
    """Jacobian blocks fold their start into the key: without that, point 0 of every
    block would reuse one mask, and equal inputs in different blocks would coincide."""
    net = _fc(0.5, width=16)
    x = jnp.broadcast_to(_x(1), (4, 3))
    _, params = net.init_fn(KEY, x.shape)
    ntk = np.asarray(nb.empirical_ntk_fn(net.apply_fn, batch_size=2)(x, None, params, rng=KEY))
    assert not np.isclose(ntk[0, 0], ntk[2, 2]) and not np.isclose(ntk[0, 2], ntk[0, 0])
    np.testing.assert_allclose(ntk, ntk.T, rtol=1e-5)

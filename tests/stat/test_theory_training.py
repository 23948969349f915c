"""Linearisation, effective NTKs, the lazy/rich scalings and side-by-side training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_bayes as nb
from ntk_bayes import stax
from ntk_bayes.predict import max_learning_rate
from ntk_bayes.theory import (
    effective_ntk_fn,
    linearize,
    plot_training,
    relative_change,
    scaled_mlp,
    train,
)


@pytest.fixture(scope="module")
def data():
    x = jax.random.normal(jax.random.key(1), (12, 3))
    y = jnp.sin(2 * x[:, :1])
    xt = jax.random.normal(jax.random.key(2), (5, 3))
    return x, y, xt


def _tree_close(a, b, tol):
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(u, v, **tol)


def test_linearize_is_first_order_taylor(data, tol):
    x, _, _ = data
    net = scaled_mlp(64, 2, stax.Erf(), W_std=1.3, b_std=0.2).net
    _, p0 = net.init_fn(jax.random.key(0), x.shape)
    f_lin = jax.jit(linearize(net.apply_fn, p0))
    apply = jax.jit(net.apply_fn)
    np.testing.assert_allclose(f_lin(p0, x), apply(p0, x), **tol)
    d = jax.tree_util.tree_map(lambda a: jax.random.normal(jax.random.key(3), a.shape), p0)

    def gap(eps):
        p = jax.tree_util.tree_map(lambda a, b: a + eps * b, p0, d)
        return float(jnp.max(jnp.abs(apply(p, x) - f_lin(p, x))))

    # The remainder is second order: halving eps quarters it.
    ratio = gap(0.02) / gap(0.04)
    assert 0.2 < ratio < 0.3
    # Linear in its parameters: f_lin(p0 + 2d) - f_lin(p0) = 2 (f_lin(p0 + d) - f_lin(p0)).
    step = lambda s: jax.tree_util.tree_map(lambda a, b: a + s * b, p0, d)
    one, two = f_lin(step(1.0), x) - f_lin(p0, x), f_lin(step(2.0), x) - f_lin(p0, x)
    np.testing.assert_allclose(two, 2 * one, rtol=tol["rtol"] * 10, atol=tol["rtol"] * 10)
    g = jax.jit(jax.grad(lambda p: jnp.sum(f_lin(p, x) ** 2)))(step(0.1))
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(g))


def test_linearize_rejects_bad_input():
    with pytest.raises(TypeError, match="apply_fn"):
        linearize("not callable", {})
    with pytest.raises(ValueError, match="no array leaves"):
        linearize(lambda p, x: x, {})


def test_effective_ntk_weights_jacobian_blocks(data, tol):
    """Θ_s = Σ_p s_p J_p J_pᵀ, checked against the plain NTK of each block."""
    x, _, _ = data
    net = stax.serial(stax.Dense(32, b_std=0.5), stax.Relu(), stax.Dense(1, b_std=0.5))
    _, params = net.init_fn(jax.random.key(0), x.shape)
    scales = ((3.0, 0.5), (), (2.0, 1.0))
    got = effective_ntk_fn(net.apply_fn, scales)(x, None, params)
    want = 0.0
    for i, j, s in [(0, 0, 3.0), (0, 1, 0.5), (2, 0, 2.0), (2, 1, 1.0)]:
        # Freeze every leaf but one; its NTK is that block's J Jᵀ.
        def f_block(leaf, xx, i=i, j=j):
            p = [list(q) for q in params]
            p[i][j] = leaf
            return net.apply_fn(tuple(tuple(q) for q in p), xx)

        block_ntk = jax.jit(lambda leaf, f=f_block: nb.empirical_ntk_fn(f)(x, None, leaf))
        want = want + s * block_ntk(params[i][j])
    np.testing.assert_allclose(got, want, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
    plain = effective_ntk_fn(net.apply_fn)(x, None, params)
    np.testing.assert_allclose(plain, nb.empirical_ntk_fn(net.apply_fn)(x, None, params), **tol)


def test_scaled_mlp_scalings(data, tol):
    x, _, _ = data
    lazy = scaled_mlp(128, 2, stax.Erf(), W_std=1.2, b_std=0.3)
    rich = scaled_mlp(128, 2, stax.Erf(), W_std=1.2, b_std=0.3, parameterization="mean_field")
    assert rich.parameterization == "mup" and lazy.parameterization == "ntk"
    _, params = lazy.init_fn(jax.random.key(0), x.shape)
    # The same weights: rich readout is lazy readout / sqrt(n) up to the bias.
    ref = stax.serial(
        stax.Dense(128, W_std=1.2, b_std=0.3),
        stax.Erf(),
        stax.Dense(128, W_std=1.2, b_std=0.3),
        stax.Erf(),
        stax.Dense(1, W_std=1.2, b_std=0.3),
    )
    np.testing.assert_allclose(lazy.apply_fn(params, x), ref.apply_fn(params, x), **tol)
    b = params[-1][1] * 0.3
    np.testing.assert_allclose(
        rich.apply_fn(params, x) - b, (lazy.apply_fn(params, x) - b) / np.sqrt(128), **tol
    )
    # Effective NTK of the rich scaling at init equals the lazy NTK, weight for weight.
    k_lazy = effective_ntk_fn(lazy.apply_fn, lazy.lr_scales(params))(x, None, params)
    k_rich = effective_ntk_fn(rich.apply_fn, rich.lr_scales(params))(x, None, params)
    np.testing.assert_allclose(k_rich, k_lazy, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
    assert rich.lr_scales(params)[-1] == (128.0, 1.0)
    assert lazy.lr_scales(params)[0] == (1.0, 1.0)
    init_fn, apply_fn = rich
    assert apply_fn is not None and init_fn is not None


def test_scaled_mlp_rejects_bad_arguments():
    with pytest.raises(ValueError, match="width"):
        scaled_mlp(0)
    with pytest.raises(ValueError, match="parameterization"):
        scaled_mlp(8, parameterization="standard")
    with pytest.raises(TypeError, match="nonlinearity"):
        scaled_mlp(8, nonlinearity=jnp.tanh)


def test_linearised_gd_matches_discrete_closed_form(data, tol):
    """GD on the linear model follows f_k - y = (I - η Θ / N)^k (f_0 - y) exactly."""
    x, y, xt = data
    net = scaled_mlp(256, 1, stax.Relu(), W_std=1.4, b_std=0.1).net
    _, params = net.init_fn(jax.random.key(0), x.shape)
    theta = np.asarray(nb.empirical_ntk_fn(net.apply_fn)(x, None, params), np.float64)
    lr = 0.5 * max_learning_rate(theta, y.size)
    h = train(net.apply_fn, params, x, y, learning_rate=lr, steps=40, record_steps=[0, 10, 40])
    f0 = np.asarray(net.apply_fn(params, x), np.float64)
    step = np.eye(len(x)) - lr * theta / y.size
    for k, f in zip(h.steps, h.f_lin_train, strict=True):
        want = y + np.linalg.matrix_power(step, int(k)) @ (f0 - y)
        np.testing.assert_allclose(f, want, rtol=50 * tol["rtol"], atol=50 * tol["rtol"])
    assert h.loss_lin[-1] < 0.2 * h.loss_lin[0]
    np.testing.assert_allclose(h.loss[0], h.loss_lin[0], **tol)
    assert h.f_test is None and h.f_lin_test is None
    fig = plot_training(h)
    assert fig.axes


def test_network_approaches_linearisation_with_width(data):
    x, y, xt = data
    gaps = []
    for w in (64, 1024):
        m = scaled_mlp(w, 1, stax.Erf(), W_std=1.5, b_std=0.1)
        _, params = m.init_fn(jax.random.key(7), x.shape)
        h = train(m.apply_fn, params, x, y, learning_rate=1.0, steps=100, x_test=xt)
        assert h.loss[-1] < 0.5 * h.loss[0]
        gaps.append(max(h.trajectory_gap("train").max(), h.trajectory_gap("test").max()))
        assert h.kernel_change.shape == (2,) and h.kernel_change[0] == 0
    # Lee et al. 2019: the gap is O(n^{-1/2}); a 16x wider net should be ~4x closer.
    assert gaps[1] < 0.5 * gaps[0]


def test_sgd_and_momentum_run_and_record(data):
    x, y, _ = data
    m = scaled_mlp(32, 1, stax.Relu())
    _, params = m.init_fn(jax.random.key(0), x.shape)
    h = train(
        m.apply_fn,
        params,
        x,
        y,
        learning_rate=0.3,
        steps=30,
        batch_size=4,
        key=jax.random.key(1),
        momentum=0.9,
        linearized=False,
        record_every=10,
        ntk_steps=[0, 10, 30],
        ntk_points=5,
    )
    assert list(h.steps) == [0, 10, 20, 30]
    assert h.ntk.shape == (3, 5, 5) and h.loss_lin is None
    assert np.all(np.isfinite(h.loss)) and h.loss[-1] < h.loss[0]
    np.testing.assert_allclose(relative_change(h.ntk, h.ntk[0]), h.kernel_change)
    with pytest.raises(ValueError, match="linearized=False"):
        h.trajectory_gap()


def test_train_validates_before_work(data):
    x, y, _ = data
    m = scaled_mlp(8, 1)
    _, params = m.init_fn(jax.random.key(0), x.shape)
    f = m.apply_fn
    with pytest.raises(ValueError, match="learning_rate"):
        train(f, params, x, y, learning_rate=-1.0, steps=2)
    with pytest.raises(ValueError, match="y_train"):
        train(f, params, x, y[:, 0], learning_rate=0.1, steps=2)
    with pytest.raises(ValueError, match="key"):
        train(f, params, x, y, learning_rate=0.1, steps=2, batch_size=3)
    with pytest.raises(ValueError, match="batch_size"):
        train(f, params, x, y, learning_rate=0.1, steps=2, batch_size=100, key=jax.random.key(0))
    with pytest.raises(ValueError, match="non-finite"):
        train(f, params, x.at[0, 0].set(jnp.nan), y, learning_rate=0.1, steps=2)
    with pytest.raises(ValueError, match="lr_scales"):
        train(f, params, x, y, learning_rate=0.1, steps=2, lr_scales=(1.0,))
    with pytest.raises(ValueError, match="record_steps"):
        train(f, params, x, y, learning_rate=0.1, steps=2, record_steps=[5])


def test_divergence_is_reported_with_the_stable_rate(data):
    x, y, _ = data
    m = scaled_mlp(64, 1, stax.Relu(), W_std=1.5, b_std=0.1)
    _, params = m.init_fn(jax.random.key(0), x.shape)
    with pytest.raises(FloatingPointError, match="stable only for learning_rate <"):
        train(m.apply_fn, params, x, y, learning_rate=1e4, steps=200, linearized=False)

"""Convolutional engine, the heavier layout checks: spatial concatenation in both output
layouts, tiles against one block, the diagonal layout after pooling, 1-D and 3-D against
2-D, Flatten against the full layout. Moved from tests/unit to keep the edit-test loop
under two minutes (each takes seconds)."""

import jax.numpy as jnp
import numpy as np
import pytest
from _nets import KEY, conv_net, images

from ntk_bayes import stax


@pytest.mark.parametrize("x2_none", [True, False])
def test_tiles_equal_one_block(x2_none, tol):
    net = stax.serial(conv_net(), stax.Relu(), conv_net(), stax.GlobalAvgPool())
    x1, x2 = images(7), (None if x2_none else images(5, seed=1))
    one = net.kernel_fn(x1, x2, ("nngp", "ntk"))
    for kw in ({"block_size": 3}, {"memory_budget": 100_000}):
        tiled = net.kernel_fn(x1, x2, ("nngp", "ntk"), **kw)
        for name in ("nngp", "ntk"):
            np.testing.assert_allclose(getattr(tiled, name), getattr(one, name), **tol)
    if x2_none:
        np.testing.assert_allclose(one.ntk, np.asarray(one.ntk).T, **tol)


def test_diagonal_output_after_pooling_keeps_same_positions(tol):
    """Pooling inside makes the engine carry every pair of positions; the caller who
    asked for spatial_output='diagonal' still gets (n1, n2, H, W)."""
    net = stax.serial(conv_net(8), stax.Relu(), stax.AvgPool((2, 2), padding="SAME"), conv_net(8))
    x1, x2 = images(3), images(2, seed=1)
    full = net.kernel_fn(x1, x2, ("nngp", "ntk", "cov1"), spatial_output="full")
    diag = net.kernel_fn(x1, x2, ("nngp", "ntk", "cov1"), spatial_output="diagonal")
    assert diag.nngp.shape == (3, 2, 4, 4) and diag.cov1.shape == (3, 4, 4)
    pick = lambda a: np.einsum("...aabb->...ab", np.asarray(a))
    for g in ("nngp", "ntk", "cov1"):
        np.testing.assert_allclose(getattr(diag, g), pick(getattr(full, g)), **tol)


def test_spatial_concat_is_block_diagonal(tol):
    """Along a spatial axis, each branch's covariances fill its own block (full layout)
    or its own positions (diagonal layout); covariances across branches are 0."""
    a = stax.serial(conv_net(8), stax.Relu(), conv_net(8))
    b = stax.serial(stax.AvgPool((2, 1), padding="SAME"), conv_net(8, filter_shape=(1, 2)))
    x1, x2 = images(3, (4, 3, 2)), images(2, (4, 3, 2), seed=1)
    joined = stax.serial(stax.FanOut(2), stax.parallel(a, b), stax.FanInConcat(axis=2))
    assert joined.output_shape(x1.shape) == (3, 4, 6, 8)
    for layout in ("full", "diagonal"):
        get = ("nngp", "ntk", "cov1")
        ka, kb, kj = (n.kernel_fn(x1, x2, get, spatial_output=layout) for n in (a, b, joined))
        for g in get:
            u, v, w = (np.asarray(getattr(k, g)) for k in (ka, kb, kj))
            lead = 1 if g == "cov1" else 2
            if layout == "diagonal":  # (.., H, W): W is concatenated
                expect = np.concatenate([u, v], axis=lead + 1)
            else:  # (.., H, H', W, W'): (W, W') is block diagonal
                expect = np.zeros(u.shape[: lead + 2] + (6, 6))
                expect[..., :3, :3], expect[..., 3:, 3:] = u, v
            np.testing.assert_allclose(w, expect, **tol)
    _, params = joined.init_fn(KEY, x1.shape)
    out = joined.apply_fn(params, x1)
    np.testing.assert_allclose(out[:, :, :3], a.apply_fn(params[1][0], x1), **tol)


def test_conv_1d_and_3d_agree_with_2d(tol):
    x = images(3, (5, 2))
    net1 = stax.serial(
        conv_net(filter_shape=(3,)), stax.Relu(), conv_net(filter_shape=(2,)), stax.GlobalAvgPool()
    )
    net2 = stax.serial(
        conv_net(filter_shape=(3, 1)),
        stax.Relu(),
        conv_net(filter_shape=(2, 1)),
        stax.GlobalAvgPool(),
    )
    net3 = stax.serial(
        conv_net(filter_shape=(3, 1, 1)),
        stax.Relu(),
        conv_net(filter_shape=(2, 1, 1)),
        stax.GlobalAvgPool(),
    )
    k1 = net1.kernel_fn(x, None, "ntk")
    k2 = net2.kernel_fn(x[:, :, None], None, "ntk")
    k3 = net3.kernel_fn(x[:, :, None, None], None, "ntk")
    np.testing.assert_allclose(k1, k2, **tol)
    np.testing.assert_allclose(k1, k3, **tol)


def test_flatten_keeps_the_diagonal_layout_and_equals_the_full_one(tol):
    body = stax.serial(conv_net(), stax.Relu(), conv_net(padding="CIRCULAR", strides=(1, 2)))
    assert not stax.serial(body, stax.Flatten()).needs_full_spatial(False)
    assert stax.serial(body, stax.GlobalAvgPool()).needs_full_spatial(False)
    x1, x2 = images(3), images(2, seed=1)
    diag = body.kernel_fn(x1, x2, "ntk", spatial_output="diagonal")
    full = body.kernel_fn(x1, x2, "ntk", spatial_output="full")
    assert diag.shape == (3, 2, 4, 2) and full.shape == (3, 2, 4, 4, 2, 2)
    np.testing.assert_allclose(jnp.einsum("ijaabb->ijab", full), diag, **tol)
    flat = stax.serial(body, stax.Flatten()).kernel_fn(x1, x2, "ntk")
    np.testing.assert_allclose(flat, diag.mean(axis=(2, 3)), **tol)

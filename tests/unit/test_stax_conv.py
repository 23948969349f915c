"""Convolution, pooling, readout and layer-norm kernels: reference values, Monte Carlo
agreement with wide finite networks, identities, layouts, tiling and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _nets import conv_net, images
from conftest import assert_matches_reference

from ntk_bayes import stax
from ntk_bayes.stax import _batching

KEY = jax.random.PRNGKey(0)


# ---- rung 1: neural-tangents reference values ------------------------------------------


def test_conv_relu_gap_matches_neural_tangents(nt_reference, nt_spec, tol, dtype):
    for block_size in (None, 1):
        assert_matches_reference(
            stax, "conv_relu_gap", nt_reference, nt_spec, dtype, tol, block_size=block_size
        )


# ---- identities ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_sp, channels, padding, strides, readout",
    [(1, 1, "SAME", 1, "gap"), (2, 3, "CIRCULAR", 2, "gap"), (1, 2, "VALID", 1, "flatten")],
)
def test_first_conv_from_patches_equals_its_window_sums(n_sp, channels, padding, strides, readout):
    """A first Conv with at most 32 entries per window computes its patch averages as
    products of the inputs' patches; the same network behind an Identity takes the
    window sums of the input kernel. Equal to float64 round-off in both layouts (GAP:
    every pair of positions; Flatten: same positions only), with x2 given, strides and
    every padding. Wider windows keep the window sums."""
    with jax.enable_x64(True):
        r = np.random.default_rng(0)
        shape = (6,) * n_sp + (channels,)
        x1, x2 = r.normal(size=(4, *shape)), r.normal(size=(3, *shape))
        window = (3,) * n_sp
        layers = [
            stax.Conv(5, window, (strides,) * n_sp, padding, W_std=1.3, b_std=0.1),
            stax.Relu(),
            stax.Conv(4, window, padding="SAME", parameterization="standard"),
            stax.Relu(),
            stax.GlobalAvgPool() if readout == "gap" else stax.Flatten(),
            stax.Dense(1),
        ]
        patches, sums = stax.serial(*layers), stax.serial(stax.Identity(), *layers)
        for x in (None, x2):
            a = patches.kernel_fn(x1, x, ("nngp", "ntk"))
            b = sums.kernel_fn(x1, x, ("nngp", "ntk"))
            for u, v in zip(a, b, strict=True):
                np.testing.assert_allclose(u, v, rtol=1e-13, atol=1e-15)
        # the form is taken, and declined beyond 32 entries per window
        from ntk_bayes.stax._core import _input_kernel

        conv, diagonal = layers[0], readout != "gap"
        k = _input_kernel(x1, x2, True, diagonal)
        assert conv.kernel_of_inputs(x1, x2, k) is not None
        wide = np.concatenate([x1] * 11, axis=-1)  # F C = 3^n_sp x 11 channels > 32
        assert conv.kernel_of_inputs(wide, wide, _input_kernel(wide, wide, True, diagonal)) is None


def test_one_by_one_conv_is_dense_per_position(tol):
    x = images(4)
    conv = stax.serial(stax.Conv(64, (1, 1), W_std=1.4, b_std=0.3), stax.Relu(), stax.Flatten())
    dense = stax.serial(stax.Dense(64, W_std=1.4, b_std=0.3), stax.Relu(), stax.Flatten())
    for get in ("nngp", "ntk"):
        np.testing.assert_allclose(
            conv.kernel_fn(x, None, get), dense.kernel_fn(x, None, get), **tol
        )


def test_readout_decides_the_memory_per_pair():
    x = images(1, (6, 6, 1))
    body = [conv_net(), stax.Relu(), conv_net(), stax.Relu()]
    per_pair = {}
    for name, readout in (("flatten", stax.Flatten()), ("gap", stax.GlobalAvgPool())):
        net = stax.serial(*body, readout, stax.Dense(1))
        opts = (True, net.needs_full_spatial(False))
        per_pair[name] = _batching.peak_bytes(
            lambda a, b, net=net, opts=opts: (
                net.kernel(stax._core._input_kernel(a, b, True, not opts[1])).ntk
            ),
            x,
            x,
        )
    # (H, W) entries per pair against (H, H', W, W').
    assert per_pair["gap"] >= 30 * per_pair["flatten"]


def test_global_pools_and_pools_of_ones(tol):
    x1, x2 = images(3), images(2, seed=1)
    body = stax.serial(conv_net(), stax.Relu(), conv_net())
    gap = stax.serial(body, stax.GlobalAvgPool()).kernel_fn(x1, x2, "nngp")
    gsp = stax.serial(body, stax.GlobalSumPool()).kernel_fn(x1, x2, "nngp")
    np.testing.assert_allclose(gsp, 16**2 * np.asarray(gap), **tol)
    # A 1x1 average pool is the identity; a full-size VALID pool is global pooling.
    same = stax.serial(body, stax.AvgPool((1, 1)), stax.GlobalAvgPool()).kernel_fn(x1, x2, "nngp")
    full = stax.serial(body, stax.AvgPool((4, 4)), stax.Flatten()).kernel_fn(x1, x2, "nngp")
    np.testing.assert_allclose(same, gap, **tol)
    np.testing.assert_allclose(full, gap, **tol)


def test_finite_twins_have_the_declared_shapes():
    x = images(2, (6, 5, 3))
    net = stax.serial(
        stax.Conv(7, (3, 2), strides=(2, 1), padding="SAME"),
        stax.Relu(),
        stax.LayerNorm(axis=(1, 2, 3)),
        stax.AvgPool((2, 2), padding="CIRCULAR"),
        stax.SumPool((2, 1), strides=(2, 2)),
        stax.Conv(4, (1, 1), padding="VALID", b_std=0.1),
        stax.Flatten(),
    )
    out_shape, params = net.init_fn(KEY, x.shape)
    # Conv: (3, 5) SAME stride (2, 1); AvgPool: same size; SumPool: (1, 3) VALID; Conv 1x1.
    assert out_shape == net.output_shape(x.shape) == (2, 1 * 3 * 4)
    assert net.apply_fn(params, x).shape == out_shape


# ---- rung 4: transforms ------------------------------------------------------------


def test_jit_and_grad_through_conv_hyperparameters(dtype):
    x = images(3).astype(dtype)

    def loss(w, b):
        net = stax.serial(
            stax.Conv(8, (3, 3), padding="SAME", W_std=w, b_std=b),
            stax.Relu(),
            stax.GlobalAvgPool(),
            stax.Dense(1),
        )
        return jnp.sum(net.kernel_fn(x, None, "ntk"))

    g = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(1.3, dtype), jnp.asarray(0.2, dtype))
    assert all(np.isfinite(np.asarray(v)) for v in g)
    eps = 1e-3
    fd = (loss(1.3 + eps, 0.2) - loss(1.3 - eps, 0.2)) / (2 * eps)
    np.testing.assert_allclose(g[0], fd, rtol=2e-2)


# ---- tiling ------------------------------------------------------------------------


def test_cov1_and_cov2_of_a_conv_net(tol):
    net = stax.serial(conv_net(), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1))
    x1, x2 = images(3), images(2, seed=1)
    k = net.kernel_fn(x1, x2, ("cov1", "cov2", "nngp"))
    own1 = np.diag(np.asarray(net.kernel_fn(x1, None, "nngp")))
    np.testing.assert_allclose(k.cov1, own1, **tol)
    np.testing.assert_allclose(k.cov2, np.diag(np.asarray(net.kernel_fn(x2, None, "nngp"))), **tol)


# ---- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "axis, shapes, match",
    [
        (0, [(2, 4, 4, 3), (2, 4, 4, 3)], "batch axis"),
        (4, [(2, 4, 4, 3), (2, 4, 4, 3)], "spatial or the channel axis"),
        (1, [(2, 4, 4, 3), (2, 4, 5, 3)], "every axis but axis 1"),
        (1, [(2, 4, 4, 3), (2, 4, 4, 5)], "every axis but axis 1"),
        (-1, [(2, 4, 4, 3), (2, 4, 3)], "rank"),
    ],
)
def test_concat_axis_errors_are_explained(axis, shapes, match):
    with pytest.raises(ValueError, match=match):
        stax.FanInConcat(axis=axis).output_shape(shapes)


@pytest.mark.parametrize(
    "make, shape, match",
    [
        (lambda: stax.Conv(8, (3, 3)), (4, 10), r"\(N, H, W, C\).*\(N, features\)"),
        (lambda: stax.Conv(8, (3,)), (4, 6, 6, 2), r"1 spatial axes"),
        (lambda: stax.Conv(8, (5, 5)), (4, 3, 3, 1), r"larger than the input"),
        (lambda: stax.AvgPool((4, 1), padding="CIRCULAR"), (4, 3, 3, 1), r"larger than"),
        (lambda: stax.GlobalAvgPool(), (4, 10), r"spatial axes"),
        (lambda: stax.LayerNorm(axis=1), (4, 3, 3, 2), r"channel axis"),
        (lambda: stax.LayerNorm(axis=(0, -1)), (4, 3, 3, 2), r"batch axis"),
    ],
)
def test_layout_errors_are_explained_before_work(make, shape, match):
    net = stax.serial(make(), stax.Flatten())
    with pytest.raises(ValueError, match=match):
        net.kernel_fn(np.ones(shape), None, "nngp")
    with pytest.raises(ValueError, match=match):
        net.init_fn(KEY, shape)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: stax.Conv(8, 3), TypeError, r"one entry per spatial axis"),
        (lambda: stax.Conv(8, (3, 0)), ValueError, r"positive ints"),
        (lambda: stax.Conv(8, (3, 3), strides=(1,)), ValueError, r"2 spatial axes"),
        (lambda: stax.Conv(8, (3, 3), padding="same-ish"), ValueError, r"padding"),
        (lambda: stax.Conv(0, (3, 3)), ValueError, r"out_chan"),
        (lambda: stax.Conv(8, (3, 3), W_std=-1.0), ValueError, r"W_std"),
        (
            lambda: stax.Conv(8, (3, 3), dimension_numbers=("NCHW", "OIHW", "NCHW")),
            ValueError,
            r"channels-last",
        ),
        (lambda: stax.AvgPool((2, 2), batch_axis=1), ValueError, r"batch_axis"),
        (lambda: stax.Conv(8, (3, 3), nonsense=1), TypeError, r"nonsense"),
    ],
)
def test_bad_layer_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_missing_readout_after_conv_is_explained():
    net = stax.serial(conv_net(), stax.Relu(), conv_net())
    with pytest.raises(ValueError, match=r"GlobalAvgPool\(\) or stax.Flatten\(\)"):
        net.kernel_fn(images(2), None, "ntk")
    with pytest.raises(ValueError, match="spatial_output"):
        net.kernel_fn(images(2), None, "ntk", spatial_output="all")
    # Pointwise networks on images keep returning same-position kernels.
    pointwise = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
    assert pointwise.kernel_fn(images(2), None, "ntk").shape == (2, 2, 4, 4)


def test_non_finite_images_are_rejected():
    x = np.array(images(2))
    x[1, 2, 3, 0] = np.nan
    net = stax.serial(conv_net(), stax.Relu(), stax.GlobalAvgPool())
    with pytest.raises(ValueError, match=r"non-finite.*\(1, 2, 3, 0\)"):
        net.kernel_fn(x, None, "ntk")


def test_layer_norm_needs_gaussian_inputs():
    net = stax.serial(conv_net(), stax.Relu(), stax.LayerNorm(), stax.GlobalAvgPool())
    with pytest.raises(ValueError, match="Gaussian"):
        net.kernel_fn(images(2), None, "ntk")


@pytest.mark.parametrize("f, size", [(3, 6), (5, 4), (2, 5), (3, 1), (7, 3)])
def test_shift_sums_equal_padded_window_sums(f, size):
    """Both forms of the stride-1 SAME window sum along an axis pair (CPU: one pass of
    zero-padded shifted interiors, apart; elsewhere: in-place updates) equal summing
    the f slices of the zero-padded array, windows wider than the axis included."""
    from ntk_bayes.stax import _conv

    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(f).normal(size=(2, 3, size, size, 4)))
        lo, hi = _conv.window_pads(size, f, 1, "SAME")
        padded = jnp.pad(x, [(0, 0), (0, 0), (lo, hi), (lo, hi), (0, 0)])
        want = sum(padded[:, :, d : d + size, d : d + size] for d in range(f))
        for form in (_conv._same_shift_sum, _conv._in_place_shift_sum):
            got = form(x, (2, 3), size, lo, f)
            np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)

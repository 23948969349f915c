"""ConvTranspose, ConvLocal and ImageResize: neural-tangents reference values (kernels in
both spatial layouts and the finite apply_fn), layouts, self-pairs, tiling, priors,
jit/grad and errors. Reference values: ``tools/make_nt_reference_conv.py``."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _grid import dtype_grid
from conftest import DATA, build_from_spec

from ntk_bayes import stax


@pytest.fixture(scope="module")
def ref():
    with np.load(DATA / "nt_conv_more.npz") as f:
        return {k: f[k] for k in f.files}


def _spec():
    with np.load(DATA / "nt_conv_more.npz") as f:
        return json.loads(str(f["spec"]))


SPEC = _spec()


def _net(layers):
    return build_from_spec(stax, ["serial", layers])


def _rel(got, want):
    return float(np.max(np.abs(np.asarray(got, np.float64) - want)) / np.max(np.abs(want)))


def _limit(dtype):
    # Matrix-relative: float64 to 1e-10 (the bar), float32 to a few thousand ulps.
    return 1e-10 if dtype == np.float64 else 2e-5


# ---- neural-tangents reference values ---------------------------------------------------


# float32 in the default tiers: one network per layer (_grid.py); the rest are slow points
@pytest.mark.parametrize(
    ("case", "dtype"),
    dtype_grid(sorted(SPEC["cases"]), {"cl2d_same_gap", "ct2d_circ_s2_gap", "ir2d_linear_gap"}),
    indirect=["dtype"],
)
def test_kernels_match_neural_tangents(case, ref, dtype):
    net = _net(SPEC["cases"][case]["layers"])
    x1, x2 = ref[f"{case}/x1"].astype(dtype), ref[f"{case}/x2"].astype(dtype)
    # One call (x2=None, the self-pair path) gives both blocks and compiles once.
    k = net.kernel_fn(np.concatenate([x1, x2]), None, ("nngp", "ntk"))
    n1 = len(x1)
    for g in ("nngp", "ntk"):
        got = np.asarray(getattr(k, g))
        assert got.dtype == dtype
        assert _rel(got[:n1, n1:], ref[f"{case}/{g}12"]) <= _limit(dtype), (g, "x1 x2")
        assert _rel(got[:n1, :n1], ref[f"{case}/{g}"]) <= _limit(dtype), (g, "x1 x1")


def _nt_params(name, layer, ref):
    W, b = ref[f"apply/{name}/W"], ref[f"apply/{name}/b"]
    if isinstance(layer, stax.ConvTranspose):
        b = b.reshape(-1)  # neural-tangents' (1, ..., 1, C) bias broadcasts as (C,)
    return W, b


@pytest.mark.parametrize("name", sorted(SPEC["apply"]))
def test_apply_matches_neural_tangents(name, ref):
    with jax.enable_x64(True):
        lname, kw = SPEC["apply"][name]["layer"]
        layer = getattr(stax, lname)(**kw)
        x = ref[f"apply/{name}/x"]
        if f"apply/{name}/W" in ref:
            params = _nt_params(name, layer, ref)
            shape, (W, b) = layer.init(jax.random.PRNGKey(0), x.shape)
            assert W.shape == params[0].shape and b.shape == params[1].shape
        else:
            shape, params = layer.init(jax.random.PRNGKey(0), x.shape)
        out = layer.apply(params, jnp.asarray(x))
        assert out.shape == shape == ref[f"apply/{name}/out"].shape
        assert _rel(out, ref[f"apply/{name}/out"]) < 1e-12


# ---- layouts, self-pairs, tiling ------------------------------------------------------


LAYOUT_BODIES = {
    "transpose": lambda: stax.serial(
        stax.ConvTranspose(8, (3, 2), (2, 1), "VALID", W_std=1.3, b_std=0.2),
        stax.Relu(),
        stax.ConvTranspose(8, (2, 3), (1, 2), "CIRCULAR", b_std=0.1),
    ),
    "local": lambda: stax.serial(
        stax.ConvLocal(8, (2, 2), (1, 2), "SAME", W_std=1.3, b_std=0.2),
        stax.Relu(),
        stax.ConvLocal(8, (2, 1), padding="CIRCULAR", b_std=0.1, parameterization="standard"),
    ),
    "nearest": lambda: stax.serial(
        stax.Conv(8, (2, 2), padding="SAME"),
        stax.Relu(),
        stax.ImageResize((-1, 7, 3, -1), "nearest"),
    ),
}


@pytest.mark.parametrize("body", sorted(LAYOUT_BODIES))
def test_diagonal_layout_is_the_diagonal_of_the_full_one(body, dtype):
    net = LAYOUT_BODIES[body]()
    x1 = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 3, 2), dtype)
    x2 = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 3, 2), dtype)
    diag = net.kernel_fn(x1, x2, ("nngp", "ntk"), spatial_output="diagonal")
    full = net.kernel_fn(x1, x2, ("nngp", "ntk"), spatial_output="full")
    for g in ("nngp", "ntk"):
        d, f = np.asarray(getattr(diag, g)), np.asarray(getattr(full, g))
        assert f.shape == d.shape[:2] + tuple(s for s in d.shape[2:] for _ in range(2))
        assert _rel(np.einsum("ijaabb->ijab", f), d) <= _limit(dtype)
        if body == "local":  # unshared weights: different positions are uncorrelated
            off = f * (1 - np.einsum("ab,cd->abcd", np.eye(f.shape[2]), np.eye(f.shape[4])))
            assert np.all(off == 0)


def test_self_pairs_are_exact(dtype):
    """A point with itself after Sign has variance exactly 1 at every position, and the
    linear layers keep the same-point structure that Sign reads (no round-off angle)."""
    x = jax.random.normal(jax.random.PRNGKey(2), (3, 4, 3, 2), dtype)
    for layer in (
        stax.ConvTranspose(8, (3, 2), (2, 1), "SAME", W_std=1.3, b_std=0.2),
        stax.ConvLocal(8, (2, 2), padding="CIRCULAR", W_std=0.7, b_std=0.4),
        stax.serial(stax.Conv(8, (2, 2)), stax.ImageResize((-1, 5, 5, -1), "nearest")),
    ):
        net = stax.serial(layer, stax.Sign(), layer, stax.Sign(), stax.Flatten())
        k = net.kernel_fn(x, None, ("nngp", "ntk"))
        np.testing.assert_array_equal(np.diag(np.asarray(k.nngp)), 1.0)
        assert np.all(np.isfinite(np.asarray(k.ntk)))


def test_tiles_agree_with_one_block(ref):
    case = "ct2d_circ_s2_gap"
    net = _net(SPEC["cases"][case]["layers"])
    x1 = ref[f"{case}/x1"].astype(np.float32)
    whole = net.kernel_fn(x1, None, "ntk")
    tiled = net.kernel_fn(x1, None, "ntk", block_size=1)
    np.testing.assert_allclose(tiled, whole, rtol=1e-6, atol=1e-7)


# ---- finite twin: parameters and their priors ------------------------------------------


@pytest.mark.parametrize("param", ["ntk", "standard"])
@pytest.mark.parametrize("cls", [stax.ConvTranspose, stax.ConvLocal])
def test_prior_std_is_shaped_like_params(cls, param):
    shape = (2, 5, 4, 3)
    layer = cls(6, (3, 2), (1, 2), "SAME", W_std=1.5, b_std=0.5, parameterization=param)
    _, params = layer.init(jax.random.PRNGKey(0), shape)
    std = layer.prior_std(shape)
    assert jax.tree_util.tree_structure(std) == jax.tree_util.tree_structure(params)
    fan_in = 3 * 3 * 2
    assert std == ((1.0, 1.0) if param == "ntk" else (1.5 / np.sqrt(fan_in), 0.5))
    no_bias = cls(6, (3, 2), parameterization=param)
    assert no_bias.init(jax.random.PRNGKey(0), shape)[1][1] is None
    assert no_bias.prior_std(shape)[1] is None
    assert stax.ImageResize((-1, 3, 3, -1), "linear").prior_std(shape) == ()


# ---- jit, grad, pytree -----------------------------------------------------------------


def test_jit_and_grad_through_hyperparameters():
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 3, 2))

    def k(w, b):
        net = stax.serial(
            stax.ConvTranspose(4, (3,), (2,), "CIRCULAR", W_std=w, b_std=b),
            stax.Relu(),
            stax.ConvLocal(4, (2,), W_std=w, b_std=b),
            stax.Relu(),
            stax.ImageResize((-1, 4, -1), "linear"),
            stax.GlobalAvgPool(),
        )
        return net.kernel_fn(x, None, "ntk").sum()

    g = jax.jit(jax.grad(k, argnums=(0, 1)))(1.3, 0.2)
    assert all(np.isfinite(float(v)) and float(v) != 0 for v in g)
    eps = 1e-2
    fd = (k(1.3 + eps, 0.2) - k(1.3 - eps, 0.2)) / (2 * eps)
    np.testing.assert_allclose(g[0], fd, rtol=1e-3)


def test_layers_are_pytrees():
    net = stax.serial(
        stax.ConvTranspose(4, (3,), W_std=1.2, b_std=0.1),
        stax.ConvLocal(4, (2,), W_std=0.8),
        stax.ImageResize((-1, 5, -1), jax.image.ResizeMethod.LINEAR),
    )
    leaves, tree = jax.tree_util.tree_flatten(net)
    assert leaves == [1.2, 0.1, 0.8]
    assert jax.tree_util.tree_unflatten(tree, leaves) == net
    assert net.layers[2].method == "linear"


# ---- errors ------------------------------------------------------------------------------


def test_clear_errors():
    x = jnp.ones((2, 4, 4, 2))
    with pytest.raises(ValueError, match="closed-form"):
        stax.serial(stax.ImageResize((-1, 3, 3, -1), "cubic"), stax.Flatten()).kernel_fn(x)
    out_shape, _ = stax.ImageResize((-1, 3, 3, -1), "lanczos3").init(None, x.shape)
    assert out_shape == (2, 3, 3, 2)
    with pytest.raises(ValueError, match="unknown `method`"):
        stax.ImageResize((-1, 3, 3, -1), "bicubicc")
    with pytest.raises(ValueError, match="batch axis"):
        stax.ImageResize((2, 3, 3, -1), "linear")
    with pytest.raises(ValueError, match="channel axis"):
        stax.serial(stax.ImageResize((-1, 3, 3, 4), "nearest"), stax.Flatten()).kernel_fn(x)
    with pytest.raises(ValueError, match="one entry per axis"):
        stax.ImageResize((-1, 3, -1), "linear").kernel_fn(x, spatial_output="full")
    with pytest.raises(ValueError, match="channel_axis"):
        stax.ImageResize((-1, 3, 3, -1), "linear", channel_axis=1)
    with pytest.raises(ValueError, match="larger than the input"):
        stax.ConvLocal(4, (5, 1)).init(None, x.shape)
    with pytest.raises(ValueError, match="channels-last"):
        stax.ConvTranspose(4, (2, 2), dimension_numbers=("NCHW", "OIHW", "NCHW"))
    stax.ConvLocal(4, (2, 2), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    with pytest.raises(TypeError, match="tuple"):
        stax.ConvTranspose(4, 3)
    with pytest.raises(TypeError, match="unexpected keyword"):
        stax.ConvLocal(4, (2, 2), W_sdt=1.0)
    with pytest.raises(ValueError, match="spatial axes"):
        stax.ConvTranspose(4, (2, 2)).init(None, (2, 5, 3))
    layer = stax.ConvLocal(4, (2, 2))
    _, params = layer.init(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match="re-run init_fn"):
        layer.apply(params, jnp.ones((2, 5, 5, 2)))

"""DotGeneral with batch dims and constants with free axes (issue 15): neural-tangents
0.6.5 values from ``tools/make_nt_reference_layers.py``
(``tests/data/nt_dot_general.npz``), the finite twin's layout, exactness on raw inputs,
errors. Monte Carlo: ``tests/stat/test_stax_dot_general_mc.py``.
"""

import _dot_general_nets as dg
import jax
import numpy as np
import pytest
from conftest import DATA

from ntk_bayes import stax


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(DATA / "nt_dot_general.npz"))


def _rel(a, r):
    return np.linalg.norm(np.asarray(a, np.float64) - r) / np.linalg.norm(r)


@pytest.mark.parametrize("name", dg.NAMES)
def test_matches_neural_tangents_float64(name, ref):
    with jax.enable_x64(True):
        net = dg.build(stax, name)
        x1, x2 = ref[f"{name}/x1"], ref[f"{name}/x2"]
        so = None if dg.CASES[name][2] else "full"
        k11 = net.kernel_fn(x1, None, ("nngp", "ntk"), spatial_output=so)
        k12 = net.kernel_fn(x1, x2, ("nngp", "ntk"), spatial_output=so)
        for g in ("nngp", "ntk"):
            assert np.asarray(getattr(k11, g)).dtype == np.float64
            assert _rel(getattr(k11, g), ref[f"{name}/{g}"]) < 1e-10, g
            assert _rel(getattr(k12, g), ref[f"{name}/{g}12"]) < 1e-10, g


def test_matches_neural_tangents_float32(ref):
    name = "raw_lhs_batch_free"
    net = dg.build(stax, name)
    x1, x2 = (ref[f"{name}/{x}"].astype(np.float32) for x in ("x1", "x2"))
    k = net.kernel_fn(x1, x2, "ntk", spatial_output="full")
    assert np.asarray(k).dtype == np.float32 and _rel(k, ref[f"{name}/ntk12"]) < 1e-5


CONST = np.random.default_rng(0).normal
LAYOUTS = {
    # (constant keyword, dimension_numbers) on (N, 4, 5, 2) inputs
    "rhs_free": dict(rhs=CONST(size=(5, 3)), dimension_numbers=(((2,), (0,)), ((), ()))),
    "lhs_free": dict(lhs=CONST(size=(3, 4)), dimension_numbers=(((1,), (1,)), ((), ()))),
    "rhs_batch": dict(rhs=CONST(size=(4, 5, 3)), dimension_numbers=(((2,), (1,)), ((1,), (0,)))),
    "lhs_batch_free": dict(
        lhs=CONST(size=(6, 5, 4)), dimension_numbers=(((2,), (1,)), ((1,), (2,)))
    ),
    "outer": dict(rhs=CONST(size=(2,))),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_finite_twin_keeps_points_first_and_channels_last(name):
    """apply_fn is lax.dot_general with the points moved first and the channels last;
    on raw inputs (a linear network) the kernel is exactly the output's inner product
    over channels, position by position."""
    with jax.enable_x64(True):
        x = np.random.default_rng(1).normal(size=(3, 4, 5, 2))
        layer = stax.DotGeneral(**LAYOUTS[name])
        y = np.asarray(layer.apply_fn((), x))
        args = (layer.other, x) if layer.is_lhs else (x, layer.other)
        raw = np.asarray(jax.lax.dot_general(*args, layer.dimension_numbers))
        assert y.shape == layer.output_shape(x.shape) and y.shape[0] == 3 and y.shape[-1] == 2
        assert sorted(y.shape) == sorted(raw.shape)
        k = np.asarray(stax.serial(layer, stax.Flatten()).kernel_fn(x, None, "nngp"))
        flat = y.reshape(3, -1)
        np.testing.assert_allclose(k, flat @ flat.T / flat.shape[1], rtol=1e-12)


def test_batch_dims_are_per_position_maps():
    """A batch dim applies its own slice of the constant at each position of that axis:
    batching H with a (4, 5, 3) constant equals contracting each row h with A[h]."""
    x = np.random.default_rng(2).normal(size=(2, 4, 5, 2)).astype(np.float32)
    a = LAYOUTS["rhs_batch"]["rhs"]
    y = np.asarray(stax.DotGeneral(**LAYOUTS["rhs_batch"]).apply_fn((), x))
    want = np.einsum("nhwc,hwf->nhfc", x, a)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_errors():
    x = np.ones((2, 4, 5, 2))
    with pytest.raises(ValueError, match="points axis 0 cannot be a batch dim"):
        stax.DotGeneral(
            lhs=np.ones((2, 3, 4)), dimension_numbers=(((2,), (1,)), ((0,), (0,)))
        ).init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match="channel axis"):
        stax.DotGeneral(rhs=np.ones((2, 3)), dimension_numbers=(((), ()), ((3,), (0,)))).init_fn(
            jax.random.PRNGKey(0), x.shape
        )
    with pytest.raises(ValueError, match="named twice"):
        stax.DotGeneral(rhs=np.ones((4, 5)), dimension_numbers=(((1,), (0,)), ((2,), (0,))))
    with pytest.raises(ValueError, match="input axis 1 is named twice"):
        stax.DotGeneral(
            rhs=np.ones((4, 4)), dimension_numbers=(((1,), (0,)), ((1,), (1,)))
        ).init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match="only 1 axes"):
        stax.DotGeneral(rhs=np.ones(5), dimension_numbers=(((1,), (4,)), ((), ())))


def test_full_spatial_output_tiles_in_float64():
    """A batch-only DotGeneral turns 2 spatial axes into 4 output ones: the tiler writes
    them with int32 start indices in float64 too (literal zeros were int64 under x64 and
    dynamic_update_slice refused the mix); tiles equal one block."""
    x = np.random.default_rng(2).normal(size=(3, 4, 5, 2))
    net = stax.serial(stax.Dense(3), stax.DotGeneral(**LAYOUTS["rhs_batch"]))
    with jax.enable_x64(True):
        one = net.kernel_fn(x, None, "nngp", spatial_output="full")
        tiled = net.kernel_fn(x, None, "nngp", spatial_output="full", block_size=1)
        assert one.dtype == np.float64 and one.shape == (3, 3, 4, 4, 3, 3)
    np.testing.assert_allclose(np.asarray(tiled), np.asarray(one), rtol=1e-12, atol=1e-12)

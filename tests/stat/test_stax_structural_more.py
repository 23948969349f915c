"""FanInProd, Index, DotGeneral, linearize and taylor_expand (issue 15, item 4).

Reference values: neural-tangents 0.6.5 in float64, from
``tools/make_nt_reference_structural.py`` (``tests/data/nt_structural.npz``).
"""

import _structural_nets as sn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _nets import fc_inputs, images
from conftest import DATA

import ntk_bayes as nb
from ntk_bayes import stax


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(DATA / "nt_structural.npz"))


def _rel(a, r):
    return np.linalg.norm(np.asarray(a, np.float64) - r) / np.linalg.norm(r)


# float64 for every network; float32 also for the ones without Conv (each Conv network
# costs seconds of compilation per dtype on this 2-core machine).
CASES = [(n, "float64") for n in sn.NAMES] + [
    (n, "float32") for n in ("prod_fc", "prod3_input", "index_seq", "dot_scalar_fc", "attn_pos_sum")
]


@pytest.mark.parametrize(("name", "dtype_name"), CASES)
def test_matches_neural_tangents(name, dtype_name, ref):
    """One call on x1 and x2 stacked gives both reference blocks: x1 with itself (its
    self-pairs exact) and x1 against x2."""
    dtype = np.dtype(dtype_name)
    with jax.enable_x64(dtype == np.float64):
        _check_against_reference(name, dtype, ref)


def _check_against_reference(name, dtype, ref):
    net = sn.build(stax, name)
    x1, x2 = (ref[f"{name}/{x}"].astype(dtype) for x in ("x1", "x2"))
    k = net.kernel_fn(np.concatenate([x1, x2]), None, ("nngp", "ntk"))
    bound = 1e-10 if dtype == np.float64 else 1e-5
    n = len(x1)
    for g in ("nngp", "ntk"):
        a = np.asarray(getattr(k, g))
        assert a.dtype == dtype
        assert _rel(a[:n, :n], ref[f"{name}/{g}"]) < bound, g
        assert _rel(a[:n, n:], ref[f"{name}/{g}12"]) < bound, g


def test_tiles_and_self_pairs_match_one_call(ref):
    """Tiles of 2 rows give the one-tile kernel; a point alone gives its self-pair."""
    with jax.enable_x64(True):
        net = sn.build(stax, "prod_fc")
        x1 = ref["prod_fc/x1"]
        whole = np.asarray(net.kernel_fn(x1, None, "ntk"))
        tiled = np.asarray(net.kernel_fn(x1, None, "ntk", block_size=2))
        np.testing.assert_allclose(tiled, whole, rtol=1e-13, atol=0)
        alone = float(net.kernel_fn(x1[1:2], None, "ntk")[0, 0])
        np.testing.assert_allclose(whole[1, 1], alone, rtol=1e-13)


def test_product_then_sign_has_exact_unit_self_pairs():
    """sign² ≡ 1: the engine's exact self-pairs survive a product of branches."""
    net = stax.serial(*sn.build(stax, "prod3_input").layers[:3], stax.Dense(8), stax.Sign())
    k = net.kernel_fn(fc_inputs(5), None, "nngp", block_size=2)
    np.testing.assert_array_equal(np.diag(np.asarray(k)), 1.0)


def test_finite_twins_compute_what_they_say():
    x = images(2, (5, 4, 3))
    y = stax.Index(stax.Slice[:, 1:4, ::-1]).apply_fn((), x)
    np.testing.assert_array_equal(y, x[:, 1:4, ::-1])
    a = np.array([1.0, -1.0, 0.5, 0.3, -0.2])
    dg = stax.DotGeneral(rhs=a, dimension_numbers=(((1,), (0,)), ((), ())))
    np.testing.assert_allclose(dg.apply_fn((), x), jnp.einsum("nhwc,h->nwc", x, a), rtol=1e-5)
    prod = stax.serial(stax.FanOut(3), stax.FanInProd())
    np.testing.assert_allclose(prod.apply_fn(((), ()), x), x**3, rtol=1e-6)
    for name in sn.NAMES:  # shapes only (eval_shape: nothing is computed)
        net = sn.build(stax, name)
        x = jax.ShapeDtypeStruct((3, *sn.INPUT_SHAPES[name]), jnp.float32)
        init = lambda k, net=net, x=x: net.init_fn(k, x.shape)[1]
        params = jax.eval_shape(init, jax.random.PRNGKey(0))
        out_shape = net.output_shape(x.shape)
        assert jax.eval_shape(net.apply_fn, params, x).shape == out_shape == (3, 1)
        # No parameters of their own: the prior scales are shaped like the params.
        assert jax.tree_util.tree_structure(net.prior_std(x.shape)) == (
            jax.tree_util.tree_structure(params)
        )


def test_grad_reaches_the_constant_and_the_branches():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 2))  # (N, T, C) tokens
    net = stax.serial(
        stax.Dense(4, W_std=1.2),
        stax.FanOut(2),
        stax.parallel(stax.Dense(4), stax.serial(stax.Dense(4), stax.Relu())),
        stax.FanInProd(),
        stax.Index(stax.Slice[:, :0:-1]),
        stax.DotGeneral(rhs=np.array([1.0, -1.0, 0.5]), dimension_numbers=(((1,), (0,)), ((), ()))),
        stax.Dense(1),
    )
    g = jax.grad(lambda n: jnp.sum(n.kernel_fn(x, None, "ntk")))(net)
    leaves = jax.tree_util.tree_leaves(g)
    assert leaves and all(np.all(np.isfinite(v)) for v in leaves)
    assert g.layers[5].other.shape == (3,) and np.any(g.layers[5].other != 0)
    assert g.layers[2].layers[1].layers[0].W_std != 0  # through the product
    # A scalar constant: Θ' = c² Θ, so d/dc sum(Θ') = 2 sum(Θ') / c.
    fc = stax.serial(stax.Dense(4, W_std=1.2), stax.DotGeneral(rhs=0.7))
    xf = fc_inputs(3)
    loss = lambda n: jnp.sum(n.kernel_fn(xf, None, "ntk"))
    gc = jax.grad(loss)(fc).layers[1].other
    np.testing.assert_allclose(gc, 2 * jax.jit(loss)(fc) / 0.7, rtol=1e-5)


def _prod(*branches):
    return stax.serial(
        stax.Dense(8), stax.FanOut(len(branches)), stax.parallel(*branches), stax.FanInProd()
    )


@pytest.mark.parametrize(
    "net",
    [
        _prod(stax.Relu(), stax.Identity()),
        _prod(stax.serial(stax.Dense(8), stax.Relu()), stax.serial(stax.Dense(8), stax.Erf())),
        _prod(stax.Identity(), stax.Identity()),
    ],
    ids=["relu_identity", "relu_erf", "identity_twice"],
)
def test_product_of_dependent_branches_is_refused(net):
    with pytest.raises(ValueError, match=r"FanInProd: branches \[0, 1\].*own Dense or Conv"):
        net.kernel_fn(fc_inputs(3), None, "nngp")


def test_product_errors():
    with pytest.raises(ValueError, match="equal shapes"):
        _prod(stax.Dense(8), stax.Dense(4)).kernel_fn(fc_inputs(2), None, "nngp")
    with pytest.raises(ValueError, match="several branches"):
        stax.FanInProd().kernel_fn(fc_inputs(2), None, "nngp")
    # The product of Gaussians is not Gaussian: a nonlinearity right after it is refused.
    net = stax.serial(_prod(stax.Dense(8), stax.Dense(8)), stax.Relu())
    with pytest.raises(ValueError, match="Gaussian pre-activations"):
        net.kernel_fn(fc_inputs(2), None, "nngp")


def test_index_errors():
    x = images(2, (5, 4, 2))
    with pytest.raises(ValueError, match=r"batch axis.*kernel_fn\(x1\[idx\]"):
        stax.Index(stax.Slice[::2]).kernel_fn(x, None, "nngp", spatial_output="diagonal")
    with pytest.raises(ValueError, match="channel axis"):
        stax.Index(stax.Slice[..., :1]).kernel_fn(x, None, "nngp", spatial_output="diagonal")
    with pytest.raises(ValueError, match="out of range for axis 1"):
        stax.Index(stax.Slice[:, 7]).kernel_fn(x, None, "nngp")
    with pytest.raises(ValueError, match="selects nothing"):
        stax.Index(stax.Slice[:, 9:]).init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(TypeError, match="newaxis"):
        stax.Index(stax.Slice[:, None])
    with pytest.raises(TypeError, match="basic indexing"):
        stax.Index(np.array([0, 1]))
    with pytest.raises(ValueError, match="batch_axis"):
        stax.Index(stax.Slice[:, 1:], batch_axis=1)
    with pytest.raises(ValueError, match="more than one Ellipsis"):
        stax.Index(stax.Slice[..., 1, ...])


def test_index_drops_every_spatial_axis():
    """Integers on both spatial axes leave (N, C): the kernel of one pixel's features."""
    x = images(3, (5, 4, 2))
    k = stax.Index(stax.Slice[:, 2, 1]).kernel_fn(x, None, "nngp")
    np.testing.assert_allclose(k, x[:, 2, 1] @ x[:, 2, 1].T / 2, rtol=1e-6)


def test_dot_general_errors():
    x = images(2, (5, 4, 2))
    dn = lambda c: ((c, (0,)), ((), ()))
    with pytest.raises(ValueError, match="at most one of `lhs` and `rhs`"):
        stax.DotGeneral(lhs=1.0, rhs=2.0)
    # batch dims and free axes of the constant: tests/unit/test_stax_dot_general_more.py
    with pytest.raises(ValueError, match="only 1 axes"):
        stax.DotGeneral(rhs=np.ones(5), dimension_numbers=(((1,), (4,)), ((), ())))
    with pytest.raises(ValueError, match="neither `lhs` nor `rhs`"):
        stax.DotGeneral(dimension_numbers=dn((1,)))
    with pytest.raises(TypeError, match="dimension_numbers"):
        stax.DotGeneral(rhs=np.ones(5), dimension_numbers=((1,), (0,)))
    with pytest.raises(TypeError, match="real numbers"):
        stax.DotGeneral(rhs=np.array(["a"]), dimension_numbers=dn((1,)))
    with pytest.raises(ValueError, match="non-finite"):
        stax.DotGeneral(rhs=np.array([1.0, np.nan]), dimension_numbers=dn((1,)))
    with pytest.raises(ValueError, match="channel_axis"):
        stax.DotGeneral(rhs=2.0, channel_axis=1)
    cases = {
        "channel axis": dn((3,)),
        "batch axis 0": dn((0,)),
        "out of range": dn((7,)),
    }
    for msg, d in cases.items():
        with pytest.raises(ValueError, match=msg):
            stax.DotGeneral(rhs=np.ones(2), dimension_numbers=d).kernel_fn(x, None, "nngp")
    with pytest.raises(ValueError, match="axis 1 has size 5 but the constant's axis 0 has size 3"):
        stax.DotGeneral(rhs=np.ones(3), dimension_numbers=dn((1,))).init_fn(
            jax.random.PRNGKey(0), x.shape
        )


def test_dot_general_without_constant_is_identity(xla_path):
    # (the same engine on both sides: Dense alone would otherwise take the native kernel)
    x = fc_inputs(3)
    net = stax.serial(stax.Dense(4, W_std=1.3), stax.DotGeneral())
    np.testing.assert_array_equal(
        net.kernel_fn(x, None, "ntk"), stax.Dense(4, W_std=1.3).kernel_fn(x, None, "ntk")
    )


@pytest.mark.parametrize("label", ["linearize", *map(str, sn.TAYLOR_DEGREES)])
def test_taylor_matches_neural_tangents(label, ref, dtype):
    params, new, x, scale = sn.taylor_case()
    cast = lambda t: jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), t)
    params, new, x = cast(params), cast(new), cast(x)
    if label == "linearize":
        fn = nb.linearize(sn.taylor_f, params)
    else:
        fn = nb.taylor_expand(sn.taylor_f, params, int(label))
    out = jax.jit(fn)(new, x, scale)
    for key in ("out", "h"):
        assert out[key].dtype == dtype
        r = ref[f"taylor/{label}/{key}"]
        assert _rel(out[key], r) < (1e-13 if dtype == np.float64 else 1e-5), key


def test_taylor_expand_truncates_a_cubic_and_checks_its_input():
    """g(a) = a³ x³ around a0 = 1 with h = 0.4: the degree-d expansion is the sum of the
    first d + 1 terms of (1 + h)³ = 1 + 3h + 3h² + h³, times x³."""
    g = lambda p, x: p["a"] ** 3 * x**3
    a0, a1 = {"a": jnp.asarray(1.0)}, {"a": jnp.asarray(1.4)}
    terms = np.array([1.0, 3 * 0.4, 3 * 0.4**2, 0.4**3]) * 2.0**3
    for d in range(5):
        got = nb.taylor_expand(g, a0, d)(a1, 2.0)
        np.testing.assert_allclose(got, terms[: d + 1].sum(), rtol=1e-6)
    np.testing.assert_allclose(
        nb.taylor_expand(g, a0, 1)(a1, 2.0), nb.linearize(g, a0)(a1, 2.0), rtol=1e-6
    )
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="`degree` must be a non-negative integer"):
            nb.taylor_expand(g, a0, bad)
    with pytest.raises(TypeError, match="apply_fn"):
        nb.taylor_expand("f", a0, 1)
    with pytest.raises(ValueError, match="structure of the expansion point"):
        nb.linearize(g, a0)({"b": jnp.asarray(1.0)}, 2.0)


def test_positional_embedding_options_and_errors():
    att = lambda **kw: stax.GlobalSelfAttention(4, 4, 4, 1, **kw)
    assert att(pos_emb_type=stax.PositionalEmbedding.CONCAT).pos_emb_type == "CONCAT"
    assert att(pos_emb_type="sum").pos_emb_type == "SUM"
    with pytest.raises(ValueError, match="unknown `pos_emb_type`"):
        att(pos_emb_type="ADD")
    # pos_emb_decay_fn, val_pos_emb and linear_scaling=False: tests/unit/test_stax_attention_pos.py
    with pytest.raises(ValueError, match="n_chan_pos_emb=None"):
        att(pos_emb_type="SUM", n_chan_pos_emb=3).init_fn(jax.random.PRNGKey(0), (2, 5, 2))
    with pytest.raises(ValueError, match="W_pos_emb_std"):
        att(pos_emb_type="SUM", W_pos_emb_std=-1.0)
    # The embedding is a parameter with a unit prior scale, one per position and channel.
    layer = att(pos_emb_type="CONCAT", n_chan_pos_emb=3)
    _, params = layer.init_fn(jax.random.PRNGKey(0), (2, 5, 2))
    assert params[5].shape == (1, 5, 3) and params[1].shape == (1, 5, 4)
    assert layer.prior_std((2, 5, 2))[5] == 1.0
    assert layer.apply_fn(params, jnp.ones((2, 5, 2))).shape == (2, 5, 4)

"""Aggregate (graph layers): neural-tangents reference values (two kernel cases here, the
rest in tests/stat/test_stax_aggregate_nt.py; every apply case), SPARSE = DENSE, axis
order, identity graphs, tiles that slice each point's graph, self-pairs, kernel
composition, gradients and errors. Reference values: ``tools/make_nt_reference_aggregate.py``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _nt_aggregate import check_case, edges_and_dense, limit, points, reference, rel
from conftest import build_from_spec

from ntk_bayes import stax

SPEC, REF = reference()

# ---- neural-tangents reference values ---------------------------------------------------


@pytest.mark.parametrize("case", ["fc1d_binary", "sparse2d"])
def test_kernels_match_neural_tangents(case, dtype):
    check_case(case, dtype)


@pytest.mark.parametrize("name", sorted(SPEC["apply"]))
def test_apply_matches_neural_tangents(name):
    with jax.enable_x64(True):
        layer = build_from_spec(stax, SPEC["apply"][name]["layer"])
        x, p = REF[f"apply/{name}/x"], REF[f"apply/{name}/p"]
        shape, params = layer.init_fn(jax.random.PRNGKey(0), x.shape)
        out = layer.apply_fn(params, jnp.asarray(x), pattern=p)
        assert out.shape == shape == x.shape
        assert rel(out, REF[f"apply/{name}/out"]) < 1e-12


# ---- identities (apply_fn: no compilation) ----------------------------------------------


def _graphs(n, V, seed=0, weighted=True):
    r = np.random.default_rng(seed)
    a = (r.random((n, V, V)) < 0.5) * (r.integers(1, 4, (n, V, V)) if weighted else 1)
    return a.astype(np.float64)


def test_sparse_equals_dense(dtype):
    # SPARSE decodes the edge lists to DENSE's arrays, in apply_fn and kernel_fn alike
    # (its kernels are checked against neural-tangents: sparse1d, sparse2d).
    x = points(3).astype(dtype)
    edges, dense = edges_and_dense(3, 4, 9)
    out_s = stax.Aggregate(implementation="SPARSE").apply_fn((), x, pattern=edges)
    out_d = stax.Aggregate().apply_fn((), x, pattern=dense)
    assert out_s.dtype == dtype
    assert rel(out_s, np.asarray(out_d)) <= limit(dtype)
    # K = 2 axes: the same graph on a (4, 1) grid, second coordinates all 0.
    grid = np.stack([edges, np.zeros_like(edges)], axis=2)
    out_2 = stax.Aggregate(implementation="SPARSE").apply_fn((), x[:, :, None], pattern=grid)
    assert rel(out_2[:, :, 0], np.asarray(out_d)) <= limit(dtype)


def test_axis_order_is_sorted_as_in_neural_tangents():
    # The pattern lists vertices in increasing axis order whatever the order given.
    x = points(2, (3, 2, 2))
    a = _graphs(2, 6).reshape(2, 3, 2, 3, 2)
    outs = [
        stax.Aggregate(axes).apply_fn((), x, pattern=a) for axes in (None, (1, 2), (2, 1), (-2, -3))
    ]
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    rows = stax.Aggregate(2).apply_fn((), x, pattern=a[:, 0, :, 0, :])  # one graph per row
    np.testing.assert_allclose(rows, np.einsum("nhwc,nwv->nhvc", x, a[:, 0, :, 0, :]))


def test_identity_graph_is_no_aggregation():
    x1, x2 = points(3), points(2, seed=1)
    assert stax.Aggregate().apply_fn((), x1, pattern=None) is x1
    body = lambda mid: stax.serial(
        stax.Dense(8, W_std=1.3, b_std=0.2),
        stax.Relu(),
        mid,
        stax.Dense(8),
        stax.Relu(),
        stax.GlobalAvgPool(),
    )
    want = body(stax.Identity()).kernel_fn(x1, x2, "ntk")
    eye = np.broadcast_to(np.eye(4), (3, 4, 4))
    got = body(stax.Aggregate()).kernel_fn(x1, x2, "ntk", pattern=(eye, eye[:2]))
    np.testing.assert_allclose(got, want, rtol=2e-6)


# ---- tiles, self-pairs, composition, gradients ------------------------------------------


def test_self_pairs_are_exact_and_know_their_graph():
    with jax.enable_x64(True):
        x, p = points(4), _graphs(4, 4, weighted=False)
        other = _graphs(4, 4, seed=7, weighted=False)
        # After Sign, a point with itself on its own graph is exactly its variance
        # (cov1); on another graph it is two different points.
        net = stax.serial(
            stax.Dense(8),
            stax.Aggregate(),
            stax.Sign(),
            stax.Dense(8),
            stax.Aggregate(),
            stax.Sign(),
            stax.GlobalAvgPool(),
        )
        both = net.kernel_fn(
            np.concatenate([x, x]),
            None,
            ("nngp", "cov1"),
            pattern=(np.concatenate([p, other]), None),
        )
        np.testing.assert_allclose(np.diag(both.nngp), both.cov1, rtol=1e-15)
        mixed = net.kernel_fn(x, x.copy(), "nngp", pattern=(p, other))
        np.testing.assert_allclose(mixed, both.nngp[:4, 4:], rtol=1e-12)
        assert np.all(np.abs(np.diag(mixed) - both.cov1[:4]) > 1e-3)


def test_kernel_composition_passes_the_graphs():
    x1, x2 = points(3), points(2, seed=1)
    p1, p2 = _graphs(3, 4), _graphs(2, 4, seed=1)
    head = stax.serial(stax.Dense(8, W_std=1.3, b_std=0.2), stax.Relu())
    tail = stax.serial(stax.Aggregate(), stax.Dense(8), stax.Relu(), stax.GlobalAvgPool())
    k = head.kernel_fn(x1, x2, None, spatial_output="full")
    got = tail.kernel_fn(k, get="ntk", pattern=(p1, p2))
    want = stax.serial(head, tail).kernel_fn(x1, x2, "ntk", pattern=(p1, p2))
    np.testing.assert_allclose(got, want, rtol=2e-6)


def test_gradient_through_aggregate_is_finite():
    x, p = points(3), _graphs(3, 4)

    def total(w):
        net = stax.serial(
            stax.Dense(8, W_std=w, b_std=0.1), stax.Relu(), stax.Aggregate(), stax.GlobalAvgPool()
        )
        return jnp.sum(net.kernel_fn(x, None, "ntk", pattern=(p, None)))

    value, g = jax.value_and_grad(total)(1.2)
    # The NTK of this network is a quadratic in W_std: d/dw at 1.2 is > 0 and finite.
    assert np.isfinite(g) and g > 0 and np.isfinite(value)


# ---- empirical and Monte Carlo kernels: neural-tangents' keyword rule ---------------------


def _emp_net():
    return stax.serial(
        stax.Dense(6, W_std=1.3, b_std=0.2),
        stax.Relu(),
        stax.Aggregate(),
        stax.GlobalAvgPool(),
        stax.Dense(3),
    )


def test_empirical_kernels_take_a_graph_per_side():
    # pattern=(p1, p2): x1's graphs with x1, x2's with x2, as in neural-tangents; checked
    # against the two sides' functions written out, so a kernel that gave p1 to both
    # sides (or dropped the graphs) would differ.
    import ntk_bayes as nb

    with jax.enable_x64(True):
        net = _emp_net()
        x1, x2 = points(3), points(2, seed=1)
        p1, p2 = _graphs(3, 4), _graphs(2, 4, seed=1)
        _, params = net.init_fn(jax.random.PRNGKey(0), x1.shape)
        f1 = net.apply_fn(params, x1, pattern=p1)
        f2 = net.apply_fn(params, x2, pattern=p2)
        jac = lambda x, p: jax.jacrev(lambda w: net.apply_fn(w, x, pattern=p))(params)
        j1, j2 = jac(x1, p1), jac(x2, p2)
        want_ntk = (
            sum(
                jnp.einsum(
                    "ak...,bk...->ab",
                    a.reshape(a.shape[:2] + (-1,)),
                    b.reshape(b.shape[:2] + (-1,)),
                )
                for a, b in zip(
                    jax.tree_util.tree_leaves(j1), jax.tree_util.tree_leaves(j2), strict=True
                )
            )
            / f1.shape[-1]
        )
        k = nb.empirical_kernel_fn(net.apply_fn)(x1, x2, ("nngp", "ntk"), params, pattern=(p1, p2))
        assert rel(k.nngp, np.asarray(f1 @ f2.T / f1.shape[-1])) < 1e-14
        assert rel(k.ntk, np.asarray(want_ntk)) < 1e-13
        # x2 omitted: pattern2 is not needed, and the kernel is x1's with itself
        same = nb.empirical_ntk_fn(net.apply_fn)(x1, None, params, pattern=(p1, None))
        assert (
            rel(
                same,
                np.asarray(nb.empirical_ntk_fn(net.apply_fn)(x1, x1, params, pattern=(p1, p1))),
            )
            < 1e-14
        )


@pytest.mark.parametrize("implementation", ["DENSE", "SPARSE"])
def test_empirical_ntk_blocks_cut_the_graphs_with_their_points(implementation):
    import ntk_bayes as nb

    with jax.enable_x64(True):
        net = stax.serial(
            stax.Dense(5),
            stax.Erf(),
            stax.Aggregate(implementation=implementation),
            stax.GlobalSumPool(),
            stax.Dense(2),
        )
        x = points(5)
        p = edges_and_dense(5, 4, 7)[0] if implementation == "SPARSE" else _graphs(5, 4)
        _, params = net.init_fn(jax.random.PRNGKey(3), x.shape)
        whole = nb.empirical_ntk_fn(net.apply_fn)(x, None, params, pattern=(p, None))
        blocks = nb.empirical_ntk_fn(net.apply_fn, batch_size=2)(x, None, params, pattern=(p, None))
        assert rel(blocks, np.asarray(whole)) < 1e-14


def test_monte_carlo_kernel_passes_keywords_to_apply_fn():
    # Two samples, each the empirical kernels of a network drawn as the docstring says
    # (k_s = split(key, S)[s]; apply with rng = fold_in(k_s, 1)), averaged.
    import ntk_bayes as nb

    with jax.enable_x64(True):
        net = _emp_net()
        x1, x2 = points(3), points(2, seed=1)
        p1, p2 = _graphs(3, 4), _graphs(2, 4, seed=1)
        key = jax.random.PRNGKey(5)
        mc = nb.monte_carlo_kernel_fn(net.init_fn, net.apply_fn, key, 2, samples_per_step=1)
        got = mc(x1, x2, ("nngp", "ntk"), pattern=(p1, p2))
        emp = nb.empirical_kernel_fn(net.apply_fn)
        want = []
        for k in jax.random.split(key, 2):
            _, params = net.init_fn(k, x1.shape)
            want.append(
                emp(x1, x2, ("nngp", "ntk"), params, pattern=(p1, p2), rng=jax.random.fold_in(k, 1))
            )
        for name in ("nngp", "ntk"):
            mean = (np.asarray(getattr(want[0], name)) + np.asarray(getattr(want[1], name))) / 2
            assert rel(getattr(got, name), mean) < 1e-13
        with pytest.raises(ValueError, match="`rng`"):
            mc(x1, None, "nngp", pattern=(p1, None), rng=key)
        with pytest.raises(TypeError, match="`pattern`"):
            mc(x1, None, "nngp", pattern=[[0.0]])


# ---- errors -----------------------------------------------------------------------------


def _net():
    return stax.serial(stax.Dense(8), stax.Relu(), stax.Aggregate(), stax.GlobalAvgPool())


@pytest.mark.parametrize(
    "pattern, match",
    [
        ("missing", "need `pattern`"),
        (np.ones((3, 4, 4)), "must be a pair"),
        ((np.ones((2, 4, 4)), None), "leading axis of 3"),
        ((np.ones((3, 4, 5)), None), r"shape \(N, 4, 4\)"),
        ((np.full((3, 4, 4), "a"), None), "real numbers"),
        ((np.ones((3, 4, 4)) * 1j, None), "real numbers"),
        ((np.ones((3, 4, 4)), np.ones((2, 4, 4))), "leading axis of 3"),
        ((np.ones((3, 4, 4)), None, None), "must be a pair"),
        ((np.full((3, 4, 4), np.nan), None), "pattern"),
    ],
)
def test_bad_patterns_are_refused(pattern, match):
    kw = {} if isinstance(pattern, str) else {"pattern": pattern}
    with pytest.raises(ValueError, match=match):
        _net().kernel_fn(points(3), None, "nngp", **kw)


def test_pattern_without_aggregate_is_refused():
    x = points(3)
    net = stax.serial(stax.Dense(4), stax.Relu(), stax.GlobalAvgPool())
    p = _graphs(3, 4)
    with pytest.raises(ValueError, match="`pattern` is read only by stax.Aggregate"):
        net.kernel_fn(x, None, "nngp", pattern=(p, None))
    _, params = net.init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match="`pattern` is read only by stax.Aggregate"):
        net.apply_fn(params, x, pattern=p)


def test_bad_layers_and_apply_patterns_are_refused():
    x = points(3)
    _, params = _net().init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match="apply_fn needs `pattern`"):
        _net().apply_fn(params, x)
    with pytest.raises(ValueError, match="implementation"):
        stax.Aggregate(implementation="COO")
    with pytest.raises(ValueError, match="channel_axis"):
        stax.Aggregate(channel_axis=1)
    with pytest.raises(ValueError, match="aggregate_axis"):
        stax.Aggregate(aggregate_axis="1")
    for axis, match in ((0, "batch axis"), (2, "channel axis"), (5, "out of range")):
        with pytest.raises(ValueError, match=match):
            stax.Aggregate(axis).kernel_fn(x, None, "nngp", pattern=(_graphs(3, 4), None))
    with pytest.raises(ValueError, match=r"\(N, V, C\)"):
        stax.Aggregate().init_fn(jax.random.PRNGKey(0), (3, 4))
    with pytest.raises(ValueError, match="integer edge lists"):
        stax.Aggregate(implementation="SPARSE").apply_fn((), x, pattern=np.ones((3, 5, 2)))
    with pytest.raises(ValueError, match=r"\(N, n_edges, 1, 2\)"):
        stax.Aggregate(implementation="SPARSE").apply_fn((), x, pattern=np.ones((3, 5, 3), int))
    with pytest.raises(ValueError, match="one graph per point"):
        stax.Aggregate().apply_fn((), x, pattern=np.ones((2, 4, 4)))
    with pytest.raises(ValueError, match=r"shape \(N, 4, 4\)"):
        stax.Aggregate().apply_fn((), x, pattern=np.ones((3, 4)))

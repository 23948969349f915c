"""The kernel_fn contract (issue 15): strict keywords, byte sizes, tiled get=None, kernel
composition, refused inputs and outputs, neural-tangents' layout keywords."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _nets import fc_inputs, images
from conftest import enable_x64

from ntk_bayes import stax
from ntk_bayes.stax import _batching, _core


def _net():
    return stax.serial(stax.Dense(8, W_std=1.5, b_std=0.1), stax.Relu(), stax.Dense(1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"block_sise": 2}, r"'block_sise' \(did you mean 'block_size'\?\)"),
        ({"memory_budjet": 10}, r"'memory_budjet' \(did you mean 'memory_budget'\?\)"),
        ({"spatial": "full"}, r"'spatial'.*valid ones are x1, x2, get"),
    ],
)
def test_unknown_keywords_name_the_nearest_valid_one(kwargs, match):
    with pytest.raises(TypeError, match=match):
        _net().kernel_fn(fc_inputs(3), None, "nngp", **kwargs)


@pytest.mark.parametrize(
    "text, nbytes",
    [("1GB", 10**9), ("512MiB", 512 * 2**20), ("2 kb", 2000), ("1e9", 10**9), (4096, 4096)],
)
def test_byte_sizes_accept_ints_and_strings(text, nbytes):
    assert _batching.parse_bytes(text, "memory_budget") == nbytes


@pytest.mark.parametrize(
    "value, exc, match",
    [
        ("lots", ValueError, r"`memory_budget`='lots' is not a size"),
        (-1, ValueError, r"`memory_budget` must be a positive"),
        (True, TypeError, r"`memory_budget` must be a number of bytes"),
    ],
)
def test_bad_byte_sizes_name_the_argument(value, exc, match):
    with pytest.raises(exc, match=match):
        _net().kernel_fn(fc_inputs(3), None, "nngp", memory_budget=value)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"block_size": 2.5}, TypeError, r"`block_size` must be a positive integer .* got 2\.5"),
        ({"block_size": "4"}, TypeError, r"`block_size` must be a positive integer .* got '4'"),
        ({"block_size": True}, TypeError, r"`block_size` must be a positive integer .* got True"),
        ({"block_size": 0}, ValueError, r"`block_size` must be >= 1"),
        ({"get": ()}, ValueError, r"`get` is empty; name at least one of"),
    ],
)
def test_tile_sizes_and_gets_are_checked(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        _net().kernel_fn(fc_inputs(3), None, **({"get": "nngp"} | kwargs))


def test_numpy_integer_block_size_and_indexing_like_the_triple():
    x = fc_inputs(5)
    tiled = _net().kernel_fn(x, None, "nngp", block_size=np.int64(2))
    # block_size takes the XLA program, the default the native kernel: equal to float32
    # round-off of the largest entry (a small entry's own relative error is larger)
    whole = _net().kernel_fn(x, None, "nngp")
    np.testing.assert_allclose(tiled, whole, rtol=1e-6, atol=1e-6 * float(np.max(whole)))
    net = _net()
    init_fn, apply_fn, kernel_fn = net
    assert (net[0], net[1], net[2]) == (init_fn, apply_fn, kernel_fn)
    assert net[-1] == kernel_fn and len(net[:2]) == 2


def test_options_of_the_inputs_are_refused_for_a_kernel_passed_as_x1():
    """Kernel composition continues a computed state in one program: tiling and layout
    options belong to the call that computed it (before, they were silently ignored,
    bad values such as memory_budget='abc' included)."""
    head = stax.serial(stax.Dense(16), stax.Relu(), stax.Dense(16))
    tail = stax.serial(stax.Relu(), stax.Dense(1))
    k = head.kernel_fn(fc_inputs(4))
    for kwargs in (
        {"memory_budget": "abc"},
        {"block_size": 3},
        {"devices": 7},
        {"spatial_output": "bogus"},
    ):
        with pytest.raises(ValueError, match=f"`{next(iter(kwargs))}` shape"):
            tail.kernel_fn(k, None, "ntk", **kwargs)
    assert tail.kernel_fn(k, None, "ntk").shape == (4, 4)
    # stax.batch sets its tiling only for inputs, so composition through it still works
    batched = stax.batch(tail.kernel_fn, batch_size=2, device_count=0)
    np.testing.assert_allclose(batched(k, None, "ntk"), tail.kernel_fn(k, None, "ntk"))


def test_per_point_outputs_count_towards_the_refused_size(monkeypatch):
    """get='cov1' with spatial_output='full' holds (H W)² numbers per point: it is refused
    up front like the pairwise outputs (before, it reached XLA's allocator)."""
    monkeypatch.setattr(_batching, "free_bytes", lambda device=None: 10**6)
    net = stax.serial(stax.Conv(2, (3, 3), padding="SAME"), stax.Relu())
    x = np.zeros((40, 6, 6, 1), np.float32)  # 40 x 36² x 4 bytes = 207 KB: fits
    assert net.kernel_fn(x, None, "cov1", spatial_output="full").shape == (40, 6, 6, 6, 6)
    x = np.zeros((200, 6, 6, 1), np.float32)  # 1.04 MB: does not
    with pytest.raises(ValueError, match=r"output \('cov1',\) for 200 points needs 1012\.5 KiB"):
        net.kernel_fn(x, None, "cov1", spatial_output="full")


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: stax.LeakyRelu(float("nan")), "LeakyRelu: `alpha`"),
        (lambda: stax.ABRelu(a=np.nan), "ABRelu: `a`"),
        (lambda: stax.Erf(b=np.inf), "Erf: `b`"),
        (lambda: stax.Sin(b=np.float32(np.nan)), "Sin: `b`"),
        (lambda: stax.Cos(c=np.nan), "Sin: `c`"),
        (lambda: stax.Exp(a=np.nan), "Exp: `a`"),
        (lambda: stax.Gaussian(b=jnp.asarray(np.nan)), "Gaussian: `b`"),
    ],
)
def test_non_finite_nonlinearity_hyperparameters_are_refused(make, name):
    with pytest.raises(ValueError, match=f"{name} must be finite"):
        make()


def test_signed_and_traced_nonlinearity_hyperparameters_still_work():
    x = fc_inputs(4)
    assert np.all(
        np.isfinite(stax.serial(stax.Dense(4), stax.ABRelu(-0.5, 1.0)).kernel_fn(x, None, "ntk"))
    )
    net = lambda a: stax.serial(stax.Dense(4), stax.Erf(a=a), stax.Dense(1))  # noqa: E731
    g = jax.grad(lambda a: net(a).kernel_fn(x, None, "nngp").sum())(1.0)
    assert np.isfinite(g) and g > 0
    with pytest.raises(ValueError, match="`eps` is added to the variance and must be >= 0"):
        stax.LayerNorm(eps=-1.0)


def test_get_none_goes_through_the_tiler():
    x = fc_inputs(7)
    whole = _net().kernel_fn(x, None)
    tiled = _net().kernel_fn(x, None, memory_budget="1GB", block_size=2)
    assert isinstance(tiled, stax.Kernel) and tiled.shape1 == (7, 1)
    for name in ("nngp", "ntk", "cov1", "cov2"):
        np.testing.assert_allclose(getattr(tiled, name), getattr(whole, name), rtol=1e-5, atol=1e-6)


def test_a_one_tile_kernel_is_traced_once_and_a_bigger_one_is_tiled(monkeypatch):
    """A kernel that fits one tile is one program, traced once on the real shapes (before,
    the per-pair probe, the tiled program and get=None's output structure traced the
    network three times); under a budget too small for one tile the tiler takes over and
    gives the same numbers."""
    traces, tiler = [], []
    block, tiled_kernel = _core._block, _batching.tiled_kernel
    monkeypatch.setattr(_core, "_block", lambda *a: traces.append(1) or block(*a))
    monkeypatch.setattr(
        _batching, "tiled_kernel", lambda *a, **k: tiler.append(1) or tiled_kernel(*a, **k)
    )
    x = fc_inputs(9)
    whole = _net().kernel_fn(x, None)
    assert len(traces) == 1 and not tiler
    assert isinstance(whole, stax.Kernel) and whole.shape1 == (9, 1) and whole.cov1.shape == (9,)
    assert whole.same_points is not None  # one set of points: the diagonal is known
    traces.clear()
    tiled = _net().kernel_fn(x, None, memory_budget=200)  # a few pairs per tile
    assert tiler and len(traces) > 1
    for name in ("nngp", "ntk", "cov1", "cov2"):
        np.testing.assert_allclose(getattr(tiled, name), getattr(whole, name), rtol=1e-5, atol=1e-6)


def test_a_repeated_call_walks_no_trace_again(monkeypatch, xla_path):
    """The same network on the same shapes again: JAX hands back the cached trace, and the
    size of its largest pairwise array is remembered with it (walking the jaxpr cost
    2-4 ms of every eager call at n = 2048); the numbers are the same."""
    walks = []
    real = _batching._max_var_bytes
    monkeypatch.setattr(
        _batching,
        "_max_var_bytes",
        lambda j, lead=None, entries=False: walks.append(lead) or real(j, lead, entries),
    )
    net, x = _net(), fc_inputs(9)
    first = net.kernel_fn(x, None, "ntk")
    assert walks
    walks.clear()
    again = net.kernel_fn(x, None, "ntk")
    assert not walks
    np.testing.assert_array_equal(again, first)
    net.kernel_fn(fc_inputs(10), None, "ntk")  # new shapes: a new trace, walked once
    assert walks


def test_kernel_composition_continues_the_recursion():
    """neural-tangents' ``kernel_fn(kernel_fn(x1, x2))``: the same as the net twice."""
    block = stax.serial(stax.Dense(8, W_std=1.5, b_std=0.1), stax.Relu())
    x1, x2 = fc_inputs(4), fc_inputs(3, seed=1)
    twice = stax.serial(block, block).kernel_fn(x1, x2, ("nngp", "ntk"))
    composed = block.kernel_fn(block.kernel_fn(x1, x2), get=("nngp", "ntk"))
    for name in ("nngp", "ntk"):
        np.testing.assert_allclose(getattr(composed, name), getattr(twice, name), rtol=2e-6)
    with pytest.raises(ValueError, match="`x2` must be None"):
        block.kernel_fn(block.kernel_fn(x1, x2), x2)
    with pytest.raises(ValueError, match="has no NTK"):
        block.kernel_fn(block.kernel_fn(x1, x2).replace(ntk=None), get="ntk")


def _with(x, index, value):
    x = x.copy()
    x[index] = value
    return x


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda x: x[:0], r"`x1` has no points"),
        (lambda x: x[:, :0], r"`x1` has zero features"),
        (lambda x: x * np.float32(1e20), r"`x1` has entries up to .* overflow float32"),
        # one bad entry anywhere, of either sign, is found and located
        (lambda x: _with(x, (2, 1), np.nan), r"`x1` contains 1 non-finite .* index \(2, 1\)"),
        (lambda x: _with(x, (1, 0), -np.inf), r"`x1` contains 1 non-finite .* index \(1, 0\)"),
        (lambda x: _with(x, (0, 2), np.inf), r"`x1` contains 1 non-finite .* index \(0, 2\)"),
    ],
)
def test_degenerate_inputs_are_refused(make, match):
    x = np.asarray(fc_inputs(3), np.float32)
    with pytest.raises(ValueError, match=match):
        _net().kernel_fn(make(x), None, "nngp")


def test_inputs_whose_kernel_would_overflow_are_refused_and_the_rest_scale_exactly():
    """The bound counts the features (x·x sums C squares before dividing by C) and the
    products q1 q2 the nonlinearities form; below it, bias-free ReLU and Gelu kernels are
    still homogeneous of degree 2 in float32 (Gelu's Σ12² + P δ² grew as q⁴ and was inf
    from inputs ~5e4; ReLU's q1 q2 overflowed from ~1e10 while inputs up to 2.9e17 were
    let through)."""
    dense = stax.serial(stax.Dense(1))
    with pytest.raises(ValueError, match=r"up to 2\.8e\+17: with 5000 feature\(s\)"):
        dense.kernel_fn(np.full((3, 5000), 2.8e17, np.float32), None, "nngp")
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    for name, phi in (("relu", stax.Relu()), ("gelu", stax.Gelu())):
        net = stax.serial(stax.Dense(16, b_std=None), phi, stax.Dense(1, b_std=None))
        with pytest.raises(ValueError, match=r"overflow float32 .*entries up to 1\.52e\+09"):
            net.kernel_fn(x * np.float32(1e10), None, "nngp")
        k1 = np.asarray(net.kernel_fn(x, None, ("nngp", "ntk")).nngp, np.float64)
        for scale in (5e4, 1e8):
            k = net.kernel_fn(x * np.float32(scale), None, ("nngp", "ntk"))
            for big in (k.nngp, k.ntk):
                assert np.all(np.isfinite(np.asarray(big)))
            if name == "relu":  # Gelu is homogeneous only as q -> inf
                # float32 round-off of the scaled sums; near-zero entries absolutely
                scaled = np.asarray(k.nngp) / scale**2
                np.testing.assert_allclose(scaled, k1, rtol=2e-5, atol=1e-5 * k1.max())
        big = np.asarray(net.kernel_fn(x * np.float32(1e8), None, "nngp"), np.float64)
        # x Φ(x) -> relu(x) as the scale grows: the Gelu kernel tends to the ReLU one
        relu = stax.serial(stax.Dense(16, b_std=None), stax.Relu(), stax.Dense(1, b_std=None))
        np.testing.assert_allclose(
            big / 1e16, np.asarray(relu.kernel_fn(x, None, "nngp")), rtol=1e-4
        )


def test_a_kernel_that_overflows_inside_the_network_is_refused_not_returned():
    """Finite inputs, a network whose variances leave float32's range: two Exp layers
    (E[e^(2u)] = e^(2q) of a variance that is already e^10) gave 23 inf of 100 entries in
    the NNGP, and 19 inf and 4 NaN (inf - inf) in the NTK, returned without a word. Now an
    error names the output, the counts and the ways out (float64 only where it is not
    float64 already: there one entry, e^(2q) of the largest q, still overflows). With
    W_std 0.7 the same network is finite and returned; under jax.jit (no values to look
    at) the kernel comes back as computed."""
    exp = stax.serial(stax.Dense(8), stax.Exp(), stax.Dense(8), stax.Exp(), stax.Dense(1))
    x = np.asarray(fc_inputs(10), np.float32)
    with pytest.raises(ValueError, match=r"nngp output has 23 non-finite entries of 100 "):
        exp.kernel_fn(x, None, ("nngp", "ntk"))
    with pytest.raises(
        ValueError, match=r"ntk output has 23 .*\(19 inf, 4 NaN\).*float32 .*float64"
    ):
        exp.kernel_fn(x, None, "ntk")
    jitted = jax.jit(lambda a: exp.kernel_fn(a, None, "nngp"))(x)
    assert np.isinf(np.asarray(jitted)).sum() == 23
    # the same network in two parts, by kernel composition: the same refusal
    first = stax.serial(stax.Dense(8), stax.Exp(), stax.Dense(8)).kernel_fn(x, None, None)
    assert all(np.isfinite(np.asarray(a)).all() for a in (first.nngp, first.ntk))
    with pytest.raises(ValueError, match=r"nngp output has 23 non-finite entries of 100 "):
        stax.serial(stax.Exp(), stax.Dense(1)).kernel_fn(first, None, ("nngp", "ntk"))
    with enable_x64(), pytest.raises(ValueError, match=r"1 non-finite entries .*float64") as e:
        exp.kernel_fn(x.astype(np.float64), None, "nngp")
    assert "jax_enable_x64" not in str(e.value)
    calm = stax.serial(
        stax.Dense(8, W_std=0.7), stax.Exp(), stax.Dense(8, W_std=0.7), stax.Exp(), stax.Dense(1)
    )
    assert all(np.isfinite(np.asarray(a)).all() for a in calm.kernel_fn(x, None, ("nngp", "ntk")))


def test_output_larger_than_memory_is_refused_before_any_work(monkeypatch):
    monkeypatch.setattr(_batching, "free_bytes", lambda device=None: 10**6)
    x = np.zeros((1000, 3), np.float32)  # 4 MB of nngp
    with pytest.raises(ValueError, match=r"needs 3\.8 MiB, more than the 976\.6 KiB free.*memmap"):
        _net().kernel_fn(x, None, "nngp")


def test_conv_accepts_dimension_numbers_naming_the_supported_layout():
    conv = stax.Conv(4, (2, 2), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    assert conv.output_shape((1, 3, 3, 2)) == (1, 2, 2, 4)
    with pytest.raises(ValueError, match="must be None or name that layout"):
        stax.Conv(4, (2, 2), dimension_numbers=("NCHW", "OIHW", "NCHW"))
    with pytest.raises(ValueError, match="names 2 spatial axes"):
        stax.Conv(4, (2,), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    x = images(2, (3, 3, 2))
    net = stax.serial(conv, stax.Relu(), stax.Flatten(), stax.Dense(1))
    assert net.kernel_fn(x, None, "nngp").shape == (2, 2)


def test_a_budget_below_one_pair_warns():
    """Full spatial covariances of 16 x 16 images cost ~1.5 MiB per pair of points
    (x 6 temporaries); a 64 KiB budget cannot hold one pair: said, not silently exceeded."""
    net = stax.serial(stax.Conv(2, (3, 3), padding="SAME"), stax.Relu(), stax.GlobalAvgPool())
    x = np.asarray(images(2, shape=(16, 16, 1)))
    with pytest.warns(ResourceWarning, match="less than one pair of points needs"):
        net.kernel_fn(x, None, "nngp", memory_budget="64KiB")

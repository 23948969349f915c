"""The native fully connected kernel (stax/_native.py, stax/native/fc_arccos.cc): the same
kernels as the XLA program, on every case it takes; the XLA program everywhere else."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_bayes import stax
from ntk_bayes.stax import _native


def _close(a, b, dtype):
    """Equal to round-off: both compute the same recursion in a different order (the
    products' sums, fused multiply-adds); float32 ~2 ulp of the largest entry."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = float(np.max(np.abs(b)))
    if dtype == np.float32:
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6 * scale)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14 * scale)


def _native_in(fn, *args) -> bool:
    return "ntk_bayes_fc" in str(jax.make_jaxpr(fn)(*args))


NETS = {
    "relu3": lambda: stax.serial(
        *[stax.Dense(64, W_std=1.5, b_std=0.05), stax.Relu()] * 3, stax.Dense(1, W_std=1.5)
    ),
    # "standard" parameterization (fan-in terms), no bias, leaky ReLU and Abs
    "mixed": lambda: stax.serial(
        stax.Dense(32, W_std=1.3),
        stax.LeakyRelu(0.1),
        stax.Dense(16, W_std=0.9, b_std=0.2, parameterization="standard"),
        stax.Abs(),
        stax.Dense(1, parameterization="standard"),
    ),
    # a general ABRelu, nested serials, and no readout after the last nonlinearity
    "abrelu_open": lambda: stax.serial(
        stax.serial(stax.Dense(8, b_std=0.3), stax.ABRelu(-0.3, 1.2)),
        stax.Dense(8, W_std=2.0),
        stax.Relu(),
    ),
    "linear": lambda: stax.serial(stax.Dense(4, W_std=1.1, b_std=0.4), stax.Dense(1)),
}


def _inputs(dtype, n=150, d=300, m=70):
    """n and m not multiples of the 64-pair tile, d past its 256-wide product block;
    copies inside x and between x and y; a zero point (variance 0 without a bias)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, d))
    x[7] = x[n - 10]
    x[20] = 0.0
    y = rng.standard_normal((m, d))
    y[5] = x[7]
    return x.astype(dtype), y.astype(dtype)


@pytest.mark.parametrize("name", sorted(NETS))
def test_native_kernel_equals_the_xla_program(name, dtype):
    """Every network shape it takes, x2 omitted, given, and equal in value, each get;
    the native program is the one that ran (its call is in the trace)."""
    _, _, kf = NETS[name]()
    x, y = _inputs(dtype)
    for x2 in (None, y, x.copy()):
        for get in (("nngp", "ntk"), "nngp", "ntk"):
            assert _native_in(lambda a, x2=x2, get=get: kf(a, x2, get), x), stax.native_status()
            got = kf(x, x2, get)
            with stax.native_disabled():
                assert not _native_in(lambda a, x2=x2, get=get: kf(a, x2, get), x)
                want = kf(x, x2, get)
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                assert a.dtype == dtype and a.shape == b.shape
                _close(a, b, dtype)


def test_native_kernel_is_symmetric_and_exact_on_copies(dtype):
    """x2 omitted: the upper tiles mirrored, so K == K^T bit for bit; a copy of a point
    pairs with it as the point with itself does (the self-pair rule), bit for bit."""
    _, _, kf = NETS["relu3"]()
    x, _ = _inputs(dtype)
    k = kf(x, None, ("nngp", "ntk"))
    for a in k:
        a = np.asarray(a)
        np.testing.assert_array_equal(a, a.T)
        assert a[7, 140] == a[7, 7] == a[140, 140]
        assert np.all(np.isfinite(a))
    # a point and its copy in another set: the same value as the point with itself
    _, y = _inputs(dtype)
    cross = np.asarray(kf(x, y, "ntk"))
    assert cross[7, 5] == np.asarray(k.ntk)[7, 7]


def test_native_kernel_under_jit_grad_and_vmap(dtype):
    """jit gives the eager numbers; derivatives in the inputs are the XLA program's (a
    custom JVP); vmap runs the kernel per batch entry; a traced hyperparameter takes
    the XLA program (its derivative is that program's)."""
    _, _, kf = NETS["relu3"]()
    x, y = _inputs(dtype, n=40, d=5, m=30)
    np.testing.assert_array_equal(jax.jit(lambda a: kf(a, None, "ntk"))(x), kf(x, None, "ntk"))

    def loss(a, b):
        k = kf(a, b, ("nngp", "ntk"))
        return jnp.sum(k.ntk * jnp.cos(k.nngp))

    g = jax.grad(loss, argnums=(0, 1))(x, y)
    g_sym = jax.grad(lambda a: loss(a, None))(x)
    with stax.native_disabled():
        want = jax.grad(loss, argnums=(0, 1))(x, y)
        want_sym = jax.grad(lambda a: loss(a, None))(x)
    for a, b in zip((*g, g_sym), (*want, want_sym), strict=True):
        _close(a, b, dtype)
    batch = jnp.stack([x[:20], x[20:]])
    v = jax.vmap(lambda a: kf(a, y, "nngp"))(batch)
    assert _native_in(jax.vmap(lambda a: kf(a, y, "nngp")), batch)
    for i in range(2):
        _close(v[i], kf(batch[i], y, "nngp"), dtype)

    def of_w(w):
        _, _, k = stax.serial(stax.Dense(64, W_std=w, b_std=0.05), stax.Relu(), stax.Dense(1))
        return jnp.sum(k(x, None, "ntk"))

    assert not _native_in(jax.grad(of_w), 1.5)
    w = jnp.asarray(1.5, dtype)
    step = 1e-3 if dtype == np.float64 else 1e-2
    fd = (of_w(w + step) - of_w(w - step)) / (2 * step)  # error ~ step² (smooth in W)
    np.testing.assert_allclose(jax.grad(of_w)(w), fd, rtol=1e-5 if dtype == np.float64 else 2e-2)


def test_other_networks_and_options_take_the_xla_program():
    """Outside its scope the native kernel is never called: other layers, get=None,
    several devices; a nonlinearity without a Dense before it gets its error."""
    x = np.random.default_rng(0).standard_normal((12, 5)).astype(np.float32)
    relu = NETS["relu3"]()
    cases = [
        (stax.serial(stax.Dense(8), stax.Erf(), stax.Dense(1)).kernel_fn, {}),
    ]
    # several devices: the XLA tiler spreads the tiles over them
    cpu = jax.devices("cpu")[0]
    assert _native._one_device(None) and _native._one_device(1) and _native._one_device([cpu])
    assert not _native._one_device(2) and not _native._one_device([cpu, cpu])
    for kf, kwargs in cases:
        assert not _native_in(lambda a, kf=kf, kw=kwargs: kf(a, None, "ntk", **kw), x)
    assert not _native_in(lambda a: relu.kernel_fn(a, None, None).ntk, x)
    # a nonlinearity without a Dense before it: the XLA program's own error
    for bad in (
        stax.serial(stax.Relu(), stax.Dense(1)),
        stax.serial(stax.Dense(8), stax.Relu(), stax.Relu(), stax.Dense(1)),
    ):
        with pytest.raises(ValueError, match="needs Gaussian pre-activations"):
            bad.kernel_fn(x, None, "ntk")
    # one device, any tile size: the native kernel (its tiles bound its memory)
    for kwargs in ({}, {"block_size": 4}, {"devices": 1}, {"memory_budget": "1MB"}):
        assert _native_in(lambda a, kw=kwargs: relu.kernel_fn(a, None, "ntk", **kw), x)


def test_native_kernel_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("NTK_BAYES_NATIVE", "0")
    x = np.random.default_rng(0).standard_normal((12, 5)).astype(np.float32)
    kf = NETS["relu3"]().kernel_fn
    assert not _native_in(lambda a: kf(a, None, "ntk"), x)
    assert stax.native_status().startswith("off")


@pytest.mark.parametrize("cxx", ["/nonexistent/c++", "false"])
def test_without_a_working_compiler_the_xla_program_runs(monkeypatch, tmp_path, cxx):
    """No compiler, or one that fails: the XLA program gives the kernel, status() says
    why, and nothing is left in the build folder."""
    monkeypatch.setenv("CXX", cxx)
    monkeypatch.setenv("NTK_BAYES_NATIVE_DIR", str(tmp_path))
    monkeypatch.setattr(_native, "_state", {"tried": False, "path": None, "reason": ""})
    x = np.random.default_rng(0).standard_normal((12, 5)).astype(np.float32)
    kf = NETS["relu3"]().kernel_fn
    assert not _native_in(lambda a: kf(a, None, "ntk"), x)
    assert stax.native_status().startswith("not available: ")
    assert ("no C++ compiler" in stax.native_status()) == (cxx != "false")
    with stax.native_disabled():
        want = kf(x, None, "ntk")
    np.testing.assert_array_equal(kf(x, None, "ntk"), want)
    assert list(tmp_path.iterdir()) == []

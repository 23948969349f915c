"""ntk_bayes.gp.ExactGP: evidence, posterior, samples and LOO against direct linear algebra."""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _nets import relu_net
from scipy.stats import multivariate_normal, norm

from ntk_bayes import gp, stax
from ntk_bayes._numerics import base_jitter


def _net(w=1.5):
    return stax.serial(
        stax.Dense(256, W_std=w, b_std=0.1), stax.Relu(), stax.Dense(1, W_std=1.2, b_std=0.1)
    )


def _data(n=15, m=6, d=3, k=None, seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, d))
    y = np.sin(x[:, 0]) + 0.1 * r.normal(size=n)
    if k is not None:
        y = np.stack([y + j * x[:, 1] for j in range(k)], 1)
    return x, y, r.normal(size=(m, d))


def _dense(x1, x2=None, kind="nngp"):
    return np.asarray(_net().kernel_fn(x1, x2, kind), np.float64)


def _rtol(dtype, f64=1e-8, f32=2e-3):
    return f64 if dtype == np.float64 else f32


# --- evidence ------------------------------------------------------------------------


@pytest.mark.parametrize("k", [None, 3])
def test_log_marginal_likelihood_matches_scipy(dtype, k):
    x, y, _ = _data(k=k)
    noise = 0.05
    model = gp.ExactGP(_net(), x, y, noise, mean=0.3)
    K = _dense(x) + noise * np.eye(len(x))
    cols = y[:, None] if k is None else y
    want = sum(multivariate_normal(0.3 * np.ones(len(x)), K).logpdf(c) for c in cols.T)
    got = model.log_marginal_likelihood()
    assert got.dtype == dtype
    assert abs(float(got) - want) <= _rtol(dtype, 1e-9, 1e-4) * abs(want)


def test_per_point_noise_and_mean_function(dtype):
    x, y, _ = _data()
    noise = np.linspace(0.01, 0.2, len(x))
    model = gp.ExactGP(_net(), x, y, noise, mean=lambda X: 0.5 * X[:, 0])
    K = _dense(x) + np.diag(noise)
    want = multivariate_normal(0.5 * x[:, 0], K).logpdf(y)
    assert abs(float(model.log_marginal_likelihood()) - want) <= _rtol(dtype, 1e-9, 1e-4) * abs(
        want
    )


# --- posterior -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_predict_matches_direct_formulas(dtype, kind):
    x, y, xs = _data()
    noise = 0.05
    model = gp.ExactGP(_net(), x, y, noise, kind=kind)
    K = _dense(x, kind=kind) + noise * np.eye(len(x))
    Ksx = _dense(xs, x, kind=kind)
    Kss = _dense(xs, kind=kind)
    mu = Ksx @ np.linalg.solve(K, y)
    cov = Kss - Ksx @ np.linalg.solve(K, Ksx.T)
    m, v = model.predict(xs)
    m2, c2 = model.predict(xs, full_cov=True)
    _, vn = model.predict(xs, include_noise=True)
    rtol = _rtol(dtype, 1e-7, 5e-3)
    scale = np.max(np.diag(Kss))
    assert m.shape == (6,) and v.shape == (6,) and c2.shape == (6, 6)
    np.testing.assert_allclose(m, mu, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(m2, mu, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(c2, cov, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(v, np.diag(cov), rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(vn, np.diag(cov) + noise, rtol=rtol, atol=rtol * scale)


def test_multi_output_equals_separate_fits(tol):
    x, y, xs = _data(k=3)
    joint = gp.ExactGP(_net(), x, y, 0.05, mean=np.array([0.0, 1.0, -1.0]))
    m, v = joint.predict(xs)
    assert m.shape == v.shape == (6, 3)
    lml = 0.0
    for j, c in enumerate((0.0, 1.0, -1.0)):
        one = gp.ExactGP(_net(), x, y[:, j], 0.05, mean=c)
        mj, vj = one.predict(xs)
        np.testing.assert_allclose(m[:, j], mj, **tol)
        np.testing.assert_allclose(v[:, j], vj, **tol)
        np.testing.assert_allclose(
            joint.loo_log_predictive()[:, j], one.loo_log_predictive(), **tol
        )
        lml += float(one.log_marginal_likelihood())
    assert float(joint.log_marginal_likelihood()) == pytest.approx(lml, rel=10 * tol["rtol"])


# --- leave-one-out -------------------------------------------------------------------


def test_loo_equals_refitting_without_each_point(dtype):
    x, y, _ = _data(n=12)
    noise = 0.05
    model = gp.ExactGP(_net(), x, y, noise)
    lp = np.asarray(model.loo_log_predictive())
    mu, var = (np.asarray(a) for a in model.loo_mean_var())
    assert lp.shape == mu.shape == var.shape == (12,)
    for i in range(12):
        keep = np.arange(12) != i
        K = _dense(x[keep]) + noise * np.eye(11)
        k = _dense(x[i : i + 1], x[keep])[0]
        m_i = k @ np.linalg.solve(K, y[keep])
        v_i = _dense(x[i : i + 1])[0, 0] - k @ np.linalg.solve(K, k) + noise
        rtol = _rtol(dtype, 1e-7, 2e-3)
        assert mu[i] == pytest.approx(m_i, rel=rtol, abs=rtol)
        assert var[i] == pytest.approx(v_i, rel=rtol)
        assert lp[i] == pytest.approx(norm(m_i, np.sqrt(v_i)).logpdf(y[i]), rel=rtol, abs=rtol)


# --- kernels ---------------------------------------------------------------------------


def test_as_kernel_wraps_networks_and_callables(tol):
    x, _, xs = _data()
    net = _net()
    kn = gp.as_kernel(net, "ntk")
    np.testing.assert_allclose(kn(x, xs), net.kernel_fn(x, xs, "ntk"), **tol)
    np.testing.assert_allclose(kn.diag(xs), np.diag(net.kernel_fn(xs, None, "ntk")), rtol=1e-3)
    rbf = gp.as_kernel(lambda a, b: jnp.exp(-0.5 * jnp.sum((a[:, None] - b[None]) ** 2, -1)))
    np.testing.assert_allclose(rbf.diag(xs), np.ones(6), **tol)
    nt_style = gp.as_kernel(lambda a, b: net.kernel_fn(a, b, ("nngp", "ntk")), "ntk")
    np.testing.assert_allclose(nt_style(x, xs), kn(x, xs), **tol)
    assert gp.as_kernel(kn) is kn
    with pytest.raises(ValueError, match="kind"):
        gp.as_kernel(net, "ntkgp")
    with pytest.raises(TypeError, match="stax network"):
        gp.as_kernel(3.0)


def test_tinygp_kernels_work(tol):
    tinygp = pytest.importorskip("tinygp")
    x, y, xs = _data()
    k = 1.3 * tinygp.kernels.ExpSquared(scale=0.7)
    model = gp.ExactGP(k, x, y, 0.1)
    ref = tinygp.GaussianProcess(k, jnp.asarray(x), diag=0.1)
    assert float(model.log_marginal_likelihood()) == pytest.approx(
        float(ref.log_probability(jnp.asarray(y))), rel=20 * tol["rtol"]
    )


# --- transformations ------------------------------------------------------------------


def test_jit_grad_and_pytree(dtype):
    x, y, _ = _data()
    net = gp.trainable_floats(_net())

    def lml(net, noise):
        return gp.ExactGP(net, x, y, noise).log_marginal_likelihood()

    noise = jnp.asarray(0.05, dtype)
    lml_j = eqx.filter_jit(lml)
    eager = lml(net, noise)
    assert float(lml_j(net, noise)) == pytest.approx(float(eager), rel=_rtol(dtype, 1e-10, 1e-5))
    g_net, g_noise = eqx.filter_jit(eqx.filter_grad(lambda p: lml(*p)))((net, noise))
    assert np.isfinite(g_noise) and np.isfinite(g_net.layers[0].W_std)
    if dtype == np.float64:
        h = 1e-6
        fd = (lml_j(net, noise + h) - lml_j(net, noise - h)) / (2 * h)
        assert float(g_noise) == pytest.approx(float(fd), rel=1e-5)
        bump = lambda d: eqx.tree_at(lambda n: n.layers[0].W_std, net, net.layers[0].W_std + d)
        fd_w = (lml_j(bump(h), noise) - lml_j(bump(-h), noise)) / (2 * h)
        assert float(g_net.layers[0].W_std) == pytest.approx(float(fd_w), rel=1e-5)
    model = gp.ExactGP(net, x, y, noise)
    leaves, tree = jax.tree_util.tree_flatten(model)
    again = jax.tree_util.tree_unflatten(tree, leaves)
    lml_of = eqx.filter_jit(lambda m: m.log_marginal_likelihood())  # one compile for both
    assert float(lml_of(again)) == float(lml_of(model))
    # gradients stay finite at coincident inputs (jitted: one program, not op-by-op)
    xx = np.concatenate([x, x[:3]])
    yy = np.concatenate([y, y[:3]])
    g = jax.jit(jax.grad(lambda s: gp.ExactGP(net, xx, yy, s).log_marginal_likelihood()))(noise)
    assert np.isfinite(g)


def test_vmap_over_noise(tol):
    x, y, xs = _data()
    noises = jnp.asarray([0.01, 0.1, 1.0])
    f = jax.vmap(lambda s: gp.ExactGP(_net(), x, y, s).log_marginal_likelihood())
    batched = f(noises)
    for s, b in zip(noises, batched, strict=True):
        one = gp.ExactGP(_net(), x, y, s).log_marginal_likelihood()
        assert float(b) == pytest.approx(float(one), rel=10 * tol["rtol"])


# --- jitter policy and errors ---------------------------------------------------------


def _indefinite(x, depth):
    """A linear kernel on ``x`` with one null-space eigenvalue pushed to
    ``-depth * mean diagonal`` (a kernel that is not PSD, by a controlled amount)."""
    K0 = x @ x.T / x.shape[1] + 1.0
    u = np.linalg.eigh(K0)[1][:, 0]
    Kd = K0 - depth * np.mean(np.diag(K0)) * np.outer(u, u)
    return lambda a, b: jnp.asarray(Kd, jnp.result_type(float))


def test_jitter_escalates_with_a_warning_then_errors(dtype):
    x, y, _ = _data(n=8, d=2)
    # a dent 30x the base jitter needs two escalations
    with pytest.warns(gp.NumericalWarning, match="after 2 escalation") as record:
        model = gp.ExactGP(_indefinite(x, 30 * base_jitter(dtype)), x, y, 0.0)
    assert record[0].filename == __file__  # the warning names the user's line
    assert np.isfinite(float(model.log_marginal_likelihood()))
    assert float(model.jitter_used) >= 30 * base_jitter(dtype)
    with pytest.raises(gp.NotPSDError, match="smallest eigenvalue") as err:
        gp.ExactGP(_indefinite(x, 0.5), x, y, 0.0)
    assert "float64" in str(err.value) and "noise" in str(err.value)
    # duplicate inputs without noise: the base jitter suffices, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dup = gp.ExactGP(_net(), np.concatenate([x, x]), np.concatenate([y, y]), 0.0)
    assert np.all(np.isfinite(np.asarray(dup.predict(x)[0])))


def test_traced_batched_ladder_rejitters_only_the_failed_matrices(dtype, tol):
    """Under jit and grad, a batch of one PD matrix and one that needs two escalations:
    the PD one keeps the base jitter, the other gets 100x, each factor is exact at its
    own jitter, and the gradient equals the sum of the per-matrix gradients."""
    from ntk_bayes._linalg import batched_psd_cholesky, psd_cholesky

    x, _, _ = _data(n=8, d=2)
    j0 = base_jitter(dtype)
    pd = jnp.asarray(_indefinite(x, -1.0)(None, None), dtype)  # a dent of -1: PD
    dented = jnp.asarray(_indefinite(x, 30 * j0)(None, None), dtype)
    Ks = jnp.stack([pd, dented])

    def batched(a):
        L, j = batched_psd_cholesky(a * Ks)
        return jnp.sum(jnp.log(jnp.diagonal(L, 0, -2, -1))), (L, j)

    def one(a, K):  # the unbatched policy, per matrix (vmapped below: a select, not a cond)
        return jnp.sum(jnp.log(jnp.diag(psd_cholesky(a * K)[0])))

    @jax.jit
    def both(a):
        (_, (L, j)), g = jax.value_and_grad(batched, has_aux=True)(a)
        return L, j, g, jnp.sum(jax.vmap(jax.grad(one), (None, 0))(a, Ks))

    L, j, g, each = both(jnp.asarray(1.0, dtype))
    np.testing.assert_allclose(np.asarray(j), [j0, 100 * j0], rtol=1e-5)
    for k in range(2):
        scale = float(jnp.mean(jnp.diag(Ks[k])))
        want = np.asarray(Ks[k]) + float(j[k]) * scale * np.eye(8)
        # the product on the host in float64: a device's float32 matmul may use TF32
        # (an H200 did: 1e-3 off), which would test the product, not the factor
        Lk = np.asarray(L[k], np.float64)
        np.testing.assert_allclose(Lk @ Lk.T, want, atol=50 * tol["atol"] * scale)
    assert np.isfinite(float(g)) and float(g) == pytest.approx(float(each), rel=10 * tol["rtol"])


def test_bad_input_is_rejected():
    x, y, xs = _data()
    net = _net()
    with pytest.raises(ValueError, match="rows"):
        gp.ExactGP(net, x, y[:-1], 0.1)
    bad = y.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        gp.ExactGP(net, x, bad, 0.1)
    with pytest.raises(ValueError, match="variance and must be >= 0"):
        gp.ExactGP(net, x, y, -0.1)
    with pytest.raises(ValueError, match="shape"):
        gp.ExactGP(net, x, y, np.ones(3))
    with pytest.raises(ValueError, match="features"):
        gp.ExactGP(net, x[:, 0], y, 0.1)
    with pytest.raises(ValueError, match=r"\(N,\) or \(N, K\)"):
        gp.ExactGP(net, x, y[:, None, None], 0.1)
    with pytest.raises(ValueError, match="`mean`"):
        gp.ExactGP(net, x, y, 0.1, mean=np.ones(4))
    model = gp.ExactGP(net, x, y, 0.1)
    with pytest.raises(ValueError, match="per-point shape"):
        model.predict(xs[:, :2])
    with pytest.raises(ValueError, match="n_samples"):
        model.sample(jax.random.PRNGKey(0), xs, 0)
    hetero = gp.ExactGP(net, x, y, np.full(len(x), 0.1))
    with pytest.raises(ValueError, match="noise_test"):
        hetero.predict(xs, include_noise=True)
    _, v = hetero.predict(xs, include_noise=True, noise_test=0.1)
    assert np.all(np.asarray(v) > 0.1)
    with pytest.raises(ValueError, match="kernel returned"):
        gp.ExactGP(lambda a, b: jnp.ones((a.shape[0],)), x, y, 0.1)


def test_kernels_and_solves_use_full_precision_matmuls():
    """On GPUs JAX's default float32 matmul is TF32 (~1e-3 relative error), enough to
    break a Cholesky; every matrix product of the kernels, the GP solves and the NumPyro
    prior must ask for full precision. Checked on the traced program (CPU-independent)."""
    import re

    from ntk_bayes import GaussianProcess

    X, y, Xt = _data()[:3]
    net = _net()

    def programs():
        yield jax.make_jaxpr(lambda x: net.kernel_fn(x, None, ("nngp", "ntk")))(X)
        yield jax.make_jaxpr(lambda x: net.kernel_fn(x, x[:5], "ntk", block_size=4))(X)
        yield jax.make_jaxpr(lambda x: gp.ExactGP(net, x, y, 0.1).predict(Xt))(X)
        yield jax.make_jaxpr(lambda x: gp.ExactGP(net, x, y, 0.1).log_marginal_likelihood())(X)
        yield jax.make_jaxpr(lambda x: GaussianProcess(net, x, noise=0.1).log_prob(y))(X)

    for jaxpr in programs():
        text = str(jaxpr)
        precisions = re.findall(r"dot_general\[.*?precision=(\S+)", text, re.DOTALL)
        assert len(precisions) == text.count("dot_general["), "a product without precision"
        # (the native fully connected kernel on CPU: its products are its own, in full
        # precision, and the program has none)
        assert precisions or "ntk_bayes_fc" in text
        assert all("HIGHEST" in p for p in precisions), precisions


def test_eager_calls_are_programs_and_traced_calls_are_inline(dtype, tol):
    """Eagerly, the fit and each method run as compiled programs; inside a caller's jit
    they trace inline (no nested call of their own in the caller's program), and both
    ways give the same numbers."""
    x, y, xs = _data()
    x, y, xs = (jnp.asarray(a, dtype) for a in (x, y, xs))

    def everything(noise):
        m = gp.ExactGP(_net(), x, y, noise)
        mean, var = m.predict(xs, include_noise=True)
        mu, v = m.loo_mean_var()
        return m.log_marginal_likelihood(), m.loo_log_predictive(), mean, var, mu, v

    eager = everything(jnp.asarray(0.1, dtype))
    jaxpr = jax.make_jaxpr(everything)(jnp.asarray(0.1, dtype))
    names = {str(e.params.get("name", "")) for e in jaxpr.jaxpr.eqns}
    wrappers = {"_fit_program", "_log_marginal_likelihood", "_predict", "_loo_mean_var"}
    wrappers |= {"_loo_log_predictive"}
    assert not names & wrappers, names & wrappers
    traced = jax.jit(everything)(jnp.asarray(0.1, dtype))
    for a, b in zip(eager, traced, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)


def test_sample_at_small_noise_in_float32_scales_the_jitter_by_the_prior():
    """noise 1e-4, a deep ReLU NNGP, float32: K** - V^T V has round-off of the prior's size
    (~6) but a mean diagonal ~4e-5; its jitter ladder, relative to the prior variance,
    factorises it (relative to its own diagonal no rung did: NotPSDError)."""
    net = relu_net()  # Dense(512)-Relu twice, W_std 1.5, b_std 0.1
    X = np.linspace(-2, 2, 60, dtype=np.float32)[:, None]
    Xs = np.linspace(-2.5, 2.5, 101, dtype=np.float32)[:, None]
    model = gp.ExactGP(net, X, np.sin(3 * X[:, 0]), 1e-4)
    with pytest.warns(gp.NumericalWarning, match=r"x `scale` [0-9.e+]+ after"):
        draws = np.asarray(model.sample(jax.random.PRNGKey(0), Xs, n_samples=4))
    assert draws.shape == (4, 101) and np.all(np.isfinite(draws))
    mean, var = (np.asarray(a, np.float64) for a in model.predict(Xs))
    prior = float(np.mean(np.asarray(net.kernel_fn(Xs, None, "nngp"))[np.diag_indices(101)]))
    # each draw is mean + L z with diag(L L^T) = var + jitter <= var + 1e-4 x prior: 6 sd
    # of a standard normal (false alarm < 2e-9 per entry, < 1e-6 over the 404 entries)
    assert np.all(np.abs(draws - mean) <= 6 * np.sqrt(var + 1e-4 * prior))


def test_errors_name_the_users_arguments_and_accept_numpy_jitter():
    x, y, xs = _data()
    net = _net()
    with pytest.raises(ValueError, match="`X` has no points"):
        gp.ExactGP(net, x[:0], y[:0], 0.1)
    model = gp.ExactGP(net, x, y, 0.1)
    with pytest.raises(ValueError, match="`X_test` has no points"):
        model.predict(xs[:0])
    with pytest.raises(TypeError, match="`key` must be a PRNG key"):
        model.sample(0, xs)
    with pytest.raises(ValueError, match="one PRNG key"):
        model.sample(jax.random.split(jax.random.PRNGKey(0), 2), xs)
    ref = float(gp.ExactGP(net, x, y, 0.1, jitter=1e-4).log_marginal_likelihood())
    for j in (np.float32(1e-4), jnp.asarray(1e-4)):
        got = float(gp.ExactGP(net, x, y, 0.1, jitter=j).log_marginal_likelihood())
        assert got == pytest.approx(ref, rel=1e-6)
    with pytest.raises(ValueError, match="`jitter`"):
        gp.ExactGP(net, x, y, 0.1, jitter=-1.0)


def test_psd_cholesky_scale_sets_the_jitter_and_the_message():
    from ntk_bayes._linalg import batched_psd_cholesky, psd_cholesky

    K = jnp.asarray(np.diag([1.0, 2.0]))
    L, j = psd_cholesky(K, jitter=1e-3, scale=10.0)
    np.testing.assert_allclose(np.asarray(L) @ np.asarray(L).T, np.diag([1.01, 2.01]), rtol=1e-5)
    L, _ = psd_cholesky(K, jitter=1e-3)  # default: the mean diagonal, 1.5
    np.testing.assert_allclose(
        np.asarray(L) @ np.asarray(L).T, np.diag([1.0015, 2.0015]), rtol=1e-5
    )
    Lb, _ = batched_psd_cholesky(jnp.stack([K, K]), jitter=1e-3, scale=jnp.asarray([10.0, 100.0]))
    np.testing.assert_allclose(np.diag(np.asarray(Lb[1]) ** 2), [1.1, 2.1], rtol=1e-5)
    with pytest.raises(gp.NotPSDError, match=r"x `scale` 1\.000e-03"):
        psd_cholesky(-K, scale=1e-3)
    with pytest.raises(ValueError, match="`scale`"):
        psd_cholesky(K, scale=-1.0)

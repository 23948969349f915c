"""Inducing-point posteriors: SGPR and SVGP against the exact GP, likelihoods, fitting."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _stats import binomial_lower

from ntk_bayes import gp, stax
from ntk_bayes._numerics import base_jitter


def _net():
    return stax.serial(
        stax.Dense(256, W_std=1.5, b_std=0.1), stax.Relu(), stax.Dense(1, W_std=1.2, b_std=0.1)
    )


def _erf_net():
    # A smooth kernel for the hyperparameter fits; the ReLU kernel's gradient at coincident
    # inputs has its own tests (test_sgpr_bound_gradient_is_finite_...).
    return stax.serial(
        stax.Dense(256, W_std=1.5, b_std=0.1), stax.Erf(), stax.Dense(1, W_std=1.2, b_std=0.1)
    )


def _data(n=20, m=5, d=2, seed=0, k=None):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, d))
    y = np.sin(2 * x[:, 0]) + 0.1 * r.normal(size=n)
    if k is not None:
        y = np.stack([y * (j + 1) for j in range(k)], 1)
    return x, y, r.normal(size=(m, d))


def _close(dtype, f64=1e-6, f32=5e-3):
    return f64 if dtype == np.float64 else f32


# --- rung 3: sparse equals exact when Z = X ---------------------------------------------


@pytest.mark.parametrize("k", [None, 2])
def test_sgpr_with_inducing_points_at_the_data_is_exact(dtype, k):
    x, y, xs = _data(k=k)
    ex = gp.ExactGP(_net(), x, y, 0.05)
    sp = gp.SGPR(_net(), x, y, x, 0.05)
    lml, bound = float(ex.log_marginal_likelihood()), float(sp.elbo())
    assert abs(bound - lml) <= _close(dtype) * abs(lml)
    rel = _close(dtype)
    for full in (False, True):
        (m1, v1), (m2, v2) = ex.predict(xs, full_cov=full), sp.predict(xs, full_cov=full)
        scale = float(np.max(np.abs(v1)))
        np.testing.assert_allclose(m2, m1, rtol=rel, atol=rel * scale)
        np.testing.assert_allclose(v2, v1, rtol=rel, atol=rel * scale)
    # optimal q(u) is the exact posterior of f at X
    mu_u, S_u = sp.optimal_qu()
    mf, cf = ex.predict(x, full_cov=True)
    np.testing.assert_allclose(mu_u, mf, rtol=rel, atol=rel)
    np.testing.assert_allclose(S_u, cf, rtol=rel, atol=rel * float(np.max(np.abs(cf))))


def test_sgpr_is_a_lower_bound_and_chunking_is_invisible(dtype, tol):
    x, y, xs = _data(n=40)
    lml = float(gp.ExactGP(_net(), x, y, 0.05).log_marginal_likelihood())
    few = float(gp.SGPR(_net(), x, y, x[:4], 0.05).elbo())
    one = gp.SGPR(_net(), x, y, x[:12], 0.05)
    assert few < float(one.elbo()) <= lml + 1e-6 * abs(lml)
    many = gp.SGPR(_net(), x, y, x[:12], 0.05, chunk_size=7)  # 6 chunks, last padded
    assert float(many.elbo()) == pytest.approx(float(one.elbo()), rel=10 * tol["rtol"])
    np.testing.assert_allclose(many.predict(xs)[1], one.predict(xs)[1], rtol=10 * tol["rtol"])


def _optimal_svgp_params(model, sp):
    """SGPR's optimal q(u), expressed in ``model``'s (whitened or not) parameters."""
    mu_u, S_u = sp.optimal_qu()
    Luu = model._Luu()
    if model.whiten:
        m = jax.scipy.linalg.solve_triangular(Luu, mu_u, lower=True)
        A = jax.scipy.linalg.solve_triangular(Luu, S_u, lower=True)
        S = jax.scipy.linalg.solve_triangular(Luu, A.T, lower=True)
    else:
        m, S = mu_u, S_u
    S = 0.5 * (S + S.T)
    R = jnp.linalg.cholesky(S + 1e-12 * jnp.eye(S.shape[0], dtype=S.dtype))
    return gp.SVGPParams(m[:, None], R[None])


@pytest.mark.parametrize("whiten", [True, False])
def test_svgp_at_its_optimum_equals_the_titsias_bound(dtype, whiten):
    if dtype != np.float64:
        pytest.skip("an identity to round-off: float64 only")
    x, y, xs = _data(n=40)
    Z = x[:12]
    sp = gp.SGPR(_net(), x, y, Z, 0.05)
    sv = gp.SVGP(_net(), Z, gp.Gaussian(0.05), num_data=40, whiten=whiten)
    p = _optimal_svgp_params(sv, sp)
    assert float(sv.elbo(p, x, y)) == pytest.approx(float(sp.elbo()), rel=1e-8)
    (m1, v1), (m2, v2) = sp.predict(xs), sv.predict(p, xs)
    np.testing.assert_allclose(m2, m1, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(v2, v1, rtol=1e-6, atol=1e-9)
    _, c2 = sv.predict(p, xs, full_cov=True)
    np.testing.assert_allclose(np.diag(c2), v2, rtol=1e-8, atol=1e-10)
    # minibatch ELBOs are unbiased: their average over a partition is the full ELBO
    parts = [float(sv.elbo(p, x[i::2], y[i::2])) for i in range(2)]
    assert np.mean(parts) == pytest.approx(float(sv.elbo(p, x, y)), rel=1e-9)


def test_svgp_converges_to_the_exact_posterior(dtype):
    x, y, xs = _data()
    ex = gp.ExactGP(_net(), x, y, 0.05)
    sv = gp.SVGP(_net(), x, gp.Gaussian(0.05), num_data=20)
    res = gp.optimize(
        lambda p: -sv.elbo(p, x, y) / 20,
        sv.init_params(),
        optimizer=optax.adam(0.02),
        max_rounds=30,
        steps_per_round=100,
        tol=1e-9,
        quiet=True,
    )
    lml = float(ex.log_marginal_likelihood())
    assert float(sv.elbo(res.params, x, y)) == pytest.approx(lml, rel=_close(dtype, 1e-5, 1e-3))
    (m1, v1), (m2, v2) = ex.predict(xs), sv.predict(res.params, xs)
    np.testing.assert_allclose(m2, m1, atol=_close(dtype, 1e-4, 1e-2))
    np.testing.assert_allclose(v2, v1, rtol=_close(dtype, 1e-2, 5e-2), atol=1e-4)


def test_svgp_kl_matches_the_gaussian_formula(dtype):
    x, _, _ = _data()
    Z = x[:6]
    r = np.random.default_rng(1)
    mu = r.normal(size=(6, 2))
    R = np.tril(r.normal(size=(2, 6, 6))) + 3 * np.eye(6)
    Kuu = np.asarray(_net().kernel_fn(Z, None, "nngp"), np.float64)
    for whiten in (True, False):
        sv = gp.SVGP(_net(), Z, gp.Gaussian(0.1), num_data=20, whiten=whiten, num_latent=2)
        P = np.eye(6) if whiten else np.asarray(sv._Luu() @ sv._Luu().T, np.float64)
        want = 0.0
        for l in range(2):
            S = R[l] @ R[l].T
            Pi = np.linalg.inv(P)
            want += 0.5 * (
                np.trace(Pi @ S)
                + mu[:, l] @ Pi @ mu[:, l]
                - 6
                + np.linalg.slogdet(P)[1]
                - np.linalg.slogdet(S)[1]
            )
        got = float(sv.kl(gp.SVGPParams(jnp.asarray(mu), jnp.asarray(R))))
        assert got == pytest.approx(want, rel=_close(dtype, 1e-8, 1e-3))
    assert Kuu.shape == (6, 6)


# --- likelihoods ------------------------------------------------------------------------


def _mc(g, mu, var, n=400_000, seed=0):
    f = mu + np.sqrt(var) * np.random.default_rng(seed).normal(size=(n,) + np.shape(mu))
    return g(f)


@pytest.mark.parametrize(
    "lik, y",
    [
        (gp.Gaussian(0.3), np.array([0.2, -1.0, 2.0])),
        (gp.Bernoulli("logit"), np.array([1.0, 0.0, 1.0])),
        (gp.Bernoulli("probit"), np.array([1.0, 0.0, 0.0])),
        (gp.Poisson(), np.array([0.0, 3.0, 7.0])),
    ],
)
def test_scalar_likelihoods_against_monte_carlo(lik, y):
    from scipy.special import expit, gammaln, log_ndtr, ndtr

    mu, var = np.array([0.3, -0.5, 1.5]), np.array([0.2, 1.0, 0.5])
    logp = {
        gp.Gaussian: lambda f: -0.5 * np.log(2 * np.pi * 0.3) - 0.5 * (y - f) ** 2 / 0.3,
        gp.Bernoulli: (
            (lambda f: np.log(np.where(y > 0.5, expit(f), expit(-f))))
            if getattr(lik, "link", "") == "logit"
            else (lambda f: log_ndtr((2 * y - 1) * f))
        ),
        gp.Poisson: lambda f: y * f - np.exp(f) - gammaln(y + 1),
    }[type(lik)]
    draws = _mc(logp, mu, var)
    want_ve = draws.mean(0)
    se = draws.std(0) / np.sqrt(draws.shape[0])
    j = lambda a: jnp.asarray(a)[:, None]
    ve = np.asarray(lik.variational_expectation(j(y), j(mu), j(var)))  # one value per row
    assert np.all(np.abs(ve - want_ve) <= 5 * se + 1e-4), (ve, want_ve)
    dens = np.exp(draws).mean(0)
    got_ld = np.asarray(lik.predict_log_density(j(y), j(mu), j(var)))
    np.testing.assert_allclose(got_ld, np.log(dens), rtol=0, atol=2e-2)
    mean, v = (np.asarray(a)[:, 0] for a in lik.predict_mean_var(j(mu), j(var)))
    sim = {
        gp.Gaussian: lambda f: f,
        gp.Bernoulli: expit if getattr(lik, "link", "") == "logit" else ndtr,
        gp.Poisson: lambda f: np.exp(f),
    }[type(lik)]
    np.testing.assert_allclose(mean, _mc(sim, mu, var).mean(0), rtol=2e-2, atol=2e-3)
    assert np.all(v > 0)


def test_categorical_gauss_hermite_agrees_with_monte_carlo():
    mu = jnp.asarray([[0.5, -0.2, 1.0], [2.0, 0.0, -1.0]])
    var = jnp.asarray([[0.3, 1.0, 0.5], [0.1, 0.2, 2.0]])
    y = jnp.asarray([2, 0])
    gh = gp.Categorical(3, method="gh", gh_points=12)
    mc = gp.Categorical(3, method="mc", num_samples=200_000)
    key = jax.random.PRNGKey(0)
    np.testing.assert_allclose(
        gh.variational_expectation(y, mu, var),
        mc.variational_expectation(y, mu, var, key),
        atol=1e-2,
    )
    p_gh, _ = gh.predict_mean_var(mu, var)
    p_mc, _ = mc.predict_mean_var(mu, var, key)
    np.testing.assert_allclose(p_gh, p_mc, atol=5e-3)
    np.testing.assert_allclose(np.sum(p_gh, 1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="PRNG key"):
        mc.variational_expectation(y, mu, var)
    with pytest.raises(ValueError, match="method='mc'"):
        gp.Categorical(10, method="gh")


# --- non-Gaussian SVGP end to end ------------------------------------------------------


def _blobs(n, c, seed=0, radius=3.0, spread=0.7):
    r = np.random.default_rng(seed)
    centres = radius * np.stack(
        [np.cos(2 * np.pi * np.arange(c) / c), np.sin(2 * np.pi * np.arange(c) / c)], 1
    )
    lab = r.integers(0, c, size=n)
    return centres[lab] + spread * r.normal(size=(n, 2)), lab


@pytest.mark.parametrize("case", ["bernoulli", "categorical", "poisson"])
def test_svgp_fits_non_gaussian_data(case):
    key = jax.random.PRNGKey(0)
    r = np.random.default_rng(0)
    if case == "poisson":
        x = r.normal(size=(400, 2))
        rate = np.exp(1.0 + 0.8 * np.tanh(1.5 * x[:, 0]) + 0.3 * x[:, 1])
        y = r.poisson(rate).astype(float)
        lik, mean = gp.Poisson(), 1.0
    else:
        c = 2 if case == "bernoulli" else 3
        x, y = _blobs(400, c)
        lik = gp.Bernoulli() if c == 2 else gp.Categorical(3, num_samples=16)
        y = y.astype(float) if c == 2 else y
        mean = 0.0
    Z = x[r.choice(len(x), 15, replace=False)]
    model = gp.SVGP(_net(), Z, lik, num_data=len(x), mean=mean)
    model, params, res = gp.fit_svgp(
        model,
        None,
        x,
        y,
        key=key,
        batch_size=100,
        num_epochs=60,
        optimizer=optax.adam(0.05),
        quiet=True,
    )
    assert res.losses[-1] < 0.5 * res.losses[0]
    mean_y, _ = model.predict_y(params, x, key=key)
    if case == "poisson":
        assert np.corrcoef(np.asarray(mean_y), rate)[0, 1] > 0.9
    elif case == "bernoulli":
        assert np.mean((np.asarray(mean_y) > 0.5) == (y > 0.5)) > 0.9
    else:
        assert mean_y.shape == (400, 3)
        assert np.mean(np.argmax(np.asarray(mean_y), 1) == y) > 0.85
        lpd = model.predict_log_density(params, x, y, key=key)
        assert lpd.shape == (400,) and np.all(np.asarray(lpd) <= 1e-6)
        assert np.mean(np.asarray(lpd)) > np.log(0.7)


# --- inducing inputs and fitting -----------------------------------------------------


def test_kmeans_pp_spreads_over_clusters():
    x, lab = _blobs(300, 5, seed=2, radius=6.0, spread=0.3)
    covered = 0
    for seed in range(10):
        Z = np.asarray(gp.kmeans_pp(jax.random.PRNGKey(seed), x, 5))
        # seeds are data points ...
        rows = [np.flatnonzero(np.all(np.isclose(x, z), 1)) for z in Z]
        assert all(len(r) >= 1 for r in rows)
        covered += sorted(lab[[r[0] for r in rows]]) == [0, 1, 2, 3, 4]
    # ... one per well-separated cluster, except with probability ~1% per draw: fewer than
    # 8 of 10 has probability < 1e-3 (Binomial(10, 0.99) tail)
    assert covered >= binomial_lower(10, 0.99, 1e-3), covered
    seeded = np.asarray(gp.kmeans_pp(jax.random.PRNGKey(0), x, 5))
    refined = np.asarray(gp.kmeans_pp(jax.random.PRNGKey(0), x, 5, lloyd_iters=10))

    def sse(C):
        return np.sum(np.min(((x[:, None] - C[None]) ** 2).sum(-1), 1))

    assert sse(refined) <= sse(seeded)


def test_greedy_variance_shrinks_the_nystrom_residual(dtype):
    x, _, _ = _data(n=40)
    k = gp.as_kernel(_net())
    Z, idx = gp.greedy_variance(_net(), x, 8, return_indices=True)
    assert len(set(np.asarray(idx).tolist())) == 8
    assert int(idx[0]) == int(np.argmax(np.asarray(k.diag(x))))

    def residual(Z):
        Kzz = np.asarray(k(Z), np.float64) + 1e-8 * np.eye(len(Z))
        Kzx = np.asarray(k(Z, x), np.float64)
        return np.sum(np.asarray(k.diag(x))) - np.trace(Kzx.T @ np.linalg.solve(Kzz, Kzx))

    rand = [residual(x[np.random.default_rng(s).choice(40, 8, replace=False)]) for s in range(5)]
    assert residual(np.asarray(Z)) < min(rand)
    # the residual after each greedy step is the Nystrom residual of that prefix
    Z2, res = gp.greedy_variance(_net(), x, 8, return_residuals=True)
    np.testing.assert_array_equal(np.asarray(Z2), np.asarray(Z))
    total = float(np.sum(np.asarray(k.diag(x))))
    for m in (1, 4, 8):
        want = residual(np.asarray(Z)[:m])
        assert float(res[m - 1]) == pytest.approx(want, rel=1e-3, abs=1e-5 * total), m
    assert np.all(np.diff(np.asarray(res)) <= 1e-6 * total)  # never grows


def test_fit_sgpr_improves_the_bound_and_stops():
    x, y, xs = _data(n=40)
    model = gp.SGPR(_erf_net(), x, y, x[:12], 0.5)
    fitted, res = gp.fit_sgpr(model, optimizer=optax.adam(0.05), max_iters=100, quiet=True)
    assert float(fitted.elbo()) > float(model.elbo()) + 10.0
    assert res.losses[-1] < res.losses[0] and res.num_steps <= 100
    assert 0.0 < float(fitted.noise) < 0.5
    assert not np.allclose(np.asarray(fitted.Z), np.asarray(model.Z))
    assert float(fitted.kernel.net.layers[0].W_std) != 1.5
    # with the kernel fixed only Z and the noise move
    fixed, _ = gp.fit_sgpr(
        model, optimize_kernel=False, optimizer=optax.adam(0.05), max_iters=50, quiet=True
    )
    assert float(fixed.elbo()) > float(model.elbo())
    assert fixed.kernel.net.layers[0].W_std == 1.5


def _toy1d_relu():
    from ntk_bayes import datasets

    ds = datasets.load("toy1d", seed=0)
    net = stax.serial(
        stax.Dense(64, W_std=1.5, b_std=0.1), stax.Relu(), stax.Dense(1, W_std=1.5, b_std=0.1)
    )
    return net, ds.X_train, ds.y_train


def test_sgpr_bound_gradient_is_finite_with_inducing_points_on_the_data():
    # greedy_variance picks Z among the training inputs, so K_ZX has coincident pairs,
    # where the arc-cosine kernel's sqrt(q1 q2 - Σ12²) is differentiated at 0
    net, X, y = _toy1d_relu()
    Z = gp.greedy_variance(net, X, 8)
    theta = {"kernel": gp.trainable_floats(net), "log_noise": jnp.log(0.1), "Z": Z}

    def loss(th):
        return -gp.SGPR(th["kernel"], X, y, th["Z"], jnp.exp(th["log_noise"])).elbo()

    for path, g in jax.tree_util.tree_leaves_with_path(jax.jit(jax.grad(loss))(theta)):
        assert np.all(np.isfinite(np.asarray(g))), jax.tree_util.keystr(path)


def test_fit_sgpr_stays_finite_with_few_inducing_points():
    """8 inducing points on toy1d, ReLU kernel: the bound used to go NaN inside the
    compiled rounds of optimize (and calibrate fell back to fitting the noise only)."""
    net, X, y = _toy1d_relu()
    model = gp.SGPR(net, X, y, gp.greedy_variance(net, X, 8), 0.1)
    fitted, res = gp.fit_sgpr(model, optimizer=optax.adam(0.05), max_iters=60, quiet=True)
    leaves = jax.tree_util.tree_leaves(eqx.filter(fitted, eqx.is_inexact_array))
    assert all(np.all(np.isfinite(np.asarray(a))) for a in leaves)
    assert np.all(np.isfinite(res.losses)) and res.losses[-1] < res.losses[0]
    assert float(fitted.elbo()) > float(model.elbo())
    assert float(fitted.kernel.net.layers[0].b_std) != 0.1


def test_psd_cholesky_ladder_is_differentiable_inside_scan(dtype):
    """The traced jitter ladder (a lax.cond whose untaken branch holds a NaN factor, and a
    while_loop) under grad inside lax.scan, as in optimize's compiled rounds."""
    V = jnp.asarray(np.random.default_rng(0).normal(size=(6, 6)), dtype)
    K0 = V.T @ V
    w, U = jnp.linalg.eigh(K0)
    u = U[:, 0]
    jit0 = base_jitter(dtype)

    def f(a, dent):  # smallest eigenvalue pushed to -dent x mean diagonal
        K = a * (K0 - (w[0] + dent * jnp.mean(jnp.diag(K0))) * jnp.outer(u, u))
        L, j = gp.psd_cholesky(K)
        return jnp.sum(jnp.log(jnp.diag(L))) + jnp.sum(L), j

    dents = jnp.asarray([-1.0, 30 * jit0, -1.0, 3000 * jit0], dtype)  # PD, ladder, PD, ladder

    def total(a):
        def step(acc, dent):
            v, j = f(a, dent)
            return acc + v, j

        return jax.lax.scan(step, 0.0, dents)

    (_, js), g = jax.jit(jax.value_and_grad(total, has_aux=True))(jnp.asarray(1.0, dtype))
    np.testing.assert_allclose(js, np.array([1, 100, 1, 1e4]) * jit0, rtol=1e-5)
    one_by_one = sum(float(jax.jit(jax.grad(lambda a, d=d: f(a, d)[0]))(1.0)) for d in dents)
    assert np.isfinite(float(g))
    assert float(g) == pytest.approx(one_by_one, rel=_close(dtype, 1e-9, 1e-4))


def test_fit_exact_learns_the_noise(dtype):
    r = np.random.default_rng(0)
    x = r.normal(size=(40, 2))
    y = np.tanh(1.5 * x[:, 0]) + 0.5 * x[:, 1] + 0.3 * r.normal(size=40)
    fitted, res = gp.fit_exact(
        _erf_net(), x, y, 1.0, optimizer=optax.adam(0.05), max_iters=400, quiet=True, tol=1e-7
    )
    assert 0.04 < float(fitted.noise) < 0.2  # the true noise variance is 0.09
    assert res.num_steps <= 400


def test_optimize_stops_on_convergence_and_on_nan():
    res = gp.optimize(
        lambda p: jnp.sum((p - 3.0) ** 2),
        jnp.zeros(2),
        optimizer=optax.sgd(0.1),
        max_rounds=100,
        quiet=True,
    )
    assert res.converged and res.num_steps < 1000
    np.testing.assert_allclose(res.params, 3.0, atol=1e-3)
    with pytest.raises(FloatingPointError, match="non-finite"):
        gp.optimize(
            lambda p: jnp.sum(jnp.log(p)), jnp.ones(2), optimizer=optax.sgd(1.0), quiet=True
        )
    with pytest.raises(ValueError, match="no floating-point"):
        gp.optimize(lambda p: 0.0, {"a": 1}, quiet=True)


def test_optimize_catches_a_non_finite_gradient_at_a_finite_loss():
    # sqrt at 0: the loss is finite, its gradient infinite, and Adam's update NaN; on the
    # last step of the last round no later loss shows it, so the gradient is checked
    def loss(p):
        return jnp.sum(jnp.sqrt(p["a"])) + jnp.sum(jnp.sqrt(p["b"]))

    params = {"a": jnp.ones(2), "b": jnp.asarray([0.0, 1.0])}
    with pytest.raises(FloatingPointError, match=r"gradient in \['b'\] became non-finite.*step 1 "):
        gp.optimize(
            loss, params, optimizer=optax.adam(0.1), max_rounds=1, steps_per_round=1, quiet=True
        )


# --- bad input ---------------------------------------------------------------------------


def test_sparse_bad_input():
    x, y, _ = _data()
    net = _net()
    with pytest.raises(ValueError, match="inducing points but there are only"):
        gp.SGPR(net, x, y, np.concatenate([x, x[:2]]), 0.1)
    with pytest.raises(ValueError, match="only 20 points"):
        gp.kmeans_pp(jax.random.PRNGKey(0), x, 21)
    with pytest.raises(ValueError, match="only 20 points"):
        gp.greedy_variance(net, x, 21)
    with pytest.raises(ValueError, match="per-point shape"):
        gp.SGPR(net, x, y, x[:5, :1], 0.1)
    with pytest.raises(ValueError, match=">= 0"):
        gp.SGPR(net, x, y, x[:5], -1.0)
    with pytest.raises(ValueError, match="inducing points but there are only"):
        gp.SVGP(net, x, gp.Bernoulli(), num_data=10)
    with pytest.raises(ValueError, match="num_latent=3"):
        gp.SVGP(net, x[:5], gp.Categorical(3), num_data=20, num_latent=1)
    with pytest.raises(TypeError, match="likelihood"):
        gp.SVGP(net, x[:5], "bernoulli", num_data=20)
    sv = gp.SVGP(net, x[:5], gp.Bernoulli(), num_data=20)
    with pytest.raises(ValueError, match="0 or 1"):
        sv.elbo(sv.init_params(), x, y)
    with pytest.raises(ValueError, match="num_data"):
        gp.fit_svgp(sv, None, x[:10], (y[:10] > 0).astype(float), key=jax.random.PRNGKey(0))
    pois = gp.SVGP(net, x[:5], gp.Poisson(), num_data=20)
    with pytest.raises(ValueError, match="counts"):
        pois.elbo(pois.init_params(), x, y)

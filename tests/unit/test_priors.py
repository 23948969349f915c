"""The NumPyro plugin: GaussianProcess distribution, conditioning, LOO, handlers, NUTS/SVI."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.stats
from _nets import priors_data, relu_net
from numpyro import handlers
from numpyro.distributions.gof import auto_goodness_of_fit

import ntk_bayes as nb
from ntk_bayes import stax

KEY = jax.random.PRNGKey(0)


def test_log_prob_equals_scipy(dtype):
    X, y = priors_data()
    net = relu_net()
    gp = nb.GaussianProcess(net, X, kernel="ntk", noise=0.05, mean=0.2)
    K = np.asarray(net.kernel_fn(X, None, "ntk"), np.float64) + 0.05 * np.eye(12)
    L = np.asarray(gp.scale_tril, np.float64)
    jit_added = L @ L.T - K  # the dtype's jitter on the diagonal only
    np.testing.assert_allclose(jit_added - np.diag(np.diag(jit_added)), 0, atol=1e-4)
    want = scipy.stats.multivariate_normal(0.2 * np.ones(12), L @ L.T).logpdf(np.asarray(y))
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(gp.log_prob(y), want, rtol=rtol)
    assert gp.event_shape == (12,) and gp.batch_shape == ()
    np.testing.assert_allclose(gp.variance, np.diag(L @ L.T), rtol=1e-5)


def test_multiple_outputs_share_the_kernel():
    X, y = priors_data()
    Y = jnp.stack([y, 2 * y, -y])  # (K, N)
    gp = nb.GaussianProcess(relu_net(), X, noise=0.1, num_outputs=3)
    assert gp.batch_shape == (3,)
    lp = gp.log_prob(Y)
    single = nb.GaussianProcess(relu_net(), X, noise=0.1)
    np.testing.assert_allclose(lp, [single.log_prob(r) for r in Y], rtol=1e-5)
    assert gp.sample(KEY, (5,)).shape == (5, 3, 12)
    with pytest.raises(ValueError, match=r"y\.T"):
        gp.condition(Y.T, X)


def test_samples_agree_with_log_prob():
    X, _ = priors_data(n=3)
    gp = nb.GaussianProcess(relu_net(), X, noise=0.3)
    s = gp.sample(KEY, (20000,))
    gof = auto_goodness_of_fit(
        np.asarray(s, np.float64), np.exp(np.asarray(gp.log_prob(s), np.float64)), dim=3
    )
    assert gof > 1e-3
    np.testing.assert_allclose(np.cov(np.asarray(s).T), gp.covariance, rtol=0.05, atol=0.02)


def test_condition_is_the_gp_posterior(tol):
    X, y = priors_data()
    Xs = jax.random.normal(jax.random.PRNGKey(3), (5, 2))
    net = relu_net()
    gp = nb.GaussianProcess(net, X, noise=0.1, jitter=0.0)
    post = gp.condition(y, Xs)
    K = net.kernel_fn(X, None, "nngp") + 0.1 * jnp.eye(12)
    Ks = net.kernel_fn(Xs, X, "nngp")
    mean = Ks @ jnp.linalg.solve(K, y)
    cov = net.kernel_fn(Xs, None, "nngp") - Ks @ jnp.linalg.solve(K, Ks.T)
    r = dict(rtol=1e-8, atol=1e-10) if tol["rtol"] < 1e-6 else dict(rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(post.mean, mean, **r)
    np.testing.assert_allclose(post.covariance, cov, **r)
    np.testing.assert_allclose(post.variance, jnp.diag(cov), **r)
    assert post.sample(KEY, (4,)).shape == (4, 5)
    noisy = gp.condition(y, Xs, include_noise=True)
    np.testing.assert_allclose(noisy.variance - post.variance, 0.1, rtol=1e-3)


def test_loo_matches_brute_force():
    X, y = priors_data(n=8)
    net = relu_net()
    gp = nb.GaussianProcess(net, X, noise=0.2, jitter=0.0)
    loo = np.asarray(gp.loo_log_likelihood(y))
    for i in range(8):
        keep = np.arange(8) != i
        gpi = nb.GaussianProcess(net, X[keep], noise=0.2, jitter=0.0)
        pred = gpi.condition(y[keep], X[i : i + 1], include_noise=True)
        want = scipy.stats.norm(float(pred.mean[0]), float(np.sqrt(pred.variance[0]))).logpdf(
            float(y[i])
        )
        np.testing.assert_allclose(loo[i], want, rtol=2e-3)


def test_pytree_jit_vmap_and_handlers():
    X, y = priors_data()
    gp = nb.GaussianProcess(relu_net(), X, noise=0.1)
    leaves, tdef = jax.tree_util.tree_flatten(gp)
    gp2 = jax.tree_util.tree_unflatten(tdef, leaves)
    np.testing.assert_allclose(gp2.log_prob(y), gp.log_prob(y))
    np.testing.assert_allclose(jax.jit(lambda d: d.log_prob(y))(gp), gp.log_prob(y), rtol=1e-5)

    def lp(w):
        return nb.GaussianProcess(relu_net(w=w), X, noise=0.1).log_prob(y)

    ws = jnp.array([1.0, 1.5, 2.0])
    np.testing.assert_allclose(jax.vmap(lp)(ws), [lp(w) for w in ws], rtol=1e-4)

    def model():
        w = numpyro.sample("w", dist.LogNormal(0.0, 0.3))
        numpyro.sample("y", nb.GaussianProcess(relu_net(w=w), X, noise=0.1), obs=y)

    tr = handlers.trace(handlers.seed(model, 0)).get_trace()
    assert isinstance(tr["y"]["fn"], nb.GaussianProcess) and tr["y"]["is_observed"]
    sub = handlers.trace(handlers.substitute(handlers.seed(model, 0), data={"w": 1.5})).get_trace()
    np.testing.assert_allclose(sub["y"]["fn"].log_prob(y), lp(1.5), rtol=1e-5)
    cond = handlers.trace(handlers.condition(handlers.seed(model, 0), data={"w": 2.0})).get_trace()
    assert cond["w"]["is_observed"] and float(cond["w"]["value"]) == 2.0


def test_latent_gp_whitened_and_sparse_agree_when_z_is_x():
    X, _ = priors_data(n=10)
    net = relu_net()

    def exact():
        return nb.priors.latent_gp("f", net, X)

    def sparse():
        return nb.priors.sparse_latent_gp("f", net, X, X)

    v = jax.random.normal(KEY, (1, 10))
    fe = handlers.substitute(handlers.seed(exact, 0), data={"f_whitened": v})()
    fs = handlers.substitute(handlers.seed(sparse, 0), data={"f_u_whitened": v})()
    np.testing.assert_allclose(fe, fs, rtol=2e-3, atol=2e-3)
    tr = handlers.trace(handlers.seed(exact, 0)).get_trace()
    assert set(tr) == {"f_whitened", "f"}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kernel="rbf"), "kernel"),
        (dict(noise=-0.1), "noise"),
        (dict(X=np.ones((4, 2, 2))), "X"),
        (dict(X=np.array([[0.0, np.nan]])), "X"),
        (dict(num_outputs=0), "num_outputs"),
        (dict(net="relu"), "net"),
    ],
)
def test_bad_input_at_construction(kwargs, match):
    X, _ = priors_data()
    args = dict(net=relu_net(), X=X)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        nb.GaussianProcess(**args)


def test_bad_observations():
    X, y = priors_data()
    gp = nb.GaussianProcess(relu_net(), X, noise=0.1)
    with pytest.raises(ValueError, match="shape"):
        gp.condition(y[:5], X)
    with pytest.raises(ValueError, match="y"):
        gp.condition(y.at[0].set(jnp.nan), X)
    with pytest.raises(ValueError, match="network"):
        nb.GaussianProcess(stax.serial(stax.Dense(3)), X)


def _one_w_model(X, y=None):
    w = numpyro.sample("w", dist.LogNormal(0.0, 0.3))
    numpyro.sample("y", nb.GaussianProcess(relu_net(w=w, depth=1), X, noise=0.1), obs=y)


@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey], ids=["typed", "legacy"])
def test_posterior_predictive_accepts_typed_and_legacy_keys(make_key):
    X, y = priors_data(n=6)
    samples = {"w": jnp.array([1.0, 1.5, 2.0])}
    Xs = X[:2] + 0.1
    out = nb.priors.posterior_predictive(_one_w_model, samples, make_key(2), Xs, X, y)
    assert out.shape == (3, 2) and bool(jnp.all(jnp.isfinite(out)))
    # one key, two representations: the same stream
    other = nb.priors.posterior_predictive(_one_w_model, samples, jax.random.key(2), Xs, X, y)
    np.testing.assert_allclose(out, other, rtol=1e-6)
    with pytest.raises(ValueError, match="one PRNG key"):
        nb.priors.posterior_predictive(
            _one_w_model, samples, jax.random.split(make_key(2), 2), Xs, X, y
        )
    gp = nb.GaussianProcess(relu_net(depth=1), X, noise=0.1)
    assert gp.sample(make_key(0), (2,)).shape == (2, 6)


def test_nan_y_and_wrong_length_noise_are_clear_errors():
    X, y = priors_data()
    gp = nb.GaussianProcess(relu_net(depth=1), X, noise=0.1)
    with pytest.raises(ValueError, match="non-finite"):
        gp.log_prob(y.at[3].set(jnp.nan))
    with pytest.raises(ValueError, match=r"noise.*\(12,\)"):
        nb.GaussianProcess(relu_net(depth=1), X, noise=jnp.full(5, 0.1))
    per_point = nb.GaussianProcess(relu_net(depth=1), X, noise=jnp.full(12, 0.1))
    np.testing.assert_allclose(per_point.log_prob(y), gp.log_prob(y), rtol=1e-5)

    def lp(y, check):
        return nb.GaussianProcess(relu_net(depth=1), X, noise=0.1, validate_args=check).log_prob(y)

    bad = y.at[0].set(jnp.nan)
    assert jnp.isnan(jax.jit(lp, static_argnums=1)(bad, None))  # default: no host check
    with pytest.raises(Exception, match="non-finite"):
        jax.block_until_ready(jax.jit(lp, static_argnums=1)(bad, True))


def _group_nets(ws, b=0.1):
    return jax.vmap(lambda w: relu_net(w=w, b=b, depth=1))(jnp.asarray(ws))


def test_batched_gp_is_one_gp_per_group():
    ws = [0.8, 1.5, 2.2]
    X = jax.random.normal(KEY, (3, 7, 2))
    Y = jnp.sin(X[..., 0])
    Xs = X[:, :2] + 0.3
    gp = nb.GaussianProcess(_group_nets(ws), X, noise=jnp.array([0.1, 0.2, 0.3]), mean=0.1)
    assert gp.batch_shape == (3,) and gp.event_shape == (7,)
    post = gp.condition(Y, Xs, include_noise=True)
    assert post.batch_shape == (3,) and post.sample(KEY, (4,)).shape == (4, 3, 2)
    for g, w in enumerate(ws):
        one = nb.GaussianProcess(relu_net(w=w, depth=1), X[g], noise=0.1 * (g + 1), mean=0.1)
        np.testing.assert_allclose(gp.log_prob(Y)[g], one.log_prob(Y[g]), rtol=1e-5)
        np.testing.assert_allclose(
            gp.loo_log_likelihood(Y)[g], one.loo_log_likelihood(Y[g]), rtol=1e-4, atol=1e-5
        )
        p1 = one.condition(Y[g], Xs[g], include_noise=True)
        np.testing.assert_allclose(post.mean[g], p1.mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(post.covariance[g], p1.covariance, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(G=3, n"):
        nb.GaussianProcess(_group_nets(ws), X[0])
    with pytest.raises(ValueError, match="per group"):
        nb.GaussianProcess(_group_nets(ws), X, noise=jnp.ones(4))


def test_mask_drops_padding_exactly():
    group = np.array([0, 1, 1, 0, 1, 1, 2])
    X = np.asarray(jax.random.normal(KEY, (7, 2)))
    y = np.sin(X[:, 0])
    Xp, yp, mask = nb.priors.pad_groups(group, X, y)
    assert Xp.shape == (3, 4, 2) and mask.sum(axis=1).tolist() == [2, 4, 1]
    np.testing.assert_array_equal(yp[1][mask[1]], y[group == 1])  # order kept
    ws = [1.0, 1.3, 1.7]
    gp = nb.GaussianProcess(_group_nets(ws), Xp, noise=0.2, point_mask=mask)
    lp, loo = gp.log_prob(yp.at[~mask].set(jnp.nan)), gp.loo_log_likelihood(yp)
    for g, w in enumerate(ws):
        one = nb.GaussianProcess(relu_net(w=w, depth=1), X[group == g], noise=0.2)
        np.testing.assert_allclose(lp[g], one.log_prob(y[group == g]), rtol=1e-5)
        np.testing.assert_allclose(
            loo[g][mask[g]], one.loo_log_likelihood(y[group == g]), rtol=1e-4
        )
        np.testing.assert_allclose(
            gp.condition(yp, Xp[:, :1]).mean[g],
            one.condition(y[group == g], Xp[g, :1]).mean,
            rtol=1e-4,
            atol=1e-5,
        )
    assert float(jnp.sum(jnp.where(mask, 0.0, loo) ** 2)) == 0.0
    with pytest.raises(ValueError, match="mask"):
        nb.GaussianProcess(_group_nets(ws), Xp, noise=0.2, point_mask=np.ones((3, 4)))


def test_gaussian_process_and_exact_gp_share_one_core():
    X, y = priors_data()
    net = relu_net(depth=1)
    Xs = X[:3] + 0.2
    gp = nb.GaussianProcess(net, X, kernel="ntk", noise=0.1, mean=0.3)
    ex = nb.gp.ExactGP(net, X, y, noise=0.1, mean=0.3, kind="ntk")
    np.testing.assert_array_equal(gp.scale_tril, ex.L)  # the same factorisation
    np.testing.assert_allclose(gp.log_prob(y), ex.log_marginal_likelihood(), rtol=1e-6)
    np.testing.assert_allclose(gp.loo_log_likelihood(y), ex.loo_log_predictive(), rtol=1e-6)
    mean, cov = ex.predict(Xs, full_cov=True)
    post = gp.condition(y, Xs)
    np.testing.assert_allclose(post.mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(post.covariance, cov, rtol=1e-5, atol=1e-6)


def test_numpyro_mask_handler_reaches_the_distribution():
    """numpyro.handlers.mask calls Distribution.mask(); padding uses `point_mask`, so the
    handler still finds the method (a data field named `mask` once shadowed it)."""
    X, y = priors_data()
    gp = nb.GaussianProcess(relu_net(), X, noise=0.1)

    def model():
        numpyro.sample("y", gp, obs=y)

    tr = handlers.trace(handlers.mask(handlers.seed(model, 0), mask=False)).get_trace()
    assert float(tr["y"]["fn"].log_prob(y)) == 0.0


# --- posterior sampling at small noise, mean outputs, argument names ------------------


def _deep_relu(w=1.5):
    return stax.serial(
        stax.Dense(512, W_std=w, b_std=0.1),
        stax.Relu(),
        stax.Dense(512, W_std=w, b_std=0.1),
        stax.Relu(),
        stax.Dense(1, W_std=w, b_std=0.1),
    )


def _small_noise_problem(dtype):
    X = jnp.linspace(-2, 2, 60, dtype=dtype)[:, None]
    return X, jnp.sin(3 * X[:, 0]), jnp.linspace(-2.5, 2.5, 101, dtype=dtype)[:, None]


def _deep_model(X, y=None):
    w = numpyro.sample("W_std", dist.LogNormal(0.3, 0.4))
    numpyro.sample("y", nb.GaussianProcess(_deep_relu(w), X, noise=1e-4), obs=y)


def test_posterior_draws_at_small_noise_are_finite_with_the_posterior_moments():
    """float32, noise 1e-4: the posterior covariance K** - V^T V has a mean diagonal ~4e-5
    but round-off of the prior's size (~6); a jitter relative to its own diagonal never
    factorised it (all-NaN draws under jit, NotPSDError eagerly). Scaled by the prior
    variance, the ladder factorises it with a perturbation tiny against the prior."""
    X, y, Xs = _small_noise_problem(np.float32)
    s = 400
    samples = {"W_std": jnp.full((s,), 1.5)}
    draws = nb.priors.posterior_predictive(_deep_model, samples, KEY, Xs, X, y)
    draws = np.asarray(draws, np.float64)
    assert draws.shape == (s, 101) and np.all(np.isfinite(draws))
    # The draws' kernel comes from the XLA program (W_std is traced in the model); the
    # moments are taken from the same program: at noise 1e-4 in float32 the posterior
    # mean's conditioning turns the ~2-ulp difference of the native kernel (which a
    # concrete W_std gets on CPU) into 2-3e-2, six times the tolerance below.
    with stax.native_disabled():
        post = nb.GaussianProcess(_deep_relu(), X, noise=1e-4).condition(y, Xs)
        with pytest.warns(nb.gp.NumericalWarning, match="`scale`"):
            L = np.asarray(post.scale_tril, np.float64)
        post_mean = np.asarray(post.mean)
        post_var = np.asarray(post.variance, np.float64)
    prior_var = float(jnp.mean(jnp.diag(_deep_relu().kernel_fn(Xs, None, "nngp"))))
    effective = np.sum(L**2, axis=1)  # diag(L L^T) = posterior variance + jitter
    added = effective - post_var
    assert np.all(np.abs(added) <= 1e-4 * prior_var)  # at most the 1e-4 rung x prior scale
    sd = np.sqrt(effective)
    # mean: 5 standard errors per point; variance: 5 sd of a sample variance of s normal
    # draws, var * sqrt(2 / (s - 1)). 2 x 101 two-sided 5-sigma checks: false alarm < 1.2e-4
    assert np.all(np.abs(draws.mean(0) - post_mean) <= 5 * sd / np.sqrt(s))
    emp = draws.var(0, ddof=1)
    assert np.all(np.abs(emp - effective) <= 5 * effective * np.sqrt(2 / (s - 1)))
    # the jitter is what separates the draws' variance from the posterior's
    assert np.all(np.abs(emp - post_var) <= 5 * effective * np.sqrt(2 / (s - 1)) + np.abs(added))


def test_posterior_draws_in_float64_equal_a_numpy_cholesky():
    with jax.enable_x64(True):
        X, y, Xs = _small_noise_problem(np.float64)
        net = _deep_relu()
        post = nb.GaussianProcess(net, X, noise=1e-4).condition(y, Xs)
        K = np.asarray(net.kernel_fn(X, None, "nngp")) + 1e-4 * np.eye(60)
        Ks = np.asarray(net.kernel_fn(Xs, X, "nngp"))
        Kss = np.asarray(net.kernel_fn(Xs, None, "nngp"))
        mean = Ks @ np.linalg.solve(K, np.asarray(y))
        cov = Kss - Ks @ np.linalg.solve(K, Ks.T)
        # base float64 jitter 1e-10 x the prior's mean diagonal
        L = np.linalg.cholesky(cov + 1e-10 * np.mean(np.diag(Kss)) * np.eye(101))
        draws = np.asarray(post.sample(KEY, (3,)))
        eps = np.asarray(jax.random.normal(KEY, (3, 101), jnp.float64))
        want = mean + eps @ L.T
        np.testing.assert_allclose(
            draws, want, rtol=1e-5, atol=1e-5 * np.sqrt(np.max(np.diag(Kss)))
        )


def test_posterior_predictive_refuses_non_finite_draws():
    from ntk_bayes.priors._predict import _check_draws

    _check_draws(jnp.zeros((2, 3, 4)), 2)  # finite: silent
    bad = jnp.zeros((2, 3, 4)).at[1, 2, 0].set(jnp.nan)
    with pytest.raises(FloatingPointError, match=r"1 of 6 .*\(1, 2\).*float64.*noise"):
        _check_draws(bad, 2)


def test_callable_mean_accepts_what_exact_gp_accepts(tol):
    X, y = priors_data()
    net = relu_net(depth=1)
    Xs = X[:3] + 0.2
    col = lambda x: 0.1 * x[:, :1]  # noqa: E731  (N, 1)
    for mean in (col, lambda x: 0.1 * x[:, 0]):
        gp = nb.GaussianProcess(net, X, noise=0.1, mean=mean)
        ex = nb.gp.ExactGP(net, X, y, noise=0.1, mean=mean)
        np.testing.assert_allclose(gp.log_prob(y), ex.log_marginal_likelihood(), rtol=1e-5)
        np.testing.assert_allclose(
            gp.condition(y, Xs).mean, ex.predict(Xs)[0], rtol=1e-4, atol=1e-5
        )
    # (N, K) with K outputs: one mean per column
    Y = jnp.stack([y, -y])
    two = lambda x: jnp.stack([0.1 * x[:, 0], -0.2 * x[:, 1]], 1)  # noqa: E731
    gk = nb.GaussianProcess(net, X, noise=0.1, mean=two, num_outputs=2)
    ek = nb.gp.ExactGP(net, X, Y.T, noise=0.1, mean=two)
    np.testing.assert_allclose(gk.log_prob(Y).sum(), ek.log_marginal_likelihood(), rtol=1e-5)
    np.testing.assert_allclose(gk.condition(Y, Xs).mean.T, ek.predict(Xs)[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"`mean` returned shape \(12, 2\).*\(12,\) or \(12, 1\)"):
        nb.GaussianProcess(net, X, noise=0.1, mean=lambda x: x)


def test_argument_names_in_errors_and_numpy_jitter():
    X, y = priors_data()
    net = relu_net(depth=1)
    with pytest.raises(ValueError, match="`X` has no points"):
        nb.GaussianProcess(net, X[:0], noise=0.1)
    gp = nb.GaussianProcess(net, X, noise=0.1)
    with pytest.raises(ValueError, match="`X_test` has no points"):
        gp.condition(y, X[:0])
    ref = gp.log_prob(y)
    for j in (np.float32(0.0), jnp.asarray(0.0), 0):
        np.testing.assert_allclose(
            nb.GaussianProcess(net, X, noise=0.1, jitter=j).log_prob(y), ref, rtol=1e-3
        )
    with pytest.raises(ValueError, match="`jitter`"):
        nb.GaussianProcess(net, X, noise=0.1, jitter=-1e-4)
    with pytest.raises(TypeError, match="`jitter`"):
        nb.GaussianProcess(net, X, noise=0.1, jitter=np.ones(2))

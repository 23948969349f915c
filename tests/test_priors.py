"""The NumPyro plugin: GaussianProcess distribution, conditioning, LOO, handlers, NUTS/SVI."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.stats
from _recovery import assert_recovered
from numpyro import handlers
from numpyro.distributions.gof import auto_goodness_of_fit
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

import ntk_bayes as nb
from ntk_bayes import stax

KEY = jax.random.PRNGKey(0)


def relu_net(w=1.5, b=0.1, depth=2):
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(512, W_std=w, b_std=b), stax.Relu()]
    return stax.serial(*layers, stax.Dense(1, W_std=w, b_std=b))


def data(n=12, d=2, seed=0):
    X = jax.random.normal(jax.random.PRNGKey(seed), (n, d))
    y = jnp.sin(X[:, 0]) + 0.3 * X[:, 1]
    return X, y


def test_log_prob_equals_scipy(dtype):
    X, y = data()
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
    X, y = data()
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
    X, _ = data(n=3)
    gp = nb.GaussianProcess(relu_net(), X, noise=0.3)
    s = gp.sample(KEY, (20000,))
    gof = auto_goodness_of_fit(
        np.asarray(s, np.float64), np.exp(np.asarray(gp.log_prob(s), np.float64)), dim=3
    )
    assert gof > 1e-3
    np.testing.assert_allclose(np.cov(np.asarray(s).T), gp.covariance, rtol=0.05, atol=0.02)


def test_condition_is_the_gp_posterior(tol):
    X, y = data()
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
    X, y = data(n=8)
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
    X, y = data()
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


def _hyper_model(X, y=None, num_outputs=None):
    w = numpyro.sample("W_std", dist.LogNormal(0.3, 0.4))
    b = numpyro.sample("b_std", dist.HalfNormal(0.5))
    noise = numpyro.sample("noise", dist.HalfNormal(0.5))
    net = relu_net(w=w, b=b)
    numpyro.sample("y", nb.GaussianProcess(net, X, noise=noise, num_outputs=num_outputs), obs=y)


def test_nuts_and_svi_over_network_hyperparameters():
    X, y = data(n=20)
    pe = numpyro.infer.util.initialize_model(KEY, _hyper_model, model_args=(X, y))[0]
    grads = jax.grad(lambda p: numpyro.infer.util.potential_energy(_hyper_model, (X, y), {}, p))(
        pe.z
    )
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads.values())
    mcmc = MCMC(NUTS(_hyper_model), num_warmup=100, num_samples=100, progress_bar=False)
    mcmc.run(KEY, X, y)
    s = mcmc.get_samples()
    assert s["W_std"].shape == (100,) and bool(jnp.all(jnp.isfinite(s["noise"])))
    assert int(mcmc.get_extra_fields()["diverging"].sum()) < 10
    svi = SVI(_hyper_model, AutoNormal(_hyper_model), numpyro.optim.Adam(0.05), Trace_ELBO())
    res = svi.run(KEY, 200, X, y, progress_bar=False)
    assert bool(jnp.isfinite(res.losses[-1])) and res.losses[-1] < res.losses[0]

    # Posterior predictive integrating over hyperparameters, two ways that must agree.
    Xs = jnp.linspace(-2, 2, 7)[:, None] * jnp.ones((1, 2))
    draws = nb.priors.posterior_predictive(_hyper_model, mcmc, KEY, Xs, X, y)
    assert draws.shape == (1, 100, 7)

    def pred_model(X, y, Xs):
        w = numpyro.sample("W_std", dist.LogNormal(0.3, 0.4))
        b = numpyro.sample("b_std", dist.HalfNormal(0.5))
        noise = numpyro.sample("noise", dist.HalfNormal(0.5))
        gp = nb.GaussianProcess(relu_net(w=w, b=b), X, noise=noise)
        numpyro.sample("y", gp, obs=y)
        numpyro.sample("f_test", gp.condition(y, Xs))

    pp = Predictive(pred_model, posterior_samples=s)(KEY, X, y, Xs)["f_test"]
    assert pp.shape == (100, 7)
    np.testing.assert_allclose(pp.mean(0), draws[0].mean(0), atol=0.25)
    loo = nb.priors.loo_log_likelihood(_hyper_model, mcmc, X, y)
    assert loo.shape == (1, 100, 20) and bool(jnp.all(jnp.isfinite(loo)))


def test_latent_gp_whitened_and_sparse_agree_when_z_is_x():
    X, _ = data(n=10)
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


def test_latent_gp_bernoulli_classification_by_svi():
    X = jax.random.normal(KEY, (60, 2))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(jnp.int32)
    net = stax.serial(stax.Dense(64, W_std=1.5, b_std=0.1), stax.Erf(), stax.Dense(1, W_std=2.0))

    def model(X, y=None):
        Z = X[::3]
        f, plate, idx = nb.priors.sparse_latent_gp("f", net, X, Z, subsample_size=30)
        with plate:
            numpyro.sample("y", dist.Bernoulli(logits=f), obs=None if y is None else y[idx])

    svi = SVI(model, AutoNormal(model), numpyro.optim.Adam(0.05), Trace_ELBO())
    res = svi.run(KEY, 600, X, y, progress_bar=False)
    params = res.params
    post = Predictive(
        model, guide=svi.guide, params=params, num_samples=50, return_sites=["f_u_whitened"]
    )(KEY, X)
    u = post["f_u_whitened"].mean(0)
    f = handlers.substitute(
        handlers.seed(lambda: nb.priors.sparse_latent_gp("f", net, X, X[::3]), 0),
        data={"f_u_whitened": u},
    )()
    acc = float(jnp.mean((f > 0) == (y == 1)))
    assert acc > 0.85, acc


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
    X, _ = data()
    args = dict(net=relu_net(), X=X)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        nb.GaussianProcess(**args)


def test_bad_observations():
    X, y = data()
    gp = nb.GaussianProcess(relu_net(), X, noise=0.1)
    with pytest.raises(ValueError, match="shape"):
        gp.condition(y[:5], X)
    with pytest.raises(ValueError, match="y"):
        gp.condition(y.at[0].set(jnp.nan), X)
    with pytest.raises(ValueError, match="network"):
        nb.GaussianProcess(stax.serial(stax.Dense(3)), X)


def _simulate(key, w, b, noise, n=40, k=6):
    X = jax.random.uniform(key, (n, 2), minval=-2, maxval=2)
    gp = nb.GaussianProcess(relu_net(w=w, b=b), X, noise=noise, num_outputs=k)
    return X, gp.sample(jax.random.fold_in(key, 1))


@pytest.mark.slow
@pytest.mark.parametrize("truth", [(1.2, 0.3, 0.05), (1.6, 0.1, 0.2), (2.0, 0.5, 0.1)])
def test_hyperparameter_recovery_from_prior_simulations(truth):
    # An independent dataset per truth (one key for all made their errors alike).
    X, Y = _simulate(jax.random.fold_in(jax.random.PRNGKey(7), int(1000 * truth[0])), *truth)
    mcmc = MCMC(
        NUTS(_hyper_model),
        num_warmup=300,
        num_samples=400,
        num_chains=2,
        progress_bar=False,
        chain_method="sequential",
    )
    mcmc.run(jax.random.PRNGKey(1), X, Y, num_outputs=Y.shape[0])
    s = mcmc.get_samples(group_by_chain=True)
    assert int(mcmc.get_extra_fields()["diverging"].sum()) == 0
    for name, t in zip(("W_std", "b_std", "noise"), truth, strict=True):
        assert_recovered(name, t, s[name])

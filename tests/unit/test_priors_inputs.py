"""Bad input to the NumPyro helpers: a clear error naming the argument, never a silent
wrong number (latent GPs, hyperpriors, padding, GP means)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _nets import priors_data, relu_net
from numpyro import handlers

import ntk_bayes as nb
from ntk_bayes import stax


def _latent(**kw):
    return handlers.seed(lambda: nb.priors.latent_gp("f", **kw), 0)()


def _sparse(**kw):
    return handlers.seed(lambda: nb.priors.sparse_latent_gp("f", **kw), 0)()


def test_latent_gp_vector_mean_is_per_point_for_every_output():
    """A (N,) mean is the mean at each point, shared by all K columns; with K == N it
    was added per column instead (mean[k] to column k), silently."""
    X, _ = priors_data(n=4)
    net = relu_net(depth=1)
    mean = jnp.array([0.0, 10.0, 20.0, 30.0])
    v = jax.random.normal(jax.random.PRNGKey(1), (4, 4))

    def f(m):
        fn = handlers.substitute(
            lambda: nb.priors.latent_gp("f", net, X, num_outputs=4, mean=m), data={"f_whitened": v}
        )
        return handlers.seed(fn, 0)()

    centred = f(0.0)  # L v, one column per output
    assert centred.shape == (4, 4)
    np.testing.assert_allclose(
        f(mean) - centred, jnp.broadcast_to(mean[:, None], (4, 4)), atol=1e-4
    )


@pytest.mark.parametrize("shape", [(3,), (5,), (4, 2), (2, 4, 1)])
def test_latent_gp_refuses_a_mean_of_the_wrong_shape(shape):
    """A (3,) mean for 4 points used to be broadcast to (4, 3) and its first entry kept."""
    X, _ = priors_data(n=4)
    with pytest.raises(ValueError, match="`mean`"):
        _latent(net=relu_net(depth=1), X=X, mean=jnp.ones(shape))


def test_latent_gp_accepts_scalar_point_and_column_means():
    X, _ = priors_data(n=4)
    net = relu_net(depth=1)
    assert _latent(net=net, X=X, mean=0.5).shape == (4,)
    assert _latent(net=net, X=X, mean=jnp.ones(4)).shape == (4,)
    assert _latent(net=net, X=X, mean=jnp.ones((4, 1))).shape == (4,)
    assert _latent(net=net, X=X, num_outputs=3, mean=jnp.ones((4, 3))).shape == (4, 3)
    # a traced (sampled) scalar mean still works
    out = jax.jit(lambda m: _latent(net=net, X=X, mean=m))(1.0)
    assert out.shape == (4,)


def test_latent_gp_refuses_non_finite_mean():
    X, _ = priors_data(n=4)
    with pytest.raises(ValueError, match="`mean`"):
        _latent(net=relu_net(depth=1), X=X, mean=jnp.nan)
    with pytest.raises(ValueError, match="`mean`"):
        _sparse(net=relu_net(depth=1), X=X, Z=X[:2], mean=jnp.array([0.0, np.inf, 0.0, 0.0]))


@pytest.mark.parametrize("k", [0, -1, True, 2.0, "2"])
@pytest.mark.parametrize("helper", ["latent", "sparse"])
def test_latent_gp_num_outputs_must_be_a_positive_int(k, helper):
    """num_outputs=0 returned an (N, 0) array and True one column, silently."""
    X, _ = priors_data(n=4)
    with pytest.raises(ValueError, match="num_outputs"):
        if helper == "latent":
            _latent(net=relu_net(depth=1), X=X, num_outputs=k)
        else:
            _sparse(net=relu_net(depth=1), X=X, Z=X[:2], num_outputs=k)


def test_latent_gp_num_outputs_accepts_numpy_ints():
    X, _ = priors_data(n=4)
    assert _latent(net=relu_net(depth=1), X=X, num_outputs=np.int64(2)).shape == (4, 2)


@pytest.mark.parametrize("helper", ["latent", "sparse"])
def test_latent_gp_refuses_what_gaussian_process_refuses(helper):
    """A network with two outputs per point, a non-network, a batched network: the
    latent helpers accepted the first silently (the kernel traces the output axis) and
    failed on the others with AttributeError or a broadcasting message."""
    X, _ = priors_data(n=4)

    def call(net, X=X):
        if helper == "latent":
            return _latent(net=net, X=X)
        return _sparse(net=net, X=X, Z=X[..., :2, :])

    with pytest.raises(ValueError, match="Dense\\(1\\)"):
        call(stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(2)))
    with pytest.raises(TypeError, match="`net`"):
        call(lambda x: x)
    nets = jax.vmap(lambda w: relu_net(w=w, depth=1))(jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="batched"):
        call(nets, jnp.stack([X, X]))


@pytest.mark.parametrize("size", [0, -2, 5, 2.0])
def test_sparse_latent_gp_subsample_size_is_checked(size):
    """0 gave an IndexError; more than N a NumPyro warning and the full data."""
    X, _ = priors_data(n=4)
    with pytest.raises(ValueError, match="subsample_size"):
        _sparse(net=relu_net(depth=1), X=X, Z=X[:2], subsample_size=size)


@pytest.mark.parametrize(
    "mean",
    [jnp.nan, jnp.array([0.0, jnp.nan] + [0.0] * 10), lambda x: jnp.full(x.shape[0], jnp.inf)],
    ids=["scalar", "vector", "callable"],
)
def test_gaussian_process_refuses_a_non_finite_mean(mean):
    """A NaN mean gave log_prob NaN with no error, though NaN in y is refused."""
    X, _ = priors_data()
    with pytest.raises(ValueError, match="`mean"):
        nb.GaussianProcess(relu_net(depth=1), X, noise=0.1, mean=mean)  # `mean` or `mean(X)`


def test_group_log_normal_accepts_numpy_ints_and_checks_its_scales():
    """num_groups = county.max() + 1 is a NumPy integer: it was refused as not an int."""
    w = handlers.seed(lambda: nb.priors.group_log_normal("w", np.int64(3)), 0)()
    assert w.shape == (3,)
    for kw in (dict(tau_scale=float("nan")), dict(loc_scale=0.0), dict(loc=float("inf"))):
        name = next(iter(kw))
        with pytest.raises(ValueError, match=f"`{name}`"):
            handlers.seed(lambda kw=kw: nb.priors.group_log_normal("w", 3, **kw), 0)()


@pytest.mark.parametrize("num_groups", [-1, 1.5, True])
def test_pad_groups_num_groups_is_checked(num_groups):
    with pytest.raises(ValueError, match="num_groups"):
        nb.priors.pad_groups(np.array([0, 0]), np.ones(2), num_groups=num_groups)


def _two_site_model(X, y=None):
    import numpyro
    import numpyro.distributions as dist

    w = numpyro.sample("w", dist.LogNormal(0.0, 0.3))
    s2 = numpyro.sample("noise", dist.HalfNormal(0.3))
    numpyro.sample("y", nb.GaussianProcess(relu_net(w=w, depth=1), X, noise=s2), obs=y)


@pytest.mark.parametrize("fn", ["posterior_predictive", "loo_log_likelihood"])
def test_replay_refuses_samples_without_every_latent_site(fn):
    """A site missing from `samples` (a typo, a forgotten key) was drawn from its prior
    with one fixed seed, the same value for every posterior draw, silently."""
    X, y = priors_data(n=6)
    samples = {"w": jnp.array([1.0, 1.5, 2.0]), "nois": jnp.full(3, 0.1)}
    with pytest.raises(ValueError, match="'noise'"):
        if fn == "posterior_predictive":
            nb.priors.posterior_predictive(_two_site_model, samples, jax.random.key(0), X[:2], X, y)
        else:
            nb.priors.loo_log_likelihood(_two_site_model, samples, X, y)


def test_replay_refuses_draws_of_different_lengths_and_chain_grouped_dicts():
    X, y = priors_data(n=6)
    ragged = {"w": jnp.ones(3), "noise": jnp.full(2, 0.1)}
    with pytest.raises(ValueError, match="same number of draws"):
        nb.priors.posterior_predictive(_two_site_model, ragged, jax.random.key(0), X[:2], X, y)
    grouped = {"w": jnp.ones((2, 3)), "noise": jnp.full((2, 3), 0.1)}  # (chain, draw)
    with pytest.raises(ValueError, match="group_by_chain"):
        nb.priors.loo_log_likelihood(_two_site_model, grouped, X, y)
    # extra keys (deterministic sites in mcmc.get_samples()) are fine
    ok = {"w": jnp.ones(3), "noise": jnp.full(3, 0.1), "extra": jnp.zeros((3, 4))}
    assert nb.priors.loo_log_likelihood(_two_site_model, ok, X, y).shape == (3, 6)


def test_replicates_noise_is_checked():
    rep = nb.priors.collapse_replicates(np.array([[0.0], [0.0], [1.0]]), np.array([1.0, 2.0, 3.0]))
    for bad in (-1.0, np.nan, 0.0):
        with pytest.raises(ValueError, match="`noise`"):
            rep.log_factor(bad)
    with pytest.raises(ValueError, match="`noise`"):
        rep.noise(-1.0)
    with pytest.raises(ValueError, match=r"`noise`.*\(2,\)"):
        rep.noise(jnp.ones(3))  # one per original observation: not what it takes
    np.testing.assert_allclose(rep.noise(jnp.array([0.2, 0.4])), [0.1, 0.4])
    with pytest.raises(ValueError, match="no observations"):
        nb.priors.collapse_replicates(np.zeros((0, 1)), np.zeros(0))


def _expanded_model(X, Y=None):
    """K columns of a (batched) GP observed through ``gp.expand`` (examples/hierarchical.py)."""
    import numpyro
    import numpyro.distributions as dist

    w = numpyro.sample("w", dist.LogNormal(0.0, 0.3))
    if X.ndim == 3:
        nets = jax.vmap(lambda wg: relu_net(w=wg, depth=1))(jnp.stack([w, 1.5 * w]))
    else:
        nets = relu_net(w=w, depth=1)
    gp = nb.GaussianProcess(nets, X, noise=1e-3)
    numpyro.sample("y", gp.expand((Y.shape[0],) + gp.batch_shape), obs=Y)


@pytest.mark.parametrize("grouped", [False, True], ids=["one", "groups"])
def test_replay_reads_an_expanded_gaussian_process_site(grouped):
    """`gp.expand((K, G))` is how the hierarchical example observes K columns per group:
    posterior_predictive and loo_log_likelihood refused the site as not a GP."""
    X, _ = priors_data(n=6)
    if grouped:
        X = jnp.stack([X, X + 0.5])  # (G=2, 6, 2)
    rng = np.random.default_rng(0)
    Y = jnp.asarray(rng.standard_normal((3,) + X.shape[:-1]), jnp.float32)  # (K, [G,] n)
    samples = {"w": jnp.array([1.0, 1.4])}
    loo = nb.priors.loo_log_likelihood(_expanded_model, samples, X, Y)
    pp = nb.priors.posterior_predictive(_expanded_model, samples, jax.random.key(0), X, X, Y)
    assert loo.shape == (2,) + Y.shape and pp.shape == (2,) + Y.shape
    for s in range(2):  # each column is its own GP: the base distribution's answers
        w = samples["w"][s]
        nets = jax.vmap(lambda wg: relu_net(w=wg, depth=1))(jnp.stack([w, 1.5 * w]))
        gp = nb.GaussianProcess(nets if grouped else relu_net(w=w, depth=1), X, noise=1e-3)
        for k in range(3):
            # (the sampled w is traced in the model: the XLA program; here w is a number:
            # the native kernel on CPU; two float32 roundings through the LOO solve)
            want = gp.loo_log_likelihood(Y[k])
            np.testing.assert_allclose(loo[s, k], want, rtol=1e-4, atol=1e-4)
            # posterior sd <= sqrt(noise) = 0.032 at the training inputs: 4.5 sd over 72
            # draws, false alarm < 0.05%
            np.testing.assert_allclose(pp[s, k], gp.condition(Y[k]).mean, atol=4.5 * 1e-3**0.5)


def test_condition_refuses_a_callable_mean_that_is_not_finite_at_x_test():
    """The callable mean is checked at X; at X_test a NaN came back as the posterior mean."""
    X, y = priors_data()
    gp = nb.GaussianProcess(
        relu_net(depth=1), X, noise=0.1, mean=lambda x: jnp.where(x[:, 0] > 5.0, jnp.nan, 0.0)
    )
    with pytest.raises(ValueError, match=r"`mean\(X_test\)`"):
        gp.condition(y, X.at[0, 0].set(9.0))

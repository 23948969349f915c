"""NumPyro inference through GaussianProcess sites: NUTS and SVI over hyperparameters."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from _nets import hyper_model, priors_data, relu_net
from _stats import binomial_upper
from numpyro import handlers
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

import ntk_bayes as nb
from ntk_bayes import stax

KEY = jax.random.PRNGKey(0)


def test_nuts_and_svi_over_network_hyperparameters():
    X, y = priors_data(n=20)
    pe = numpyro.infer.util.initialize_model(KEY, hyper_model, model_args=(X, y))[0]
    grads = jax.grad(lambda p: numpyro.infer.util.potential_energy(hyper_model, (X, y), {}, p))(
        pe.z
    )
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads.values())
    mcmc = MCMC(NUTS(hyper_model), num_warmup=100, num_samples=100, progress_bar=False)
    mcmc.run(KEY, X, y)
    s = mcmc.get_samples()
    assert s["W_std"].shape == (100,) and bool(jnp.all(jnp.isfinite(s["noise"])))
    # A working sampler diverges on at most 1% of transitions; 100 draws (taken as
    # independent) then give at most Binomial(100, 0.01) divergences: false alarm < 1e-3.
    divergences = int(mcmc.get_extra_fields()["diverging"].sum())
    assert divergences <= binomial_upper(100, 0.01, 1e-3), divergences
    svi = SVI(hyper_model, AutoNormal(hyper_model), numpyro.optim.Adam(0.05), Trace_ELBO())
    res = svi.run(KEY, 200, X, y, progress_bar=False)
    assert bool(jnp.isfinite(res.losses[-1])) and res.losses[-1] < res.losses[0]

    # Posterior predictive integrating over hyperparameters, two ways that must agree.
    Xs = jnp.linspace(-2, 2, 7)[:, None] * jnp.ones((1, 2))
    draws = nb.priors.posterior_predictive(hyper_model, mcmc, KEY, Xs, X, y)
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
    loo = nb.priors.loo_log_likelihood(hyper_model, mcmc, X, y)
    assert loo.shape == (1, 100, 20) and bool(jnp.all(jnp.isfinite(loo)))


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


def test_sharded_chains_on_one_device_are_the_vectorized_chains():
    """With one local device ``sharded_chains`` vectorises all chains (``vmap`` of one
    chain; NumPyro's ``"vectorized"`` batches inside the sampler): each chain has the
    same key, so over the first iterations the draws agree to round-off (a deterministic
    computation: no false-alarm rate). The two-device split and the named axis are
    checked in e2e/test_chain_methods.py."""

    def model():
        numpyro.sample("z", dist.Normal(0.0, 1.0))

    draws = {}
    for method in ("vectorized", nb.priors.sharded_chains):
        mcmc = MCMC(NUTS(model), num_warmup=5, num_samples=5, num_chains=3,
                    chain_method=method, progress_bar=False)  # fmt: skip
        mcmc.run(KEY)
        draws[method] = np.asarray(mcmc.get_samples(group_by_chain=True)["z"])
    assert jax.local_device_count() == 1
    np.testing.assert_allclose(*draws.values(), rtol=1e-5, atol=1e-6)
    assert draws["vectorized"].shape == (3, 5)

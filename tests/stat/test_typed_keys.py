"""Every public function that takes a PRNG key accepts both kinds: a typed key
(``jax.random.key``, NumPyro's examples) and a legacy uint32 key (``PRNGKey``).

Both kinds of key built from the same seed carry the same threefry bits, so each call
must give the same numbers with either: a wrong-rank key, a split of the wrong kind or
a silent reinterpretation would change them or raise.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ntk_bayes as nb
from ntk_bayes import gp, stax, theory


def _net(width=32):
    return stax.serial(stax.Dense(width, W_std=1.3, b_std=0.1), stax.Relu(), stax.Dense(1))


X = jnp.linspace(-1.0, 1.0, 12).reshape(6, 2)
Y = jnp.sin(3.0 * X[:, 0])


def _monte_carlo(key):
    net = _net()
    return nb.monte_carlo_kernel_fn(net.init_fn, net.apply_fn, key, 4)(X, None, "nngp")


def _kmeans(key):
    return gp.kmeans_pp(key, X, 3)


def _exact_sample(key):
    return gp.ExactGP(_net(), X, Y, 0.05).sample(key, X[:3] + 0.1, n_samples=2)


def _gp_sample(key):
    return nb.GaussianProcess(_net(), X, noise=0.05).sample(key, (2,))


def _conditioned_sample(key):
    return nb.GaussianProcess(_net(), X, noise=0.05).condition(Y, X[:3] + 0.1).sample(key)


def _init(key):
    _, params = _net().init_fn(key, X.shape)
    return jax.tree_util.tree_leaves(params)[0]


def _finite_width(key):
    res = theory.finite_width_corrections(lambda n: _net(n), X[:4], [8, 16], key=key, n_seeds=2)
    return np.asarray(res.deviation)


def _posterior_predictive(key):
    def model(X, y=None):
        w = numpyro.sample("w", dist.LogNormal(0.0, 0.3))
        numpyro.sample("y", nb.GaussianProcess(_net_w(w), X, noise=0.05), obs=y)

    samples = {"w": jnp.asarray([0.9, 1.1])}
    return nb.priors.posterior_predictive(model, samples, key, X[:3] + 0.1, X, Y, site="y")


def _svgp(key):
    """Minibatch SVGP fit (shuffling) and a Monte Carlo predictive density (3 classes)."""
    labels = (jnp.arange(6) % 3).astype(jnp.int32)
    model = gp.SVGP(_net(), X[:3], gp.Categorical(3, num_samples=4), num_data=6)
    k_fit, k_pred = jax.random.split(key)
    model, params, _ = gp.fit_svgp(
        model, None, X, labels, key=k_fit, batch_size=3, num_epochs=2, quiet=True
    )
    return model.predict_log_density(params, X, labels, key=k_pred)


def _net_w(w):
    return stax.serial(stax.Dense(32, W_std=w, b_std=0.1), stax.Relu(), stax.Dense(1, W_std=w))


CALLS = {
    "monte_carlo_kernel_fn": _monte_carlo,
    "gp.kmeans_pp": _kmeans,
    "gp.ExactGP.sample": _exact_sample,
    "GaussianProcess.sample": _gp_sample,
    "ConditionedGP.sample": _conditioned_sample,
    "stax init_fn": _init,
    "theory.finite_width_corrections": _finite_width,
    "priors.posterior_predictive": _posterior_predictive,
    "gp.fit_svgp + SVGP.predict_log_density": _svgp,
}


@pytest.mark.parametrize("name", list(CALLS))
def test_typed_and_legacy_keys_give_the_same_draws(name):
    typed = np.asarray(CALLS[name](jax.random.key(3)))
    legacy = np.asarray(CALLS[name](jax.random.PRNGKey(3)))
    assert np.all(np.isfinite(typed))
    np.testing.assert_array_equal(typed, legacy)
    other = np.asarray(CALLS[name](jax.random.key(4)))
    assert not np.array_equal(typed, other)  # the key is used, not ignored

"""Finite BNNs trained by NUTS and SVI: convergence in function space, sampler reports."""

import numpy as np
import numpyro.distributions as dist
import pytest

from ntk_bayes import bnn, stax
from ntk_bayes import diagnostics as dg


def _mlp(width, act=stax.Erf, b_std=0.5):
    return stax.serial(
        stax.Dense(width, W_std=1.5, b_std=b_std), act(), stax.Dense(1, W_std=1.5, b_std=b_std)
    )


def _toy(n=8, seed=0):
    rng = np.random.default_rng(seed)
    X = np.linspace(-1.5, 1.5, n)[:, None]
    y = np.sin(2 * X[:, 0]) + 0.3 * rng.normal(size=n)
    Xt = np.linspace(-2, 2, 5)[:, None]
    return X, y, Xt, np.sin(2 * Xt[:, 0])


def test_nuts_small_run_converges_in_function_space():
    X, y, Xt, yt = _toy()
    model = bnn.BNN(_mlp(4), width=3, noise=0.3)
    post = model.fit_nuts(
        X, y, num_warmup=150, num_samples=150, num_chains=2, seed=1, progress_bar=False
    )
    assert (post.num_chains, post.num_draws) == (2, 150)
    assert post.sample_stats["diverging"].shape == (2, 150)
    assert post.info["divergences_per_chain"] == [0, 0]
    assert "chain 1: ok" in post.sampler_report()
    idata = post.to_inference_data(Xt, yt)
    conv = dg.convergence(idata, var_names=["f_test"])
    assert conv["max_rhat"] < 1.05 and conv["min_ess_bulk"] > 50, conv
    stats = idata["sample_stats"] if dg.ARVIZ_1 else idata.sample_stats
    assert {"diverging", "tree_depth", "step_size", "acceptance_rate"} <= set(stats.data_vars)
    assert dg.rmse(y, post.predictive(X)) < 0.5  # it fits the training data


@pytest.mark.slow
def test_nuts_is_reproducible_and_well_mixed():
    """A sampled noise and a near-linear target: one mode in function space."""
    rng = np.random.default_rng(0)
    X = np.linspace(-1.5, 1.5, 10)[:, None]
    y = 0.5 * X[:, 0] + 0.3 * rng.normal(size=10)
    Xt = np.linspace(-2, 2, 5)[:, None]
    model = bnn.BNN(_mlp(4), width=4, noise=dist.HalfNormal(0.5))
    kw = dict(num_warmup=400, num_samples=400, num_chains=2, seed=5, progress_bar=False)
    a, b = model.fit_nuts(X, y, **kw), model.fit_nuts(X, y, **kw)
    for k in a.samples:
        np.testing.assert_array_equal(a.samples[k], b.samples[k])
    idata = a.to_inference_data(Xt, 0.5 * Xt[:, 0])
    conv = dg.convergence(idata, var_names=["f_test", "bnn_noise"])
    assert conv["max_rhat"] < 1.03 and conv["min_ess_bulk"] > 150, conv


def test_sampler_report_flags_divergences_and_tree_depth():
    info = {
        "method": "nuts",
        "num_chains": 2,
        "num_samples": 10,
        "num_warmup": 10,
        "time_s": 1.0,
        "mean_tree_depth": 9.5,
        "mean_acceptance": 0.6,
        "max_tree_depth": 10,
        "divergences_per_chain": [0, 3],
        "max_tree_depth_fraction_per_chain": [0.5, 0.0],
    }
    post = bnn.BNNPosterior(bnn.BNN(_mlp(2), 2), {}, info, {}, np.zeros((1, 1)), np.zeros(1))
    report = post.sampler_report()
    assert "chain 0: 50% of draws hit max_tree_depth=10" in report
    assert "chain 1: 3 divergent transitions" in report
    assert "raise target_accept_prob" in report


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_samples": 1}, "num_samples"),
        ({"num_chains": 0}, "num_chains"),
        ({"target_accept_prob": 1.0}, "target_accept_prob"),
        ({"chain_method": "threads"}, "chain_method"),
        ({"num_warmup": 2.5}, "num_warmup"),
    ],
)
def test_nuts_argument_errors(kwargs, match):
    X, y, *_ = _toy()
    with pytest.raises(ValueError, match=match):
        bnn.BNN(_mlp(2), 2, noise=0.3).fit_nuts(X, y, progress_bar=False, **kwargs)


def test_svi_argument_errors():
    X, y, *_ = _toy()
    model = bnn.BNN(_mlp(2), 2, noise=0.3)
    with pytest.raises(ValueError, match="num_steps"):
        model.fit_svi(X, y, num_steps=1)
    with pytest.raises(ValueError, match="learning_rate"):
        model.fit_svi(X, y, learning_rate=0.0)


def test_svi_fits_the_data():
    X, y, Xt, yt = _toy(n=20)
    model = bnn.BNN(_mlp(8), width=8, noise=dist.HalfNormal(0.5))
    kw = dict(num_steps=800, learning_rate=0.02, num_draws=100, seed=3, progress_bar=False)
    a = model.fit_svi(X, y, **kw)
    assert a.info["final_loss"] < a.info["initial_loss"]
    assert "SVI (AutoNormal)" in a.sampler_report()
    assert a.noise_std().shape == (1, 100)
    assert dg.rmse(y, a.predictive(X)) < 0.5


@pytest.mark.slow
def test_svi_is_reproducible():
    X, y, *_ = _toy(n=20)
    model = bnn.BNN(_mlp(8), width=8, noise=dist.HalfNormal(0.5))
    kw = dict(num_steps=300, learning_rate=0.02, num_draws=50, seed=3, progress_bar=False)
    a, b = model.fit_svi(X, y, **kw), model.fit_svi(X, y, **kw)
    for k in a.samples:
        np.testing.assert_array_equal(a.samples[k], b.samples[k])


@pytest.mark.slow
def test_bernoulli_svi_separates_classes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = bnn.BNN(_mlp(8, act=stax.Relu, b_std=0.1), width=8, likelihood="bernoulli")
    post = model.fit_svi(X, y, num_steps=600, learning_rate=0.03, num_draws=50, progress_bar=False)
    assert dg.accuracy(y, post.predictive(X)) > 0.9
    idata = post.to_inference_data(X[:10], y[:10])
    assert dg.held_out_lpd(idata).shape == (10,)

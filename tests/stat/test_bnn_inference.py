"""Finite BNNs trained by NUTS and SVI: convergence in function space, sampler reports."""

import numpy as np
import numpyro.distributions as dist
import pytest
from _nets import erf_mlp, toy_data
from _stats import binomial_upper

from ntk_bayes import bnn
from ntk_bayes import diagnostics as dg


def test_nuts_small_run_converges_in_function_space():
    X, y, Xt, yt = toy_data()
    model = bnn.BNN(erf_mlp(4), width=3, noise=0.09)
    post = model.fit_nuts(
        X, y, X_eval=Xt, num_warmup=150, num_samples=150, num_chains=2, seed=1, progress_bar=False
    )
    assert (post.num_chains, post.num_draws) == (2, 150)
    assert post.sample_stats["diverging"].shape == (2, 150)
    # A working sampler diverges on at most 1% of transitions; with 2 x 150 draws (taken as
    # independent) the count is then at most Binomial(300, 0.01): false alarm < 1e-3.
    divergences = post.info["divergences_per_chain"]
    assert sum(divergences) <= binomial_upper(300, 0.01, 1e-3), divergences
    assert all(f"chain {c}: " in post.sampler_report() for c in (0, 1))
    idata = post.to_inference_data(Xt, yt)
    conv = dg.convergence(idata, var_names=["f_test"])
    assert conv["max_rhat"] < 1.05 and conv["min_ess_bulk"] > 50, conv
    # the fit's own diagnostics are ArviZ's on the same draws: to float32 round-off, as the
    # fit upcasts the float32 draws to float64 and ArviZ 1.x computes in their own dtype
    # (1.4e-9 apart on the 3.12 stack, 2026-12-02; 0 on ArviZ 0.23)
    assert abs(post.convergence.max_rhat - conv["max_rhat"]) < 1e-6
    assert post.convergence.divergences == 0
    assert "function space:" in post.sampler_report()
    stats = idata["sample_stats"] if dg.ARVIZ_1 else idata.sample_stats
    assert {"diverging", "tree_depth", "step_size", "acceptance_rate"} <= set(stats.data_vars)
    assert dg.rmse(y, post.predictive(X)) < 0.5  # it fits the training data


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
    post = bnn.BNNPosterior(bnn.BNN(erf_mlp(2), 2), {}, info, {}, np.zeros((1, 1)), np.zeros(1))
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
        ({"chain_method": "sharded"}, "sharded"),  # one device here
        ({"num_warmup": 2.5}, "num_warmup"),
    ],
)
def test_nuts_argument_errors(kwargs, match):
    X, y, *_ = toy_data()
    with pytest.raises(ValueError, match=match):
        bnn.BNN(erf_mlp(2), 2, noise=0.09).fit_nuts(X, y, progress_bar=False, **kwargs)


def test_svi_argument_errors():
    X, y, *_ = toy_data()
    model = bnn.BNN(erf_mlp(2), 2, noise=0.09)
    with pytest.raises(ValueError, match="num_steps"):
        model.fit_svi(X, y, num_steps=1)
    with pytest.raises(ValueError, match="learning_rate"):
        model.fit_svi(X, y, learning_rate=0.0)


def test_svi_fits_the_data():
    X, y, Xt, yt = toy_data(n=20)
    model = bnn.BNN(erf_mlp(8), width=8, noise=dist.HalfNormal(0.5))
    kw = dict(num_steps=800, learning_rate=0.02, num_draws=100, seed=3, progress_bar=False)
    a = model.fit_svi(X, y, **kw)
    assert a.info["final_loss"] < a.info["initial_loss"]
    assert "SVI (AutoNormal)" in a.sampler_report()
    assert a.noise_std().shape == (1, 100)
    assert dg.rmse(y, a.predictive(X)) < 0.5

"""Finite Bayesian networks: architecture translation, prior = NNGP, NUTS and SVI."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from _nets import bnn_mlp
from numpyro.infer import Predictive
from numpyro.infer.util import log_likelihood

from ntk_bayes import bnn, stax
from ntk_bayes import diagnostics as dg

# ---- architecture ---------------------------------------------------------------


def test_finite_network_replaces_hidden_widths_only():
    net = bnn_mlp(512, depth=2, out=3)
    fin = bnn.finite_network(net, 7)
    dims = [lay.out_dim for lay in fin.layers if isinstance(lay, stax.Dense)]
    assert dims == [7, 7, 3]
    assert all(lay.parameterization == "standard" for lay in fin.layers if hasattr(lay, "W_std"))
    assert [lay.out_dim for lay in bnn.finite_network(net, None).layers[::2]] == [512, 512, 3]


def test_finite_network_with_branches_and_conv():
    res = stax.serial(
        stax.Dense(100),
        stax.FanOut(2),
        stax.parallel(stax.serial(stax.Relu(), stax.Dense(100)), stax.Identity()),
        stax.FanInSum(),
        stax.Relu(),
        stax.Dense(2),
    )
    fin = bnn.finite_network(res, 5)
    assert fin.output_shape((4, 3)) == (4, 2)
    assert fin.layers[2].layers[0].layers[1].out_dim == 5
    heads = stax.serial(
        stax.Dense(9),
        stax.Relu(),
        stax.FanOut(2),
        stax.parallel(stax.Dense(1), stax.Dense(1)),
        stax.FanInConcat(),
    )
    fin = bnn.finite_network(heads, 4)  # both parallel heads are readouts
    assert fin.output_shape((4, 3)) == (4, 2)
    cnn = stax.serial(
        stax.Conv(8, (3, 3), padding="SAME"), stax.Relu(), stax.Flatten(), stax.Dense(1)
    )
    fin = bnn.finite_network(cnn, 3)
    assert fin.layers[0].out_chan == 3 and fin.output_shape((2, 5, 5, 1)) == (2, 1)


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: bnn.BNN(stax.serial(stax.Relu()), 4), ValueError, "no weighted layer"),
        (lambda: bnn.BNN(bnn_mlp(), 0), ValueError, "`width`"),
        (lambda: bnn.BNN(bnn_mlp(), 4, likelihood="poisson"), ValueError, "likelihood"),
        (lambda: bnn.BNN(bnn_mlp(), 4, noise=-1.0), ValueError, "positive float"),
        (lambda: bnn.BNN(bnn_mlp(), 4, noise=dist.HalfNormal(jnp.ones(2))), ValueError, "scalar"),
        (lambda: bnn.BNN(bnn_mlp(), 4, likelihood="bernoulli", noise=0.1), ValueError, "gaussian"),
        (lambda: bnn.BNN("mlp", 4), TypeError, "stax network"),
    ],
)
def test_construction_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize(
    "model, X, y, exc, match",
    [
        (bnn.BNN(bnn_mlp(out=3), 4), np.zeros((5, 2)), np.zeros(5), ValueError, "1 output"),
        (
            bnn.BNN(bnn_mlp(out=1), 4, likelihood="categorical"),
            np.zeros((5, 2)),
            None,
            ValueError,
            "K >= 2",
        ),
        (bnn.BNN(bnn_mlp(), 4), np.zeros(5), None, ValueError, r"\(n, features"),
        (bnn.BNN(bnn_mlp(), 4), np.zeros((5, 2)), np.zeros(4), ValueError, "vector of 5"),
        (bnn.BNN(bnn_mlp(), 4), np.full((5, 2), np.nan), None, ValueError, "non-finite"),
        (
            bnn.BNN(bnn_mlp(out=3), 4, likelihood="categorical"),
            np.zeros((3, 2)),
            [0, 1, 3],
            ValueError,
            "0..2",
        ),
        (
            bnn.BNN(bnn_mlp(), 4, likelihood="bernoulli"),
            np.zeros((2, 2)),
            [0.5, 1],
            ValueError,
            "integer",
        ),
        (
            bnn.BNN(
                stax.serial(
                    stax.Dense(4),
                    stax.GlobalSelfAttention(4, 4, 4, 1),
                    stax.Flatten(),
                    stax.Dense(1),
                ),
                4,
            ),
            np.zeros((2, 3, 4)),
            None,
            TypeError,
            "GlobalSelfAttention.*supported: Dense, Conv",
        ),
    ],
)
def test_data_errors(model, X, y, exc, match):
    with pytest.raises(exc, match=match):
        model.check_data(X, y)


def test_model_sites_and_shapes():
    model = bnn.BNN(bnn_mlp(512, depth=2), width=6, name="net")
    X = jnp.ones((5, 3))
    tr = numpyro.handlers.trace(numpyro.handlers.seed(model.model, 0)).get_trace(X, jnp.zeros(5))
    shapes = {k: v["value"].shape for k, v in tr.items() if v["type"] == "sample"}
    assert shapes == {
        "net_0_W": (3, 6),
        "net_0_b": (6,),
        "net_2_W": (6, 6),
        "net_2_b": (6,),
        "net_4_W": (6, 1),
        "net_4_b": (1,),
        "net_noise": (),
        "y": (5,),
    }
    assert tr["y"]["is_observed"]
    # the prior scale is W_std / sqrt(fan_in) (standard parameterisation)
    np.testing.assert_allclose(tr["net_2_W"]["fn"].variance, 1.5**2 / 6, rtol=1e-6)
    no_bias = bnn.BNN(
        stax.serial(stax.Dense(3, b_std=None), stax.Erf(), stax.Dense(1, b_std=0.0)), 3, noise=0.1
    )
    tr = numpyro.handlers.trace(numpyro.handlers.seed(no_bias.model, 0)).get_trace(X)
    assert {k for k, v in tr.items() if v["type"] == "sample"} == {"bnn_0_W", "bnn_2_W", "y"}


# ---- rung 2: the prior is the NNGP ----------------------------------------------


# ---- posterior objects ------------------------------------------------------------


def _prior_posterior(model, X, y, n=40, chains=2, seed=0):
    """A BNNPosterior holding prior draws: cheap, and exact for consistency checks."""
    draws = Predictive(model.model, num_samples=n * chains)(jax.random.PRNGKey(seed), X)
    samples = {
        k: np.asarray(v).reshape((chains, n) + v.shape[1:])
        for k, v in draws.items()
        if k != model.obs
    }
    return bnn.BNNPosterior(model, samples, {"method": "prior"}, {}, np.asarray(X), np.asarray(y))


@pytest.mark.parametrize("likelihood, out", [("gaussian", 1), ("bernoulli", 1), ("categorical", 3)])
def test_log_likelihood_agrees_with_numpyro(likelihood, out, tol):
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(7, 2)))
    y = rng.normal(size=7) if likelihood == "gaussian" else rng.integers(0, max(out, 2), size=7)
    model = bnn.BNN(bnn_mlp(5, out=out), width=5, likelihood=likelihood)
    post = _prior_posterior(model, X, y)
    ours = post.log_likelihood(X, y)
    flat = {k: jnp.asarray(v.reshape((-1,) + v.shape[2:])) for k, v in post.samples.items()}
    theirs = np.asarray(log_likelihood(model.model, flat, X, jnp.asarray(y))["y"])
    np.testing.assert_allclose(ours.reshape(theirs.shape), theirs, **tol)
    idata = post.to_inference_data(X, y)
    ll = idata["log_likelihood"] if dg.ARVIZ_1 else idata.log_likelihood
    np.testing.assert_allclose(ll["y"].values, ours, rtol=1e-10)
    if likelihood != "gaussian":
        p = post.predictive(X)
        np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
        assert p.shape == (7, max(out, 2))


def test_weights_left_out_of_arviz_for_wide_networks():
    X, y = np.zeros((3, 2)), np.zeros(3)
    model = bnn.BNN(bnn_mlp(5, depth=2), width=150, noise=0.5)
    shapes = {"0_W": (2, 150), "0_b": (150,), "2_W": (150, 150), "2_b": (150,)}
    shapes.update({"4_W": (150, 1), "4_b": (1,)})
    samples = {f"bnn_{k}": np.zeros((1, 4) + v) for k, v in shapes.items()}
    post = bnn.BNNPosterior(model, samples, {"method": "test"}, {}, X, y)
    group = "posterior"
    idata = post.to_inference_data(X, y)
    assert set((idata[group] if dg.ARVIZ_1 else idata.posterior).data_vars) == {"f_test"}
    idata = post.to_inference_data(include_weights=True)
    assert "bnn_2_W" in (idata[group] if dg.ARVIZ_1 else idata.posterior).data_vars

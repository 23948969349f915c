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
    assert all(lay.parameterization == "ntk" for lay in fin.layers if isinstance(lay, stax.Dense))
    std = bnn.finite_network(net, 7, "standard")
    assert all(lay.parameterization == "standard" for lay in std.layers[::2])
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
        (lambda: bnn.BNN(bnn_mlp(), 4, noise=-1.0), ValueError, "positive"),
        (lambda: bnn.BNN(bnn_mlp(), 4, noise=float("inf")), ValueError, "`noise`.*finite"),
        (lambda: bnn.BNN(bnn_mlp(), 4, noise=float("nan")), ValueError, "`noise`.*finite"),
        (lambda: bnn.BNN(bnn_mlp(), 4, noise=np.ones(2)), ValueError, "`noise`"),
        (lambda: bnn.BNN(bnn_mlp(), 4, noise="0.1"), ValueError, "`noise`"),
        # a prior with mass on negative variances makes the likelihood's scale NaN
        (lambda: bnn.BNN(bnn_mlp(), 4, noise=dist.Normal(0.1, 1.0)), ValueError, "negative"),
        (lambda: bnn.BNN(bnn_mlp(), 4, noise=dist.Uniform(-1.0, 1.0)), ValueError, "negative"),
        (lambda: bnn.BNN(bnn_mlp(), 4, noise=dist.HalfNormal(jnp.ones(2))), ValueError, "scalar"),
        (lambda: bnn.BNN(bnn_mlp(), 4, likelihood="bernoulli", noise=0.1), ValueError, "gaussian"),
        (lambda: bnn.BNN("mlp", 4), TypeError, "stax network"),
    ],
)
def test_construction_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


class _Scaled(stax.Layer):
    """A layer with a parameter and no stated prior."""

    def init(self, key, input_shape):
        return input_shape, jax.random.normal(key, (input_shape[-1],))

    def apply(self, params, x, **kwargs):
        return x * params


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
            bnn.BNN(stax.serial(stax.Dense(4), _Scaled(), stax.Dense(1)), 4),
            np.zeros((2, 3)),
            None,
            TypeError,
            "_Scaled has parameters but does not state their prior",
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
        "net_0_0": (3, 6),
        "net_0_1": (6,),
        "net_2_0": (6, 6),
        "net_2_1": (6,),
        "net_4_0": (6, 1),
        "net_4_1": (1,),
        "net_noise": (),
        "y": (5,),
    }
    assert tr["y"]["is_observed"]
    assert all(model.is_weight(k) for k in shapes if k not in ("net_noise", "y"))
    assert not model.is_weight("net_noise")
    # "ntk": unit-variance weights; "standard": W ~ N(0, W_std^2 / fan_in)
    np.testing.assert_allclose(tr["net_2_0"]["fn"].variance, 1.0, rtol=1e-6)
    std = bnn.BNN(bnn_mlp(512, depth=2), width=6, parameterization="standard")
    tr = numpyro.handlers.trace(numpyro.handlers.seed(std.model, 0)).get_trace(X)
    np.testing.assert_allclose(tr["bnn_2_0"]["fn"].variance, 1.5**2 / 6, rtol=1e-6)
    np.testing.assert_allclose(tr["bnn_2_1"]["fn"].variance, 0.1**2, rtol=1e-5)
    no_bias = bnn.BNN(
        stax.serial(stax.Dense(3, b_std=None), stax.Erf(), stax.Dense(1, b_std=0.0)), 3, noise=0.1
    )
    tr = numpyro.handlers.trace(numpyro.handlers.seed(no_bias.model, 0)).get_trace(X)
    assert {k for k, v in tr.items() if v["type"] == "sample"} == {"bnn_0_0", "bnn_2_0", "y"}


def test_noise_and_width_take_numpy_and_jax_scalars():
    """`noise` as GaussianProcess takes it: any positive number, NumPy or JAX scalar."""
    for noise in (np.float32(0.09), np.float64(0.09), jnp.asarray(0.09), np.asarray(0.09)):
        model = bnn.BNN(bnn_mlp(4), np.int64(4), noise=noise)
        assert model.noise == pytest.approx(0.09) and type(model.noise) is float
        assert model.width == 4 and type(model.width) is int
    for prior in (dist.LogNormal(0.0, 1.0), dist.InverseGamma(2.0, 1.0), dist.Uniform(0.01, 1)):
        assert bnn.BNN(bnn_mlp(4), 4, noise=prior).noise_is_sampled
    f = bnn.BNN(bnn_mlp(4), 4, noise=0.1).sample_prior(jax.random.PRNGKey(0), np.ones((2, 3)), 3)
    assert f.shape == (3, 2, 1)
    with pytest.raises(ValueError, match="`batch_size`"):
        bnn.BNN(bnn_mlp(4), 4, noise=0.1).sample_prior(
            jax.random.PRNGKey(0), np.ones((2, 3)), 3, batch_size=0
        )


def test_noise_is_a_variance():
    model = bnn.BNN(bnn_mlp(4), 4, noise=0.09)
    X = jnp.ones((3, 3))
    tr = numpyro.handlers.trace(numpyro.handlers.seed(model.model, 0)).get_trace(X)
    np.testing.assert_allclose(tr["y"]["fn"].scale, 0.3, rtol=1e-6)
    samples = {"bnn_noise": np.full((1, 4), 0.25)}
    post = bnn.BNNPosterior(bnn.BNN(bnn_mlp(4), 4), samples, {}, {}, np.zeros((1, 3)), np.zeros(1))
    np.testing.assert_allclose(post.noise(), 0.25)
    np.testing.assert_allclose(post.noise_std(), 0.5)


_CONV = stax.Conv(3, (2, 2), padding="SAME", b_std=0.2)


@pytest.mark.parametrize(
    "net, shape",
    [
        (bnn_mlp(5, depth=2), (4, 3)),
        (stax.serial(_CONV, stax.Flatten(), stax.Dense(1)), (2, 4, 4, 1)),
        (
            stax.serial(stax.GlobalSelfAttention(4, 3, 2, 2, b_std=0.1), stax.Flatten()),
            (2, 5, 3),
        ),
        (
            stax.serial(
                stax.Dense(4),
                stax.FanOut(2),
                stax.parallel(stax.Dense(3, b_std=None), stax.Relu()),
                stax.FanInConcat(),
            ),
            (4, 3),
        ),
    ],
)
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_prior_std_is_shaped_like_init_params(net, shape, parameterization):
    """Each layer's prior scales mirror its init params, and init draws at those scales."""
    net = stax.serial(net, stax.Dense(1, W_std=1.2))
    net = bnn.finite_network(net, None, parameterization)
    _, params = net.init_fn(jax.random.PRNGKey(0), shape)
    stds = net.prior_std(shape)
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(stds)
    leaves = zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(stds), strict=True)
    for p, s in leaves:
        # rms of k normals at scale s: within 5 sd = 5 s / sqrt(2k) of s (false alarm < 1e-6)
        rms = float(np.sqrt(np.mean(np.square(p))))
        assert abs(rms - s) < 5 * s / np.sqrt(2 * p.size), (rms, s, p.shape)


def test_bnn_samples_attention_through_its_own_apply():
    net = stax.serial(stax.GlobalSelfAttention(4, 3, 2, 2), stax.Flatten(), stax.Dense(1))
    model = bnn.BNN(net, None, noise=0.1)
    X = np.random.default_rng(0).normal(size=(2, 3, 3))
    f = model.sample_prior(jax.random.PRNGKey(0), X, 3)
    assert f.shape == (3, 2, 1) and np.all(np.isfinite(f))


def test_prior_draws_are_init_draws():
    """sample_prior and init_fn draw the same prior: equal output variance (MC)."""
    net = bnn_mlp(8, depth=1)
    X = np.random.default_rng(0).normal(size=(3, 3))
    model = bnn.BNN(net, None, noise=0.1)
    f = np.asarray(model.sample_prior(jax.random.PRNGKey(1), X, 2000)[..., 0], np.float64)
    keys = jax.random.split(jax.random.PRNGKey(2), 2000)
    g = np.asarray(
        jax.vmap(lambda k: net.apply_fn(net.init_fn(k, X.shape)[1], jnp.asarray(X)))(keys)[..., 0],
        np.float64,
    )
    # var ratio of two samples of 2000: log-ratio sd ~ sqrt(4/2000) = 0.045; 5 sd < 1e-6
    assert np.all(np.abs(np.log(f.var(0) / g.var(0))) < 5 * np.sqrt(4 / 2000))


# ---- convergence ----------------------------------------------------------------


def test_convergence_bar_on_planted_draws():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 500, 3))
    ok = bnn.function_convergence(iid)
    assert ok.converged and ok.max_rhat <= bnn.RHAT_BAR and ok.min_ess_bulk >= bnn.ESS_BAR, ok
    assert "converged" in str(ok) and ok.as_dict()["converged"] is True
    stuck = iid + np.array([0.0, 0.0, 0.0, 1.0])[:, None, None]  # one chain in another mode
    bad = bnn.function_convergence(stuck)
    assert not bad.converged and "R-hat" in bad.reasons()[0]
    walk = np.cumsum(rng.normal(size=(4, 500, 3)), axis=1)  # slowly mixing chains
    assert not bnn.function_convergence(walk).converged
    div = bnn.function_convergence(iid, divergences=1)
    assert not div.converged and div.reasons() == ["1 divergent transitions"]
    with pytest.raises(ValueError, match="at least 4 draws"):
        bnn.function_convergence(iid[:, :3])


def test_non_finite_function_values_fail_the_bar():
    """A NaN at one point used to drop out of ArviZ's worst case: 'converged'."""
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 500, 3))
    one = iid.copy()
    one[0, 10, 1] = np.nan
    conv = bnn.function_convergence(one)
    assert not conv.converged and conv.non_finite == 1, conv
    assert "non-finite" in conv.reasons()[0] and conv.as_dict()["non_finite"] == 1
    point = iid.copy()
    point[:, :, 1] = np.inf
    assert not bnn.function_convergence(point).converged
    assert not bnn.function_convergence(np.full((2, 8), np.nan)).converged
    assert bnn.function_convergence(iid).non_finite == 0


def test_one_chain_says_why_it_cannot_meet_the_bar():
    conv = bnn.function_convergence(np.random.default_rng(0).normal(size=(1, 500, 2)))
    assert not conv.converged
    assert conv.reasons() == ["split R-hat needs at least 2 chains, got 1"], conv.reasons()


def test_nuts_settings_are_checked_before_work(monkeypatch):
    with pytest.raises(ValueError, match="init"):
        bnn.BNN(bnn_mlp(4), 4, noise=0.1).fit_nuts(np.zeros((3, 3)), np.zeros(3), init="mode")

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampling started before the settings were checked")

    monkeypatch.setattr("numpyro.infer.MCMC.run", no_sampling)
    model = bnn.BNN(bnn_mlp(4), 4, noise=0.1)
    X, y = np.zeros((3, 3)), np.zeros(3)
    fit = dict(num_warmup=2, num_samples=4, num_chains=1, progress_bar=False)
    bad = [
        # 4 draws thinned by 2 keep 2: split R-hat used to fail only after sampling
        (dict(thinning=2), ValueError, "thinning"),
        (dict(target_accept_prob="0.8"), ValueError, "target_accept_prob"),
        (dict(seed="0"), TypeError, "`seed`"),
        (dict(seed=None), TypeError, "`seed`"),
        (dict(X_eval=np.zeros((2, 2))), ValueError, "`X_eval` points have shape"),
        (dict(X_eval=np.full((2, 3), np.nan)), ValueError, "`X_eval` contains"),
    ]
    for kw, exc, match in bad:
        with pytest.raises(exc, match=match):
            model.fit_nuts(X, y, **{**fit, **kw})
    with pytest.raises(ValueError, match="marginalize_readout"):
        bnn.BNN(bnn_mlp(4), 4, likelihood="bernoulli").fit_nuts(
            np.zeros((3, 3)), np.zeros(3, int), marginalize_readout=True
        )


def test_svi_settings_are_checked_before_work(monkeypatch):
    def no_fitting(*args, **kwargs):
        raise AssertionError("SVI started before the settings were checked")

    monkeypatch.setattr("numpyro.infer.SVI.run", no_fitting)
    model = bnn.BNN(bnn_mlp(4), 4, noise=0.1)
    X, y = np.zeros((3, 3)), np.zeros(3)
    bad = [
        (dict(init_scale=-1.0), ValueError, "`init_scale` must be a finite number > 0"),
        (dict(init_scale=0), ValueError, "`init_scale`"),
        (dict(init_scale=np.inf), ValueError, "`init_scale`"),
        (dict(init_scale="0.1"), ValueError, "`init_scale`"),
        (dict(learning_rate=np.nan), ValueError, "`learning_rate` must be a finite"),
        (dict(learning_rate=True), ValueError, "`learning_rate`"),
        (dict(num_steps=1), ValueError, "`num_steps` must be an integer >= 2"),
        (dict(num_draws=2.5), ValueError, "`num_draws`"),
        (dict(seed="0"), TypeError, "`seed` must be an integer"),
    ]
    for kw, exc, match in bad:
        with pytest.raises(exc, match=match):
            model.fit_svi(X, y, progress_bar=False, **kw)
    # NumPy scalars are numbers: the checks pass them and the fit starts
    with pytest.raises(AssertionError, match="SVI started"):
        model.fit_svi(
            X, y, learning_rate=np.float32(0.01), init_scale=np.float32(0.1), seed=np.int64(0)
        )


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


def test_posterior_refuses_inputs_unlike_the_training_data():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(5, 3)), rng.normal(size=5)
    post = _prior_posterior(bnn.BNN(bnn_mlp(4), 4, noise=0.1), X, y, n=4)
    assert post.latent(X[:2]).shape == (2, 4, 2)
    with pytest.raises(ValueError, match="`X` points have shape \\(2,\\).*\\(3,\\)"):
        post.predictive(X[:, :2])


def test_weights_left_out_of_arviz_for_wide_networks():
    X, y = np.zeros((3, 2)), np.zeros(3)
    model = bnn.BNN(bnn_mlp(5, depth=2), width=150, noise=0.5)
    shapes = {"0_0": (2, 150), "0_1": (150,), "2_0": (150, 150), "2_1": (150,)}
    shapes.update({"4_0": (150, 1), "4_1": (1,)})
    samples = {f"bnn_{k}": np.zeros((1, 4) + v) for k, v in shapes.items()}
    post = bnn.BNNPosterior(model, samples, {"method": "test"}, {}, X, y)
    group = "posterior"
    idata = post.to_inference_data(X, y)
    assert set((idata[group] if dg.ARVIZ_1 else idata.posterior).data_vars) == {"f_test"}
    idata = post.to_inference_data(include_weights=True)
    assert "bnn_2_0" in (idata[group] if dg.ARVIZ_1 else idata.posterior).data_vars


def test_collapsed_likelihood_and_its_gradient_equal_the_dense_gaussian(dtype, tol):
    """The readout-integrated likelihood's hand-written value and gradient (Woodbury, a
    q × q Cholesky) equal autodiff through the dense n × n Gaussian density."""
    from ntk_bayes.bnn._readout import Readout, woodbury_loglik

    LOG_2PI = float(np.log(2 * np.pi))

    rng = np.random.default_rng(3)
    n, q = 9, 4
    B = jnp.asarray(rng.normal(size=(n, q)), dtype)
    y = jnp.asarray(rng.normal(size=n), dtype)
    var = jnp.asarray(0.3, dtype)

    def dense(B, var, y):  # the n × n Gaussian, autodiff through LU
        cov = B @ B.T + var * jnp.eye(n, dtype=dtype)
        return -0.5 * (y @ jnp.linalg.solve(cov, y) + jnp.linalg.slogdet(cov)[1] + n * LOG_2PI)

    def close(a, b):  # relative to the array's norm: float32 round-off hits small entries
        assert a.dtype == dtype
        err = np.linalg.norm(np.ravel(a) - np.ravel(b))
        assert err <= tol["rtol"] * np.linalg.norm(np.ravel(b)) + tol["atol"], err

    ours = jax.jit(jax.value_and_grad(woodbury_loglik, argnums=(0, 1, 2)))(B, var, y)
    ref = jax.jit(jax.value_and_grad(dense, argnums=(0, 1, 2)))(B, var, y)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(ref), strict=True):
        close(a, b)
    # what the collapsed model samples from: the same density, and under vmap (chains)
    Bs, vs = jnp.stack([B, 2 * B]), jnp.stack([var, 2 * var])
    lp = lambda B, v: Readout.marginal(None, B, v).log_prob(y)
    g = jax.jit(jax.vmap(jax.value_and_grad(lp, (0, 1))))(Bs, vs)
    g_ref = jax.jit(jax.vmap(jax.value_and_grad(dense, (0, 1)), (0, 0, None)))(Bs, vs, y)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref), strict=True):
        close(a, b)

    # An ill-conditioned case like calibrate's BNN (cond(C) = cond(I + BᵀB/var) ~ 1.7e5),
    # against the float64 closed form (αα' - C⁻¹)B, ½(α'α - tr C⁻¹) computed in NumPy: the
    # error stays under cond(C)·eps, the first-order forward-error bound of a backward-stable
    # solve, as autodiff through the dense density does. (Which of the two is closer varies
    # with the CPU's BLAS kernels: on AVX2 ours was within 2x of it in both gradients, on
    # AVX-512 ours is 6x closer in var and 6x farther in B, both 5x under the bound in float32.) An
    # explicit inverse of the q × q matrix was 6x worse in float32 (and useless on the BNN).
    U = np.linalg.qr(rng.normal(size=(n, q)))[0]
    V = np.linalg.qr(rng.normal(size=(q, q)))[0]
    B64, v64 = U @ np.diag([100.0, 3.0, 0.3, 0.01]) @ V.T, 0.06
    y64 = np.asarray(y, np.float64)
    C = B64 @ B64.T + v64 * np.eye(n)
    C_inv = np.linalg.inv(C)
    a = C_inv @ y64
    truth = [(np.outer(a, a) - C_inv) @ B64, 0.5 * (a @ a - np.trace(C_inv))]
    bound = np.linalg.cond(C) * np.finfo(dtype).eps
    args = (jnp.asarray(B64, dtype), jnp.asarray(v64, dtype), jnp.asarray(y64, dtype))
    ours = jax.jit(jax.grad(woodbury_loglik, (0, 1)))(*args)
    ref = jax.jit(jax.grad(dense, (0, 1)))(*args)
    for o, r, t in zip(ours, ref, truth, strict=True):
        e_o, e_r = (np.linalg.norm(np.ravel(np.asarray(x, np.float64) - t)) for x in (o, r))
        e_o, e_r = e_o / np.linalg.norm(t), e_r / np.linalg.norm(t)
        assert max(e_o, e_r) <= bound, (e_o, e_r, bound)

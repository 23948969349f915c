"""Replicated observations collapsed onto unique inputs: the same density and the same
N-point leave-one-out as the GP over every observation (planted repeats, float64 to
round-off, float32 to its tolerance)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

import ntk_bayes as nb
from ntk_bayes import stax


def _net(w=1.4, b=0.3):
    return stax.serial(
        stax.Dense(64, W_std=w, b_std=b), stax.Relu(), stax.Dense(1, W_std=w, b_std=b)
    )


def _data(dtype, n=23, groups=None, seed=0):
    """Radon-like inputs: a binary covariate and one of three levels -> 6 unique rows;
    counts from 1 to several (the first rows make sure some inputs occur once)."""
    rng = np.random.default_rng(seed)
    floor = rng.integers(0, 2, n)
    level = rng.choice([-0.7, 0.1, 0.9], n)
    floor[:2], level[:2] = (1, 0), (0.9, -0.7)
    X = np.stack([floor, level], 1).astype(dtype)
    y = (0.5 * floor - level + 0.4 * rng.normal(size=n)).astype(dtype)
    g = None if groups is None else rng.integers(0, groups, n)
    return X, y, g


def _rtol(dtype):
    # float64: the jitter differs between the N x N and m x m matrices (~1e-12 relative)
    return 1e-8 if dtype == np.float64 else 2e-4


def test_collapse_counts_means_and_index(dtype):
    X, y, _ = _data(dtype)
    rep = nb.priors.collapse_replicates(X, y)
    Xu = np.asarray(rep.X)
    assert Xu.shape[0] == len({tuple(r) for r in X}) == rep.counts.size
    assert rep.counts.sum() == len(y) and rep.mask is None
    np.testing.assert_array_equal(Xu[rep.index], X)  # every row finds its input
    for j in range(rep.counts.size):
        rows = y[rep.index == j]
        np.testing.assert_allclose(rep.y_mean[j], rows.mean(), rtol=_rtol(dtype))
        np.testing.assert_allclose(
            rep.within_ss[j], ((rows - rows.mean()) ** 2).sum(), rtol=1e-5, atol=1e-6
        )


def test_collapsed_density_and_loo_equal_the_full_gp(dtype):
    X, y, _ = _data(dtype)
    s2, net = 0.15, _net()
    full = nb.GaussianProcess(net, X, noise=s2, mean=0.3)
    rep = nb.priors.collapse_replicates(X, y)
    small = nb.GaussianProcess(net, rep.X, noise=rep.noise(s2), mean=0.3)
    assert rep.X.shape[0] == 6 < len(y)
    want = float(full.log_prob(y))
    got = float(small.log_prob(rep.y_mean) + rep.log_factor(s2))
    np.testing.assert_allclose(got, want, rtol=_rtol(dtype))
    post = small.condition(rep.y_mean, diag=True)
    loo = rep.loo_log_likelihood(post.mean, post.variance, s2)
    assert loo.shape == (len(y),)
    np.testing.assert_allclose(loo, full.loo_log_likelihood(y), rtol=_rtol(dtype), atol=1e-6)


def test_grouped_collapse_equals_the_batched_full_gp(dtype):
    X, y, g = _data(dtype, n=31, groups=3, seed=1)
    s2 = 0.2
    w = jnp.asarray([0.8, 1.3, 2.0], dtype)
    nets = jax.vmap(lambda wc: _net(wc, 0.2))(w)
    Xp, yp, ids, mask = nb.priors.pad_groups(g, X, y, np.arange(len(y)))
    full = nb.GaussianProcess(nets, Xp, noise=s2, mean=-0.1, point_mask=mask)
    rep = nb.priors.collapse_replicates(X, y, group=g)
    assert rep.X.shape[:2] == rep.counts.shape and rep.X.shape[0] == 3
    small = nb.GaussianProcess(nets, rep.X, noise=rep.noise(s2), mean=-0.1, point_mask=rep.mask)
    want = float(jnp.sum(full.log_prob(yp)))
    got = float(jnp.sum(small.log_prob(rep.y_mean)) + rep.log_factor(s2))
    np.testing.assert_allclose(got, want, rtol=_rtol(dtype))
    # the full GP's LOO in its padded layout, back in the original order
    full_loo = np.empty(len(y))
    full_loo[np.asarray(ids)[np.asarray(mask)]] = np.asarray(full.loo_log_likelihood(yp))[
        np.asarray(mask)
    ]
    post = small.condition(rep.y_mean, diag=True)
    loo = rep.loo_log_likelihood(post.mean, post.variance, s2)
    np.testing.assert_allclose(loo, full_loo, rtol=_rtol(dtype), atol=1e-6)


def _models(X, y, rep):
    def full(X):
        w = numpyro.sample("w", dist.LogNormal(0.0, 0.3))
        s2 = numpyro.sample("s2", dist.LogNormal(-1.5, 0.3))
        numpyro.sample("y", nb.GaussianProcess(_net(w), X, noise=s2), obs=y)

    def collapsed(rep):
        w = numpyro.sample("w", dist.LogNormal(0.0, 0.3))
        s2 = numpyro.sample("s2", dist.LogNormal(-1.5, 0.3))
        gp = nb.GaussianProcess(_net(w), rep.X, noise=rep.noise(s2))
        numpyro.sample("y", gp, obs=rep.y_mean)
        numpyro.factor("y_replicates", rep.log_factor(s2))

    return full, collapsed


def test_from_numpyro_gives_n_point_loo_for_replicates():
    X, y, _ = _data(np.float32, n=19, seed=2)
    rep = nb.priors.collapse_replicates(X, y)
    full, collapsed = _models(X, y, rep)
    # 60 draws: ArviZ 1.x's PSIS wants at least 5 in the fitted tail
    mcmc = MCMC(NUTS(collapsed, max_tree_depth=3), num_warmup=20, num_samples=60,
                num_chains=1, progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.key(0), rep)
    idata = nb.diagnostics.from_numpyro(mcmc, replicates={"y": rep})
    ll = np.asarray(idata["log_likelihood"]["y"])
    assert ll.shape == (1, 60, 19)
    assert "y_replicates" not in idata["log_likelihood"]  # a constant, not data
    np.testing.assert_array_equal(np.asarray(idata["observed_data"]["y"]), y)
    # the same draws in the model over all 19 observations: the same LOO terms
    want = nb.priors.loo_log_likelihood(full, mcmc.get_samples(), X, site="y")
    np.testing.assert_allclose(ll[0], want, rtol=2e-4, atol=1e-5)
    assert nb.diagnostics.loo(idata, var_name="y")["n_points"] == 19


def test_bad_input_is_named():
    X, y, _ = _data(np.float64)
    with pytest.raises(ValueError, match="one observation per row"):
        nb.priors.collapse_replicates(X, y[:-1])
    y_nan = y.copy()
    y_nan[3] = np.nan
    with pytest.raises(
        ValueError, match=r"`y` contains 1 non-finite value\(s\) \(first at index \(3,\)\)"
    ):
        nb.priors.collapse_replicates(X, y_nan)
    with pytest.raises(ValueError, match="`group` must be"):
        nb.priors.collapse_replicates(X, y, group=np.zeros(3, int))
    rep = nb.priors.collapse_replicates(X, y)
    with pytest.raises(ValueError, match="scalar variance"):
        rep.noise(np.ones((2, 2, 2)))
    full, _ = _models(X, y, rep)
    samples = {"w": jnp.ones(2), "s2": 0.1 * jnp.ones(2)}
    with pytest.raises(ValueError, match="rep.noise"):
        nb.priors.loo_log_likelihood(full, samples, X, site="y", replicates=rep)

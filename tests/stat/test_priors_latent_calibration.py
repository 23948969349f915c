"""The latent-GP classifier is calibrated on data drawn from its own prior.

R datasets share N inputs; each has a latent f_r ~ GP(0, Σ) (drawn here with NumPy from
the kernel matrix, not through the helper under test) and labels y ~ Bernoulli(σ(f_r)).
``latent_gp(..., num_outputs=R)`` fits all R at once (one NUTS run over R·N whitened
values). For fresh labels y* at the same inputs, exact Bayes gives E[y*_i | y] = p_i =
E[σ(f_i) | y] and Cov(y*_i, y*_j | y) = p_i(1 - p_i) δ_ij + Cov(σ(f_i), σ(f_j) | y). So
for any weights w fixed by the data, T = Σ w_i (y*_i - p_i) has mean 0 and a variance
the posterior draws give: the test is on z = T / sd(T), about N(0, 1) (a sum of 512
labels). w = 1 checks the level of the probabilities; w = 1 - 2p is the Brier score
minus its expectation, Σ (y* - p)² - p(1 - p), which over-confident (too extreme)
probabilities push up and under-confident ones down.

The test can fail: fitted with the wrong weight scale (W_std 4.0 or 0.5 against the
true 1.5; same data and seeds) the Brier z was +5.2 and -5.6 (2026-12-05), at the truth
+0.6 (the level z: -0.3).
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

import ntk_bayes as nb
from ntk_bayes import stax

N, R = 16, 32


def _net(w):
    return stax.serial(
        stax.Dense(512, W_std=w, b_std=0.5), stax.Relu(), stax.Dense(1, W_std=w, b_std=0.5)
    )


def _planted(seed=0, w_true=1.5):
    rng = np.random.default_rng(seed)
    X = np.sort(rng.uniform(-2.0, 2.0, N))[:, None].astype(np.float32)
    K = np.asarray(_net(w_true).kernel_fn(jnp.asarray(X), None, "nngp"), np.float64)
    evals, evecs = np.linalg.eigh(K)
    f = (evecs * np.sqrt(np.clip(evals, 0.0, None))) @ rng.standard_normal((N, R))  # (N, R)
    prob = 1.0 / (1.0 + np.exp(-f))
    y = (rng.uniform(size=(N, R)) < prob).astype(np.float32)
    y_new = (rng.uniform(size=(N, R)) < prob).astype(np.float32)
    return X, y, y_new


def _fit(X, y, w_fit):
    def model(X, y):
        f = nb.priors.latent_gp("f", _net(w_fit), X, num_outputs=R)  # (N, R)
        numpyro.sample("y", dist.Bernoulli(logits=f).to_event(2), obs=y)

    mcmc = MCMC(NUTS(model), num_warmup=300, num_samples=400, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(1), jnp.asarray(X), jnp.asarray(y))
    return np.asarray(jax.nn.sigmoid(mcmc.get_samples()["f"]), np.float64)  # (S, N, R)


def _z(s, y_new, weights):
    p = s.mean(0)
    w = weights(p)
    t = np.sum(w * (y_new - p))
    # Var(Σ w y*) = Σ w² p(1-p) + Var_post(Σ w σ(f)) - Σ w² Var_post(σ(f)), per dataset
    var = np.sum(w**2 * p * (1 - p)) + np.sum(
        np.var(np.sum(w * s, axis=1), axis=0) - np.sum(w**2 * s.var(0), axis=0)
    )
    return t / np.sqrt(var)


def _scores(w_fit):
    X, y, y_new = _planted()
    s = _fit(X, y, w_fit)
    return _z(s, y_new, lambda p: np.ones_like(p)), _z(s, y_new, lambda p: 1 - 2 * p)


def test_latent_gp_classifier_probabilities_are_calibrated():
    z_level, z_brier = _scores(w_fit=1.5)
    # each z is about N(0, 1) under exact inference (NUTS error in p is ~1% of sd(T));
    # 3.3 sd: false alarm < 0.1% per statistic
    assert abs(z_level) < 3.3, z_level
    assert abs(z_brier) < 3.3, z_brier

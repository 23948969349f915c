"""ntk_bayes.gp sparse models: settings survive refits, invalid noise is refused early,
errors name the user's arguments (the statistical checks are in tests/stat/test_gp_sparse.py)."""

import numpy as np
import optax
import pytest

from ntk_bayes import gp, stax


def _net():
    return stax.serial(
        stax.Dense(256, W_std=1.5, b_std=0.1), stax.Relu(), stax.Dense(1, W_std=1.2, b_std=0.1)
    )


def _data(n=20, d=2, seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, d))
    return x, np.sin(2 * x[:, 0]) + 0.1 * r.normal(size=n)


def test_fit_sgpr_keeps_jitter_and_chunk_size():
    """A zero-learning-rate fit must rebuild the same model: with jitter 1e-2 the bound
    differs by tens of nats from the default jitter's, so a dropped setting shows."""
    x, y = _data()
    sg = gp.SGPR(_net(), x, y, x[:10], noise=0.05, jitter=1e-2, chunk_size=7)
    assert sg.jitter == 1e-2 and sg.chunk_size == 7
    default = float(gp.SGPR(_net(), x, y, x[:10], noise=0.05).elbo())
    assert abs(float(sg.elbo()) - default) > 1.0  # the setting matters here
    sg2, _ = gp.fit_sgpr(
        sg,
        optimize_Z=False,
        optimize_kernel=False,
        optimize_noise=True,
        optimizer=optax.sgd(0.0),
        max_iters=10,
        quiet=True,
    )
    assert sg2.jitter == 1e-2 and sg2.chunk_size == 7
    assert float(sg2.elbo()) == pytest.approx(float(sg.elbo()), rel=1e-5)


def test_fit_exact_passes_jitter():
    x, y = _data()
    fitted, _ = gp.fit_exact(
        _net(), x, y, 0.05, jitter=1e-2, optimizer=optax.sgd(0.0), max_iters=10, quiet=True
    )
    ref = gp.ExactGP(_net(), x, y, 0.05, jitter=1e-2)
    assert float(fitted.jitter_used) == pytest.approx(1e-2)
    assert float(fitted.log_marginal_likelihood()) == pytest.approx(
        float(ref.log_marginal_likelihood()), rel=1e-5
    )


def test_zero_noise_is_refused_by_the_sparse_models():
    x, y = _data()
    with pytest.raises(ValueError, match=r"`noise` must be > 0 for SGPR"):
        gp.SGPR(_net(), x, y, x[:5], noise=0.0)
    with pytest.raises(ValueError, match=r"`Gaussian\(noise\)` must be > 0 for SVGP"):
        gp.SVGP(_net(), x[:5], gp.Gaussian(0.0), num_data=20)
    assert np.isfinite(float(gp.SGPR(_net(), x, y, x[:5], noise=1e-3).elbo()))


def test_sparse_errors_name_the_users_arguments():
    x, y = _data()
    sv = gp.SVGP(_net(), x[:5], gp.Gaussian(0.1), num_data=20)
    p = sv.init_params()
    with pytest.raises(ValueError, match=r"`X_test` has per-point shape \(1,\).*`Z`"):
        sv.predict(p, x[:3, :1])
    with pytest.raises(ValueError, match=r"`X_batch` has per-point shape \(1,\).*`Z`"):
        sv.elbo(p, x[:, :1], y)
    sg = gp.SGPR(_net(), x, y, x[:5], noise=0.1)
    with pytest.raises(ValueError, match="`X_test` has no points"):
        sg.predict(x[:0])
    with pytest.raises(TypeError, match="`jitter`"):
        gp.SGPR(_net(), x, y, x[:5], noise=0.1, jitter="1e-4")
    assert np.all(np.isfinite(np.asarray(sv.predict(p, x[:3])[0])))

"""Joint calibration checks on correlated held-out points, exact LOO against refits,
the NTKGP ensemble against the NTK-GP posterior, and the convergence gate."""

import jax
import numpy as np
import pytest

from ntk_bayes import diagnostics as dg
from ntk_bayes.calibrate._scoring import (
    ConvergenceStatus,
    convergence_status,
    divergences,
    gaussian_loo,
    verdict,
)


def _cov(n, rng):
    """A strongly correlated predictive covariance: smooth RBF part plus noise."""
    x = np.sort(rng.uniform(-2, 2, n))
    K = np.exp(-0.5 * (x[:, None] - x[None]) ** 2 / 0.5**2)
    return K + 0.1 * np.eye(n)


def _weak_cov(n, rng, ell=0.2, noise=0.5):
    """A less correlated one: the width test (marginal z², whose null has (tr R)²/tr R²
    effective degrees of freedom) has power only with many of them (~19 at n = 60)."""
    x = np.sort(rng.uniform(-2, 2, n))
    return np.exp(-0.5 * (x[:, None] - x[None]) ** 2 / ell**2) + noise * np.eye(n)


def _splits(kind, seed, R=3, n=60, cov=_cov):
    """R splits of targets drawn from a planted truth against a predictive N(0, C)."""
    rng = np.random.default_rng(seed)
    ys, ms, cs = [], [], []
    for _ in range(R):
        C = cov(n, rng)
        scale = {"calibrated": 1.0, "over": 3.0, "under": 1 / 3, "biased": 1.0}[kind]
        shift = 3.0 if kind == "biased" else 0.0
        L = np.linalg.cholesky(scale**2 * C)
        ys.append(shift + L @ rng.standard_normal(n))
        ms.append(np.zeros(n))
        cs.append(C)
    return ys, ms, cs


def test_joint_check_planted_cases():
    ys, ms, cs = _splits("calibrated", 0)
    # family-wise alpha 1e-3: the calibrated case flags with probability < 1e-3
    assert dg.joint_calibration_check(ys, ms, cs, alpha=1e-3).passed
    # sd x 3 and / 3 on _weak_cov (n = 60, ~19 effective dof): each split's width test
    # misses at level 0.05/15 with probability < 1e-5 (Imhof tails of the null), all 3 < 1e-15
    over = dg.joint_calibration_check(*_splits("over", 1, cov=_weak_cov))
    assert over.overconfident and not over.biased and not over.underconfident
    assert over.joint_covariance  # r'C^-1 r sees the wrong scale too
    under = dg.joint_calibration_check(*_splits("under", 2, cov=_weak_cov))
    assert under.underconfident and not under.overconfident and not under.biased
    biased = dg.joint_calibration_check(*_splits("biased", 3))
    # a 3-sd shift shared by 60 correlated points: 1'C^-1 1 ~ 4, so GLS z ~ 6 per split;
    # the width test centres the residuals by their GLS mean, so the shift is not width
    assert biased.biased and not biased.overconfident and not biased.underconfident
    assert len(over.stats["pit"]) == 180 and over.stats["n_splits"] == 3
    assert over.stats["n_tests"] == 15 and len(over.stats["mean_z2"]) == 3
    # 9 and 1/9 times a ratio with mean 1 and ~19 effective dof: below 1.5 (above 0.67)
    # only if that ratio is below 1/6 (above 6), probability < 1e-4 for each split
    assert min(over.stats["scale_ratio"]) > 1.5 and max(under.stats["scale_ratio"]) < 0.67


def test_splits_that_reject_in_opposite_directions_are_counted_in_the_verdict():
    # planted on _weak_cov: 2 splits with sd x 3 (over-confident), 1 with sd / 3
    # (under-confident) and 1 calibrated. At n = 60 (~19 effective dof of the width
    # test's null) each planted split's width test misses at the family-wise level
    # 0.05/20 with probability < 1e-5, and the calibrated one rejects with probability
    # < 2 * 0.05/20.
    parts = [_splits(kind, seed, R=1, cov=_weak_cov) for kind, seed in
             (("over", 11), ("over", 12), ("under", 13), ("calibrated", 14))]  # fmt: skip
    ys, ms, cs = ([p[i][0] for p in parts] for i in range(3))
    check = dg.joint_calibration_check(ys, ms, cs)
    assert check.stats["rejecting_splits"]["overconfident"] == 2
    assert check.stats["rejecting_splits"]["underconfident"] == 1
    assert verdict(check, None) == "over-confident (2/4 splits), under-confident (1/4 splits)"
    # one split: no counts
    one = dg.joint_calibration_check(ys[0], ms[0], cs[0])
    assert verdict(one, None) == "over-confident"


def _corr_plant(n=58):
    """Unit marginal variances with an RBF correlation of 0.8 (the reviewer's case)."""
    x = np.linspace(-3, 3, n)
    return 0.8 * np.exp(-0.5 * (x[:, None] - x[None]) ** 2 / 0.5**2) + 0.2 * np.eye(n)


def test_right_widths_with_a_wrong_correlation_are_not_called_overconfident():
    # planted: y ~ N(0, I) against N(0, C) with C_ii = 1: every interval has the right
    # width, only the correlation is wrong (E[r'C^-1 r] / n = tr C^-1 / n = 4.04)
    n = 58
    C = _corr_plant(n)
    y = np.random.default_rng(21).standard_normal(n)
    check = dg.joint_calibration_check(y, np.zeros(n), C, alpha=1e-3)
    # the width test's null is wider than the truth's chi2_58 here, so it rejects with
    # probability < 1e-3 (the family-wise level); the joint test with q/dof ~ 4 at 57
    # dof rejects with probability > 1 - 1e-15
    assert not check.overconfident and not check.underconfident
    assert check.joint_covariance and "joint_covariance" in check.flags
    assert abs(check.stats["mean_z2"][0] - 1) < 4 * np.sqrt(2 / n)  # 4 sd of chi2_58/58
    assert check.stats["chi2_over_dof"][0] > 2.5
    assert verdict(check, None) == "wrong joint covariance"  # no width verdict


def _near_independent_cov(n, rng):
    x = np.sort(rng.uniform(-3, 3, n))
    return 0.3 * np.exp(-0.5 * (x[:, None] - x[None]) ** 2 / 0.05**2) + 0.7 * np.eye(n)


@pytest.mark.parametrize("scale, kind", [(1.5, "over"), (0.6, "under")])
def test_width_planted_at_1_5x_and_0_6x(scale, kind):
    # truth sd x 1.5 (intervals too narrow) and x 0.6 (too wide) at n = 300 points with
    # ~210 effective dof: the width test misses at level 0.05/5 with probability < 1e-8
    rng = np.random.default_rng({"over": 31, "under": 32}[kind])
    n = 300
    C = _near_independent_cov(n, rng)
    y = scale * np.linalg.cholesky(C) @ rng.standard_normal(n)
    check = dg.joint_calibration_check(y, np.zeros(n), C)
    assert check.overconfident == (kind == "over")
    assert check.underconfident == (kind == "under")
    assert not check.biased


def test_quad_form_tails_against_chi2_and_monte_carlo():
    from scipy import stats

    from ntk_bayes.diagnostics._calibration import _quad_form_tails, _saddlepoint_tails

    # all weights 1: chi2 exactly (Imhof), and the saddlepoint within a few percent
    for x in (5.0, 20.0, 40.0):
        sf, cdf = _quad_form_tails(x, np.ones(20))
        assert sf == pytest.approx(stats.chi2.sf(x, 20), abs=1e-9)
        assert sf + cdf == pytest.approx(1.0)
        assert _saddlepoint_tails(x, np.ones(20))[0] == pytest.approx(sf, rel=0.01)
    # a few dominant weights among many tiny ones (quadrature fails, saddlepoint used):
    # against 200000 Monte Carlo draws, 4 sd of a binomial proportion plus 5% relative
    rng = np.random.default_rng(3)
    lam = np.concatenate([[1.0, 0.5, 0.2], np.full(997, 1e-4)])
    q = (lam[None, :3] * rng.standard_normal((200_000, 3)) ** 2).sum(1) + lam[3:].sum()
    for level in (0.01, 0.5, 0.99):
        x = float(np.quantile(q, level))
        sf, cdf = _quad_form_tails(x, lam)
        tol = 4 * np.sqrt(level * (1 - level) / 200_000) + 0.05 * min(level, 1 - level)
        assert abs(cdf - level) < tol and sf + cdf == pytest.approx(1.0, abs=1e-6)


def test_joint_check_independent_case_matches_marginal_intuition():
    rng = np.random.default_rng(5)
    n = 200
    y = rng.standard_normal(n)
    # identity covariance: a true N(0, 1) predictive is calibrated (false alarm < 1e-3)
    assert dg.joint_calibration_check(y, np.zeros(n), np.eye(n), alpha=1e-3).passed


def test_joint_check_errors():
    with pytest.raises(ValueError, match="at least 10"):
        dg.joint_calibration_check(np.zeros(5), np.zeros(5), np.eye(5))
    with pytest.raises(ValueError, match="must match"):
        dg.joint_calibration_check(np.zeros(12), np.zeros(11), np.eye(12))
    with pytest.raises(ValueError, match="positive definite"):
        dg.joint_calibration_check(np.ones(12), np.zeros(12), -np.eye(12))
    with pytest.raises(ValueError, match="alpha"):
        dg.joint_calibration_check(np.ones(12), np.zeros(12), np.eye(12), alpha=2.0)


def test_exact_loo_equals_brute_force_refits():
    from ntk_bayes import gp, stax

    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        X = rng.normal(size=(15, 2))
        y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=15)
        net = stax.serial(
            stax.Dense(8, W_std=1.3, b_std=0.2), stax.Relu(), stax.Dense(1, W_std=1.3, b_std=0.2)
        )
        noise = 0.05
        closed = np.asarray(gp.ExactGP(net, X, y, noise, jitter=0.0).loo_log_predictive())
        brute = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            m, v = gp.ExactGP(net, X[keep], y[keep], noise, jitter=0.0).predict(X[i : i + 1])
            s2 = float(v[0]) + noise
            brute.append(-0.5 * np.log(2 * np.pi * s2) - 0.5 * (y[i] - float(m[0])) ** 2 / s2)
        np.testing.assert_allclose(closed.reshape(-1), brute, rtol=0, atol=1e-8)
        K = np.asarray(net.kernel_fn(X, None, "nngp")) + noise * np.eye(len(y))
        np.testing.assert_allclose(gaussian_loo(K, y), brute, rtol=0, atol=1e-8)


def test_ntkgp_ensemble_equals_ntk_gp_posterior_in_float64():
    from ntk_bayes import gp, stax
    from ntk_bayes.calibrate._ensembles import gd_ensemble, ntkgp_ensemble

    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        X, Xs = rng.normal(size=(20, 3)), rng.normal(size=(6, 3))
        y = np.cos(X[:, 1])
        net = stax.serial(
            stax.Dense(8, W_std=1.5, b_std=0.3), stax.Relu(), stax.Dense(1, W_std=1.5, b_std=0.3)
        )
        m, c = ntkgp_ensemble(net.kernel_fn, X, y, Xs, 0.05)
        gm, gc = gp.ExactGP(net, X, y, 0.05, kind="ntk", jitter=0.0).predict(Xs, full_cov=True)
        assert m.dtype == np.float64
        np.testing.assert_allclose(m, np.asarray(gm), rtol=0, atol=1e-8)
        np.testing.assert_allclose(c, np.asarray(gc), rtol=0, atol=1e-8)
        # the plain GD ensemble shares the mean but not the covariance: not a posterior
        pm, pc = gd_ensemble(net.kernel_fn, X, y, Xs, 0.05)
        np.testing.assert_allclose(pm, m, rtol=0, atol=1e-8)
        assert np.max(np.abs(pc - c)) > 1e-3


class _Passing:
    passed, flags = True, ()


def test_not_converged_gets_no_verdict():
    bad = convergence_status({"max_rhat": 1.263, "min_ess_bulk": 6, "min_ess_tail": 10}, 0)
    assert not bad.converged and "R-hat" in bad.reasons[0] and "ESS" in bad.reasons[1]
    assert verdict(_Passing(), bad) == "not converged"
    div = convergence_status({"max_rhat": 1.0, "min_ess_bulk": 900, "min_ess_tail": 900}, 3)
    assert verdict(_Passing(), div) == "not converged" and "divergent" in div.reasons[0]
    nan = convergence_status({"max_rhat": float("nan"), "min_ess_bulk": 500}, 0)
    assert not nan.converged  # convergence not shown is not convergence
    # divergence counts come as lists (BNN info) or arrays (numpyro extra fields)
    assert divergences({"divergences_per_chain": np.array([1, 2])}) == 3
    assert divergences({"divergences_per_chain": [0, 0]}) == 0 and divergences({}) == 0
    ok = ConvergenceStatus(1.002, 800, 700, 0, ())
    assert verdict(_Passing(), ok) == "calibrated" and verdict(_Passing(), None) == "calibrated"

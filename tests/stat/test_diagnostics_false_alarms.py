"""False-alarm rates of the calibration checks over seeded replicates of a calibrated
truth, and the planted case where only the correlation of a predictive is wrong."""

import numpy as np
from _stats import binomial_lower, binomial_upper

from ntk_bayes import diagnostics as dg

ALPHA = 0.05


def test_classification_check_family_wise_rate_is_at_most_alpha():
    # calibrated probabilities: the label is 1 with probability p exactly. The two tests
    # (confidence, bins) at alpha/2 each: family-wise rate <= alpha (it was ~2 alpha,
    # 0.094, before the Bonferroni correction, which this bound rejects)
    rng = np.random.default_rng(0)
    reps, n = 2000, 200
    alarms = 0
    for _ in range(reps):
        p = rng.uniform(0.5, 1.0, n)
        y = (rng.uniform(size=n) < p).astype(int)
        alarms += not dg.classification_check(y, np.stack([1 - p, p], 1), alpha=ALPHA).passed
    # a Binomial(2000, 0.05) quantile: false alarm < 0.1% if the rate is <= alpha
    assert alarms <= binomial_upper(reps, ALPHA, 1e-3)


def test_classification_check_each_test_holds_its_level_with_few_points():
    # twelve calibrated points, one or two to a bin: the chi2 approximation of the bin
    # test flagged 4.3% and the family of both 6.0% at alpha = 0.05 (levels 2.5%
    # and 5%); the Monte Carlo nulls are valid at any n (n_sim = 399: 0.025 * 400 is an
    # integer, so the level is exact up to the statistics' ties, which make it lower)
    rng = np.random.default_rng(4)
    reps, n = 4000, 12
    bins = family = 0
    for _ in range(reps):
        p = rng.uniform(0.5, 1.0, n)
        y = (rng.uniform(size=n) < p).astype(int)
        check = dg.classification_check(y, np.stack([1 - p, p], 1), alpha=ALPHA, n_sim=399)
        bins += "miscalibrated_bins" in check.flags
        family += not check.passed
    # Binomial(4000, level) quantiles: each fails by chance with probability < 0.1%
    assert bins <= binomial_upper(reps, ALPHA / 2, 1e-3)
    assert family <= binomial_upper(reps, ALPHA, 1e-3)


def _rbf(n, ell=0.5):
    x = np.linspace(-3, 3, n)
    return np.exp(-0.5 * (x[:, None] - x[None]) ** 2 / ell**2)


def test_joint_check_family_wise_rate_is_at_most_alpha():
    # a calibrated, strongly correlated joint predictive (few effective dof: the width
    # test's null is far from chi2_n, so its tails must be the generalised chi-square)
    rng = np.random.default_rng(1)
    n, reps = 58, 500
    C = _rbf(n) + 0.05 * np.eye(n)
    L = np.linalg.cholesky(C)
    alarms, width = 0, 0
    for _ in range(reps):
        check = dg.joint_calibration_check(L @ rng.standard_normal(n), np.zeros(n), C)
        alarms += not check.passed
        width += check.overconfident or check.underconfident
    # Binomial(500, rate) quantiles: each fails by chance with probability < 0.1%
    assert alarms <= binomial_upper(reps, ALPHA, 1e-3)
    # the width test alone: two one-sided tests at alpha/5 each
    assert width <= binomial_upper(reps, 2 * ALPHA / 5, 1e-3)


def test_wrong_correlation_with_right_widths_is_a_covariance_not_a_width_failure():
    # y ~ N(0, I) against N(0, C), C_ii = 1 with RBF correlation 0.8: marginal coverage is
    # exact, r'C^-1 r / n ~ tr(C^-1) / n = 4.04. It used to read "overconfident" in every
    # replicate; now the width verdict fires at most at its null rate 2 alpha/5 (the
    # truth's chi2_n is narrower than the predictive's null, so in fact less often) and
    # the joint covariance check in (almost) every replicate
    rng = np.random.default_rng(2)
    n, reps = 58, 300
    C = 0.8 * _rbf(n) + 0.2 * np.eye(n)
    width, joint = 0, 0
    for _ in range(reps):
        check = dg.joint_calibration_check(rng.standard_normal(n), np.zeros(n), C)
        width += check.overconfident or check.underconfident
        joint += check.joint_covariance
    # a Binomial(300, 2 alpha/5) quantile: false alarm < 0.1%
    assert width <= binomial_upper(reps, 2 * ALPHA / 5, 1e-3)
    # q ~ 4 (n - 1) against chi2_57 at level alpha/5: power > 1 - 1e-6 per replicate
    # (taken as 0.999 here, a Binomial(300, 0.999) quantile: false alarm < 0.1%)
    assert joint >= binomial_lower(reps, 0.999, 1e-3)


def test_marginal_regression_check_family_wise_rate_is_at_most_alpha():
    # y ~ N(0, 1) against the predictive N(0, 1), n = 100: four families of tests,
    # Bonferroni over them (each at alpha before: 12.9% flagged at alpha = 0.05)
    rng = np.random.default_rng(3)
    reps, n = 1000, 100
    pred = dg.GaussianPredictive(np.zeros(n), np.ones(n))
    alarms = sum(
        not dg.calibration_check(rng.standard_normal(n), pred, alpha=ALPHA).passed
        for _ in range(reps)
    )
    # a Binomial(1000, 0.05) quantile: false alarm < 0.1% if the rate is <= alpha
    assert alarms <= binomial_upper(reps, ALPHA, 1e-3), alarms

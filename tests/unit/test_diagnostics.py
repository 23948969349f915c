"""Scoring rules against closed forms and quadrature; calibration checks on planted cases."""

import math

import numpy as np
import pytest
from _stats import binomial_lower, binomial_upper
from scipy import integrate, stats

from ntk_bayes import diagnostics as dg

# ---- rung 1: closed forms against quadrature and simple identities -------------------


def _crps_quad(cdf, y, lo, hi):
    """∫ (F(z) - 1[y <= z])^2 dz by adaptive quadrature, split at y."""
    left = integrate.quad(lambda z: cdf(z) ** 2, lo, y, limit=200)[0]
    right = integrate.quad(lambda z: (1 - cdf(z)) ** 2, y, hi, limit=200)[0]
    return left + right


@pytest.mark.parametrize("y", [-2.5, 0.0, 0.7, 4.0])
def test_gaussian_crps_matches_quadrature(y):
    pred = dg.GaussianPredictive(np.array([0.3]), np.array([1.7]))
    exact = _crps_quad(lambda z: stats.norm.cdf(z, 0.3, 1.7), y, -40, 40)
    np.testing.assert_allclose(pred.crps(np.array([y])), exact, rtol=1e-7)


@pytest.mark.parametrize("y", [-1.0, 0.2, 3.0])
@pytest.mark.parametrize("S, rtol", [(50, 1e-6), (400, 2e-3)])
def test_mixture_crps_matches_quadrature(y, S, rtol):
    """Exact pairwise sum up to 65 draws; 64 cyclic pairings beyond."""
    rng = np.random.default_rng(0)
    f = rng.normal(0.5, 1.0, size=(S, 1))
    sd = rng.uniform(0.2, 0.6, size=S)
    pred = dg.SamplePredictive(f, noise_std=sd)

    def cdf(z):
        return float(np.mean(stats.norm.cdf((z - f[:, 0]) / sd)))

    exact = _crps_quad(cdf, y, -30, 30)
    np.testing.assert_allclose(pred.crps(np.array([y])), exact, rtol=rtol)


def test_sample_crps_is_empirical_energy_form():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(40, 3))
    y = np.array([0.1, -2.0, 1.5])
    pred = dg.SamplePredictive(s)
    term1 = np.abs(s - y).mean(0)
    term2 = np.abs(s[:, None] - s[None]).mean((0, 1))
    np.testing.assert_allclose(pred.crps(y), term1 - 0.5 * term2, rtol=1e-12)


def test_sample_crps_converges_to_gaussian():
    rng = np.random.default_rng(2)
    n, S = 5, 20000
    mean, sd = rng.normal(size=n), rng.uniform(0.5, 2, size=n)
    y = rng.normal(size=n)
    draws = mean + sd * rng.standard_normal((S, n))
    c_gauss = dg.GaussianPredictive(mean, sd).crps(y)
    c_samp = dg.SamplePredictive(draws).crps(y)
    # Monte Carlo error of the energy form is O(sd / sqrt(S))
    np.testing.assert_allclose(c_samp, c_gauss, atol=5 * sd.max() / math.sqrt(S))


def test_logpdf_cdf_quantile_consistency():
    rng = np.random.default_rng(3)
    mean, sd = rng.normal(size=6), rng.uniform(0.3, 2, size=6)
    g = dg.GaussianPredictive(mean, sd)
    y = rng.normal(size=6)
    np.testing.assert_allclose(g.logpdf(y), stats.norm.logpdf(y, mean, sd), rtol=1e-12)
    np.testing.assert_allclose(g.cdf(g.quantile([0.1, 0.9])), [[0.1] * 6, [0.9] * 6], rtol=1e-12)
    f = rng.normal(size=(200, 6))
    m = dg.SamplePredictive(f, noise_std=0.4)
    direct = np.log(np.mean(stats.norm.pdf(y, f, 0.4), axis=0))
    np.testing.assert_allclose(m.logpdf(y), direct, rtol=1e-10)
    q = m.quantile([0.05, 0.5, 0.975])
    np.testing.assert_allclose(
        np.stack([m.cdf(r) for r in q]), [[0.05] * 6, [0.5] * 6, [0.975] * 6], atol=1e-10
    )
    np.testing.assert_allclose(m.std, np.sqrt(f.var(0) + 0.16), rtol=1e-12)


def test_bare_samples_cdf_is_mid_rank():
    s = np.array([[0.0], [1.0], [1.0], [2.0]])
    pred = dg.SamplePredictive(s)
    np.testing.assert_allclose(pred.cdf(np.array([1.0])), [0.5])
    np.testing.assert_allclose(pred.cdf(np.array([-1.0])), [0.0])
    np.testing.assert_allclose(pred.cdf(np.array([5.0])), [1.0])


def test_coverage_agrees_with_pit():
    rng = np.random.default_rng(4)
    mean, y = rng.normal(size=300), rng.normal(size=300) * 1.3
    pred = dg.GaussianPredictive(mean, 1.0)
    u = dg.pit(y, pred)
    cov = dg.coverage(y, pred, levels=(0.5, 0.9))
    for lv in (0.5, 0.9):
        assert cov[lv] == pytest.approx(np.mean(np.abs(u - 0.5) <= lv / 2))
    widths = dg.interval_width(pred, levels=(0.9,))
    assert widths[0.9] == pytest.approx(2 * stats.norm.ppf(0.95))
    assert dg.mean_coverage_error(cov) == pytest.approx(
        (abs(cov[0.5] - 0.5) + abs(cov[0.9] - 0.9)) / 2
    )


def test_coverage_equals_the_quantile_definition():
    """Coverage comes from F(y) for continuous predictives: the same counts as checking
    q((1-l)/2) <= y <= q((1+l)/2) with the solved quantiles (mixtures included), and from
    the quantiles themselves for bare draws."""
    rng = np.random.default_rng(6)
    n, levels = 80, (0.2, 0.5, 0.9, 0.99)
    f = rng.normal(size=(300, n)) * rng.uniform(0.2, 2, size=n)
    preds = [
        dg.GaussianPredictive(rng.normal(size=n), rng.uniform(0.3, 2, size=n)),
        dg.SamplePredictive(f, noise_std=0.3),
        dg.SamplePredictive(f, noise_std=rng.uniform(0.1, 0.5, size=(300, 1))),
        dg.SamplePredictive(f),
    ]
    y = 1.5 * rng.normal(size=n)
    for pred in preds:
        q = pred.quantile([(1 - lv) / 2 for lv in levels] + [(1 + lv) / 2 for lv in levels])
        lo, hi = q[: len(levels)], q[len(levels) :]
        direct = ((lo <= y) & (y <= hi)).mean(axis=1)
        cov = dg.coverage(y, pred, levels)
        np.testing.assert_array_equal([cov[lv] for lv in levels], direct)
        assert 0 < direct[1] < 1  # the levels split the points: a real comparison
        m = dg.regression_metrics(y, pred, levels)
        np.testing.assert_array_equal([m[f"coverage_{round(100 * lv)}"] for lv in levels], direct)
        st = dg.calibration_check(y, pred, levels).stats
        got = [st[f"coverage_{round(100 * lv)}"] for lv in levels]  # 1 - k/n: round-off
        np.testing.assert_allclose(got, direct, rtol=1e-12)


def test_regression_metrics_in_raw_units():
    rng = np.random.default_rng(5)
    mean, sd, y = rng.normal(size=50), rng.uniform(0.5, 1.5, size=50), rng.normal(size=50)
    s, shift = 3.0, 10.0
    std_units = dg.regression_metrics(y, dg.GaussianPredictive(mean, sd), scale=s)
    raw = dg.regression_metrics(s * y + shift, dg.GaussianPredictive(s * mean + shift, s * sd))
    for k in raw:
        assert std_units[k] == pytest.approx(raw[k], rel=1e-10, abs=1e-12), k
    assert {"rmse", "nlpd", "crps", "coverage_95", "width_50", "mean_coverage_error"} <= set(raw)
    assert raw["rmse"] == pytest.approx(
        dg.rmse(s * y + shift, dg.GaussianPredictive(s * mean + shift, s * sd))
    )


def test_predictive_distance():
    a = dg.GaussianPredictive([0.0, 1.0], [1.0, 2.0])
    b = dg.GaussianPredictive([0.5, 1.0], [1.0, 1.0])
    d = dg.predictive_distance(a, b)
    assert d["mean_abs_diff_mean"] == pytest.approx(0.25)
    assert d["mean_abs_diff_log_var"] == pytest.approx(np.log(4.0) / 2)
    assert d["w2"] == pytest.approx(np.sqrt((0.25 + 1.0) / 2))
    assert dg.predictive_distance(a, a) == {
        "mean_abs_diff_mean": 0.0,
        "mean_abs_diff_log_var": 0.0,
        "w2": 0.0,
    }
    with pytest.raises(ValueError, match="same"):
        dg.predictive_distance(a, dg.GaussianPredictive([0.0], 1.0))


# ---- rung 6: planted miscalibration --------------------------------------------------


def _planted(kind, n=400, seed=0, form="gaussian"):
    """Targets from N(mu, 1); a predictive that is calibrated or planted wrong."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=n)
    y = mu + rng.standard_normal(n)
    shift, scale = {
        "calibrated": (0, 1),
        "overconfident": (0, 0.5),
        "biased": (1.0, 1),
        "underconfident": (0, 2.0),
    }[kind]
    if form == "gaussian":
        return y, dg.GaussianPredictive(mu + shift, scale)
    # latent draws spread 0.6, noise 0.8: total variance 1 (times scale^2)
    f = mu + shift + 0.6 * scale * rng.standard_normal((300, n))
    return y, dg.SamplePredictive(f, noise_std=0.8 * scale)


@pytest.mark.parametrize("form", ["gaussian", "mixture"])
def test_planted_calibrated_passes(form):
    y, pred = _planted("calibrated", form=form)
    check = dg.calibration_check(y, pred)
    assert check.passed, check.describe()
    assert not (check.overconfident or check.underconfident or check.biased)
    m = dg.regression_metrics(y, pred)
    # Under calibration the coverages are those of 400 uniform PITs; simulated (2e5 sets):
    # P(mean coverage error >= 0.05) = 4e-4, so false alarm < 1e-3.
    assert m["mean_coverage_error"] < 0.05


@pytest.mark.parametrize("form", ["gaussian", "mixture"])
def test_planted_overconfident_is_flagged(form):
    y, pred = _planted("overconfident", form=form)
    check = dg.calibration_check(y, pred)
    assert {"under_coverage", "pit_too_dispersed", "pit_not_uniform"} <= set(check.flags)
    assert check.overconfident and not check.biased and not check.underconfident
    # sd halved: the 90% interval covers P(|Z| < 0.82) = 0.589; 0.7 is 4.5 binomial sd
    # above it at n = 400: false alarm < 2e-6.
    assert dg.coverage(y, pred)[0.9] < 0.7


@pytest.mark.parametrize("form", ["gaussian", "mixture"])
def test_planted_bias_is_flagged(form):
    y, pred = _planted("biased", form=form)
    check = dg.calibration_check(y, pred)
    assert {"biased", "under_coverage", "pit_not_uniform"} <= set(check.flags)
    assert check.biased and not check.overconfident
    assert check.stats["pit_mean"] < 0.4  # predictions too high: targets fall low


def test_planted_underconfident_is_flagged():
    y, pred = _planted("underconfident")
    check = dg.calibration_check(y, pred)
    assert "over_coverage" in check.flags and check.underconfident and not check.overconfident


def test_calibration_check_false_alarm_rate_and_power():
    """Family-wise false alarms stay near alpha; mild over-confidence is usually caught."""
    alarms = sum(
        not dg.calibration_check(*_planted("calibrated", 100, s)).passed for s in range(200)
    )
    # Four families, Bonferroni over them at alpha = 0.01: a calibrated draw alarms with
    # probability <= 0.01, and the Binomial(200, 0.01) bound fails with probability < 1e-3.
    assert alarms <= binomial_upper(200, 0.01, 1e-3), alarms
    caught = sum(
        dg.calibration_check(*_planted("overconfident", 100, s)).overconfident for s in range(50)
    )
    # If the check catches a 2x over-confident predictive (n = 100) with probability
    # >= 0.98, fewer than 45 of 50 catches has probability < 1e-3.
    assert caught >= binomial_lower(50, 0.98, 1e-3), caught


def test_pit_ecdf_bands_have_simultaneous_coverage():
    n = 50
    z, lo, hi = dg.pit_ecdf_bands(n, alpha=0.1, seed=0)
    assert np.all(lo <= z) and np.all(z <= hi) and np.all(np.diff(z) > 0)
    rng = np.random.default_rng(123)  # fresh draws, not the ones the bands were tuned on
    inside = 0
    for _ in range(400):
        e = np.searchsorted(np.sort(rng.uniform(size=n)), z, side="right") / n
        inside += bool(np.all((lo <= e) & (e <= hi)))
    # 400 trials: 3 standard errors of a 0.9 proportion is 0.045: false alarm < 0.3%
    assert abs(inside / 400 - 0.9) < 0.045
    # and bands are wider than pointwise ones (the adjustment goes the right way)
    point_lo = stats.binom.ppf(0.05, n, z) / n
    assert np.all(lo <= point_lo + 1e-12)


# ---- classification -------------------------------------------------------------


def test_classification_metrics_hand_values():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.8, 0.2]])
    y = np.array([0, 0, 1, 1])
    m = dg.classification_metrics(y, probs, n_bins=5)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.7, 0.2])))
    assert m["brier"] == pytest.approx(np.mean([0.02, 0.72, 0.18, 1.28]))
    # binary shorthand P(class 1) gives the same numbers
    m1 = dg.classification_metrics(y, probs[:, 1], n_bins=5)
    assert m1 == pytest.approx(m)
    rel = dg.reliability(y, probs, n_bins=5)
    # confidences 0.9, 0.6, 0.7, 0.8 fall in bins (0.8,1], (0.4,0.6], (0.6,0.8], (0.6,0.8]
    np.testing.assert_array_equal(rel.counts, [0, 0, 1, 2, 1])
    np.testing.assert_allclose(rel.accuracy[2:], [0.0, 0.5, 1.0])
    assert rel.ece == pytest.approx((0.6 + 2 * abs(0.5 - 0.75) + 0.1) / 4)
    assert rel.as_dict()["accuracy"][0] is None


def _planted_classes(kind, n=2000, k=3, seed=0):
    rng = np.random.default_rng(seed)
    logits = 1.5 * rng.normal(size=(n, k))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    temp = {"calibrated": 1.0, "overconfident": 3.0, "underconfident": 0.4}[kind]
    q = np.exp(temp * logits)
    return y, q / q.sum(1, keepdims=True)


def test_classification_check_planted():
    y, p = _planted_classes("calibrated")
    calibrated = dg.classification_check(y, p)
    assert calibrated.passed
    # two tests at alpha/2 each (Bonferroni): reported p-values are twice the raw ones,
    # which are Monte Carlo p-values (1 + k) / (1 + n_sim); at n = 2000 they sit near the
    # chi2 and normal approximations (4 Monte Carlo SE + 0.01 of approximation: false
    # alarm < 1e-4 per comparison)
    st = calibrated.stats
    assert st["n_tests"] == 2 and st["n_sim"] == 3999
    raw = {k: v / 2 for k, v in calibrated.pvalues.items()}
    side = "overconfident" if st["z_confidence"] < 0 else "underconfident"
    for key, approx in (
        ("miscalibrated_bins", stats.chi2.sf(st["chi2"], st["dof"])),
        (side, 2 * stats.norm.sf(abs(st["z_confidence"]))),
    ):
        assert (raw[key] * 4000) == pytest.approx(round(raw[key] * 4000))
        assert abs(raw[key] - approx) < 4 * np.sqrt(approx * (1 - approx) / 3999) + 0.01
    assert dg.classification_metrics(y, p)["ece"] < 0.03
    y, p = _planted_classes("overconfident")
    check = dg.classification_check(y, p)
    assert check.overconfident and "miscalibrated_bins" in check.flags
    y, p = _planted_classes("underconfident")
    assert dg.classification_check(y, p).underconfident


def test_classification_check_null_is_exact_by_enumeration():
    # ten points, two or three to a bin, so that the chi2 approximation is poor: the exact
    # null of both statistics by enumerating all 2^10 outcomes (the top label right with
    # probability equal to its confidence), against the Monte Carlo p-values reported
    c = np.array([0.55, 0.58, 0.66, 0.7, 0.74, 0.83, 0.86, 0.93, 0.96, 0.99])
    probs = np.stack([1 - c, c], 1)
    outcomes = ((np.arange(1024)[:, None] >> np.arange(10)) & 1).astype(float)
    weight = np.prod(np.where(outcomes == 1, c, 1 - c), axis=1)
    y = np.array([1, 0, 1, 0, 0, 1, 0, 1, 1, 0])  # an unlikely outcome: small p-values
    n_sim = 7999
    check = dg.classification_check(y, probs, n_bins=5, n_sim=n_sim, seed=3)
    z_obs, chi2_obs = check.stats["z_confidence"], check.stats["chi2"]
    zs, chi2s = [], []
    for right in outcomes:
        labels = right.astype(int)  # class 1 is every point's top label
        st = dg.classification_check(labels, probs, n_bins=5, n_sim=1).stats
        zs.append(st["z_confidence"])
        chi2s.append(st["chi2"])
    exact_conf = weight[np.abs(zs) >= abs(z_obs) - 1e-9].sum()
    exact_bins = weight[np.asarray(chi2s) >= chi2_obs - 1e-9].sum()
    side = "overconfident" if z_obs < 0 else "underconfident"
    for got, exact in (
        (check.pvalues[side] / 2, exact_conf),
        (check.pvalues["miscalibrated_bins"] / 2, exact_bins),
    ):
        # the Monte Carlo p-value's SE at n_sim draws; 4.5 SE: false alarm < 1e-5 each
        assert abs(got - exact) < 4.5 * np.sqrt(exact * (1 - exact) / n_sim) + 1 / n_sim
    assert exact_bins < 0.2  # the planted outcome is in the tail, so the test has teeth


def test_classification_check_simulation_arguments():
    y, p = _planted_classes("calibrated", n=50)
    a = dg.classification_check(y, p, seed=1)
    assert a.pvalues == dg.classification_check(y, p, seed=1).pvalues  # seeded
    for kw in ({"n_sim": 0}, {"n_sim": 2.5}, {"seed": -1}, {"n_sim": True}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            dg.classification_check(y, p, **kw)


# ---- errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn, exc, match",
    [
        (lambda: dg.GaussianPredictive([0.0, 1.0], [1.0, 0.0]), ValueError, "std` must be > 0"),
        (lambda: dg.GaussianPredictive([0.0, np.nan], 1.0), ValueError, "non-finite"),
        (lambda: dg.GaussianPredictive(np.zeros((2, 2)), 1.0), ValueError, "vector"),
        (lambda: dg.SamplePredictive(np.zeros((1, 3))), ValueError, "at least 2 draws"),
        (
            lambda: dg.SamplePredictive(np.zeros((4, 3)), noise_std=np.ones(2)),
            ValueError,
            "broadcast",
        ),
        (lambda: dg.SamplePredictive(np.zeros((4, 3)), noise_std=-1.0), ValueError, "> 0"),
        (
            lambda: dg.rmse([1.0, 2.0], dg.GaussianPredictive([0.0], 1.0)),
            ValueError,
            "has 2 entries",
        ),
        (lambda: dg.rmse([1.0], (0.0, 1.0)), TypeError, "GaussianPredictive"),
        (
            lambda: dg.coverage([1.0], dg.GaussianPredictive([0.0], 1.0), levels=(1.5,)),
            ValueError,
            "levels",
        ),
        (
            lambda: dg.calibration_check([1.0] * 5, dg.GaussianPredictive([0.0] * 5, 1.0)),
            ValueError,
            "at least 10",
        ),
        (
            lambda: dg.calibration_check(
                [1.0] * 20, dg.GaussianPredictive([0.0] * 20, 1.0), alpha=2
            ),
            ValueError,
            "alpha",
        ),
        (lambda: dg.accuracy([0, 1], [[0.5, 0.6], [0.5, 0.5]]), ValueError, "sum to 1"),
        (lambda: dg.accuracy([0, 2], [[0.5, 0.5], [0.5, 0.5]]), ValueError, "outside 0..1"),
        (lambda: dg.accuracy([0, 1], [[-0.5, 1.5], [0.5, 0.5]]), ValueError, r"\[0, 1\]"),
        (lambda: dg.reliability([0], [[1.0, 0.0]], n_bins=0), ValueError, "n_bins"),
        (
            lambda: dg.regression_metrics([0.0], dg.GaussianPredictive([0.0], 1.0), scale=-1),
            ValueError,
            "scale",
        ),
    ],
)
def test_errors(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()

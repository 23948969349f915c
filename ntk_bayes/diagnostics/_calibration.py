r"""Calibration checks that return flags, and simultaneous bands for the PIT ECDF.

Regression (:func:`calibration_check`), with u_i = F_i(y_i) the PIT values of n
held-out points. Under calibration the u_i are i.i.d. uniform, so:

- the number of points outside the central ℓ-interval is Binomial(n, 1 - ℓ):
  too many → ``under_coverage``, too few → ``over_coverage`` (two-sided binomial
  tests, Bonferroni over levels);
- mean(u) has mean ½ and variance 1/(12n): a shift → ``biased``;
- var(u) has mean 1/12 and variance (1/80 - 1/144)/n = 1/(180n): too large (a U-shaped
  PIT histogram) → ``pit_too_dispersed``, the signature of over-confidence; too small
  (a peaked histogram) → ``pit_too_concentrated``, under-confidence;
- a Kolmogorov–Smirnov test against U(0, 1) → ``pit_not_uniform``.

Classification (:func:`classification_check`): with c_i the top-label confidence and
o_i = 1 if the top label is right, Σ(o_i - c_i) has mean 0 and variance Σ c_i(1 - c_i)
under calibration: significantly negative → ``overconfident``, positive →
``underconfident``; the per-bin statistic Σ_b (O_b - E_b)^2 / V_b is χ^2 with B'
(non-empty bins) degrees of freedom → ``miscalibrated_bins`` (a Hosmer–Lemeshow test).

Joint checks (:func:`joint_calibration_check`): test points that share one training set
have correlated errors (a posterior mean wrong across a whole gap), so counts of PIT
values are not binomial. Under a calibrated joint Gaussian predictive N(m, C) of the
test targets y, r = y - m is N(0, C): with w = C^{-1} 1 / sqrt(1' C^{-1} 1),

- b = w' r ~ N(0, 1) (the generalised-least-squares mean of the residuals);
- q = r' C^{-1} r - b^2 ~ χ²_{n-1}, independent of b: too large → ``overconfident``,
  too small → ``underconfident``;
- b / sqrt(q / (n-1)) ~ t_{n-1} whatever the scale of C → ``biased`` (so a wrong
  spread is not mistaken for bias);
- z = L^{-1} r (C = L L') is i.i.d. N(0, 1): a KS test of Φ(z) → ``not_gaussian``.

Several splits (dependent through shared data) are combined by Bonferroni, and so are
the four tests: the whole family has false-alarm rate at most ``alpha``.

Bands (:func:`pit_ecdf_bands`): simultaneous 1-α bands for the ECDF of n uniform
values, by the simulation method of Säilynoja, Bürkner & Vehtari (2022).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from scipy.linalg import solve_triangular

from ._classification import as_probs, reliability
from ._predictive import GaussianPredictive, SamplePredictive
from ._regression import LEVELS, _check, _inside, _pct

__all__ = [
    "ALPHA",
    "CalibrationCheck",
    "joint_calibration_check",
    "calibration_check",
    "classification_check",
    "pit_ecdf_bands",
]


ALPHA = 0.05
"""The one significance level of the calibration study: tests and figure bands."""


@dataclasses.dataclass(frozen=True)
class CalibrationCheck:
    """Result of a calibration check: statistics, p-values and the flags raised.

    Attributes:
        flags: names of the failed tests (empty when calibrated at level ``alpha``).
        pvalues: p-value of every test run, by name.
        stats: the statistics behind them (coverages, PIT mean/variance, ...).
        alpha: the family-wise significance level used.
    """

    flags: tuple[str, ...]
    pvalues: dict[str, float]
    stats: dict[str, float]
    alpha: float

    @property
    def passed(self) -> bool:
        return not self.flags

    @property
    def overconfident(self) -> bool:
        """Intervals too narrow: a U-shaped PIT, or under-coverage not explained by bias."""
        f = set(self.flags)
        return (
            "pit_too_dispersed" in f
            or "overconfident" in f
            or ("under_coverage" in f and "biased" not in f)
        )

    @property
    def underconfident(self) -> bool:
        f = set(self.flags)
        return (
            "over_coverage" in f
            or "underconfident" in f
            or ("pit_too_concentrated" in f and "biased" not in f)
        )

    @property
    def biased(self) -> bool:
        return "biased" in self.flags

    def describe(self) -> str:
        if self.passed:
            return f"calibrated (no test rejects at alpha={self.alpha:g})"
        worst = ", ".join(f"{f} (p={self.pvalues.get(f, float('nan')):.2g})" for f in self.flags)
        return f"miscalibrated: {worst}"

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "flags": list(self.flags),
            "pvalues": dict(self.pvalues),
            "stats": dict(self.stats),
            "alpha": self.alpha,
        }


def _check_alpha(alpha):
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise ValueError(f"`alpha` must be in (0, 1), got {alpha!r}")


def _two_sided_normal(z: float) -> float:
    return float(2.0 * stats.norm.sf(abs(z)))


def calibration_check(
    y: ArrayLike,
    pred: GaussianPredictive | SamplePredictive,
    levels: Sequence[float] = LEVELS,
    *,
    alpha: float = 0.01,
) -> CalibrationCheck:
    """Test a regression predictive for calibration on held-out targets.

    Args:
        y: held-out targets ``(n,)``; the tests assume they are independent given the
            model (true for a test split).
        pred: :class:`GaussianPredictive` or :class:`SamplePredictive` at those points.
        levels: central-interval levels whose coverage is tested.
        alpha: significance level of each family of tests (Bonferroni inside the
            coverage family).

    Returns:
        A :class:`CalibrationCheck`; ``.passed``, ``.overconfident``, ``.biased`` and
            ``.underconfident`` summarise the flags.
    """
    _check_alpha(alpha)
    y = _check(y, pred)
    n = y.shape[0]
    if n < 10:
        raise ValueError(f"calibration tests need at least 10 held-out points, got {n}")
    u = np.clip(pred.cdf(y), 0.0, 1.0)
    lv, inside = _inside(y, pred, levels, u)
    outside = (~inside).sum(axis=1)
    flags, pvals, st = [], {}, {}

    p_under, p_over = 1.0, 1.0
    for level, k in zip(lv, outside, strict=True):
        test = stats.binomtest(int(k), n, 1.0 - level)
        st[f"coverage_{_pct(level)}"] = 1.0 - k / n
        if k / n > 1.0 - level:
            p_under = min(p_under, test.pvalue * len(lv))
        else:
            p_over = min(p_over, test.pvalue * len(lv))
    pvals["under_coverage"], pvals["over_coverage"] = min(p_under, 1.0), min(p_over, 1.0)

    m, v = float(u.mean()), float(u.var())
    z_mean = (m - 0.5) / math.sqrt(1.0 / (12.0 * n))
    z_var = (v - 1.0 / 12.0) / math.sqrt(1.0 / (180.0 * n))
    st.update(pit_mean=m, pit_var=v, z_pit_mean=z_mean, z_pit_var=z_var)
    pvals["biased"] = _two_sided_normal(z_mean)
    p_var = _two_sided_normal(z_var)
    pvals["pit_too_dispersed"] = p_var if z_var > 0 else 1.0
    pvals["pit_too_concentrated"] = p_var if z_var < 0 else 1.0
    pvals["pit_not_uniform"] = float(stats.kstest(u, "uniform").pvalue)

    for name in (
        "under_coverage",
        "over_coverage",
        "biased",
        "pit_too_dispersed",
        "pit_too_concentrated",
        "pit_not_uniform",
    ):
        if pvals[name] < alpha:
            flags.append(name)
    return CalibrationCheck(tuple(flags), pvals, st, float(alpha))


_JOINT_TESTS = ("biased", "overconfident", "underconfident", "not_gaussian")


def _joint_stats(r: np.ndarray, C: np.ndarray) -> tuple[float, float, np.ndarray]:
    n = r.shape[0]
    C = 0.5 * (C + C.T)
    try:
        L = np.linalg.cholesky(C)
    except np.linalg.LinAlgError:
        raise ValueError(
            "`cov` is not positive definite; pass the predictive covariance of the test "
            "targets, observation noise included"
        ) from None
    z = solve_triangular(L, r, lower=True)
    u = solve_triangular(L, np.ones(n), lower=True)
    b = float(u @ z) / math.sqrt(float(u @ u))
    return b, float(z @ z) - b * b, z


def joint_calibration_check(
    y: ArrayLike | Sequence[ArrayLike],
    mean: ArrayLike | Sequence[ArrayLike],
    cov: ArrayLike | Sequence[ArrayLike],
    *,
    alpha: float = ALPHA,
) -> CalibrationCheck:
    """Test a joint Gaussian predictive of correlated held-out targets.

    Args:
        y: held-out targets ``(n,)``, or a list of them, one per train/test split.
        mean: predictive means ``(n,)``, or a list, one per split.
        cov: predictive covariance of the targets ``(n, n)`` (noise included), or a
            list, one per split.
        alpha: family-wise false-alarm rate over all tests and splits (Bonferroni).

    Returns:
        A :class:`CalibrationCheck` with flags among ``biased``, ``overconfident``,
            ``underconfident``, ``not_gaussian``; ``stats`` holds the pooled whitened PIT
            values Φ(z) under ``"pit"`` (i.i.d. uniform within a split when calibrated).
    """
    _check_alpha(alpha)
    ys, ms, cs = (list(a) if isinstance(a, list | tuple) else [a] for a in (y, mean, cov))
    if not (len(ys) == len(ms) == len(cs)) or not ys:
        raise ValueError("`y`, `mean` and `cov` must be lists of the same length (one per split)")
    p = {k: [] for k in _JOINT_TESTS}
    zs, bs, qs, dofs = [], [], [], []
    for i, (yi, mi, ci) in enumerate(zip(ys, ms, cs, strict=True)):
        yi = np.asarray(yi, np.float64).reshape(-1)
        mi = np.asarray(mi, np.float64).reshape(-1)
        ci = np.asarray(ci, np.float64)
        n = yi.shape[0]
        if mi.shape != (n,) or ci.shape != (n, n):
            raise ValueError(
                f"split {i}: `mean` {mi.shape} and `cov` {ci.shape} must match `y` ({n},)"
            )
        if n < 10:
            raise ValueError(f"calibration tests need at least 10 held-out points, got {n}")
        if not (np.all(np.isfinite(yi)) and np.all(np.isfinite(mi)) and np.all(np.isfinite(ci))):
            raise ValueError(f"split {i}: `y`, `mean` and `cov` must be finite")
        b, q, z = _joint_stats(yi - mi, ci)
        # a t statistic: its null holds whatever the scale of C, so an over- or
        # under-confident model is not called biased
        t = b / math.sqrt(max(q, 1e-300) / (n - 1))
        p["biased"].append(float(2.0 * stats.t.sf(abs(t), n - 1)))
        p["overconfident"].append(float(stats.chi2.sf(q, n - 1)))
        p["underconfident"].append(float(stats.chi2.cdf(q, n - 1)))
        p["not_gaussian"].append(float(stats.kstest(stats.norm.cdf(z), "uniform").pvalue))
        zs.append(z)
        bs.append(b)
        qs.append(q)
        dofs.append(n - 1)
    k = len(ys) * len(_JOINT_TESTS)
    pvals = {t: min(1.0, k * min(v)) for t, v in p.items()}
    flags = tuple(t for t in _JOINT_TESTS if pvals[t] < alpha)
    z = np.concatenate(zs)
    st = {
        "gls_bias_z": bs,
        "chi2_over_dof": [q / d for q, d in zip(qs, dofs, strict=True)],
        # the splits whose own test rejects at the family-wise level: a model can be
        # over-confident on some splits and under-confident on others
        "rejecting_splits": {t: sum(k * v < alpha for v in p[t]) for t in _JOINT_TESTS},
        "whitened_var": float(np.var(z)),
        "n_splits": len(ys),
        "n_points": int(z.size),
        "pit": stats.norm.cdf(z).tolist(),
    }
    return CalibrationCheck(flags, pvals, st, float(alpha))


def classification_check(
    y: ArrayLike, probs: ArrayLike, *, n_bins: int = 10, alpha: float = 0.01
) -> CalibrationCheck:
    """Test class probabilities for (top-label) calibration on held-out labels."""
    _check_alpha(alpha)
    p, yy = as_probs(probs, y)
    if len(yy) < 10:
        raise ValueError(f"calibration tests need at least 10 held-out points, got {len(yy)}")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == yy).astype(np.float64)
    var = float(np.sum(conf * (1 - conf)))
    z = float(np.sum(correct - conf)) / math.sqrt(max(var, 1e-12))
    rel = reliability(yy, p, n_bins)
    ok = (rel.counts > 0) & (rel.conf_var_sum > 1e-12)
    observed = rel.accuracy[ok] * rel.counts[ok]
    expected = rel.confidence[ok] * rel.counts[ok]
    chi2 = float(np.sum((observed - expected) ** 2 / rel.conf_var_sum[ok]))
    dof = int(ok.sum())
    pvals = {
        "overconfident": float(stats.norm.cdf(z)) * 2 if z < 0 else 1.0,
        "underconfident": float(stats.norm.sf(z)) * 2 if z > 0 else 1.0,
        "miscalibrated_bins": float(stats.chi2.sf(chi2, dof)) if dof > 0 else 1.0,
    }
    st = {"z_confidence": z, "chi2": chi2, "dof": float(dof), "ece": rel.ece}
    flags = tuple(k for k, v in pvals.items() if v < alpha)
    return CalibrationCheck(flags, pvals, st, float(alpha))


def pit_ecdf_bands(
    n: int,
    *,
    alpha: float = 0.05,
    n_eval: int = 100,
    n_sim: int = 4000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simultaneous ``1 - alpha`` bands for the ECDF of ``n`` i.i.d. uniform values.

    Pointwise bands are binomial quantiles at an adjusted level γ, chosen by simulation
    so that the ECDFs of ``n_sim`` uniform samples stay inside at all ``n_eval``
    points with probability ``1 - alpha`` (Säilynoja et al. 2022). The simulated ECDF
    counts are drawn directly (one multinomial over the cells between evaluation
    points), so time and memory are O(``n_sim * n_eval``) whatever ``n``; the
    ``n_sim`` default keeps the tuning noise of the coverage near 0.005.

    Returns:
        ``(z, lower, upper)``: evaluation points in (0, 1) and the band of the ECDF.
    """
    _check_alpha(alpha)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"`n` must be a positive integer, got {n!r}")
    n, k = int(n), int(min(n_eval, max(n, 2)))
    z = np.arange(1, k + 1) / (k + 1)
    rng = np.random.default_rng(seed)
    # how many of n uniforms fall below each z: the cumulated cell counts of one
    # multinomial draw per simulation, O(n_sim k) memory and time whatever n
    cells = np.diff(np.concatenate([[0.0], z, [1.0]]))
    counts = np.cumsum(rng.multinomial(n, cells, size=n_sim), axis=1)[:, :k]  # n_sim x k
    cdf = stats.binom.cdf(counts, n, z[None])
    cdf_below = stats.binom.cdf(counts - 1, n, z[None])
    tail = 2.0 * np.minimum(cdf, 1.0 - cdf_below)
    gamma = float(np.quantile(tail.min(axis=1), alpha))
    lower = stats.binom.ppf(gamma / 2, n, z) / n
    upper = stats.binom.ppf(1.0 - gamma / 2, n, z) / n
    return z, lower, upper


def ecdf_at(values, z) -> np.ndarray:
    """ECDF of ``values`` evaluated at ``z``."""
    return np.searchsorted(np.sort(np.asarray(values, np.float64)), z, side="right") / len(values)

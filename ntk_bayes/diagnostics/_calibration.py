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

Bands (:func:`pit_ecdf_bands`): simultaneous 1-α bands for the ECDF of n uniform
values, by the simulation method of Säilynoja, Bürkner & Vehtari (2022).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

from ._classification import as_probs, reliability
from ._regression import LEVELS, _check, _intervals, _pct

__all__ = [
    "CalibrationCheck",
    "calibration_check",
    "classification_check",
    "pit_ecdf_bands",
]


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


def calibration_check(y, pred, levels=LEVELS, *, alpha: float = 0.01) -> CalibrationCheck:
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
    lv, lo, hi = _intervals(pred, levels)
    outside = ((y[None] < lo) | (y[None] > hi)).sum(axis=1)
    u = np.clip(pred.cdf(y), 0.0, 1.0)
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


def classification_check(y, probs, *, n_bins: int = 10, alpha: float = 0.01) -> CalibrationCheck:
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

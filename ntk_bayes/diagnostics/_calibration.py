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
Each of the two tests runs at ``alpha / 2`` (Bonferroni): family-wise rate ≤ ``alpha``.

Joint checks (:func:`joint_calibration_check`): test points that share one training set
have correlated errors (a posterior mean wrong across a whole gap), so counts of PIT
values are not binomial. Under a calibrated joint Gaussian predictive N(m, C) of the
test targets y, r = y - m is N(0, C). Two questions are kept apart: are the intervals
the right width (the marginal variances C_ii), and is the whole covariance right (its
correlations too)?

- Width: z_i = r_i / sqrt(C_ii) are N(0, 1) (correlated, with the predictive
  correlation R = D^{-1/2} C D^{-1/2}, D = diag(C)), so Σ z_i² is Σ_j λ_j χ²_1 with λ_j
  the eigenvalues of R (tails by Imhof's 1961 integral, or a saddlepoint approximation
  where its quadrature fails). The residuals are first centred by their GLS mean (λ_j
  then of D^{-1/2} (C - 11'/1'C^{-1}1) D^{-1/2}), so that a bias is not read as width:
  too large → ``overconfident``, too small → ``underconfident``. Only marginal
  variances scale the statistic, so correct intervals with a wrong correlation are not
  called over-confident (the correlation sets only the spread of the null, hence the
  power: few effective degrees of freedom when the test points are strongly correlated).
- Covariance: with w = C^{-1} 1 / sqrt(1' C^{-1} 1), b = w' r ~ N(0, 1) (the
  generalised-least-squares mean of the residuals) and q = r' C^{-1} r - b^2 ~ χ²_{n-1},
  independent of b: q too large or too small (two-sided) → ``joint_covariance``. It
  rejects a wrong scale as well as a wrong correlation; the width verdict is the
  marginal test above.
- b / sqrt(q / (n-1)) ~ t_{n-1} whatever the scale of C → ``biased`` (so a wrong
  spread is not mistaken for bias);
- z = L^{-1} r (C = L L') is i.i.d. N(0, 1): a KS test of Φ(z) → ``not_gaussian`` (the
  whitening needs the right correlation, so a wrong one can show up here too).

Several splits (dependent through shared data) are combined by Bonferroni, and so are
the five tests: the whole family has false-alarm rate at most ``alpha``.

Bands (:func:`pit_ecdf_bands`): simultaneous 1-α bands for the ECDF of n uniform
values, by the simulation method of Säilynoja, Bürkner & Vehtari (2022).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from scipy.linalg import solve_triangular

from .._numerics import POSITIVE_INT, check_int
from ._classification import as_probs, bin_index, reliability
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

    @property
    def joint_covariance(self) -> bool:
        """The joint test r' C^{-1} r rejects the predictive covariance (its
        correlations or its scale); says nothing about interval width by itself."""
        return "joint_covariance" in self.flags

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
        alpha: family-wise significance level: four families (coverage at every
            level, PIT mean, PIT variance, KS), Bonferroni over the levels inside the
            coverage family and over the four families; the reported p-values are
            the adjusted ones (before 2026-12-04 each family ran at ``alpha``: 12.9% of
            calibrated cases were flagged at 0.05).

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

    families = 4  # coverage (both sides, over its levels), PIT mean, PIT variance, KS
    st["n_tests"] = float(families)
    for name in (
        "under_coverage",
        "over_coverage",
        "biased",
        "pit_too_dispersed",
        "pit_too_concentrated",
        "pit_not_uniform",
    ):
        pvals[name] = min(1.0, families * pvals[name])
        if pvals[name] < alpha:
            flags.append(name)
    return CalibrationCheck(tuple(flags), pvals, st, float(alpha))


_JOINT_TESTS = ("biased", "overconfident", "underconfident", "not_gaussian", "joint_covariance")


def _saddlepoint_tails(x: float, lam: np.ndarray) -> tuple[float, float]:
    """(P(Q > x), P(Q <= x)) for Q = Σ_j λ_j χ²_1, max λ = 1, by the Lugannani–Rice
    saddlepoint approximation (Kuonen 1999): relative error a few percent at worst
    (few effective degrees of freedom), far less with many."""
    from scipy.optimize import brentq

    k2 = 2.0 * float(np.sum(lam**2))
    if abs(x - float(lam.sum())) < 1e-3 * math.sqrt(k2):  # at the mean: the limit
        sf = 0.5 - 8.0 * float(np.sum(lam**3)) / (6.0 * math.sqrt(2 * math.pi) * k2**1.5)
        return sf, 1.0 - sf

    def k1(t):
        return float(np.sum(lam / (1.0 - 2.0 * t * lam))) - x

    # K'(t) < size / (-2t) for t < 0 and > 1 / (1 - 2t) near 1/2: a bracket of the root
    t = brentq(k1, -lam.size / x, 0.5 * (1.0 - 1.0 / (x + 1.0)), xtol=1e-300, maxiter=500)
    cgf = -0.5 * float(np.sum(np.log1p(-2.0 * t * lam)))
    w = math.copysign(math.sqrt(max(2.0 * (t * x - cgf), 0.0)), t)
    v = t * math.sqrt(2.0 * float(np.sum(lam**2 / (1.0 - 2.0 * t * lam) ** 2)))
    corr = float(stats.norm.pdf(w)) * (1.0 / v - 1.0 / w)
    sf = float(stats.norm.sf(w)) + corr
    cdf = float(stats.norm.cdf(w)) - corr
    return min(1.0, max(0.0, sf)), min(1.0, max(0.0, cdf))


def _quad_form_tails(x: float, lam: np.ndarray) -> tuple[float, float]:
    """(P(Q > x), P(Q <= x)) for Q = Σ_j λ_j χ²_1, λ_j >= 0.

    Imhof's (1961) inversion integral, 1/2 + (1/π) ∫_0^∞ sin θ(u) / (u ρ(u)) du with
    θ(u) = ½ Σ arctan(λ_j u) - ½ x u and ρ(u) = Π (1 + λ_j² u²)^{1/4}, exact to
    quadrature error; where the quadrature does not converge (far tails, a few dominant
    λ_j among many tiny ones) the saddlepoint approximation instead.
    """
    from scipy.integrate import IntegrationWarning, quad

    lam = np.asarray(lam, np.float64)
    top = float(lam.max())
    lam = lam[lam > 1e-12 * top] / top  # scale-free: P(Σ λ'_j χ²_1 > x / max λ)
    x = float(x) / top
    if x <= 0.0:
        return 1.0, 0.0

    def integrand(u):
        lu = lam * u
        theta = 0.5 * np.sum(np.arctan(lu)) - 0.5 * x * u
        return math.sin(theta) * math.exp(-0.25 * np.sum(np.log1p(lu * lu))) / u

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IntegrationWarning)
        val, err = quad(integrand, 0.0, np.inf, limit=1000, epsabs=1e-12)
    if caught or not math.isfinite(val) or err > 1e-6:  # p-values to 1e-6 suffice
        return _saddlepoint_tails(x, lam)
    sf = min(1.0, max(0.0, 0.5 + val / math.pi))
    return sf, 1.0 - sf


def _joint_stats(r: np.ndarray, C: np.ndarray) -> tuple[float, float, np.ndarray, float]:
    """b, q and z of the module docstring, and s = 1' C^{-1} 1."""
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
    s = float(u @ u)
    b = float(u @ z) / math.sqrt(s)
    return b, float(z @ z) - b * b, z, s


def _marginal_scale(r: np.ndarray, C: np.ndarray, shift: float, s: float) -> dict:
    """The width test on the marginal standardised residuals.

    The residuals are first centred by their GLS mean ``shift`` (so a bias is not called
    over-confidence, as b² is taken out of q): r̃ = r - shift·1 ~ N(0, C - 11'/s) under
    calibration, and Σ r̃_i² / C_ii is Σ λ_j χ²_1 with λ_j the eigenvalues of
    D^{-1/2} (C - 11'/s) D^{-1/2}, D = diag(C).
    """
    C = 0.5 * (C + C.T)
    d = np.sqrt(np.diag(C))
    stat = float(np.sum(((r - shift) / d) ** 2))
    lam = np.linalg.eigvalsh((C - 1.0 / s) / np.outer(d, d))
    lam = np.clip(lam, 0.0, None)
    sf, cdf = _quad_form_tails(stat, lam)
    return {
        "mean_z2": float(np.mean((r / d) ** 2)),
        "scale_ratio": stat / float(lam.sum()),
        "scale_dof": float(lam.sum() ** 2 / np.sum(lam**2)),
        "p_wide": sf,
        "p_narrow": cdf,
    }


def joint_calibration_check(
    y: ArrayLike | Sequence[ArrayLike],
    mean: ArrayLike | Sequence[ArrayLike],
    cov: ArrayLike | Sequence[ArrayLike],
    *,
    alpha: float = ALPHA,
) -> CalibrationCheck:
    """Test a joint Gaussian predictive of correlated held-out targets.

    The width verdict (``overconfident``/``underconfident``) comes from the marginal
    standardised residuals r_i / sqrt(C_ii) alone; the joint statistic r' C^{-1} r is a
    separate check of the whole covariance (``joint_covariance``), which a wrong
    correlation fails even when every interval has the right width.

    Args:
        y: held-out targets ``(n,)``, or a list of them, one per train/test split.
        mean: predictive means ``(n,)``, or a list, one per split.
        cov: predictive covariance of the targets ``(n, n)`` (noise included), or a
            list, one per split.
        alpha: family-wise false-alarm rate over all tests and splits (Bonferroni).

    Returns:
        A :class:`CalibrationCheck` with flags among ``biased``, ``overconfident``,
            ``underconfident``, ``not_gaussian``, ``joint_covariance``; ``stats`` holds,
            per split, ``mean_z2`` (mean of r_i² / C_ii, near 1 when calibrated),
            ``scale_ratio`` (the tested statistic Σ (r_i - b̂)² / C_ii, residuals
            centred by their GLS mean b̂, over its null mean: > 1 too narrow, < 1 too
            wide), ``scale_dof`` (effective degrees of freedom of its null),
            ``chi2_over_dof`` (q / (n-1) of the joint test, 1 when calibrated) and
            ``gls_bias_z``; ``rejecting_splits`` counts the splits each test rejects;
            and the pooled whitened PIT values Φ(z) under ``"pit"`` (i.i.d. uniform
            within a split when calibrated).
    """
    _check_alpha(alpha)
    ys, ms, cs = (list(a) if isinstance(a, list | tuple) else [a] for a in (y, mean, cov))
    if not (len(ys) == len(ms) == len(cs)) or not ys:
        raise ValueError("`y`, `mean` and `cov` must be lists of the same length (one per split)")
    p = {k: [] for k in _JOINT_TESTS}
    zs, bs, qs, dofs = [], [], [], []
    widths = {"mean_z2": [], "scale_ratio": [], "scale_dof": []}
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
        b, q, z, s1 = _joint_stats(yi - mi, ci)
        width = _marginal_scale(yi - mi, ci, b / math.sqrt(s1), s1)
        # a t statistic: its null holds whatever the scale of C, so an over- or
        # under-confident model is not called biased
        t = b / math.sqrt(max(q, 1e-300) / (n - 1))
        p["biased"].append(float(2.0 * stats.t.sf(abs(t), n - 1)))
        p["overconfident"].append(width["p_wide"])
        p["underconfident"].append(width["p_narrow"])
        p["not_gaussian"].append(float(stats.kstest(stats.norm.cdf(z), "uniform").pvalue))
        p_joint = 2.0 * min(stats.chi2.sf(q, n - 1), stats.chi2.cdf(q, n - 1))
        p["joint_covariance"].append(float(min(1.0, p_joint)))
        zs.append(z)
        bs.append(b)
        qs.append(q)
        dofs.append(n - 1)
        for key in widths:
            widths[key].append(width[key])
    k = len(ys) * len(_JOINT_TESTS)
    pvals = {t: min(1.0, k * min(v)) for t, v in p.items()}
    flags = tuple(t for t in _JOINT_TESTS if pvals[t] < alpha)
    z = np.concatenate(zs)
    st = {
        "gls_bias_z": bs,
        **widths,
        "chi2_over_dof": [q / d for q, d in zip(qs, dofs, strict=True)],
        # the splits whose own test rejects at the family-wise level: a model can be
        # over-confident on some splits and under-confident on others
        "rejecting_splits": {t: sum(k * v < alpha for v in p[t]) for t in _JOINT_TESTS},
        "whitened_var": float(np.var(z)),
        "n_splits": len(ys),
        "n_points": int(z.size),
        "n_tests": k,
        "pit": stats.norm.cdf(z).tolist(),
    }
    return CalibrationCheck(flags, pvals, st, float(alpha))


def classification_check(
    y: ArrayLike,
    probs: ArrayLike,
    *,
    n_bins: int = 10,
    alpha: float = 0.01,
    n_sim: int = 3999,
    seed: int = 0,
) -> CalibrationCheck:
    """Test class probabilities for (top-label) calibration on held-out labels.

    Two tests, each at level ``alpha / 2`` (Bonferroni), so that the family-wise
    false-alarm rate is at most ``alpha``: the two-sided confidence test (``overconfident``
    or ``underconfident`` by the sign of z) and the per-bin χ² test
    (``miscalibrated_bins``). Both take their null from ``n_sim`` simulations of the
    labels under calibration, given the probabilities (the top label right with
    probability equal to its confidence, independently over points), and report the
    Monte Carlo p-value (1 + #{simulated ≥ observed}) / (1 + n_sim), which is valid at
    any n (the normal and χ² approximations used before 2026-12-05 flagged calibrated
    probabilities at 1.6x their level with few or confident points). The p-values
    reported are Bonferroni-adjusted (twice the raw ones, capped at 1), so a flag is
    raised exactly when its p-value is below ``alpha``.

    Args:
        y: held-out labels ``(n,)``.
        probs: class probabilities ``(n, K)``, or ``(n,)`` for P(class 1).
        n_bins: equal-width confidence bins of the χ² test.
        alpha: family-wise false-alarm rate.
        n_sim: simulated label sets of the null; a test at level a is exact when
            a (n_sim + 1) is an integer (the default: a = 0.005, 0.025, 0.05).
        seed: seed of the simulations (the result is a function of the data and it).

    Returns:
        A :class:`CalibrationCheck`; ``stats`` has ``z_confidence``, ``chi2``, ``dof``,
            ``ece``, ``n_tests`` (the Bonferroni factor) and ``n_sim``.
    """
    _check_alpha(alpha)
    n_sim = check_int(n_sim, "n_sim", low=1)
    seed = check_int(seed, "seed", low=0)
    p, yy = as_probs(probs, y)
    if len(yy) < 10:
        raise ValueError(f"calibration tests need at least 10 held-out points, got {len(yy)}")
    rel = reliability(yy, p, n_bins)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == yy).astype(np.float64)
    sd = math.sqrt(max(float(np.sum(conf * (1 - conf))), 1e-12))
    ok = (rel.counts > 0) & (rel.conf_var_sum > 1e-12)
    _, b = bin_index(conf, n_bins)
    onehot = (b[:, None] == np.flatnonzero(ok)[None]).astype(np.float64)  # n x dof
    expected, var = conf @ onehot, rel.conf_var_sum[ok]

    def statistics(right):  # right: (m, n) 0/1 -> z (m,), chi2 (m,)
        return (right.sum(-1) - conf.sum()) / sd, np.sum((right @ onehot - expected) ** 2 / var, -1)

    z, chi2 = (float(v[0]) for v in statistics(correct[None]))
    rng = np.random.default_rng(int(seed))
    beyond_z = beyond_chi2 = 0
    chunk = max(1, 2_000_000 // len(conf))  # bounded memory whatever n
    for start in range(0, int(n_sim), chunk):
        m = min(chunk, int(n_sim) - start)
        z_sim, chi2_sim = statistics((rng.random((m, len(conf))) < conf).astype(np.float64))
        # ties (the statistics are discrete) count as beyond: a conservative p-value
        beyond_z += int(np.sum(np.abs(z_sim) >= abs(z) * (1 - 1e-9) - 1e-12))
        beyond_chi2 += int(np.sum(chi2_sim >= chi2 * (1 - 1e-9) - 1e-12))
    p_conf = (1 + beyond_z) / (1 + int(n_sim))
    p_bins = (1 + beyond_chi2) / (1 + int(n_sim)) if ok.any() else 1.0
    n_tests = 2  # the confidence test (one two-sided test) and the bin test
    pvals = {
        "overconfident": min(1.0, n_tests * p_conf) if z < 0 else 1.0,
        "underconfident": min(1.0, n_tests * p_conf) if z > 0 else 1.0,
        "miscalibrated_bins": min(1.0, n_tests * p_bins),
    }
    st = {
        "z_confidence": z,
        "chi2": chi2,
        "dof": float(ok.sum()),
        "ece": rel.ece,
        "n_tests": float(n_tests),
        "n_sim": float(n_sim),
    }
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
    n = check_int(n, "n", low=1, message=POSITIVE_INT)
    k = int(min(n_eval, max(n, 2)))
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

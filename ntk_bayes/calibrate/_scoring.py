r"""Scoring of a calibration study: convergence gates, LOO per model, verdicts, and
means with standard errors over repeated train/test splits.

Nothing here draws or writes; :mod:`._report` renders and :mod:`._files` writes.

Standard errors over R random splits (test share ρ = n_test / n_train) use the
corrected resampled variance of Nadeau & Bengio (2003),
SE² = (1/R + ρ) s², with s² the sample variance of the per-split scores: the splits
share most of their data, so the naive s²/R is too small. Paired differences between
models are taken split by split and get the same correction.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .. import diagnostics as dg

__all__ = [
    "RHAT_MAX",
    "ESS_MIN",
    "ConvergenceStatus",
    "convergence_status",
    "LooResult",
    "gaussian_loo",
    "psis_loo",
    "divergences",
    "verdict",
    "mean_se",
    "paired",
]

RHAT_MAX = 1.01
ESS_MIN = 400


@dataclasses.dataclass(frozen=True)
class ConvergenceStatus:
    """Whether a sampled model's draws can be trusted (Vehtari et al. 2021 thresholds).

    Attributes:
        max_rhat: worst split R-hat over the predictive function values (and parameters).
        min_ess_bulk, min_ess_tail: smallest effective sample sizes.
        divergences: divergent transitions over all chains.
        reasons: why it failed (empty when converged).
    """

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    reasons: tuple[str, ...]

    @property
    def converged(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "converged": self.converged}


def convergence_status(
    conv: dict, divergences: int, *, rhat_max: float = RHAT_MAX, ess_min: float = ESS_MIN
) -> ConvergenceStatus:
    """Judge ``conv`` (from :func:`ntk_bayes.diagnostics.convergence`) and a divergence
    count: R-hat above ``rhat_max``, bulk ESS below ``ess_min`` or any divergence fails.
    NaN R-hat/ESS (e.g. one chain) fail too: convergence was not shown."""
    rhat, ess_b = float(conv["max_rhat"]), float(conv["min_ess_bulk"])
    ess_t = float(conv.get("min_ess_tail", float("nan")))
    reasons = []
    if not rhat <= rhat_max:
        reasons.append(f"R-hat {rhat:.3f} > {rhat_max}")
    if not ess_b >= ess_min:
        reasons.append(f"bulk ESS {ess_b:.0f} < {ess_min}")
    if divergences:
        reasons.append(f"{int(divergences)} divergent transitions")
    return ConvergenceStatus(rhat, ess_b, ess_t, int(divergences), tuple(reasons))


@dataclasses.dataclass(frozen=True)
class LooResult:
    """Leave-one-out expected log predictive density on the training data.

    Attributes:
        method: ``"exact"`` (closed form, R&W eq. 5.12), ``"sgpr"`` (closed form under
            the SGPR's own marginal N(0, Q + σ²I)), ``"psis"`` (Pareto-smoothed
            importance sampling over posterior draws) or ``"none"``.
        pointwise: log p(y_i | y_{-i}) per training point (standardised units).
        max_k, n_bad_k: PSIS only: largest Pareto k and the count above 0.7.
        note: why there is none, or a warning.
    """

    method: str
    pointwise: np.ndarray | None = None
    max_k: float | None = None
    n_bad_k: int | None = None
    note: str = ""

    @property
    def elpd(self) -> float | None:
        return None if self.pointwise is None else float(np.sum(self.pointwise))

    @property
    def se(self) -> float | None:
        if self.pointwise is None:
            return None
        return float(math.sqrt(self.pointwise.size * np.var(self.pointwise)))

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "elpd": self.elpd,
            "se": self.se,
            "max_pareto_k": self.max_k,
            "n_bad_k": self.n_bad_k,
            "note": self.note,
        }


def gaussian_loo(C, y) -> np.ndarray:
    """``log p(y_i | y_{-i})`` under y ~ N(0, C), R&W eq. 5.10-5.12: with
    α = C^{-1} y, the LOO mean is y_i - α_i / [C^{-1}]_ii and variance 1 / [C^{-1}]_ii."""
    C = np.asarray(C, np.float64)
    y = np.asarray(y, np.float64).reshape(-1)
    L = np.linalg.cholesky(0.5 * (C + C.T))
    Linv = np.linalg.solve(L, np.eye(len(y)))
    d = np.sum(Linv * Linv, axis=0)
    alpha = Linv.T @ (Linv @ y)
    return -0.5 * math.log(2 * math.pi) + 0.5 * np.log(d) - 0.5 * alpha**2 / d


def psis_loo(idata) -> LooResult:
    """PSIS-LOO of a sampled model's ``log_likelihood.y`` with its Pareto k."""
    import warnings

    from ..diagnostics._arviz import az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = az.loo(idata, var_name="y", pointwise=True)
    if dg.ARVIZ_1:
        pw, k = res.elpd_i, res.pareto_k
    else:
        pw, k = res["loo_i"], res["pareto_k"]
    pw, k = np.asarray(pw, np.float64).reshape(-1), np.asarray(k, np.float64).reshape(-1)
    bad = int(np.sum(k > 0.7))
    note = f"{bad} Pareto k > 0.7: PSIS unreliable there" if bad else ""
    return LooResult("psis", pw, float(np.max(k)), bad, note)


def divergences(info: dict) -> int:
    """Divergent transitions over all chains from a sampler's info dict."""
    return int(np.sum(np.asarray(info.get("divergences_per_chain", []), np.int64)))


def verdict(check, status: ConvergenceStatus | None) -> str:
    """The calibration verdict, or ``"not converged"`` when the sampler failed."""
    if status is not None and not status.converged:
        return "not converged"
    if check is None:
        return "n/a (fewer than 10 test points)"
    if check.passed:
        return "calibrated"
    tags = []
    if check.overconfident:
        tags.append("over-confident")
    if check.underconfident:
        tags.append("under-confident")
    if check.biased:
        tags.append("biased")
    return ", ".join(tags) or "miscalibrated (" + ", ".join(check.flags) + ")"


def _corrected_se(values: np.ndarray, rho: float) -> float:
    r = values.size
    if r < 2:
        return float("nan")
    return float(math.sqrt((1.0 / r + rho) * np.var(values, ddof=1)))


def mean_se(values, rho: float) -> tuple[float, float]:
    """Mean and corrected standard error of per-split scores (NaN SE for one split)."""
    v = np.asarray(values, np.float64)
    return float(np.mean(v)), _corrected_se(v, rho)


def paired(a, b, rho: float) -> tuple[float, float]:
    """Mean and corrected standard error of the per-split differences ``a - b``."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(np.mean(d)), _corrected_se(d, rho)

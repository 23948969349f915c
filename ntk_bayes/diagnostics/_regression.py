r"""Proper scoring rules and calibration summaries for regression.

With y_i the held-out targets and p_i the predictive of point i (n points):

.. math::

    \mathrm{RMSE} = \sqrt{\tfrac1n \textstyle\sum_i (y_i - E[p_i])^2}, \quad
    \mathrm{NLPD} = -\tfrac1n \textstyle\sum_i \log p_i(y_i), \quad
    \mathrm{CRPS} = \tfrac1n \textstyle\sum_i \int (F_i(z) - 1[y_i \le z])^2 dz,

    \mathrm{PIT}_i = F_i(y_i), \quad
    \mathrm{cov}(\ell) = \tfrac1n \#\{i: q_i(\tfrac{1-\ell}2) \le y_i \le q_i(\tfrac{1+\ell}2)\}

with F_i the predictive CDF and q_i its quantile function. A calibrated model has
uniform PIT values and cov(ℓ) ≈ ℓ; NLPD and CRPS are proper scores (lower is better;
Gneiting & Raftery 2007), RMSE ignores the uncertainty, interval width measures
sharpness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ._predictive import GaussianPredictive, SamplePredictive, as_1d

__all__ = [
    "LEVELS",
    "rmse",
    "nlpd",
    "crps",
    "pit",
    "coverage",
    "interval_width",
    "mean_coverage_error",
    "regression_metrics",
    "predictive_distance",
]

LEVELS = (0.5, 0.8, 0.9, 0.95)
Predictive = GaussianPredictive | SamplePredictive


def _check(y, pred) -> np.ndarray:
    if not isinstance(pred, GaussianPredictive | SamplePredictive):
        raise TypeError(
            "`pred` must be a GaussianPredictive(mean, std) or SamplePredictive(samples, "
            f"noise_std), got {type(pred).__name__}"
        )
    return as_1d(y, "y", pred.n)


def _levels(levels) -> tuple[float, ...]:
    out = tuple(float(x) for x in np.atleast_1d(levels))
    if not out or any(not 0.0 < x < 1.0 for x in out):
        raise ValueError(f"`levels` must be probabilities in (0, 1), got {levels}")
    return out


def rmse(y: ArrayLike, pred: Predictive) -> float:
    """Root mean squared error of the predictive mean."""
    y = _check(y, pred)
    return float(np.sqrt(np.mean((y - pred.mean) ** 2)))


def nlpd(y: ArrayLike, pred: Predictive) -> float:
    """Mean negative log predictive density (nats per point)."""
    y = _check(y, pred)
    return float(-np.mean(pred.logpdf(y)))


def crps(y: ArrayLike, pred: Predictive) -> float:
    """Mean continuous ranked probability score (in units of y)."""
    y = _check(y, pred)
    return float(np.mean(pred.crps(y)))


def pit(y: ArrayLike, pred: Predictive) -> np.ndarray:
    """Probability integral transform values F_i(y_i), uniform under calibration."""
    y = _check(y, pred)
    return np.clip(pred.cdf(y), 0.0, 1.0)


def _intervals(pred, levels):
    levels = _levels(levels)
    q = np.concatenate([[(1 - x) / 2 for x in levels], [(1 + x) / 2 for x in levels]])
    qs = pred.quantile(q)
    k = len(levels)
    return levels, qs[:k], qs[k:]


def _inside(y, pred, levels, u=None) -> tuple[tuple[float, ...], np.ndarray]:
    """``(levels, inside)``: whether each target lies in each central interval, ``(k, n)``.

    For a continuous predictive (Gaussian, or draws blurred by Gaussian noise) the CDF
    is strictly increasing, so q((1-ℓ)/2) ≤ y ≤ q((1+ℓ)/2) exactly when (1-ℓ)/2 ≤ F(y)
    ≤ (1+ℓ)/2: one CDF evaluation instead of a quantile solve per level (a mixture of
    8,000 draws' quantiles at 19 levels took seconds). Bare draws use their quantiles.
    ``u``: F(y) when the caller has it.
    """
    levels = _levels(levels)
    if isinstance(pred, SamplePredictive) and pred.noise_std is None:
        _, lo, hi = _intervals(pred, levels)
        return levels, (lo <= y[None]) & (y[None] <= hi)
    u = pred.cdf(y) if u is None else u
    lv = np.asarray(levels)[:, None]
    return levels, ((1.0 - lv) / 2 <= u[None]) & (u[None] <= (1.0 + lv) / 2)


def coverage(
    y: ArrayLike, pred: Predictive, levels: Sequence[float] = LEVELS
) -> dict[float, float]:
    """Fraction of targets inside the central predictive interval at each level."""
    y = _check(y, pred)
    levels, inside = _inside(y, pred, levels)
    return {lv: float(m) for lv, m in zip(levels, inside.mean(axis=1), strict=True)}


def interval_width(pred: Predictive, levels: Sequence[float] = LEVELS) -> dict[float, float]:
    """Mean width of the central predictive interval at each level (sharpness)."""
    levels, lo, hi = _intervals(pred, levels)
    return {lv: float(w) for lv, w in zip(levels, (hi - lo).mean(axis=1), strict=True)}


def mean_coverage_error(cov: dict[float, float]) -> float:
    """Mean over levels of |empirical coverage - nominal level|."""
    if not cov:
        raise ValueError("`cov` is empty; compute it with coverage(y, pred)")
    return float(np.mean([abs(c - lv) for lv, c in cov.items()]))


def regression_metrics(
    y: ArrayLike, pred: Predictive, levels: Sequence[float] = LEVELS, *, scale: float = 1.0
) -> dict:
    """All regression metrics as a flat dict of floats (JSON-ready).

    Args:
        y: held-out targets ``(n,)``.
        pred: the predictive at the same points.
        levels: central-interval levels for coverage and width.
        scale: the targets' standardisation scale; RMSE, CRPS and widths are multiplied
            by it and NLPD shifted by ``log(scale)``, so the figures are in raw units.

    Returns:
        ``rmse, nlpd, crps, mean_std, coverage_<pct>, width_<pct>, mean_coverage_error,
            pit_mean, pit_var, n``.
    """
    y = _check(y, pred)
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"`scale` must be a positive number, got {scale!r}")
    levels = _levels(levels)
    u = np.clip(pred.cdf(y), 0.0, 1.0)
    levels_, lo, hi = _intervals(pred, levels)
    inside = _inside(y, pred, levels, u)[1].mean(axis=1)
    cov = dict(zip(levels_, inside.tolist(), strict=True))
    out = {
        "n": int(y.shape[0]),
        "rmse": scale * float(np.sqrt(np.mean((y - pred.mean) ** 2))),
        "nlpd": float(-np.mean(pred.logpdf(y))) + math.log(scale),
        "crps": scale * float(np.mean(pred.crps(y))),
        "mean_std": scale * float(np.mean(pred.std)),
    }
    for lv, c, w in zip(levels_, inside, (hi - lo).mean(axis=1), strict=True):
        pct = _pct(lv)
        out[f"coverage_{pct}"] = float(c)
        out[f"width_{pct}"] = scale * float(w)
    out["mean_coverage_error"] = mean_coverage_error(cov)
    out["pit_mean"] = float(u.mean())
    out["pit_var"] = float(u.var())
    return out


def _pct(level: float) -> str:
    p = 100.0 * level
    return f"{p:.0f}" if abs(p - round(p)) < 1e-9 else f"{p:g}"


def predictive_distance(pred_a: Predictive, pred_b: Predictive) -> dict:
    r"""How far two predictives at the same points are apart (e.g. a BNN from the NNGP).

    With means μ and variances v of each point's predictive:

    .. math::

        d_μ = \tfrac1n \textstyle\sum_i |μ^a_i - μ^b_i|, \quad
        d_{\log v} = \tfrac1n \textstyle\sum_i |\log v^a_i - \log v^b_i|, \quad
        W_2 = \big(\tfrac1n \textstyle\sum_i (μ^a_i - μ^b_i)^2
              + (\sqrt{v^a_i} - \sqrt{v^b_i})^2\big)^{1/2}

    (W_2: the Wasserstein-2 distance between the Gaussians with these moments, averaged
    over points).

    Returns:
        ``{"mean_abs_diff_mean", "mean_abs_diff_log_var", "w2"}``.
    """
    for name, p in (("pred_a", pred_a), ("pred_b", pred_b)):
        if not isinstance(p, GaussianPredictive | SamplePredictive):
            raise TypeError(f"`{name}` must be a GaussianPredictive or SamplePredictive")
    if pred_a.n != pred_b.n:
        raise ValueError(f"the predictives have {pred_a.n} and {pred_b.n} points; need the same")
    ma, mb, sa, sb = pred_a.mean, pred_b.mean, pred_a.std, pred_b.std
    return {
        "mean_abs_diff_mean": float(np.mean(np.abs(ma - mb))),
        "mean_abs_diff_log_var": float(np.mean(np.abs(2.0 * (np.log(sa) - np.log(sb))))),
        "w2": float(np.sqrt(np.mean((ma - mb) ** 2 + (sa - sb) ** 2))),
    }

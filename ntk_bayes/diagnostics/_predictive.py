r"""Predictive distributions of a scalar target, one per test point.

Every regression metric only needs a predictive's density, CDF, quantiles and CRPS.
Two forms cover all models of the project:

- :class:`GaussianPredictive` (exact/sparse GPs, GD ensembles): ``N(mean, std^2)``;
- :class:`SamplePredictive` (MCMC and SVI): draws ``f_s`` of the latent output, plus,
  when ``noise_std`` is given, Gaussian observation noise, i.e. the mixture
  ``p(y) = (1/S) \sum_s N(y | f_s, σ_s^2)``; without it the draws are taken as draws of
  ``y`` itself (their empirical distribution).

All computations run in float64 NumPy: these are summaries, not model code.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.special import logsumexp, ndtr, ndtri

__all__ = ["GaussianPredictive", "SamplePredictive", "as_1d"]

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_SHIFTS = 64  # cyclic shifts used for the pairwise term of a mixture's CRPS


def as_1d(x, name: str, n: int | None = None) -> np.ndarray:
    """A finite float64 vector (a column ``(n, 1)`` is accepted and flattened)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be a vector (n,), got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"`{name}` has {arr.shape[0]} entries but the predictive has {n}")
    if not np.all(np.isfinite(arr)):
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"`{name}` has {bad} non-finite value(s); the model's output is broken")
    return arr


def _norm_pdf(z):
    return np.exp(-0.5 * z * z) / _SQRT_2PI


def _abs_moment(mu, var):
    """E|X| for X ~ N(mu, var): 2σφ(μ/σ) + μ(2Φ(μ/σ) - 1)."""
    s = np.sqrt(var)
    z = mu / s
    return 2.0 * s * _norm_pdf(z) + mu * (2.0 * ndtr(z) - 1.0)


@dataclasses.dataclass(frozen=True)
class GaussianPredictive:
    """Independent Gaussian predictives ``y_i ~ N(mean_i, std_i^2)``.

    Args:
        mean: predictive means ``(n,)``.
        std: predictive standard deviations ``(n,)`` (observation noise included), > 0.
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        mean = as_1d(self.mean, "mean")
        std = np.broadcast_to(np.asarray(self.std, np.float64), mean.shape)
        std = as_1d(std, "std", mean.shape[0])
        if np.any(std <= 0):
            raise ValueError(
                f"`std` must be > 0 everywhere; {int((std <= 0).sum())} entries are not "
                "(add the observation noise to the latent variance)"
            )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def n(self) -> int:
        return self.mean.shape[0]

    def logpdf(self, y):
        z = (y - self.mean) / self.std
        return -0.5 * z * z - np.log(self.std * _SQRT_2PI)

    def cdf(self, y):
        return ndtr((y - self.mean) / self.std)

    def quantile(self, q) -> np.ndarray:
        """Quantiles ``(len(q), n)`` at probabilities ``q``."""
        q = np.atleast_1d(np.asarray(q, np.float64))
        return self.mean[None] + self.std[None] * ndtri(q)[:, None]

    def crps(self, y):
        r"""CRPS = σ [z(2Φ(z) - 1) + 2φ(z) - 1/√π], z = (y - μ)/σ (Gneiting & Raftery 2007)."""
        z = (y - self.mean) / self.std
        return self.std * (
            z * (2.0 * ndtr(z) - 1.0) + 2.0 * _norm_pdf(z) - 1.0 / math.sqrt(math.pi)
        )

    def sample(self, rng: np.random.Generator, n_draws: int) -> np.ndarray:
        return self.mean + self.std * rng.standard_normal((n_draws, self.n))


@dataclasses.dataclass(frozen=True)
class SamplePredictive:
    """A predictive given by draws ``(S, n)``, optionally blurred by Gaussian noise.

    Args:
        samples: draws ``(S, n)`` (or ``(chain, draw, n)``, flattened) of the latent
            output ``f`` (with ``noise_std``) or of ``y`` itself (without).
        noise_std: observation-noise standard deviation: a scalar, one per draw (shape
            ``(S,)`` or ``(chain, draw)``: a sampled noise), or one per draw and point;
            ``None`` for draws of ``y``.
    """

    samples: np.ndarray
    noise_std: np.ndarray | None = None

    def __post_init__(self):
        s = np.asarray(self.samples, np.float64)
        lead = s.shape[:-1]
        if s.ndim == 3:
            s = s.reshape(-1, s.shape[-1])
        if s.ndim != 2 or s.shape[0] < 2:
            raise ValueError(
                f"`samples` must have shape (draws, n) with at least 2 draws, got {s.shape}"
            )
        if not np.all(np.isfinite(s)):
            raise ValueError(
                f"`samples` has {int((~np.isfinite(s)).sum())} non-finite draws; check the "
                "sampler's divergences"
            )
        object.__setattr__(self, "samples", s)
        if self.noise_std is not None:
            sd = np.asarray(self.noise_std, np.float64)
            if sd.ndim >= 1 and sd.shape == lead:
                sd = sd.reshape(-1, 1)  # one noise level per draw; pass (1, n) for one per point
            elif sd.ndim == 3:
                sd = sd.reshape(-1, sd.shape[-1])
            try:
                sd = np.broadcast_to(sd, s.shape)
            except ValueError:
                raise ValueError(
                    f"`noise_std` of shape {np.shape(self.noise_std)} does not broadcast to the "
                    f"draws {s.shape}; pass a scalar, one value per draw or (draws, n)"
                ) from None
            if not np.all(np.isfinite(sd)) or np.any(sd <= 0):
                raise ValueError("`noise_std` must be finite and > 0")
            object.__setattr__(self, "noise_std", sd)

    @property
    def n(self) -> int:
        return self.samples.shape[1]

    @property
    def n_draws(self) -> int:
        return self.samples.shape[0]

    @property
    def mean(self) -> np.ndarray:
        return self.samples.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        var = self.samples.var(axis=0)
        if self.noise_std is not None:
            var = var + np.mean(self.noise_std**2, axis=0)
        return np.sqrt(var)

    def logpdf(self, y):
        """Log density; without a noise model a Gaussian with the draws' moments stands in."""
        if self.noise_std is None:
            return GaussianPredictive(self.mean, np.maximum(self.std, 1e-300)).logpdf(y)
        z = (y[None] - self.samples) / self.noise_std
        comp = -0.5 * z * z - np.log(self.noise_std * _SQRT_2PI)
        return logsumexp(comp, axis=0) - math.log(self.n_draws)

    def cdf(self, y):
        """Predictive CDF; for bare draws the mid-rank ``(#{y_s < y} + #{y_s = y}/2) / S``."""
        if self.noise_std is None:
            below = np.mean(self.samples < y[None], axis=0)
            ties = np.mean(self.samples == y[None], axis=0)
            return below + 0.5 * ties
        return np.mean(ndtr((y[None] - self.samples) / self.noise_std), axis=0)

    def quantile(self, q) -> np.ndarray:
        """Quantiles ``(len(q), n)``; a mixture's solve F(x) = q by safeguarded Newton."""
        q = np.atleast_1d(np.asarray(q, np.float64))
        if self.noise_std is None:
            return np.quantile(self.samples, q, axis=0)
        sd_max = self.noise_std.max(axis=0)
        shape = (q.size, self.n)
        lo = np.broadcast_to(self.samples.min(axis=0) - 10.0 * sd_max, shape).copy()
        hi = np.broadcast_to(self.samples.max(axis=0) + 10.0 * sd_max, shape).copy()
        x = np.clip(self.mean[None] + self.std[None] * ndtri(q)[:, None], lo, hi)
        qq = np.broadcast_to(q[:, None], shape)
        for _ in range(100):
            z = (x[:, None, :] - self.samples[None]) / self.noise_std[None]
            F = ndtr(z).mean(axis=1)
            dens = (_norm_pdf(z) / self.noise_std[None]).mean(axis=1)
            below = F < qq
            lo, hi = np.where(below, x, lo), np.where(below, hi, x)
            done = (np.abs(F - qq) < 1e-11) | (hi - lo < 1e-11 * (1.0 + np.abs(x)))
            if done.all():
                break
            step = x - (F - qq) / np.maximum(dens, 1e-300)
            # Newton where it stays inside the bracket, bisection elsewhere
            step = np.where((step >= lo) & (step <= hi), step, 0.5 * (lo + hi))
            x = np.where(done, x, step)
        return x

    def crps(self, y):
        r"""CRPS = E|Y - y| - ½ E|Y - Y'| (energy form, Gneiting & Raftery 2007).

        Bare draws: the CRPS of their empirical distribution, with E|Y - Y'| from the
        sorted draws in O(S log S). Mixtures: both expectations in closed form from
        E|N(μ, v)| = 2√v φ(μ/√v) + μ(2Φ(μ/√v) - 1). The pairwise term is exact up to 65
        draws; beyond, it averages 64 evenly spaced cyclic pairings of the draws, an
        O(64 S n) estimate of the O(S^2 n) sum (relative error ~1e-3 for 400 draws).
        """
        S = self.n_draws
        if self.noise_std is None:
            term1 = np.mean(np.abs(self.samples - y[None]), axis=0)
            xs = np.sort(self.samples, axis=0)
            w = (2.0 * np.arange(1, S + 1) - S - 1.0)[:, None]
            term2 = np.sum(w * xs, axis=0) / (S * S)  # = ½ E|Y - Y'|
            return term1 - term2
        var = self.noise_std**2
        term1 = np.mean(_abs_moment(y[None] - self.samples, var), axis=0)
        # E|Y - Y'| = (1/S^2) sum_s sum_k A(f_s - f_{s+k}, v_s + v_{s+k}), k cyclic shifts;
        # beyond 64 draws, 64 evenly spaced shifts stand in for all S - 1 nonzero ones
        same = np.sum(_abs_moment(np.zeros_like(var), 2.0 * var), axis=0)
        shifts = np.unique(np.linspace(1, S - 1, min(S - 1, _SHIFTS)).round().astype(int))
        cross = sum(
            _abs_moment(self.samples - np.roll(self.samples, k, 0), var + np.roll(var, k, 0)).sum(0)
            for k in shifts
        )
        pair = same + cross * (S - 1) / len(shifts)
        return term1 - 0.5 * pair / S**2

    def sample(self, rng: np.random.Generator, n_draws: int | None = None) -> np.ndarray:
        """Draws of ``y``: the stored draws, plus noise when a noise model is given."""
        idx = np.arange(self.n_draws) if n_draws is None else rng.integers(0, self.n_draws, n_draws)
        out = self.samples[idx]
        if self.noise_std is not None:
            out = out + self.noise_std[idx] * rng.standard_normal(out.shape)
        return out

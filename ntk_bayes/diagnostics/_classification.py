r"""Classification metrics and reliability diagrams.

With p_i the predicted class probabilities of point i, y_i its class, and
c_i = max_k p_ik the top-label confidence:

.. math::

    \mathrm{acc} = \tfrac1n \textstyle\sum_i 1[\arg\max_k p_{ik} = y_i], \quad
    \mathrm{NLL} = -\tfrac1n \textstyle\sum_i \log p_{i y_i}, \quad
    \mathrm{Brier} = \tfrac1n \textstyle\sum_i \sum_k (p_{ik} - 1[k = y_i])^2,

    \mathrm{ECE} = \textstyle\sum_b \frac{n_b}{n} |\mathrm{acc}_b - \mathrm{conf}_b|

over equal-width confidence bins b (Guo et al. 2017). The Brier score sums over all
classes, so for two classes it is twice the one-column score (p - y)^2.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._numerics import POSITIVE_INT, check_int

__all__ = [
    "Reliability",
    "as_probs",
    "accuracy",
    "nll",
    "brier",
    "reliability",
    "classification_metrics",
]

_EPS = 1e-12


def as_probs(probs, y=None, *, name: str = "probs") -> tuple[np.ndarray, np.ndarray | None]:
    """Validate class probabilities ``(n, K)`` (or ``(n,)``: P(class 1) of two classes).

    Draws ``(S, n, K)`` are averaged over the first axis (the posterior predictive).
    Returns ``(probs, y)`` with ``y`` as int codes checked against ``K``.
    """
    p = np.asarray(probs, np.float64)
    if p.ndim == 3:
        p = p.mean(axis=0)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"`{name}` must be (n,), (n, K) or (draws, n, K); got {p.shape}")
    if not np.all(np.isfinite(p)) or p.min() < -1e-6 or p.max() > 1 + 1e-6:
        raise ValueError(f"`{name}` must hold probabilities in [0, 1] (pass softmax(logits))")
    sums = p.sum(axis=1)
    if np.max(np.abs(sums - 1.0)) > 1e-3:
        i = int(np.argmax(np.abs(sums - 1.0)))
        raise ValueError(
            f"rows of `{name}` must sum to 1; row {i} sums to {sums[i]:.6g} (pass softmax(logits))"
        )
    p = np.clip(p, 0.0, 1.0) / sums[:, None]
    if y is None:
        return p, None
    yy = np.asarray(y)
    if yy.ndim != 1 or yy.shape[0] != p.shape[0]:
        raise ValueError(f"`y` must be a vector of {p.shape[0]} class codes, got {yy.shape}")
    if not np.issubdtype(yy.dtype, np.integer):
        if not np.all(yy == np.round(yy)):
            raise ValueError("`y` must hold integer class codes 0..K-1")
        yy = yy.astype(np.int64)
    if yy.min() < 0 or yy.max() >= p.shape[1]:
        raise ValueError(f"`y` holds codes outside 0..{p.shape[1] - 1} (K = {p.shape[1]} classes)")
    return p, yy.astype(np.int64)


def accuracy(y, probs) -> float:
    p, y = as_probs(probs, y)
    return float(np.mean(p.argmax(axis=1) == y))


def nll(y, probs) -> float:
    """Mean negative log-likelihood of the true class (nats)."""
    p, y = as_probs(probs, y)
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], _EPS))))


def brier(y, probs) -> float:
    """Multi-class Brier score, summed over classes."""
    p, y = as_probs(probs, y)
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


@dataclasses.dataclass(frozen=True)
class Reliability:
    """Reliability-diagram data (top-label confidence against accuracy per bin).

    Attributes:
        edges: bin edges ``(B + 1,)`` on [0, 1].
        counts: points per bin ``(B,)``.
        confidence: mean confidence per bin (NaN where empty).
        accuracy: accuracy per bin (NaN where empty).
        ece: expected calibration error.
        mce: maximum calibration error over non-empty bins.
        conf_var_sum: Σ c(1 - c) per bin, the variance of a bin's correct count
            under calibration (for the test in :func:`classification_check`).
    """

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    ece: float
    mce: float
    conf_var_sum: np.ndarray

    def as_dict(self) -> dict:
        """JSON-ready lists (NaN becomes None)."""

        def clean(a):
            return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, float)]

        return {
            "edges": clean(self.edges),
            "counts": [int(c) for c in self.counts],
            "confidence": clean(self.confidence),
            "accuracy": clean(self.accuracy),
            "ece": self.ece,
            "mce": self.mce,
        }


def bin_index(conf: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-width bins on [0, 1]: the edges and each confidence's bin, (lo, hi] but the
    first bin closed."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return edges, np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)


def reliability(y, probs, n_bins: int = 10) -> Reliability:
    """Bin points by top-label confidence and compare confidence with accuracy."""
    n_bins = check_int(n_bins, "n_bins", low=1, message=POSITIVE_INT)
    p, y = as_probs(probs, y)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges, b = bin_index(conf, n_bins)
    counts = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, conf, n_bins) / counts
        acc = np.bincount(b, correct, n_bins) / counts
    gap = np.abs(acc - mean_conf)
    nonempty = counts > 0
    return Reliability(
        edges=edges,
        counts=counts,
        confidence=np.where(nonempty, mean_conf, np.nan),
        accuracy=np.where(nonempty, acc, np.nan),
        ece=float(np.sum(counts[nonempty] * gap[nonempty]) / len(y)),
        mce=float(gap[nonempty].max()),
        conf_var_sum=np.bincount(b, conf * (1 - conf), n_bins),
    )


def classification_metrics(y, probs, n_bins: int = 10) -> dict:
    """accuracy, NLL, Brier, ECE, MCE and mean confidence as a flat dict of floats."""
    p, yy = as_probs(probs, y)
    rel = reliability(yy, p, n_bins)
    return {
        "n": int(len(yy)),
        "accuracy": accuracy(yy, p),
        "nll": nll(yy, p),
        "brier": brier(yy, p),
        "ece": rel.ece,
        "mce": rel.mce,
        "mean_confidence": float(p.max(axis=1).mean()),
    }

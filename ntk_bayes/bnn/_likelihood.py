"""Class log-probabilities of a network's outputs (shared by the model and posterior)."""

from __future__ import annotations

import numpy as np

__all__ = ["LIKELIHOODS", "log_probs"]

LIKELIHOODS = ("gaussian", "bernoulli", "categorical")


def _log_sigmoid_pair(logits):
    """log p for classes (0, 1) of a Bernoulli with ``logits``: stable in float64."""
    lg = np.asarray(logits, np.float64)
    return np.stack([-np.logaddexp(0.0, lg), -np.logaddexp(0.0, -lg)], axis=-1)


def _log_softmax(logits):
    lg = np.asarray(logits, np.float64)
    m = lg.max(axis=-1, keepdims=True)
    return lg - m - np.log(np.sum(np.exp(lg - m), axis=-1, keepdims=True))


def log_probs(likelihood: str, out: np.ndarray) -> np.ndarray:
    """Class log-probabilities ``(..., K)`` from network outputs."""
    if likelihood == "bernoulli":
        return _log_sigmoid_pair(out[..., 0])
    return _log_softmax(out)

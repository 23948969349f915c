"""Calibration plots (matplotlib, no display needed): each returns its ``Figure``.

Save one with ``fig.savefig(path)``; figures are not registered with pyplot.

Every function takes ``{model name: result}`` so one figure compares models, and an
optional ``ax`` to draw into an existing figure.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._calibration import ecdf_at, pit_ecdf_bands
from ._classification import Reliability
from ._predictive import GaussianPredictive, SamplePredictive

__all__ = ["plot_reliability", "plot_coverage", "plot_pit_ecdf", "plot_predictive_bands"]


def _axes(ax, figsize=(5.0, 4.0)):
    if ax is not None:
        return ax.figure, ax
    # a bare Figure needs no pyplot and no GUI backend: reports are written headless
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _mapping(results, what: str) -> Mapping:
    if not isinstance(results, Mapping) or not results:
        raise TypeError(f"pass {what} as a non-empty dict {{model name: value}}")
    return results


def plot_reliability(reliabilities: Mapping[str, Reliability], ax=None):
    """Reliability diagram: accuracy against confidence per bin, with the diagonal."""
    fig, ax = _axes(ax)
    for name, rel in _mapping(reliabilities, "reliabilities").items():
        if not isinstance(rel, Reliability):
            raise TypeError(f"{name!r}: expected a Reliability from reliability(y, probs)")
        ok = rel.counts > 0
        ax.plot(rel.confidence[ok], rel.accuracy[ok], "o-", label=f"{name} (ECE {rel.ece:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title("Reliability")
    ax.legend(fontsize="small")
    return fig


def plot_coverage(coverages: Mapping[str, Mapping[float, float]], ax=None):
    """Empirical against nominal central-interval coverage, with the diagonal."""
    fig, ax = _axes(ax)
    for name, cov in _mapping(coverages, "coverages").items():
        lv = sorted(float(k) for k in cov)
        ax.plot(lv, [cov[k] for k in sorted(cov, key=float)], "o-", label=name)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    ax.set(xlabel="nominal coverage", ylabel="empirical coverage", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title("Central-interval coverage")
    ax.legend(fontsize="small")
    return fig


def plot_pit_ecdf(pits: Mapping[str, np.ndarray], *, alpha: float = 0.05, ax=None):
    """ECDF of PIT values minus the uniform CDF, with simultaneous ``1 - alpha`` bands.

    A calibrated model stays inside the grey band; an over-confident one dips below
    then rises above it (a U-shaped PIT), a biased one bulges to one side.
    """
    fig, ax = _axes(ax)
    pits = _mapping(pits, "pits")
    sizes = {len(np.asarray(u)) for u in pits.values()}
    for n in sorted(sizes):
        z, lo, hi = pit_ecdf_bands(n, alpha=alpha)
        label = f"{100 * (1 - alpha):.0f}% band" + (f" (n={n})" if len(sizes) > 1 else "")
        ax.fill_between(z, lo - z, hi - z, color="0.85", step="mid", label=label)
    grid = np.linspace(0.0, 1.0, 201)
    for name, u in pits.items():
        ax.plot(grid, ecdf_at(u, grid) - grid, label=name)
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set(xlabel="PIT", ylabel="ECDF - uniform CDF", xlim=(0, 1))
    ax.set_title("PIT ECDF difference")
    ax.legend(fontsize="small")
    return fig


def plot_predictive_bands(
    x_train,
    y_train,
    x_grid,
    predictives: Mapping[str, GaussianPredictive | SamplePredictive],
    *,
    x_test=None,
    y_test=None,
    level: float = 0.9,
    gap: tuple[float, float] | None = None,
    ax=None,
):
    """Predictive mean and central ``level`` band of 1-D models over ``x_grid``."""
    x_grid = np.asarray(x_grid, np.float64).reshape(-1)
    fig, ax = _axes(ax, figsize=(7.0, 4.0))
    if gap is not None:
        ax.axvspan(*gap, color="0.93", label="no training data")
    for i, (name, pred) in enumerate(_mapping(predictives, "predictives").items()):
        if not isinstance(pred, GaussianPredictive | SamplePredictive):
            raise TypeError(f"{name!r}: expected a GaussianPredictive or SamplePredictive")
        if pred.n != x_grid.size:
            raise ValueError(f"{name!r} has {pred.n} points but `x_grid` has {x_grid.size}")
        lo, hi = pred.quantile([(1 - level) / 2, (1 + level) / 2])
        color = f"C{i}"
        ax.plot(x_grid, pred.mean, color=color, label=name)
        ax.fill_between(x_grid, lo, hi, color=color, alpha=0.2)
    ax.plot(np.ravel(x_train), np.ravel(y_train), "k.", ms=4, label="train")
    if x_test is not None and y_test is not None:
        ax.plot(np.ravel(x_test), np.ravel(y_test), "x", color="0.4", ms=4, label="test")
    ax.set(xlabel="x", ylabel="y")
    ax.set_title(f"Posterior predictive ({100 * level:.0f}% bands)")
    ax.legend(fontsize="small")
    return fig

"""Plots render headless to PNG, show what they claim, and reject bad input."""

import numpy as np
import pytest

from ntk_bayes import diagnostics as dg


def _save(fig, tmp_path, name):
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=60)
    assert path.stat().st_size > 2000
    return path


def test_reliability_and_coverage_plots(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=200)
    y = rng.integers(0, 3, size=200)
    fig = dg.plot_reliability({"model": dg.reliability(y, p)})
    _save(fig, tmp_path, "rel")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0].startswith("model (ECE") and labels[-1] == "calibrated"
    fig = dg.plot_coverage({"a": {0.5: 0.4, 0.9: 0.8}, "b": {0.9: 0.95, 0.5: 0.55}})
    line = fig.axes[0].lines[1]
    np.testing.assert_allclose(line.get_xdata(), [0.5, 0.9])  # sorted by level
    np.testing.assert_allclose(line.get_ydata(), [0.55, 0.95])
    _save(fig, tmp_path, "cov")


def test_pit_ecdf_plot_draws_band_and_curves(tmp_path):
    rng = np.random.default_rng(1)
    fig = dg.plot_pit_ecdf({"calibrated": rng.uniform(size=100), "biased": rng.beta(2, 1, 100)})
    ax = fig.axes[0]
    assert len(ax.collections) == 1 and len(ax.lines) >= 2
    _save(fig, tmp_path, "pit")


def test_predictive_bands_plot_into_given_axes(tmp_path):
    from matplotlib.figure import Figure

    x = np.linspace(-3, 3, 50)
    g = dg.GaussianPredictive(np.sin(x), 0.2 + 0.1 * np.abs(x))
    s = dg.SamplePredictive(np.sin(x) + 0.1 * np.random.default_rng(0).normal(size=(100, 50)), 0.1)
    fig = Figure()
    ax = fig.add_subplot()
    out = dg.plot_predictive_bands(
        x[::5],
        np.sin(x[::5]),
        x,
        {"gp": g, "bnn": s},
        x_test=x[1::7],
        y_test=np.sin(x[1::7]),
        gap=(-1, 1),
        ax=ax,
    )
    assert out is fig and len(ax.collections) == 2
    _save(fig, tmp_path, "bands")


@pytest.mark.parametrize(
    "fn, exc, match",
    [
        (lambda: dg.plot_reliability({}), TypeError, "non-empty dict"),
        (lambda: dg.plot_reliability({"a": 1}), TypeError, "Reliability"),
        (lambda: dg.plot_pit_ecdf([0.1, 0.2]), TypeError, "dict"),
        (
            lambda: dg.plot_predictive_bands(
                [0], [0], [0, 1], {"a": dg.GaussianPredictive([0.0], 1.0)}
            ),
            ValueError,
            "has 1 points",
        ),
        (lambda: dg.plot_predictive_bands([0], [0], [0], {"a": (0, 1)}), TypeError, "Predictive"),
    ],
)
def test_plot_errors(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()

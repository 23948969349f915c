"""The width sweep marks widths whose chains did not converge (no sampling here)."""

import math

import numpy as np
import pytest

from ntk_bayes import datasets
from ntk_bayes import diagnostics as dg
from ntk_bayes.calibrate import parse_arch
from ntk_bayes.calibrate._sweep import (
    WidthSweep,
    fall_is_resolved,
    standardised_distance,
    sweep_markdown,
    sweep_settings,
)


def _row(width, d, converged, se=0.01):
    return {
        "width": width,
        "mean_abs_diff_mean": d,
        "mean_abs_diff_log_var": d,
        "w2": d,
        "z_mean_abs_diff": d,
        "z_mc_se": se,
        "max_rhat": 1.0 if converged else 1.2,
        "min_ess_bulk": 800.0 if converged else 30.0,
        "divergences": 0,
        "converged": converged,
        "mean_tree_depth": 5.0,
        "time_s": 1.0,
    }


def test_sweep_marks_non_converged_widths_and_leaves_them_out_of_slopes():
    ds = datasets.load("toy1d", seed=0)
    x = ds.X_test[:3]
    pred = dg.GaussianPredictive(np.zeros(3), np.ones(3))
    rows = [_row(16, 0.4, True), _row(64, 5.0, False), _row(256, 0.1, True)]
    floor = {"mean_abs_diff_mean": 0.01, "mean_abs_diff_log_var": 0.01, "w2": 0.01}
    floor |= {"z_mean_abs_diff": 0.01, "z_mc_se": 0.001}
    sweep = WidthSweep(
        ds,
        parse_arch("relu-2x512"),
        sweep_settings(),
        [16, 64, 256],
        rows,
        floor,
        {"hyperparameters": {"W_std_0": 1.0}, "noise_var": 0.1},
        x,
        pred,
        {},
    )
    assert sweep.summary()["not_converged"] == [64]
    # the slope uses widths 16 and 256 only: log(0.1/0.4) / log(256/16) = -0.5
    assert math.isclose(sweep.slope(), -0.5, rel_tol=1e-9)
    md = sweep_markdown(sweep)
    assert "| 64 |" in md and "**NOT converged**" in md and "Widths [64] did not converge" in md
    # 16 -> 256 (64 skipped: not converged): 0.3 against 4 hypot(0.01, 0.01) = 0.057
    assert "16 -> 256: +0.300 against 4 hypot(e) = 0.057, resolved" in md


def test_standardised_distance_planted():
    ref = dg.GaussianPredictive(np.zeros(4), np.array([1.0, 2.0, 4.0, 100.0]))
    pred = dg.GaussianPredictive(np.array([0.5, 1.0, -2.0, 1e3]), np.array([2.0, 2.0, 4.0, 1.0]))
    inside = np.array([True, True, True, False])  # the extrapolating point is left out
    d = standardised_distance(pred, ref, ess=400.0, inside=inside)
    assert d["z_mean_abs_diff"] == pytest.approx(0.5)  # (0.5 + 0.5 + 0.5) / 3
    assert d["z_mc_se"] == pytest.approx(((2 + 1 + 1) / 3) / 20)
    assert standardised_distance(pred, ref, ess=float("nan"))["z_mc_se"] == math.inf
    with pytest.raises(ValueError, match="`inside`"):
        standardised_distance(pred, ref, ess=400.0, inside=np.zeros(4, bool))


def test_fall_is_resolved_needs_convergence_and_a_margin():
    assert fall_is_resolved(_row(16, 0.5, True, 0.02), _row(64, 0.3, True, 0.02))
    assert not fall_is_resolved(_row(16, 0.5, True, 0.05), _row(64, 0.3, True, 0.05))
    assert not fall_is_resolved(_row(16, 0.5, False, 0.02), _row(64, 0.3, True, 0.02))


def test_false_alarm_rate_of_the_fall_test_with_equal_distances():
    """Two 'widths' whose predictives are the same: 2,000 replicate pairs of S = 400
    independent draws each from N(μ + δ, s²) at 30 points whose errors are fully
    correlated (one shared normal per replicate: the bound's worst case). The fall is
    resolved with probability < 3.4e-4 each; the count of 2,000 exceeds 5 with
    probability < 1e-4 (binomial tail at p = 3.4e-4, mean 0.68)."""
    rng = np.random.default_rng(0)
    m, S, reps = 30, 400, 2000
    s = rng.uniform(0.5, 2.0, m)
    ref = dg.GaussianPredictive(np.zeros(m), s)
    delta = 0.3 * s  # the same true offset at both widths
    alarms = 0
    for _ in range(reps):
        rows = []
        for _width in (16, 64):
            mean = delta + s * rng.standard_normal() / math.sqrt(S)  # MC error of the mean
            pred = dg.GaussianPredictive(mean, s)
            rows.append({"converged": True, **standardised_distance(pred, ref, S)})
        alarms += fall_is_resolved(*rows)
    assert alarms <= 5

"""The width sweep marks widths whose chains did not converge (no sampling here)."""

import math

import numpy as np

from ntk_bayes import datasets
from ntk_bayes import diagnostics as dg
from ntk_bayes.calibrate import parse_arch
from ntk_bayes.calibrate._sweep import WidthSweep, sweep_markdown, sweep_settings


def _row(width, d, converged):
    return {
        "width": width,
        "mean_abs_diff_mean": d,
        "mean_abs_diff_log_var": d,
        "w2": d,
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

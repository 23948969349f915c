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
    fall_margin,
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
        "z_w2": d,
        "z_w2_se": se,
        "z_chains": 16,
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
    floor |= {"z_w2": 0.01, "z_w2_se": 0.001}
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
    # 16 -> 256 (64 skipped: not converged): 0.3 against t15(1e-4) hypot(0.01, 0.01) = 0.069
    assert "16 -> 256: +0.300 against 0.069, resolved" in md


def test_standardised_distance_planted():
    """Draws whose chain means and sds are exactly the planted ones: the distance is the
    closed form, and the jackknife se is 0 when every chain is the same."""
    ref = dg.GaussianPredictive(np.zeros(3), np.array([1.0, 2.0, 100.0]))
    # per point: draws ±1 around the mean give sd 1 exactly
    mean, sd = np.array([0.5, 1.0, 1e3]), np.array([1.0, 1.0, 1.0])
    one = np.stack([mean - sd, mean + sd])  # (2 draws, 3 points)
    draws = np.broadcast_to(one, (4, 2, 3))
    inside = np.array([True, True, False])  # the extrapolating point is left out
    d = standardised_distance(draws, ref, inside)
    # ((0.5² + 0²)/1 + (1² + 1²)/4) / 2 = (0.25 + 0.5) / 2
    assert d["z_w2"] == pytest.approx(np.sqrt(0.375), rel=1e-12)
    assert d["z_w2_se"] == pytest.approx(0.0, abs=1e-12) and d["z_chains"] == 4
    with pytest.raises(ValueError, match="`inside`"):
        standardised_distance(draws, ref, np.zeros(3, bool))
    with pytest.raises(ValueError, match="`draws`"):
        standardised_distance(draws[:1], ref)


def test_fall_is_resolved_needs_convergence_and_a_margin():
    assert fall_is_resolved(_row(16, 0.5, True, 0.02), _row(64, 0.3, True, 0.02))
    assert not fall_is_resolved(_row(16, 0.5, True, 0.03), _row(64, 0.3, True, 0.03))
    assert not fall_is_resolved(_row(16, 0.5, False, 0.02), _row(64, 0.3, True, 0.02))
    # two chains: one degree of freedom, t(1e-4) = 3183: a jackknife of 2 says little
    few = _row(16, 0.5, True, 0.02) | {"z_chains": 2}
    assert fall_margin(few, _row(64, 0.3, True, 0.02)) == pytest.approx(
        3183.1 * 0.02 * 2**0.5, rel=1e-4
    )
    assert not fall_is_resolved(few, _row(64, 0.3, True, 0.02))


def _chains(rng, mu, s, C, D, rho):
    """C independent AR(1) chains of D draws (lag-1 correlation rho) of N(mu, s²) at every
    point, with one shared innovation across points (errors fully correlated)."""
    e = np.empty((C, D))
    e[:, 0] = rng.standard_normal(C)
    for t in range(1, D):
        e[:, t] = rho * e[:, t - 1] + np.sqrt(1 - rho**2) * rng.standard_normal(C)
    return mu + s * e[..., None]


def test_jackknife_se_matches_the_spread_and_false_alarms_are_rare():
    """Autocorrelated chains (rho = 0.8), true distance equal at both 'widths'.
    (1) The jackknife se agrees with the replicate sd of d_z within 25% (400 replicates:
    the sd estimate itself has a 3.5% relative error, so 25% is > 5 of them).
    (2) The fall is resolved in at most 3 of 400 replicate pairs: each has false-alarm
    probability < 1e-4 (t with 15 dof), so more than 3 has probability < 1e-8."""
    rng = np.random.default_rng(0)
    m, C, D, reps = 20, 16, 60, 400
    s = rng.uniform(0.5, 2.0, m)
    ref = dg.GaussianPredictive(np.zeros(m), s)
    mu = 0.3 * s
    d, se, alarms = [], [], 0
    for _ in range(reps):
        rows = [
            {"converged": True, **standardised_distance(_chains(rng, mu, s, C, D, 0.8), ref)}
            for _width in (16, 64)
        ]
        d.append(rows[0]["z_w2"])
        se.append(rows[0]["z_w2_se"])
        alarms += fall_is_resolved(*rows)
    assert np.mean(se) == pytest.approx(np.std(d), rel=0.25)
    assert alarms <= 3

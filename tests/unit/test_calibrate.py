"""The calibrate pipeline without heavy fits: architectures, atomic output directories,
and the report writer on planted (mis)calibrated predictives."""

import dataclasses
import io
import json
import os
import re
import warnings

import numpy as np
import pytest

from ntk_bayes import _io, datasets
from ntk_bayes import diagnostics as dg
from ntk_bayes.calibrate import (
    CalibrationRun,
    ModelResult,
    Settings,
    hyperparameters,
    parse_arch,
    write_report,
)
from ntk_bayes.calibrate._archs import as_floats
from ntk_bayes.calibrate._pipeline import check_models

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az


# ---- architectures ---------------------------------------------------------------------
def test_parse_arch_presets_and_custom(dtype, tol):
    a = parse_arch("relu-2x512")
    assert (a.nonlinearity, a.depth, a.width, a.W_std, a.b_std) == ("relu", 2, 512, 1.5, 0.5)
    b = parse_arch(" Erf-3x64 ", W_std=2.0, b_std=0.0)
    assert (b.name, b.W_std, b.b_std) == ("erf-3x64", 2.0, 0.0)
    net = a.build(W_std=1.2, b_std=0.3)
    assert hyperparameters(net) == {
        f"{w}_std_{i}": v for i in range(3) for w, v in (("W", 1.2), ("b", 0.3))
    }
    # the kernel of the preset is the ReLU NNGP recursion: check one entry by hand
    x = np.array([[1.0, 0.0], [0.6, 0.8]], dtype)
    k = np.asarray(parse_arch("relu-1x8", 1.0, 0.0).build().kernel_fn(x, None, "nngp"))
    s = 0.5  # Σ = x·x'/d with d = 2 inputs
    theta = np.arccos(0.6)
    expect = (np.sqrt(s * s - (0.6 * s) ** 2) + (np.pi - theta) * 0.6 * s) / (2 * np.pi)
    np.testing.assert_allclose(k[0, 1], expect, **tol)


@pytest.mark.parametrize(
    "text", ["relu", "tanh-2x512", "relu-0x512", "relu-2x0", "relu-2x", "relu-99x4"]
)
def test_parse_arch_rejects_bad_names(text):
    with pytest.raises(ValueError, match="architecture"):
        parse_arch(text)


def test_parse_arch_rejects_bad_stds():
    with pytest.raises(ValueError, match="W_std > 0"):
        parse_arch("relu-1x8", W_std=0.0)
    with pytest.raises(ValueError, match="b_std >= 0"):
        parse_arch("relu-1x8", b_std=-1.0)


def test_as_floats_makes_positive_python_floats():
    import equinox as eqx
    import jax.numpy as jnp

    net = parse_arch("relu-1x8").build(W_std=jnp.asarray(1.0), b_std=jnp.asarray(0.2))
    # an unconstrained fit may flip the sign (only W_std^2 enters the kernel)
    f = as_floats(eqx.tree_at(lambda n: n.layers[0].W_std, net, jnp.asarray(-1.3)))
    assert f.layers[0].W_std == pytest.approx(1.3) and isinstance(f.layers[0].W_std, float)


def test_check_models():
    assert check_models(None, "regression")[0] == "nngp"
    assert check_models(["BNN", "nngp"], "regression") == ("bnn", "nngp")
    with pytest.raises(ValueError, match="choose from"):
        check_models(["sgpr"], "classification")
    with pytest.raises(ValueError, match="twice"):
        check_models(["nngp", "nngp"], "regression")


# ---- atomic output directories ---------------------------------------------------------
def test_atomic_dir_appears_whole(tmp_path):
    out = tmp_path / "a" / "b" / "run"
    with _io.atomic_output_dir(out) as tmp:
        assert tmp.parent == out.parent and not out.exists()
        (tmp / "x.txt").write_text("1")
    assert (out / "x.txt").read_text() == "1"
    assert sorted(p.name for p in out.parent.iterdir()) == ["run"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_io.current_umask())


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt(), SystemExit(143)])
def test_atomic_dir_leaves_nothing_on_failure(tmp_path, exc):
    out = tmp_path / "new" / "deeper" / "run"
    with pytest.raises(type(exc)):
        with _io.atomic_output_dir(out) as tmp:
            (tmp / "half.txt").write_text("half")
            raise exc
    assert list(tmp_path.iterdir()) == []  # no temporary dir, no parents it created


def test_atomic_dir_refuses_and_replaces(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with _io.atomic_output_dir(out) as tmp:  # an empty directory may be reused
        (tmp / "a").write_text("old")
    with pytest.raises(_io.OutputExistsError, match="--force"):
        with _io.atomic_output_dir(out):
            pass  # pragma: no cover
    with pytest.raises(ValueError):
        with _io.atomic_output_dir(out, force=True) as tmp:
            (tmp / "a").write_text("new")
            raise ValueError("failed after writing")
    assert (out / "a").read_text() == "old"  # the failed run did not touch the old results
    with _io.atomic_output_dir(out, force=True) as tmp:
        (tmp / "b").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [_io.MANIFEST, "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_atomic_dir_rechecks_at_the_end(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(_io.OutputExistsError):
        with _io.atomic_output_dir(out):
            out.mkdir()  # someone else wrote results meanwhile
            (out / "theirs").write_text("x")
    assert sorted(p.name for p in out.iterdir()) == ["theirs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_replace_dir_restores_the_old_results_if_the_swap_fails(tmp_path, monkeypatch):
    out, tmp = tmp_path / "run", tmp_path / "tmp"
    out.mkdir()
    (out / "a").write_text("old")
    _io.write_manifest(out)  # ntk-bayes's own results: --force may replace them
    tmp.mkdir()
    (tmp / "a").write_text("new")
    real = type(tmp).rename
    monkeypatch.setattr(_io, "_exchange", lambda a, b: False)  # the two-rename fallback

    def rename(self, target):
        if self == tmp:
            raise OSError("disk full")
        return real(self, target)

    monkeypatch.setattr(type(tmp), "rename", rename)
    with pytest.raises(OSError, match="disk full"):
        _io.replace_dir(tmp, out, force=True)
    assert (out / "a").read_text() == "old"


def test_output_problem(tmp_path, monkeypatch):
    f = tmp_path / "file"
    f.write_text("x")
    assert "not a directory" in _io.output_problem(f, force=True)
    assert _io.output_problem(tmp_path / "missing", force=False) is None
    monkeypatch.chdir(tmp_path)
    assert "working or home" in _io.output_problem(tmp_path, force=True)
    assert "must name a directory" in _io.output_problem(".", force=True)


def test_write_json_turns_non_finite_into_null(tmp_path):
    _io.write_json(tmp_path / "m.json", {"a": float("nan"), "b": np.float32(2.5), "c": [np.inf]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": None, "b": 2.5, "c": [None]}


# ---- the report writer on planted cases --------------------------------------------------
def _truth(ds):
    """The generating predictive of toy1d at the test inputs (standardised units)."""
    x = ds.unstandardize_x(ds.X_test)[:, 0]
    mean = (datasets.toy1d_function(x) - ds.y_mean) / ds.y_std
    return mean, np.full_like(mean, ds.extra["noise_std"] / ds.y_std)


def _gaussian_model(ds, name, mean, std, status=None):
    from ntk_bayes.calibrate._scoring import LooResult

    pred = dg.GaussianPredictive(mean, std)
    idata = dg.from_gaussian(
        mean_train=np.asarray(ds.y_train, np.float64),
        var_train=np.full(ds.n_train, 1e-3),
        y_train=ds.y_train,
        noise_var=float(np.mean(std) ** 2),
        mean_test=mean,
        var_test=np.zeros_like(mean),
        y_test=ds.y_test,
        n_draws=50,
        attrs={"model": name},
    )
    # a planted LOO: pointwise N(y_i | y_i, s^2) densities, one per training point
    s2 = float(np.mean(std) ** 2)
    loo = LooResult("exact", np.full(ds.n_train, -0.5 * np.log(2 * np.pi * s2)))
    return ModelResult(
        name, name, "regression", 0.1, predictive=pred, idata=idata, loo=loo,
        test_cov=np.diag(np.asarray(std, np.float64) ** 2), status=status,
    )  # fmt: skip


def _open(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return az.from_netcdf(path)


def test_report_flags_planted_miscalibration(tmp_path):
    ds = datasets.load("toy1d", seed=3, n=400)
    mean, std = _truth(ds)
    from ntk_bayes.calibrate._scoring import convergence_status

    stuck = convergence_status({"max_rhat": 1.263, "min_ess_bulk": 6, "min_ess_tail": 9}, 0)
    results = [
        _gaussian_model(ds, "nngp", mean, std),  # the truth: calibrated
        _gaussian_model(ds, "ntkgp", mean, 0.4 * std),  # over-confident
        _gaussian_model(ds, "sgpr", mean + 1.0 * std, std),  # biased
        _gaussian_model(ds, "ensemble", mean, 3.0 * std),  # under-confident
        _gaussian_model(ds, "bnn", mean, std, status=stuck),  # calibrated but not converged
    ]
    run = CalibrationRun(ds, parse_arch("relu-2x512"), Settings(), results)
    summary = write_report(run, tmp_path)
    assert {p.name for p in tmp_path.iterdir() if p.suffix in (".md", ".json", ".png", ".nc")} == {
        "report.md", "metrics.json", "coverage.png", "pit_ecdf.png",
        "nngp.nc", "ntkgp.nc", "sgpr.nc", "ensemble.nc", "bnn.nc",
    }  # fmt: skip
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert set(m) == set(summary) and m["command"] == "calibrate"
    assert list(m["models"]) == ["nngp", "ntkgp", "sgpr", "ensemble", "bnn"]
    v = {k: m["models"][k]["verdict"] for k in m["models"]}
    # family-wise alpha 0.05 over 4 joint tests: the truth is flagged with probability 0.05
    assert v["nngp"] == "calibrated"
    assert v["bnn"] == "not converged" and m["models"]["bnn"]["calibration"] is None
    assert "over-confident" in v["ntkgp"] and "biased" not in v["ntkgp"]
    assert "biased" in v["sgpr"]
    assert "under-confident" in v["ensemble"]
    cov = {k: m["models"][k]["metrics"]["coverage_90"] for k in m["models"]}
    assert abs(cov["nngp"] - 0.9) < 0.06 and cov["ntkgp"] < 0.6 and cov["ensemble"] > 0.99
    # scores are in raw units: the truth's RMSE is the noise level 0.15
    assert m["models"]["nngp"]["metrics"]["rmse"] == pytest.approx(0.15, rel=0.15)
    report = (tmp_path / "report.md").read_text()
    assert "| nngp | calibrated" not in report  # the table shows labels, verdicts apart
    for k in ("calibrated", "over-confident", "biased", "overconfident (p=", "![pit_ecdf]"):
        assert k in report
    # the gap of toy1d is summarised for every model
    assert m["models"]["nngp"]["gap"]["n_gap"] > 0
    assert m["loo"][0]["model"] == "nngp" and m["loo"][0]["method"] == "exact"
    assert "not converged" in report and "R-hat 1.263" in report
    for name in m["models"]:
        idata = _open(tmp_path / f"{name}.nc")
        pp = idata["posterior_predictive"] if dg.ARVIZ_1 else idata.posterior_predictive
        assert pp["y_test"].shape[-1] == ds.n_test
        assert idata.attrs["model"] == name


def _classification_dataset(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    logits = 2.0 * X[:, 0] - X[:, 1]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logits))).astype(np.int32)
    half = n // 2
    ds = datasets.Dataset(
        name="planted",
        task="classification",
        X_train=X[:half],
        y_train=y[:half],
        X_test=X[half:],
        y_test=y[half:],
        feature_names=("a", "b"),
        target_name="y",
        classes=("0", "1"),
        x_mean=np.zeros(2),
        x_std=np.ones(2),
    )
    return ds, 1 / (1 + np.exp(-logits))


def _class_model(ds, name, p1_train, p1_test):
    def two(p):
        return np.stack([1 - p, p], -1)

    idata = dg.from_class_probs(
        probs_train=np.broadcast_to(two(p1_train), (1, 4, len(p1_train), 2)),
        y_train=ds.y_train,
        probs_test=np.broadcast_to(two(p1_test), (1, 4, len(p1_test), 2)),
        y_test=ds.y_test,
        posterior={"p_test": np.broadcast_to(p1_test, (1, 4, len(p1_test)))},
    )
    return ModelResult(name, name, "classification", 0.2, probs=two(p1_test), idata=idata)


def test_classification_report_flags_overconfidence(tmp_path):
    ds, p = _classification_dataset()
    half = ds.n_train
    sharp = 1 / (1 + np.exp(-8.0 * np.log(p / (1 - p))))  # logits x 8
    results = [
        _class_model(ds, "nngp", p[:half], p[half:]),
        _class_model(ds, "bnn", sharp[:half], sharp[half:]),
    ]
    run = CalibrationRun(ds, parse_arch("relu-1x8"), Settings(), results)
    m = write_report(run, tmp_path)
    assert {"reliability.png", "nngp.nc", "bnn.nc"} <= {p.name for p in tmp_path.iterdir()}
    assert m["models"]["nngp"]["verdict"] == "calibrated"
    assert "over-confident" in m["models"]["bnn"]["verdict"]
    assert m["models"]["bnn"]["metrics"]["ece"] > m["models"]["nngp"]["metrics"]["ece"]
    assert len(m["models"]["nngp"]["reliability"]["counts"]) == 10


def test_classification_scores_every_split_with_standard_errors(tmp_path):
    # the bnn is the truth on split 1 and over-confident (logits x 8) on splits 2 and 3:
    # a report that scored split 1 only would call it calibrated
    runs = []
    for seed in (0, 1, 2):
        ds, p = _classification_dataset(seed=seed)
        half = ds.n_train
        sharp = p if seed == 0 else 1 / (1 + np.exp(-8.0 * np.log(p / (1 - p))))
        results = [
            _class_model(ds, "nngp", p[:half], p[half:]),
            _class_model(ds, "bnn", sharp[:half], sharp[half:]),
        ]
        runs.append(CalibrationRun(ds, parse_arch("relu-1x8"), Settings(), results))
    run = runs[0]
    run.more_splits = runs[1:]
    m = write_report(run, tmp_path)
    bnn = m["models"]["bnn"]
    assert bnn["n_splits"] == 3 and len(bnn["metrics_splits"]["nll"]) == 3
    per = [dg.classification_metrics(sp.dataset.y_test, sp.results[1].probs) for sp in run.splits]
    assert bnn["metrics"]["nll"] == pytest.approx(np.mean([q["nll"] for q in per]))
    assert all(np.isfinite(bnn["metrics_se"][k]) for k in ("accuracy", "nll", "brier", "ece"))
    assert "over-confident (2/3 splits)" in bnn["verdict"]
    # 2 tests x 3 splits, family-wise alpha 0.05: the truth flags with probability < 0.05
    assert m["models"]["nngp"]["verdict"] == "calibrated"
    assert sum(m["models"]["bnn"]["reliability"]["counts"]) == sum(
        sp.dataset.n_test for sp in run.splits
    )
    report = (tmp_path / "report.md").read_text()
    assert f"{bnn['metrics']['nll']:.3f} ± {bnn['metrics_se']['nll']:.3f}" in report


def test_report_lists_failed_models(tmp_path):
    ds = datasets.load("toy1d", seed=0)
    mean, std = _truth(ds)
    run = CalibrationRun(
        ds,
        parse_arch("relu-2x512"),
        dataclasses.replace(Settings(), width=7),
        [_gaussian_model(ds, "nngp", mean, std)],
        failures={"bnn": "FloatingPointError: the loss became non-finite"},
    )
    m = write_report(run, tmp_path)
    assert m["failures"] == {"bnn": "FloatingPointError: the loss became non-finite"}
    assert m["paired_nlpd"] is None  # a comparison needs two models
    report = (tmp_path / "report.md").read_text()
    assert "FAILED" in report and "BNN width 7" in report
    assert os.access(tmp_path / "nngp.nc", os.R_OK)


def test_sgpr_loo_equals_exact_when_inducing_points_are_the_data():
    import jax

    from ntk_bayes import gp, stax
    from ntk_bayes.calibrate._regression import _sgpr_loo

    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        X = rng.normal(size=(12, 2))
        y = np.sin(X[:, 0])
        net = stax.serial(stax.Dense(8, W_std=1.4, b_std=0.3), stax.Relu(), stax.Dense(1))
        exact = np.asarray(gp.ExactGP(net, X, y, 0.1, jitter=0.0).loo_log_predictive())
        sparse = _sgpr_loo(gp.SGPR(net, X, y, X, 0.1), 0.1)
        assert sparse.method == "sgpr"
        # Q = K up to the SGPR's jitter on K_zz
        np.testing.assert_allclose(sparse.pointwise, exact.reshape(-1), atol=1e-5)


def test_repeated_splits_give_means_standard_errors_and_paired_differences(tmp_path):
    runs = []
    for seed in (3, 4, 5):
        ds = datasets.load("toy1d", seed=seed, n=200)
        mean, std = _truth(ds)
        results = [
            _gaussian_model(ds, "nngp", mean, std),
            _gaussian_model(ds, "ntkgp", mean, 0.4 * std),  # over-confident
        ]
        runs.append(CalibrationRun(ds, parse_arch("relu-2x512"), Settings(), results))
    run = runs[0]
    run.more_splits = runs[1:]
    m = write_report(run, tmp_path)
    assert m["splits"] == 3 and m["models"]["nngp"]["n_splits"] == 3
    se = m["models"]["nngp"]["metrics_se"]["nlpd"]
    assert np.isfinite(se) and se > 0
    assert len(m["models"]["nngp"]["metrics_splits"]["rmse"]) == 3
    paired = {r["model"]: r for r in m["paired_nlpd"]}
    assert paired["nngp"]["nlpd_diff"] == 0.0 and paired["ntkgp"]["nlpd_diff"] > 0
    assert "over-confident" in m["models"]["ntkgp"]["verdict"]
    # 4 tests x 3 splits, family-wise alpha 0.05: the truth flags with probability < 0.05
    assert m["models"]["nngp"]["verdict"] == "calibrated"
    report = (tmp_path / "report.md").read_text()
    assert "3 random train/test split(s)" in report and " ± " in report
    # the gap table (toy1d) is over the 3 splits too, with standard errors
    gap = m["models"]["ntkgp"]["gap"]
    assert gap["n_splits"] == 3 and np.isfinite(gap["se"]["std_ratio"])
    ratios = [
        float(np.mean(0.4 * _truth(sp.dataset)[1][sp.dataset.extra["test_in_gap"]]))
        / float(np.mean(0.4 * _truth(sp.dataset)[1][~sp.dataset.extra["test_in_gap"]]))
        for sp in run.splits
    ]
    assert gap["std_ratio"] == pytest.approx(np.mean(ratios))
    gap_section = report.split("## Uncertainty where there is no training data")[1]
    assert f"{gap['coverage_90_gap']:.2f} ± {gap['se']['coverage_90_gap']:.2f}" in gap_section


@pytest.mark.parametrize("scale, named", [(1.03, False), (0.4, True)])
def test_one_split_differences_carry_a_test_point_se_and_name_a_best_only_if_resolved(
    tmp_path, scale, named
):
    ds = datasets.load("toy1d", seed=3, n=200)
    mean, std = _truth(ds)
    results = [
        _gaussian_model(ds, "nngp", mean, std),
        _gaussian_model(ds, "ntkgp", mean, scale * std),
    ]
    m = write_report(CalibrationRun(ds, parse_arch("relu-1x8"), Settings(), results), tmp_path)
    row = {r["model"]: r for r in m["paired_nlpd"]}["ntkgp"]
    assert row["se_over"] == "test points" and np.isfinite(row["se"]) and row["se"] > 0
    assert row["resolved"] == (abs(row["nlpd_diff"]) > 2 * row["se"]) == named
    report = (tmp_path / "report.md").read_text()
    section = report.split("## Who is better")[1].split("\n## ")[0]
    assert ("Best: nngp" in section) == named
    assert ("No model is named best" in section) == (not named)
    assert "optimistic" in section and f"{row['se']:.3f}" in section
    assert "1 random train/test split: the scores carry no split-to-split error" in report


def test_resplit_keeps_sizes_and_restandardises():
    from ntk_bayes.calibrate._pipeline import resplit

    ds = datasets.load("mcycle", seed=0)
    other = resplit(ds, 7)
    assert (other.n_train, other.n_test) == (ds.n_train, ds.n_test)
    np.testing.assert_allclose(other.y_train.mean(), 0.0, atol=1e-5)
    raw = np.sort(np.concatenate([ds.unstandardize_y(ds.y_train), ds.unstandardize_y(ds.y_test)]))
    raw2 = np.concatenate(
        [other.unstandardize_y(other.y_train), other.unstandardize_y(other.y_test)]
    )
    np.testing.assert_allclose(np.sort(raw2), raw, atol=1e-3)  # the same rows, split anew
    toy = resplit(datasets.load("toy1d", seed=0), 1)
    assert toy.extra["gap"] == (-1.0, 1.0) and toy.n_train + toy.n_test == 120


# ---- kernels that cannot give a meaningful fit ----------------------------------------
def _tiny_regression(dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 2)).astype(dtype)
    y = np.sin(X[:, 0]).astype(dtype)
    return datasets.Dataset(
        name="tiny", task="regression", X_train=X[:8], y_train=y[:8], X_test=X[8:],
        y_test=y[8:], feature_names=("a", "b"), target_name="y", classes=None,
        x_mean=np.zeros(2), x_std=np.ones(2),
    )  # fmt: skip


def test_overflowing_kernels_are_refused_before_fitting():
    from ntk_bayes.calibrate import run_calibration
    from ntk_bayes.calibrate._checks import KernelOverflowError, check_kernels

    ds = _tiny_regression(np.float32)
    # one architecture throughout (one compilation), float32; float64 in test_faults.py
    ok = check_kernels(ds, parse_arch("relu-2x8"), ["nngp", "ntkgp"])
    assert set(ok) == {"nngp", "ntk"} and 0 < ok["nngp"] < ok["ntk"] < 1e3
    # W_std = 1e4 over 3 Dense layers: entries ~1e23 > sqrt(float32 max) ~ 1.8e19
    big = parse_arch("relu-2x8", W_std=1e4)
    with pytest.raises(KernelOverflowError, match=r"NNGP kernel of relu-2x8 at W_std=10000, "
                       r"b_std=0.5 has entries up to .*e\+2\d, beyond .*float32.*model\(s\) "
                       r"nngp, bnn would fit NaN.*lower --W-std.*float64"):  # fmt: skip
        check_kernels(ds, big, ["nngp", "bnn"])
    # only the kernels the models need are checked, and each names its own users
    with pytest.raises(KernelOverflowError, match=r"the NTK of .*model\(s\) ensemble would"):
        check_kernels(ds, big, ["ensemble"])
    # run_calibration refuses before any fit (each fit would compile for seconds)
    with pytest.raises(KernelOverflowError):
        run_calibration(ds, big, ["nngp"], Settings.quick(quiet=True))
    with pytest.raises(KernelOverflowError, match="non-finite entries"):  # overflow to inf
        check_kernels(ds, parse_arch("relu-2x8", W_std=1e7), ["sgpr"])


# ---- untrusted text in the report --------------------------------------------------------
_HOSTILE = '=HYPERLINK("x")|<script>alert(1)</script>'


def test_report_escapes_every_user_string():
    from rich.console import Console

    from ntk_bayes.calibrate import evaluate, markdown_table, results_table
    from ntk_bayes.calibrate._report import markdown as _markdown
    from ntk_bayes.calibrate._scoring import build_summary

    ds = datasets.load("toy1d", seed=0)
    ds = dataclasses.replace(
        ds,
        name="`a|b` [red]x[/red]",
        target_name=_HOSTILE,
        feature_names=("a|b",),
        description=f"d|ata.csv: 120 rows, target {_HOSTILE!r}, feature `a|b`\n# heading",
    )
    mean, std = _truth(ds)
    # a failure whose message carries the hostile name, cut at 80 characters in the table
    fail = f"ValueError: target column {_HOSTILE!r} " + "x" * 40 + "|" * 30
    run = CalibrationRun(
        ds, parse_arch("relu-1x8"), Settings(), [_gaussian_model(ds, "nngp", mean, std)],
        failures={"bnn": fail},
    )  # fmt: skip
    summary = build_summary(run, evaluate(run))
    report = _markdown(run, summary, [])
    assert "<script>" not in report and '=HYPERLINK("' not in report
    assert "&lt;script&gt;" in report and "\\`a\\|b\\`" in report
    assert "\n# heading" not in report  # a line break in a name starts no heading
    # every row of the results table has as many unescaped | as the header
    table = markdown_table(summary).splitlines()
    assert table == report.split("## Held-out scores\n\n")[1].split("\n\n")[0].splitlines()

    def cells(line):
        return len(re.findall(r"(?<!\\)\|", line))

    assert len(table) == 4 and {cells(line) for line in table} == {cells(table[0])}
    assert "FAILED: ValueError" in table[3] and not table[3].endswith("\\ |")
    # the terminal table shows the names as written, not as rich markup
    console = Console(width=400, record=True, file=io.StringIO())
    console.print(results_table(summary))
    text = console.export_text()
    assert "`a|b` [red]x[/red]" in text and "<script>" in text  # literal, in a terminal
    # metrics.json keeps the raw strings
    assert summary["dataset"]["name"] == ds.name and summary["failures"]["bnn"] == fail


# ---- what a netCDF file holds ----------------------------------------------------------
def test_netcdf_files_hold_thinned_float32_draws(tmp_path):
    from ntk_bayes.calibrate._files import MAX_FILE_DRAWS, for_file
    from ntk_bayes.diagnostics._arviz import _get_group

    rng = np.random.default_rng(0)
    chains, draws, n = 4, 600, 5
    f = rng.normal(size=(chains, draws, n))
    idata = dg.to_inference_data(
        posterior={"f_test": f, "W_std": rng.lognormal(size=(chains, draws))},
        posterior_predictive={"y": rng.normal(size=(chains, draws, n))},
        log_likelihood={"y": rng.normal(size=(chains, draws, n))},
        observed_data={"y": rng.normal(size=n)},
        sample_stats={"diverging": np.zeros((chains, draws), bool)},
        attrs={"model": "bnn"},
    )
    path = dg.save_netcdf(for_file(idata), tmp_path / "bnn.nc")
    back = dg.load_netcdf(path)
    # 1000 // 4 = 250 draws per chain at most: stride ceil(600 / 250) = 3, 200 kept
    assert MAX_FILE_DRAWS == 1000
    assert (back.attrs["thin"], back.attrs["draws_sampled"], back.attrs["draws_stored"]) == (
        3, 600, 200,
    )  # fmt: skip
    assert back.attrs["max_draws"] == 1000 and back.attrs["model"] == "bnn"
    assert back.attrs["float32_groups"] == "posterior, posterior_predictive"
    post, pp = _get_group(back, "posterior"), _get_group(back, "posterior_predictive")
    ll, obs = _get_group(back, "log_likelihood"), _get_group(back, "observed_data")
    ss = _get_group(back, "sample_stats")
    for ds in (post, pp, ll, ss):
        assert dict(ds.sizes)["chain"] == 4 and dict(ds.sizes)["draw"] == 200
    assert post["f_test"].dtype == np.float32 and post["W_std"].dtype == np.float32
    assert pp["y"].dtype == np.float32
    assert ll["y"].dtype == np.float64 and obs["y"].dtype == np.float64
    np.testing.assert_array_equal(post["f_test"].values, f[:, ::3].astype(np.float32))
    np.testing.assert_array_equal(post["draw"].values, np.arange(0, 600, 3))
    # the run's own data are untouched (the report's figures use every draw)
    assert _get_group(idata, "posterior")["f_test"].dtype == np.float64
    assert dict(_get_group(idata, "posterior").sizes)["draw"] == 600
    # within the cap nothing is thinned; one chain of 1000 fits exactly
    one = for_file(dg.to_inference_data(posterior_predictive={"y": rng.normal(size=(1, 1000, 3))}))
    assert (
        one.attrs["thin"] == 1
        and dict(_get_group(one, "posterior_predictive").sizes)["draw"] == 1000
    )
    with pytest.raises(ValueError, match="max_draws"):
        for_file(idata, max_draws=0)


# ---- --sampled-splits: costly sampled models on the first K of R splits ----------------
def _uneven_run(n_splits=3, sampled_on=2):
    """R = 3 planted splits; "bnn" (a stand-in for the sampled model) on the first 2."""
    runs = []
    for r, seed in enumerate(range(11, 11 + n_splits)):
        ds = datasets.load("toy1d", seed=seed, n=120)
        mean, std = _truth(ds)
        results = [_gaussian_model(ds, "nngp", mean, std)]
        if r < sampled_on:
            bnn = _gaussian_model(ds, "bnn", mean + 0.3, 1.5 * std)
            results.append(dataclasses.replace(bnn, label="BNN (sampled)"))
        settings = Settings(splits=n_splits, sampled_splits=sampled_on)
        runs.append(CalibrationRun(ds, parse_arch("relu-2x512"), settings, results))
    run = runs[0]
    run.more_splits = runs[1:]
    return run


def test_sampled_splits_score_a_model_over_exactly_the_splits_it_ran(tmp_path):
    from ntk_bayes.calibrate._scoring import mean_se, paired

    run = _uneven_run()
    m = write_report(run, tmp_path)
    nngp, bnn = m["models"]["nngp"], m["models"]["bnn"]
    assert (m["splits"], nngp["n_splits"], bnn["n_splits"]) == (3, 3, 2)
    assert (nngp["split_ids"], bnn["split_ids"]) == ([1, 2, 3], [1, 2])
    rho = run.dataset.n_test / run.dataset.n_train
    per_bnn = [
        dg.regression_metrics(sp.dataset.y_test, sp.results[1].predictive, scale=sp.dataset.y_std)
        for sp in run.splits[:2]
    ]
    want = mean_se([p["nlpd"] for p in per_bnn], rho)
    assert (bnn["metrics"]["nlpd"], bnn["metrics_se"]["nlpd"]) == pytest.approx(want)
    # the pair uses splits 1 and 2 only, whichever model is the reference
    rows = {r["model"]: r for r in m["paired_nlpd"]}
    a, b = bnn["metrics_splits"]["nlpd"], nngp["metrics_splits"]["nlpd"][:2]
    ref = rows["nngp"]["best"]
    d, se = paired(a, b, rho) if ref == "nngp" else paired(b, a, rho)
    other = "bnn" if ref == "nngp" else "nngp"
    assert rows[other]["n_splits"] == 2 and rows[ref]["n_splits"] == 3
    assert (rows[other]["nlpd_diff"], rows[other]["se"]) == pytest.approx((d, se))
    report = (tmp_path / "report.md").read_text()
    assert "first 2 of the 3 splits only" in report
    assert "BNN \\(sampled\\) (2)" in report  # the note reads the escaped labels
    assert "sampled_splits" in m["settings"] and m["settings"]["sampled_splits"] == 2
    assert "| splits | time (s) |" in report  # the held-out table says n per model
    paired_row = r"\| BNN \\\(sampled\\\) \| [-\d.]+ \| [\d.]+ \| splits \| 2 \|"
    assert re.search(paired_row, report)  # the paired table says n per model


def test_sampled_splits_absent_keeps_every_model_on_every_split():
    from ntk_bayes.calibrate._pipeline import models_on_split

    names = ("nngp", "ntkgp", "sgpr", "bnn")
    default, k1 = Settings(splits=3), Settings(splits=3, sampled_splits=1)
    assert all(models_on_split(names, "regression", default, r) == names for r in range(3))
    assert models_on_split(names, "regression", k1, 0) == names
    assert models_on_split(names, "regression", k1, 1) == ("nngp", "ntkgp", "sgpr")
    nuts = dataclasses.replace(k1, hyper="nuts")  # the exact GPs sample their hyperparameters
    assert models_on_split(names, "regression", nuts, 2) == ("sgpr",)
    assert models_on_split(("nngp", "bnn"), "classification", k1, 1) == ("nngp",)


@pytest.mark.parametrize(
    "k, models, message",
    [(4, None, "between 1 and the splits R = 3"), (0, None, "between 1"),
     (2, ["bnn"], "needs a model that does not sample")],
)  # fmt: skip
def test_sampled_splits_bad_values_fail_before_any_fit(k, models, message):
    from ntk_bayes.calibrate import run_calibration

    ds = datasets.load("toy1d", seed=0, n=40)
    settings = Settings.quick(splits=3, sampled_splits=k)
    with pytest.raises(ValueError, match=message):
        run_calibration(ds, parse_arch("relu-1x8"), models, settings)


def test_published_table_gives_splits_per_row_and_no_nan_error_bar():
    from ntk_bayes.calibrate._report import _published_section

    def model(label, k, se):
        return {"label": label, "n_splits": k, "metrics": {"rmse": 4.421, "nlpd": 2.778},
                "metrics_se": {"rmse": se, "nlpd": se}}  # fmt: skip

    summary = {"splits": 20, "models": {"a": model("GP", 20, 0.2), "b": model("BNN", 1, np.nan)}}
    text = "\n".join(_published_section(summary, "concrete"))
    assert "| PBP | HLA15 | 20 | 5.67 ± 0.09 | 3.16 ± 0.02 |" in text
    assert "| GP | this run | 20 | 4.42 ± 0.20 | 2.78 ± 0.20 |" in text
    assert "| BNN | this run | 1 | 4.42 | 2.78 |" in text and "± nan" not in text
    # a sampler that did not converge is marked in this ranking too
    summary["models"]["b"]["status"] = {"converged": False, "max_rhat": 1.23, "min_ess_bulk": 8}
    text = "\n".join(_published_section(summary, "concrete"))
    assert "| BNN (not converged: R-hat 1.230, bulk ESS 8) | this run | 1 |" in text
    from ntk_bayes.calibrate._report import _gap_section

    gap = {"mean_std_gap": 1.0, "mean_std_outside": 0.5, "std_ratio": 2.0,
           "coverage_90_gap": 0.9, "coverage_90_outside": 0.9, "se": {}, "n_splits": 1}  # fmt: skip
    summary["models"]["b"]["gap"] = gap
    text = "\n".join(_gap_section(summary))
    assert "| BNN (not converged: R-hat 1.230, bulk ESS 8) | 1.000 | 0.500 | 2.00 |" in text
    # the SGPR's M and its rule reach report.md (a capped M is said to be capped)
    from ntk_bayes.calibrate._report import _hyper_section

    rule = "M = 31 (capped from 1000: at most half the 62 training points)"
    info = {
        "hyperparameters": {"W_std": 1.0},
        "inducing": rule,
        "nystrom_residual_over_noise": 0.01,
    }
    text = "\n".join(_hyper_section({"models": {"s": {"label": "SGPR", "info": info}}}))
    assert f"inducing points: {rule}; mean Nystrom residual / noise = 0.01" in text


def test_loo_reference_is_never_an_untrusted_estimate():
    """A sampled model with the highest elpd but a failed convergence gate, or a PSIS
    estimate with Pareto k > 0.7, is compared with the best trusted posterior and is
    never the reference (planted pointwise values; deterministic)."""
    import dataclasses

    from ntk_bayes.calibrate._scoring import LooResult, convergence_status, loo_table

    ds = datasets.load("toy1d", seed=3, n=60)
    mean, std = _truth(ds)
    n = ds.n_train
    stuck = convergence_status({"max_rhat": 1.2, "min_ess_bulk": 30, "min_ess_tail": 30}, 0)
    good = convergence_status({"max_rhat": 1.001, "min_ess_bulk": 900, "min_ess_tail": 900}, 0)
    rows = [
        ("nngp", LooResult("exact", np.full(n, -1.0)), None),
        ("ntkgp", LooResult("exact", np.full(n, -1.5)), None),
        ("bnn", LooResult("psis", np.full(n, -0.2), 0.5, 0), stuck),  # not converged
        ("sgpr", LooResult("psis", np.full(n, -0.1), 1.3, 7), good),  # 7 bad Pareto k
    ]
    results = [
        dataclasses.replace(_gaussian_model(ds, name, mean, std, status=st), loo=loo)
        for name, loo, st in rows
    ]
    table = {r.model: r for r in loo_table(CalibrationRun(ds, None, Settings(), results))}
    assert table["nngp"].elpd_diff == 0.0  # the reference: best among the trusted
    assert table["ntkgp"].elpd_diff == pytest.approx(0.5 * n)
    # compared with the reference, negative: they look better but cannot be trusted
    assert table["bnn"].elpd_diff == pytest.approx(-0.8 * n)
    assert table["sgpr"].elpd_diff == pytest.approx(-0.9 * n)
    assert table["bnn"].status_note.startswith("not converged: R-hat 1.200, bulk ESS 30")
    assert table["nngp"].status_note == "" and table["sgpr"].status_note == ""
    # nothing trusted: no reference, no differences, and the report names no best
    only = [results[2], dataclasses.replace(results[3], status=stuck)]
    run = CalibrationRun(ds, parse_arch("relu-1x8"), Settings(), only)
    assert all(r.elpd_diff is None for r in loo_table(run))
    from ntk_bayes.calibrate._report import _loo_section, _paired_section

    summary = {"loo": [r.as_dict() for r in loo_table(run)]}
    text = "\n".join(_loo_section(summary))
    assert (
        "no reference, no differences, no best" in text and text.count("not converged: R-hat") == 2
    )
    assert text.index("no reference, no differences") < text.index("| model | method")
    rows = [{"model": m, "label": m, "best": None, "nlpd_diff": None, "se": None,
             "n_splits": 1, "se_over": "splits", "resolved": False,
             "note": "not converged: R-hat 1.2"} for m in ("nngp", "ntkgp")]  # fmt: skip
    text = "\n".join(_paired_section({"paired_nlpd": rows}))
    assert "no model is named best" in text and "converged model (" not in text


def test_sgpr_auto_inducing_keeps_the_fewest_points_that_reach_the_residual():
    """Planted: the noise variance is set so that the residual target falls between 32
    and 50 greedy points; the rule keeps exactly the first prefix under it, and a given
    M is kept as given."""
    import jax

    from ntk_bayes import gp, stax
    from ntk_bayes.calibrate._regression import choose_inducing

    with jax.enable_x64(True):
        X = np.linspace(-3, 3, 100)[:, None]
        net = stax.serial(stax.Dense(8, W_std=1.5, b_std=0.5), stax.Relu(), stax.Dense(1))
        _, res = gp.greedy_variance(net, X, 50, return_residuals=True)
        res = np.asarray(res)
        # the residual of the first 40 points, a hair above: the 40th is the first under
        noise = res[39] * 1.0001 / (0.1 * 100)
        assert res[38] > 0.1 * 100 * noise  # the planted case is as described
        Z, rule, ratio = choose_inducing(net, X, noise, None)
        assert Z.shape == (40, 1) and ratio <= 0.1 and "M = 40" in rule
        # a noise so large that 32 already reach it: the floor of 32
        Z, rule, _ = choose_inducing(net, X, 1e3, None)
        assert Z.shape == (32, 1)
        # a noise so small that nothing reaches it: the cap (n // 2), said in the rule
        Z, rule, ratio = choose_inducing(net, X, 1e-12, None)
        assert Z.shape == (50, 1) and ratio > 0.1 and "not reached" in rule
        Z, rule, _ = choose_inducing(net, X, noise, 12)
        assert Z.shape == (12, 1) and rule == "M = 12 (given)"
        # more than n // 2 asked: capped, and the rule says so (never "given")
        Z, rule, _ = choose_inducing(net, X, noise, 1000)
        assert Z.shape == (50, 1)
        assert rule == "M = 50 (capped from 1000: at most half the 100 training points)"


def test_bnn_status_gates_every_task_on_rhat_ess_divergences_and_the_sampler_check():
    """One gate for the regression and the classification BNN (the classification one
    once had none and was called "calibrated" at R-hat 1.39)."""
    from types import SimpleNamespace

    from ntk_bayes.calibrate._scoring import bnn_status

    good = {"max_rhat": 1.005, "min_ess_bulk": 900.0, "min_ess_tail": 800.0}

    def post(div=0, converged=True):
        return SimpleNamespace(info={"divergences_per_chain": [0, div]}, converged=converged)

    assert bnn_status(good, post()).converged
    assert "R-hat" in bnn_status({**good, "max_rhat": 1.39}, post()).reasons[0]
    assert "bulk ESS" in bnn_status({**good, "min_ess_bulk": 10.0}, post()).reasons[0]
    assert "divergent" in bnn_status(good, post(div=2)).reasons[0]
    assert bnn_status(good, post(converged=False)).reasons == (
        "the BNN sampler's own check failed",
    )


@pytest.mark.parametrize(
    "change, message",
    [({"width": 0}, "`settings.width` must be an integer >= 1"),
     ({"splits": 1.5}, "`settings.splits` must be an integer >= 1"),
     ({"num_samples": 1}, "`settings.num_samples` must be an integer >= 2"),
     ({"kfold": 1}, "`settings.kfold` must be 0 .off. or >= 2"),
     ({"inducing": 1}, "`settings.inducing` must be None or >= 2"),
     ({"sampled_splits": 2.0}, "`settings.sampled_splits` must be None or a positive"),
     ({"hyper": "mll"}, "`settings.hyper` must be 'ml' or 'nuts'"),
     ({"gp_lr": float("nan")}, "`settings.gp_lr` must be positive and finite"),
     ({"seed": -1}, "`settings.seed` must be an integer >= 0"),
     ({"quiet": "no"}, "`settings.quiet` must be True or False")],
)  # fmt: skip
def test_settings_refuse_bad_budgets_naming_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        Settings(**change)
    with pytest.raises(ValueError, match=message):
        Settings.quick(**change)


def test_settings_take_numpy_integers_as_ints():
    s = Settings(width=np.int64(8), splits=np.int32(2), gp_lr=np.float32(0.1))
    assert type(s.width) is int and type(s.splits) is int and type(s.gp_lr) is float
    assert s.as_dict()["width"] == 8

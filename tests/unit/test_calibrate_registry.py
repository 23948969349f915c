"""The calibrate model registry and the K-fold fallback where PSIS-LOO fails, on a
planted conjugate model whose exact LOO is known in closed form."""

import dataclasses

import numpy as np
import pytest

from ntk_bayes import datasets
from ntk_bayes import diagnostics as dg
from ntk_bayes.calibrate import (
    REGRESSION_MODELS,
    ModelResult,
    Settings,
    _registry,
    available_models,
    parse_arch,
    run_calibration,
)
from ntk_bayes.calibrate._common import Context
from ntk_bayes.calibrate._kfold import folds, kfold_loo, with_kfold
from ntk_bayes.calibrate._report import markdown
from ntk_bayes.calibrate._scoring import LooResult, build_summary, evaluate, gaussian_loo


# ---- registry --------------------------------------------------------------------------
def test_registry_lists_every_model_in_report_order_with_its_kernel():
    assert REGRESSION_MODELS == ("nngp", "ntkgp", "sgpr", "ensemble", "ntkgp_ensemble", "bnn")
    assert available_models("classification") == ("nngp", "ntkgp", "ensemble", "bnn")
    kernels = {m: _registry.spec("regression", m).kernel for m in REGRESSION_MODELS}
    assert kernels == {
        "nngp": "nngp", "ntkgp": "ntk", "sgpr": "nngp",
        "ensemble": "ntk", "ntkgp_ensemble": "ntk", "bnn": "nngp",
    }  # fmt: skip
    assert "not a posterior" in _registry.spec("regression", "ensemble").label


def test_register_refuses_duplicates_and_bad_arguments():
    with pytest.raises(ValueError, match="registered twice"):
        _registry.register("regression", "nngp", label="again")(lambda ctx: None)
    with pytest.raises(ValueError, match="`task`"):
        _registry.register("ranking", "x", label="x")
    with pytest.raises(ValueError, match="`kernel`"):
        _registry.register("regression", "x", label="x", kernel="rbf")


# ---- K-fold where PSIS fails -----------------------------------------------------------
TAU2, SIG2 = 1.0, 0.5  # y_i = mu + e_i, mu ~ N(0, TAU2), e_i ~ N(0, SIG2)


def _conjugate_fit(ctx):
    """The exact posterior predictive of the conjugate normal-mean model, with a planted
    PSIS failure (two Pareto k above 0.7) as a sampled model would report it."""
    y = np.asarray(ctx.ds.y_train, np.float64)
    v = 1.0 / (1.0 / TAU2 + y.size / SIG2)
    m = v * y.sum() / SIG2
    n = ctx.ds.n_test
    pred = dg.GaussianPredictive(np.full(n, m), np.full(n, np.sqrt(v + SIG2)))
    psis = LooResult("psis", np.zeros(y.size), max_k=1.3, n_bad_k=2)
    return ModelResult("planted", "planted", "regression", 0.5, predictive=pred, loo=psis)


def _ctx(n=24, kfold=0):
    ds = datasets.load("toy1d", seed=1, n=2 * n)
    return Context(ds, parse_arch("relu-1x8"), Settings(kfold=kfold, quiet=True))


def test_folds_partition_the_points():
    parts = folds(23, 5, seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(23))
    assert {len(p) for p in parts} == {4, 5}
    with pytest.raises(ValueError, match="K of K-fold"):
        folds(10, 1, seed=0)


def test_kfold_with_one_point_per_fold_is_exact_loo():
    ctx = _ctx()
    y = np.asarray(ctx.ds.y_train, np.float64)
    n = y.size
    kf = kfold_loo(ctx, _conjugate_fit, n)
    # the marginal of the conjugate model is y ~ N(0, TAU2 11' + SIG2 I): R&W eq. 5.12
    exact = gaussian_loo(TAU2 * np.ones((n, n)) + SIG2 * np.eye(n), y)
    assert kf.method == "kfold" and kf.k == n
    np.testing.assert_allclose(kf.pointwise, exact, rtol=1e-10)


def test_a_failed_psis_is_replaced_by_kfold_or_says_why_not():
    ctx = _ctx(kfold=0)
    res = _conjugate_fit(ctx)
    off = with_kfold(ctx, _conjugate_fit, res)
    assert off.loo.method == "psis"
    assert "K-fold not computed" in off.loo.note and "about 5 s for K=10" in off.loo.note
    on = with_kfold(dataclasses.replace(ctx, settings=Settings(kfold=4)), _conjugate_fit, res)
    assert on.loo.method == "kfold" and on.loo.k == 4 and on.loo.max_k == 1.3
    assert on.loo.pointwise.shape == (ctx.ds.n_train,) and np.isfinite(on.loo.elpd)
    assert "2 Pareto k > 0.70" in on.loo.note  # the planted result keeps the default bound
    good = dataclasses.replace(res, loo=LooResult("psis", np.zeros(3), max_k=0.4, n_bad_k=0))
    assert with_kfold(ctx, _conjugate_fit, good) is good


def test_pipeline_runs_kfold_for_a_registered_model(monkeypatch):
    spec = _registry.ModelSpec("regression", "planted", "planted model", None, _conjugate_fit)
    monkeypatch.setitem(_registry._REGISTRY["regression"], "planted", spec)
    ds = datasets.load("toy1d", seed=2, n=60)
    with pytest.raises(ValueError, match="kfold"):
        run_calibration(ds, parse_arch("relu-1x8"), ["planted"], Settings(kfold=1))
    run = run_calibration(ds, parse_arch("relu-1x8"), ["planted"], Settings(kfold=5))
    (res,) = run.results
    assert res.loo.method == "kfold" and res.loo.k == 5
    summary = build_summary(run, evaluate(run))  # no figures: fast
    assert summary["loo"][0]["method"] == "kfold" and summary["loo"][0]["k"] == 5
    assert "| kfold |" in markdown(run, summary, [])


# ---- one predict call for train, test and grid inputs ------------------------------------
def test_joint_moments_equal_the_per_part_calls(monkeypatch):
    import jax
    import jax.numpy as jnp

    from ntk_bayes import gp
    from ntk_bayes.calibrate import _regression
    from ntk_bayes.calibrate._common import grid_for

    with jax.enable_x64(True):
        ds = datasets.load("toy1d", seed=4, n=30, dtype=np.float64)
        grid = grid_for(ds, n=7)

        def rbf(x1, x2):  # a cheap kernel: compilation, not the kernel, is under test
            return jnp.exp(-0.5 * (x1[:, None, 0] - x2[None, :, 0]) ** 2)

        model = gp.ExactGP(rbf, ds.X_train, ds.y_train, 0.05)
        joint = _regression._moments(model, ds, grid)
        monkeypatch.setattr(_regression, "_JOINT_MAX", 0)  # forces one call per part
        parts = _regression._moments(model, ds, grid)
    for a, b in zip(joint, parts, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)
    assert joint[1][1].shape == (ds.n_test, ds.n_test) and joint[2][0].shape == (7,)


def test_paired_differences_refer_to_the_best_converged_model():
    from ntk_bayes.calibrate._scoring import Evaluation, paired_nlpd

    def ev(nlpd, converged):
        status = None if converged is None else {"converged": converged}
        per = [nlpd, nlpd + 0.1]
        return Evaluation({"label": "x", "metrics": {"nlpd": nlpd + 0.05},
                           "metrics_splits": {"nlpd": per}, "status": status})  # fmt: skip

    rows = paired_nlpd({"gp": ev(1.0, None), "bnn": ev(0.5, False)}, 0.1)
    assert {r.best for r in rows} == {"gp"}  # the unconverged sampler is not the reference
    assert {r.model: r.nlpd_diff for r in rows} == pytest.approx({"gp": 0.0, "bnn": -0.5})
    assert {r.model: r.note[:13] for r in rows} == {"gp": "", "bnn": "not converged"}
    # no converged model: no reference, no difference, every row marked
    rows = paired_nlpd({"a": ev(1.0, False), "b": ev(0.5, False)}, 0.1)
    assert all(r.best is None and r.nlpd_diff is None for r in rows)
    assert all(r.note.startswith("not converged") for r in rows)


def test_paired_differences_with_one_split_use_the_test_points():
    """One split: the SE is that of the paired per-point differences (planted), and
    a difference within two SEs is not resolved."""
    from ntk_bayes.calibrate._scoring import Evaluation, paired_nlpd

    rng = np.random.default_rng(0)
    base = rng.normal(1.0, 1.0, size=400)

    def ev(points):
        m = float(np.mean(points))
        return Evaluation({"label": "x", "metrics": {"nlpd": m}, "status": None,
                           "metrics_splits": {"nlpd": [m]}}, nlpd_points={1: points})  # fmt: skip

    shift = 0.01 + 0.5 * np.resize([1.0, -1.0], 400)  # mean 0.01, SE 0.025: unresolved
    far = base + 1.0 + rng.normal(0.0, 0.1, size=400)
    rows = {r.model: r for r in paired_nlpd({"a": ev(base), "b": ev(base + shift),
                                             "c": ev(far)}, 0.1)}  # fmt: skip
    assert rows["a"].best == "a" and rows["c"].se_over == "test points"
    assert rows["c"].nlpd_diff == pytest.approx(np.mean(far - base))
    assert rows["c"].se == pytest.approx(np.std(far - base, ddof=1) / np.sqrt(400))
    assert rows["c"].resolved and not rows["b"].resolved and not rows["a"].resolved
    assert rows["b"].se == pytest.approx(np.std(shift, ddof=1) / np.sqrt(400))

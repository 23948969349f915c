r"""Scoring of a calibration study: convergence gates, LOO per model, verdicts, and
means with standard errors over repeated train/test splits.

:func:`evaluate` scores every model of a run over its splits and :func:`build_summary`
gathers the JSON-ready record (what ``metrics.json`` holds). Nothing here draws or
writes; :mod:`._report` renders and :mod:`._files` writes.

Standard errors over R random splits (test share ρ = n_test / n_train) use the
corrected resampled variance of Nadeau & Bengio (2003),
SE² = (1/R + ρ) s², with s² the sample variance of the per-split scores: the splits
share most of their data, so the naive s²/R is too small. Paired differences between
models are taken split by split and get the same correction. With one split the paired
NLPD differences get the standard error of the per-test-point differences instead,
optimistic because the test points share the training data.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from .. import diagnostics as dg

if TYPE_CHECKING:
    from ._pipeline import CalibrationRun

__all__ = [
    "RHAT_MAX",
    "ESS_MIN",
    "PSIS_K_MAX",
    "ConvergenceStatus",
    "convergence_status",
    "LooResult",
    "gaussian_loo",
    "psis_loo",
    "divergences",
    "verdict",
    "mean_se",
    "paired",
    "Evaluation",
    "evaluate",
    "build_summary",
    "LooRow",
    "PairedDiff",
    "loo_table",
    "paired_nlpd",
    "CURVE_LEVELS",
    "not_converged_note",
]

RHAT_MAX = 1.01
ESS_MIN = 400
#: Pareto k above which PSIS-LOO is unreliable at a point with many draws (Vehtari et
#: al. 2024); with S draws the bound is ``dg.pareto_k_threshold(S)`` = min(1 - 1/log10 S,
#: 0.7), lower below ~2,200 draws (0.44 at 60), as ArviZ judges it
PSIS_K_MAX = 0.7


@dataclasses.dataclass(frozen=True)
class ConvergenceStatus:
    """Whether a sampled model's draws can be trusted (Vehtari et al. 2021 thresholds).

    Attributes:
        max_rhat: worst split R-hat over the predictive function values (and parameters).
        min_ess_bulk, min_ess_tail: smallest effective sample sizes.
        divergences: divergent transitions over all chains.
        reasons: why it failed (empty when converged).
    """

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    reasons: tuple[str, ...]

    @property
    def converged(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "converged": self.converged}


def convergence_status(
    conv: dict, divergences: int, *, rhat_max: float = RHAT_MAX, ess_min: float = ESS_MIN
) -> ConvergenceStatus:
    """Judge ``conv`` (from :func:`ntk_bayes.diagnostics.convergence`) and a divergence
    count: R-hat above ``rhat_max``, bulk ESS below ``ess_min`` or any divergence fails.
    NaN R-hat/ESS (e.g. one chain) fail too: convergence was not shown."""
    rhat, ess_b = float(conv["max_rhat"]), float(conv["min_ess_bulk"])
    ess_t = float(conv.get("min_ess_tail", float("nan")))
    reasons = []
    if not rhat <= rhat_max:
        reasons.append(f"R-hat {rhat:.3f} > {rhat_max}")
    if not ess_b >= ess_min:
        reasons.append(f"bulk ESS {ess_b:.0f} < {ess_min}")
    if divergences:
        reasons.append(f"{int(divergences)} divergent transitions")
    return ConvergenceStatus(rhat, ess_b, ess_t, int(divergences), tuple(reasons))


def bnn_status(conv: dict, post) -> ConvergenceStatus:
    """The finite BNN's gate, in every task: :func:`convergence_status` of its function
    values ``conv`` and its divergences, failed also when the sampler's own check
    (tree-depth saturation among others) failed."""
    status = convergence_status(conv, divergences(post.info))
    if status.converged and getattr(post, "converged", True) is False:
        status = dataclasses.replace(status, reasons=("the BNN sampler's own check failed",))
    return status


@dataclasses.dataclass(frozen=True)
class LooResult:
    """Leave-one-out expected log predictive density on the training data.

    Attributes:
        method: ``"exact"`` (closed form, R&W eq. 5.12), ``"sgpr"`` (closed form under
            the SGPR's own marginal N(0, Q + σ²I)), ``"psis"`` (Pareto-smoothed
            importance sampling over posterior draws), ``"kfold"`` (K refits, where
            PSIS failed: :mod:`._kfold`) or ``"none"``.
        pointwise: log p(y_i | y_{-i}) per training point (standardised units; for
            K-fold log p(y_i | y_{-F(i)}), F(i) the fold of point i).
        max_k, n_bad_k: PSIS (and the K-fold that replaced it): largest Pareto k and
            the count above ``k_threshold``.
        k_threshold: PSIS: the Pareto k bound for its number of draws,
            ``dg.pareto_k_threshold(S)`` (:data:`PSIS_K_MAX` with many draws).
        note: why there is none, or a warning.
        k, seconds: K-fold only: the folds K and the seconds of the K refits.
    """

    method: str
    pointwise: np.ndarray | None = None
    max_k: float | None = None
    n_bad_k: int | None = None
    note: str = ""
    k: int | None = None
    seconds: float | None = None
    k_threshold: float = PSIS_K_MAX

    @property
    def elpd(self) -> float | None:
        return None if self.pointwise is None else float(np.sum(self.pointwise))

    @property
    def se(self) -> float | None:
        if self.pointwise is None:
            return None
        return float(math.sqrt(self.pointwise.size * np.var(self.pointwise)))

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "elpd": self.elpd,
            "se": self.se,
            "max_pareto_k": self.max_k,
            "n_bad_k": self.n_bad_k,
            "pareto_k_threshold": self.k_threshold if self.max_k is not None else None,
            "note": self.note,
            "k": self.k,
            "seconds": self.seconds,
        }


def gaussian_loo(C, y) -> np.ndarray:
    """``log p(y_i | y_{-i})`` under y ~ N(0, C), R&W eq. 5.10-5.12: with
    α = C^{-1} y, the LOO mean is y_i - α_i / [C^{-1}]_ii and variance 1 / [C^{-1}]_ii."""
    C = np.asarray(C, np.float64)
    y = np.asarray(y, np.float64).reshape(-1)
    L = np.linalg.cholesky(0.5 * (C + C.T))
    Linv = np.linalg.solve(L, np.eye(len(y)))
    d = np.sum(Linv * Linv, axis=0)
    alpha = Linv.T @ (Linv @ y)
    return -0.5 * math.log(2 * math.pi) + 0.5 * np.log(d) - 0.5 * alpha**2 / d


def psis_loo(idata) -> LooResult:
    """PSIS-LOO of a sampled model's ``log_likelihood.y`` with its Pareto k."""
    import warnings

    from ..diagnostics._arviz import az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = az.loo(idata, var_name="y", pointwise=True)
    if dg.ARVIZ_1:
        pw, k = res.elpd_i, res.pareto_k
    else:
        pw, k = res["loo_i"], res["pareto_k"]
    pw, k = np.asarray(pw, np.float64).reshape(-1), np.asarray(k, np.float64).reshape(-1)
    draws = int(res.n_samples if dg.ARVIZ_1 else res["n_samples"])
    thr = dg.pareto_k_threshold(draws)
    bad = int(np.sum(k > thr))
    note = f"{bad} Pareto k > {thr:.2f} ({draws} draws): PSIS unreliable there" if bad else ""
    return LooResult("psis", pw, float(np.max(k)), bad, note, k_threshold=thr)


def divergences(info: dict) -> int:
    """Divergent transitions over all chains from a sampler's info dict."""
    return int(np.sum(np.asarray(info.get("divergences_per_chain", []), np.int64)))


def verdict(check, status: ConvergenceStatus | None) -> str:
    """The calibration verdict, or ``"not converged"`` when the sampler failed."""
    if status is not None and not status.converged:
        return "not converged"
    if check is None:
        return "n/a (fewer than 10 test points)"
    if check.passed:
        return "calibrated"
    tags = []
    if check.overconfident:
        tags.append("over-confident")
    if check.underconfident:
        tags.append("under-confident")
    if check.biased:
        tags.append("biased")
    if getattr(check, "joint_covariance", False) and not (
        check.overconfident or check.underconfident
    ):
        # the joint test of the whole covariance rejects a wrong width too; named only
        # where the widths pass, so that it says "the correlations are wrong"
        tags.append("wrong joint covariance")
    n_splits = check.stats.get("n_splits", 1)
    counts = check.stats.get("rejecting_splits")
    if counts and n_splits > 1:  # the joint check over splits: on how many each rejects
        test = {
            "over-confident": "overconfident",
            "under-confident": "underconfident",
            "wrong joint covariance": "joint_covariance",
        }
        tags = [f"{t} ({counts[test.get(t, t)]}/{n_splits} splits)" for t in tags]
    return ", ".join(tags) or "miscalibrated (" + ", ".join(check.flags) + ")"


def _corrected_se(values: np.ndarray, rho: float) -> float:
    r = values.size
    if r < 2:
        return float("nan")
    return float(math.sqrt((1.0 / r + rho) * np.var(values, ddof=1)))


def mean_se(values, rho: float) -> tuple[float, float]:
    """Mean and corrected standard error of per-split scores (NaN SE for one split)."""
    v = np.asarray(values, np.float64)
    return float(np.mean(v)), _corrected_se(v, rho)


def paired(a, b, rho: float) -> tuple[float, float]:
    """Mean and corrected standard error of the per-split differences ``a - b``."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(np.mean(d)), _corrected_se(d, rho)


# ---- a run's scores over its splits ----------------------------------------------------
CURVE_LEVELS = tuple(float(x) for x in np.round(np.linspace(0.05, 0.95, 19), 2))


@dataclasses.dataclass
class Evaluation:
    """Scores of one model: ``summary`` (JSON-ready) and the arrays behind the figures."""

    summary: dict
    pit: np.ndarray | None = None
    coverage_curve: dict | None = None
    reliability: dg.Reliability | None = None
    #: regression: ``{split number: -log p(y_i) per test point}`` (standardised units)
    nlpd_points: dict | None = None


def _subset(pred, mask):
    if isinstance(pred, dg.GaussianPredictive):
        return dg.GaussianPredictive(pred.mean[mask], pred.std[mask])
    sd = None if pred.noise_std is None else pred.noise_std[:, mask]
    return dg.SamplePredictive(pred.samples[:, mask], sd)


def _gap_summary(ds, pred) -> dict | None:
    mask = ds.extra.get("test_in_gap")
    if mask is None:
        return None
    mask = np.asarray(mask, bool)
    if mask.all() or not mask.any():
        return None
    out = {}
    for tag, m in (("gap", mask), ("outside", ~mask)):
        sub = _subset(pred, m)
        out[f"mean_std_{tag}"] = ds.y_std * float(np.mean(sub.std))
        out[f"coverage_90_{tag}"] = dg.coverage(ds.y_test[m], sub, (0.9,))[0.9]
        out[f"n_{tag}"] = int(m.sum())
    out["std_ratio"] = out["mean_std_gap"] / out["mean_std_outside"]
    return out


def _by_name(run: CalibrationRun) -> dict[str, list]:
    """Each model's ``(split number from 1, dataset, result)`` over the splits it fitted
    (all of them, or the first K for sampled models under ``--sampled-splits K``)."""
    out = {r.name: [] for r in run.results}
    for i, sp in enumerate(run.splits, 1):
        for r in sp.results:
            if r.name in out:
                out[r.name].append((i, sp.dataset, r))
    return out


def _rho(run: CalibrationRun) -> float:
    ds = run.dataset
    return ds.n_test / max(ds.n_train, 1)


def _combined_status(results) -> ConvergenceStatus | None:
    sts = [(i, r.status) for i, _, r in results if r.status is not None]
    if not sts:
        return None
    reasons = tuple(
        f"split {i}: {why}" if len(sts) > 1 else why for i, st in sts for why in st.reasons
    )
    sts = [st for _, st in sts]
    return ConvergenceStatus(
        max(st.max_rhat for st in sts),
        min(st.min_ess_bulk for st in sts),
        min(st.min_ess_tail for st in sts),
        sum(st.divergences for st in sts),
        reasons,
    )


def _regression_check(results):
    """Joint test over splits when every split has a test covariance, else the
    marginal test of split 0 (which assumes independent test points)."""
    if all(r.test_cov is not None for _, _, r in results):
        ys = [np.asarray(ds.y_test, np.float64) for _, ds, _ in results]
        if min(len(y) for y in ys) < 10:
            return None, None
        ms = [np.asarray(r.predictive.mean, np.float64) for _, _, r in results]
        check = dg.joint_calibration_check(ys, ms, [r.test_cov for _, _, r in results])
        return check, np.asarray(check.stats["pit"])
    _, ds, r = results[0]
    if ds.n_test < 10:
        return None, None
    return dg.calibration_check(ds.y_test, r.predictive, alpha=dg.ALPHA), dg.pit(
        ds.y_test, r.predictive
    )


def _classification_check(results):
    """The top-label tests on every split, Bonferroni over the R splits: a test's
    p-value is min(1, R · its smallest p over the splits), so the family-wise
    false-alarm rate stays at most ``ALPHA``. ``None`` when a split has fewer than 10
    test points."""
    if min(len(d.y_test) for _, d, _ in results) < 10:
        return None
    checks = [dg.classification_check(d.y_test, r.probs, alpha=dg.ALPHA) for _, d, r in results]
    if len(checks) == 1:
        return checks[0]
    n = len(checks)
    pvals = {t: min(1.0, n * min(c.pvalues[t] for c in checks)) for t in checks[0].pvalues}
    flags = tuple(t for t, p in pvals.items() if p < dg.ALPHA)
    stats = {
        k: float(np.mean([c.stats[k] for c in checks]))
        for k, v in checks[0].stats.items()
        if isinstance(v, int | float)
    }
    stats["n_splits"] = n
    # on how many splits each test rejects at the family-wise level (as the joint
    # regression check reports it)
    stats["rejecting_splits"] = {t: sum(n * c.pvalues[t] < dg.ALPHA for c in checks) for t in pvals}
    return dg.CalibrationCheck(flags, pvals, stats, float(dg.ALPHA))


def _gap_over_splits(results, rho: float) -> dict | None:
    """:func:`_gap_summary` of every split the model ran: means, and their corrected
    standard errors under ``"se"`` (NaN with one split), with ``n_splits``."""
    per = [_gap_summary(d, r.predictive) for _, d, r in results]
    if any(g is None for g in per):
        return None
    mean, se = _mean_se_dict(per, rho)
    return {**mean, "se": se, "n_splits": len(per)}


def _mean_se_dict(per_split: list[dict], rho: float) -> tuple[dict, dict]:
    keys = [k for k, v in per_split[0].items() if isinstance(v, int | float)]
    mean, se = {}, {}
    for k in keys:
        mean[k], se[k] = mean_se([m[k] for m in per_split], rho)
    return mean, se


def evaluate(run: CalibrationRun) -> dict[str, Evaluation]:
    """Score every model of ``run`` over all its splits."""
    rho = _rho(run)
    out = {}
    for name, results in _by_name(run).items():
        res = results[0][2]
        status = _combined_status(results)
        base = {
            "label": res.label,
            "fit_time_s": float(sum(r.fit_time for _, _, r in results)),
            "info": res.info,
            "convergence": res.convergence,
            "status": None if status is None else status.as_dict(),
            "posterior": bool(res.loo_ok),
            "loo": None if res.loo is None else res.loo.as_dict(),
            "netcdf": f"{res.name}.nc",
            "n_splits": len(results),
            "split_ids": [i for i, _, _ in results],
        }
        if res.task == "regression":
            per = [
                dg.regression_metrics(d.y_test, r.predictive, scale=d.y_std) for _, d, r in results
            ]
            base["metrics"], base["metrics_se"] = _mean_se_dict(per, rho)
            base["metrics_splits"] = {k: [m[k] for m in per] for k in base["metrics"]}
            check, pit = _regression_check(results)
            curves = [dg.coverage(d.y_test, r.predictive, CURVE_LEVELS) for _, d, r in results]
            curve = {lv: float(np.mean([c[lv] for c in curves])) for lv in CURVE_LEVELS}
            gap = _gap_over_splits(results, rho)
            if gap is not None:
                base["gap"] = gap
            points = {
                i: -np.asarray(r.predictive.logpdf(np.asarray(d.y_test)), np.float64)
                for i, d, r in results
            }
            ev = Evaluation(base, pit=pit, coverage_curve=curve, nlpd_points=points)
        else:
            per = [dg.classification_metrics(d.y_test, r.probs) for _, d, r in results]
            base["metrics"], base["metrics_se"] = _mean_se_dict(per, rho)
            base["metrics_splits"] = {k: [m[k] for m in per] for k in base["metrics"]}
            check = _classification_check(results)
            # the reliability diagram pools the held-out points of every split
            y = np.concatenate([np.asarray(d.y_test) for _, d, _ in results])
            probs = np.concatenate([np.asarray(r.probs) for _, _, r in results])
            rel = dg.reliability(y, probs)
            base["reliability"] = rel.as_dict()
            ev = Evaluation(base, reliability=rel)
        cal = None if check is None else check.as_dict()
        if cal is not None:
            cal["stats"] = {k: v for k, v in cal["stats"].items() if k != "pit"}
        base["calibration"] = None if status is not None and not status.converged else cal
        base["verdict"] = verdict(check, status)
        out[name] = ev
    return out


@dataclasses.dataclass(frozen=True)
class LooRow:
    """One model's row of the LOO comparison (split 1).

    Attributes:
        model, label: the model's name and table label.
        loo: its :class:`LooResult`.
        elpd_diff, se_diff: the best posterior's elpd minus this one's and the standard
            error of the pointwise differences; ``None`` for models that take no part.
    """

    model: str
    label: str
    loo: LooResult
    elpd_diff: float | None = None
    se_diff: float | None = None
    status_note: str = ""

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "label": self.label,
            **self.loo.as_dict(),
            "elpd_diff": self.elpd_diff,
            "se_diff": self.se_diff,
            "status_note": self.status_note,
        }


def loo_table(run: CalibrationRun) -> list[LooRow] | None:
    """LOO on split 1 by each model's own method; differences to the best model with the
    standard error of the pointwise differences (only posteriors take part). The
    reference is the best posterior whose estimate can be trusted: a sampler that failed
    its convergence gate, or a PSIS estimate with a Pareto k above ``PSIS_K_MAX``, is
    compared, never the reference; when no posterior is trusted there is no reference
    and no differences. A sampler that failed its gate gets ``status_note``."""
    scored = [r for r in run.results if r.loo is not None]
    if not scored:
        return None
    posteriors = [r for r in scored if r.loo_ok and r.loo.pointwise is not None]

    def note(r):
        return not_converged_note(None if r.status is None else r.status.as_dict())

    trusted = [r for r in posteriors if not note(r) and not (r.loo.n_bad_k or 0)]
    best = max(trusted, key=lambda r: r.loo.elpd, default=None)
    taking_part = {id(r) for r in posteriors}
    rows = []
    for r in scored:
        if best is None or id(r) not in taking_part:
            rows.append(LooRow(r.name, r.label, r.loo, status_note=note(r)))
            continue
        d = best.loo.pointwise - r.loo.pointwise
        diff, se = float(d.sum()), float(np.sqrt(d.size * np.var(d)))
        rows.append(LooRow(r.name, r.label, r.loo, diff, se, note(r)))
    return rows


def not_converged_note(status: dict | None) -> str:
    """``"not converged: R-hat …, bulk ESS …"`` for a sampled model that failed its
    gate (``status`` as in a model's summary), else ``""``."""
    if not status or status.get("converged", True):
        return ""
    div = status.get("divergences") or 0
    rhat = float(status.get("max_rhat", float("nan")))
    ess = float(status.get("min_ess_bulk", float("nan")))
    return f"not converged: R-hat {rhat:.3f}, bulk ESS {ess:.0f}" + (
        f", {div} divergences" if div else ""
    )


@dataclasses.dataclass(frozen=True)
class PairedDiff:
    """A model's held-out NLPD minus the reference's: the lowest-NLPD model whose
    sampler converged (``best``; ``None`` when no model converged, and then no
    difference). With several shared splits, mean ± corrected standard error of the
    per-split differences (``se_over = "splits"``); with one split, the standard error
    of the paired differences over its test points (``"test points"``; optimistic,
    since test points are correlated through the shared training data).
    ``resolved``: the difference exceeds two standard errors. ``note``: why the model
    is not trusted (not converged), else empty."""

    model: str
    label: str
    best: str | None
    nlpd_diff: float | None
    se: float | None
    n_splits: int
    se_over: str = "splits"
    resolved: bool = False
    note: str = ""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def paired_nlpd(evals: dict, rho: float) -> list[PairedDiff] | None:
    """NLPD of every regression model minus the best converged one's, split by split
    (over test points with one split). The reference is never a sampler that failed its
    convergence gate; when no model converged there is no reference and no difference."""
    reg = {k: e for k, e in evals.items() if "nlpd" in e.summary["metrics"]}
    if len(reg) < 2:
        return None
    notes = {k: not_converged_note(e.summary.get("status")) for k, e in reg.items()}
    trusted = [k for k in reg if not notes[k]]
    if not trusted:
        return [
            PairedDiff(
                k, e.summary["label"], None, None, None, len(_per_split(e.summary)), note=notes[k]
            )
            for k, e in reg.items()
        ]
    best = min(trusted, key=lambda k: reg[k].summary["metrics"]["nlpd"])
    ref = _per_split(reg[best].summary)
    rows = []
    for k, e in reg.items():
        own = _per_split(e.summary)
        shared = sorted(own.keys() & ref.keys())
        if not shared:
            continue
        if len(shared) > 1:
            d, se = paired([own[i] for i in shared], [ref[i] for i in shared], rho)
            over = "splits"
        else:
            d, se = _paired_points(e.nlpd_points, reg[best].nlpd_points, shared[0])
            over = "test points"
        ok = k != best and np.isfinite(se) and abs(d) > 2 * se
        rows.append(PairedDiff(k, e.summary["label"], best, d, se, len(shared), over, ok, notes[k]))
    return rows


def _paired_points(own: dict | None, ref: dict | None, split: int) -> tuple[float, float]:
    """Mean and standard error of the paired per-test-point NLPD differences of one
    split (NaN SE when the points are missing)."""
    if not own or not ref or split not in own or split not in ref:
        return float("nan"), float("nan")
    d = own[split] - ref[split]
    se = float(np.std(d, ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")
    return float(np.mean(d)), se


def _per_split(summary: dict) -> dict[int, float]:
    """``{split number: NLPD}`` of a model's summary (splits 1..n when not recorded)."""
    nlpd = summary["metrics_splits"]["nlpd"]
    ids = summary.get("split_ids") or range(1, len(nlpd) + 1)
    return dict(zip(ids, nlpd, strict=True))


def _dicts(rows) -> list[dict] | None:
    return None if rows is None else [r.as_dict() for r in rows]


def build_summary(run: CalibrationRun, evals: dict, extra: dict | None = None) -> dict:
    """The JSON-ready record of a run (what ``metrics.json`` holds)."""
    ds = run.dataset
    return {
        "command": "calibrate",
        "ntk_bayes_version": __version__,
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "dataset": {
            "name": ds.name,
            "task": ds.task,
            "description": ds.description,
            "n_train": ds.n_train,
            "n_test": ds.n_test,
            "input_shape": list(ds.input_shape),
            "y_std": ds.y_std,
            "classes": list(ds.classes) if ds.classes else None,
        },
        "architecture": run.arch.describe(),
        "settings": run.settings.as_dict(),
        "total_time_s": float(sum(sp.total_time for sp in run.splits)),
        "splits": len(run.splits),
        "alpha": dg.ALPHA,
        "models": {name: ev.summary for name, ev in evals.items()},
        "failures": dict(run.failures),
        "loo": _dicts(loo_table(run)),
        "paired_nlpd": _dicts(paired_nlpd(evals, _rho(run))),
        **(extra or {}),
    }

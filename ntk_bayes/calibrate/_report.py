"""Scores, calibration verdicts, the terminal table and the files of a calibrate run.

:func:`evaluate` scores every model on the held-out split; :func:`write_report` writes
into a directory (normally the temporary one of :func:`ntk_bayes._io.atomic_output_dir`)

* ``report.md``: the table, calibration verdicts, LOO comparison, convergence, figures;
* ``metrics.json``: the same numbers, one entry per model under ``"models"``;
* ``<model>.nc``: ArviZ data per model (``az.from_netcdf`` opens it);
* ``coverage.png``, ``pit_ecdf.png`` (regression), ``bands.png`` (1-D inputs),
  ``reliability.png`` (classification).

Regression figures are in the targets' raw units (the models work on standardised ones).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import re
from pathlib import Path

import numpy as np

from .. import __version__
from .. import diagnostics as dg
from .._io import current_umask, escape_markdown, write_json
from ._files import for_file
from ._pipeline import CalibrationRun
from ._scoring import ESS_MIN, RHAT_MAX, ConvergenceStatus, mean_se, paired, verdict

__all__ = ["Evaluation", "evaluate", "write_report", "results_table", "markdown_table"]

CAPTIONS = {
    "coverage.png": "Share of held-out targets inside each central interval, averaged over "
    "splits, against its nominal level. On the diagonal: calibrated; below: intervals too "
    "narrow (over-confident); above: too wide.",
    "pit_ecdf.png": "ECDF of the PIT values minus the uniform CDF, pooled over splits. For "
    "models with a joint predictive these are the whitened residuals Φ(L^-1 r), independent "
    "within a split when calibrated. The grey band is the simultaneous 1 - alpha band for "
    "independent points, at the alpha of the tests. A dip then a rise (S shape) means "
    "over-confidence, the reverse under-confidence, a one-sided bulge bias.",
    "bands.png": "Predictive mean and 50%/90% intervals on a grid (split 1), training points "
    "dark, test points light, the input gap shaded. The ReLU NTK is a rough (Laplace-like, "
    "variogram linear in distance) kernel: its jagged mean and its nearly flat, linearly "
    "growing extrapolation are properties of the kernel, not of the fit.",
    "reliability.png": "Accuracy against confidence per bin; on the diagonal when calibrated.",
}

CURVE_LEVELS = tuple(float(x) for x in np.round(np.linspace(0.05, 0.95, 19), 2))


@dataclasses.dataclass
class Evaluation:
    """Scores of one model: ``summary`` (JSON-ready) and the arrays behind the figures."""

    summary: dict
    pit: np.ndarray | None = None
    coverage_curve: dict | None = None
    reliability: dg.Reliability | None = None


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
    """Each model's results over the splits it fitted, split 0 first."""
    out = {r.name: [] for r in run.results}
    for sp in run.splits:
        for r in sp.results:
            if r.name in out:
                out[r.name].append((sp.dataset, r))
    return out


def _rho(run: CalibrationRun) -> float:
    ds = run.dataset
    return ds.n_test / max(ds.n_train, 1)


def _combined_status(results) -> ConvergenceStatus | None:
    sts = [r.status for _, r in results if r.status is not None]
    if not sts:
        return None
    reasons = tuple(
        f"split {i + 1}: {why}" if len(sts) > 1 else why
        for i, st in enumerate(sts)
        for why in st.reasons
    )
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
    if all(r.test_cov is not None for _, r in results):
        ys = [np.asarray(ds.y_test, np.float64) for ds, _ in results]
        if min(len(y) for y in ys) < 10:
            return None, None
        ms = [np.asarray(r.predictive.mean, np.float64) for _, r in results]
        check = dg.joint_calibration_check(ys, ms, [r.test_cov for _, r in results])
        return check, np.asarray(check.stats["pit"])
    ds, r = results[0]
    if ds.n_test < 10:
        return None, None
    return dg.calibration_check(ds.y_test, r.predictive, alpha=dg.ALPHA), dg.pit(
        ds.y_test, r.predictive
    )


def _mean_se_dict(per_split: list[dict], rho: float) -> tuple[dict, dict]:
    keys = [k for k, v in per_split[0].items() if isinstance(v, int | float)]
    mean, se = {}, {}
    for k in keys:
        mean[k], se[k] = mean_se([m[k] for m in per_split], rho)
    return mean, se


def evaluate(run: CalibrationRun) -> dict[str, Evaluation]:
    """Score every model of ``run`` over all its splits."""
    ds, rho = run.dataset, _rho(run)
    out = {}
    for name, results in _by_name(run).items():
        res = results[0][1]
        status = _combined_status(results)
        base = {
            "label": res.label,
            "fit_time_s": float(sum(r.fit_time for _, r in results)),
            "info": res.info,
            "convergence": res.convergence,
            "status": None if status is None else status.as_dict(),
            "posterior": bool(res.loo_ok),
            "loo": None if res.loo is None else res.loo.as_dict(),
            "netcdf": f"{res.name}.nc",
            "n_splits": len(results),
        }
        if res.task == "regression":
            per = [dg.regression_metrics(d.y_test, r.predictive, scale=d.y_std) for d, r in results]
            base["metrics"], base["metrics_se"] = _mean_se_dict(per, rho)
            base["metrics_splits"] = {k: [m[k] for m in per] for k in base["metrics"]}
            check, pit = _regression_check(results)
            curves = [dg.coverage(d.y_test, r.predictive, CURVE_LEVELS) for d, r in results]
            curve = {lv: float(np.mean([c[lv] for c in curves])) for lv in CURVE_LEVELS}
            gap = _gap_summary(ds, res.predictive)
            if gap is not None:
                base["gap"] = gap
            ev = Evaluation(base, pit=pit, coverage_curve=curve)
        else:
            y = ds.y_test
            check = dg.classification_check(y, res.probs, alpha=dg.ALPHA) if len(y) >= 10 else None
            base["metrics"] = dg.classification_metrics(y, res.probs)
            base["metrics_se"] = {}
            rel = dg.reliability(y, res.probs)
            base["reliability"] = rel.as_dict()
            ev = Evaluation(base, reliability=rel)
        cal = None if check is None else check.as_dict()
        if cal is not None:
            cal["stats"] = {k: v for k, v in cal["stats"].items() if k != "pit"}
        base["calibration"] = None if status is not None and not status.converged else cal
        base["verdict"] = verdict(check, status)
        out[name] = ev
    return out


def _loo_table(run: CalibrationRun) -> list[dict] | None:
    """LOO on split 0 by each model's own method; differences to the best model with the
    standard error of the pointwise differences (only posteriors take part)."""
    rows = []
    best = None
    for r in run.results:
        if r.loo is None:
            continue
        rows.append({"model": r.name, "label": r.label, **r.loo.as_dict()})
        if (
            r.loo_ok
            and r.loo.pointwise is not None
            and (best is None or r.loo.elpd > best.loo.elpd)
        ):
            best = r
    if not rows:
        return None
    for row, r in zip(rows, [x for x in run.results if x.loo is not None], strict=True):
        if best is None or not r.loo_ok or r.loo.pointwise is None:
            row["elpd_diff"], row["se_diff"] = None, None
            continue
        d = best.loo.pointwise - r.loo.pointwise
        row["elpd_diff"] = float(d.sum())
        row["se_diff"] = float(np.sqrt(d.size * np.var(d)))
    return rows


def _paired_nlpd(evals: dict, rho: float) -> list[dict] | None:
    """NLPD of every regression model minus the best one's, split by split."""
    reg = {k: e.summary for k, e in evals.items() if "metrics_splits" in e.summary}
    if len(reg) < 2:
        return None
    best = min(reg, key=lambda k: reg[k]["metrics"]["nlpd"])
    rows = []
    for k, m in reg.items():
        a, b = m["metrics_splits"]["nlpd"], reg[best]["metrics_splits"]["nlpd"]
        if len(a) != len(b):
            continue
        d, se = paired(a, b, rho)
        rows.append({"model": k, "label": m["label"], "best": best, "nlpd_diff": d, "se": se})
    return rows


def _scalar(v):
    if isinstance(v, bool | np.bool_):
        return bool(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


# ---- untrusted text --------------------------------------------------------------------
# Every string value of the summary (dataset name and description, file, column and
# feature names, labels, failure messages) may come from the user's file or flags.
# Markdown and the terminal table read the summary only through this view, escaped for
# their format: :func:`ntk_bayes._io.escape_markdown` (Markdown, and the HTML it becomes)
# or ``rich.markup.escape`` (the terminal). Dict keys stay as they are: they are names
# the code chose (model names from the fixed list that ``check_models`` enforces, metric,
# flag and hyperparameter names), used for look-ups. metrics.json keeps the raw strings.
def _escaped(obj, esc):
    """``obj`` with every string value passed through ``esc``."""
    if isinstance(obj, str):
        return esc(obj)
    if isinstance(obj, dict):
        return {k: _escaped(v, esc) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_escaped(v, esc) for v in obj]
    return obj


def _rich_escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


_TOKEN = re.compile(r"\\.|&(?:amp|lt|gt);|.", re.S)


def _clip(text: str, n: int) -> str:
    """The first ``n`` visible characters of escaped text, never half an escape (a cut
    after a backslash would escape the table's next ``|``)."""
    return "".join(_TOKEN.findall(text)[:n])


# ---- tables --------------------------------------------------------------------------
def _columns(task: str):
    if task == "regression":
        return [
            ("RMSE", "rmse", "{:.3f}"),
            ("NLPD", "nlpd", "{:.3f}"),
            ("CRPS", "crps", "{:.3f}"),
            ("cov 50", "coverage_50", "{:.2f}"),
            ("cov 90", "coverage_90", "{:.2f}"),
            ("cov 95", "coverage_95", "{:.2f}"),
            ("MCE", "mean_coverage_error", "{:.3f}"),
            ("width 90", "width_90", "{:.3f}"),
        ]
    return [
        ("accuracy", "accuracy", "{:.3f}"),
        ("NLL", "nll", "{:.3f}"),
        ("Brier", "brier", "{:.3f}"),
        ("ECE", "ece", "{:.3f}"),
    ]


def _rows(summary: dict):
    """Header and cells of the results table from an escaped summary (:func:`_escaped`)."""
    task = summary["dataset"]["task"]
    cols = _columns(task)
    header = ["model"] + [c[0] for c in cols] + ["time (s)", "calibration"]
    rows = []
    for m in summary["models"].values():
        met, se = m["metrics"], m.get("metrics_se") or {}

        def cell(key, fmt, met=met, se=se):
            v = fmt.format(met[key])
            e = se.get(key)
            return v if e is None or not np.isfinite(e) else f"{v} ± {fmt.format(e)}"

        rows.append(
            [m["label"]]
            + [cell(key, fmt) for _, key, fmt in cols]
            + [f"{m['fit_time_s']:.1f}", m["verdict"]]
        )
    for name, err in summary.get("failures", {}).items():
        rows.append([name] + ["-"] * len(cols) + ["-", f"FAILED: {_clip(err, 80)}"])
    return header, rows


def markdown_table(summary: dict) -> str:
    """The results as a Markdown table (one row per model), its text escaped."""
    header, rows = _rows(_escaped(summary, escape_markdown))
    align = ["---"] + ["---:"] * (len(header) - 2) + ["---"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def results_table(summary: dict):
    """The results as a ``rich`` table for the terminal."""
    from rich.table import Table

    summary = _escaped(summary, _rich_escape)  # a "[" in a name is not rich markup
    header, rows = _rows(summary)
    ds = summary["dataset"]
    table = Table(title=f"ntk-bayes calibrate: {ds['name']} ({ds['task']}, test n={ds['n_test']})")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i in (0, len(header) - 1) else "right")
    for r in rows:
        table.add_row(*r)
    return table


# ---- files ---------------------------------------------------------------------------
def _raw(pred, ds):
    if isinstance(pred, dg.GaussianPredictive):
        return dg.GaussianPredictive(ds.unstandardize_y(pred.mean), ds.y_std * pred.std)
    sd = None if pred.noise_std is None else ds.y_std * pred.noise_std
    return dg.SamplePredictive(ds.unstandardize_y(pred.samples), sd)


def _plots(run: CalibrationRun, evals: dict, out: Path) -> list[str]:
    from matplotlib.figure import Figure

    ds, written = run.dataset, []
    labels = {r.name: r.label for r in run.results}

    def save(fig, name):
        fig.savefig(out / name, dpi=110)
        written.append(name)

    if ds.task == "regression":
        save(
            dg.plot_coverage({labels[k]: e.coverage_curve for k, e in evals.items()}),
            "coverage.png",
        )
        save(
            dg.plot_pit_ecdf(
                {labels[k]: e.pit for k, e in evals.items() if e.pit is not None}, alpha=dg.ALPHA
            ),
            "pit_ecdf.png",
        )
        grid_models = [r for r in run.results if r.grid_predictive is not None]
        if run.x_grid is not None and grid_models:
            n = len(grid_models)
            ncol = min(3, n)
            nrow = -(-n // ncol)
            fig = Figure(figsize=(4.6 * ncol, 3.4 * nrow), layout="constrained")
            x_grid = ds.unstandardize_x(run.x_grid)[:, 0]
            for i, r in enumerate(grid_models):
                ax = fig.add_subplot(nrow, ncol, i + 1)
                dg.plot_predictive_bands(
                    ds.unstandardize_x(ds.X_train),
                    ds.unstandardize_y(ds.y_train),
                    x_grid,
                    {r.label: _raw(r.grid_predictive, ds)},
                    x_test=ds.unstandardize_x(ds.X_test),
                    y_test=ds.unstandardize_y(ds.y_test),
                    gap=ds.extra.get("gap"),
                    ax=ax,
                )
                ax.set_title(r.label, fontsize="medium")
            save(fig, "bands.png")
    else:
        save(
            dg.plot_reliability({labels[k]: e.reliability for k, e in evals.items()}),
            "reliability.png",
        )
    return written


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
        "loo": _loo_table(run),
        "paired_nlpd": _paired_nlpd(evals, _rho(run)),
        **(extra or {}),
    }


def write_report(run: CalibrationRun, out: str | os.PathLike, *, extra: dict | None = None) -> dict:
    """Write ``report.md``, ``metrics.json``, the figures and one netCDF per model.

    Args:
        run: the fitted models.
        out: an existing directory (write into a temporary one and rename it into place
            to keep a failed run from leaving half a report).
        extra: more top-level entries for ``metrics.json`` (e.g. the command line).

    Returns:
        The summary written to ``metrics.json``.
    """
    out = Path(out)
    evals = evaluate(run)
    summary = build_summary(run, evals, extra)
    mode = 0o666 & ~current_umask()
    for res in run.results:
        path = dg.save_netcdf(for_file(res.idata), out / f"{res.name}.nc")
        path.chmod(mode)  # save_netcdf's temporary file is private; results should not be
    figures = _plots(run, evals, out) if run.results else []
    write_json(out / "metrics.json", summary)
    (out / "report.md").write_text(_markdown(run, summary, figures))
    return summary


def _markdown(run: CalibrationRun, summary: dict, figures: list[str]) -> str:
    ds, s = run.dataset, run.settings
    md = _escaped(summary, escape_markdown)  # the only text of the report from here on
    units = " Regression scores are in the target's raw units." if ds.task == "regression" else ""
    lines = [
        f"# ntk-bayes calibrate: {md['dataset']['name']}",
        "",
        f"{md['dataset']['description']}  ",
        f"{ds.task}, {ds.n_train} training / {ds.n_test} test points, inputs {ds.input_shape}.  ",
        f"Architecture {md['architecture']}; BNN width {s.width}; hyperparameters of the "
        f"exact GPs by {'NUTS' if s.hyper == 'nuts' else 'type-II maximum likelihood'}; "
        f"seed {s.seed}.  ",
        f"{len(run.splits)} random train/test split(s): every score is a mean ± standard "
        "error over them (Nadeau-Bengio corrected for overlapping splits).  ",
        f"Total fit time {summary['total_time_s']:.1f} s on {platform.machine()} "
        f"({platform.python_version()}, ntk_bayes {__version__}), {summary['created']}.",
        "",
        "## Held-out scores",
        "",
        markdown_table(summary),
        "",
        "NLPD, CRPS, NLL and Brier are proper scores (lower is better); `cov L` is the "
        "share of test targets inside the central L-interval (L if calibrated); MCE the "
        "mean |coverage - level| over 50/80/90/95%; `width 90` the mean 90% interval "
        "width (sharpness)." + units,
        "",
    ]
    lines += _verdicts(md, summary)
    lines += _paired_section(md)
    lines += _published_section(md, summary["dataset"]["name"])
    lines += _gap_section(md)
    lines += _loo_section(md)
    lines += _mcmc_section(run, md)
    lines += _hyper_section(md)
    if figures:
        lines += ["## Figures", ""]
        for f in figures:
            lines += [f"![{f[:-4]}]({f})", "", CAPTIONS.get(f, ""), ""]
    lines += [
        "## Files",
        "",
        "* `metrics.json`: every number above, one entry per model under `models`.",
    ]
    for m in md["models"].values():
        lines.append(
            f"* {m['netcdf']}: ArviZ data of {m['label']} (open with `arviz.from_netcdf`)."
        )
    lines.append("")
    return "\n".join(lines)


def _verdicts(summary: dict, raw: dict) -> list[str]:
    alpha = summary.get("alpha", dg.ALPHA)
    lines = [
        "## Calibration",
        "",
        f"Regression: joint tests on the held-out points of every split, which respect the "
        f"correlation of errors at nearby test points (bias of the GLS mean residual; "
        f"dispersion r'C^-1 r against chi-square; normality of the whitened residuals); "
        f"family-wise alpha = {alpha:g} over all tests and splits (Bonferroni). "
        "Classification: top-label confidence tests at the same alpha. A sampled model "
        f"whose sampler fails (split R-hat > {RHAT_MAX}, bulk ESS < {ESS_MIN} on predictive "
        "function values, or any divergence) gets no verdict: `not converged`.",
        "",
    ]
    for name, m in summary["models"].items():
        cal, st = m["calibration"], m.get("status")
        detail = ""
        if st is not None and not st["converged"]:
            detail = " — " + "; ".join(st["reasons"])
        elif cal and cal["flags"]:
            p = raw["models"][name]["calibration"]["pvalues"]  # keyed by the raw flags
            flags = zip(cal["flags"], raw["models"][name]["calibration"]["flags"], strict=True)
            detail = " — " + ", ".join(f"{f} (p={p[key]:.2g})" for f, key in flags)
        lines.append(f"* **{m['label']}** (`{name}`): {m['verdict']}{detail}")
    for name, err in summary["failures"].items():
        lines.append(f"* **{name}**: failed — {err}")
    return lines + [""]


def _paired_section(summary: dict) -> list[str]:
    rows = summary.get("paired_nlpd")
    if not rows:
        return []
    best = rows[0]["best"]
    lines = [
        "## Who is better, and by how much",
        "",
        f"Held-out NLPD (raw units) minus that of the best model "
        f"({best}), split by split: mean ± corrected standard error of the paired "
        "differences. A difference within about two standard errors is not resolved.",
        "",
        "| model | NLPD - best | se |",
        "|---|---:|---:|",
    ]
    for r in rows:
        se = "-" if not np.isfinite(r["se"]) else f"{r['se']:.3f}"
        lines.append(f"| {r['label']} | {r['nlpd_diff']:.3f} | {se} |")
    return lines + [""]


def _published_section(summary: dict, dataset: str) -> list[str]:
    from ._published import CITATIONS, PUBLISHED

    rows = PUBLISHED.get(dataset)
    if not rows:
        return []
    lines = [
        "## Beside published results",
        "",
        "Same protocol in the papers (20 random 90/10 splits, standardised on the training "
        f"part; here {summary['splits']} split(s)); raw units; NLPD is minus the mean test "
        "log-likelihood. The published networks have one hidden layer of 50 units; the "
        "numbers are transcribed from the papers' tables.",
        "",
        "| method | source | RMSE | NLPD |",
        "|---|---|---:|---:|",
    ]
    for method, src, (r, r_se), (n, n_se) in rows:
        lines.append(f"| {method} | {src} | {r:.2f} ± {r_se:.2f} | {n:.2f} ± {n_se:.2f} |")
    for m in summary["models"].values():
        met, se = m["metrics"], m.get("metrics_se") or {}
        r, n = met["rmse"], met["nlpd"]
        r_se, n_se = se.get("rmse", float("nan")), se.get("nlpd", float("nan"))
        lines.append(f"| {m['label']} | this run | {r:.2f} ± {r_se:.2f} | {n:.2f} ± {n_se:.2f} |")
    lines += [""] + [f"* {k}: {v}" for k, v in CITATIONS.items()]
    return lines + [""]


def _hyper_section(summary: dict) -> list[str]:
    lines = ["## Hyperparameters (split 1)", ""]
    for m in summary["models"].values():
        info = m.get("info") or {}
        if "hyperparameters" in info:
            vals = ", ".join(f"{k}={v:.3g}" for k, v in info["hyperparameters"].items())
            lines.append(
                f"* {m['label']}: {info.get('hyper', '')}: {vals}, noise_var="
                f"{info.get('noise_var', float('nan')):.3g}"
            )
        elif "posterior_5_50_95" in info:
            vals = ", ".join(
                f"{k} {q[1]:.3g} [{q[0]:.3g}, {q[2]:.3g}]"
                for k, q in info["posterior_5_50_95"].items()
            )
            lines.append(f"* {m['label']}: posterior median [5%, 95%]: {vals}")
        if "prior" in info:
            lines.append(f"  prior: {info['prior']}")
    return lines + [""] if len(lines) > 2 else []


def _gap_section(summary: dict) -> list[str]:
    rows = [(m["label"], m["gap"]) for m in summary["models"].values() if "gap" in m]
    if not rows:
        return []
    lines = [
        "## Uncertainty where there is no training data",
        "",
        "Mean predictive standard deviation (raw units) and 90% coverage on the test points "
        "inside the gap of the training inputs and outside it. A sound posterior is wider "
        "in the gap (ratio > 1).",
        "",
        "| model | std in gap | std outside | ratio | cov 90 gap | cov 90 outside |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, g in rows:
        lines.append(
            f"| {label} | {g['mean_std_gap']:.3f} | {g['mean_std_outside']:.3f} | "
            f"{g['std_ratio']:.2f} | {g['coverage_90_gap']:.2f} | {g['coverage_90_outside']:.2f} |"
        )
    return lines + [""]


def _loo_section(summary: dict) -> list[str]:
    rows = summary.get("loo")
    if not rows:
        return []
    lines = [
        "## Leave-one-out on the training data (split 1)",
        "",
        "Each model by the method right for it: exact GPs in closed form (Rasmussen & "
        "Williams eq. 5.12), the SGPR under its own marginal N(0, Q + noise I), sampled "
        "posteriors by PSIS with the largest Pareto k (above 0.7 PSIS is unreliable), "
        "models that are not posteriors not at all. Standardised units; `diff` is the "
        "best posterior's elpd minus this one's, with the standard error of the pointwise "
        "differences.",
        "",
        "| model | method | elpd | se | diff | se diff | max k | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]

    def f(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)

    for r in rows:
        lines.append(
            f"| {r['label']} | {r['method']} | {f(r['elpd'])} | {f(r['se'])} | "
            f"{f(r.get('elpd_diff'))} | {f(r.get('se_diff'))} | "
            f"{f(r['max_pareto_k'], '{:.2f}')} | {r['note']} |"
        )
    return lines + [""]


def _mcmc_section(run: CalibrationRun, summary: dict) -> list[str]:
    # the escaped entries in run.results' order (that of summary["models"])
    rows = [
        (r, m)
        for r, m in zip(run.results, summary["models"].values(), strict=True)
        if r.convergence
    ]
    if not rows:
        return []
    lines = [
        "## MCMC convergence",
        "",
        "Worst split R-hat, smallest bulk/tail ESS over the predictive function values at "
        "the test inputs (which weight-space symmetries do not spoil) and divergences, "
        f"over all splits. Converged: R-hat <= {RHAT_MAX}, bulk ESS >= {ESS_MIN}, no "
        "divergence.",
        "",
        "| model | max R-hat | min ESS bulk | min ESS tail | divergences | converged |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r, m in rows:
        c = m.get("status") or {**r.convergence, "divergences": 0, "converged": False}
        lines.append(
            f"| {m['label']} | {c['max_rhat']:.3f} | {c['min_ess_bulk']:.0f} | "
            f"{c['min_ess_tail']:.0f} | {c['divergences']} | "
            f"{'yes' if c['converged'] else 'no'} |"
        )
    for r, m in rows:
        rep = r.info.get("sampler_report")  # the sampler's own text, in a fence
        if rep:
            lines += ["", f"{m['label']}:", "", "~~~", rep.replace("~~~", "~ ~ ~"), "~~~"]
    return lines + [""]

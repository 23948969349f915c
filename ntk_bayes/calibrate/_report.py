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
import platform
from pathlib import Path

import numpy as np

from .. import __version__
from .. import diagnostics as dg
from .._io import current_umask, escape_markdown, write_json
from ._pipeline import CalibrationRun

__all__ = ["Evaluation", "evaluate", "write_report", "results_table", "markdown_table"]

CURVE_LEVELS = tuple(float(x) for x in np.round(np.linspace(0.05, 0.95, 19), 2))


@dataclasses.dataclass
class Evaluation:
    """Scores of one model: ``summary`` (JSON-ready) and the arrays behind the figures."""

    summary: dict
    pit: np.ndarray | None = None
    coverage_curve: dict | None = None
    reliability: dg.Reliability | None = None


def _verdict(check) -> str:
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
    return ", ".join(tags) or "miscalibrated (" + ", ".join(check.flags) + ")"


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


def _loo(res) -> dict | None:
    if not res.loo_ok:
        return None
    try:
        return dg.loo(res.idata)
    except Exception as e:  # PSIS can fail on degenerate draws; the report says so
        return {"error": f"{type(e).__name__}: {e}"}


def evaluate(run: CalibrationRun) -> dict[str, Evaluation]:
    """Score every model of ``run`` on its test split."""
    ds = run.dataset
    out = {}
    for res in run.results:
        base = {
            "label": res.label,
            "fit_time_s": res.fit_time,
            "info": res.info,
            "convergence": res.convergence,
            "loo": _loo(res),
            "netcdf": f"{res.name}.nc",
        }
        if res.task == "regression":
            pred, y = res.predictive, ds.y_test
            check = dg.calibration_check(y, pred) if len(y) >= 10 else None
            base["metrics"] = dg.regression_metrics(y, pred, scale=ds.y_std)
            gap = _gap_summary(ds, pred)
            if gap is not None:
                base["gap"] = gap
            ev = Evaluation(
                base,
                pit=dg.pit(y, pred),
                coverage_curve=dg.coverage(y, pred, CURVE_LEVELS),
            )
        else:
            y = ds.y_test
            check = dg.classification_check(y, res.probs) if len(y) >= 10 else None
            base["metrics"] = dg.classification_metrics(y, res.probs)
            rel = dg.reliability(y, res.probs)
            base["reliability"] = rel.as_dict()
            ev = Evaluation(base, reliability=rel)
        base["calibration"] = None if check is None else check.as_dict()
        base["verdict"] = _verdict(check)
        out[res.name] = ev
    return out


def _compare(run: CalibrationRun) -> list[dict] | None:
    models = {r.name: r.idata for r in run.results if r.loo_ok}
    if len(models) < 2:
        return None
    try:
        df = dg.compare(models)
    except Exception as e:
        return [{"error": f"{type(e).__name__}: {e}"}]
    rows = []
    for name, row in df.iterrows():
        rows.append({"model": str(name), **{k: _scalar(v) for k, v in row.items()}})
    return rows


def _scalar(v):
    if isinstance(v, bool | np.bool_):
        return bool(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


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
    task = summary["dataset"]["task"]
    cols = _columns(task)
    header = ["model"] + [c[0] for c in cols] + ["time (s)", "calibration"]
    rows = []
    for m in summary["models"].values():
        met = m["metrics"]
        rows.append(
            [m["label"]]
            + [fmt.format(met[key]) for _, key, fmt in cols]
            + [f"{m['fit_time_s']:.1f}", m["verdict"]]
        )
    for name, err in summary.get("failures", {}).items():
        rows.append([name] + ["-"] * len(cols) + ["-", f"FAILED: {err.splitlines()[0][:80]}"])
    return header, rows


def markdown_table(summary: dict) -> str:
    """The results as a Markdown table (one row per model)."""
    header, rows = _rows(summary)
    align = ["---"] + ["---:"] * (len(header) - 2) + ["---"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def results_table(summary: dict):
    """The results as a ``rich`` table for the terminal."""
    from rich.table import Table

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
        save(dg.plot_pit_ecdf({labels[k]: e.pit for k, e in evals.items()}), "pit_ecdf.png")
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
        "total_time_s": run.total_time,
        "models": {name: ev.summary for name, ev in evals.items()},
        "failures": dict(run.failures),
        "loo_compare": _compare(run),
        **(extra or {}),
    }


def write_report(run: CalibrationRun, out, *, extra: dict | None = None) -> dict:
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
        path = dg.save_netcdf(res.idata, out / f"{res.name}.nc")
        path.chmod(mode)  # save_netcdf's temporary file is private; results should not be
    figures = _plots(run, evals, out) if run.results else []
    write_json(out / "metrics.json", summary)
    (out / "report.md").write_text(_markdown(run, summary, figures))
    return summary


def _markdown(run: CalibrationRun, summary: dict, figures: list[str]) -> str:
    ds, s = run.dataset, run.settings
    units = " Regression scores are in the target's raw units." if ds.task == "regression" else ""
    lines = [
        f"# ntk-bayes calibrate: {escape_markdown(ds.name)}",
        "",
        f"{escape_markdown(ds.description)}  ",  # file and column names are untrusted
        f"{ds.task}, {ds.n_train} training / {ds.n_test} test points, inputs {ds.input_shape}.  ",
        f"Architecture {run.arch.describe()}; BNN width {s.width}; hyperparameters of the "
        f"exact GPs by {'NUTS' if s.hyper == 'nuts' else 'type-II maximum likelihood'}; "
        f"seed {s.seed}.  ",
        f"Total fit time {run.total_time:.1f} s on {platform.machine()} "
        f"({platform.python_version()}, ntk_bayes {__version__}), {summary['created']}.",
        "",
        "## Held-out scores",
        "",
        markdown_table(summary),
        "",
        "NLPD, CRPS, NLL and Brier are proper scores (lower is better); `cov L` is the "
        "share of test targets inside the central L-interval (L if calibrated); MCE the "
        "mean |coverage - level| over 50/80/90/95%; `width 90` the mean 90% interval "
        "width (sharpness)." + units + " Calibration: tests on PIT values and coverages "
        "(regression) or top-label confidence (classification) at alpha = 0.01.",
        "",
    ]
    lines += _verdicts(summary)
    lines += _gap_section(summary)
    lines += _loo_section(summary)
    lines += _mcmc_section(run, summary)
    if figures:
        lines += ["## Figures", ""] + [f"![{f[:-4]}]({f})" for f in figures] + [""]
    lines += [
        "## Files",
        "",
        "* `metrics.json`: every number above, one entry per model under `models`.",
    ]
    for res in run.results:
        lines.append(
            f"* `{res.name}.nc`: ArviZ data of {res.label} (`arviz.from_netcdf('{res.name}.nc')`)."
        )
    lines.append("")
    return "\n".join(lines)


def _verdicts(summary: dict) -> list[str]:
    lines = ["## Calibration", ""]
    for name, m in summary["models"].items():
        cal = m["calibration"]
        detail = ""
        if cal and cal["flags"]:
            detail = " — " + ", ".join(f"{f} (p={cal['pvalues'][f]:.2g})" for f in cal["flags"])
        lines.append(f"* **{m['label']}** (`{name}`): {m['verdict']}{detail}")
    for name, err in summary["failures"].items():
        lines.append(f"* **{name}**: failed — {err}")
    return lines + [""]


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
    rows = summary.get("loo_compare")
    if not rows:
        return []
    if "error" in rows[0]:
        return ["## PSIS-LOO comparison", "", f"not available: {rows[0]['error']}", ""]
    lines = [
        "## PSIS-LOO comparison (training data)",
        "",
        "`az.compare` on the pointwise log-likelihoods (standardised units); elpd_diff is "
        "the gap to the best model, warning marks Pareto k > 0.7. Only models whose draws "
        "are a posterior given the training data take part (not the GD ensemble).",
        "",
        "| model | rank | elpd | se | elpd_diff | dse | weight | warning |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {int(r['rank'])} | {r['elpd']:.1f} | {r['se']:.1f} | "
            f"{r['elpd_diff']:.1f} | {r['dse']:.1f} | {r['weight']:.2f} | {r['warning']} |"
        )
    return lines + [""]


def _mcmc_section(run: CalibrationRun, summary: dict) -> list[str]:
    rows = [r for r in run.results if r.convergence]
    if not rows:
        return []
    lines = [
        "## MCMC convergence",
        "",
        "Worst R-hat and smallest bulk/tail ESS (BNN: over the function values at the test "
        "inputs, which weight-space symmetries do not spoil).",
        "",
        "| model | max R-hat | min ESS bulk | min ESS tail |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        c = r.convergence
        lines.append(
            f"| {r.label} | {c['max_rhat']:.3f} | {c['min_ess_bulk']:.0f} | "
            f"{c['min_ess_tail']:.0f} |"
        )
    for r in rows:
        rep = r.info.get("sampler_report")
        if rep:
            lines += ["", f"{r.label}:", "", "```", rep, "```"]
    return lines + [""]

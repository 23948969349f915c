"""Rendering of a calibrate run: the results table (Markdown and terminal), the figures
and ``report.md``'s text. Scores come from :mod:`._scoring`, files are written by
:mod:`._files` (:func:`~._files.write_report`).

Regression figures are in the targets' raw units (the models work on standardised ones).
"""

from __future__ import annotations

import os
import platform
import re
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from .. import diagnostics as dg
from .._io import escape_markdown
from ._scoring import ESS_MIN, RHAT_MAX, not_converged_note

if TYPE_CHECKING:
    from ._pipeline import CalibrationRun

__all__ = ["CAPTIONS", "figures", "markdown", "results_table", "markdown_table"]

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


def _uneven_splits(summary: dict) -> bool:
    """Whether some model ran on fewer splits than the run had (``--sampled-splits``)."""
    total = summary.get("splits")
    return any(m.get("n_splits", total) != total for m in summary["models"].values())


def _rows(summary: dict):
    """Header and cells of the results table from an escaped summary (:func:`_escaped`);
    a ``splits`` column when the models ran on different numbers of splits."""
    task = summary["dataset"]["task"]
    cols = _columns(task)
    uneven = _uneven_splits(summary)
    header = ["model"] + [c[0] for c in cols] + (["splits"] if uneven else [])
    header += ["time (s)", "calibration"]
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
            + ([str(m["n_splits"])] if uneven else [])
            + [f"{m['fit_time_s']:.1f}", m["verdict"]]
        )
    for name, err in summary.get("failures", {}).items():
        blank = ["-"] * (len(cols) + uneven)
        rows.append([name] + blank + ["-", f"FAILED: {_clip(err, 80)}"])
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


# ---- figures and report.md -------------------------------------------------------------
def _raw(pred, ds):
    if isinstance(pred, dg.GaussianPredictive):
        return dg.GaussianPredictive(ds.unstandardize_y(pred.mean), ds.y_std * pred.std)
    sd = None if pred.noise_std is None else ds.y_std * pred.noise_std
    return dg.SamplePredictive(ds.unstandardize_y(pred.samples), sd)


def figures(run: CalibrationRun, evals: dict) -> dict:
    """The report's figures, ``{file name: matplotlib Figure}`` (none without results)."""
    from matplotlib.figure import Figure

    ds, written = run.dataset, {}
    labels = {r.name: r.label for r in run.results}
    if not run.results:
        return written

    def save(fig, name):
        written[name] = fig

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


def _load() -> str:
    """The 1-minute load average when the report is written (timings depend on it)."""
    try:
        return f", load average {os.getloadavg()[0]:.1f} at the end"
    except (AttributeError, OSError):  # not on every platform
        return ""


def markdown(run: CalibrationRun, summary: dict, figures: list[str]) -> str:
    """The text of ``report.md`` from the summary (read only through its escaped view)."""
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
        (
            f"{len(run.splits)} random train/test split(s): every score is a mean ± standard "
            "error over them (Nadeau-Bengio corrected for overlapping splits)."
            if len(run.splits) > 1
            else "1 random train/test split: the scores carry no split-to-split error "
            "(`--splits R` gives one); paired differences carry a standard error over the "
            "test points, optimistic since those are correlated."
        )
        + _sampled_note(md)
        + "  ",
        f"Total fit time {summary['total_time_s']:.1f} s on {platform.machine()} with "
        f"{os.cpu_count()} CPUs{_load()} ({platform.python_version()}, ntk_bayes "
        f"{__version__}), {summary['created']}.",
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


def _sampled_note(summary: dict) -> str:
    """The sentence saying which models ran on fewer splits (``--sampled-splits K``)."""
    k, total = summary["settings"].get("sampled_splits"), summary["splits"]
    if k is None or k >= total:
        return ""
    fewer = [
        f"{m['label']} ({m['n_splits']})"
        for m in summary["models"].values()
        if m["n_splits"] < total
    ]
    which = ", ".join(fewer) if fewer else "none of the models here"
    return (
        f" The sampled models ran on the first {k} of the {total} splits only "
        f"(`--sampled-splits {k}`, for their cost): {which}; their scores are over those "
        "splits, the other models' over all, and the `splits` column says which."
    )


def _verdicts(summary: dict, raw: dict) -> list[str]:
    alpha = summary.get("alpha", dg.ALPHA)
    lines = [
        "## Calibration",
        "",
        f"Regression: joint tests on the held-out points of every split, which respect the "
        f"correlation of errors at nearby test points (bias of the GLS mean residual; "
        f"interval width from the marginal standardised residuals, sum (r_i - b)^2 / C_ii "
        f"against its generalised chi-square null: over-/under-confident; the whole "
        f"covariance from r'C^-1 r against chi-square, two-sided: wrong joint covariance, "
        f"which a wrong correlation fails even at the right widths; normality of the "
        f"whitened residuals); family-wise alpha = {alpha:g} over the five tests and all "
        "splits (Bonferroni). Classification: top-label confidence and per-bin tests on "
        "every split, at the same family-wise alpha (Bonferroni over tests and splits). "
        "A sampled model "
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
    lines = ["## Who is better, and by how much", ""]
    best = rows[0]["best"]
    if best is None:
        lines += [
            "No model's sampler converged, so none is a trustworthy reference and no "
            "model is named best:",
            "",
        ]
        lines += [f"* {r['label']}: {r['note']}" for r in rows]
        return lines + [""]
    label = next((r["label"] for r in rows if r["model"] == best), best)
    one = any(r["se_over"] == "test points" for r in rows)
    lines += [
        f"Held-out NLPD (raw units) minus that of {label} (`{best}`), the lowest among "
        "the models whose inference converged (a sampler that failed its gate is listed, "
        "marked, and never the reference): "
        + (
            "mean ± corrected standard error of the per-split differences over the splits "
            "both models ran (`splits`)"
            if not one
            else "with one split, the mean ± standard error of the paired differences over "
            "the test points (`se over`), optimistic because test points share the "
            "training data and so are correlated; more splits (`--splits R`) give the "
            "split-to-split error"
        )
        + ". A difference within about two standard errors is not resolved.",
        "",
    ]
    others = [r for r in rows if r["model"] != best and not r["note"]]
    unresolved = [r["label"] for r in others if not r["resolved"]]
    if not others:
        lines += [f"{label} is the only converged model: it is compared with no other.", ""]
    elif unresolved:
        lines += [
            f"No model is named best: {label}'s lead over {', '.join(unresolved)} is within "
            "about two standard errors.",
            "",
        ]
    else:
        lines += [f"Best: {label}, ahead of every other converged model by more than two "
                  "standard errors.", ""]  # fmt: skip
    lines += [
        f"| model | NLPD - {label} | se | se over | splits | note |",
        "|---|---:|---:|---|---:|---|",
    ]
    for r in rows:
        missing = r["model"] == best or r["se"] is None or not np.isfinite(r["se"])
        se = "-" if missing else f"{r['se']:.3f}"
        lines.append(
            f"| {r['label']} | {r['nlpd_diff']:.3f} | {se} | {r['se_over']} | "
            f"{r['n_splits']} | {r['note']} |"
        )
    return lines + [""]


def _published_section(summary: dict, dataset: str) -> list[str]:
    from ._published import CITATIONS, ERROR_BARS, PROTOCOL_SPLITS, PUBLISHED

    rows = PUBLISHED.get(dataset)
    if not rows:
        return []
    lines = [
        "## Beside published results",
        "",
        "Same protocol in the papers (20 random 90/10 splits, standardised on the training "
        f"part; here {summary['splits']} split(s), and each of our rows says on how many "
        "splits that model ran); raw units; NLPD is minus the mean test "
        "log-likelihood. The published networks have one hidden layer of 50 units; their "
        "numbers are checked against the papers' tables (sources and table numbers in "
        "`ntk_bayes/calibrate/_published.py`), each ± as the paper prints it (kind below); "
        "ours is the corrected standard error over this run's splits.",
        "",
        "| method | source | splits | RMSE | NLPD |",
        "|---|---|---:|---:|---:|",
    ]
    for method, src, (r, r_se), (n, n_se) in rows:
        lines.append(f"| {method} | {src} | {PROTOCOL_SPLITS} | {_pm(r, r_se)} | {_pm(n, n_se)} |")
    for m in summary["models"].values():
        met, se = m["metrics"], m.get("metrics_se") or {}
        r_se, n_se = se.get("rmse"), se.get("nlpd")
        k = m.get("n_splits", summary["splits"])
        mark = not_converged_note(m.get("status"))
        lines.append(
            f"| {m['label']}{f' ({mark})' if mark else ''} | this run | {k} | "
            f"{_pm(met['rmse'], r_se)} | "
            f"{_pm(met['nlpd'], n_se)} |"
        )
    lines += [""] + [f"* {k}: {v} (± = {ERROR_BARS[k]})" for k, v in CITATIONS.items()]
    return lines + [""]


def _pm(value: float, err: float | None) -> str:
    """``value ± err`` at two decimals; the value alone where there is no error bar (one
    split: the standard error is NaN)."""
    if err is None or not np.isfinite(err):
        return f"{value:.2f}"
    return f"{value:.2f} ± {err:.2f}"


def _hyper_section(summary: dict) -> list[str]:
    lines = ["## Hyperparameters (split 1)", ""]
    for m in summary["models"].values():
        info = m.get("info") or {}
        if "hyperparameters" in info:
            vals = ", ".join(f"{k}={v:.3g}" for k, v in info["hyperparameters"].items())
            how = f"{info['hyper']}: " if info.get("hyper") else ""
            lines.append(
                f"* {m['label']}: {how}{vals}, noise_var={info.get('noise_var', float('nan')):.3g}"
            )
        elif "posterior_5_50_95" in info:
            vals = ", ".join(
                f"{k} {q[1]:.3g} [{q[0]:.3g}, {q[2]:.3g}]"
                for k, q in info["posterior_5_50_95"].items()
            )
            lines.append(f"* {m['label']}: posterior median [5%, 95%]: {vals}")
        if "inducing" in info:  # the SGPR's M and the rule (capped when asked for more)
            ratio = info.get("nystrom_residual_over_noise")
            tail = "" if ratio is None else f"; mean Nystrom residual / noise = {ratio:.3g}"
            lines.append(f"  inducing points: {info['inducing']}{tail}")
        if "prior" in info:
            lines.append(f"  prior: {info['prior']}")
    return lines + [""] if len(lines) > 2 else []


def _gap_section(summary: dict) -> list[str]:
    rows = [
        (m["label"] + (f" ({n})" if (n := not_converged_note(m.get("status"))) else ""), m["gap"])
        for m in summary["models"].values()
        if "gap" in m
    ]
    if not rows:
        return []
    lines = [
        "## Uncertainty where there is no training data",
        "",
        "Mean predictive standard deviation (raw units) and 90% coverage on the test points "
        "inside the gap of the training inputs and outside it, each a mean ± corrected "
        "standard error over the splits the model ran (`splits`; no ± with one split). A "
        "sound posterior is wider in the gap (ratio > 1).",
        "",
        "| model | std in gap | std outside | ratio | cov 90 gap | cov 90 outside | splits |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, g in rows:
        se = g.get("se") or {}

        def pm(key, fmt, g=g, se=se):
            v, e = fmt.format(g[key]), se.get(key)
            return v if e is None or not np.isfinite(e) else f"{v} ± {fmt.format(e)}"

        lines.append(
            f"| {label} | {pm('mean_std_gap', '{:.3f}')} | {pm('mean_std_outside', '{:.3f}')} | "
            f"{pm('std_ratio', '{:.2f}')} | {pm('coverage_90_gap', '{:.2f}')} | "
            f"{pm('coverage_90_outside', '{:.2f}')} | {g.get('n_splits', 1)} |"
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
        "posteriors by PSIS with the largest Pareto k (above min(1 - 1/log10 S, 0.7) for "
        "S draws, 0.7 from about 2,200, PSIS is unreliable); "
        "where PSIS fails, K-fold cross-validation (K refits, `--kfold K`; each refit "
        "sees (K-1)/K of the data, so it is slightly pessimistic next to LOO) or a note "
        "saying why it was not computed; models that are not posteriors not at all. "
        "Standardised units; `diff` is the "
        "best trusted posterior's elpd minus this one's, with the standard error of the "
        "pointwise differences; a sampler that did not converge, or whose PSIS has a "
        "Pareto k above that bound, is compared but never the reference, and its row says so.",
        "",
        "| model | method | elpd | se | diff | se diff | max k | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]

    def f(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)

    compared = [r for r in rows if r.get("elpd_diff") is not None]
    if not compared and any(r.get("status_note") or r.get("n_bad_k") for r in rows):
        lines[-2:-2] = [
            "No posterior's estimate can be trusted (samplers not converged or PSIS "
            "unreliable): no reference, no differences, no best.",
            "",
        ]
    for r in rows:
        note = "; ".join(x for x in (r.get("status_note"), r["note"]) if x)
        lines.append(
            f"| {r['label']} | {r['method']} | {f(r['elpd'])} | {f(r['se'])} | "
            f"{f(r.get('elpd_diff'))} | {f(r.get('se_diff'))} | "
            f"{f(r['max_pareto_k'], '{:.2f}')} | {note} |"
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
        f"over every split the model ran. Converged: R-hat <= {RHAT_MAX}, bulk ESS >= "
        f"{ESS_MIN}, no divergence.",
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

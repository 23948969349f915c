"""``ntk-bayes calibrate --study``: every embedded real regression dataset under the
standard protocol, one combined report.

Protocol (Hernández-Lobato & Adams 2015): R = 20 random 90/10 train/test splits per
dataset, inputs and targets standardised on the training part of each split, scores in
the target's raw units as mean ± Nadeau-Bengio corrected standard error over the
splits. The study writes one full ``calibrate`` report per dataset into a subdirectory
of its output and ``study.md`` / ``study.json`` with every dataset's table beside the
published results. ``radon`` is not part of it: it is a grouped (hierarchical) design
that the flat regression models here would ignore.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from .. import __version__
from .._io import escape_markdown, write_json
from ._archs import Architecture
from ._common import Settings
from ._pipeline import CalibrationRun, run_calibration

__all__ = ["STUDY_DATASETS", "STUDY_SPLITS", "STUDY_TEST_FRACTION", "Study", "run_study"]

#: the embedded real regression datasets of the study (not toy1d: synthetic)
STUDY_DATASETS = ("concrete", "boston", "boston_nob", "mcycle", "diabetes")
STUDY_SPLITS = 20
STUDY_TEST_FRACTION = 0.1


@dataclasses.dataclass
class Study:
    """The runs of a study, one per dataset, in order, and their wall-clock seconds."""

    runs: dict[str, CalibrationRun]
    seconds: dict[str, float]
    settings: Settings
    arch: Architecture


def run_study(
    arch: Architecture,
    settings: Settings,
    models: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    *,
    n_max: int | None = None,
    log: Callable[[str], None] | None = None,
    done: Collection[str] = (),
    on_dataset: Callable[[str, CalibrationRun, float], None] | None = None,
) -> Study:
    """Run :func:`run_calibration` on every dataset with ``settings.splits`` splits.

    Args:
        arch: the architecture of every model.
        settings: budgets; ``settings.splits`` is R (the protocol's 20 by default in
            the CLI).
        models: regression model names (default: all).
        datasets: embedded regression dataset names (default :data:`STUDY_DATASETS`).
        n_max: cap on the training split (tests; ``None`` for the protocol).
        log: progress, one line per step (the CLI's stderr display).
        done: datasets already finished by a stopped study (resumed): skipped.
        on_dataset: called with each dataset's name, run and seconds as soon as it
            finishes (the CLI writes its report then, so a stopped study keeps it).
    """
    from .. import datasets as dsets

    log = log or (lambda msg: None)
    datasets = STUDY_DATASETS if datasets is None else tuple(datasets)
    unknown = [d for d in datasets if d not in dsets.available()]
    if unknown:
        raise ValueError(f"unknown dataset(s) {', '.join(unknown)} for the study")
    runs, seconds = {}, {}
    for i, name in enumerate(datasets, 1):
        if name in done:
            log(f"== dataset {i}/{len(datasets)}: {name} finished by the stopped study, kept")
            continue
        ds = dsets.load(name, seed=settings.seed, test_fraction=STUDY_TEST_FRACTION, n_max=n_max)
        if ds.task != "regression":
            raise ValueError(f"the study is for regression data; {name} is {ds.task}")
        log(f"== dataset {i}/{len(datasets)}: {ds.summary()}, {settings.splits} split(s)")
        t0 = time.perf_counter()
        runs[name] = run_calibration(ds, arch, models, settings, log=log)
        seconds[name] = time.perf_counter() - t0
        log(f"== {name} done in {seconds[name]:.0f} s")
        if on_dataset is not None:
            on_dataset(name, runs[name], seconds[name])
    return Study(runs, seconds, settings, arch)


def write_dataset(
    run: CalibrationRun, directory: Path, name: str, seconds: float, *, extra: dict | None = None
) -> dict:
    """Write one dataset's ``calibrate`` report to ``directory/name`` whole or not at all
    (a temporary directory renamed into place), its seconds in ``metrics.json`` under
    ``study_seconds``; returns that summary."""
    from .._io import atomic_output_dir
    from ._files import write_report

    with atomic_output_dir(Path(directory) / name) as tmp:
        summary = write_report(run, tmp, extra={**(extra or {}), "study_seconds": seconds})
    return summary


def write_combined(
    per: dict[str, dict],
    seconds: dict[str, float],
    settings: Settings,
    arch: Architecture,
    out: Path,
    *,
    extra: dict | None = None,
) -> dict:
    """Write ``study.md`` and ``study.json`` into ``out`` from the datasets' summaries
    (``metrics.json`` of each, as written or as read back); returns the combined one."""
    out = Path(out)
    summary = {
        "command": "calibrate --study",
        "ntk_bayes_version": __version__,
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "protocol": f"{settings.splits} random {1 - STUDY_TEST_FRACTION:.0%}/"
        f"{STUDY_TEST_FRACTION:.0%} splits, standardised on the training part",
        "architecture": arch.describe(),
        "settings": settings.as_dict(),
        "seconds": seconds,
        "total_time_s": float(sum(seconds.values())),
        "datasets": {
            name: {
                "n_train": s["dataset"]["n_train"],
                "n_test": s["dataset"]["n_test"],
                "report": f"{name}/report.md",
                "models": {
                    k: {
                        "label": m["label"],
                        "metrics": m["metrics"],
                        "metrics_se": m["metrics_se"],
                        "verdict": m["verdict"],
                        "n_splits": m["n_splits"],
                    }
                    for k, m in s["models"].items()
                },
                "failures": s.get("failures", {}),
            }
            for name, s in per.items()
        },
        **(extra or {}),
    }
    write_json(out / "study.json", summary)
    (out / "study.md").write_text(_study_markdown(summary))
    return summary


def _study_markdown(summary: dict) -> str:
    from ._published import CITATIONS, ERROR_BARS, PROTOCOL_SPLITS, PUBLISHED

    esc = escape_markdown
    lines = [
        "# ntk-bayes calibrate --study",
        "",
        f"Protocol: {summary['protocol']}; every score is a mean ± standard error over the "
        "splits (Nadeau-Bengio corrected), in the target's raw units. Architecture "
        f"{esc(summary['architecture'])}. Total {summary['total_time_s']:.0f} s "
        f"(ntk_bayes {summary['ntk_bayes_version']}, {summary['created']}).",
        "",
    ]
    for name, d in summary["datasets"].items():
        secs = summary["seconds"][name]
        lines += [
            f"## {esc(name)}",
            "",
            f"{d['n_train']} training / {d['n_test']} test points per split; {secs:.0f} s; "
            f"full report: [{esc(d['report'])}]({esc(d['report'])}).",
            "",
            "| model | source | splits | RMSE | NLPD | cov 90 | calibration |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for method, src, (r, r_e), (n, n_e) in PUBLISHED.get(name, []):
            lines.append(
                f"| {method} | {src} | {PROTOCOL_SPLITS} | {r:.2f} ± {r_e:.2f} | "
                f"{n:.2f} ± {n_e:.2f} | | |"
            )
        for m in d["models"].values():
            met, se = m["metrics"], m["metrics_se"]

            def pm(key, met=met, se=se):
                e = se.get(key)
                tail = "" if e is None or e != e else f" ± {e:.2f}"  # NaN: one split
                return f"{met[key]:.2f}{tail}"

            lines.append(
                f"| {esc(m['label'])} | this study | {m['n_splits']} | {pm('rmse')} | "
                f"{pm('nlpd')} | {met['coverage_90']:.2f} | {esc(m['verdict'])} |"
            )
        for model, err in d["failures"].items():
            lines.append(f"| {esc(model)} | this study | - | - | - | - | FAILED: {esc(err[:80])} |")
        lines.append("")
    lines += ["## Sources", ""]
    lines += [f"* {k}: {v} (± = {ERROR_BARS[k]})" for k, v in CITATIONS.items()]
    lines.append("")
    return "\n".join(lines)

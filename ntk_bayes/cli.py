"""The ``ntk-bayes`` command.

Subcommands:

* ``calibrate``: fit the NNGP and NTK-GP, a sparse NNGP, the GD-trained ensemble and a
  finite BNN by NUTS on one train/test split; print a table of held-out calibration
  scores and write ``report.md``, ``metrics.json``, figures and one ArviZ netCDF file
  per model to ``--out``.
* ``width-sweep``: the finite BNN's posterior approaching the NNGP posterior as its
  width grows (table and plot of the distance).
* ``regimes``: lazy against rich training and finite-width NTK corrections.

Exit status: 0 success; 2 bad flags or data (``error: ...`` on stderr, nothing
written); 1 the computation failed (nothing written); 3 some models failed but the
report of the others was written; 130 interrupted (Ctrl-C) and 143 terminated (SIGTERM),
both saying on stderr that nothing was written. Results go to a temporary directory
renamed into place at the end. See ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import shutil
import sys
from pathlib import Path

# Only the standard library at module level: ``ntk-bayes --help`` and ``--version`` must
# not import JAX, NumPyro, Equinox or ArviZ (seconds); each command imports what it needs.

__all__ = ["main", "build_parser"]

_PROG = "ntk-bayes"
# datasets.available(), spelled out so that parsing imports no NumPy (a test keeps it equal)
_REGRESSION_EMBEDDED = ("toy1d", "concrete", "boston", "boston_nob", "mcycle", "diabetes")
_EMBEDDED = (*_REGRESSION_EMBEDDED, "breast_cancer", "digits")
# calibrate.REGRESSION_MODELS and CLASSIFICATION_MODELS, likewise
_REGRESSION_MODELS = ("nngp", "ntkgp", "sgpr", "ensemble", "ntkgp_ensemble", "bnn")
_CLASSIFICATION_MODELS = ("nngp", "ntkgp", "ensemble", "bnn")
_NONLINEARITIES = ("relu", "erf", "gelu", "tanh")
_OUT_HELP = "output directory (default: a new ntk_bayes_out/{kind}-NAME-YYYYmmdd-HHMMSS)"


def _nuts_default(key: str) -> str:
    """The BNN's NUTS default (``ntk_bayes.bnn.DEFAULT_NUTS``), which ``calibrate`` and
    ``width-sweep`` use unless a flag changes it (from ``ntk_bayes._defaults``, which
    imports no JAX, so the help stays instant)."""
    from ._defaults import DEFAULT_NUTS

    return str(DEFAULT_NUTS[key])


class UsageError(Exception):
    """A bad flag combination or unusable data: reported as ``error: ...``, exit 2."""


# ---- argument types --------------------------------------------------------------------
def _int_at_least(lo: int):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v

    parse.__name__ = f"integer >= {lo}"
    return parse


def _float_range(lo: float, *, strict: bool):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if v != v or v in (float("inf"), float("-inf")) or v < lo or (strict and v == lo):
            raise argparse.ArgumentTypeError(
                f"must be {'>' if strict else '>='} {lo:g}, got {text}"
            )
        return v

    return parse


def _fraction(text):
    v = _float_range(0.0, strict=True)(text)
    if v >= 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return v


def _widths(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if len(vals) < 2 or min(vals) < 1 or len(set(vals)) != len(vals):
        raise argparse.ArgumentTypeError(
            f"need at least two distinct positive widths, got {text!r}"
        )
    return sorted(vals)


def _arch(text):
    from .calibrate import parse_arch

    try:
        return parse_arch(text).name
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _names(text):
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated names")
    return names


def _models(text):
    return [m.lower() for m in _names(text)]


# ---- parser ----------------------------------------------------------------------------
def _add_parser(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    # allow_abbrev=False: `--model nngp` is an error, not a silent `--models nngp`
    return sub.add_parser(name, allow_abbrev=False, **kwargs)


def _output_flags(p, kind: str, *, quick_help: str) -> None:
    """Flags every command shares: where results go, and how much it says."""
    p.add_argument("--out", type=Path, help=_OUT_HELP.format(kind=kind))
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a non-empty --out, only if every file in it was written by an earlier "
        "ntk-bayes run (its manifest decides; anything else, and any input, is refused; "
        "default: refuse a non-empty --out)",
    )
    p.add_argument(
        "--seed", type=_int_at_least(0), default=0, help="PRNG seed (default: %(default)s)"
    )
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument(
        "--quiet", action="store_true", help="no progress on stderr (results still on stdout)"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the summary as one JSON object on stdout instead of a table",
    )


def _common_run_flags(p, kind: str, *, quick_help: str) -> None:
    p.add_argument(
        "--arch",
        type=_arch,
        help="NONLINEARITY-DEPTHxWIDTH with NONLINEARITY relu, erf or gelu "
        "(default: calibrate relu-2x512, width-sweep relu-1x512)",
    )
    p.add_argument(
        "--W-std",
        dest="W_std",
        type=_float_range(0.0, strict=True),
        help="initial weight std of every layer (default: the --arch preset's, 1.5)",
    )
    p.add_argument(
        "--b-std",
        dest="b_std",
        type=_float_range(0.0, strict=False),
        help="initial bias std of every layer (default: the --arch preset's, 0.5)",
    )
    # the defaults are the BNN's (ntk_bayes.bnn.DEFAULT_NUTS), for both commands
    for flag, lo, text in (
        ("--num-warmup", 1, "NUTS warmup steps per chain"),
        ("--num-samples", 2, "NUTS draws per chain"),
        ("--num-chains", 1, "NUTS chains"),
        ("--max-tree-depth", 1, "NUTS maximum tree depth"),
    ):
        default = _nuts_default(flag[2:].replace("-", "_"))
        p.add_argument(flag, type=_int_at_least(lo), help=f"{text} (default: {default})")
    p.add_argument(
        "--n-max",
        type=_int_at_least(4),
        help="cap the training split at N rows and the test split at max(N, 1000) rows "
        "(seeded subsamples, classes stratified; standardisation still uses the whole "
        "training split; the embedded datasets' test splits are all under 1000 rows; "
        "default: no cap)",
    )
    p.add_argument(
        "--test-fraction",
        type=_fraction,
        default=None,
        help="share of points held out (default: 0.1 for the UCI sets concrete, boston and "
        "boston_nob, their benchmark protocol; 0.25 otherwise)",
    )
    _output_flags(p, kind, quick_help=quick_help)
    p.add_argument(
        "--float32",
        action="store_true",
        help="compute in float32 (default: float64, which GP fits on small data need)",
    )


def _add_calibrate(sub) -> None:
    cal = _add_parser(
        sub,
        "calibrate",
        help="calibration of NNGP, NTK-GP, sparse GP, GD ensemble and a finite BNN",
        description="Fit infinite-width models and a finite BNN by NUTS on a train/test "
        "split; report held-out calibration (table, report.md, metrics.json, netCDF).",
    )
    data = cal.add_mutually_exclusive_group()
    data.add_argument(
        "--dataset", choices=_EMBEDDED, help="embedded dataset (default: toy1d unless --csv)"
    )
    data.add_argument("--csv", type=Path, help="a CSV file with a header row (default: none)")
    data.add_argument(
        "--study",
        action="store_true",
        help="every embedded real regression dataset (concrete, boston, boston_nob, mcycle, "
        "diabetes) by the UCI protocol: 20 random 90/10 splits (--splits changes R), one "
        "report per dataset and a combined study.md (hours: see docs/cli.md). Each "
        "dataset's report is kept in OUT.partial/ as soon as it finishes",
    )
    cal.add_argument(
        "--resume",
        action="store_true",
        help="--study: continue the stopped study whose finished datasets are in "
        "OUT.partial/ (same flags, --out OUT given), running only the datasets it lacks",
    )
    cal.add_argument(
        "--target", help="--csv: the column to predict (no default: required with --csv)"
    )
    cal.add_argument(
        "--features",
        type=_names,
        help="--csv: comma-separated input columns (default: every column but --target)",
    )
    cal.add_argument(
        "--task",
        choices=("auto", "regression", "classification"),
        default=None,
        help="--csv: target type (default: auto, classes for few-valued integer targets)",
    )
    cal.add_argument(
        "--drop-missing", action="store_true", help="--csv: drop rows with missing values"
    )
    cal.add_argument(
        "--models",
        type=_models,
        help=f"comma-separated subset of {','.join(_REGRESSION_MODELS)} "
        f"(classification: {','.join(_CLASSIFICATION_MODELS)}; default: all)",
    )
    cal.add_argument(
        "--width", type=_int_at_least(1), help="hidden width of the finite BNN (default: 16)"
    )
    cal.add_argument(
        "--hyper",
        choices=("ml", "nuts"),
        default="ml",
        help="exact GPs' hyperparameters: type-II ML or NUTS (default: %(default)s)",
    )
    cal.add_argument(
        "--inducing",
        type=_int_at_least(2),
        help="inducing points of sparse GPs, at most half the training points (default: "
        "the SGPR keeps the fewest, 32 to 512, whose mean Nystrom residual is under a "
        "tenth of the noise variance; the SVGP classifiers 32)",
    )
    cal.add_argument(
        "--splits",
        type=_int_at_least(1),
        help="random train/test splits R: every score is a mean ± standard error over them "
        "(default 1; the UCI protocol of --dataset concrete/boston is 20)",
    )
    cal.add_argument(
        "--sampled-splits",
        type=_int_at_least(1),
        metavar="K",
        help="run the sampled models (the finite BNN, and the exact GPs under --hyper nuts) "
        "on the first K of the --splits R only, every other model on all R; the report "
        "says per model on how many splits it ran and pairs models on the splits both ran "
        "(default: every model on every split)",
    )
    cal.add_argument(
        "--kfold",
        type=_int_at_least(2),
        help="K-fold LOO (K refits) for sampled models whose PSIS-LOO has a Pareto k above "
        "min(1 - 1/log10 S, 0.7) for S draws "
        "(default: off; the report says where PSIS failed and what K-fold would cost)",
    )
    _common_run_flags(cal, "calibrate", quick_help="tiny budgets for a smoke test")
    cal.set_defaults(func=_run_calibrate, parser=cal)


def _add_sweep(sub) -> None:
    sw = _add_parser(
        sub,
        "width-sweep",
        help="finite BNN posterior approaching the NNGP posterior as width grows",
        description="Fit the NNGP once, then the finite BNN of the same prior by NUTS at "
        "each width; table and plot of their distance against width.",
    )
    sw.add_argument(
        "--dataset",
        choices=_REGRESSION_EMBEDDED,
        default="toy1d",
        help="regression dataset (default: %(default)s)",
    )
    sw.add_argument(
        "--widths",
        type=_widths,
        help="comma-separated BNN widths (default: 4,16,64,256,512; --quick: 4,16)",
    )
    _common_run_flags(
        sw, "width-sweep", quick_help="widths 4,16 with tiny NUTS budgets (smoke test)"
    )
    sw.set_defaults(func=_run_sweep, parser=sw)


def _add_regimes(sub) -> None:
    p = _add_parser(
        sub,
        "regimes",
        help="lazy vs rich training and finite-width NTK corrections (plots + table)",
        description="Train wide MLPs in the NTK (lazy) and maximal-update (rich) scalings "
        "and measure how far their NTK moves, and measure the spread of the empirical NTK "
        "at initialisation around the analytic one, both against width.",
    )
    p.add_argument(
        "--widths",
        type=_widths,
        default=[64, 128, 256, 512],
        help="comma-separated widths (default: 64,128,256,512; --quick: 32,64,128)",
    )
    p.add_argument(
        "--nonlinearity",
        choices=_NONLINEARITIES,
        default="relu",
        help="activation of every hidden layer (default: %(default)s)",
    )
    positive, non_negative = _float_range(0.0, strict=True), _float_range(0.0, strict=False)
    for flag, kind, default, text, quick in (
        ("--depth", _int_at_least(1), 1, "hidden layers", ""),
        ("--W-std", positive, 1.5, "initial weight std", ""),
        ("--b-std", non_negative, 0.1, "initial bias std", ""),
        ("--n-train", _int_at_least(1), 16, "training points", ""),
        ("--input-dim", _int_at_least(1), 4, "input dimension of the synthetic data", ""),
        ("--steps", _int_at_least(1), 200, "gradient-descent steps", "30"),
        ("--seeds", _int_at_least(1), 2, "trainings per scaling and width", "1"),
        ("--init-seeds", _int_at_least(2), 16, "random networks per width for the "
         "finite-width spread", "4"),
    ):  # fmt: skip
        quick = f"; --quick: {quick}" if quick else ""
        p.add_argument(
            flag,
            dest=flag[2:].replace("-", "_"),
            type=kind,
            default=default,
            help=f"{text} (default: %(default)s{quick})",
        )
    _output_flags(p, "regimes", quick_help="tiny sizes for a smoke test")
    p.set_defaults(func=_run_regimes, parser=p)


def build_parser() -> argparse.ArgumentParser:
    """The ``ntk-bayes`` argument parser with its subcommands (imports nothing heavy)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=_PROG,
        allow_abbrev=False,
        description="Infinite-width networks (NNGP/NTK) as Bayesian models: calibration "
        "reports, finite-width comparisons and training regimes. Results go to stdout, "
        "progress and logs to stderr.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_calibrate(sub)
    _add_sweep(sub)
    _add_regimes(sub)
    return parser


# ---- helpers ---------------------------------------------------------------------------
def _default_out(kind: str, name: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("ntk_bayes_out") / f"{kind}-{name}-{stamp}"


def _settings(args, *, width=None, hyper="ml", inducing=None, sweep=False):
    from .calibrate import Settings, sweep_settings

    changes = {"seed": args.seed, "quiet": args.quiet, "hyper": hyper}
    for flag, field in (
        ("num_warmup", "num_warmup"),
        ("num_samples", "num_samples"),
        ("num_chains", "num_chains"),
        ("max_tree_depth", "max_tree_depth"),
    ):
        if getattr(args, flag) is not None:
            changes[field] = getattr(args, flag)
    if width is not None:
        changes["width"] = width
    if inducing is not None:
        changes["inducing"] = inducing
    try:
        if args.quick:
            return Settings.quick(**changes)
        return sweep_settings(**changes) if sweep else Settings(**changes)
    except ValueError as e:  # a flag's value: a usage error, before any work
        raise UsageError(str(e)) from None


def _load_data(args, *, allow_csv: bool):
    from . import datasets

    opts = dict(seed=args.seed, test_fraction=args.test_fraction, n_max=args.n_max)
    try:
        if allow_csv and args.csv is not None:
            if opts["test_fraction"] is None:
                opts["test_fraction"] = 0.25
            return datasets.load_csv(
                args.csv,
                args.target,
                features=args.features,
                task=args.task or "auto",
                drop_missing=args.drop_missing,
                **opts,
            )
        name = args.dataset or "toy1d"
        if name == "digits":  # the presets are fully connected: flatten the 8x8 images
            opts["flatten"] = True
        return datasets.load(name, **opts)
    except (ValueError, TypeError, FileNotFoundError, UnicodeDecodeError, OSError) as e:
        raise UsageError(str(e)) from None


def _check_out(args, kind: str, name: str) -> Path:
    from ._io import output_problem

    out = args.out if args.out is not None else _default_out(kind, name)
    problem = output_problem(out, args.force, inputs=[getattr(args, "csv", None)])
    if problem is not None:
        raise UsageError(problem)
    return out


def _console():
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=150)


@contextlib.contextmanager
def _progress_to_stderr():
    """Send whatever the computation prints (rich progress bars, NUTS reports) to stderr,
    so that stdout carries only the results."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _print_json(obj) -> None:
    from ._io import _finite

    print(json.dumps(_finite(obj), indent=2, default=str))


# ---- calibrate -------------------------------------------------------------------------
def _validate_calibrate(args) -> None:
    if args.csv is not None and not args.target:
        raise UsageError("--csv needs --target COLUMN (the column to predict)")
    if args.csv is None:
        for flag, given in (
            ("--target", args.target),
            ("--features", args.features),
            ("--task", args.task),
            ("--drop-missing", args.drop_missing),
        ):
            if given:
                raise UsageError(f"{flag} only applies with --csv FILE")


def _host_device_per_core() -> int:
    """Before JAX starts: make the CPU backend one XLA device per core (at most 16), so
    the BNN's vectorised NUTS chains split over the cores (``chain_method="sharded"``,
    docs/bnn.md); a kernel that is one tile still runs on one device. A device count the
    user set in ``XLA_FLAGS`` is kept, and the environment is restored once the backend
    has read it (subprocesses see what the user set). Returns the devices added (0 when
    JAX had started, the count was set, or there is one core)."""
    import jax

    try:
        from jax._src import xla_bridge

        started = xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):  # a JAX without it: leave the devices alone
        return 0
    flags = os.environ.get("XLA_FLAGS")
    if started or "xla_force_host_platform_device_count" in (flags or ""):
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    devices = min(cores or 1, 16)
    if devices < 2:
        return 0
    os.environ["XLA_FLAGS"] = f"{flags or ''} --xla_force_host_platform_device_count={devices}"
    try:
        jax.devices()  # the backends start and read the flag
    finally:
        if flags is None:
            del os.environ["XLA_FLAGS"]
        else:
            os.environ["XLA_FLAGS"] = flags
    return devices


def _run_calibrate(args) -> int:
    if args.study:
        _validate_calibrate(args)
        return _run_study(args)
    if args.resume:
        raise UsageError("--resume continues a stopped --study; add --study")
    import jax

    from ._io import atomic_output_dir, sigterm_as_exit
    from .calibrate import parse_arch, results_table, run_calibration, write_report
    from .calibrate._checks import KernelOverflowError
    from .calibrate._common import stderr_log
    from .calibrate._pipeline import check_models

    _validate_calibrate(args)
    name = args.csv.stem if args.csv is not None else (args.dataset or "toy1d")
    out = _check_out(args, "calibrate", name)
    arch = parse_arch(args.arch or "relu-2x512", args.W_std, args.b_std)
    log = stderr_log(args.quiet)
    with jax.enable_x64(not args.float32), sigterm_as_exit(), _progress_to_stderr():
        ds = _load_data(args, allow_csv=True)
        try:
            models = check_models(args.models, ds.task)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if args.hyper == "nuts" and ds.task != "regression":
            raise UsageError("--hyper nuts applies to the exact GPs of regression data")
        settings = _settings(args, width=args.width, hyper=args.hyper, inducing=args.inducing)
        settings = _with_splits_kfold(settings, args.splits, args.kfold, args.sampled_splits)
        log(f"{ds.summary()}; {arch.describe()}")
        try:
            run = run_calibration(ds, arch, models, settings, log=log)
        except KernelOverflowError as e:  # the flags or the data, not the computation
            raise UsageError(str(e)) from None
        except ValueError as e:
            if "sampled_splits" not in str(e):
                raise
            raise UsageError(str(e)) from None
        extra = {"argv": sys.argv[1:]}
        with atomic_output_dir(out, force=args.force) as tmp:
            summary = write_report(run, tmp, extra=extra)
    for m, err in run.failures.items():
        print(f"warning: model {m} failed: {err}", file=sys.stderr)
    report = out / "report.md"
    if args.json:
        keep = ("label", "metrics", "verdict", "fit_time_s")
        models = {k: {f: m.get(f) for f in keep} for k, m in summary["models"].items()}
        _print_json(
            {
                "command": "calibrate",
                "dataset": summary["dataset"],
                "models": models,
                "failures": summary.get("failures", {}),
                "report": str(report),
            }
        )
    else:
        _console().print(results_table(summary))
        print(f"report: {report}")
    return 3 if run.failures else 0


def _with_splits_kfold(settings, splits, kfold, sampled_splits=None):
    given = (("splits", splits), ("kfold", kfold), ("sampled_splits", sampled_splits))
    changes = {k: v for k, v in given if v is not None}
    try:
        return type(settings)(**{**settings.as_dict(), **changes}) if changes else settings
    except ValueError as e:  # a flag's value: a usage error, before any work
        raise UsageError(str(e)) from None


def _run_study(args) -> int:
    import jax

    from ._io import atomic_output_dir, sigterm_as_exit
    from .calibrate import _study, parse_arch
    from .calibrate._checks import KernelOverflowError
    from .calibrate._common import stderr_log
    from .calibrate._pipeline import check_models
    from .calibrate._study import STUDY_SPLITS, run_study

    if args.test_fraction is not None:
        raise UsageError("--study uses the protocol's 90/10 splits; drop --test-fraction")
    try:
        models = check_models(args.models, "regression")
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.resume and args.out is None:
        raise UsageError("--resume needs --out OUT, the output the stopped study was writing")
    out = _check_out(args, "calibrate", "study")
    arch = parse_arch(args.arch or "relu-2x512", args.W_std, args.b_std)
    log = stderr_log(args.quiet)
    extra = {"argv": sys.argv[1:]}
    with jax.enable_x64(not args.float32), sigterm_as_exit(), _progress_to_stderr():
        settings = _settings(args, width=args.width, hyper=args.hyper, inducing=args.inducing)
        splits = STUDY_SPLITS if args.splits is None else args.splits
        settings = _with_splits_kfold(settings, splits, args.kfold, args.sampled_splits)
        names = _study.STUDY_DATASETS
        partial = _study_partial(args, out, arch, settings, models, names)
        finished = lambda: [n for n in names if (partial / n / "metrics.json").is_file()]
        done = set(finished())
        keep = lambda name, run, secs: _study.write_dataset(run, partial, name, secs, extra=extra)
        try:
            run_study(arch, settings, models, n_max=args.n_max, log=log, done=done, on_dataset=keep)
        except BaseException as e:
            kept = finished()
            if kept:  # main() says so instead of "nothing was written"
                args.kept = f"{', '.join(kept)} kept in {partial}: add --resume to run the rest"
            elif not args.resume:
                shutil.rmtree(partial)  # made by this run, which finished no dataset
            if isinstance(e, KernelOverflowError) or (
                isinstance(e, ValueError) and "sampled_splits" in str(e)
            ):
                raise UsageError(str(e)) from None
            raise
        per = {n: json.loads((partial / n / "metrics.json").read_text()) for n in names}
        seconds = {n: float(per[n]["study_seconds"]) for n in names}
        with atomic_output_dir(out, force=args.force) as tmp:
            for n in names:  # copies: the partial reports stay until the whole study is in place
                shutil.copytree(partial / n, tmp / n)
            summary = _study.write_combined(per, seconds, settings, arch, tmp, extra=extra)
        shutil.rmtree(partial)
    failed = {d: v["failures"] for d, v in summary["datasets"].items() if v["failures"]}
    for d, fails in failed.items():
        for m, err in fails.items():
            print(f"warning: {d}: model {m} failed: {err}", file=sys.stderr)
    report = out / "study.md"
    if args.json:
        _print_json({**summary, "report": str(report)})
    else:
        for d, v in summary["datasets"].items():
            nlpd = (f"{k} {m['metrics']['nlpd']:.2f}" for k, m in v["models"].items())
            print(f"{d} NLPD: " + ", ".join(nlpd))
        print(f"report: {report}")
    return 3 if failed else 0


_STUDY_PROGRESS = "progress.json"


def _study_partial(args, out: Path, arch, settings, models, names) -> Path:
    """``OUT.partial/``, where each finished dataset's report is kept until the whole
    study is in place: made afresh (with the run's set-up in ``progress.json``), or with
    ``--resume`` the stopped study's, whose set-up must equal this one's."""
    from ._io import write_json

    partial = out.with_name(out.name + ".partial")
    setup = json.loads(
        json.dumps(
            {
                "datasets": list(names),
                "models": None if models is None else list(models),
                "architecture": arch.describe(),
                # what changes the results (not ``quiet``: a resume may be quieter)
                "settings": {k: v for k, v in settings.as_dict().items() if k != "quiet"},
                "n_max": args.n_max,
                "float32": bool(args.float32),
            },
            default=str,
        )
    )
    if not args.resume:
        if partial.exists():
            raise UsageError(
                f"{partial} holds the finished datasets of a stopped study: add --resume to "
                "continue it with the same flags, or move it away to start afresh"
            )
        partial.mkdir(parents=True)
        write_json(partial / _STUDY_PROGRESS, setup)
        return partial
    try:
        before = json.loads((partial / _STUDY_PROGRESS).read_text())
    except (OSError, ValueError):
        raise UsageError(
            f"--resume: no stopped study at {partial} (its {_STUDY_PROGRESS} is missing or "
            "unreadable); run without --resume to start one"
        ) from None
    changed = [k for k in setup if before.get(k) != setup[k]]
    if changed:
        raise UsageError(
            f"--resume: the stopped study in {partial} ran with other {', '.join(changed)}; "
            "give the same flags it was started with, or start afresh with another --out"
        )
    return partial


# ---- width-sweep -----------------------------------------------------------------------
def _run_sweep(args) -> int:
    import jax

    from ._io import atomic_output_dir, sigterm_as_exit, write_json
    from .calibrate import DEFAULT_WIDTHS, parse_arch, sweep_figures, sweep_markdown, width_sweep
    from .calibrate._checks import KernelOverflowError
    from .calibrate._common import stderr_log

    out = _check_out(args, "width-sweep", args.dataset)
    arch = parse_arch(args.arch or "relu-1x512", args.W_std, args.b_std)
    widths = args.widths or ([4, 16] if args.quick else list(DEFAULT_WIDTHS))
    log = stderr_log(args.quiet)
    with jax.enable_x64(not args.float32), sigterm_as_exit(), _progress_to_stderr():
        ds = _load_data(args, allow_csv=False)
        settings = _settings(args, sweep=True)
        log(f"{ds.summary()}; {arch.describe()}; widths {widths}")
        try:
            sweep = width_sweep(ds, arch, widths, settings, log=log)
        except KernelOverflowError as e:
            raise UsageError(str(e)) from None
        report = sweep_markdown(sweep)
        with atomic_output_dir(out, force=args.force) as tmp:
            for fname, fig in sweep_figures(sweep).items():
                fig.savefig(tmp / fname, dpi=110)
            write_json(tmp / "metrics.json", {**sweep.summary(), "argv": sys.argv[1:]})
            (tmp / "report.md").write_text(report)
    if args.json:
        _print_json({"command": "width-sweep", **sweep.summary(), "report": str(out / "report.md")})
    else:
        _console().print(_sweep_table(sweep))
        print(f"report: {out / 'report.md'}")
    return 0


def _sweep_table(sweep):
    from rich.table import Table

    t = Table(title=f"ntk-bayes width-sweep: {sweep.dataset.name} (distance to the NNGP)")
    for h in ("width", "|Δ mean|", "|Δ log var|", "W2", "max R-hat", "converged", "time (s)"):
        t.add_column(h, justify="right")
    for r in sweep.rows:
        # a width whose sampler did not converge has distances that measure nothing yet
        ok = bool(r.get("converged", True))
        t.add_row(
            str(r["width"]),
            f"{r['mean_abs_diff_mean']:.4f}",
            f"{r['mean_abs_diff_log_var']:.4f}",
            f"{r['w2']:.4f}",
            f"{r['max_rhat']:.3f}",
            "yes" if ok else "NO: not trusted",
            f"{r['time_s']:.1f}",
        )
    f = sweep.floor
    t.add_row(
        "floor",
        f"{f['mean_abs_diff_mean']:.4f}",
        f"{f['mean_abs_diff_log_var']:.4f}",
        f"{f['w2']:.4f}",
        "",
        "",
        "",
    )
    return t


# ---- regimes ---------------------------------------------------------------------------
def _run_regimes(args) -> int:
    from .theory._cli import run_regimes

    args.out = _check_out(args, "regimes", args.nonlinearity)
    # run_regimes prints its Markdown tables to stdout; with --json only the JSON goes there
    target = sys.stdout
    if args.json:
        target = io.StringIO() if args.quiet else sys.stderr
    with contextlib.redirect_stdout(target):
        code = run_regimes(args)
    if code == 0 and args.json:
        summary = json.loads((args.out / "summary.json").read_text())
        _print_json({"command": "regimes", **summary, "report": str(args.out / "regimes.md")})
    return code


# ---- entry point -----------------------------------------------------------------------
def main(argv=None) -> int:
    """Run the ``ntk-bayes`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    sub = getattr(args, "parser", parser)
    from ._native_log import drop_native_lines  # the standard library only

    with contextlib.ExitStack() as stack:
        if argv is None:  # the process is this command: its descriptor 2 is ours to route
            stack.enter_context(drop_native_lines())
        return _main(args, sub, argv)


def _main(args, sub, argv) -> int:
    from ._io import Terminated, sigterm_as_exit  # the standard library only

    try:
        with sigterm_as_exit():  # from the start: a SIGTERM while JAX imports is reported too
            if argv is None and getattr(args, "func", None) in (_run_calibrate, _run_sweep):
                # the process is this command (not a caller's Python session): its NUTS
                # chains may have the cores
                _host_device_per_core()
            return int(args.func(args))
    except UsageError as e:
        sub.print_usage(sys.stderr)
        print(f"{sub.prog}: error: {e}", file=sys.stderr)
        return 2
    except FileExistsError as e:  # --out appeared while the run computed
        print(f"{sub.prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{sub.prog}: interrupted; {_written(args)}", file=sys.stderr)
        return 130
    except Terminated as e:  # SIGTERM: the same cleanup and the same report as Ctrl-C
        print(f"{sub.prog}: terminated (SIGTERM); {_written(args)}", file=sys.stderr)
        return int(e.code)
    except (FloatingPointError, ValueError) as e:
        print(f"{sub.prog}: error: {type(e).__name__}: {e}; {_written(args)}", file=sys.stderr)
        return 1


def _written(args) -> str:
    """What a stopped run left: nothing, or a stopped study's finished datasets."""
    kept = getattr(args, "kept", None)
    return "nothing was written" if kept is None else f"nothing else was written; {kept}"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

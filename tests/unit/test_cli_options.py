"""The ``ntk-bayes`` command without fitting anything: the defaults its help states, the
upfront check of ``--out``, and what SIGTERM reports."""

import argparse
import os
import signal
from pathlib import Path

import pytest

import ntk_bayes.calibrate as calibrate_pkg
from ntk_bayes import _io, bnn, cli


def _subparser(name):
    for action in cli.build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise AssertionError("no subcommands")


# ---- the NUTS defaults the help states are the ones a run uses ---------------------------
def test_nuts_defaults_are_one_object_and_importing_the_cli_needs_no_jax():
    import subprocess
    import sys

    from ntk_bayes import _defaults

    assert bnn.DEFAULT_NUTS is _defaults.DEFAULT_NUTS
    code = "import sys, ntk_bayes.cli as c; c.build_parser(); print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # --help stays instant


@pytest.mark.parametrize("command", ["calibrate", "width-sweep"])
def test_help_shows_the_nuts_defaults_a_run_uses(command):
    used = calibrate_pkg.Settings() if command == "calibrate" else calibrate_pkg.sweep_settings()
    helps = {flag: a.help for a in _subparser(command)._actions for flag in a.option_strings}
    for flag in ("--num-warmup", "--num-samples", "--num-chains", "--max-tree-depth"):
        value = getattr(used, flag[2:].replace("-", "_"))
        assert helps[flag].endswith(f"(default: {value})"), (flag, helps[flag])
    text = _subparser(command).format_help()
    assert f"(default: {used.num_warmup})" in " ".join(text.split())


# ---- a long --out is refused before any work ------------------------------------------
def _no_fit(*args, **kwargs):  # pragma: no cover - reached only if the check failed
    raise AssertionError("the run fitted models although --out was unusable")


@pytest.mark.parametrize("length", [250, 300])
def test_a_name_too_long_with_its_temporary_suffix_is_a_usage_error(
    length, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    out = Path("y" * length)
    problem = _io.output_problem(out, False)
    assert problem is not None and problem.startswith("--out ") and "255" in problem
    args = argparse.Namespace(out=out, force=False, csv=None)
    with pytest.raises(cli.UsageError, match="--out .*choose"):
        cli._check_out(args, "calibrate", "toy1d")
    monkeypatch.setattr(calibrate_pkg, "run_calibration", _no_fit)
    argv = ["calibrate", "--quick", "--quiet", "--models", "nngp", "--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "error: --out" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # the probe left nothing


def test_the_longest_usable_name_passes_and_probes_its_real_temporary(tmp_path, monkeypatch):
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    extra = len(_io._temp_prefix(Path("x"))) - 1 + _io._TEMP_RANDOM
    made = []
    real = _io.tempfile.mkdtemp

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(_io.tempfile, "mkdtemp", spy)
    assert _io.output_problem(tmp_path / ("y" * (name_max - extra)), False) is None
    assert _io.output_problem(tmp_path / ("y" * (name_max - extra + 1)), False) is not None
    assert len(Path(made[0]).name) == name_max  # the very name atomic_output_dir will use
    assert list(tmp_path.iterdir()) == []


def test_missing_parents_with_long_names_and_too_deep_paths_are_refused(tmp_path):
    assert "--out" in _io.output_problem(tmp_path / ("p" * 300) / "run", False)
    deep = tmp_path.joinpath(*["d" * 200] * 25, "run")  # 5000 bytes > PATH_MAX
    assert "--out" in _io.output_problem(deep, False)
    assert list(tmp_path.iterdir()) == []


# ---- SIGTERM says what Ctrl-C says -----------------------------------------------------
def test_sigterm_reports_that_nothing_was_written(tmp_path, monkeypatch, capsys):
    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the run")  # pragma: no cover

    monkeypatch.setattr(calibrate_pkg, "run_calibration", terminated)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "sub" / "res"
    argv = ["calibrate", "--quick", "--quiet", "--models", "nngp", "--out", str(out)]
    assert cli.main(argv) == 143
    assert "terminated (SIGTERM); nothing was written" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back


def test_the_sweep_table_marks_widths_whose_sampler_did_not_converge():
    import io
    import types

    from rich.console import Console

    row = dict(mean_abs_diff_mean=0.1, mean_abs_diff_log_var=0.2, w2=0.3, time_s=1.0)
    sweep = types.SimpleNamespace(
        dataset=types.SimpleNamespace(name="toy1d"),
        rows=[
            dict(row, width=4, max_rhat=2.008, converged=False),
            dict(row, width=64, max_rhat=1.004, converged=True),
        ],
        floor=dict(mean_abs_diff_mean=0.0, mean_abs_diff_log_var=0.0, w2=0.0),
    )
    buf = io.StringIO()
    Console(file=buf, width=200).print(cli._sweep_table(sweep))
    lines = {ln.split()[1]: ln for ln in buf.getvalue().splitlines() if ln.split()[1:2]}
    assert "NO: not trusted" in lines["4"] and "yes" in lines["64"]

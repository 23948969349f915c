"""The ``ntk-bayes`` command end to end: outputs, refusal to overwrite, atomicity, errors.

Fast tests fit only cheap models (``--quick``); the full model set, the BNN by NUTS,
``--hyper nuts`` and ``width-sweep`` are marked slow (NUTS compilation alone takes
20-40 s on a shared 2-core CPU).
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from _cli_helpers import file_tree, idata_group, open_idata

import ntk_bayes
import ntk_bayes.calibrate as calibrate_pkg
from ntk_bayes import cli
from ntk_bayes import diagnostics as dg

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick calibrate run (cheap models) shared by the tests below; also captures
    the fitted run so other tests can re-write it without fitting again."""
    root = tmp_path_factory.mktemp("cli")
    out = root / "res"
    captured = {}
    real = calibrate_pkg.run_calibration

    def spy(*args, **kwargs):
        captured["run"] = real(*args, **kwargs)
        return captured["run"]

    mp = pytest.MonkeyPatch()
    mp.setattr(calibrate_pkg, "run_calibration", spy)
    try:
        code = cli.main(
            ["calibrate", "--quick", "--quiet", "--models", "nngp,sgpr", "--out", str(out)]
        )
    finally:
        mp.undo()
    return code, out, captured["run"]


def test_calibrate_writes_a_complete_report(quick_run, capsys):
    code, out, run = quick_run
    assert code == 0
    assert file_tree(out.parent) == ["res"] + [f"res/{n}" for n in file_tree(out)]  # no temp dirs
    assert {f for f in file_tree(out) if not f.startswith(".ntk-bayes")} == {
        "report.md", "metrics.json", "coverage.png", "pit_ecdf.png", "bands.png",
        "nngp.nc", "sgpr.nc",
    }  # fmt: skip
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["models"]) == ["nngp", "sgpr"]
    assert m["dataset"]["name"] == "toy1d" and m["settings"]["seed"] == 0
    for name, entry in m["models"].items():
        met = entry["metrics"]
        assert met["n"] == m["dataset"]["n_test"]
        assert np.isfinite([met["rmse"], met["nlpd"], met["crps"]]).all()
        assert 0 <= met["coverage_90"] <= 1 and entry["fit_time_s"] > 0
        assert entry["verdict"] and entry["gap"]["std_ratio"] > 1  # wider where no data
        idata = open_idata(out / entry["netcdf"])
        # ML-II fits store no fake posterior draws: the predictive and the data only
        assert {"posterior_predictive", "observed_data"} <= set(
            idata.children if dg.ARVIZ_1 else idata.groups()
        )
        obs = idata_group(idata, "observed_data")
        np.testing.assert_allclose(obs["y_test"].values, run.dataset.y_test, rtol=1e-6)
        assert idata.attrs["model"] == name
    report = (out / "report.md").read_text()
    # every string of the report is escaped, labels too (renders as "NNGP (exact GP)")
    assert "| NNGP \\(exact GP\\) |" in report and "![bands](bands.png)" in report


def test_calibrate_refuses_to_overwrite_and_force_replaces(
    quick_run, tmp_path, monkeypatch, capsys
):
    _, _, run = quick_run
    monkeypatch.setattr(calibrate_pkg, "run_calibration", lambda *a, **k: run)
    out = tmp_path / "res"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = ["calibrate", "--quick", "--quiet", "--models", "nngp,sgpr", "--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "--force" in err
    assert file_tree(tmp_path) == ["res", "res/keep.txt"]
    assert cli.main(argv + ["--force"]) == 2  # keep.txt is not ntk-bayes's: never deleted
    assert "ntk-bayes's own results" in capsys.readouterr().err
    assert file_tree(tmp_path) == ["res", "res/keep.txt"]
    (out / "keep.txt").unlink()
    assert cli.main(argv) == 0
    report = (out / "report.md").read_bytes()
    (out / "report.md").write_text("stale")
    assert cli.main(argv + ["--force"]) == 2  # a changed file is no longer ntk-bayes's
    (out / "report.md").write_bytes(report)
    assert cli.main(argv + ["--force"]) == 0  # its own unchanged results are replaced
    assert "report.md" in file_tree(out)
    assert [p.name for p in tmp_path.iterdir()] == ["res"]
    captured = capsys.readouterr()
    assert "report:" in captured.out and "RMSE" in captured.out  # the table went to stdout


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt(), "SIGTERM"])
def test_failure_while_writing_leaves_nothing(quick_run, tmp_path, monkeypatch, capsys, exc):
    _, _, run = quick_run
    monkeypatch.setattr(calibrate_pkg, "run_calibration", lambda *a, **k: run)
    real = calibrate_pkg.write_report

    def failing(run, out, **kw):
        real(run, out, **kw)  # everything written, then the failure
        if exc == "SIGTERM":
            os.kill(os.getpid(), signal.SIGTERM)
        raise exc

    monkeypatch.setattr(calibrate_pkg, "write_report", failing)
    out = tmp_path / "sub" / "res"
    argv = ["calibrate", "--quick", "--quiet", "--out", str(out)]
    if exc == "SIGTERM":  # the same cleanup and the same message as Ctrl-C
        assert cli.main(argv) == 143
        assert "terminated (SIGTERM); nothing was written" in capsys.readouterr().err
    elif isinstance(exc, KeyboardInterrupt):
        assert cli.main(argv) == 130
        assert "nothing was written" in capsys.readouterr().err
    else:
        with pytest.raises(RuntimeError, match="disk on fire"):
            cli.main(argv)
    assert list(tmp_path.iterdir()) == []


def test_failure_during_a_forced_rewrite_keeps_the_old_report(quick_run, monkeypatch):
    _, out, run = quick_run
    before = {p: (out / p).read_bytes() for p in file_tree(out)}
    monkeypatch.setattr(calibrate_pkg, "run_calibration", lambda *a, **k: run)

    def failing(run, tmp, **kw):
        (tmp / "report.md").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(calibrate_pkg, "write_report", failing)
    argv = ["calibrate", "--quick", "--quiet", "--force", "--out", str(out)]
    assert cli.main(argv) == 130
    assert {p: (out / p).read_bytes() for p in file_tree(out)} == before
    assert file_tree(out.parent) == ["res"] + [f"res/{n}" for n in file_tree(out)]


# ---- bad CSV files and bad flags: clear errors, nothing written -------------------------
def _csv(tmp_path, text, name="data.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


_GOOD_ROWS = "".join(f"{i},{i % 3},{2 * i + 1}\n" for i in range(12))


@pytest.mark.parametrize(
    "content, target, message",
    [
        ("a,b,y\n" + _GOOD_ROWS, "z", "target column 'z' is not in"),
        ("a,b,y\n" + _GOOD_ROWS + "1,abc,3\n", "y", "non-numeric"),
        ("a,b,y\n" + _GOOD_ROWS + "1,nan,3\n2,,4\n", "y", "missing values"),
        ("", "y", "is empty"),
        ("a,b,y\n", "y", "no data rows"),
        ("a,b,y\n1,2\n" + _GOOD_ROWS, "y", "do not have 3 fields"),
    ],
    ids=["missing-column", "non-numeric", "nan-rows", "empty", "header-only", "ragged"],
)
def test_bad_csv_gives_a_clear_error_and_writes_nothing(tmp_path, capsys, content, target, message):
    path = _csv(tmp_path, content)
    out = tmp_path / "out"
    code = cli.main(["calibrate", "--csv", str(path), "--target", target, "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err
    assert file_tree(tmp_path) == ["data.csv"]


def test_calibrate_on_a_csv_file_dropping_missing_rows(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=40), rng.normal(size=40)
    y = np.sin(x1) + 0.5 * x2 + 0.1 * rng.normal(size=40)
    cols = zip(x1, x2, y, strict=True)
    rows = [f"{a:.5f},{b:.5f},{c:.5f},id{i}" for i, (a, b, c) in enumerate(cols)]
    rows[3] = "NA,0.1,0.2,id3"
    path = _csv(tmp_path, "u,v,target,name\n" + "\n".join(rows) + "\n", name="mine.csv")
    out = tmp_path / "out"
    argv = ["calibrate", "--csv", str(path), "--target", "target", "--drop-missing"]
    argv += ["--features", "u,v"]  # the text column `name` left out
    assert cli.main([*argv, "--models", "nngp", "--quick", "--quiet", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"]["name"] == "mine" and m["dataset"]["task"] == "regression"
    assert m["dataset"]["n_train"] + m["dataset"]["n_test"] == 39  # the NA row dropped
    assert list(m["models"]) == ["nngp"] and "bands.png" not in file_tree(out)  # 2-D inputs
    assert m["models"]["nngp"]["metrics"]["rmse"] < np.std(y)  # it learned something


def test_missing_csv_file(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["calibrate", "--csv", str(tmp_path / "no.csv"), "--target", "y",
                     "--out", str(out)]) == 2  # fmt: skip
    assert "does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--csv", "x.csv"], "--csv needs --target"),
        (["--target", "y"], "--target only applies with --csv"),
        (["--task", "regression"], "--task only applies with --csv"),
        (["--models", "nngp,magic"], "unknown model(s) magic"),
        (["--models", "nngp,nngp"], "given twice"),
        (["--dataset", "breast_cancer", "--models", "sgpr"], "unknown model(s) sgpr"),
        (["--dataset", "breast_cancer", "--hyper", "nuts"], "--hyper nuts applies"),
    ],
)
def test_bad_flag_combinations(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert cli.main(["calibrate", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "usage:" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["calibrate", "--width", "0"],
        ["calibrate", "--arch", "tanh-2x8"],
        ["calibrate", "--seed", "-1"],
        ["calibrate", "--dataset", "mnist"],
        ["calibrate", "--dataset", "toy1d", "--csv", "a.csv"],
        ["calibrate", "--hyper", "mcmc"],
        ["calibrate", "--W-std", "0"],
        ["calibrate", "--test-fraction", "1.5"],
        ["calibrate", "--num-samples", "1"],
        ["width-sweep", "--widths", "4"],
        ["width-sweep", "--widths", "4,x"],
        ["width-sweep", "--dataset", "breast_cancer"],
        ["frobnicate"],
        [],
    ],
)
def test_bad_flags_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_out_must_be_a_directory(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.main(["calibrate", "--out", str(f), "--force"]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert cli.main(["width-sweep", "--out", str(f)]) == 2
    assert f.read_text() == "x"


def test_regimes_is_wired(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.main(["regimes", "--out", str(f), "--force"]) == 2
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"ntk-bayes {ntk_bayes.__version__}"


# ---- behaving like a command: fast help, no abbreviations, streams, --json, --out ------
_HEAVY = ("jax", "jaxlib", "numpyro", "equinox", "arviz", "numpy", "scipy", "matplotlib", "rich")


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_nothing_heavy(flag):
    """The command's start-up cost is Python's own: no array library is imported before
    argparse answers (timing is reported, not asserted: it depends on the machine's load)."""
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "from ntk_bayes.cli import main\n"
        "try:\n"
        f"    main([{flag!r}])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        f"heavy = sorted(m for m in {_HEAVY!r} if m in sys.modules)\n"
        "print('RESULT', heavy, time.perf_counter() - t, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("RESULT")][0]
    assert line.startswith("RESULT []"), line
    if flag == "--help":
        assert "calibrate" in proc.stdout and "width-sweep" in proc.stdout
        assert "regimes" in proc.stdout


def test_subcommand_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from ntk_bayes.cli import build_parser\n"
        "p = build_parser()\n"
        "for c in ('calibrate', 'width-sweep', 'regimes'):\n"
        "    p.parse_args([c])\n"
        f"print(sorted(m for m in {_HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "argv",
    [
        ["calibrate", "--model", "nngp"],
        ["calibrate", "--data", "toy1d"],
        ["width-sweep", "--width", "4,16"],
        ["regimes", "--init", "4"],
        ["--vers"],
    ],
)
def test_no_prefix_abbreviations(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    captured = capsys.readouterr()
    assert "error:" in captured.err and captured.out == ""  # `--vers` is not --version


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_every_flag_has_help_and_states_its_default():
    parser = cli.build_parser()
    commands = _subparsers(parser)
    assert set(commands) == {"calibrate", "width-sweep", "regimes"}
    for name, sub in commands.items():
        assert sub.allow_abbrev is False, name
        flags = {o for a in sub._actions for o in a.option_strings}
        assert {"--out", "--force", "--seed", "--quiet", "--json", "--quick"} <= flags, name
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            where = f"{name} {'/'.join(action.option_strings)}"
            assert action.help, f"{where} has no help text"
            if not isinstance(action, argparse._StoreTrueAction):
                assert "default" in action.help or action.required, f"{where}: no default"
            for flag in re.findall(r"--[a-z][a-z0-9-]*", action.help):
                assert flag in flags, f"{where}: help names {flag}, which does not exist"
    assert parser.allow_abbrev is False


def test_dataset_and_model_choices_match_the_library():
    from ntk_bayes import datasets

    available = datasets.available()
    assert set(cli._EMBEDDED) == set(available)
    regression = {k for k, v in available.items() if v.startswith("regression")}
    assert set(cli._REGRESSION_EMBEDDED) == regression
    assert cli._REGRESSION_MODELS == calibrate_pkg.REGRESSION_MODELS
    assert cli._CLASSIFICATION_MODELS == calibrate_pkg.CLASSIFICATION_MODELS


def test_every_command_defaults_to_a_timestamped_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    seen = []
    real = cli._default_out

    def spy(kind, name):
        path = real(kind, name)
        seen.append(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("a file, so the command stops before computing")
        return path

    monkeypatch.setattr(cli, "_default_out", spy)
    for argv in (["calibrate"], ["width-sweep"], ["regimes"]):
        assert cli.main([*argv, "--quiet"]) == 2
        assert "not a directory" in capsys.readouterr().err
    assert [p.parent for p in seen] == [Path("ntk_bayes_out")] * 3
    names = [p.name for p in seen]
    prefixes = ["calibrate-toy1d-", "width-sweep-toy1d-", "regimes-relu-"]
    for name, prefix in zip(names, prefixes, strict=True):
        assert re.fullmatch(re.escape(prefix) + r"\d{8}-\d{6}", name), name


def test_calibrate_json_on_stdout_progress_on_stderr(quick_run, tmp_path, monkeypatch, capsys):
    _, _, run = quick_run

    def noisy(*args, **kwargs):
        print("progress bar that a library printed to stdout")
        return run

    monkeypatch.setattr(calibrate_pkg, "run_calibration", noisy)
    out = tmp_path / "res"
    argv = ["calibrate", "--quick", "--models", "nngp,sgpr", "--json", "--out", str(out)]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # stdout is exactly one JSON object
    assert result["command"] == "calibrate" and result["report"] == str(out / "report.md")
    assert list(result["models"]) == ["nngp", "sgpr"]
    assert np.isfinite(result["models"]["nngp"]["metrics"]["rmse"])
    assert "progress bar that a library printed" in captured.err


def test_regimes_json_and_quiet(tmp_path, monkeypatch, capsys):
    import ntk_bayes.theory._cli as theory_cli

    def fake(args):
        args.out.mkdir(parents=True)
        (args.out / "summary.json").write_text(json.dumps({"slopes": {"x": -0.5}}))
        print("| markdown | table |")
        return 0

    monkeypatch.setattr(theory_cli, "run_regimes", fake)
    out = tmp_path / "r"
    assert cli.main(["regimes", "--json", "--quiet", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["slopes"] == {"x": -0.5} and captured.err == ""
    assert cli.main(["regimes", "--out", str(tmp_path / "r2")]) == 0
    assert "| markdown | table |" in capsys.readouterr().out


def test_csv_error_names_a_flag_that_exists(tmp_path, capsys):
    path = _csv(tmp_path, "a,b,y\n" + _GOOD_ROWS + "1,abc,3\n")
    argv = ["calibrate", "--csv", str(path), "--target", "y", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--features" in err
    assert cli.main([*argv, "--features", "a,zz"]) == 2
    assert "zz" in capsys.readouterr().err
    assert cli.main(["calibrate", "--features", "a", "--out", str(tmp_path / "o")]) == 2
    assert "--features only applies with --csv" in capsys.readouterr().err
    assert file_tree(tmp_path) == ["data.csv"]


# ---- slow: every model, BNN by NUTS, hyperparameters by NUTS, the width sweep -----------

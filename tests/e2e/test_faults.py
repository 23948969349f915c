"""Fault injection: nothing lost, nothing silent.

* ``--force`` never deletes what ntk-bayes did not write (planted files, the input CSV);
* SIGINT and SIGKILL at each step of writing the results leave the previous report
  byte-identical (or the new one complete) and no debris that the next run does not
  find, remove and report;
* invalid targets for each likelihood are refused before the first compile, naming rows;
* an unwritable output location fails in under 5 s, before any data is read.
"""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from ntk_bayes import _io, cli, gp, stax

# ---- --force and planted files ---------------------------------------------------------


def _csv(path, n=24):
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    path.write_text("x,y\n" + "".join(f"{a:.5f},{2 * a:.5f}\n" for a in x))
    return path


def test_force_never_deletes_the_input_csv(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    data = _csv(d / "data.csv")
    before = data.read_bytes()
    argv = ["calibrate", "--csv", str(data), "--target", "y", "--quick", "--quiet"]
    assert cli.main([*argv, "--out", str(d), "--force"]) == 2
    assert "contains the input" in capsys.readouterr().err
    assert data.read_bytes() == before and sorted(os.listdir(d)) == ["data.csv"]


def test_force_refuses_a_directory_with_planted_files(tmp_path, capsys):
    out = tmp_path / "res"
    with _io.atomic_output_dir(out) as tmp:  # an earlier run's results
        (tmp / "report.md").write_text("old report")
    (out / "notes.txt").write_text("mine")  # the user's file, planted afterwards
    (out / "sub").mkdir()
    (out / "sub" / "deep.csv").write_text("also mine")
    argv = ["calibrate", "--quick", "--quiet", "--models", "nngp", "--out", str(out), "--force"]
    t0 = time.perf_counter()
    assert cli.main(argv) == 2
    assert time.perf_counter() - t0 < 5.0  # refused before any fitting
    err = capsys.readouterr().err
    assert "notes.txt" in err and "sub/deep.csv" in err and "did not write" in err
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "sub" / "deep.csv").read_text() == "also mine"
    assert (out / "report.md").read_text() == "old report"


def test_force_refuses_a_directory_without_a_manifest(tmp_path, capsys):
    out = tmp_path / "res"
    out.mkdir()
    (out / "report.md").write_text("written by hand")
    argv = ["calibrate", "--quick", "--quiet", "--out", str(out), "--force"]
    assert cli.main(argv) == 2
    assert "not an ntk-bayes output directory" in capsys.readouterr().err
    assert (out / "report.md").read_text() == "written by hand"


# ---- unwritable output -----------------------------------------------------------------
def _unwritable(tmp_path):
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        return ro / "out"
    return pathlib.Path("/proc/ntk-bayes-no-such-dir/out")  # root: no permission bit stops it


def test_unwritable_output_fails_fast(tmp_path, capsys):
    out = _unwritable(tmp_path)
    t0 = time.perf_counter()
    assert cli.main(["calibrate", "--quick", "--quiet", "--out", str(out)]) == 2
    assert time.perf_counter() - t0 < 5.0
    assert "cannot be written" in capsys.readouterr().err


# ---- invalid targets, per likelihood ---------------------------------------------------
_N = 24


@pytest.mark.parametrize(
    "lik, y, match",
    [
        (gp.Bernoulli(), np.where(np.arange(_N) % 2, 1.0, -1.0), r"not 0 or 1.*row 0: -1\.0"),
        (gp.Bernoulli(), np.where(np.arange(_N) % 2, 2.0, 0.0), r"not 0 or 1.*row 1: 2\.0"),
        (gp.Bernoulli(), np.r_[np.zeros(_N - 1), np.nan], r"not finite.*row 23: nan"),
        (gp.Poisson(), np.full(_N, 0.5), r"non-negative integer counts.*row 0: 0\.5"),
        (gp.Poisson(), np.r_[np.ones(_N - 1), -2.0], r"non-negative integer.*row 23: -2\.0"),
        (gp.Categorical(3), np.arange(_N) % 4, r"class labels 0\.\.2.*row 3: 3"),
        (gp.Categorical(3), np.r_[np.zeros(_N - 1), np.nan], r"class labels.*row 23: nan"),
        (gp.Gaussian(0.1), np.r_[np.zeros(_N - 1), np.nan], r"not finite.*row 23"),
    ],
)
def test_fit_svgp_refuses_invalid_targets_before_compiling(lik, y, match):
    X = np.random.default_rng(0).normal(size=(_N, 2))
    net = stax.serial(stax.Dense(4), stax.Relu(), stax.Dense(1))
    model = gp.SVGP(net, X[:4], lik, num_data=_N)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        gp.fit_svgp(model, None, X, y, key=jax.random.PRNGKey(0), batch_size=8, quiet=True)
    assert time.perf_counter() - t0 < 2.0  # no compile happened


def test_fit_exact_refuses_nan_targets():
    X = np.random.default_rng(0).normal(size=(8, 2))
    net = stax.serial(stax.Dense(4), stax.Relu(), stax.Dense(1))
    with pytest.raises(ValueError, match=r"`y` contains 1 non-finite"):
        gp.fit_exact(net, X, np.r_[np.zeros(7), np.nan], 0.1, quiet=True)


# ---- escaping ----------------------------------------------------------------------------
def test_escape_markdown_defuses_links_cells_and_tags():
    s = _io.escape_markdown('=HYPERLINK("http://x")|<script>alert(1)</script>\n# h')
    assert "|" not in s.replace("\\|", "") and "<" not in s and "\n" not in s
    assert s.startswith("\\=") and "\\(" in s and "\\#" in s


# ---- SIGINT / SIGKILL while writing ------------------------------------------------------
_DRIVER = textwrap.dedent(
    """
    import signal, sys
    # A shell without job control starts background jobs with SIGINT ignored, and a
    # child inherits that: restore Python's handler so the injected SIGINT interrupts.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from ntk_bayes import _io
    out, version = sys.argv[1], sys.argv[2]
    with _io.atomic_output_dir(out, force=True) as tmp:
        for name in ("metrics.json", "nngp.nc", "report.md"):
            (tmp / name).write_text(f"{name} {version}\\n" * 1000)
    """
)


def _drive(out, version, fault=None):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("NTK_BAYES_FAULT", None)
    if fault:
        env["NTK_BAYES_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-c", _DRIVER, str(out), version],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _snapshot(out):
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGINT"])
@pytest.mark.parametrize("point", ["tmp-created", "written", "manifest", "swapped"])
def test_kill_while_writing_keeps_a_whole_report(tmp_path, point, sig):
    out = tmp_path / "res"
    assert _drive(out, "v1").returncode == 0
    old = _snapshot(out)
    r = _drive(out, "v2", f"{point}:{sig}")
    assert r.returncode == -getattr(signal, sig), r.stderr
    now = _snapshot(out)
    if point == "swapped":  # the swap is atomic: the new report is whole
        assert b"v2" in now["report.md"] and _io.foreign_files(out) == []
    else:
        assert now == old  # byte-identical previous report
    debris = sorted(p.name for p in tmp_path.iterdir() if p.name != "res")
    if sig == "SIGINT":
        assert debris == []  # Ctrl-C cleans up itself
    r = _drive(out, "v3")  # the next run finds, removes and reports what a kill left
    assert r.returncode == 0, r.stderr
    for name in debris:
        assert f"removed {name}" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]
    assert b"v3" in _snapshot(out)["report.md"]


def test_a_live_runs_temporary_is_left_alone(tmp_path):
    out = tmp_path / "res"
    live = tmp_path / f".res.tmp-{os.getpid()}-abcd"
    live.mkdir()
    old_style = tmp_path / ".res.tmp-k3j2h1"  # an older version's name: reported only
    old_style.mkdir()
    messages = []
    assert _io.clean_stale(out, messages.append) == []
    assert live.exists() and old_style.exists()
    assert len(messages) == 1 and "older" in messages[0]


# ---- regimes that cannot be meaningful -------------------------------------------------
def _regime_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)) / np.sqrt(3)
    return x, np.sin(x.sum(axis=1, keepdims=True))


def test_regimes_refuses_outputs_that_dwarf_the_targets():
    from ntk_bayes.theory import kernel_evolution

    x, y = _regime_data()
    with pytest.raises(ValueError, match=r"initial outputs have variance.*W_std=30.*depth 6"):
        kernel_evolution(x, y, [8, 16], key=jax.random.key(0), W_std=30.0, depth=6, steps=2)


def test_regimes_refuses_training_that_does_not_move():
    from ntk_bayes.theory import kernel_evolution

    x, y = _regime_data()
    with pytest.raises(ValueError, match=r"did not move.*learning rate 1e-20"):
        kernel_evolution(
            x, y, [8, 16], key=jax.random.key(0), learning_rate=1e-20, steps=3, n_seeds=1
        )


# ---- kernels that overflow --------------------------------------------------------------
def test_calibrate_refuses_an_overflowing_kernel_before_fitting(tmp_path, capsys):
    out = tmp_path / "res"
    argv = ["calibrate", "--quick", "--quiet", "--models", "nngp,ensemble", "--out", str(out)]
    argv += ["--arch", "relu-6x64", "--W-std", "100", "--float32"]
    t0 = time.perf_counter()
    assert cli.main(argv) == 2
    assert time.perf_counter() - t0 < 30.0  # one kernel evaluation, no fit (fits take minutes)
    err = capsys.readouterr().err
    assert "relu-6x64 at W_std=100" in err and "model(s) nngp would fit NaN" in err
    assert "lower --W-std" in err and "drop --float32" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_kernel_check_in_float64():
    from ntk_bayes import datasets
    from ntk_bayes.calibrate import parse_arch
    from ntk_bayes.calibrate._checks import KernelOverflowError, check_kernels

    with jax.enable_x64(True):
        ds = datasets.load("toy1d", seed=0)
        # float64 holds the ~1e23 entries that float32 refuses, but not ~1e160
        assert check_kernels(ds, parse_arch("relu-2x8", W_std=1e4), ["nngp"])["nngp"] > 1e20
        with pytest.raises(KernelOverflowError, match=r"beyond .*float64") as e:
            check_kernels(ds, parse_arch("relu-2x8", W_std=1e27), ["ntkgp"])
        assert "--float32" not in str(e.value)
        with pytest.raises(KernelOverflowError, match="non-finite"):
            check_kernels(ds, parse_arch("relu-2x8", W_std=1e60), ["ntkgp"])


# ---- the real command: hostile column names, and a kill during a forced rewrite --------
def test_calibrate_escapes_names_and_survives_a_kill(tmp_path):
    name = '=HYPERLINK("http://x")|<script>'
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    quoted = '"' + name.replace('"', '""') + '"'
    rows = "".join(f"{a:.5f},{np.sin(2 * a):.5f}\n" for a in x)
    data = tmp_path / "data.csv"
    data.write_text(f"x,{quoted}\n" + rows)
    out = tmp_path / "res"
    argv = ["calibrate", "--csv", str(data), "--target", name, "--quick", "--quiet"]
    argv += ["--models", "nngp", "--out", str(out)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "ntk_bayes.cli", *argv]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    # JAX's compilation cache is on (tests/conftest.py): on Intel CPUs jaxlib 0.9 logs a
    # false alarm per program loaded from it, which the command drops (_native_log.py)
    assert "prefer-no-" not in r.stderr
    report = (out / "report.md").read_text()
    assert "<script>" not in report and '=HYPERLINK("' not in report
    assert "&lt;script&gt;" in report
    before = _snapshot(out)
    env["NTK_BAYES_FAULT"] = "written:SIGKILL"  # all files written, not yet swapped
    r = subprocess.run([*cmd, "--force"], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == -signal.SIGKILL
    assert _snapshot(out) == before  # the previous report, byte for byte
    assert data.exists()
    left = _io.stale_temporaries(out)  # the killed run's directory, found by name
    assert len(left) == 1 and left[0][0].name.startswith(".res.tmp-")
    messages = []
    assert _io.clean_stale(out, messages.append) == [left[0][0]] and "removed" in messages[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "res"]

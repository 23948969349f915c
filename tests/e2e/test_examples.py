"""Every script in examples/ runs at its ``--quick`` size and writes real outputs.

Each runs as a subprocess, as a user would start it, in a fresh directory. The checks
read what it printed and wrote: figures are PNG files, printed metrics are finite and in
range. hierarchical.py is exercised by tests/stat/test_hierarchical.py instead.
"""

import math
import os
import re
import subprocess
import sys

import pytest
from _examples import EXAMPLES

NUMBER = r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf)"
THEORY_FIGURES = {
    "theory_dynamics": ["theory_linearization.png", "theory_dynamics.png"],
    "theory_generalization": ["theory_generalization.png"],
    "theory_regimes": ["theory_kernel_evolution.png", "theory_finite_width.png"],
    "theory_signal": ["theory_phase_erf.png", "theory_phase_relu.png", "theory_ntk_spectrum.png"],
}


def run_example(name, cwd, *args):
    """Run ``examples/<name>.py --quick *args`` in ``cwd``; return its stdout."""
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--quick", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def numbers(line):
    """The numbers in one printed line, as floats (``nan`` and ``inf`` included)."""
    return [float(s) for s in re.findall(NUMBER, line.split(":", 1)[-1])]


def rows(out, prefix):
    return [numbers(ln) for ln in out.splitlines() if ln.startswith(prefix)]


def assert_png(path):
    assert path.is_file(), f"{path} was not written"
    head = path.read_bytes()[:8]
    assert head == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000, path


def assert_finite(values, what):
    assert values and all(math.isfinite(v) for v in values), (what, values)


def test_quickstart(tmp_path):
    out = run_example("quickstart", tmp_path, "--out", "bands.png")
    assert_png(tmp_path / "bands.png")
    table = {ln.split()[0]: numbers(ln) for ln in out.splitlines() if ln[:4] in ("nngp", "ntk ")}
    assert set(table) == {"nngp", "ntk"}, out
    for kernel, (w, b, noise, rmse, nlpd, cover, gap_ratio) in table.items():
        assert_finite([w, b, noise, rmse, nlpd, cover, gap_ratio], kernel)
        assert w > 0 and b > 0 and noise > 0 and 0 <= cover <= 1
        assert gap_ratio > 1, "the predictive sd must grow inside the gap without data"


def test_sparse_gp(tmp_path):
    out = run_example("sparse_gp", tmp_path)
    (sgpr,) = [ln for ln in out.splitlines() if ln.startswith("SGPR")]
    (exact,) = [ln for ln in out.splitlines() if ln.startswith("Exact GP")]
    (svgp,) = [ln for ln in out.splitlines() if ln.startswith("SVGP")]
    assert_finite(numbers(sgpr) + numbers(exact) + numbers(svgp), out)
    rmse = float(re.search(r"test RMSE\(f\) (\S+),", sgpr).group(1))
    assert rmse < 1.0, sgpr  # the targets' sd is about 1: the fit explains most of it
    accuracy = float(re.search(r"test accuracy (\S+),", svgp).group(1))
    # chance is 0.5 with sd 0.022 on 500 test points: 0.6 is 4.5 sd above it (< 1e-5)
    assert 0.6 < accuracy <= 1.0, svgp


def test_cnn_digits(tmp_path):
    out = run_example("cnn_digits", tmp_path)
    acc = {ln.split()[0]: numbers(ln.split("accuracy")[1])[0] for ln in out.splitlines()}
    assert set(acc) == {"CNN-GAP", "FC"}, out
    assert all(0.5 < a <= 1.0 for a in acc.values()), acc  # chance is 0.1 (10 digits)


def test_bnn_vs_nngp(tmp_path):
    out = run_example("bnn_vs_nngp", tmp_path, "--plot", "bands.png")
    assert_png(tmp_path / "bands.png")
    table = rows(out, "NNGP (exact)") + rows(out, "BNN w=4")
    assert len(table) == 2, out
    for values in table:
        # RMSE, NLPD, CRPS, cov90, MCE after the width in the row's name
        assert_finite(values, out)
        assert 0 <= values[-2] <= 1
    assert "R-hat(f_test) max" in out and "chain 0:" in out and "chain 1:" in out


@pytest.mark.parametrize("name", sorted(THEORY_FIGURES))
def test_theory_scripts_write_to_the_directory_given(name, tmp_path):
    docs_img = EXAMPLES.parent / "docs" / "img"
    before = {p.name: p.stat().st_mtime_ns for p in docs_img.iterdir()}
    if name == "theory_signal":  # the default: a new timestamped folder in the cwd
        out = run_example(name, tmp_path)
        (folder,) = (tmp_path / "ntk_bayes_out").iterdir()
        assert folder.name.startswith("theory_signal-")
    else:
        folder = tmp_path / "figs"
        out = run_example(name, tmp_path, "--out", "figs")
    assert sorted(p.name for p in folder.iterdir()) == sorted(THEORY_FIGURES[name])
    for fig in THEORY_FIGURES[name]:
        assert_png(folder / fig)
    assert f"figures written to {folder.relative_to(tmp_path)}" in out
    assert {p.name: p.stat().st_mtime_ns for p in docs_img.iterdir()} == before
    if name in ("theory_dynamics", "theory_regimes"):
        assert_finite([numbers(ln)[0] for ln in out.splitlines() if "slope" in ln], out)
    if name == "theory_signal":
        assert "0.886227 (sqrt(pi)/2 = 0.886227)" in out and "1.000000 (1)" in out
    if name == "theory_generalization":
        bounds = [numbers(ln.split("bound")[1]) for ln in out.splitlines() if "bound" in ln]
        assert len(bounds) == 2 * 3 * 2, out  # 2 datasets x 3 fractions x 2 kernels
        assert_finite([v for b in bounds for v in b], out)

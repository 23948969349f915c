"""The CI time box (``NTK_BAYES_TEST_DEADLINE`` in tests/conftest.py): tests that would
start after the deadline are skipped with the reason, and the run still reports and exits
normally, so a time-boxed tier can gate on its failures."""

import os
import pathlib
import subprocess
import sys
import time

TESTS = pathlib.Path(__file__).resolve().parents[1]


def _run(tmp_path, deadline):
    probe = tmp_path / "unit" / "test_probe.py"
    probe.parent.mkdir()
    probe.write_text("def test_one():\n    assert True\n\ndef test_two():\n    assert True\n")
    (tmp_path / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    env = dict(os.environ, NTK_BAYES_TEST_DEADLINE=str(deadline))
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
            "-rs",
            str(probe),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_tests_after_the_deadline_are_skipped_with_the_reason(tmp_path):
    out = _run(tmp_path, time.time() - 1)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 skipped" in out.stdout and "past the CI time box" in out.stdout, out.stdout


def test_tests_before_the_deadline_run(tmp_path):
    out = _run(tmp_path, time.time() + 3600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout, out.stdout

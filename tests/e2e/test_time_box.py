"""The CI time box (``NTK_BAYES_TEST_DEADLINE`` in tests/conftest.py): tests that would
start after the deadline, or end after it by their measured duration, are skipped with the
reason, and the run still reports and exits normally, so a time-boxed tier can gate on its
failures; a run records its durations for the next (``NTK_BAYES_TEST_DURATIONS``)."""

import json
import os
import pathlib
import subprocess
import sys
import time

TESTS = pathlib.Path(__file__).resolve().parents[1]


PROBE = "def test_one():\n    assert True\n\ndef test_two():\n    assert True\n"


def _run(tmp_path, deadline=None, probe_text=PROBE, durations=None):
    probe = tmp_path / "unit" / "test_probe.py"
    probe.parent.mkdir(exist_ok=True)
    probe.write_text(probe_text)
    (tmp_path / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    env = dict(os.environ)
    for name in ("PYTEST_XDIST_WORKER", "NTK_BAYES_TEST_DEADLINE", "NTK_BAYES_TEST_DURATIONS"):
        env.pop(name, None)
    if deadline is not None:
        env["NTK_BAYES_TEST_DEADLINE"] = str(deadline)
    if durations is not None:
        env["NTK_BAYES_TEST_DURATIONS"] = str(durations)
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


SLEEPY = (
    "import time\n\nimport pytest\n\n\n@pytest.mark.seconds(600)\ndef test_long():\n"
    "    pass\n\n\ndef test_short():\n    time.sleep(0.2)\n"
)


def test_a_test_that_cannot_end_in_the_box_is_not_started(tmp_path):
    # ten minutes by its mark, five left: skipped with the reason; the unmarked one runs
    out = _run(tmp_path, time.time() + 300, SLEEPY)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 1 skipped" in out.stdout, out.stdout
    assert "would end past the CI time box (needs ~600 s" in out.stdout, out.stdout


def test_durations_are_recorded_and_override_the_mark(tmp_path):
    durations = tmp_path / "durations.json"
    out = _run(tmp_path, None, SLEEPY, durations)  # no box: both run, both recorded
    assert out.returncode == 0, out.stdout + out.stderr
    recorded = json.loads(durations.read_text())
    long_id, short_id = "unit/test_probe.py::test_long", "unit/test_probe.py::test_short"
    assert set(recorded) == {long_id, short_id}, recorded
    assert recorded[short_id] >= 0.2 > recorded[long_id], recorded
    # measured at well under a second, the marked test now fits in five minutes
    out = _run(tmp_path, time.time() + 300, SLEEPY, durations)
    assert "2 passed" in out.stdout, out.stdout
    # a recorded duration longer than the box skips the test; a skipped test keeps it
    durations.write_text(json.dumps({short_id: 1000.0, long_id: 0.1}))
    out = _run(tmp_path, time.time() + 300, SLEEPY, durations)
    assert "1 passed, 1 skipped" in out.stdout and "needs ~1000 s" in out.stdout, out.stdout
    assert json.loads(durations.read_text())[short_id] == 1000.0

"""Work units of ``--dist loadgroup`` (``pytest_xdist_make_scheduler`` in tests/conftest.py):
the tests of a module that defines a module-scoped fixture run on one worker, one after
the other, so the fixture is built once; every other test is its own unit."""

import os
import pathlib
import subprocess
import sys

TESTS = pathlib.Path(__file__).resolve().parents[1]

_SHARED = """\
import os, pytest

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    log = os.environ["PROBE_LOG"]
    with open(log, "a") as f:
        f.write(os.environ.get("PYTEST_XDIST_WORKER", "main") + "\\n")
    return log

@pytest.mark.parametrize("i", range(6))
def test_uses_the_fixture(built, i):
    assert built
"""


def test_a_module_fixture_is_built_once_under_two_workers(tmp_path):
    probe = tmp_path / "unit"
    probe.mkdir()
    (probe / "test_shared.py").write_text(_SHARED)
    # other tests to interleave with: before the grouping fix they split the module
    (probe / "test_other.py").write_text(
        "import pytest\n\n@pytest.mark.parametrize('i', range(12))\ndef test_x(i):\n    pass\n"
    )
    (tmp_path / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    log = tmp_path / "built.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env["PROBE_LOG"] = str(log)
    argv = ["-q", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "18 passed" in proc.stdout, proc.stdout[-2000:]
    assert len(log.read_text().split()) == 1, log.read_text()  # one build, one worker

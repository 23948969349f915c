"""Load a script (from examples/, tools/, benchmarks/) as a module, so tests can call its
functions."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).parents[1]
EXAMPLES = ROOT / "examples"


def load_script(path):
    """The Python file at ``path`` as a module named after it (the folders holding
    scripts are not packages)."""
    path = pathlib.Path(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_example(name):
    return load_script(EXAMPLES / f"{name}.py")


def run_python(args, env=None, timeout=300, **kwargs):
    """``subprocess.run([sys.executable, *args])`` with output captured, for scripts that
    should finish in seconds to a few minutes. A child still running after ``timeout``
    seconds gets SIGABRT with Python's faulthandler on, so the test fails with every
    thread's stack (where it hung) instead of an empty kill after a long wait."""
    import os
    import signal
    import subprocess
    import sys

    import pytest

    env = dict(os.environ if env is None else env, PYTHONFAULTHANDLER="1")
    with subprocess.Popen(
        [sys.executable, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            try:
                out, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            pytest.fail(
                f"{' '.join(map(str, args))} still running after {timeout} s; stdout tail:\n"
                f"{out[-1500:]}\nstacks at SIGABRT:\n{err[-6000:]}"
            )
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

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

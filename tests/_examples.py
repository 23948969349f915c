"""Load a script from examples/ as a module, so tests can call its functions."""

import importlib.util
import pathlib

EXAMPLES = pathlib.Path(__file__).parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

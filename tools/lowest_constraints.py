"""Pin every runtime dependency of ``pyproject.toml`` to its lower bound, as pip
constraints, so that one test stack runs on the oldest releases the project says it
supports (``.ci/run``'s lowest stack; ``NTK_BAYES_CONSTRAINTS`` in ``scripts/_venv.sh``).

A bound that no install can meet (a release whose own requirements exclude the others'
minimums, e.g. one built for NumPy 1 beside a NumPy 2 minimum) makes the install fail,
and a bound that installs but does not work fails the tests: either way the bound in
``pyproject.toml`` is raised, never left untested. The test tools (the ``test`` extra)
are not pinned.

    python tools/lowest_constraints.py [--pyproject FILE] > constraints.txt
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_LOWER = re.compile(r">=\s*([0-9][0-9A-Za-z.]*)")


def lower_bounds(pyproject: pathlib.Path) -> dict[str, str]:
    """``{name: lowest version}`` of ``[project] dependencies``; an error names any
    dependency without a ``>=`` bound (it would be untested at its oldest)."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    out = {}
    for spec in deps:
        name = _NAME.match(spec)
        lower = _LOWER.search(spec)
        if name is None or lower is None:
            raise ValueError(
                f"dependency {spec!r} in {pyproject} has no lower bound: write it as "
                "'name>=VERSION' so that the lowest stack can test it"
            )
        out[name.group(1)] = lower.group(1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pyproject", type=pathlib.Path, default=ROOT / "pyproject.toml")
    args = p.parse_args(argv)
    for name, version in lower_bounds(args.pyproject).items():
        sys.stdout.write(f"{name}=={version}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""tools/lowest_constraints.py: the pins of CI's lowest stack (every runtime dependency at
its lower bound)."""

import tomllib

import pytest
from _examples import ROOT, load_script

lowest = load_script(ROOT / "tools" / "lowest_constraints.py")


def _write(tmp_path, deps):
    path = tmp_path / "pyproject.toml"
    body = ",\n".join(f'    "{d}"' for d in deps)
    path.write_text(f'[project]\nname = "x"\ndependencies = [\n{body},\n]\n')
    return path


def test_every_runtime_dependency_of_the_project_is_pinned(capsys):
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert lowest.main([]) == 0
    pins = dict(line.split("==") for line in capsys.readouterr().out.splitlines())
    assert len(pins) == len(deps)
    for spec in deps:
        name = spec.split(">=")[0].strip()
        assert f">={pins[name]}" in spec.replace(" ", ""), (name, spec)
    # the pair that must move together, and NumPy at least what that jax needs
    assert pins["jax"] == pins["jaxlib"]


def test_exclusions_and_upper_bounds_are_not_taken_for_the_lower_bound(tmp_path):
    path = _write(
        tmp_path,
        ["jax>=0.8.0,!=0.10.*,!=0.11.0", "ml_dtypes>=0.5,<0.7", "h5py >= 3.11  # why"],
    )
    assert lowest.lower_bounds(path) == {"jax": "0.8.0", "ml_dtypes": "0.5", "h5py": "3.11"}


@pytest.mark.parametrize("spec", ["rich", "numpy<3", "scipy==1.13"])
def test_a_dependency_without_a_lower_bound_is_named(tmp_path, spec):
    path = _write(tmp_path, ["jax>=0.8.0", spec])
    with pytest.raises(ValueError, match=rf"{spec.split('<')[0].split('=')[0]}.*no lower bound"):
        lowest.lower_bounds(path)

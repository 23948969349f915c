"""The jaxlib releases whose batched CPU LAPACK can hang are recognised and named."""

import warnings

import pytest

from ntk_bayes import _jaxlib


@pytest.mark.parametrize(
    "version, risky",
    [
        ("0.9.2", False),
        ("0.10.0", True),
        ("0.10.2", True),
        ("0.10.2.dev20260101", True),
        ("0.11.0", True),
        ("0.11.1", False),
        ("0.12.0.1", False),
        ("0.4.35", False),
        ("unknown", False),
    ],
)
def test_releases_with_the_blocking_batch_path(version, risky):
    assert _jaxlib.lapack_may_deadlock(version) is risky


def test_warns_once_naming_the_fix(monkeypatch):
    monkeypatch.setattr(_jaxlib, "_warned", False)
    with pytest.warns(_jaxlib.JaxlibDeadlockWarning, match=r"jaxlib 0\.10\.2 .*pip install"):
        assert _jaxlib.warn_if_lapack_may_deadlock("0.10.2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _jaxlib.warn_if_lapack_may_deadlock("0.10.2")  # once only
        assert not _jaxlib.warn_if_lapack_may_deadlock("0.9.2")


def test_a_fresh_install_excludes_them():
    import tomllib
    from pathlib import Path

    deps = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"][
        "dependencies"
    ]
    for name in ("jax", "jaxlib"):
        (spec,) = [d for d in deps if d.split(">")[0].split("!")[0].strip() == name]
        assert "!=0.10.*" in spec and "!=0.11.0" in spec, spec

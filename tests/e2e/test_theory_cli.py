"""The `regimes` subcommand: outputs, atomic writes, refusal to overwrite."""

import json

import pytest

from ntk_bayes.cli import build_parser
from ntk_bayes.theory._cli import run_regimes


def _parse(argv):
    return build_parser().parse_args(["regimes", *argv])


def test_regimes_writes_outputs_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "res"
    small = ["--widths", "16,32", "--steps", "10", "--seeds", "1", "--init-seeds", "2"]
    args = _parse(["--out", str(out), "--n-train", "6", *small])
    assert run_regimes(args) == 0
    names = {p.name for p in out.iterdir() if not p.name.startswith(".ntk-bayes")}
    assert names == {
        "kernel_evolution.png",
        "finite_width.png",
        "regimes.csv",
        "regimes.md",
        "summary.json",
    }
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["widths"] == [16, 32]
    assert set(summary["slopes"]) >= {"kernel_change_ntk", "kernel_change_mup", "init_spread"}
    rows = (out / "regimes.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 + 2  # header, 2 scalings x 2 widths, 2 widths
    assert [p.name for p in tmp_path.iterdir()] == ["res"]  # no temporary directories left

    marker = out / "regimes.md"
    before = marker.read_text()
    assert run_regimes(_parse(["--out", str(out), *small])) == 1
    assert "--force" in capsys.readouterr().err
    assert marker.read_text() == before
    assert run_regimes(_parse(["--out", str(out), "--force", "--seed", "3", *small])) == 0
    assert json.loads((out / "summary.json").read_text())["settings"]["seed"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["res"]


def test_regimes_rejects_bad_arguments(tmp_path, capsys):
    for bad in (["--widths", "16"], ["--widths", "a,b"], ["--b-std", "-1"], ["--steps", "0"]):
        with pytest.raises(SystemExit) as e:
            _parse(bad)
        assert e.value.code == 2
    f = tmp_path / "file"
    f.write_text("x")
    assert run_regimes(_parse(["--out", str(f), "--force"])) == 1
    assert "not a directory" in capsys.readouterr().err


def test_regimes_leaves_nothing_half_written_on_failure(tmp_path, monkeypatch):
    import ntk_bayes.theory._cli as cli

    def fail(path, rows):
        path.write_text("partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(cli, "_write_csv", fail)
    out = tmp_path / "new" / "res"
    small = ["--widths", "16,32", "--steps", "5", "--seeds", "1", "--init-seeds", "2"]
    with pytest.raises(RuntimeError, match="disk full"):
        run_regimes(_parse(["--out", str(out), "--n-train", "4", *small]))
    assert list(tmp_path.iterdir()) == []  # neither the output, a temporary nor the parent

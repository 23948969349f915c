"""``ntk-bayes calibrate --study``: every real regression dataset, one combined report."""

import json

import pytest

from ntk_bayes import cli, datasets
from ntk_bayes.calibrate._study import STUDY_DATASETS


def test_study_datasets_are_the_embedded_real_regression_sets():
    regression = {k for k, v in datasets.available().items() if v.startswith("regression")}
    assert set(STUDY_DATASETS) == regression - {"toy1d"}  # toy1d is synthetic
    help_text = next(a.help for a in _calibrate_actions() if "--study" in a.option_strings)
    assert all(name in help_text for name in STUDY_DATASETS)


def _calibrate_actions():
    actions = cli.build_parser()._actions
    sub = next(a for a in actions if "calibrate" in (getattr(a, "choices", None) or ()))
    return sub.choices["calibrate"]._actions


def test_study_writes_one_report_per_dataset_and_a_combined_one(tmp_path, capsys, monkeypatch):
    from ntk_bayes.calibrate import _study

    # two of the five datasets keep the test short; the list itself is checked above
    monkeypatch.setattr(_study, "STUDY_DATASETS", ("mcycle", "concrete"))
    out = tmp_path / "study"
    argv = ["calibrate", "--study", "--quick", "--splits", "2", "--models", "nngp"]
    status = cli.main([*argv, "--n-max", "30", "--out", str(out)])
    assert status == 0
    captured = capsys.readouterr()
    assert "== dataset 1/2" in captured.err and "split 2/2" in captured.err  # progress
    assert "report:" in captured.out
    m = json.loads((out / "study.json").read_text())
    assert list(m["datasets"]) == ["mcycle", "concrete"]
    for name, d in m["datasets"].items():
        assert (out / name / "report.md").is_file() and (out / name / "nngp.nc").is_file()
        sub = json.loads((out / name / "metrics.json").read_text())
        assert sub["splits"] == 2 and d["n_train"] == 30
        assert d["models"]["nngp"]["metrics_se"]["nlpd"] > 0
    md = (out / "study.md").read_text()
    assert "## concrete" in md and "PBP" in md and "this study" in md


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--test-fraction", "0.2"], "90/10"),
        (["--models", "nngp,zzz"], "unknown model"),
        (["--splits", "2", "--sampled-splits", "3"], "sampled"),
    ],
)
def test_study_bad_flags(tmp_path, capsys, extra, message):
    status = cli.main(["calibrate", "--study", "--quick", *extra, "--out", str(tmp_path / "o")])
    assert status == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_a_stopped_study_keeps_its_finished_datasets_and_resumes(tmp_path, capsys, monkeypatch):
    from ntk_bayes.calibrate import _study

    monkeypatch.setattr(_study, "STUDY_DATASETS", ("mcycle", "concrete"))
    out, partial = tmp_path / "study", tmp_path / "study.partial"
    argv = ["calibrate", "--study", "--quick", "--splits", "1", "--models", "nngp"]
    argv += ["--n-max", "30", "--out", str(out)]
    real, calls = _study.run_calibration, []

    def counted(ds, *args, **kwargs):
        calls.append(ds.name)
        if stop_at == len(calls):
            raise KeyboardInterrupt  # Ctrl-C during the second dataset
        return real(ds, *args, **kwargs)

    monkeypatch.setattr(_study, "run_calibration", counted)
    stop_at = 2
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    assert f"mcycle kept in {partial}: add --resume" in err, err
    assert not out.exists() and not (partial / "concrete").exists()
    first = (partial / "mcycle" / "metrics.json").read_text()
    assert (partial / "mcycle" / "report.md").is_file()
    # without --resume, or with other settings: refused before any work, nothing touched
    assert cli.main(argv) == 2 and "add --resume" in capsys.readouterr().err
    other = [a if a != "1" else "2" for a in argv]  # --splits 2
    assert cli.main([*other, "--resume"]) == 2
    assert "ran with other settings" in capsys.readouterr().err
    assert calls == ["mcycle", "concrete"]
    stop_at, calls[:] = 0, []
    assert cli.main([*argv, "--resume", "--quiet"]) == 0  # quieter is the same study
    assert calls == ["concrete"]  # mcycle was not run again
    m = json.loads((out / "study.json").read_text())
    assert list(m["datasets"]) == ["mcycle", "concrete"] and m["seconds"]["mcycle"] > 0
    assert (out / "mcycle" / "metrics.json").read_text() == first  # the kept report, as it was
    assert (out / "concrete" / "nngp.nc").is_file() and not partial.exists()
    assert "## mcycle" in (out / "study.md").read_text()


def test_resume_needs_a_stopped_study(tmp_path, capsys):
    base = ["calibrate", "--study", "--quick", "--resume"]
    assert cli.main(base) == 2 and "--resume needs --out" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(tmp_path / "o")]) == 2
    assert "no stopped study" in capsys.readouterr().err
    assert cli.main(["calibrate", "--quick", "--resume"]) == 2
    assert "add --study" in capsys.readouterr().err

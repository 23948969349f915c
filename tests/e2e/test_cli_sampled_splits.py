"""``ntk-bayes calibrate --sampled-splits K``: the costly sampled models on the first K of
the R splits, every other model on all R, and a report that says so."""

import json
import re

import numpy as np

from ntk_bayes import cli


def test_sampled_splits_run_the_bnn_on_the_first_k_splits_only(tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["calibrate", "--dataset", "concrete", "--quick", "--quiet", "--n-max", "30"]
    argv += ["--models", "nngp,bnn", "--splits", "3", "--sampled-splits", "2"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    capsys.readouterr()
    m = json.loads((out / "metrics.json").read_text())
    nngp, bnn = m["models"]["nngp"], m["models"]["bnn"]
    assert m["splits"] == 3 and m["settings"]["sampled_splits"] == 2
    assert (nngp["n_splits"], nngp["split_ids"]) == (3, [1, 2, 3])
    assert (bnn["n_splits"], bnn["split_ids"]) == (2, [1, 2])
    assert len(bnn["metrics_splits"]["nlpd"]) == 2
    assert np.mean(bnn["metrics_splits"]["nlpd"]) == bnn["metrics"]["nlpd"]
    # the NNGP's first two splits are the BNN's: the same seeds, the same data
    rows = {r["model"]: r for r in m["paired_nlpd"]}
    other = "bnn" if rows["nngp"]["best"] == "nngp" else "nngp"
    assert rows[other]["n_splits"] == 2
    a = np.array(bnn["metrics_splits"]["nlpd"]) - np.array(nngp["metrics_splits"]["nlpd"][:2])
    sign = 1.0 if other == "bnn" else -1.0
    np.testing.assert_allclose(rows[other]["nlpd_diff"], sign * a.mean(), rtol=1e-12)
    report = (out / "report.md").read_text()
    assert "ran on the first 2 of the 3 splits only" in report
    assert "finite BNN \\(NUTS\\) (2)" in report  # the note reads the escaped labels
    # the published table: 20 splits for the papers, ours per model
    assert re.search(r"\| PBP \| HLA15 \| 20 \| 5\.67 ± 0\.09 \| 3\.16 ± 0\.02 \|", report)
    for label, k in ((r"finite BNN \(NUTS\)", 2), (r"NNGP \(exact GP\)", 3)):  # as escaped
        # a sampler that did not converge is marked beside its label
        mark = r"(?: \(not converged: R-hat [\d.]+, bulk ESS \d+[^|]*\))?"
        row = rf"\| {re.escape(label)}{mark} \| this run \| {k} \| [\d.]+ ± [\d.]+ \|"
        assert re.search(row, report), label


def test_sampled_splits_out_of_range_is_a_usage_error(tmp_path, capsys):
    argv = ["calibrate", "--quick", "--models", "nngp", "--splits", "2", "--sampled-splits", "3"]
    assert cli.main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert "between 1 and the splits R = 2" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

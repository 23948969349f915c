"""The CLI with every model: BNN by NUTS, hyperparameters by NUTS, classification, width sweep."""

import json
import os
import subprocess
import sys

import pytest
from _cli_helpers import file_tree, idata_group, open_idata

from ntk_bayes import _io, cli


def test_calibrate_all_models_with_bnn(tmp_path):
    out = tmp_path / "all"
    assert cli.main(["calibrate", "--quick", "--quiet", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["models"]) == ["nngp", "ntkgp", "sgpr", "ensemble", "ntkgp_ensemble", "bnn"]
    bnn = m["models"]["bnn"]
    assert bnn["convergence"]["max_rhat"] > 0 and "sampler_report" in bnn["info"]
    # quick NUTS budgets (2 x 30 draws) cannot reach bulk ESS 400: no verdict
    assert bnn["verdict"] == "not converged" and bnn["calibration"] is None
    idata = open_idata(out / "bnn.nc")
    assert "diverging" in idata_group(idata, "sample_stats")
    loo = {r["model"]: r for r in m["loo"]}
    assert {k for k, r in loo.items() if r["elpd"] is not None} == {
        "nngp", "ntkgp", "sgpr", "ntkgp_ensemble", "bnn",
    }  # fmt: skip
    assert loo["bnn"]["method"] == "psis" and loo["nngp"]["method"] == "exact"
    assert loo["ensemble"]["method"] == "none"  # not a posterior


@pytest.mark.seconds(155)  # 153 s at load 5-8, 2026-12-01
def test_calibrate_hyperparameters_by_nuts(tmp_path):
    out = tmp_path / "nuts"
    argv = ["calibrate", "--quick", "--quiet", "--hyper", "nuts", "--models", "nngp"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())["models"]["nngp"]
    # R-hat/ESS over the 3 hyperparameters and the predictive function values
    assert m["convergence"]["n_params"] > 3 and m["status"] is not None
    assert m["loo"]["method"] == "psis"
    post = idata_group(open_idata(out / "nngp.nc"), "posterior")
    assert post["W_std"].shape[:2] == (2, 30) and float(post["noise_var"].min()) > 0


@pytest.mark.seconds(285)  # 282 s at load 5-8, 2026-12-01
def test_calibrate_classification(tmp_path):
    out = tmp_path / "bc"
    argv = ["calibrate", "--quick", "--quiet", "--dataset", "breast_cancer", "--n-max", "120"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["models"]) == ["nngp", "ntkgp", "ensemble", "bnn"]
    assert "reliability.png" in file_tree(out)
    for entry in m["models"].values():
        assert entry["metrics"]["accuracy"] > 0.8  # breast cancer is nearly separable
        open_idata(out / entry["netcdf"])
    # quick NUTS budgets cannot reach bulk ESS 400: no verdict (the classification BNN was
    # once called "calibrated" whatever its R-hat)
    bnn = m["models"]["bnn"]
    assert bnn["verdict"] == "not converged" and bnn["calibration"] is None
    assert bnn["status"]["converged"] is False


@pytest.mark.seconds(185)  # 184 s at load 5-8, 2026-12-01
def test_width_sweep_quick(tmp_path):
    out = tmp_path / "sweep"
    assert cli.main(["width-sweep", "--quick", "--quiet", "--out", str(out)]) == 0
    written = {"report.md", "metrics.json", "distance.png", "bands.png"}
    assert set(file_tree(out)) == written | {_io.MANIFEST}
    m = json.loads((out / "metrics.json").read_text())
    assert [r["width"] for r in m["rows"]] == [4, 16]
    assert m["floor"]["mean_abs_diff_mean"] >= 0 and "slopes" in m
    assert "| 16 |" in (out / "report.md").read_text()


@pytest.mark.seconds(80)  # 79 s at load 2 (a calibrate run beside it), 2026-12-05
def test_calibrate_as_a_command_tiles_a_real_dataset_over_devices(tmp_path):
    """As a shell runs it: its own process, so one XLA device per core (cli.py's
    _host_device_per_core), and concrete's 927 training points make kernels of several
    tiles spread over those devices. In-process runs (above) have one device; this path
    crashed in the NTK-GP from 2026-12-04 to 12-05 (a conditional's branches typed apart
    inside shard_map) with every test green. With one core it runs on one device."""
    out = tmp_path / "concrete"
    argv = ["calibrate", "--dataset", "concrete", "--models", "nngp,ntkgp", "--quick"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    cmd = [sys.executable, "-m", "ntk_bayes.cli", *argv, "--quiet", "--out", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["models"]) == ["nngp", "ntkgp"]
    for entry in m["models"].values():
        assert entry["metrics"]["rmse"] < 10.0  # MPa; the targets' std is 16.7

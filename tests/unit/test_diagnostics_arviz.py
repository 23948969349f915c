"""ArviZ conversion (0.x InferenceData and 1.x DataTree alike), netCDF files, LOO/compare."""

import math
import os
import warnings

import numpy as np
import pytest
from scipy import stats

from ntk_bayes import diagnostics as dg


def _group(idata, name):
    return idata[name] if dg.ARVIZ_1 else getattr(idata, name)


def _groups(idata):
    return set(idata.children) if dg.ARVIZ_1 else set(idata.groups())


def _gaussian_case(seed=0, n=30, m=12, noise=0.3):
    """A conjugate Bayesian linear model: exact posterior moments of f = w x."""
    rng = np.random.default_rng(seed)
    x, xt = rng.normal(size=n), rng.normal(size=m)
    y = 0.8 * x + noise * rng.normal(size=n)
    yt = 0.8 * xt + noise * rng.normal(size=m)
    prec = 1.0 + x @ x / noise**2  # prior w ~ N(0, 1)
    w_mean, w_var = (x @ y / noise**2) / prec, 1.0 / prec
    return dict(
        mean_train=w_mean * x,
        var_train=w_var * x**2,
        y_train=y,
        mean_test=w_mean * xt,
        var_test=w_var * xt**2,
        y_test=yt,
        noise_var=noise**2,
    )


def test_from_gaussian_point_estimate_is_not_dressed_as_draws():
    case = _gaussian_case()
    idata = dg.from_gaussian(**case, n_draws=4000, seed=1, attrs={"model": "blr", "x": [1, 2]})
    # predictive draws and data only: no fake posterior, no log-likelihood for PSIS
    assert _groups(idata) == {"posterior_predictive", "observed_data"}
    pp = _group(idata, "posterior_predictive")
    assert pp["y"].shape == (1, 4000, 30) and pp["y_test"].dims == ("chain", "draw", "test")
    # predictive draws have the exact predictive moments (within Monte Carlo error)
    sd = np.sqrt(case["var_test"] + case["noise_var"])
    draws = pp["y_test"].values[0]
    # 5 sd of a mean of 4000 draws: false alarm < 1e-5 per point
    np.testing.assert_allclose(
        draws.mean(0), case["mean_test"], atol=5 * sd.max() / math.sqrt(4000)
    )
    assert idata.attrs["model"] == "blr" and idata.attrs["x"] == "[1, 2]"
    with pytest.raises(ValueError, match="point estimate"):
        dg.from_gaussian(**case, posterior={"s": np.ones((1, 4000))})


def test_from_gaussian_sampled_moments_feed_default_loo():
    import warnings

    import arviz as az

    case = _gaussian_case()
    S = 200
    lead = (2, S // 2)
    tile = lambda a: np.broadcast_to(a, lead + a.shape)  # noqa: E731
    y = case["y_train"]
    ll = stats.norm.logpdf(y, case["mean_train"], np.sqrt(case["var_train"] + case["noise_var"]))
    # draws that differ a little (ArviZ 1.x refuses constant importance-ratio tails)
    ll_draws = tile(ll) + 0.01 * np.random.default_rng(0).standard_normal(lead + ll.shape)
    idata = dg.from_gaussian(
        **{k: tile(v) if k.startswith(("mean", "var")) else v for k, v in case.items()},
        posterior={"s": np.ones(lead)},
        log_likelihood=ll_draws,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = az.loo(idata)  # no var_name needed: one log-likelihood variable
    elpd = res.elpd if dg.ARVIZ_1 else res["elpd_loo"]
    # nearly equal weights: the elpd is the sum of the (nearly constant) terms; 30 terms
    # each off by O(0.01^2)
    assert float(elpd) == pytest.approx(ll.sum(), abs=0.05)


def test_netcdf_roundtrip_is_atomic_and_refuses_overwrite(tmp_path):
    idata = dg.from_gaussian(**_gaussian_case(), n_draws=200, posterior=None)
    path = tmp_path / "model.nc"
    dg.save_netcdf(idata, path)
    assert sorted(os.listdir(tmp_path)) == ["model.nc"]  # no temporary left behind
    back = dg.load_netcdf(path)
    np.testing.assert_array_equal(
        _group(back, "posterior_predictive")["y"].values,
        _group(idata, "posterior_predictive")["y"].values,
    )
    with pytest.raises(FileExistsError, match="overwrite=True"):
        dg.save_netcdf(idata, path)
    dg.save_netcdf(idata, path, overwrite=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dg.save_netcdf(idata, tmp_path / "missing" / "m.nc")


def test_failed_write_leaves_nothing(tmp_path):
    class Broken:
        def to_netcdf(self, path):
            with open(path, "w") as fh:
                fh.write("partial")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        dg.save_netcdf(Broken(), tmp_path / "m.nc")
    assert os.listdir(tmp_path) == []


def _mcmc_like(seed, C=2, D=300, shift=0.0):
    """Two chains drawing the conjugate posterior of a normal mean."""
    rng = np.random.default_rng(seed)
    y = rng.normal(1.0, 1.0, size=25)
    post_sd = 1.0 / math.sqrt(1 + len(y))
    mu = (y.sum() / (1 + len(y))) + shift + post_sd * rng.standard_normal((C, D))
    ll = stats.norm.logpdf(y[None, None], mu[..., None], 1.0)
    return dg.to_inference_data(
        posterior={"mu": mu},
        log_likelihood={"y": ll},
        observed_data={"y": y},
        sample_stats={"diverging": np.zeros((C, D), bool)},
    )


def test_summary_convergence_loo_compare():
    good = _mcmc_like(0)
    conv = dg.convergence(good)
    assert conv["max_rhat"] < 1.02 and conv["min_ess_bulk"] > 300 and conv["n_params"] == 1
    s = dg.summary(good)
    assert {"mean", "r_hat", "ess_bulk"} <= set(s.columns)
    loo = dg.loo(good)
    assert set(loo) == {
        "elpd",
        "se",
        "p",
        "n_points",
        "n_samples",
        "max_pareto_k",
        "k_threshold",
        "n_bad_k",
        "warning",
    }
    assert 0.3 < loo["p"] < 3 and not loo["warning"]  # one effective parameter
    bad = _mcmc_like(0, shift=1.5)  # a posterior centred in the wrong place
    table = dg.compare({"good": good, "shifted": bad})
    assert list(table.columns) == [
        "rank",
        "elpd",
        "se",
        "p",
        "elpd_diff",
        "dse",
        "weight",
        "warning",
    ]
    assert table.index[0] == "good" and table.loc["shifted", "elpd_diff"] > 5
    # chains that disagree are caught by R-hat
    split = _mcmc_like(0)
    mu = _group(split, "posterior")["mu"].values.copy()
    mu[1] += 1.0
    split = dg.to_inference_data(posterior={"mu": mu})
    assert dg.convergence(split)["max_rhat"] > 1.1


def _planted_tails(xis, n_samples, seed=0):
    """Log-likelihoods whose importance ratios 1/p(y_i | draw) have generalised-Pareto
    tails of shape xi_i (quantiles, so the tails are exact up to ArviZ's prior on k)."""
    rng = np.random.default_rng(seed)
    u = (np.arange(n_samples) + 0.5) / n_samples
    cols = []
    for xi in xis:
        r = -np.log1p(-u) if xi == 0 else ((1 - u) ** (-xi) - 1) / xi
        cols.append(-np.log1p(r)[rng.permutation(n_samples)])
    return dg.to_inference_data(
        posterior={"mu": np.zeros((1, n_samples))},
        log_likelihood={"y": np.stack(cols, -1)[None]},
        observed_data={"y": np.zeros(len(xis))},
    )


def test_pareto_k_threshold_depends_on_the_number_of_draws():
    # min(1 - 1/log10(S), 0.7): Vehtari et al. (2024), ArviZ's good_k
    assert dg.pareto_k_threshold(60) == pytest.approx(1 - 1 / math.log10(60))
    assert dg.pareto_k_threshold(100) == pytest.approx(0.5)
    assert dg.pareto_k_threshold(4000) == 0.7
    assert dg.pareto_k_threshold(10) == 0.0 and dg.pareto_k_threshold(1) == -math.inf
    with pytest.raises(ValueError, match="positive"):
        dg.pareto_k_threshold(0)
    # planted: at S = 60 (threshold 0.44) tails of shape 0.6 give k ~ 0.53, between the
    # sample-size threshold and the fixed 0.7 that used to be applied
    idata = _planted_tails([0.0, 0.2, 0.6, 0.6, 1.5], 60)
    res = dg.loo(idata)
    from ntk_bayes.diagnostics._arviz import az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns about the planted high k
        ref = az.loo(idata, var_name="y", pointwise=True)
    k = np.asarray(ref.pareto_k if dg.ARVIZ_1 else ref["pareto_k"], np.float64)
    assert np.sum((k > res["k_threshold"]) & (k <= 0.7)) == 2  # the two planted 0.6 tails
    assert res["n_samples"] == 60 and res["k_threshold"] == pytest.approx(0.4376, abs=1e-4)
    assert res["n_bad_k"] == int(np.sum(k > res["k_threshold"])) == 3 and res["warning"]
    good_k = ref.good_k if dg.ARVIZ_1 else ref["good_k"]
    assert res["k_threshold"] == pytest.approx(good_k)  # the threshold ArviZ warns at
    # the same tails with many draws: the threshold is 0.7, and the 1.5 tail stays bad
    many = dg.loo(_planted_tails([0.0, 0.2, 1.5], 4000))
    assert many["k_threshold"] == 0.7 and many["n_bad_k"] == 1


def test_held_out_lpd_and_its_errors():
    rng = np.random.default_rng(0)
    f_test = rng.normal(size=(2, 50, 6))
    y_test = rng.normal(size=6)
    idata = dg.from_latent_samples(
        f_train=rng.normal(size=(2, 50, 4)),
        y_train=rng.normal(size=4),
        f_test=f_test,
        y_test=y_test,
        noise_std=0.5,
    )
    want = np.log(np.mean(stats.norm.pdf(y_test, f_test, 0.5), axis=(0, 1)))
    np.testing.assert_allclose(dg.held_out_lpd(idata), want, rtol=1e-10)
    # a Gaussian predictive stores no log-likelihood: say so, and what produces one
    point = dg.from_gaussian(**_gaussian_case())
    with pytest.raises(ValueError, match="no 'log_likelihood' group.*from_latent_samples"):
        dg.held_out_lpd(point)
    no_test = dg.from_latent_samples(
        f_train=rng.normal(size=(1, 5, 4)), y_train=rng.normal(size=4), noise_std=0.5
    )
    with pytest.raises(ValueError, match="no variable 'y_test' \\(it has 'y'\\)"):
        dg.held_out_lpd(no_test)


def test_from_class_probs():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=(2, 50, 20))
    y = rng.integers(0, 3, size=20)
    idata = dg.from_class_probs(probs_train=p, y_train=y, probs_test=p[:, :, :5], y_test=y[:5])
    ll = _group(idata, "log_likelihood")["y"].values
    np.testing.assert_allclose(
        ll, np.log(np.take_along_axis(p, y[None, None, :, None], -1)[..., 0])
    )
    draws = _group(idata, "posterior_predictive")["y_test"].values
    assert draws.shape == (2, 50, 5) and draws.min() >= 0 and draws.max() <= 2


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({}, ValueError, "nothing to convert"),
        ({"posterior": {"a": np.zeros(3)}}, ValueError, "leading \\(chain, draw\\)"),
        ({"posterior": {"a": np.zeros((2, 3)), "b": np.zeros((1, 3))}}, ValueError, "share"),
        (
            {"log_likelihood": {"y": np.zeros((1, 3, 4))}, "observed_data": {"y": np.zeros(5)}},
            ValueError,
            "must agree",
        ),
        ({"posterior": [1, 2]}, TypeError, "dict of arrays"),
        ({"posterior": {"net/W": np.zeros((1, 2))}}, ValueError, "containing '/'"),
        ({"posterior": {"a": np.array([[object()]])}}, TypeError, "hold numbers"),
    ],
)
def test_to_inference_data_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        dg.to_inference_data(**kwargs)


def test_from_gaussian_errors():
    case = _gaussian_case()
    with pytest.raises(ValueError, match=">= 0"):
        dg.from_gaussian(**{**case, "var_test": -np.ones(12)})
    with pytest.raises(ValueError, match="noise_std"):
        dg.from_gaussian(**{**case, "noise_var": np.ones(3)})
    with pytest.raises(ValueError, match="together"):
        dg.from_latent_samples(
            f_train=np.zeros((1, 2, 3)),
            y_train=np.zeros(3),
            f_test=np.zeros((1, 2, 3)),
            noise_std=1.0,
        )


def test_calibrate_psis_loo_uses_the_threshold_for_its_draws():
    """calibrate's own PSIS-LOO (its LOO table and the K-fold trigger) counts bad points
    against the same bound as dg.loo: at 60 draws the two planted 0.6 tails are bad."""
    from ntk_bayes.calibrate._scoring import psis_loo

    idata = _planted_tails([0.0, 0.2, 0.6, 0.6, 1.5], 60)
    res = psis_loo(idata)
    assert res.k_threshold == pytest.approx(0.4376, abs=1e-4)
    assert res.n_bad_k == dg.loo(idata)["n_bad_k"] == 3
    assert "3 Pareto k > 0.44 (60 draws)" in res.note
    assert res.as_dict()["pareto_k_threshold"] == res.k_threshold


def test_a_wrong_joint_covariance_is_named_in_the_verdict():
    from ntk_bayes.calibrate._scoring import verdict
    from ntk_bayes.diagnostics._calibration import CalibrationCheck

    one = CalibrationCheck(("joint_covariance",), {}, {"n_splits": 1}, 0.05)
    assert verdict(one, None) == "wrong joint covariance"
    st = {"n_splits": 3, "rejecting_splits": {"joint_covariance": 2, "biased": 1}}
    both = CalibrationCheck(("biased", "joint_covariance"), {}, st, 0.05)
    assert verdict(both, None) == "biased (1/3 splits), wrong joint covariance (2/3 splits)"
    # a wrong width fails the joint test too: then the width is what is named
    wide = CalibrationCheck(("overconfident", "joint_covariance"), {}, {"n_splits": 1}, 0.05)
    assert verdict(wide, None) == "over-confident"

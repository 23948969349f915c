"""Calibration metrics, calibration checks, ArviZ conversion and plots.

::

    from ntk_bayes import diagnostics as dg
    pred = dg.GaussianPredictive(mean, std)        # or dg.SamplePredictive(draws, noise_std)
    dg.regression_metrics(y_test, pred)            # rmse, nlpd, crps, coverage_90, ...
    dg.calibration_check(y_test, pred).flags       # () when calibrated
    dg.classification_metrics(y_test, probs)       # accuracy, nll, brier, ece
    idata = dg.from_gaussian(...)                  # ArviZ InferenceData / DataTree
    dg.loo(idata), dg.compare({"a": idata_a, "b": idata_b})
"""

from ._arviz import ARVIZ_1 as ARVIZ_1
from ._arviz import from_class_probs as from_class_probs
from ._arviz import from_gaussian as from_gaussian
from ._arviz import from_latent_samples as from_latent_samples
from ._arviz import from_numpyro as from_numpyro
from ._arviz import to_inference_data as to_inference_data
from ._arviz_tools import compare as compare
from ._arviz_tools import convergence as convergence
from ._arviz_tools import held_out_lpd as held_out_lpd
from ._arviz_tools import load_netcdf as load_netcdf
from ._arviz_tools import loo as loo
from ._arviz_tools import pareto_k_threshold as pareto_k_threshold
from ._arviz_tools import save_netcdf as save_netcdf
from ._arviz_tools import summary as summary
from ._calibration import ALPHA as ALPHA
from ._calibration import CalibrationCheck as CalibrationCheck
from ._calibration import calibration_check as calibration_check
from ._calibration import classification_check as classification_check
from ._calibration import joint_calibration_check as joint_calibration_check
from ._calibration import pit_ecdf_bands as pit_ecdf_bands
from ._classification import Reliability as Reliability
from ._classification import accuracy as accuracy
from ._classification import brier as brier
from ._classification import classification_metrics as classification_metrics
from ._classification import nll as nll
from ._classification import reliability as reliability
from ._plots import plot_coverage as plot_coverage
from ._plots import plot_pit_ecdf as plot_pit_ecdf
from ._plots import plot_predictive_bands as plot_predictive_bands
from ._plots import plot_reliability as plot_reliability
from ._predictive import GaussianPredictive as GaussianPredictive
from ._predictive import SamplePredictive as SamplePredictive
from ._regression import LEVELS as LEVELS
from ._regression import coverage as coverage
from ._regression import crps as crps
from ._regression import interval_width as interval_width
from ._regression import mean_coverage_error as mean_coverage_error
from ._regression import nlpd as nlpd
from ._regression import pit as pit
from ._regression import predictive_distance as predictive_distance
from ._regression import regression_metrics as regression_metrics
from ._regression import rmse as rmse

__all__ = [
    "ALPHA",
    "ARVIZ_1",
    "CalibrationCheck",
    "GaussianPredictive",
    "LEVELS",
    "Reliability",
    "SamplePredictive",
    "accuracy",
    "brier",
    "calibration_check",
    "classification_check",
    "classification_metrics",
    "compare",
    "convergence",
    "coverage",
    "crps",
    "from_class_probs",
    "from_gaussian",
    "from_latent_samples",
    "from_numpyro",
    "held_out_lpd",
    "interval_width",
    "joint_calibration_check",
    "load_netcdf",
    "loo",
    "mean_coverage_error",
    "nll",
    "nlpd",
    "pareto_k_threshold",
    "pit",
    "pit_ecdf_bands",
    "plot_coverage",
    "plot_pit_ecdf",
    "plot_predictive_bands",
    "plot_reliability",
    "predictive_distance",
    "regression_metrics",
    "reliability",
    "rmse",
    "save_netcdf",
    "summary",
    "to_inference_data",
]

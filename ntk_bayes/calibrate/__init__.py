"""The pipeline behind ``ntk-bayes calibrate`` and ``ntk-bayes width-sweep``.

::

    from ntk_bayes import calibrate, datasets
    ds = datasets.load("toy1d", seed=0)
    run = calibrate.run_calibration(ds, calibrate.parse_arch("relu-2x512"))
    calibrate.write_report(run, "out_dir")          # report.md, metrics.json, *.nc, *.png

    sweep = calibrate.width_sweep(ds, calibrate.parse_arch("relu-1x512"), [4, 64, 512])

Models, their hyperparameters and the files written are described in ``docs/cli.md``.
"""

from . import _classification, _regression  # noqa: F401  (they register the models)
from ._archs import PRESETS as PRESETS
from ._archs import Architecture as Architecture
from ._archs import hyperparameters as hyperparameters
from ._archs import parse_arch as parse_arch
from ._common import ModelResult as ModelResult
from ._common import Settings as Settings
from ._files import write_report as write_report
from ._pipeline import CalibrationRun as CalibrationRun
from ._pipeline import available_models as available_models
from ._pipeline import run_calibration as run_calibration
from ._registry import ModelSpec as ModelSpec
from ._registry import register as register
from ._report import markdown_table as markdown_table
from ._report import results_table as results_table
from ._scoring import Evaluation as Evaluation
from ._scoring import evaluate as evaluate
from ._sweep import DEFAULT_WIDTHS as DEFAULT_WIDTHS
from ._sweep import WidthSweep as WidthSweep
from ._sweep import sweep_figures as sweep_figures
from ._sweep import sweep_markdown as sweep_markdown
from ._sweep import sweep_settings as sweep_settings
from ._sweep import width_sweep as width_sweep

#: model names in report order, from the registry (``register`` adds more)
REGRESSION_MODELS = available_models("regression")
CLASSIFICATION_MODELS = available_models("classification")

__all__ = [
    "Architecture",
    "CLASSIFICATION_MODELS",
    "CalibrationRun",
    "DEFAULT_WIDTHS",
    "Evaluation",
    "ModelResult",
    "ModelSpec",
    "PRESETS",
    "REGRESSION_MODELS",
    "Settings",
    "WidthSweep",
    "available_models",
    "evaluate",
    "hyperparameters",
    "markdown_table",
    "parse_arch",
    "register",
    "results_table",
    "run_calibration",
    "sweep_figures",
    "sweep_markdown",
    "sweep_settings",
    "width_sweep",
    "write_report",
]

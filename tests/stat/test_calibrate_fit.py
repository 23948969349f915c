"""calibrate's model fits on the embedded data (optimisation runs: moved from tests/unit)."""

import numpy as np

from ntk_bayes import datasets
from ntk_bayes.calibrate import Settings, parse_arch


# ---- the sparse model with few inducing points ------------------------------------------
def test_sgpr_fits_its_kernel_with_few_inducing_points():
    """8 inducing points, all on training inputs: the kernel hyperparameters are fitted
    (calibrate used to fall back to fitting the noise alone when the bound went NaN)."""
    from ntk_bayes.calibrate._common import Context, grid_for
    from ntk_bayes.calibrate._regression import fit_sgpr

    ds = datasets.load("toy1d", seed=0)
    arch = parse_arch("relu-1x512")
    ctx = Context(ds, arch, Settings.quick(inducing=8, quiet=True), grid_for(ds))
    res = fit_sgpr(ctx)
    info = res.info
    assert info["inducing_points"] == 8 and np.isfinite(info["elbo"])
    assert info["hyperparameters"]["W_std_0"] != arch.W_std
    assert info["hyperparameters"]["b_std_0"] != arch.b_std
    assert 0.0 < info["noise_var"] < 1.0

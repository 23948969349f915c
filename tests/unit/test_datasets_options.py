"""Loader options and dtypes: a misspelled option names itself and the valid ones; the
radon table follows the float conventions and refuses non-float dtypes."""

import numpy as np
import pytest
from conftest import enable_x64

from ntk_bayes import datasets


@pytest.mark.parametrize(
    "name, option, valid",
    [
        ("toy1d", "noise_sd", "noise_std"),
        ("concrete", "flatten", "no options"),
        ("digits", "n_classes", "n_class"),
        ("breast_cancer", "n", "no options"),
    ],
)
def test_unknown_loader_option_names_itself_and_the_valid_ones(name, option, valid):
    """A typo used to surface as `finalize() got an unexpected keyword argument`."""
    with pytest.raises(TypeError, match=rf"{name}.*`{option}`.*{valid}"):
        datasets.load(name, **{option: 1})


def test_known_loader_options_still_work():
    assert datasets.load("toy1d", noise_std=0.1, n=40).extra["noise_std"] == 0.1
    assert datasets.load("digits", n_class=2, flatten=True, n_max=10).input_shape == (64,)


@pytest.mark.parametrize("dtype", [int, np.int32, "float16", bool])
def test_load_radon_refuses_non_float_dtypes(dtype):
    """dtype=int truncated the log radon readings to integers, silently."""
    with pytest.raises(ValueError, match="dtype"):
        datasets.load_radon(dtype=dtype)


def test_load_radon_follows_the_default_float():
    assert datasets.load_radon().log_radon.dtype == np.float32
    with enable_x64():
        d = datasets.load_radon()
        assert d.log_radon.dtype == np.float64 and d.log_uranium.dtype == np.float64
        assert d.floor.dtype == np.float64
    assert datasets.load_radon(np.float64).log_radon.dtype == np.float64
    d = datasets.load_radon()
    # the survey as Gelman & Hill (2007) describe it
    assert d.county.shape == (919,) and d.num_counties == 85
    assert np.bincount(d.county).min() >= 1

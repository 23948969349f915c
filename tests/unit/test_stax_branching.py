"""Fan-ins whose kernel would need cross terms between branches are refused (issue 15)."""

import pytest
from _nets import conv_net, fc_inputs, images

from ntk_bayes import stax


def _fan(*branches, fan_in=None):
    return stax.serial(
        stax.Dense(8),
        stax.FanOut(len(branches)),
        stax.parallel(*branches),
        fan_in or stax.FanInSum(),
    )


REFUSED = {
    "two_relu_branches": lambda: _fan(
        stax.serial(stax.Dense(8), stax.Relu()), stax.serial(stax.Dense(8), stax.Relu())
    ),
    "relu_and_identity": lambda: _fan(stax.Relu(), stax.Identity()),
    # Shared Gaussian input twice: the sum is 2f, whose kernel is 4Σ, not 2Σ.
    "identity_twice": lambda: _fan(stax.Identity(), stax.Identity()),
    "erf_and_identity_of_input": lambda: stax.serial(
        stax.FanOut(2),
        stax.parallel(stax.serial(stax.Dense(3), stax.Erf()), stax.Identity()),
        stax.FanInSum(),
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_fan_in_of_correlated_branches_is_refused(name):
    net = REFUSED[name]()
    with pytest.raises(ValueError, match=r"FanInSum: branches \[0, 1\].*own Dense or Conv"):
        net.kernel_fn(fc_inputs(3), None, "nngp")


ACCEPTED = {
    "residual": lambda: _fan(stax.serial(stax.Relu(), stax.Dense(8)), stax.Identity()),
    "two_dense_heads": lambda: _fan(
        stax.serial(stax.Relu(), stax.Dense(8)), stax.serial(stax.Erf(), stax.Dense(8))
    ),
    # Channel concatenation has no cross terms: each channel comes from one branch.
    "concat_relu_branches": lambda: _fan(
        stax.serial(stax.Dense(8), stax.Relu()), stax.Relu(), fan_in=stax.FanInConcat()
    ),
    # A nested sum of independent branches is independent of its sibling.
    "nested": lambda: _fan(
        _fan(stax.Dense(8), stax.serial(stax.Relu(), stax.Dense(8))), stax.Relu()
    ),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_fan_in_with_at_most_one_dependent_branch_is_accepted(name):
    k = ACCEPTED[name]().kernel_fn(fc_inputs(3), None, "nngp")
    assert k.shape == (3, 3)


def test_spatial_concat_refuses_correlated_branches_only_in_full_layout():
    net = stax.serial(
        conv_net(4),
        stax.FanOut(2),
        stax.parallel(stax.Relu(), stax.Identity()),
        stax.FanInConcat(axis=1),
    )
    x = images(2, (3, 3, 2))
    assert net.kernel_fn(x, None, "nngp", spatial_output="diagonal").shape == (2, 2, 6, 3)
    with pytest.raises(ValueError, match=r"FanInConcat\(axis=1\): branches \[0, 1\]"):
        net.kernel_fn(x, None, "nngp", spatial_output="full")

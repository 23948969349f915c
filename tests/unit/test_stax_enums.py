"""neural-tangents' option enums are accepted wherever their names are."""

import jax.numpy as jnp
import numpy as np
import pytest

from ntk_bayes import stax


def _same_kernel(a, b, x):
    ka, kb = a.kernel_fn(x, None, "nngp"), b.kernel_fn(x, None, "nngp")
    np.testing.assert_array_equal(np.asarray(ka), np.asarray(kb))


@pytest.mark.parametrize("pad", list(stax.Padding))
def test_padding_enum_is_its_name(pad):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 3)), jnp.float32)
    by_enum = stax.serial(stax.Conv(4, (3,), padding=pad), stax.Relu(), stax.Flatten())
    by_name = stax.serial(stax.Conv(4, (3,), padding=pad.value), stax.Relu(), stax.Flatten())
    _same_kernel(by_enum, by_name, x)


def test_attention_and_aggregate_enums_are_their_names():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 3)), jnp.float32)
    for mech in stax.AttentionMechanism:
        kw = dict(n_chan_out=4, n_chan_key=4, n_chan_val=4, n_heads=1)
        a = stax.serial(stax.GlobalSelfAttention(attention_mechanism=mech, **kw), stax.Flatten())
        b = stax.serial(
            stax.GlobalSelfAttention(attention_mechanism=mech.value, **kw), stax.Flatten()
        )
        _same_kernel(a, b, x)
    for impl in stax.AggregateImplementation:
        assert stax.Aggregate(implementation=impl).implementation == impl.value
    assert {m.value for m in stax.Padding} == {"CIRCULAR", "SAME", "VALID"}

"""Masked inputs (``mask_constant``) against neural-tangents 0.6.5 and their contract.

Reference values: ``tools/make_nt_reference_mask.py`` -> ``tests/data/nt_mask.npz``
(networks in ``tests/_mask_nets.py``: variable-length sequences and images padded with
the constant through Conv and pooling, attention, Dense and global pooling, fan-ins).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _mask_nets import build, inputs, reference
from _nt_aggregate import rel
from conftest import enable_x64

from ntk_bayes import stax

GET = ("nngp", "ntk")


@pytest.mark.parametrize("name", ["conv_gap", "attn_pos_sum", "layernorm_seq", "fanin_concat"])
def test_matches_neural_tangents_x2_given(name):
    """x1 against a different x2 (two sets of masks), float64."""
    with enable_x64():
        x1, x2, c = inputs(name)
        k = build(stax, name).kernel_fn(x1, x2, GET, mask_constant=c)
        for g in GET:
            assert rel(getattr(k, g), reference()[f"{name}/{g}12"]) <= 1e-10, g


def test_padding_length_does_not_matter():
    """GlobalAvgPool averages over a point's own positions: one point padded to 8 or to
    12 positions has the same kernel. (That the masks matter at all: the zero-padded
    kernels of these cases differ from neural-tangents' masked ones by 15-80%, and
    tests/stat/test_stax_mask_mc.py shows one 25 standard errors off.)"""
    x1, _, c = inputs("conv_gap")
    net = build(stax, "conv_gap")
    one = x1[1:2]
    longer = np.concatenate([one, np.full((1, 4, one.shape[-1]), c)], axis=1)
    a = net.kernel_fn(one, None, "nngp", mask_constant=c)
    b = net.kernel_fn(longer, None, "nngp", mask_constant=c)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)


def test_get_none_returns_the_masked_state():
    x1, x2, c = inputs("dense_gap")
    net = build(stax, "dense_gap")
    k = net.kernel_fn(x1, x2, mask_constant=c)
    np.testing.assert_array_equal(k.ntk, net.kernel_fn(x1, x2, "ntk", mask_constant=c))


def test_apply_masked_array_and_unmask_fn():
    """apply_fn with mask_constant returns a MaskedArray as neural-tangents; unmask_fn
    zeroes the masked outputs; padding values do not reach the unmasked outputs."""
    x1, _, c = inputs("conv_gap")
    net = stax.serial(stax.Conv(4, (3,), padding="SAME", b_std=0.1), stax.Relu())
    init_fn, apply_fn, _ = net
    _, params = init_fn(jax.random.PRNGKey(0), x1.shape)
    out = apply_fn(params, x1, mask_constant=c)
    assert isinstance(out, stax.MaskedArray)
    pos = np.all(x1 == c, axis=-1)
    np.testing.assert_array_equal(np.asarray(out.mask)[..., 0], pos)
    plain = stax.unmask_fn(apply_fn)(params, x1, mask_constant=c)
    assert np.all(np.asarray(plain)[pos] == 0)
    other = np.where(x1 == c, 123.0, x1)  # a different padding value, same positions
    again = stax.unmask_fn(apply_fn)(params, other, mask_constant=123.0)
    np.testing.assert_allclose(np.asarray(again), np.asarray(plain), rtol=1e-6)


def test_apply_global_avg_pool_averages_unmasked():
    x = jnp.array([[[1.0], [3.0], [-7.0], [-7.0]]])
    _, apply_fn, _ = stax.GlobalAvgPool()
    out = apply_fn((), x, mask_constant=-7.0)
    np.testing.assert_allclose(np.asarray(out.masked_value), [[2.0]])


def test_jit_and_grad_through_masked_kernel():
    x1, x2, c = inputs("conv_gap")
    net = build(stax, "conv_gap")

    def f(w):
        n = stax.serial(
            stax.Conv(8, (3,), padding="SAME", W_std=w), stax.Relu(), stax.GlobalAvgPool()
        )
        return jnp.sum(n.kernel_fn(x1, x2, "ntk", mask_constant=c))

    g = jax.grad(f)(1.3)
    assert np.isfinite(float(g))
    k = jax.jit(lambda a, b: net.kernel_fn(a, b, "nngp", mask_constant=c))(x1, x2)
    np.testing.assert_allclose(np.asarray(k), reference()["conv_gap/nngp12"], rtol=1e-5)


# ---- bad input -------------------------------------------------------------------------


def test_rejects_bad_mask_constant():
    x1, _, _ = inputs("dense_gap")
    net = build(stax, "dense_gap")
    with pytest.raises(ValueError, match="`mask_constant` must be a scalar"):
        net.kernel_fn(x1, None, "nngp", mask_constant=np.array([-7.0, 0.0]))
    with pytest.raises(TypeError, match="`mask_constant` must be a real number"):
        net.kernel_fn(x1, None, "nngp", mask_constant="pad")
    with pytest.raises(TypeError, match="`mask_constant` must be a real number"):
        net.apply_fn(net.init_fn(jax.random.PRNGKey(0), x1.shape)[1], x1, mask_constant=True)


def test_rejects_a_point_masked_everywhere():
    x1, _, c = inputs("dense_gap")
    x1[2] = c
    net = build(stax, "dense_gap")
    with pytest.raises(ValueError, match="`x1` point 2 .* every position"):
        net.kernel_fn(x1, None, "nngp", mask_constant=c)


def test_unmasked_nan_is_still_refused():
    """NaN as the constant masks NaN padding (as in neural-tangents); with another
    constant a NaN input stays an error."""
    x1, _, _ = inputs("dense_gap_nan")
    net = build(stax, "dense_gap_nan")
    with pytest.raises(ValueError, match="x1"):
        net.kernel_fn(x1, None, "nngp", mask_constant=-7.0)


@pytest.mark.parametrize(
    "layer",
    [
        stax.ConvTranspose(4, (2,)),
        stax.ImageResize((-1, 14, -1), "linear"),
        stax.repeat(stax.serial(stax.Dense(4), stax.Relu()), 2),
        stax.Aggregate(),
    ],
    ids=["ConvTranspose", "ImageResize", "Repeat", "Aggregate"],
)
def test_unsupported_layers_refuse_by_name(layer):
    x1, _, c = inputs("dense_gap")
    net = stax.serial(stax.Dense(4), layer, stax.GlobalAvgPool())
    name = type(layer).__name__
    with pytest.raises(ValueError, match=f"stax.{name} does not support masked inputs"):
        net.kernel_fn(x1, None, "nngp", mask_constant=c)
    with pytest.raises(ValueError, match=f"stax.{name} does not support masked inputs"):
        net.apply_fn(None, x1, mask_constant=c)


def test_kernel_composition_keeps_the_masks():
    """get=None keeps the output's masks: the head's state continued by the tail equals
    the whole network (neural-tangents' values); mask_constant again is refused."""
    x1, x2, c = inputs("conv_gap")
    net = build(stax, "conv_gap")
    head, tail = stax.serial(*net.layers[:4]), stax.serial(*net.layers[4:])
    with enable_x64():
        k = head.kernel_fn(x1, x2, None, mask_constant=c, spatial_output="full")
        assert rel(tail.kernel_fn(k, get="ntk"), reference()["conv_gap/ntk12"]) <= 1e-10
    with pytest.raises(ValueError, match="already carries the masks"):
        tail.kernel_fn(k, mask_constant=c)

"""Masked inputs (``mask_constant``): analytic kernels against Monte Carlo estimates of
wide finite networks whose ``apply_fn`` gets the same ``mask_constant``."""

import types

import numpy as np
import pytest
from _mc import mc_z_scores, z_against
from _nets import WIDE_ATTENTION, tokens

from ntk_bayes import stax

PAD = -7.0


def _masked(net, c):
    """``net`` with ``mask_constant=c`` baked into its kernel_fn and apply_fn (the finite
    twin's outputs unmasked: padded outputs are 0, as ``stax.unmask_fn`` gives)."""
    apply_fn = stax.unmask_fn(net.apply_fn)
    return types.SimpleNamespace(
        init_fn=net.init_fn,
        apply_fn=lambda params, x, **kw: apply_fn(params, x, mask_constant=c, **kw),
        kernel_fn=lambda x1, x2, get: net.kernel_fn(x1, x2, get, mask_constant=c),
    )


def _padded(n, lengths, seed):
    x = np.array(tokens(n, t=6, seed=seed))
    for i, length in enumerate(lengths):
        x[i, length:] = PAD
    return x


def _matches_monte_carlo(net, seeds):
    """Sequences of lengths 6, 4, 2 and 5, 3 padded with PAD; assert the masked kernels
    agree with the Monte Carlo estimate and return ``(k, mean, se, zeroed)``: the
    analytic kernels, the estimate and its standard error, and the NTK of the same
    inputs zero-padded (masks ignored), for each test's check that masks matter."""
    x1, x2 = _padded(3, [6, 4, 2], seed=seeds[0]), _padded(2, [5, 3], seed=seeds[1])
    z, k, mean, se = mc_z_scores(_masked(net, PAD), x1, x2)
    for name in ("nngp", "ntk"):
        # 6 entries: per-entry two-sided tail at 4.5 sd is 6.8e-6, false alarm < 1e-4
        # (64 samples: a t(63) tail at 4.5 is ~3e-5, so < 2e-4).
        assert z[name].max() < 4.5, (name, z[name].max(), getattr(k, name), getattr(mean, name))
    zeroed = net.kernel_fn(np.where(x1 == PAD, 0, x1), np.where(x2 == PAD, 0, x2), "ntk")
    return k, mean, se, zeroed


def test_conv_attention_gap_matches_monte_carlo():
    """Conv (the mask of each window's centre), softmax attention (masked keys get no
    weight) and GlobalAvgPool (the mean over unmasked positions) on sequences of
    lengths 6, 4, 2 and 5, 3."""
    net = stax.serial(
        stax.Conv(128, (3,), padding="SAME", W_std=1.3, b_std=0.2),
        stax.Relu(),
        stax.GlobalSelfAttention(**WIDE_ATTENTION),
        stax.GlobalAvgPool(),
    )
    k, _, _, zeroed = _matches_monte_carlo(net, seeds=(0, 1))
    # The masks matter: unmasked (zero-padded) kernels are many standard errors away.
    assert np.max(np.abs(np.asarray(zeroed) - np.asarray(k.ntk))) > 0.05 * np.abs(k.ntk).max()


# ~90 s on the 2-core VM (the default tier's costliest test): the slow tier runs it; the
# default tier keeps the masked Monte Carlo check above and the masked grid against
# neural-tangents (test_stax_mask_nt.py), which covers LayerNorm over positions.
@pytest.mark.slow
def test_layernorm_pooling_and_fan_in_match_monte_carlo():
    """LayerNorm over positions and channels (statistics over unmasked positions), a SAME
    average pool (zeros at masked positions, the window centre's mask), channel
    concatenation of two branches and GlobalAvgPool, on lengths 6, 4, 2 and 5, 3."""
    net = stax.serial(
        stax.Conv(128, (3,), padding="SAME", W_std=1.3, b_std=0.2),
        stax.LayerNorm(axis=(1, 2)),
        stax.Relu(),
        stax.FanOut(2),
        stax.parallel(
            stax.AvgPool((2,), padding="SAME"),
            stax.Conv(128, (1,), W_std=1.1, b_std=0.1),
        ),
        stax.FanInConcat(axis=-1),
        stax.Conv(128, (3,), padding="SAME", W_std=1.2, b_std=0.1),
        stax.Erf(),
        stax.GlobalAvgPool(),
    )
    _, mean, se, zeroed = _matches_monte_carlo(net, seeds=(2, 3))
    # Power: the zero-padded kernel (masks ignored, 14-15% off) is rejected by the same MC.
    assert z_against(zeroed, mean, se, "ntk") > 4.5

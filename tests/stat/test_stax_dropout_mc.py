"""Dropout kernels against Monte Carlo networks that draw their own masks."""

import jax
import numpy as np
import pytest
from _mc import mc_z_scores
from _nets import dropout_fc, dropout_inputs

import ntk_bayes as nb
from ntk_bayes import stax

KEY = jax.random.PRNGKey(3)


def _z_scores(net, x1, x2):
    """|MC - analytic| / MC standard error for nngp and ntk. With Dropout between the
    last hidden layer and the readout, the readout is Gaussian given the hidden units
    and masks, so the Monte Carlo mean is unbiased at any width."""
    z, k, _, _ = mc_z_scores(net, x1, x2, n_samples=256, samples_per_step=32, key=KEY)
    return k, z


@pytest.mark.parametrize("same", [True, False])
def test_train_mode_matches_monte_carlo_masks(same):
    x1 = dropout_inputs(4)
    x2 = None if same else dropout_inputs(3, seed=1)
    k, z = _z_scores(dropout_fc(0.6), x1, x2)
    # 4.5 sd over at most 2 x 16 entries, t with 255 dof: false alarm < 5e-4 (union bound)
    assert max(z["nngp"].max(), z["ntk"].max()) < 4.5, z
    # The two-sided part: a point with itself gains 1/rate over the no-dropout kernel
    # (its mask is shared); different points do not. The MC test above sees the gain.
    ref = dropout_fc(1.0).kernel_fn(x1, x2, ("nngp", "ntk"))
    ratio = np.asarray(k.nngp - 0.2**2) / np.asarray(ref.nngp - 0.2**2)
    expect = np.where(np.eye(*ratio.shape, dtype=bool) & same, 1 / 0.6, 1.0)
    np.testing.assert_allclose(ratio, expect, rtol=1e-4)


def test_blocked_monte_carlo_keeps_the_shared_self_pair_mask():
    """Cut into blocks of 2 inputs (5 points: blocks of 2, 2, 1), the Monte Carlo
    estimate of a train-mode Dropout network still matches the analytic kernel: the
    diagonal blocks are estimates of x1 with itself, so each point's mask is shared with
    itself there and its self-pair gains 1/rate, and the blocks off the diagonal pair
    different points (each with its own mask)."""
    net, x = dropout_fc(0.6), dropout_inputs(5, seed=5)
    z, _, mean, se = mc_z_scores(
        net, x, None, n_samples=256, samples_per_step=32, key=KEY, batch_size=2
    )
    # 4.5 sd over 2 x 25 entries, t with 255 dof: false alarm < 6e-4 (union bound)
    assert max(z["nngp"].max(), z["ntk"].max()) < 4.5, z
    # Power: the kernel without the self-pair gain (no Dropout) is rejected on the
    # diagonal, the blocks of one input included (z ~ 13-40 at these seeds).
    plain = dropout_fc(1.0).kernel_fn(x, None, ("nngp", "ntk"))
    for name in ("nngp", "ntk"):
        m, s = (np.asarray(getattr(o, name), np.float64) for o in (mean, se))
        z_diag = np.abs(np.diag(m) - np.diag(np.asarray(getattr(plain, name)))) / np.diag(s)
        assert z_diag.min() > 8, (name, z_diag)


def test_dropout_before_a_hidden_layer_matches_monte_carlo():
    """Dropout's 1/rate variance gain flows through a later nonlinearity: a second
    hidden layer sees larger self-variances and so less correlated points."""
    net = stax.serial(
        stax.Dense(256, W_std=1.4, b_std=0.2),
        stax.Relu(),
        stax.Dropout(0.5),
        stax.Dense(256, W_std=1.4, b_std=0.2),
        stax.Erf(),
        stax.Dense(4),
    )
    x = dropout_inputs(3, seed=2)
    k = net.kernel_fn(x, None, ("nngp", "ntk"))
    mc = nb.monte_carlo_kernel_fn(net.init_fn, net.apply_fn, KEY, 256, samples_per_step=32)
    mean, se = mc(x, None, ("nngp", "ntk"), with_stderr=True)
    for name in ("nngp", "ntk"):
        a, m, s = (np.asarray(getattr(o, name), np.float64) for o in (k, mean, se))
        # The second hidden layer is Gaussian only as width -> inf: allow its O(1/width)
        # bias on top of the statistical error.
        assert np.all(np.abs(m - a) < 4.5 * s + 0.02 * np.abs(a)), (name, a, m, s)
    # The same check rejects the kernel that ignores Dropout.
    w = np.asarray(stax.serial(*net.layers[:2], *net.layers[3:]).kernel_fn(x, None, "nngp"))
    m, s = np.asarray(mean.nngp, np.float64), np.asarray(se.nngp, np.float64)
    assert not np.all(np.abs(m - w) < 4.5 * s + 0.02 * np.abs(w))


def test_conv_dropout_scales_same_positions_only():
    """Spatial inputs: masks are per unit and position, so only same-position entries
    of a point with itself gain 1/rate (checked by Monte Carlo through a GAP readout)."""
    net = stax.serial(
        stax.Conv(128, (3,), padding="SAME", W_std=1.3, b_std=0.1),
        stax.Relu(),
        stax.Dropout(0.7),
        stax.GlobalAvgPool(),
        stax.Dense(4, W_std=1.2),
    )
    x = dropout_inputs(3, (5, 2), seed=4)
    _, z = _z_scores(net, x, None)
    assert max(z["nngp"].max(), z["ntk"].max()) < 4.5, z
    full = stax.serial(*net.layers[:3]).kernel_fn(x, None, "nngp", spatial_output="full")
    ref = stax.serial(*net.layers[:2]).kernel_fn(x, None, "nngp", spatial_output="full")
    ratio = np.asarray(full) / np.asarray(ref)  # (n, n, 5, 5')
    same_point, same_pos = np.eye(3, dtype=bool), np.eye(5, dtype=bool)
    expect = np.where(same_point[:, :, None, None] & same_pos, 1 / 0.7, 1.0)
    np.testing.assert_allclose(ratio, expect, rtol=1e-5)

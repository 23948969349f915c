"""monte_carlo_kernel_fn with neural-tangents' arguments: blocks of inputs, generators of
running estimates, host arrays, and their checks (devices: tests/e2e/test_stax_devices.py)."""

import jax
import numpy as np
import pytest

import ntk_bayes as nb
from ntk_bayes import stax

NET = stax.serial(stax.Dense(8, W_std=1.5, b_std=0.1), stax.Relu(), stax.Dense(2, W_std=1.2))
RNG = np.random.default_rng(0)
X1, X2 = RNG.normal(size=(5, 3)), RNG.normal(size=(4, 3))
KEY = jax.random.PRNGKey(3)


def _mc(n=4, **kw):
    return nb.monte_carlo_kernel_fn(NET.init_fn, NET.apply_fn, KEY, n, **kw)


@pytest.mark.parametrize("x2, trace_axes", [(None, (-1,)), (X2, (-1,)), (None, ())])
def test_blocks_give_the_whole_estimate(x2, trace_axes):
    """Cut into blocks of 2 inputs (the last of 1), the same networks give the same
    kernels up to the blocks' round-off; with x2 omitted the lower blocks are the upper
    ones transposed, so the estimate is exactly symmetric (also with untraced outputs,
    whose axes pair up as (x1's, x2's))."""
    with jax.enable_x64(True):
        whole = _mc(2, trace_axes=trace_axes)(X1, x2, ("nngp", "ntk"), with_stderr=True)
        cut = _mc(2, batch_size=2, trace_axes=trace_axes)(X1, x2, ("nngp", "ntk"), with_stderr=True)
        leaves = jax.tree_util.tree_leaves
        for a, b in zip(leaves(whole), leaves(cut), strict=True):
            assert a.shape == b.shape
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)
        if x2 is None:
            ntk = cut[0].ntk
            perm = (1, 0) if ntk.ndim == 2 else (1, 0, 3, 2)
            np.testing.assert_array_equal(ntk, np.transpose(ntk, perm))


def test_sample_counts_give_a_generator_of_running_estimates():
    """The estimate at n of a generator is the n-sample estimate (its first n networks),
    yielded in increasing order whatever order the counts came in."""
    with jax.enable_x64(True):
        gen = _mc([6, 2], samples_per_step=2)(X1, X2, "nngp", with_stderr=True)
        got = list(gen)
        assert len(got) == 2
        for n, (mean, se) in zip((2, 6), got, strict=True):
            want_mean, want_se = _mc(n)(X1, X2, "nngp", with_stderr=True)
            np.testing.assert_allclose(mean, want_mean, rtol=1e-12)
            np.testing.assert_allclose(se, want_se, rtol=1e-10)
        assert not np.allclose(got[0][0], got[1][0])


def test_store_on_device_false_returns_host_arrays():
    on_device = _mc(batch_size=3)(X1, None, ("nngp", "ntk"))
    host = _mc(batch_size=3, store_on_device=False)(X1, None, ("nngp", "ntk"))
    for a, b in zip(on_device, host, strict=True):
        assert isinstance(a, jax.Array) and type(b) is np.ndarray
        np.testing.assert_array_equal(b, np.asarray(a))


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        ({"batch_size": -1}, ValueError, "`batch_size` must be 0 .the whole kernel"),
        ({"device_count": -2}, ValueError, "`device_count` must be -1"),
        ({"device_count": 99}, ValueError, "`device_count`=99 but this process has"),
        ({"store_on_device": "no"}, TypeError, "`store_on_device` must be True or False"),
        ({"n_samples": []}, ValueError, "`n_samples` is empty"),
        ({"n_samples": [2, 0]}, ValueError, "`n_samples` must hold positive integers"),
        ({"n_samples": 2.5}, ValueError, "`n_samples` must be a positive integer, or an"),
        ({"n_samples": [2, 3], "samples_per_step": 2}, ValueError, r"\(3\) must be a multiple"),
        ({"samples_per_step": 0}, ValueError, "`samples_per_step` must be a positive"),
    ],
)
def test_arguments_are_checked_before_any_work(kw, exc, match):
    kw = {"n": kw.pop("n_samples", 4), **kw}
    with pytest.raises(exc, match=match):
        _mc(**kw)


@pytest.mark.parametrize("two_sets", [False, True])
def test_blocks_cut_per_point_keywords_with_their_points(two_sets):
    """A graph network's per-point `pattern` is cut with the points of each block (and
    a pair (for x1, for x2) side by side), so the blocked estimate is the whole one."""
    net = stax.serial(
        stax.Dense(8, W_std=1.3, b_std=0.2),
        stax.Relu(),
        stax.Aggregate(),
        stax.Dense(2, W_std=1.1),
        stax.GlobalAvgPool(),
    )
    r = np.random.default_rng(1)
    # blocks of 2 x 2 points only (one program; ragged blocks: the test above)
    x1, x2 = r.normal(size=(4, 4, 2)), r.normal(size=(2, 4, 2))
    p1, p2 = ((r.random((n, 4, 4)) < 0.5) * r.uniform(0.5, 1.5, (n, 4, 4)) for n in (4, 2))
    x2, pattern = (x2, (p1, p2)) if two_sets else (None, (p1, None))
    with jax.enable_x64(True):

        def mc(pattern, **kw):
            fn = nb.monte_carlo_kernel_fn(net.init_fn, net.apply_fn, KEY, 2, **kw)
            return fn(x1, x2, ("nngp", "ntk"), pattern=pattern)

        whole, cut = mc(pattern), mc(pattern, batch_size=2)
        for a, b in zip(whole, cut, strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)
        # the graphs are read: every point given the first one's, the estimate moves
        first = np.broadcast_to(p1[:1], p1.shape)
        moved = mc((first, pattern[1]), batch_size=2)
        assert np.abs(np.asarray(moved.ntk) - np.asarray(whole.ntk)).max() > 1e-3

"""``stax.repeat`` (a compiled, checkpointed loop) and the ``batch`` compatibility alias."""

import jax
import numpy as np
import pytest
from _nets import fc_inputs

from ntk_bayes import stax


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: stax.repeat(stax.Dense(4), 0), ValueError, "`n` must be a positive integer"),
        (lambda: stax.repeat("relu", 2), TypeError, "`layer` must be a stax layer"),
        (
            lambda: stax.repeat(stax.Dense(4), 2).output_shape((3, 5)),
            ValueError,
            "must keep the shape",
        ),
    ],
)
def test_repeat_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_batch_alias_tiles_through_kernel_fn():
    net = stax.serial(stax.Dense(8, W_std=1.5, b_std=0.1), stax.Relu(), stax.Dense(1))
    x = fc_inputs(7)
    batched = stax.batch(net.kernel_fn, batch_size=3, device_count=0)
    np.testing.assert_allclose(
        batched(x, None, "ntk"), net.kernel_fn(x, None, "ntk"), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="`batch_size` must be an integer >= 0"):
        stax.batch(net.kernel_fn, batch_size=-1)


def _unrolled(monkeypatch, fn):
    """``fn()`` with serial's loop over repeated layers switched off."""
    from ntk_bayes.stax import _core

    with monkeypatch.context() as m:
        m.setattr(_core, "_SCAN_MIN", 10**9)
        jax.clear_caches()
        out = fn()
    jax.clear_caches()
    return out


def test_serial_runs_repeated_layers_in_one_loop(monkeypatch, tol, xla_path):
    """serial(*[Dense, Relu] * 8) computes its 2nd-8th blocks in one scanned loop (a
    while loop in the program), each block with its own hyperparameters: the same kernel
    and the same per-layer gradients as unrolled (checked on 3 repetitions with the
    threshold lowered: unrolled gradients are what compiles slowly), and not on 7
    repetitions, which stay unrolled. A 50-layer network's jacrev compiles in seconds
    (unrolled: not in 10 minutes; benchmarks/bench_grad_memory.py)."""
    from ntk_bayes.stax import _core

    def net_of(reps):
        layers = []
        for i in range(reps):
            layers += [stax.Dense(32, W_std=1.2 + 0.1 * i, b_std=0.1), stax.Relu()]
        return stax.serial(*layers, stax.Dense(1))

    x = fc_inputs(11, seed=2)

    def loops(n):  # while loops in the program (the tiler has its own)
        return (
            jax.jit(lambda a: n.kernel_fn(a, None, "ntk"))
            .lower(x)
            .as_text()
            .count("stablehlo.while")
        )

    assert loops(net_of(8)) == loops(net_of(7)) + 1

    net = net_of(3)

    def total(n):
        return n.kernel_fn(x, None, "ntk").sum()

    with monkeypatch.context() as m:
        m.setattr(_core, "_SCAN_MIN", 3)
        jax.clear_caches()
        assert loops(net) == loops(net_of(2)) + 1
        looped = net.kernel_fn(x, None, ("nngp", "ntk"))
        g_loop = jax.grad(total)(net)
    unrolled = _unrolled(monkeypatch, lambda: net.kernel_fn(x, None, ("nngp", "ntk")))
    for a, b in zip(looped, unrolled, strict=True):
        np.testing.assert_allclose(a, b, **tol)
    g_unrolled = _unrolled(monkeypatch, lambda: jax.grad(total)(net))
    w_loop = [float(lay.W_std) for lay in g_loop.layers[::2]]
    w_unrolled = [float(lay.W_std) for lay in g_unrolled.layers[::2]]
    assert len(set(w_loop)) == len(w_loop)  # each layer its own derivative
    np.testing.assert_allclose(w_loop, w_unrolled, **tol)


def test_serial_loop_falls_back_when_the_state_changes(monkeypatch, tol):
    """Four 2x2 poolings in a row shrink the state each time: they cannot share one
    loop (threshold lowered to 4) and run unrolled, with the same kernel."""
    from ntk_bayes.stax import _core

    monkeypatch.setattr(_core, "_SCAN_MIN", 4)
    jax.clear_caches()
    net = stax.serial(
        stax.Conv(4, (3, 3), padding="SAME"),
        stax.Relu(),
        *[stax.AvgPool((2, 2))] * 4,
        stax.Flatten(),
        stax.Dense(1),
    )
    x = np.random.default_rng(0).standard_normal((3, 16, 16, 1))
    k = net.kernel_fn(x, None, "ntk")
    want = _unrolled(monkeypatch, lambda: net.kernel_fn(x, None, "ntk"))
    np.testing.assert_allclose(k, want, **tol)


@pytest.mark.parametrize(
    "block, shape",
    [
        (
            lambda: [stax.Conv(4, (3, 3), padding="SAME", W_std=1.3, b_std=0.1), stax.Relu()],
            (3, 5, 5, 2),
        ),
        (lambda: [stax.Dense(16, W_std=1.1), stax.LayerNorm(), stax.Gelu()], (5, 6)),
        (
            lambda: [
                stax.Dense(8),
                stax.GlobalSelfAttention(
                    n_chan_out=8, n_chan_key=8, n_chan_val=8, n_heads=2, linear_scaling=True
                ),
            ],
            (3, 4, 6),
        ),
    ],
    ids=["conv-relu", "dense-layernorm-gelu", "attention"],
)
def test_serial_loop_equals_unrolled_across_layers(monkeypatch, tol, block, shape):
    """Blocks of conv, layer-norm and attention layers repeated 4 times (threshold
    lowered to 4): looped as unrolled, NNGP and NTK, with x2 given and with x2=None."""
    from ntk_bayes.stax import _core

    monkeypatch.setattr(_core, "_SCAN_MIN", 4)
    jax.clear_caches()
    net = stax.serial(*(block() * 4), stax.Flatten(), stax.Dense(1))
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal(shape), rng.standard_normal((2,) + shape[1:])
    for b in (x2, None):
        got = net.kernel_fn(x1, b, ("nngp", "ntk"))
        want = _unrolled(monkeypatch, lambda b=b: net.kernel_fn(x1, b, ("nngp", "ntk")))
        for a, w in zip(got, want, strict=True):
            np.testing.assert_allclose(a, w, **tol)

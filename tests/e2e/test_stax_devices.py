"""Tiles spread over several devices give the one-device kernel.

The multi-device path runs in a subprocess with four forced host (CPU) devices,
``XLA_FLAGS=--xla_force_host_platform_device_count=4``, since the flag must be set
before JAX starts.
"""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from ntk_bayes import stax
from ntk_bayes.stax import _devices

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from ntk_bayes import stax
    from ntk_bayes.stax import _devices

    assert len(jax.local_devices()) == 4, jax.local_devices()
    assert _devices.tile_mesh(None).size == 4 and _devices.tile_mesh(1) is None
    # By default a one-tile kernel is one program on one device; an explicit count
    # spreads it. `paths` records each call's path: the one program, or the tiler's mesh.
    from ntk_bayes.stax import _batching
    paths, run, one = [], _batching._run, _batching.one_program
    _batching._run = lambda *a, **k: paths.append(a[9]) or run(*a, **k)

    def one_spy(*a, **k):
        out = one(*a, **k)
        if out is not None:
            paths.append("one program")
        return out

    _batching.one_program = one_spy
    small = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
    small.kernel_fn(np.ones((25, 3)), None, "nngp")
    small.kernel_fn(np.ones((25, 3)), None, "nngp", devices=4)
    assert paths[0] == "one program" and paths[1].size == 4, paths
    # Inputs committed to one device keep the work there (JAX refuses a mesh beside them).
    xc = jax.device_put(np.linspace(-1, 1, 90).reshape(30, 3), jax.devices()[0])
    on_0 = small.kernel_fn(xc, None, "nngp", block_size=10)
    assert paths[2] is None, paths
    assert np.array_equal(on_0, small.kernel_fn(np.asarray(xc), None, "nngp", block_size=10))
    _batching._run, _batching.one_program = run, one
    conv = lambda: stax.Conv(16, (3, 3), padding="SAME", W_std=1.3, b_std=0.1)
    nets = {
        "cnn_gap": stax.serial(conv(), stax.Relu(), conv(), stax.Relu(), stax.GlobalAvgPool(),
                               stax.Dense(1)),
        "fc": stax.serial(stax.Dense(8, b_std=0.1), stax.Relu(), stax.Dense(1)),
        "fc_dropout": stax.serial(stax.Dense(8, b_std=0.1), stax.Relu(), stax.Dropout(0.7),
                                  stax.Dense(1)),
    }
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(11, 5, 5, 2)), rng.normal(size=(6, 5, 5, 2))
    report = {}

    def compare(name, net, a, b, block):
        # one device against four, for x2 = None and x2 = b, default and given tiles
        for sym in (True, False):
            other = None if sym else b
            for kw in ({}, {"block_size": block}):
                one = net.kernel_fn(a, other, ("nngp", "ntk"), devices=1, **kw)
                four = net.kernel_fn(a, other, ("nngp", "ntk"), devices=4, **kw)
                for g in ("nngp", "ntk"):
                    u, v = np.asarray(getattr(one, g)), np.asarray(getattr(four, g))
                    key = f"{name}/{'sym' if sym else 'cross'}/{kw.get('block_size')}/{g}"
                    report[key] = [float(np.max(np.abs(u - v))), float(np.max(np.abs(u)))]

    for name, net in nets.items():
        flat = name.startswith("fc")
        a, b = (x1.reshape(11, -1), x2.reshape(6, -1)) if flat else (x1, x2)
        compare(name, net, a, b, 3)
    # Tiles of at least 64 x 64 pairs run each segment of layers inside an always-taken
    # conditional (stax._core._segment), which inside shard_map must type both branches
    # alike (from the second segment on: the concrete dataset's NTK-GP crashed there on two
    # host devices).
    big = rng.normal(size=(256, 4))
    fc2 = stax.serial(stax.Dense(8, b_std=0.1), stax.Relu(), stax.Dense(8, b_std=0.1),
                      stax.Relu(), stax.Dense(1))
    compare("fc_packed", fc2, big, big[:160], 64)
    # Monte Carlo kernels: blocks spread over the devices give the one-device estimate
    import ntk_bayes as nb
    from ntk_bayes.empirical import _monte_carlo

    plan = _monte_carlo._Plan(jax.numpy.ones((9, 3)), None, 0, jax.local_devices(), {}, True)
    assert len({b[3] for b in plan.blocks}) == 4, plan.blocks  # one row block per device
    mc_net = stax.serial(stax.Dense(16, b_std=0.1), stax.Relu(), stax.Dense(2))
    xm, ym = rng.normal(size=(9, 3)), rng.normal(size=(5, 3))
    mc = {}
    for other in (None, ym):
        mc_fn = lambda **kw: nb.monte_carlo_kernel_fn(
            mc_net.init_fn, mc_net.apply_fn, jax.random.PRNGKey(0), 8, samples_per_step=4, **kw
        )(xm, other)
        base = mc_fn()
        for dc, bs in ((-1, 0), (3, 0), (4, 2), (2, 4)):
            got = mc_fn(device_count=dc, batch_size=bs)
            for g in ("nngp", "ntk"):
                u, v = np.asarray(getattr(base, g)), np.asarray(getattr(got, g))
                key = f"{'sym' if other is None else 'cross'}/{dc}/{bs}/{g}"
                mc[key] = [float(np.max(np.abs(u - v))), float(np.max(np.abs(u)))]
    json.dump({"tiles": report, "mc": mc}, sys.stdout)
    """
)


def test_four_devices_equal_one_device(tmp_path):
    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    # the XLA tiler's paths over devices; the native fully connected kernel runs on one
    # device only (tests/unit/test_stax_native.py)
    env["NTK_BAYES_NATIVE"] = "0"
    script = tmp_path / "four_devices.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    out = json.loads(done.stdout)
    report, mc = out["tiles"], out["mc"]
    assert len(report) == 4 * 2 * 2 * 2
    eps = float(np.finfo(np.float64 if os.environ.get("JAX_ENABLE_X64") == "1" else np.float32).eps)
    assert len(mc) == 2 * 4 * 2
    for key, (diff, scale) in mc.items():
        # the same networks, blocks of the inputs on 2-4 devices: round-off of the blocks'
        # matrix products only
        assert diff <= 100 * eps * scale, (key, diff, scale)
    for key, (diff, scale) in report.items():
        if key.split("/")[2] != "None":
            # The same tiles on four devices: the same arithmetic, bit for bit.
            assert diff == 0.0, (key, diff, scale)
        else:
            # Tiles resized to feed four devices: a coincident pair's angle is round-off
            # of size sqrt(eps) (arccos near 1), wherever the tiles fall.
            assert diff <= 10 * np.sqrt(eps) * scale, (key, diff, scale)


def test_device_selection_errors():
    with pytest.raises(ValueError, match="local device"):
        _devices.resolve_devices(len(jax.local_devices()) + 1)
    with pytest.raises(TypeError, match="devices"):
        _devices.resolve_devices("gpu")
    with pytest.raises(TypeError, match="jax.Device"):
        _devices.resolve_devices([0])
    assert _devices.resolve_devices(1) == jax.local_devices()[:1]


def test_process_row_ranges_cover_the_rows_once():
    ranges = [_devices.process_row_range(10, i, 3) for i in range(3)]
    assert ranges == [(0, 4), (4, 8), (8, 10)]
    assert _devices.process_row_range(2, 2, 3) == (2, 2)


def test_distributed_kernel_fn_on_one_process(tol):
    net = stax.serial(stax.Conv(8, (2, 2)), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1))
    x = np.random.default_rng(1).normal(size=(5, 3, 3, 2))
    np.testing.assert_allclose(
        stax.distributed_kernel_fn(net, x, None, "ntk"), net.kernel_fn(x, None, "ntk"), **tol
    )
    with pytest.raises(TypeError, match="one kernel name"):
        stax.distributed_kernel_fn(net, x, None, ("nngp", "ntk"))


def test_distributed_kernel_fn_refuses_train_dropout_across_processes(monkeypatch):
    net = stax.serial(stax.Dense(4), stax.Relu(), stax.Dropout(0.5), stax.Dense(1))
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(NotImplementedError, match="Dropout"):
        stax.distributed_kernel_fn(net, np.ones((3, 2)), None, "ntk")

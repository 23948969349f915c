"""Every NumPyro chain method with GaussianProcess sites, on two forced CPU devices.

``parallel`` pmaps one chain per device: the kernel engine must then run each chain's
tiles on that chain's device rather than shard_map over all devices (which JAX refuses
inside pmap). The flag must be set before JAX starts, hence the subprocess.
"""

import json
import os
import textwrap

import numpy as np
from _examples import run_python

SCRIPT = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    import numpyro, numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS
    import ntk_bayes as nb
    from ntk_bayes import stax
    from ntk_bayes.stax import _devices

    assert len(jax.local_devices()) == 2, jax.local_devices()
    assert _devices.tile_mesh(None) is not None  # outside a map the engine shards
    X = jnp.linspace(-1, 1, 10)[:, None]
    y = jnp.sin(3 * X[:, 0])
    group = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    Xp, yp, mask = nb.priors.pad_groups(group, X, y)

    def net(w):
        return stax.serial(stax.Dense(64, W_std=w, b_std=0.1), stax.Relu(),
                           stax.Dense(1, W_std=w, b_std=0.1))

    def model(X, y, Xp, yp, mask):
        w = numpyro.sample("w", dist.LogNormal(0.0, 0.3))
        numpyro.sample("y", nb.GaussianProcess(net(w), X, noise=0.05), obs=y)
        wg = nb.priors.group_log_normal("wg", 2, tau_scale=0.2)
        nets = jax.vmap(net)(wg)
        numpyro.sample("yg", nb.GaussianProcess(nets, Xp, noise=0.05, point_mask=mask), obs=yp)

    out = {}
    for method in ("parallel", "vectorized", "sequential"):
        # shapes and placement only: shallow trees (the group funnel would otherwise run
        # up to 1023 leapfrog steps per draw after 20 warmup steps)
        mcmc = MCMC(NUTS(model, max_tree_depth=3), num_warmup=20, num_samples=20, num_chains=2,
                    chain_method=method, progress_bar=False)
        mcmc.run(jax.random.key(0), X, y, Xp, yp, mask)
        s = mcmc.get_samples(group_by_chain=True)
        idata = nb.diagnostics.from_numpyro(mcmc)
        out[method] = {
            "w_shape": list(s["w"].shape),
            "finite": bool(np.all(np.isfinite(np.asarray(s["w"])))),
            "ll_y": list(idata["log_likelihood"]["y"].shape),
            "ll_yg": list(idata["log_likelihood"]["yg"].shape),
        }
    print("RESULT" + json.dumps(out))
    """
)


def test_parallel_vectorized_and_sequential_chains_with_gp_sites():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    env["JAX_PLATFORMS"] = "cpu"
    proc = run_python(["-c", SCRIPT], env=env, timeout=900)  # ~150 s idle, 2 cores
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))
    out = json.loads(line[len("RESULT") :])
    for method, r in out.items():
        assert r["w_shape"] == [2, 20] and r["finite"], method
        assert r["ll_y"] == [2, 20, 10] and r["ll_yg"] == [2, 20, 10], method


BNN_SCRIPT = textwrap.dedent(
    """
    import json
    import jax, numpy as np
    from ntk_bayes import bnn, stax
    from ntk_bayes.bnn._nuts import check_nuts_args

    assert jax.local_device_count() == 2, jax.local_devices()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 1))
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=12)
    model = bnn.BNN(stax.serial(stax.Dense(8), stax.Erf(), stax.Dense(1)), width=4, noise=0.05)
    kw = dict(num_warmup=1, num_samples=4, num_chains=4, max_tree_depth=3, seed=0,
              progress_bar=False)
    out = {}
    for method in ("sharded", "vectorized"):
        post = model.fit_nuts(X, y, chain_method=method, **kw)
        out[method] = {"f": np.asarray(post.outputs(X)).tolist(),
                       "devices": post.info["devices"]}
    args = dict(num_warmup=1, num_samples=4, max_tree_depth=3, thinning=1,
                target_accept_prob=0.8, chain_method=None, init="prior", init_steps=1)
    out["default"] = {c: check_nuts_args(num_chains=c, **args) for c in (2, 3, 4)}
    kw["num_chains"] = 2  # a chain per device: "parallel"
    for method in ("parallel", "vectorized"):
        post = model.fit_nuts(X, y, chain_method=method, **kw)
        out[method + "2"] = {"f": np.asarray(post.outputs(X)).tolist(),
                             "devices": post.info["devices"]}
    # the chains' program is the same text each time it is built (a named pmap axis):
    # an unnamed one put an object's address in it, and no run hit the compile cache
    from ntk_bayes.priors import sharded_chains
    one = lambda a: jax.numpy.sin(a).sum()
    texts = [jax.jit(sharded_chains(one)).lower(np.ones((c, 3))).as_text()
             for c in (2, 2, 4, 4)]
    out["same_text"] = [texts[0] == texts[1], texts[2] == texts[3]]
    print("RESULT" + json.dumps(out))
    """
)


def test_bnn_chains_sharded_over_two_devices():
    """4 chains on 2 cores: each device runs its half vectorised (chain_method
    "sharded", the default when the devices split the chains evenly). Each chain has the
    key it has under "vectorized", so over the first iterations (1 warmup + 4 draws, before
    NUTS's discrete choices amplify round-off) the draws agree to round-off. The same for
    2 chains, one per device ("parallel"). The chains' program is built with a named pmap
    axis, so its text (the persistent compilation cache's key) is the same every time."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    env["JAX_PLATFORMS"] = "cpu"
    out = _result(run_python(["-c", BNN_SCRIPT], env=env, timeout=600))
    assert out["sharded"]["devices"] == 2 and out["vectorized"]["devices"] == 1
    f_sharded, f_vectorized = (np.asarray(out[m]["f"]) for m in ("sharded", "vectorized"))
    assert f_sharded.shape == (4, 4, 12, 1)  # chains, draws, points, outputs
    np.testing.assert_allclose(f_sharded, f_vectorized, rtol=1e-4, atol=1e-6)
    assert out["default"] == {"2": "parallel", "3": "vectorized", "4": "sharded"}
    assert out["parallel2"]["devices"] == 2 and out["vectorized2"]["devices"] == 1
    np.testing.assert_allclose(out["parallel2"]["f"], out["vectorized2"]["f"], rtol=1e-4, atol=1e-6)
    assert out["same_text"] == [True, True]


DEVICES_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import jax
    from ntk_bayes import cli

    added = cli._host_device_per_core()
    again = cli._host_device_per_core()  # JAX has started: nothing more
    print("RESULT" + json.dumps({"added": added, "again": again,
                                 "devices": jax.local_device_count(),
                                 "flags": os.environ.get("XLA_FLAGS")}))
    """
)


def test_the_command_gives_its_chains_a_device_per_core():
    """`ntk-bayes calibrate` (the process is the command) makes the CPU one XLA device per
    core before JAX starts, and leaves XLA_FLAGS as it found it; a count the user set is
    kept."""
    cores = len(os.sched_getaffinity(0))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    out = _result(run_python(["-c", DEVICES_SCRIPT], env=env, timeout=300))
    want = min(cores, 16) if cores > 1 else 0
    assert out == {"added": want, "again": 0, "devices": max(want, 1), "flags": None}
    user = "--xla_force_host_platform_device_count=3"
    out = _result(run_python(["-c", DEVICES_SCRIPT], env=dict(env, XLA_FLAGS=user), timeout=300))
    assert out == {"added": 0, "again": 0, "devices": 3, "flags": user}


def _result(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])

"""Every NumPyro chain method with GaussianProcess sites, on two forced CPU devices.

``parallel`` pmaps one chain per device: the kernel engine must then run each chain's
tiles on that chain's device rather than shard_map over all devices (which JAX refuses
inside pmap). The flag must be set before JAX starts, hence the subprocess.
"""

import json
import os
import textwrap

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

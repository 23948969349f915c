"""One NUTS runner: settings checks, optional MAP starts, per-draw statistics, and one
progress line per chain group on stderr (NumPyro's own tqdm bars stay off, so sampler
output never interleaves with the CLI's lines)."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray
from numpyro.infer import MCMC, NUTS, init_to_sample
from numpyro.infer.util import initialize_model

from .._chains import chain_devices, chains_over_devices
from .._numerics import check_int

__all__ = [
    "NutsRun",
    "run_nuts",
    "check_nuts_args",
    "chain_devices",
    "map_starts",
    "stderr_progress",
]

CHAIN_METHODS = ("parallel", "sequential", "vectorized", "sharded")
INITS = ("prior", "map")


def stderr_progress(msg: str) -> None:
    """The CLI's progress display: one plain line on stderr."""
    print(msg, file=sys.stderr, flush=True)


@dataclasses.dataclass
class NutsRun:
    """Draws and statistics of one NUTS run.

    Attributes:
        samples: ``{site: (chain, draw, ...)}`` of every latent site (constrained).
        stats: per-draw ``(chain, draw)`` statistics: ``diverging``, ``tree_depth``,
            ``n_steps``, ``acceptance_rate``, ``energy``, ``step_size``.
        info: settings and summary (JSON-ready).
    """

    samples: dict
    stats: dict
    info: dict


def check_nuts_args(
    *,
    num_warmup,
    num_samples,
    num_chains,
    max_tree_depth,
    thinning,
    target_accept_prob,
    chain_method,
    init,
    init_steps,
) -> str:
    """Validate NUTS settings (before any work); returns the resolved chain method."""
    for nm, v, lo in (
        ("num_warmup", num_warmup, 1),
        ("num_samples", num_samples, 4),
        ("num_chains", num_chains, 1),
        ("max_tree_depth", max_tree_depth, 1),
        ("thinning", thinning, 1),
        ("init_steps", init_steps, 1),
    ):
        check_int(v, nm, low=lo)
    if num_samples // thinning < 4:
        raise ValueError(
            f"`num_samples` // `thinning` = {num_samples} // {thinning} keeps "
            f"{num_samples // thinning} draws per chain; split R-hat needs at least 4: raise "
            "`num_samples` or lower `thinning`"
        )
    if (
        isinstance(target_accept_prob, bool)
        or not isinstance(target_accept_prob, int | float | np.integer | np.floating)
        or not 0.0 < target_accept_prob < 1.0
    ):
        raise ValueError(
            f"`target_accept_prob` must be a number in (0, 1), got {target_accept_prob!r}"
        )
    if init not in INITS:
        raise ValueError(f"`init` must be one of {INITS}, got {init!r}")
    if chain_method is None:
        # a device per chain: parallel; fewer devices that split the chains evenly: each
        # runs its share vectorised (sharded); one device: vectorised chains share each
        # leapfrog step's overhead
        if jax.local_device_count() >= num_chains:
            chain_method = "parallel"
        else:
            chain_method = "sharded" if chain_devices(num_chains) > 1 else "vectorized"
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"`chain_method` must be one of {CHAIN_METHODS}, got {chain_method!r}")
    if chain_method == "sharded" and chain_devices(num_chains) == 1:
        raise ValueError(
            f"`chain_method='sharded'` splits the {num_chains} chains evenly over the local "
            f"devices, but this process has {jax.local_device_count()} device(s) and none of "
            "2 or more divides the chain count: use 'vectorized', change `num_chains`, or on "
            "CPUs call numpyro.set_host_device_count(k) before JAX first runs anything"
        )
    return chain_method


def map_starts(
    model: Callable[..., Any],
    model_args: tuple,
    key: PRNGKeyArray,
    num_chains: int,
    steps: int,
    lr: float = 1e-2,
) -> tuple[dict[str, Array], Array]:
    """``num_chains`` diverse MAP estimates: Adam on the potential from independent
    prior draws (unconstrained space), all chains at once.

    Returns:
        ``(z, potential)``: the unconstrained starts ``{site: (chain, ...)}`` and the
            potential energy of each.
    """
    import optax

    keys = jax.random.split(key, num_chains + 1)
    info = initialize_model(keys[0], model, model_args=model_args, init_strategy=init_to_sample)
    pe = info.potential_fn

    def z0(k):
        return initialize_model(
            k, model, model_args=model_args, init_strategy=init_to_sample
        ).param_info.z

    opt = optax.adam(lr)

    @jax.jit
    def descend(z):
        def step(carry, _):
            z, st = carry
            g = jax.grad(pe)(z)
            upd, st = opt.update(g, st, z)
            return (optax.apply_updates(z, upd), st), None

        (z, _), _ = jax.lax.scan(step, (z, opt.init(z)), None, steps)
        return z

    starts = [z0(k) for k in keys[1:]]
    z = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *starts)
    z = jax.vmap(descend)(z)
    return z, np.asarray(jax.vmap(pe)(z))


def run_nuts(
    model,
    model_args: tuple,
    *,
    num_warmup: int,
    num_samples: int,
    num_chains: int,
    seed: int,
    max_tree_depth: int,
    target_accept_prob: float = 0.8,
    dense_mass: bool = False,
    thinning: int = 1,
    chain_method: str | None = None,
    init: str = "prior",
    init_steps: int = 2000,
    progress: Callable[[str], None] | None = stderr_progress,
    label: str = "NUTS",
) -> NutsRun:
    """Run NUTS on a NumPyro ``model(*model_args)``.

    Args:
        init: ``"prior"`` (each chain from a prior draw) or ``"map"`` (each chain from
            its own MAP estimate, ``init_steps`` Adam steps from a prior draw).
        progress: called with one line when the chain group starts and one when it
            ends; ``None`` for silence.
    """
    seed = check_int(seed, "seed", exc=TypeError)
    chain_method = check_nuts_args(
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        max_tree_depth=max_tree_depth,
        thinning=thinning,
        target_accept_prob=target_accept_prob,
        chain_method=chain_method,
        init=init,
        init_steps=init_steps,
    )
    say = progress or (lambda msg: None)
    key_init, key_run = jax.random.split(jax.random.PRNGKey(seed))
    t0 = time.perf_counter()
    init_params = None
    if init == "map":
        say(f"{label}: {num_chains} MAP starts ({init_steps} Adam steps each)")
        init_params, _ = map_starts(model, model_args, key_init, num_chains, init_steps)
        if num_chains == 1:
            init_params = jax.tree_util.tree_map(lambda a: a[0], init_params)
    t_init = time.perf_counter() - t0
    # (NumPyro draws "parallel" chains sequentially when there are too few devices)
    parallel = num_chains if jax.local_device_count() >= num_chains else 1
    devices = {"parallel": parallel, "sharded": chain_devices(num_chains)}.get(chain_method, 1)
    kernel = NUTS(
        model,
        target_accept_prob=target_accept_prob,
        max_tree_depth=max_tree_depth,
        dense_mass=dense_mass,
        init_strategy=init_to_sample,
    )
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        thinning=thinning,
        chain_method=chains_over_devices(devices) if devices > 1 else chain_method,
        progress_bar=False,
    )
    say(
        f"{label}: {num_chains} chains ({chain_method}, {devices} device(s)) x "
        f"{num_warmup} warmup + {num_samples} draws, max tree depth {max_tree_depth} ..."
    )
    mcmc.run(
        key_run,
        *model_args,
        init_params=init_params,
        extra_fields=("diverging", "num_steps", "accept_prob", "energy", "adapt_state.step_size"),
    )
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    elapsed = time.perf_counter() - t0
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    steps = extra["num_steps"].astype(np.int64)
    depth = np.ceil(np.log2(steps + 1)).astype(np.int64)
    stats = {
        "diverging": extra["diverging"].astype(bool),
        "tree_depth": depth,
        "n_steps": steps,
        "acceptance_rate": extra["accept_prob"],
        "energy": extra["energy"],
        "step_size": extra["adapt_state.step_size"],
    }
    info = {
        "method": "nuts",
        "time_s": elapsed,
        "init_time_s": t_init,
        "init": init,
        "init_steps": init_steps if init == "map" else 0,
        "num_warmup": num_warmup,
        "num_samples": num_samples,
        "num_chains": num_chains,
        "chain_method": chain_method,
        "devices": devices,
        "seed": seed,
        "max_tree_depth": max_tree_depth,
        "target_accept_prob": target_accept_prob,
        "dense_mass": dense_mass,
        "thinning": thinning,
        "divergences_per_chain": stats["diverging"].sum(axis=1).tolist(),
        "max_tree_depth_fraction_per_chain": (depth >= max_tree_depth).mean(axis=1).tolist(),
        "mean_tree_depth": float(depth.mean()),
        "mean_acceptance": float(stats["acceptance_rate"].mean()),
        "step_size_per_chain": stats["step_size"][:, -1].tolist(),
        "gradient_evaluations": int(steps.sum()),
    }
    say(f"{label}: done in {elapsed:.1f} s, {int(stats['diverging'].sum())} divergences")
    return NutsRun(samples, stats, info)

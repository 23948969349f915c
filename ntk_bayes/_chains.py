"""NumPyro ``chain_method`` callables whose programs compile once per machine.

``MCMC(..., chain_method="parallel")`` calls ``jax.pmap`` without an axis name, and JAX
names such an axis by a fresh object whose address is written into the program
(``sdy.mesh`` in jax 0.9). The program's text, which keys the persistent compilation
cache, is then new in every process: each run compiled its chains anew (6 s for a
4-chain toy BNN; 10-13 s for a small GP model with two sites on this 2-core VM). The
callables here map the chains with a fixed axis name instead.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

__all__ = ["CHAIN_AXIS", "chain_devices", "chains_over_devices", "sharded_chains"]

CHAIN_AXIS = "ntk_bayes_chains"


def chain_devices(num_chains: int) -> int:
    """The most local devices that split ``num_chains`` chains evenly (1 if none does)."""
    most = min(jax.local_device_count(), num_chains)
    return max(d for d in range(1, most + 1) if num_chains % d == 0)


def chains_over_devices(devices: int) -> Callable:
    """A NumPyro ``chain_method``: the chains split into ``devices`` equal groups, each
    group vectorised on one device (``pmap`` of ``vmap``, as NumPyro's MCMC docs mix the
    two), the map's axis named :data:`CHAIN_AXIS`. Chain ``c`` gets the key it has under
    ``"vectorized"``: the first iterations agree to round-off, after which NUTS's discrete
    choices make them different chains (as NumPyro's own ``"vectorized"`` and
    ``"sequential"`` are to each other). With a chain per device it is NumPyro's
    ``"parallel"``, named."""

    def method(one_chain):
        def run(per_chain):
            chains = jax.tree_util.tree_leaves(per_chain)[0].shape[0]
            if chains == devices:
                return jax.pmap(one_chain, axis_name=CHAIN_AXIS)(per_chain)
            grouped = jax.tree_util.tree_map(
                lambda a: a.reshape((devices, -1) + a.shape[1:]), per_chain
            )
            out = jax.pmap(jax.vmap(one_chain), axis_name=CHAIN_AXIS)(grouped)
            return jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:]), out)

        return run

    return method


def sharded_chains(one_chain):
    """``chain_method=sharded_chains`` in NumPyro's ``MCMC``: the chains over as many
    local devices as split them evenly (:func:`chain_devices`), vectorised on each; one
    device: all chains vectorised. Unlike ``"parallel"``, its program is the same in
    every process, so a second run loads it from JAX's persistent compilation cache; and
    it accepts more chains than devices.

    Example::

        numpyro.set_host_device_count(2)  # before JAX starts
        mcmc = MCMC(NUTS(model), num_warmup=500, num_samples=500, num_chains=4,
                    chain_method=nb.priors.sharded_chains)
    """

    def run(per_chain):
        chains = jax.tree_util.tree_leaves(per_chain)[0].shape[0]
        devices = chain_devices(chains)
        if devices == 1:  # one program (eager vmap would warn of NumPyro's donations)
            return jax.jit(jax.vmap(one_chain))(per_chain)
        return chains_over_devices(devices)(one_chain)(per_chain)

    return run

"""Predictions and pointwise log-likelihoods from posterior samples of a GP model.

A NumPyro model that observes ``y`` through :class:`~ntk_bayes.GaussianProcess` at site
``site`` is replayed once per posterior draw (``handlers.substitute``); the site's
distribution gives the conditional at test inputs (integrating over hyperparameters when
the draws are pooled) and the exact leave-one-out conditionals, so ArviZ sees N data
points instead of one multivariate normal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers

from .._numerics import is_concrete
from ..gp._checks import check_key
from ._gp import GaussianProcess
from ._replicates import Replicates

if TYPE_CHECKING:
    from jaxtyping import Array, ArrayLike, PRNGKeyArray
    from numpyro.infer import MCMC

__all__ = ["posterior_predictive", "loo_log_likelihood"]


def _draws(samples):
    """Samples dict with leading (chain, draw) axes; MCMC objects and flat dicts accepted."""
    if hasattr(samples, "get_samples"):
        return _one_device(samples.get_samples(group_by_chain=True)), True
    if not isinstance(samples, dict) or not samples:
        raise TypeError("`samples` must be an MCMC object or a non-empty dict of arrays")
    return {k: jnp.asarray(v) for k, v in samples.items()}, False


def _check_samples(model, draws, grouped, args, kwargs):
    """Refuse draws that the replay would silently complete or misread, before any GP
    is conditioned: a latent site missing from ``samples`` (it would be drawn from its
    prior with one fixed seed, the same value for every posterior draw), draw arrays of
    different lengths, and per-draw shapes that are not the site's (a dict of draws
    grouped by chain)."""
    n_lead = 2 if grouped else 1
    leads = {k: tuple(jnp.shape(v)[:n_lead]) for k, v in draws.items()}
    if len(set(leads.values())) > 1 or any(len(v) < n_lead for v in leads.values()):
        raise ValueError(
            "every array in `samples` must hold the same number of draws along its leading "
            f"axis; got leading shapes {leads}"
        )
    tr = handlers.trace(handlers.seed(model, 0)).get_trace(*args, **kwargs)
    latent = {
        name: site
        for name, site in tr.items()
        if site["type"] == "sample"
        and not site.get("is_observed", False)
        and not (site.get("infer") or {}).get("enumerate")  # summed out, never sampled
    }
    missing = sorted(set(latent) - set(draws))
    if missing:
        raise ValueError(
            f"`samples` has no draws of the model's latent site(s) {missing} (it has "
            f"{sorted(draws)}); pass every latent site (mcmc.get_samples() or the MCMC "
            "object), or condition the model on fixed values with numpyro.handlers.condition"
        )
    for name, site in latent.items():
        per_draw = tuple(jnp.shape(draws[name])[n_lead:])
        if per_draw != tuple(jnp.shape(site["value"])):
            hint = (
                "; a dict holds one leading draw axis (mcmc.get_samples()): for draws "
                "grouped by chain (group_by_chain=True) pass the MCMC object itself"
                if not grouped
                else ""
            )
            raise ValueError(
                f"`samples[{name!r}]` has shape {per_draw} per draw but the model's site "
                f"{name!r} has shape {tuple(jnp.shape(site['value']))}{hint}"
            )


def _one_device(tree):
    """Draws sharded over several devices, as uncommitted arrays on the default device.

    ``chain_method="parallel"`` leaves every draw array sharded over the chains' devices.
    Replaying the model on them op by op makes each operation a multi-device program;
    with forced host CPU devices on a busy machine such a program was seen to stall
    for good (CI, jax 0.10). The draws are small (hyperparameters): one copy through
    the host makes them ordinary arrays that follow the computation.
    """

    def gather(x):
        if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1:
            return jnp.asarray(jax.device_get(x))
        return x

    return jax.tree_util.tree_map(gather, tree)


def one_device_mcmc(mcmc):
    """``mcmc`` itself, or a shallow copy whose stored states are gathered by
    :func:`_one_device` when they are sharded over several devices (parallel chains), so
    that ArviZ's conversion (which replays the model for log-likelihoods) and ours run
    single-device programs. Relies on NumPyro's ``MCMC._states``; any other object is
    returned as is."""
    import copy

    states = getattr(mcmc, "_states", None)
    if not isinstance(states, dict) or not hasattr(mcmc, "_states_flat"):
        return mcmc
    gathered = _one_device(states)
    old, new = jax.tree_util.tree_leaves(states), jax.tree_util.tree_leaves(gathered)
    if all(a is b for a, b in zip(old, new, strict=True)):
        return mcmc
    view = copy.copy(mcmc)
    view._states, view._states_flat = gathered, None
    return view


def _gp_site(model, sample, args, kwargs, site):
    tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=sample)).get_trace(
        *args, **kwargs
    )
    if site not in tr:
        raise ValueError(f"the model has no sample site {site!r}; sites: {sorted(tr)}")
    node = tr[site]
    fn = unwrap_gp(node["fn"])
    if not isinstance(fn, GaussianProcess):
        raise TypeError(
            f"site {site!r} is a {type(node['fn']).__name__}, not an ntk_bayes.GaussianProcess"
        )
    if not node.get("is_observed", False):
        raise ValueError(f"site {site!r} is not observed: pass obs=y in the model")
    y = node["value"]
    inner = fn.batch_shape + fn.event_shape
    if jnp.shape(y)[jnp.ndim(y) - len(inner) :] != inner:
        raise ValueError(
            f"site {site!r} observes shape {jnp.shape(y)}, which does not end with its "
            f"GaussianProcess's batch and event shape {inner}; expand the GP only by new "
            "leading axes (gp.expand((K,) + gp.batch_shape))"
        )
    return fn, y


def unwrap_gp(fn):
    """The distribution under ``gp.expand((K, G))`` / ``gp.to_event()`` wrappers:
    independent copies of the same GP, which the hierarchical example uses for K columns
    per group (anything else is returned as it is)."""
    while isinstance(fn, dist.ExpandedDistribution | dist.Independent):
        fn = fn.base_dist
    return fn


def _per_copy(fn, y, gp, *rest):
    """``fn(y_c, *rest_c)`` for each copy ``y_c`` along the leading axes that an
    expanded site adds to ``gp``'s own shape (none for a plain GP site)."""
    inner = gp.batch_shape + gp.event_shape
    extra = jnp.shape(y)[: jnp.ndim(y) - len(inner)]
    if not extra:
        return fn(y, *rest)
    flat = jnp.reshape(y, (-1,) + inner)
    rest = [jnp.reshape(r, (flat.shape[0],) + jnp.shape(r)[len(extra) :]) for r in rest]
    out = jax.vmap(fn)(flat, *rest)
    return jnp.reshape(out, extra + out.shape[1:])


def _replicate_loo(gp, y_mean, rep):
    if gp.noise is None or jnp.shape(gp.noise) != rep.counts.shape:
        raise ValueError(
            "with `replicates` the GP site must observe rep.y_mean with noise=rep.noise(s2) "
            f"(one variance per unique input, shape {rep.counts.shape}); the site's noise has "
            f"shape {jnp.shape(gp.noise)}"
        )
    post = gp.condition(y_mean, diag=True)
    noise = gp.noise * np.maximum(rep.counts, 1)  # σ² back from σ²/n_j
    return rep.loo_log_likelihood(post.mean, post.variance, noise)


def _map_draws(fn, draws, grouped):
    if grouped:
        return jax.vmap(jax.vmap(fn))(draws)
    return jax.vmap(fn)(draws)


def posterior_predictive(
    model: Callable[..., Any],
    samples: MCMC | Mapping[str, ArrayLike],
    key: PRNGKeyArray,
    X_test: ArrayLike,
    *args: Any,
    site: str = "y",
    include_noise: bool = False,
    diag: bool = False,
    **kwargs: Any,
) -> Array:
    """One joint draw of f(X_test) (or of new observations) per posterior sample.

    Args:
        model: the NumPyro model; called as ``model(*args, **kwargs)``.
        samples: an ``MCMC`` object (draws grouped by chain) or a dict of arrays with
            a leading draw axis (e.g. ``mcmc.get_samples()`` or SVI guide samples).
        key: PRNG key.
        X_test: test inputs.
        site: the observed GaussianProcess site (also ``gp.expand(...)`` or
            ``gp.to_event(...)`` of one: each copy is conditioned on its own data).
        include_noise: draw new observations (add σ²) rather than the latent f.
        diag: independent marginals instead of joint draws (cheaper for many X_test).

    Returns:
        Array ``(chain, draw, [K,] M)`` for MCMC objects, ``(S, [K,] M)`` for dicts.

    Raises:
        FloatingPointError: (called eagerly) when a draw is not finite, naming how many
            and the first posterior sample concerned: the posterior covariance could not
            be factorised (e.g. float32 with a tiny noise variance).
    """
    draws, grouped = _draws(samples)
    _check_samples(model, draws, grouped, args, kwargs)
    leading = jax.tree_util.tree_leaves(draws)[0].shape[: 2 if grouped else 1]
    keys = jax.random.split(check_key(key), math.prod(leading))
    # typed keys are (S,), legacy uint32 keys (S, 2): keep whatever trails the draw axis
    keys = keys.reshape(leading + keys.shape[1:])
    draws = dict(draws, _key=keys)

    def one(d):
        k = d.pop("_key")
        gp, y = _gp_site(model, d, args, kwargs, site)
        extra = jnp.shape(y)[: jnp.ndim(y) - len(gp.batch_shape) - 1]
        keys = jax.random.split(k, math.prod(extra)).reshape(extra + k.shape) if extra else k

        def draw(y_c, k_c):
            return gp.condition(y_c, X_test, include_noise=include_noise, diag=diag).sample(k_c)

        return _per_copy(draw, y, gp, keys)

    out = _map_draws(one, draws, grouped)
    _check_draws(out, len(leading))
    return out


def _check_draws(out, n_lead: int) -> None:
    """Refuse non-finite posterior draws instead of returning them silently (the batched
    factorisation runs traced, so a covariance that no jitter rescues gives NaN, not an
    error)."""
    if not is_concrete(out):
        return
    bad = ~np.all(np.isfinite(np.asarray(out)).reshape(out.shape[:n_lead] + (-1,)), axis=-1)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise FloatingPointError(
            f"posterior_predictive: {int(bad.sum())} of {bad.size} posterior draws are not "
            f"finite (first at sample index {first}): the posterior covariance at X_test "
            "could not be factorised even with the largest jitter. Use float64 "
            "(jax.config.update('jax_enable_x64', True)), a larger noise variance (a prior "
            "that keeps `noise` away from 0), or diag=True for marginal draws"
        )


def loo_log_likelihood(
    model: Callable[..., Any],
    samples: MCMC | Mapping[str, ArrayLike],
    *args: Any,
    site: str = "y",
    replicates: Replicates | None = None,
    **kwargs: Any,
) -> Array:
    """Exact leave-one-out log densities log p(y_i | y_-i, θ) per draw and point.

    Returns ``(chain, draw, N)`` (or ``(chain, draw, K, N)`` with K output columns, and
    the site's own shape for an expanded or batched site, e.g. ``(chain, draw, K, G, n)``):
    the ``log_likelihood`` group that ``az.loo`` and ``az.loo_pit`` need to see N
    points (Rasmussen & Williams 2006, eq. 5.12). With ``replicates`` (the site observes
    ``rep.y_mean`` with ``noise=rep.noise(σ²)``, see :func:`collapse_replicates`) the N
    points are the original observations, ``(chain, draw, N)``.
    """
    draws, grouped = _draws(samples)
    _check_samples(model, draws, grouped, args, kwargs)

    def one(d):
        gp, y = _gp_site(model, d, args, kwargs, site)
        if replicates is None:
            return _per_copy(gp.loo_log_likelihood, y, gp)
        if jnp.ndim(y) != len(gp.batch_shape) + 1:
            raise ValueError("`replicates` needs a GaussianProcess site that is not expanded")
        return _replicate_loo(gp, y, replicates)

    return _map_draws(one, draws, grouped)

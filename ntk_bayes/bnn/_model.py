r"""A finite Bayesian network as a NumPyro model, trained by NUTS or SVI.

For inputs X (n points) and the finite network f_w of :func:`finite_network`:

.. math::

    w \sim \prod_\ell N(0, σ_{w,\ell}^2 / n_\ell) \times N(0, σ_{b,\ell}^2), \qquad
    y_i \mid w \sim \begin{cases}
        N(f_w(x_i), σ^2) & \text{"gaussian" (σ fixed, or } σ \sim \text{a prior)} \\
        \mathrm{Bernoulli}(\mathrm{sigmoid}(f_w(x_i))) & \text{"bernoulli"} \\
        \mathrm{Categorical}(\mathrm{softmax}(f_w(x_i))) & \text{"categorical"}
    \end{cases}

Sites: weights ``{name}_{layer path}_W`` and ``_b`` (paths index ``serial``/``parallel``
positions, e.g. ``bnn_2_W``, ``bnn_3_1_0_W``), the noise ``{name}_noise`` when it has a
prior, and the observations ``{obs}`` (default ``"y"``) in the plate ``{name}_data``. No
name holds "/": ArviZ 1.x (xarray DataTree) forbids it in variable names.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO, init_to_sample
from numpyro.infer.autoguide import AutoNormal

from .._numerics import as_float_array, check_finite
from ..stax import Layer
from ._finite import finite_network, forward, lookup_sampler, prior_sampler, weight_sizes

__all__ = ["BNN", "LIKELIHOODS"]

LIKELIHOODS = ("gaussian", "bernoulli", "categorical")


class BNN:
    """The finite-width Bayesian twin of a ``stax`` network.

    Args:
        net: an ``ntk_bayes.stax`` network (``serial`` of Dense/Conv, nonlinearities,
            pooling, branching). Its ``W_std``/``b_std`` set the weight priors.
        width: hidden width (units or channels) of every non-readout weighted layer;
            ``None`` keeps the network's own widths.
        likelihood: ``"gaussian"``, ``"bernoulli"`` or ``"categorical"``.
        noise: Gaussian likelihood only: a fixed noise standard deviation (float), or a
            NumPyro distribution on it (default ``HalfNormal(1)``, suited to
            standardised targets).
        name: prefix of every sample site.
        obs: name of the observed site.
    """

    def __init__(
        self,
        net: Layer,
        width: int | None = None,
        *,
        likelihood: str = "gaussian",
        noise: Any = None,
        name: str = "bnn",
        obs: str = "y",
    ):
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"`likelihood` must be one of {LIKELIHOODS}, got {likelihood!r}")
        if not isinstance(name, str) or not name or not isinstance(obs, str) or not obs:
            raise TypeError("`name` and `obs` must be non-empty strings")
        self.net = net
        self.width = width
        self.finite = finite_network(net, width)
        self.likelihood = likelihood
        self.name = name
        self.obs = obs
        if likelihood == "gaussian":
            if noise is None:
                noise = dist.HalfNormal(1.0)
            if isinstance(noise, dist.Distribution):
                if noise.event_shape != () or noise.batch_shape != ():
                    raise ValueError("`noise` prior must be a scalar distribution")
            elif isinstance(noise, bool) or not isinstance(noise, int | float) or noise <= 0:
                raise ValueError(
                    f"`noise` must be a positive float or a NumPyro distribution, got {noise!r}"
                )
            else:
                noise = float(noise)
        elif noise is not None:
            raise ValueError(f"`noise` applies to the gaussian likelihood only, not {likelihood}")
        self.noise = noise

    def __repr__(self):
        return (
            f"BNN(width={self.width}, likelihood={self.likelihood!r}, noise={self.noise!r}, "
            f"name={self.name!r})"
        )

    @property
    def noise_is_sampled(self) -> bool:
        return isinstance(self.noise, dist.Distribution)

    def is_weight(self, site: str) -> bool:
        """Whether ``site`` names one of this model's weight arrays."""
        return site.startswith(f"{self.name}_") and site.endswith(("_W", "_b"))

    # ---- inputs -----------------------------------------------------------------
    def out_dim(self, x_shape) -> int:
        """Validate the architecture on inputs of ``x_shape``; return the readout size."""
        shape = self.finite.output_shape(tuple(x_shape))
        if not isinstance(shape, tuple) or len(shape) != 2:
            raise ValueError(
                f"the network maps inputs {tuple(x_shape)} to {shape}; a BNN needs outputs "
                "(n, outputs): add Flatten()/GlobalAvgPool() and a Dense readout"
            )
        k = shape[1]
        if self.likelihood in ("gaussian", "bernoulli") and k != 1:
            raise ValueError(
                f"a {self.likelihood} likelihood needs a readout with 1 output, got {k}; "
                "end the network with Dense(1)"
            )
        if self.likelihood == "categorical" and k < 2:
            raise ValueError("a categorical likelihood needs a readout with K >= 2 outputs")
        return k

    def check_data(self, X, y=None):
        """Convert and validate inputs/targets (before any expensive work)."""
        X = as_float_array(X, "X")
        if X.ndim < 2:
            raise ValueError(f"`X` must be (n, features...), got shape {X.shape}")
        check_finite(X, "X")
        k = self.out_dim(X.shape)
        # trace the finite network once (no FLOPs) so unsupported layers fail here
        spec = jax.ShapeDtypeStruct(X.shape, X.dtype)
        jax.eval_shape(lambda x: self.network(x, prior_sampler(jax.random.PRNGKey(0))), spec)
        if y is None:
            return X, None
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"`y` must be a vector of {X.shape[0]} targets, got shape {y.shape}")
        if self.likelihood == "gaussian":
            y = as_float_array(y, "y").astype(X.dtype)
            check_finite(y, "y")
            return X, y
        if not np.all(np.isfinite(y.astype(float))) or np.any(y != np.round(y)):
            raise ValueError("classification targets `y` must be integer class codes")
        n_cls = 2 if self.likelihood == "bernoulli" else k
        if y.min() < 0 or y.max() >= n_cls:
            raise ValueError(
                f"`y` holds class codes outside 0..{n_cls - 1}; the {self.likelihood} "
                f"likelihood with this readout has {n_cls} classes"
            )
        return X, jnp.asarray(y.astype(np.int32))

    # ---- the model --------------------------------------------------------------
    def _sample_site(self, name, shape, scale, dtype):
        return numpyro.sample(
            f"{self.name}_{name}",
            dist.Normal(jnp.zeros((), dtype), scale).expand(shape).to_event(len(shape)),
        )

    def network(self, X, sample):
        """Outputs ``(n, K)`` of the finite network with weights from ``sample``."""
        return forward(self.finite, X, sample)

    def model(self, X, y=None):
        """The NumPyro model: weight priors, then the likelihood of ``y`` (if given)."""
        X = jnp.asarray(X)  # float64 NumPy inputs become JAX's default float
        out = self.network(X, self._sample_site)
        n = X.shape[0]
        if self.likelihood == "gaussian" and self.noise_is_sampled:
            sigma = numpyro.sample(f"{self.name}_noise", self.noise)  # one for all points
        else:
            sigma = self.noise
        with numpyro.plate(f"{self.name}_data", n):
            if self.likelihood == "gaussian":
                numpyro.sample(self.obs, dist.Normal(out[:, 0], sigma), obs=y)
            elif self.likelihood == "bernoulli":
                numpyro.sample(self.obs, dist.Bernoulli(logits=out[:, 0]), obs=y)
            else:
                numpyro.sample(self.obs, dist.Categorical(logits=out), obs=y)

    # ---- the prior --------------------------------------------------------------
    def sample_prior(self, key, X, n_draws: int, *, batch_size: int = 256) -> jax.Array:
        """Network outputs ``(n_draws, n, K)`` under the weight prior.

        Draws are generated ``batch_size`` at a time, so memory stays at
        ``batch_size`` weight sets whatever ``n_draws`` is.
        """
        X, _ = self.check_data(X)
        if isinstance(n_draws, bool) or not isinstance(n_draws, int) or n_draws < 1:
            raise ValueError(f"`n_draws` must be a positive integer, got {n_draws!r}")
        batch_size = max(1, min(int(batch_size), n_draws))
        keys = jax.random.split(key, -(-n_draws // batch_size) * batch_size)
        outs = [
            self._prior_batch(X, keys[i : i + batch_size]) for i in range(0, len(keys), batch_size)
        ]
        return jnp.concatenate(outs)[:n_draws]

    @functools.cached_property
    def _prior_batch(self):
        # cached on the instance so repeated calls reuse the compiled function
        @jax.jit
        def batch(X, keys):
            total = weight_sizes(self.finite, X.shape, X.dtype)
            return jax.vmap(lambda k: self.network(X, prior_sampler(k, total)))(keys)

        return batch

    @functools.cached_property
    def _output_batch(self):
        @jax.jit
        def batch(X, weights):
            return jax.vmap(lambda w: self.network(X, lookup_sampler(w, self.name)))(weights)

        return batch

    # ---- inference --------------------------------------------------------------
    def fit_nuts(
        self,
        X,
        y,
        *,
        num_warmup: int = 500,
        num_samples: int = 500,
        num_chains: int = 2,
        seed: int = 0,
        progress_bar: bool = True,
        target_accept_prob: float = 0.8,
        max_tree_depth: int = 10,
        chain_method: str | None = None,
        thinning: int = 1,
        dense_mass: bool = False,
    ):
        """Sample the posterior with NUTS (Hoffman & Gelman 2014).

        Chains start from prior draws. ``chain_method`` defaults to ``"parallel"``
        when there are enough JAX devices, else ``"sequential"`` (one progress bar per
        chain). Divergences and tree-depth saturation are recorded per chain in
        ``posterior.info``. Network posteriors have long curved ridges (rescaling and
        permutation symmetries of hidden units), so trees are deep; ``max_tree_depth``
        caps the cost per draw, ``dense_mass=True`` adapts a full mass matrix (worth it
        for a few hundred weights), and mass-matrix adaptation needs ``num_warmup``
        of at least ~150.

        Returns:
            A :class:`BNNPosterior` with draws ``(num_chains, num_samples // thinning, ...)``.
        """
        from ._posterior import BNNPosterior

        X, y = self.check_data(X, y)
        for nm, v, lo in (
            ("num_warmup", num_warmup, 1),
            ("num_samples", num_samples, 2),
            ("num_chains", num_chains, 1),
            ("max_tree_depth", max_tree_depth, 1),
            ("thinning", thinning, 1),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"`{nm}` must be an integer >= {lo}, got {v!r}")
        if not 0.0 < target_accept_prob < 1.0:
            raise ValueError(f"`target_accept_prob` must be in (0, 1), got {target_accept_prob}")
        if chain_method is None:
            chain_method = "parallel" if jax.local_device_count() >= num_chains else "sequential"
        if chain_method not in ("parallel", "sequential", "vectorized"):
            raise ValueError(
                f"`chain_method` must be 'parallel', 'sequential' or 'vectorized', got "
                f"{chain_method!r}"
            )
        kernel = NUTS(
            self.model,
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
            chain_method=chain_method,
            progress_bar=progress_bar,
        )
        t0 = time.perf_counter()
        mcmc.run(
            jax.random.PRNGKey(seed),
            X,
            y,
            extra_fields=(
                "diverging",
                "num_steps",
                "accept_prob",
                "energy",
                "adapt_state.step_size",
            ),
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
            "num_warmup": num_warmup,
            "num_samples": num_samples,
            "num_chains": num_chains,
            "chain_method": chain_method,
            "seed": seed,
            "max_tree_depth": max_tree_depth,
            "target_accept_prob": target_accept_prob,
            "dense_mass": dense_mass,
            "divergences_per_chain": stats["diverging"].sum(axis=1).tolist(),
            "max_tree_depth_fraction_per_chain": (depth >= max_tree_depth).mean(axis=1).tolist(),
            "mean_tree_depth": float(depth.mean()),
            "mean_acceptance": float(stats["acceptance_rate"].mean()),
            "step_size_per_chain": stats["step_size"][:, -1].tolist(),
        }
        post = BNNPosterior(self, samples, info, stats, np.asarray(X), np.asarray(y))
        if progress_bar:
            print(post.sampler_report())
        return post

    def fit_svi(
        self,
        X,
        y,
        *,
        num_steps: int = 5000,
        learning_rate: float = 1e-2,
        num_draws: int = 500,
        init_scale: float = 0.01,
        seed: int = 0,
        progress_bar: bool = True,
    ):
        """Fit a mean-field Gaussian (AutoNormal) by maximising the ELBO with Adam.

        Cheaper than NUTS and known to under-estimate uncertainty (mean-field VI), most
        visibly between clusters of data (Foong et al. 2019).

        Returns:
            A :class:`BNNPosterior` with ``num_draws`` guide draws as one chain.
        """
        from ._posterior import BNNPosterior

        X, y = self.check_data(X, y)
        for nm, v in (("num_steps", num_steps), ("num_draws", num_draws)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise ValueError(f"`{nm}` must be an integer >= 2, got {v!r}")
        if not (isinstance(learning_rate, int | float) and learning_rate > 0):
            raise ValueError(f"`learning_rate` must be > 0, got {learning_rate!r}")
        guide = AutoNormal(self.model, init_loc_fn=init_to_sample, init_scale=init_scale)
        svi = SVI(self.model, guide, numpyro.optim.Adam(learning_rate), Trace_ELBO())
        k_fit, k_draw = jax.random.split(jax.random.PRNGKey(seed))
        t0 = time.perf_counter()
        res = svi.run(k_fit, num_steps, X, y, progress_bar=progress_bar)
        draws = guide.sample_posterior(k_draw, res.params, sample_shape=(num_draws,))
        samples = {k: np.asarray(v)[None] for k, v in draws.items() if k != self.obs}
        elapsed = time.perf_counter() - t0
        losses = np.asarray(res.losses)
        if not np.isfinite(losses[-1]):
            raise FloatingPointError(
                "SVI diverged (the ELBO became non-finite); lower `learning_rate` or `init_scale`"
            )
        tail = losses[-max(1, num_steps // 10) :]
        info = {
            "method": "svi",
            "time_s": elapsed,
            "num_steps": num_steps,
            "learning_rate": learning_rate,
            "num_draws": num_draws,
            "seed": seed,
            "final_loss": float(tail.mean()),
            "initial_loss": float(losses[: max(1, num_steps // 100)].mean()),
        }
        return BNNPosterior(self, samples, info, {}, np.asarray(X), np.asarray(y), losses=losses)

    # ---- evaluation helpers used by BNNPosterior ----------------------------------
    def outputs(self, draws: dict, X, *, batch_size: int = 256) -> np.ndarray:
        """Network outputs ``(S, n, K)`` for ``S`` flattened weight draws."""
        X, _ = self.check_data(X)
        S = next(iter(draws.values())).shape[0]
        weights = {k: jnp.asarray(v) for k, v in draws.items() if self.is_weight(k)}
        outs = []
        for i in range(0, S, batch_size):
            chunk = {k: v[i : i + batch_size] for k, v in weights.items()}
            outs.append(np.asarray(self._output_batch(X, chunk)))
        return np.concatenate(outs)


def _log_sigmoid_pair(logits):
    """log p for classes (0, 1) of a Bernoulli with ``logits``: stable in float64."""
    lg = np.asarray(logits, np.float64)
    return np.stack([-np.logaddexp(0.0, lg), -np.logaddexp(0.0, -lg)], axis=-1)


def _log_softmax(logits):
    lg = np.asarray(logits, np.float64)
    m = lg.max(axis=-1, keepdims=True)
    return lg - m - np.log(np.sum(np.exp(lg - m), axis=-1, keepdims=True))


def log_probs(likelihood: str, out: np.ndarray) -> np.ndarray:
    """Class log-probabilities ``(..., K)`` from network outputs."""
    if likelihood == "bernoulli":
        return _log_sigmoid_pair(out[..., 0])
    return _log_softmax(out)

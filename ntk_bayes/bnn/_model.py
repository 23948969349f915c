r"""A finite Bayesian network as a NumPyro model, trained by NUTS or SVI.

For inputs X (n points) and the finite network f_θ of :func:`finite_network`, with
prior scales s_j stated by the layers themselves (``Layer.prior_std``):

.. math::

    θ_j \sim N(0, s_j^2), \qquad
    y_i \mid θ \sim \begin{cases}
        N(f_θ(x_i), σ^2) & \text{"gaussian" (σ² = ``noise``, fixed or with a prior)} \\
        \mathrm{Bernoulli}(\mathrm{sigmoid}(f_θ(x_i))) & \text{"bernoulli"} \\
        \mathrm{Categorical}(\mathrm{softmax}(f_θ(x_i))) & \text{"categorical"}
    \end{cases}

and f_θ is the network's own ``apply_fn``. Sites: one per parameter array,
``{name}_{path}`` with the index path of the array in ``init_fn``'s params (e.g.
``bnn_2_0`` is the W of layer 2 of a ``serial``, ``bnn_2_1`` its bias), the noise
variance ``{name}_noise`` when it has a prior, and the observations ``{obs}`` (default
``"y"``) in the plate ``{name}_data``. No name holds "/" or ".": ArviZ 1.x (xarray
DataTree) forbids them in variable names.
"""

from __future__ import annotations

import functools
import math
import numbers
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpy.typing import ArrayLike
from numpyro.infer import SVI, Trace_ELBO, init_to_sample
from numpyro.infer.autoguide import AutoNormal

from .._defaults import DEFAULT_NUTS
from .._numerics import POSITIVE_INT, as_float_array, check_finite, check_int, is_concrete
from ..stax import Layer
from ._convergence import function_convergence
from ._finite import ParamLayout, finite_network, param_layout
from ._likelihood import LIKELIHOODS
from ._nuts import run_nuts, stderr_progress
from ._posterior import BNNPosterior
from ._readout import collapsed_model, draw_readouts, split_readout

__all__ = ["BNN", "LIKELIHOODS", "DEFAULT_NUTS"]


def _check_noise(noise):
    """The Gaussian noise VARIANCE: a positive finite number (Python, NumPy or a 0-d
    array, as ``GaussianProcess(noise=...)`` takes it) or a scalar NumPyro prior whose
    support is positive variances."""
    if isinstance(noise, dist.Distribution):
        if noise.event_shape != () or noise.batch_shape != ():
            raise ValueError("`noise` prior must be a scalar distribution")
        lower = getattr(noise.support, "lower_bound", None)
        if lower is None or not is_concrete(lower) or not float(np.min(lower)) >= 0:
            raise ValueError(
                f"`noise` is a prior on the noise VARIANCE and must put no mass on negative "
                f"values, but {type(noise).__name__} has support {noise.support}; use e.g. "
                "dist.HalfNormal, dist.LogNormal or dist.InverseGamma (or a float to fix it)"
            )
        return noise
    if isinstance(noise, bool | str | bytes) or np.ndim(noise) != 0:
        raise ValueError(
            "`noise` (the noise variance) must be a positive number or a scalar NumPyro "
            f"distribution, got {noise!r}"
        )
    try:
        value = float(np.asarray(noise))
    except (TypeError, ValueError):
        raise ValueError(
            "`noise` (the noise variance) must be a positive number or a scalar NumPyro "
            f"distribution, got {noise!r}"
        ) from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"`noise` (the noise variance) must be a positive finite number, got {value!r}; "
            "pass sigma**2 for a noise standard deviation sigma"
        )
    return value


class BNN:
    """The finite-width Bayesian twin of a ``stax`` network.

    Args:
        net: an ``ntk_bayes.stax`` network (``serial`` of Dense/Conv/attention,
            nonlinearities, pooling, branching). Its ``W_std``/``b_std`` set the priors.
        width: hidden width (units or channels) of every non-readout Dense/Conv layer;
            ``None`` keeps the network's own widths.
        likelihood: ``"gaussian"``, ``"bernoulli"`` or ``"categorical"``.
        noise: Gaussian likelihood only: the observation-noise VARIANCE σ², fixed
            (float) or a NumPyro distribution on it (default ``HalfNormal(1)`` on σ²,
            suited to standardised targets), as ``GaussianProcess(noise=...)``.
        parameterization: how the weights are sampled: ``"ntk"`` (default; unit
            normal weights, ``apply_fn`` carries the scales) or ``"standard"``
            (W ~ N(0, W_std²/n)). The prior over functions is the same.
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
        parameterization: str = "ntk",
        name: str = "bnn",
        obs: str = "y",
    ):
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"`likelihood` must be one of {LIKELIHOODS}, got {likelihood!r}")
        if not isinstance(name, str) or not name or not isinstance(obs, str) or not obs:
            raise TypeError("`name` and `obs` must be non-empty strings")
        self.finite = finite_network(net, width, parameterization)
        self.net = net
        self.width = None if width is None else int(width)
        self.parameterization = parameterization
        self.likelihood = likelihood
        self.name = name
        self.obs = obs
        if likelihood == "gaussian":
            noise = _check_noise(dist.HalfNormal(1.0) if noise is None else noise)
        elif noise is not None:
            raise ValueError(f"`noise` applies to the gaussian likelihood only, not {likelihood}")
        self.noise = noise

    def __repr__(self):
        return (
            f"BNN(width={self.width}, likelihood={self.likelihood!r}, noise={self.noise!r}, "
            f"parameterization={self.parameterization!r}, name={self.name!r})"
        )

    @property
    def noise_is_sampled(self) -> bool:
        return isinstance(self.noise, dist.Distribution)

    def is_weight(self, site: str) -> bool:
        """Whether ``site`` names one of this model's weight arrays."""
        rest = site[len(self.name) + 1 :] if site.startswith(f"{self.name}_") else ""
        return bool(rest) and all(part.isdigit() for part in rest.split("_"))

    def layout(self, x_shape) -> ParamLayout:
        """Where the sampled weights go in ``init_fn``'s params, for inputs ``x_shape``."""
        x_shape = tuple(x_shape)
        cache = self.__dict__.setdefault("_layouts", {})
        if x_shape not in cache:
            layout = param_layout(self.finite, x_shape)
            if not all(isinstance(std, float | None) for _, _, std in layout.sites):
                return layout  # traced prior scales: never keep them past this trace
            cache[x_shape] = layout
        return cache[x_shape]

    def collapsible_readout(self, x_shape):
        """The readout :func:`fit_nuts` integrates out on inputs ``x_shape`` (``None``
        when the likelihood is not Gaussian, the network does not end in ``Dense(1)``,
        or nothing but the readout is sampled)."""
        if self.likelihood != "gaussian":
            return None
        readout = split_readout(self.finite)
        if readout is None:
            return None
        pre = readout.prefix()
        if not any(not sfx.startswith(pre) for sfx, _, _ in self.layout(x_shape).sampled):
            return None
        return readout

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

    def check_data(self, X, y=None, *, name: str = "X"):
        """Convert and validate inputs/targets (before any expensive work); errors name
        the inputs ``name``."""
        X = as_float_array(X, name)
        if X.ndim < 2:
            raise ValueError(f"`{name}` must be (n, features...), got shape {X.shape}")
        check_finite(X, name)
        k = self.out_dim(X.shape)
        self.layout(X.shape)  # unsupported layers fail here, before any work
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
    def params(self, X, *, fixed: str | None = None):
        """The network's params pytree, each weight array a NumPyro sample site; arrays
        whose path starts with ``fixed`` are zeros instead (a readout integrated out)."""
        layout = self.layout(X.shape)
        arrays = {
            sfx: jnp.zeros(shape, X.dtype)
            if fixed is not None and sfx.startswith(fixed)
            else numpyro.sample(
                f"{self.name}_{sfx}",
                dist.Normal(jnp.zeros((), X.dtype), jnp.asarray(std, X.dtype))
                .expand(shape)
                .to_event(len(shape)),
            )
            for sfx, shape, std in layout.sampled
        }
        return layout.build(arrays, X.dtype)

    def model(self, X, y=None):
        """The NumPyro model: weight priors, then the likelihood of ``y`` (if given)."""
        X = jnp.asarray(X)  # float64 NumPy inputs become JAX's default float
        out = self.finite.apply_fn(self.params(X), X)
        n = X.shape[0]
        if self.likelihood == "gaussian" and self.noise_is_sampled:
            var = numpyro.sample(f"{self.name}_noise", self.noise)  # one for all points
        else:
            var = self.noise
        with numpyro.plate(f"{self.name}_data", n):
            if self.likelihood == "gaussian":
                numpyro.sample(self.obs, dist.Normal(out[:, 0], jnp.sqrt(var)), obs=y)
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
        n_draws = check_int(n_draws, "n_draws", low=1, message=POSITIVE_INT)
        batch_size = min(
            check_int(
                batch_size,
                "batch_size",
                low=1,
                message=POSITIVE_INT,
            ),
            n_draws,
        )
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
            layout = self.layout(X.shape)
            apply = self.finite.apply_fn
            return jax.vmap(lambda k: apply(layout.prior_draw(k, X.dtype), X))(keys)

        return batch

    @functools.cached_property
    def _output_batch(self):
        @jax.jit
        def batch(X, weights):
            layout = self.layout(X.shape)
            pre = f"{self.name}_"

            def one(w):
                arrays = {k[len(pre) :]: v.astype(X.dtype) for k, v in w.items()}
                return self.finite.apply_fn(layout.build(arrays, X.dtype), X)

            return jax.vmap(one)(weights)

        return batch

    # ---- inference --------------------------------------------------------------
    def fit_nuts(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        X_eval: ArrayLike | None = None,
        num_warmup: int = DEFAULT_NUTS["num_warmup"],
        num_samples: int = DEFAULT_NUTS["num_samples"],
        num_chains: int = DEFAULT_NUTS["num_chains"],
        max_tree_depth: int = DEFAULT_NUTS["max_tree_depth"],
        init: str = DEFAULT_NUTS["init"],
        init_steps: int = DEFAULT_NUTS["init_steps"],
        marginalize_readout: bool | None = None,
        seed: int = 0,
        progress_bar: bool = True,
        target_accept_prob: float = 0.8,
        chain_method: str | None = None,
        thinning: int = 1,
        dense_mass: bool = False,
    ) -> BNNPosterior:
        """Sample the posterior with NUTS (Hoffman & Gelman 2014) and diagnose it.

        Network posteriors have curved ridges (rescaling and permutation symmetries of
        hidden units) and several modes in function space, so the default runs many
        vectorised chains; docs/bnn.md has the measurements behind the defaults.
        Convergence is judged on the function values at ``X_eval`` (default: the
        training inputs), not on the weights, whose symmetries make weight-space R-hat
        meaningless.

        Args:
            X: training inputs.
            y: training targets.
            X_eval: inputs whose function values the convergence diagnostics use.
            init: ``"prior"`` (chains start at prior draws) or ``"map"`` (each chain
                at its own MAP estimate, ``init_steps`` Adam steps from a prior draw).
            marginalize_readout: integrate the ``Dense`` readout out of the Gaussian
                likelihood, sample the rest by NUTS and draw each readout from its exact
                conditional (same posterior, far better geometry; see
                :mod:`ntk_bayes.bnn._readout`). Default: whenever the likelihood is
                Gaussian and the network is a ``serial`` ending in ``Dense(1)``.
            chain_method: default ``"parallel"`` with a device per chain,
                ``"sharded"`` when 2 or more local devices split the chains evenly (each
                runs its share vectorised; ``ntk-bayes calibrate`` makes the CPU one
                device per core), else ``"vectorized"``.
            progress_bar: one progress line per chain group on stderr.

        Returns:
            The :class:`BNNPosterior` with draws ``(num_chains, num_samples // thinning,
                ...)``; its ``convergence`` says whether the bar (split R-hat ≤ 1.01,
                bulk ESS ≥ 400, no divergences) holds.
        """
        X, y = self.check_data(X, y)
        X_eval = X if X_eval is None else self.check_data(X_eval, name="X_eval")[0]
        if X_eval.shape[1:] != X.shape[1:]:
            raise ValueError(
                f"`X_eval` points have shape {X_eval.shape[1:]} but the training inputs `X` "
                f"have {X.shape[1:]}; evaluate the network on inputs like its training data"
            )
        seed = check_int(seed, "seed", exc=TypeError)
        readout = self.collapsible_readout(X.shape)
        if marginalize_readout and readout is None:
            raise ValueError(
                "`marginalize_readout=True` needs a Gaussian likelihood and a serial network "
                "ending in Dense(1) after at least one sampled weight"
            )
        if marginalize_readout is False:
            readout = None
        model = self.model if readout is None else functools.partial(collapsed_model, self, readout)
        run = run_nuts(
            model,
            (X, y),
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
            seed=seed,
            max_tree_depth=max_tree_depth,
            target_accept_prob=target_accept_prob,
            dense_mass=dense_mass,
            thinning=thinning,
            chain_method=chain_method,
            init=init,
            init_steps=init_steps,
            progress=stderr_progress if progress_bar else None,
            label=f"BNN width {self.width}",
        )
        run.info["marginalize_readout"] = readout is not None
        if readout is not None:
            key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
            run.samples.update(draw_readouts(self, readout, run.samples, X, y, key))
        post = BNNPosterior(self, run.samples, run.info, run.stats, np.asarray(X), np.asarray(y))
        f = post.outputs(X_eval)
        post.convergence = function_convergence(
            f,
            divergences=int(run.stats["diverging"].sum()),
            tree_depth_saturation=float(np.mean(run.stats["tree_depth"] >= max_tree_depth)),
        )
        post.info["convergence"] = post.convergence.as_dict()
        if progress_bar:
            stderr_progress(f"BNN width {self.width}: {post.convergence}")
        return post

    def fit_svi(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        num_steps: int = 5000,
        learning_rate: float = 1e-2,
        num_draws: int = 500,
        init_scale: float = 0.01,
        seed: int = 0,
        progress_bar: bool = True,
    ) -> BNNPosterior:
        """Fit a mean-field Gaussian (AutoNormal) by maximising the ELBO with Adam.

        Cheaper than NUTS and known to under-estimate uncertainty (mean-field VI), most
        visibly between clusters of data (Foong et al. 2019).

        Returns:
            A :class:`BNNPosterior` with ``num_draws`` guide draws as one chain.
        """
        X, y = self.check_data(X, y)
        num_steps = check_int(num_steps, "num_steps", low=2)
        num_draws = check_int(num_draws, "num_draws", low=2)
        for nm, v in (("learning_rate", learning_rate), ("init_scale", init_scale)):
            # numbers.Real: NumPy's float32 scalars too (not a subclass of float)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v < math.inf:
                raise ValueError(f"`{nm}` must be a finite number > 0, got {v!r}")
        seed = check_int(seed, "seed", exc=TypeError)
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
        names = {f"{self.name}_{sfx}" for sfx, _, _ in self.layout(X.shape).sampled}
        missing = names - set(draws)
        if missing:
            raise KeyError(f"no posterior draws for weight(s) {sorted(missing)}")
        S = next(iter(draws.values())).shape[0]
        weights = {k: jnp.asarray(draws[k]) for k in names}
        outs = []
        for i in range(0, S, batch_size):
            chunk = {k: v[i : i + batch_size] for k, v in weights.items()}
            outs.append(np.asarray(self._output_batch(X, chunk)))
        return np.concatenate(outs)

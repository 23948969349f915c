"""Every model's result as ArviZ data, on ArviZ 0.x (InferenceData) and 1.x (DataTree).

One layout for all models, so that ``az.loo``/``az.compare`` line them up:

====================  =====================  =====================================
group                 variable (dims)        content
====================  =====================  =====================================
posterior             parameters             hyperparameters or weights
posterior_predictive  ``y_test`` (test)      draws of y at the test inputs
log_likelihood        ``y`` (obs)            log p(y_i | draw) on the training data
log_likelihood        ``y_test`` (test)      log p(y*_j | draw) on the test data
observed_data         ``y`` (obs),           training and test targets
                      ``y_test`` (test)
sample_stats          diverging, tree_depth  sampler statistics (MCMC only)
====================  =====================  =====================================

Every posterior-like array has leading ``(chain, draw)`` axes. ``az.loo(idata,
var_name="y")`` is PSIS-LOO on the training data; the held-out log predictive
density is ``logmeanexp`` over draws of ``log_likelihood.y_test``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

with warnings.catch_warnings():
    # ArviZ 0.x announces its 1.0 refactor on import; users can do nothing about it here
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

if TYPE_CHECKING:
    import xarray
    from numpy.typing import ArrayLike
    from numpyro.infer import MCMC

    from ..priors import Replicates

__all__ = [
    "ARVIZ_1",
    "to_inference_data",
    "from_latent_samples",
    "from_gaussian",
    "from_class_probs",
]

ARVIZ_1 = int(az.__version__.split(".")[0]) >= 1
_SAMPLE_GROUPS = ("posterior", "posterior_predictive", "log_likelihood", "sample_stats")
_DATA_GROUPS = ("observed_data", "constant_data")
_DEFAULT_DIMS = {"y": ["obs"], "y_test": ["test"], "f_test": ["test"], "X": ["obs", "feature"]}


def _to_numpy(name: str, group: str, value) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as e:
        raise TypeError(f"{group}[{name!r}] must be array-like, got {type(value).__name__}") from e
    if arr.dtype == object:
        raise TypeError(f"{group}[{name!r}] must hold numbers, got an object array")
    return arr


def _clean_attrs(attrs: Mapping | None) -> dict:
    """netCDF attributes must be str or numbers: encode everything else."""
    out = {}
    for k, v in (attrs or {}).items():
        if isinstance(v, bool | np.bool_):
            out[str(k)] = int(v)
        elif isinstance(v, int | float | str | np.integer | np.floating):
            out[str(k)] = v
        else:
            out[str(k)] = json.dumps(v, default=str)
    return out


def to_inference_data(
    *,
    posterior: Mapping | None = None,
    posterior_predictive: Mapping | None = None,
    log_likelihood: Mapping | None = None,
    observed_data: Mapping | None = None,
    constant_data: Mapping | None = None,
    sample_stats: Mapping | None = None,
    dims: Mapping | None = None,
    coords: Mapping | None = None,
    attrs: Mapping | None = None,
) -> az.InferenceData | xarray.DataTree:
    """Build ArviZ data from dicts of arrays, validating shapes first.

    Args:
        posterior: ``{name: array}`` of parameter draws with leading ``(chain, draw)``
            axes, the same in every sample group.
        posterior_predictive: ``{name: array}`` of predictive draws, ``(chain, draw, ...)``.
        log_likelihood: ``{name: array}`` of pointwise log-likelihoods,
            ``(chain, draw, ...)``.
        observed_data: ``{name: array}`` of observed targets, without sample axes.
        constant_data: ``{name: array}`` of inputs and constants, without sample axes.
        sample_stats: ``{name: array}`` of sampler statistics, ``(chain, draw)``.
        dims: ``{name: [dim, ...]}`` for the non-sample axes; ``y``, ``y_test`` and ``X``
            default to ``obs``, ``test`` and ``(obs, feature)``.
        coords: ``{dim: values}``.
        attrs: global attributes (model name, method, settings); non-scalars are
            stored as JSON strings.

    Returns:
        ``az.InferenceData`` on ArviZ 0.x, ``xarray.DataTree`` on ArviZ 1.x.
    """
    groups = {}
    lead = None
    for group, content in (
        ("posterior", posterior),
        ("posterior_predictive", posterior_predictive),
        ("log_likelihood", log_likelihood),
        ("sample_stats", sample_stats),
        ("observed_data", observed_data),
        ("constant_data", constant_data),
    ):
        if content is None:
            continue
        if not isinstance(content, Mapping):
            raise TypeError(f"`{group}` must be a dict of arrays, got {type(content).__name__}")
        arrays = {str(k): _to_numpy(k, group, v) for k, v in content.items()}
        slashed = [k for k in arrays if "/" in k]
        if slashed:
            raise ValueError(
                f"{group} has variable name(s) {slashed} containing '/', which ArviZ 1.x "
                "(xarray DataTree) forbids; use '_' or '.' instead"
            )
        if group in _SAMPLE_GROUPS:
            for k, a in arrays.items():
                if a.ndim < 2:
                    raise ValueError(
                        f"{group}[{k!r}] must have leading (chain, draw) axes, got shape "
                        f"{a.shape}; add them with x[None] for a single chain"
                    )
                if lead is None:
                    lead = a.shape[:2]
                elif a.shape[:2] != lead:
                    raise ValueError(
                        f"{group}[{k!r}] has (chain, draw) = {a.shape[:2]} but other groups "
                        f"have {lead}; all sample groups must share them"
                    )
        if arrays:
            groups[group] = arrays
    if not groups:
        raise ValueError("nothing to convert: pass at least one group")
    _check_observed(groups)
    all_dims = dict(_DEFAULT_DIMS)
    all_dims.update({k: list(v) for k, v in (dims or {}).items()})
    used = {k for g in groups.values() for k in g}
    all_dims = {k: v for k, v in all_dims.items() if k in used and len(v) == _event_ndim(groups, k)}
    attrs = _clean_attrs(attrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if ARVIZ_1:
            return az.from_dict(groups, dims=all_dims, coords=coords, attrs={"/": attrs})
        return az.from_dict(**groups, dims=all_dims, coords=coords, attrs=attrs)


def _event_ndim(groups, name) -> int:
    for gname, g in groups.items():
        if name in g:
            return g[name].ndim - (2 if gname in _SAMPLE_GROUPS else 0)
    return -1  # pragma: no cover


def _check_observed(groups):
    obs = groups.get("observed_data", {})
    for group in ("log_likelihood", "posterior_predictive"):
        for k, a in groups.get(group, {}).items():
            if k in obs and a.shape[2:] != obs[k].shape:
                raise ValueError(
                    f"{group}[{k!r}] has per-draw shape {a.shape[2:]} but observed_data[{k!r}] "
                    f"has {obs[k].shape}; they describe the same points and must agree"
                )


def _flat_stats(sample_stats):
    return None if not sample_stats else dict(sample_stats)


def from_latent_samples(
    *,
    f_train: ArrayLike,
    y_train: ArrayLike,
    f_test: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
    noise_std: ArrayLike | None = None,
    posterior: Mapping | None = None,
    sample_stats: Mapping | None = None,
    seed: int = 0,
    attrs: Mapping | None = None,
) -> az.InferenceData | xarray.DataTree:
    r"""ArviZ data for a Gaussian-likelihood model from draws of its latent function.

    ``log_likelihood`` holds log N(y_i | f_i^{(c,d)}, σ^{(c,d)2}); ``posterior_predictive``
    holds y* draws f*^{(c,d)} + σ^{(c,d)} ε.

    Args:
        f_train: latent draws at the training inputs ``(chain, draw, n_train)``.
        y_train: training targets ``(n_train,)``.
        f_test: latent draws at the test inputs ``(chain, draw, n_test)`` (optional,
            with ``y_test``).
        y_test: test targets ``(n_test,)``.
        noise_std: observation noise σ: a scalar or one per draw ``(chain, draw)``.
        posterior: parameter draws ``{name: (chain, draw, ...)}``.
        sample_stats: sampler statistics ``{name: (chain, draw)}``.
        seed: seeds the noise of the predictive draws.
        attrs: global attributes.

    Returns:
        ``az.InferenceData`` on ArviZ 0.x, ``xarray.DataTree`` on ArviZ 1.x.
    """
    f_train = np.asarray(f_train, np.float64)
    if f_train.ndim != 3:
        raise ValueError(f"`f_train` must be (chain, draw, n_train), got {f_train.shape}")
    lead = f_train.shape[:2]
    sd = _noise(noise_std, lead)
    y_train = np.asarray(y_train, np.float64).reshape(-1)
    ll = {"y": _gauss_ll(y_train, f_train, sd)}
    obs = {"y": y_train}
    pp = None
    if (f_test is None) != (y_test is None):
        raise ValueError("pass `f_test` and `y_test` together (or neither)")
    if f_test is not None:
        f_test = np.asarray(f_test, np.float64)
        if f_test.ndim != 3 or f_test.shape[:2] != lead:
            raise ValueError(f"`f_test` must be (chain, draw, n_test) = {lead} + (n,)")
        y_test = np.asarray(y_test, np.float64).reshape(-1)
        rng = np.random.default_rng(seed)
        pp = {"y_test": f_test + sd * rng.standard_normal(f_test.shape)}
        ll["y_test"] = _gauss_ll(y_test, f_test, sd)
        obs["y_test"] = y_test
    return to_inference_data(
        posterior=posterior,
        posterior_predictive=pp,
        log_likelihood=ll,
        observed_data=obs,
        sample_stats=_flat_stats(sample_stats),
        attrs=attrs,
    )


def _noise(noise_std, lead):
    if noise_std is None:
        raise ValueError("`noise_std` is required for a Gaussian likelihood")
    sd = np.asarray(noise_std, np.float64)
    if sd.ndim == 0:
        sd = np.full(lead, float(sd))
    if sd.shape != tuple(lead):
        raise ValueError(f"`noise_std` must be a scalar or (chain, draw) = {lead}, got {sd.shape}")
    if not np.all(np.isfinite(sd)) or np.any(sd <= 0):
        raise ValueError("`noise_std` must be finite and > 0")
    return sd[..., None]


def _gauss_ll(y, f, sd):
    if f.shape[-1] != y.shape[0]:
        raise ValueError(f"latent draws have {f.shape[-1]} points but the targets {y.shape[0]}")
    z = (y - f) / sd
    return -0.5 * z * z - np.log(sd) - 0.5 * math.log(2 * math.pi)


def from_gaussian(
    *,
    mean_train: ArrayLike,
    var_train: ArrayLike,
    y_train: ArrayLike,
    noise_var: ArrayLike,
    mean_test: ArrayLike | None = None,
    var_test: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
    n_draws: int = 1000,
    seed: int = 0,
    posterior: Mapping | None = None,
    log_likelihood: ArrayLike | None = None,
    sample_stats: Mapping | None = None,
    attrs: Mapping | None = None,
) -> az.InferenceData | xarray.DataTree:
    """ArviZ data for a Gaussian predictive N(mean_i, var_i + σ²) (GPs, GD ensembles).

    Point estimates are not dressed as draws: with fixed hyperparameters (``(n,)``
    moments) the data hold only ``posterior_predictive`` (``n_draws`` genuine draws of
    y at the training and test inputs, for ``az.plot_ppc``) and ``observed_data``; no
    ``posterior`` and no ``log_likelihood``, so PSIS-LOO cannot be run on them by
    mistake (their LOO is closed-form: pass it in ``attrs``). With ``(chain, draw, n)``
    moments, one per posterior draw of the hyperparameters, the predictive draw s comes
    from draw s, ``posterior`` holds the hyperparameter draws and ``log_likelihood``
    the pointwise terms given (e.g. log p(y_i | y_{-i}, θ_s), for PSIS of a
    non-factorised model, Bürkner, Gabry & Vehtari 2021).

    Args:
        mean_train: latent mean at the training inputs: ``(n,)`` or ``(chain, draw, n)``.
        var_train: latent variance at the training inputs, shaped like ``mean_train``.
        y_train: training targets.
        noise_var: observation-noise variance: scalar or ``(chain, draw)``.
        mean_test: latent mean at the test inputs (optional, with ``var_test`` and
            ``y_test``).
        var_test: latent variance at the test inputs.
        y_test: test targets.
        n_draws: predictive draws per point for fixed moments.
        seed: seeds the draws.
        posterior: hyperparameter draws ``{name: (chain, draw)}`` (sampled moments only).
        log_likelihood: ``(chain, draw, n)`` pointwise log-likelihood of ``y_train``
            (sampled moments only); stored as the one variable ``y``, so that
            ``az.loo(idata)`` needs no arguments.
        sample_stats: sampler statistics ``{name: (chain, draw)}``.
        attrs: global attributes.

    Returns:
        ``az.InferenceData`` on ArviZ 0.x, ``xarray.DataTree`` on ArviZ 1.x.
    """
    rng = np.random.default_rng(seed)
    m = np.asarray(mean_train, np.float64)
    if m.ndim == 1:
        if posterior is not None or log_likelihood is not None or sample_stats is not None:
            raise ValueError(
                "fixed (n,) moments are a point estimate: pass its hyperparameters and "
                "closed-form LOO in `attrs`, not as `posterior`/`log_likelihood` draws"
            )
        lead = (1, int(n_draws))
    elif m.ndim == 3:
        lead = m.shape[:2]
    else:
        raise ValueError(f"`mean_train` must be (n,) or (chain, draw, n), got {m.shape}")
    sd_noise = _noise(np.sqrt(np.asarray(noise_var, np.float64)), lead)

    def draw(mean, var, name):
        mean = np.asarray(mean, np.float64)
        var = np.asarray(var, np.float64)
        if var.shape != mean.shape:
            raise ValueError(f"`var_{name}` has shape {var.shape}, `mean_{name}` {mean.shape}")
        if np.any(var < -1e-9 * np.max(np.abs(var), initial=1.0)) or not np.all(np.isfinite(var)):
            raise ValueError(f"`var_{name}` must be finite and >= 0 (a posterior variance)")
        mean = np.broadcast_to(mean, lead + mean.shape[-1:])
        sd = np.sqrt(np.broadcast_to(np.maximum(var, 0.0), mean.shape) + sd_noise**2)
        return mean + sd * rng.standard_normal(mean.shape)

    y_train = np.asarray(y_train, np.float64).reshape(-1)
    pp = {"y": draw(m, var_train, "train")}
    if pp["y"].shape[-1] != y_train.shape[0]:
        raise ValueError(f"`mean_train` has {m.shape[-1]} points but `y_train` {y_train.size}")
    obs = {"y": y_train}
    if (mean_test is None) != (y_test is None):
        raise ValueError("pass `mean_test`, `var_test` and `y_test` together (or none)")
    if mean_test is not None:
        pp["y_test"] = draw(mean_test, var_test, "test")
        obs["y_test"] = np.asarray(y_test, np.float64).reshape(-1)
    ll = None
    if log_likelihood is not None:
        ll = {"y": np.asarray(log_likelihood, np.float64)}
        if ll["y"].shape != lead + y_train.shape:
            raise ValueError(
                f"`log_likelihood` must be (chain, draw, n) = {lead + y_train.shape}, "
                f"got {ll['y'].shape}"
            )
    return to_inference_data(
        posterior=posterior,
        posterior_predictive=pp,
        log_likelihood=ll,
        observed_data=obs,
        sample_stats=_flat_stats(sample_stats),
        attrs=attrs,
    )


def from_class_probs(
    *,
    probs_train: ArrayLike,
    y_train: ArrayLike,
    probs_test: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
    posterior: Mapping | None = None,
    sample_stats: Mapping | None = None,
    seed: int = 0,
    attrs: Mapping | None = None,
) -> az.InferenceData | xarray.DataTree:
    """ArviZ data for a classifier from per-draw class probabilities ``(chain, draw, n, K)``.

    ``log_likelihood`` holds log p_{y_i}; ``posterior_predictive`` one class draw per
    posterior draw.
    """
    rng = np.random.default_rng(seed)

    def ll_of(p, y, name):
        p = np.asarray(p, np.float64)
        if p.ndim != 4:
            raise ValueError(f"`probs_{name}` must be (chain, draw, n, K), got {p.shape}")
        y = np.asarray(y).reshape(-1).astype(np.int64)
        if y.shape[0] != p.shape[2] or y.min() < 0 or y.max() >= p.shape[3]:
            raise ValueError(f"`y_{name}` must hold {p.shape[2]} codes in 0..{p.shape[3] - 1}")
        return np.log(np.maximum(np.take_along_axis(p, y[None, None, :, None], -1)[..., 0], 1e-300))

    ll = {"y": ll_of(probs_train, y_train, "train")}
    obs = {"y": np.asarray(y_train).reshape(-1).astype(np.int64)}
    pp = None
    if probs_test is not None:
        p = np.asarray(probs_test, np.float64)
        ll["y_test"] = ll_of(p, y_test, "test")
        obs["y_test"] = np.asarray(y_test).reshape(-1).astype(np.int64)
        cum = np.cumsum(p, axis=-1)
        u = rng.uniform(size=p.shape[:-1] + (1,))
        pp = {"y_test": np.minimum((u > cum).sum(axis=-1), p.shape[-1] - 1)}
    return to_inference_data(
        posterior=posterior,
        posterior_predictive=pp,
        log_likelihood=ll,
        observed_data=obs,
        sample_stats=_flat_stats(sample_stats),
        attrs=attrs,
    )


def from_numpyro(
    mcmc: MCMC,
    *,
    gp_sites: list[str] | tuple[str, ...] | None = None,
    replicates: Mapping[str, Replicates] | None = None,
    **kwargs: Any,
) -> az.InferenceData | xarray.DataTree:
    """``az.from_numpyro(mcmc)`` with N pointwise terms for every GaussianProcess site.

    A GP site's log-density is one number per draw (the joint multivariate normal), so
    plain ArviZ sees one data point. Here its ``log_likelihood`` holds, per draw θ, the
    exact leave-one-out conditionals log p(y_i | y_-i, θ) (Rasmussen & Williams 2006,
    eq. 5.12); PSIS over the hyperparameter draws then estimates LOO with N points::

        idata = nb.diagnostics.from_numpyro(mcmc)
        az.loo(idata, var_name="y")            # n_data_points == N

    Args:
        mcmc: a NumPyro ``MCMC`` object after ``run`` (the model and its arguments are
            taken from it).
        gp_sites: names of the GP sites to convert (default: every observed
            :class:`~ntk_bayes.GaussianProcess` site).
        replicates: ``{site: rep}`` for GP sites that observe collapsed replicates
            (:func:`~ntk_bayes.priors.collapse_replicates`): their points are then the N
            original observations (``rep.y``, dimension ``{site}_observation``), and the
            ``numpyro.factor`` sites (the replicates' constant, not data) are left out
            of ``log_likelihood``.
        **kwargs: passed to ``az.from_numpyro`` (``coords``, ``dims``, ...).

    Returns:
        ``az.InferenceData`` on ArviZ 0.x, ``xarray.DataTree`` on ArviZ 1.x. Masked
            (padded) points of batched GPs are dropped: the site's points are then the
            flattened real points, dimension ``{site}_point``.
    """
    import jax
    import numpyro.distributions as dist
    import xarray as xr
    from numpyro import handlers

    from ..priors import GaussianProcess, loo_log_likelihood
    from ..priors._predict import one_device_mcmc, unwrap_gp

    if not hasattr(mcmc, "get_samples") or not hasattr(mcmc, "sampler"):
        raise TypeError(f"`mcmc` must be a numpyro MCMC object, got {type(mcmc).__name__}")
    mcmc = one_device_mcmc(mcmc)  # parallel chains: draws sharded over devices
    model = mcmc.sampler.model
    args, kw = getattr(mcmc, "_args", ()), getattr(mcmc, "_kwargs", {})
    first = jax.tree_util.tree_map(lambda x: x[0], mcmc.get_samples())
    tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=first)).get_trace(
        *args, **kw
    )
    found = {
        k: s
        for k, s in tr.items()
        if s["type"] == "sample"
        and s.get("is_observed")
        and isinstance(unwrap_gp(s["fn"]), GaussianProcess)  # gp.expand(...) copies too
    }
    sites = list(found) if gp_sites is None else list(gp_sites)
    for name in sites:
        if name not in found:
            raise ValueError(
                f"{name!r} is not an observed GaussianProcess site; GP sites: {sorted(found)}"
            )
    _expose_numpyro_initialization()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        idata = az.from_numpyro(mcmc, **kwargs)
    replicates = dict(replicates or {})
    for name in replicates:
        if name not in found:
            raise ValueError(
                f"`replicates` names {name!r}, not an observed GaussianProcess site; "
                f"GP sites: {sorted(found)}"
            )
    if replicates:
        factors = [k for k, s in tr.items() if isinstance(s.get("fn"), dist.Unit)]
        ll_group = _get_group(idata, "log_likelihood")
        for k in factors:
            if ll_group is not None and k in ll_group:
                idata = _drop_var(idata, "log_likelihood", k)
    for name in sites:
        if name in replicates:
            rep = replicates[name]
            ll = loo_log_likelihood(model, mcmc, *args, site=name, replicates=rep, **kw)
            dims = [f"{name}_observation"]
            idata = _set_var(
                idata,
                "log_likelihood",
                name,
                xr.DataArray(np.asarray(ll, np.float64), dims=["chain", "draw"] + dims),
            )
            idata = _set_var(
                idata, "observed_data", name, xr.DataArray(np.asarray(rep.y), dims=dims)
            )
            continue
        ll = np.asarray(loo_log_likelihood(model, mcmc, *args, site=name, **kw), np.float64)
        y = np.asarray(found[name]["value"])
        gp = unwrap_gp(found[name]["fn"])
        mask = gp.point_mask
        if mask is not None:
            keep = np.asarray(mask)
            # copies of an expanded site keep their own axes ahead of the masked points
            copies = [f"{name}_copy_dim_{i}" for i in range(y.ndim - keep.ndim)]
            ll, y, dims = ll[..., keep], y[..., keep], copies + [f"{name}_point"]
        else:
            obs = _get_group(idata, "observed_data")
            dims = (
                list(obs[name].dims)
                if obs is not None and name in obs and obs[name].shape == y.shape
                else [f"{name}_dim_{i}" for i in range(y.ndim)]
            )
        idata = _set_var(
            idata, "log_likelihood", name, xr.DataArray(ll, dims=["chain", "draw"] + dims)
        )
        if mask is not None:
            idata = _set_var(idata, "observed_data", name, xr.DataArray(y, dims=dims))
    return idata


def _expose_numpyro_initialization():
    """ArviZ 1.x's ``from_numpyro`` reads ``numpyro.infer.initialization`` as an attribute,
    which NumPyro 0.22 does not leave on ``numpyro.infer`` (the submodule is imported but
    not bound): bind it, as a plain ``import`` of a submodule normally does."""
    import sys

    import numpyro.infer.initialization  # noqa: F401

    infer = sys.modules["numpyro.infer"]
    if not hasattr(infer, "initialization"):
        infer.initialization = sys.modules["numpyro.infer.initialization"]


def _get_group(idata, group):
    if ARVIZ_1:
        return idata[group].to_dataset() if group in idata.children else None
    return getattr(idata, group, None)


def _drop_var(idata, group, name):
    ds = _get_group(idata, group).drop_vars(name)
    if ARVIZ_1:
        import xarray as xr

        idata[group] = xr.DataTree(ds)
    else:
        setattr(idata, group, ds)
    return idata


def _set_var(idata, group, name, da):
    """Replace (or add) ``group[name]``, dropping coordinates no variable uses any more."""
    import xarray as xr

    ds = _get_group(idata, group)
    ds = xr.Dataset() if ds is None else ds.drop_vars(name, errors="ignore")
    ds = ds.drop_dims([d for d in ds.dims if d.startswith(f"{name}_dim") and d not in da.dims])
    ds = ds.assign(
        {
            name: da.assign_coords(
                {d: np.arange(n) for d, n in da.sizes.items() if d not in ds.coords}
            )
        }
    )
    if ARVIZ_1:
        idata[group] = xr.DataTree(ds)
        return idata
    if group in idata.groups():
        setattr(idata, group, ds)
    else:
        idata.add_groups({group: ds})
    return idata

r"""NNGP and NTK Gaussian-process priors as NumPyro distributions.

For a network ``net`` with kernel κ ∈ {Σ (NNGP), Θ (NTK)} evaluated at the
inputs X, the observations follow

.. math::

    y \sim \mathcal N\big(m(X),\; κ(X, X) + σ^2 I\big),

one independent column per output (``num_outputs``). The posterior predictive at
X* (:meth:`GaussianProcess.condition`) is (Rasmussen & Williams 2006, eq. 2.23–2.24)

.. math::

    f_* \mid y \sim \mathcal N\big(m_* + K_{*x} K_y^{-1}(y - m),\;
                                  K_{**} - K_{*x} K_y^{-1} K_{x*}\big),
    \qquad K_y = κ(X, X) + σ^2 I.

``noise`` is the variance σ². Inputs follow the network (``(N, d)`` data, images,
sequences); the event is the vector of N observations, so several output columns
share the kernel as a batch of shape ``(num_outputs,)`` and are observed as ``y.T``.

Groups in a plate: a network whose hyperparameters carry a leading axis G (build it
with ``jax.vmap(make_net)(w)`` from plate-shaped draws ``w``) and inputs ``(G, n, ...)``
give one distribution with ``batch_shape (G,)``, the kernels vmapped over groups. Ragged
groups are padded to a common n (:func:`pad_groups`) and a ``point_mask`` drops the padding
exactly: a padded point is made independent of the others with unit variance and zero
residual, and its constant ``-½ log 2π`` is removed from the log-density.

The linear algebra (Cholesky with jitter, conditioning, leave-one-out) is the exact-GP
core of :mod:`ntk_bayes.gp` (:class:`~ntk_bayes.gp.ExactGP` runs on the same functions).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jaxtyping import Array, ArrayLike
from numpyro.distributions import constraints
from numpyro.distributions.util import lazy_property

from .._linalg import batched_psd_cholesky
from .._numerics import as_float_array, check_finite, check_int, full_precision, is_concrete
from ..gp._checks import check_jitter, check_noise, mean_values
from ..gp._exact import (
    cholesky_factor,
    condition_on,
    log_density,
    loo_log_predictive,
    solve_alpha,
)
from ..stax import Layer

__all__ = ["GaussianProcess", "ConditionedGP", "KERNELS", "net_batch_size"]

KERNELS = ("nngp", "ntk")
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _check_kernel_name(kernel):
    if kernel not in KERNELS:
        raise ValueError(f"`kernel` must be one of {KERNELS}, got {kernel!r}")


def net_batch_size(net: Layer) -> int | None:
    """G when the network's hyperparameters carry a leading group axis, else ``None``."""
    sizes = {jnp.shape(x)[0] for x in jax.tree_util.tree_leaves(net) if jnp.ndim(x) > 0}
    if len(sizes) > 1:
        raise ValueError(
            f"the network's hyperparameters have different leading sizes {sorted(sizes)}; "
            "batched hyperparameters must all have shape (G,) (build with jax.vmap)"
        )
    return sizes.pop() if sizes else None


def _net_axes(net):
    return jax.tree_util.tree_map(lambda x: 0 if jnp.ndim(x) > 0 else None, net)


def _batched_kernel(net, groups, kernel, X1, X2=None):
    """``net.kernel_fn`` per group: X1 ``(G, n1, ...)``, X2 ``(G, n2, ...)`` or None."""
    if groups is None:
        return net.kernel_fn(X1, X2, kernel)
    if X2 is None:
        return jax.vmap(lambda nt, a: nt.kernel_fn(a, None, kernel), (_net_axes(net), 0))(net, X1)
    return jax.vmap(lambda nt, a, b: nt.kernel_fn(a, b, kernel), (_net_axes(net), 0, 0))(
        net, X1, X2
    )


def _check_noise(noise, n, groups):
    if noise is None:
        return None
    if groups is None:
        return check_noise(noise, n)
    noise = jnp.asarray(noise)
    if noise.shape not in ((), (groups,), (groups, n)):
        raise ValueError(
            f"`noise` must be a scalar variance, one per group ({groups},) or one per point "
            f"({groups}, {n}), got shape {noise.shape}"
        )
    flat = noise if noise.ndim == 0 else noise.reshape(-1)
    return check_noise(flat, None if noise.ndim == 0 else noise.size).reshape(noise.shape)


def _noise_diag(noise, n, groups):
    if noise is None:
        return None
    if groups is not None and noise.ndim == 1:
        noise = noise[:, None]
    return jnp.broadcast_to(noise, ((groups,) if groups else ()) + (n,))


def check_one_output(net, point_shape, x_shape, what: str) -> None:
    """``net`` must map inputs of ``point_shape`` (N, ...) to (N, 1): one output per point."""
    try:
        out_shape = net.output_shape(point_shape)
    except (ValueError, TypeError) as e:
        raise ValueError(f"`X` of shape {x_shape} does not fit the network: {e}") from None
    if len(out_shape) != 2 or out_shape[-1] != 1:
        raise ValueError(
            f"the network maps X to shape {tuple(out_shape)}; {what} needs one output "
            "per point: end the network with Dense(1) (use num_outputs for several columns)"
        )


def _check_has_points(X, groups, name):
    """A clear error for inputs without points (the kernel's own names otherwise)."""
    lead = 0 if groups is None else 1
    if X.ndim > lead and X.shape[lead] == 0:
        raise ValueError(f"`{name}` has no points (shape {X.shape}); pass at least one row")


def _callable_mean(mean_fn, X, groups, num_outputs, dtype):
    """``mean_fn(X)`` as the distribution's ``loc``: ``(n,)``, ``(K, n)`` with
    ``num_outputs=K``, or ``(G, n)`` with groups. Accepts what ExactGP accepts: ``(n,)``,
    ``(n, 1)`` or ``(n, K)`` (groups: ``(G, n)`` or ``(G, n, 1)``)."""
    if groups is None:
        k = 1 if num_outputs is None else num_outputs
        m = mean_values(mean_fn, X, k, dtype)  # (n, k), or a ValueError naming `mean`
        return m[:, 0] if num_outputs is None else m.T
    n = X.shape[1]
    m = jnp.asarray(mean_fn(X), dtype)
    if m.shape == (groups, n, 1):
        m = m[..., 0]
    if m.shape != (groups, n):
        raise ValueError(
            f"the callable `mean` returned shape {m.shape} for inputs of shape {X.shape}; "
            f"expected ({groups}, {n}) or ({groups}, {n}, 1), one value per group and point"
        )
    return m


def _diag_embed(d):
    return d[..., :, None] * jnp.eye(d.shape[-1], dtype=d.dtype)


def _report_bad_y(y):
    """Host-side check for ``validate_args=True`` under tracing (``jax.debug.callback``)."""
    if not np.all(np.isfinite(y)):
        raise ValueError(
            f"GaussianProcess: `y` contains {int((~np.isfinite(y)).sum())} non-finite value(s); "
            "remove or impute NaN/inf (or mask the points)"
        )


class _MVNBase(dist.Distribution):
    """Shared log-density and sampling of (a batch of) multivariate normals given by
    Cholesky factors ``scale_tril`` ``(n, n)`` (shared) or ``(*batch, n, n)``."""

    support = constraints.real_vector
    pytree_data_fields = ("loc", "scale_tril")
    pytree_aux_fields = ("num_outputs",)

    def _setup(self, loc, scale_tril, num_outputs, batch=None, validate_args=None):
        self.loc, self.scale_tril, self.num_outputs = loc, scale_tril, num_outputs
        n = loc.shape[-1]
        if batch is None:
            batch = () if num_outputs is None else (num_outputs,)
        super().__init__(batch_shape=batch, event_shape=(n,), validate_args=validate_args)

    @property
    def mean(self):
        return jnp.broadcast_to(self.loc, self.batch_shape + self.event_shape)

    @property
    @full_precision
    def covariance(self):
        L = self.scale_tril
        c = L @ jnp.swapaxes(L, -1, -2)
        return jnp.broadcast_to(c, self.batch_shape + self.event_shape * 2)

    @property
    @full_precision
    def variance(self):
        v = jnp.sum(self.scale_tril**2, axis=-1)
        return jnp.broadcast_to(v, self.batch_shape + self.event_shape)

    @full_precision
    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape + self.event_shape
        eps = jax.random.normal(key, shape, dtype=self.scale_tril.dtype)
        return self.loc + jnp.einsum("...ij,...j->...i", self.scale_tril, eps)

    def _check_value(self, value):
        value = jnp.asarray(value)
        n = self.event_shape[0]
        if value.shape[-1:] != (n,):
            raise ValueError(
                f"value has trailing size {value.shape[-1:]} but the GP is over {n} points; "
                "observe y of shape (N,) or, with num_outputs=K, y.T of shape (K, N)"
            )
        return value

    @full_precision
    def log_prob(self, value):
        value = self._check_value(value)
        return self._log_density(value - self.loc)

    def _log_density(self, r):
        L = self.scale_tril
        if L.ndim == 2:
            return log_density(L, r)
        nb = L.ndim - 2
        r = jnp.broadcast_to(r, jnp.broadcast_shapes(r.shape, L.shape[:-1]))
        lead = r.shape[: r.ndim - nb - 1]
        flat = r.reshape((-1,) + r.shape[-nb - 1 :])  # (S, *batch, n)
        Lf = L.reshape((-1,) + L.shape[-2:])
        rf = jnp.moveaxis(flat.reshape(flat.shape[0], -1, L.shape[-1]), 1, 0)  # (B, S, n)
        lp = jax.vmap(log_density)(Lf, rf)  # (B, S)
        return jnp.moveaxis(lp, 0, 1).reshape(lead + L.shape[:-2])


class GaussianProcess(_MVNBase):
    """Distribution of the observations at ``X`` under a network's NNGP or NTK prior.

    Args:
        net: an ``ntk_bayes.stax`` network (its hyperparameters may be sample sites).
            Hyperparameters with a leading axis G (``jax.vmap(make_net)(w)``) make a
            batch of G independent GPs, one per group.
        X: inputs, ``(N, ...)`` as the network expects, or ``(G, n, ...)`` with a
            batched network.
        kernel: ``"nngp"`` (Bayesian network at initialisation) or ``"ntk"`` (the
            NTK-GP of He et al. 2020 uses Θ as the prior covariance).
        noise: observation noise variance σ²: scalar or ``(N,)``; batched: scalar,
            ``(G,)`` or ``(G, n)``. ``None`` means a noiseless GP (only ``jitter``).
        mean: constant, ``(N,)`` (or ``(G, n)``) array, or callable ``mean(X)``;
            default 0.
        jitter: relative diagonal jitter (times mean diagonal); default by dtype.
        num_outputs: ``None`` for one output, or K for K columns sharing the kernel
            (batch shape ``(K,)``; observe ``y.T``).
        point_mask: boolean ``(N,)`` or ``(G, n)``: False marks padding (see :func:`pad_groups`).
        validate_args: ``True`` (explicitly) also reports NaN/inf in ``y`` under
            ``jit``/NUTS, where values are not concrete: a host callback raises at run
            time. Concrete ``y`` and ``noise`` are always checked.
    """

    pytree_data_fields = ("net", "X", "noise", "mean_value", "kxx", "point_mask")
    pytree_aux_fields = ("kernel", "jitter", "mean_fn", "mean_is_vector", "groups", "check_traced")

    @full_precision
    def __init__(
        self,
        net: Layer,
        X: ArrayLike,
        kernel: str = "nngp",
        noise: ArrayLike | None = None,
        mean: ArrayLike | Callable[[Array], Array] | None = None,
        jitter: float | None = None,
        num_outputs: int | None = None,
        *,
        point_mask: ArrayLike | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(net, Layer):
            raise TypeError(
                f"`net` must be an ntk_bayes.stax network, got {type(net).__name__}; build it "
                "with stax.serial(...)"
            )
        _check_kernel_name(kernel)
        if num_outputs is not None:
            num_outputs = check_int(
                num_outputs,
                "num_outputs",
                low=1,
                message="`{name}` must be None or a positive int, got {value!r}",
            )
        jitter = check_jitter(jitter)
        groups = net_batch_size(net)
        X = as_float_array(X, "X")
        _check_has_points(X, groups, "X")
        check_finite(X, "X")
        if groups is not None:
            if num_outputs is not None:
                raise ValueError("`num_outputs` cannot be combined with batched hyperparameters")
            if X.ndim < 3 or X.shape[0] != groups:
                raise ValueError(
                    f"the network's hyperparameters are batched over {groups} groups, so `X` "
                    f"must be (G={groups}, n, ...), got shape {X.shape}; broadcast shared "
                    "inputs with jnp.broadcast_to"
                )
        point_shape = X.shape if groups is None else X.shape[1:]
        check_one_output(net, point_shape, X.shape, "a GP prior")
        n = point_shape[0]
        batch = () if groups is None else (groups,)
        noise = _check_noise(noise, n, groups)
        point_mask = self._check_mask(point_mask, batch + (n,))
        mean_fn = mean if callable(mean) else None
        if mean_fn is not None:
            m = _callable_mean(mean_fn, X, groups, num_outputs, X.dtype)
        else:
            m = 0.0 if mean is None else mean
        mean_is_vector = mean_fn is None and jnp.ndim(m) > 0
        if mean_is_vector and jnp.shape(m) != batch + (n,):
            raise ValueError(
                f"`mean` must be a scalar, {batch + (n,)} array or callable, got {jnp.shape(m)}"
            )
        if mean_fn is None or jnp.ndim(m) == 1:
            m = jnp.broadcast_to(jnp.asarray(m, X.dtype), batch + (n,))
        # a NaN mean would only show as a NaN log-density; say which argument it was
        check_finite(m, "mean" if mean_fn is None else "mean(X)")
        kxx = _batched_kernel(net, groups, kernel, X)
        self.net, self.X, self.kernel, self.noise, self.groups = net, X, kernel, noise, groups
        self.jitter, self.mean_fn, self.mean_value, self.kxx = jitter, mean_fn, m, kxx
        self.mean_is_vector, self.point_mask = bool(mean_is_vector), point_mask
        # NumPyro validates by default; the host callback runs only when asked for
        self.check_traced = validate_args is True
        ky = kxx
        if noise is not None:
            ky = ky + _diag_embed(_noise_diag(noise, n, groups).astype(kxx.dtype))
        if point_mask is not None:
            mm = point_mask.astype(kxx.dtype)
            ky = ky * mm[..., :, None] * mm[..., None, :] + _diag_embed(1.0 - mm)
        L, _ = cholesky_factor(ky, jitter, f"{kernel} kernel matrix + noise")
        self._setup(m, L, num_outputs, batch if groups else None, validate_args)

    @staticmethod
    def _check_mask(mask, shape):
        if mask is None:
            return None
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_ or mask.shape != shape:
            raise ValueError(
                f"`point_mask` must be a boolean array of shape {shape}, got "
                f"{mask.dtype} {mask.shape}; build it with pad_groups"
            )
        return mask

    def _observed(self, y, name="y"):
        """Validate y: shape, finiteness of the unmasked points; zero the padding."""
        y = self._check_value(as_float_array(y, name))
        if self.point_mask is not None:
            y = jnp.where(self.point_mask, y, self.loc)
        check_finite(y, name)
        if self.check_traced and not is_concrete(y):
            jax.debug.callback(_report_bad_y, y)
        return y

    def _validate_y(self, y):
        y = self._observed(y)
        want = self.batch_shape + self.event_shape
        if y.shape != want:
            hint = " (pass y.T for (N, K) data)" if y.shape[::-1] == want else ""
            raise ValueError(f"`y` has shape {y.shape}, expected {want}{hint}")
        return y

    @full_precision
    def log_prob(self, value):
        value = self._observed(value, "value")
        lp = self._log_density(value - self.loc)
        if self.point_mask is not None:  # padded points: residual 0, variance 1
            lp = lp + _HALF_LOG_2PI * jnp.sum(~self.point_mask, axis=-1)
        return lp

    def _alpha(self, y):
        r = y - self.loc
        if self.groups is None:
            return solve_alpha(self.scale_tril, r)
        return jax.vmap(solve_alpha)(self.scale_tril, r)

    @full_precision
    def condition(
        self,
        y: ArrayLike,
        X_test: ArrayLike | None = None,
        *,
        include_noise: bool = False,
        diag: bool = False,
    ) -> ConditionedGP:
        """Posterior predictive of the latent function at ``X_test`` (default: ``X``).

        Returns a :class:`ConditionedGP`: a distribution with ``mean``, ``variance``,
        ``covariance``, ``sample`` and ``log_prob``, usable as a NumPyro site.
        ``include_noise`` adds σ² (predicting new observations, not f). With batched
        groups ``X_test`` is ``(G, m, ...)`` and the result has batch shape ``(G,)``.
        """
        y = self._validate_y(y)
        if X_test is not None and self.mean_is_vector:
            raise ValueError(
                "a vector `mean` has no value at X_test; pass a constant or a callable mean(X)"
            )
        Xs = self.X if X_test is None else as_float_array(X_test, "X_test")
        _check_has_points(Xs, self.groups, "X_test")
        check_finite(Xs, "X_test")
        lead = 0 if self.groups is None else 1
        if (
            Xs.shape[lead + 1 :] != self.X.shape[lead + 1 :]
            or Xs.shape[:lead] != self.X.shape[:lead]
        ):
            raise ValueError(
                f"`X_test` has shape {Xs.shape}; it must match the training inputs "
                f"{self.X.shape} except in the number of points"
            )
        k = _batched_kernel(self.net, self.groups, self.kernel, self.X, Xs)  # K_x*
        kss = _batched_kernel(self.net, self.groups, self.kernel, Xs)
        if self.point_mask is not None:
            k = k * self.point_mask[..., :, None]
        alpha = self._alpha(y)
        if self.mean_fn is not None:
            ms = _callable_mean(self.mean_fn, Xs, self.groups, self.num_outputs, Xs.dtype)
            check_finite(ms, "mean(X_test)")
        else:  # a vector mean is known at X only (X_test=None); a constant anywhere
            ms = self.mean_value if X_test is None else self.mean_value[..., :1]
            ms = jnp.broadcast_to(jnp.asarray(ms, Xs.dtype), Xs.shape[: lead + 1])
        kss = kss.astype(self.scale_tril.dtype)
        # the prior variance at X_test scales the jitter of the posterior covariance: its
        # round-off is that of K_** (the difference K_** - V^T V may be far smaller)
        prior_var = jnp.mean(jnp.diagonal(kss, axis1=-2, axis2=-1), axis=-1)
        if self.groups is None:
            mean, cov = condition_on(k, kss, self.scale_tril, alpha.T)
            mean = mean.T
        else:
            mean, cov = jax.vmap(condition_on)(k, kss, self.scale_tril, alpha)
        mean = ms + mean
        if include_noise and self.noise is not None:
            noise = jnp.asarray(self.noise)
            if noise.ndim > (0 if self.groups is None else 1):
                raise ValueError("include_noise needs a scalar (or per-group) noise variance")
            prior_var = prior_var + noise.astype(prior_var.dtype)
            noise = noise[..., None] if noise.ndim else noise
            cov = cov + _diag_embed(jnp.broadcast_to(noise, cov.shape[:-1]).astype(cov.dtype))
        return ConditionedGP(mean, cov, jitter=self.jitter, diag=diag, jitter_scale=prior_var)

    @full_precision
    def loo_log_likelihood(self, y: ArrayLike) -> Array:
        """Leave-one-out predictive log densities log p(y_i | y_-i), shape ``(N,)``,
        ``(K, N)`` or ``(G, n)`` (Rasmussen & Williams 2006, eq. 5.10–5.12); padded points
        of a ``point_mask`` get 0."""
        y = self._validate_y(y)
        alpha = self._alpha(y)
        if self.groups is None:
            lp = loo_log_predictive(self.scale_tril, alpha)
        else:
            lp = jax.vmap(loo_log_predictive)(self.scale_tril, alpha)
        return lp if self.point_mask is None else jnp.where(self.point_mask, lp, 0.0)


class ConditionedGP(_MVNBase):
    """A GP posterior (or any MVN given by mean and covariance) as a NumPyro distribution.

    ``mean`` is ``(M,)`` or ``(B, M)`` (one row per output column or group);
    ``covariance`` ``(M, M)`` is shared by the rows, or ``(B, M, M)`` is one per row.
    The Cholesky factor is computed only when sampling or evaluating densities, so
    reading ``mean``/``variance`` of a posterior on a dense grid (often numerically
    singular in float32) costs nothing extra. With ``diag=True`` only the marginal
    variances are used (independent points).

    ``jitter_scale`` (scalar, or one per covariance matrix) is the variance the relative
    ``jitter`` of the factorisation multiplies (see :func:`ntk_bayes.gp.psd_cholesky`):
    :meth:`GaussianProcess.condition` passes the prior variance at the test inputs,
    since a posterior covariance computed as ``K_** - V^T V`` carries the round-off of
    ``K_**``. ``None``: the covariance's own mean diagonal.
    """

    pytree_data_fields = ("cov", "jitter_scale")
    pytree_aux_fields = ("diag", "jitter")

    @full_precision
    def __init__(
        self,
        mean,
        cov,
        jitter=None,
        diag: bool = False,
        *,
        jitter_scale=None,
        validate_args=None,
    ):
        mean = jnp.asarray(mean)
        self.cov, self.diag, self.jitter = jnp.asarray(cov), diag, check_jitter(jitter)
        self.jitter_scale = None if jitter_scale is None else jnp.asarray(jitter_scale)
        self.loc, self.num_outputs = mean, (mean.shape[0] if mean.ndim == 2 else None)
        dist.Distribution.__init__(
            self,
            batch_shape=mean.shape[:-1],
            event_shape=mean.shape[-1:],
            validate_args=validate_args,
        )

    @lazy_property
    @full_precision
    def scale_tril(self):
        if self.diag:
            return _diag_embed(jnp.sqrt(jnp.maximum(self._cov_diag(), 0.0)))
        return batched_psd_cholesky(
            self.cov, jitter=self.jitter, name="posterior covariance", scale=self.jitter_scale
        )[0]

    def _cov_diag(self):
        return jnp.diagonal(self.cov, axis1=-2, axis2=-1)

    @property
    @full_precision
    def covariance(self):
        c = _diag_embed(self._cov_diag()) if self.diag else self.cov
        return jnp.broadcast_to(c, self.batch_shape + self.event_shape * 2)

    @property
    @full_precision
    def variance(self):
        return jnp.broadcast_to(self._cov_diag(), self.batch_shape + self.event_shape)


def pad_groups(
    group: ArrayLike, *arrays: ArrayLike, num_groups: int | None = None
) -> tuple[np.ndarray, ...]:
    """Pad ragged groups to one length for a batched :class:`GaussianProcess`.

    Args:
        group: integer group index of each row, ``(N,)`` with values in ``0..G-1``.
        *arrays: per-row arrays ``(N, ...)`` (inputs, targets, ...).
        num_groups: G (default ``max(group) + 1``; groups without rows are all padding).

    Returns:
        ``(padded_arrays..., mask)``: each array as ``(G, n_max, ...)`` (padding
            repeats the group's first row, or zeros, so kernels stay finite) and the
            boolean ``mask`` ``(G, n_max)``, True on real rows. Rows keep their order
            within a group.
    """
    if num_groups is not None:
        num_groups = check_int(
            num_groups,
            "num_groups",
            low=0,
            message="`{name}` must be None or an int >= {low} (the number of groups G), got "
            "{value!r}",
        )
    g = np.asarray(group)
    if g.ndim != 1 or not np.issubdtype(g.dtype, np.integer) or (g.size and g.min() < 0):
        raise ValueError("`group` must be a 1-d array of non-negative integer group indices")
    G = int(g.max()) + 1 if num_groups is None else num_groups
    if g.size and g.max() >= G:
        raise ValueError(f"`group` has index {int(g.max())} but num_groups={G}")
    counts = np.bincount(g, minlength=G)
    n_max = max(int(counts.max(initial=0)), 1)
    order = np.argsort(g, kind="stable")
    pos = np.empty_like(g)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos[order] = np.arange(g.size) - np.repeat(starts, counts)
    mask = np.zeros((G, n_max), bool)
    mask[g, pos] = True
    out = []
    for a in arrays:
        a = np.asarray(a)
        if a.shape[:1] != g.shape:
            raise ValueError(f"every array must have {g.size} rows like `group`, got {a.shape}")
        p = np.zeros((G, n_max) + a.shape[1:], a.dtype)
        first = np.zeros((G,) + a.shape[1:], a.dtype)
        first[g[order][::-1]] = a[order][::-1]
        p[:] = first[:, None]
        p[g, pos] = a
        out.append(jnp.asarray(p))
    return (*out, jnp.asarray(mask))

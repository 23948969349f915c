r"""Latent GPs for non-Gaussian likelihoods, in the whitened (non-centred) form.

Exact (Murray & Adams 2010's non-centred parameterisation):

.. math::

    v \sim \mathcal N(0, I_N), \qquad f = m + L v, \qquad L L^\top = κ(X, X) + \text{jitter}

so NUTS and SVI see an isotropic prior whatever the kernel's conditioning. Sparse
(inducing points Z, M ≪ N; the projected-process / DTC mean of Seeger et al. 2003, as
in the whitened SVGP of Hensman et al. 2015):

.. math::

    v \sim \mathcal N(0, I_M), \qquad f = m + K_{xz} L_{zz}^{-\top} v

which costs O(N M + M³) and leaves the conditional variance diag(K_xx − Q_xx) out.
Both helpers create sample sites under the ``name`` prefix only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from .._linalg import psd_cholesky, tri_solve
from .._numerics import as_float_array, check_finite, full_precision
from ._gp import _check_kernel_name

if TYPE_CHECKING:
    from jaxtyping import Array, ArrayLike

    from ..stax import Layer

__all__ = ["latent_gp", "sparse_latent_gp"]


def _prep(net, X, kernel, name):
    if not isinstance(name, str) or not name:
        raise ValueError("`name` must be a non-empty string: it prefixes the sample sites")
    _check_kernel_name(kernel)
    X = as_float_array(X, "X")
    check_finite(X, "X")
    net.output_shape(X.shape)
    return X


@full_precision
def latent_gp(
    name: str,
    net: Layer,
    X: ArrayLike,
    kernel: str = "nngp",
    num_outputs: int = 1,
    mean: ArrayLike = 0.0,
    jitter: float | None = None,
) -> Array:
    """Sample latent function values f at X under the network's GP prior.

    Creates ``{name}_whitened`` ~ N(0, I) of shape ``(num_outputs, N)`` and the
    deterministic site ``name`` holding f with shape ``(N,)`` (one output) or
    ``(N, num_outputs)``, ready for ``dist.Bernoulli(logits=f)``,
    ``dist.Categorical(logits=f)`` or ``dist.Poisson(jnp.exp(f))``.
    """
    X = _prep(net, X, kernel, name)
    n = X.shape[0]
    L, _ = psd_cholesky(net.kernel_fn(X, None, kernel), jitter=jitter, name=f"{name} kernel")
    v = numpyro.sample(
        f"{name}_whitened", dist.Normal(jnp.zeros((num_outputs, n), X.dtype), 1.0).to_event(2)
    )
    f = mean + (L @ v.T)
    return numpyro.deterministic(name, f[:, 0] if num_outputs == 1 else f)


@full_precision
def sparse_latent_gp(
    name: str,
    net: Layer,
    X: ArrayLike,
    Z: ArrayLike,
    kernel: str = "nngp",
    num_outputs: int = 1,
    mean: ArrayLike = 0.0,
    jitter: float | None = None,
    subsample_size: int | None = None,
) -> Array | tuple[Array, numpyro.plate, Array]:
    """Latent GP through M inducing points Z, for large N inside SVI.

    Creates ``{name}_u_whitened`` ~ N(0, I_M) of shape ``(num_outputs, M)`` and the
    deterministic site ``name`` with f at X (or, with ``subsample_size``, at a
    minibatch drawn by ``numpyro.plate(f"{name}_data", N, subsample_size)``; the plate
    and the subsample indices are returned so the likelihood can sit in the same plate).

    Returns:
        ``f`` if ``subsample_size`` is None, else ``(f, plate, idx)``.
    """
    X = _prep(net, X, kernel, name)
    Z = as_float_array(Z, "Z")
    check_finite(Z, "Z")
    if Z.shape[1:] != X.shape[1:]:
        raise ValueError(f"`Z` has per-point shape {Z.shape[1:]}, X has {X.shape[1:]}")
    m = Z.shape[0]
    if m > X.shape[0]:
        raise ValueError(f"more inducing points ({m}) than data ({X.shape[0]}); use Z with M <= N")
    Lzz, _ = psd_cholesky(net.kernel_fn(Z, None, kernel), jitter=jitter, name=f"{name} Kzz")
    u = numpyro.sample(
        f"{name}_u_whitened", dist.Normal(jnp.zeros((num_outputs, m), Z.dtype), 1.0).to_event(2)
    )
    plate, idx, Xb = None, None, X
    if subsample_size is not None:
        plate = numpyro.plate(f"{name}_data", X.shape[0], subsample_size=subsample_size)
        with plate as idx:
            Xb = X[idx]
    A = tri_solve(Lzz, net.kernel_fn(Z, Xb, kernel))  # L_zz^-1 K_zx, (M, B)
    f = mean + A.T @ u.T
    f = numpyro.deterministic(name, f[:, 0] if num_outputs == 1 else f)
    return f if subsample_size is None else (f, plate, idx)

"""Kernels as the GP engine sees them: ``k(X1, X2) -> (n1, n2)`` plus a cheap diagonal.

:func:`as_kernel` wraps a stax network (its NNGP or NTK) or any callable into a
:class:`GPKernel`, an :class:`equinox.Module`, so that the network's hyperparameters
stay pytree leaves that ``jax.grad``, optax and NumPyro reach through every GP below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

if TYPE_CHECKING:
    from ..stax import Layer

__all__ = ["GPKernel", "NetworkKernel", "FunctionKernel", "as_kernel", "KINDS"]

KINDS = ("nngp", "ntk")


class GPKernel(eqx.Module):
    """A covariance function. Subclasses implement :meth:`__call__`; :meth:`diag`
    defaults to evaluating each point against itself (O(n) kernel evaluations)."""

    def __call__(self, X1, X2=None) -> Float[Array, "n1 n2"]:  # pragma: no cover
        raise NotImplementedError

    def diag(self, X) -> Float[Array, " n"]:
        """``k(x_i, x_i)`` for each row of ``X``, without forming ``k(X, X)``."""
        return jax.vmap(lambda x: self(x[None], x[None])[0, 0])(X)


class NetworkKernel(GPKernel):
    """The NNGP (``kind="nngp"``) or NTK (``kind="ntk"``) of a stax network.

    The network's hyperparameters (``W_std``, ``b_std``, ...) are leaves of this module:
    pass them as JAX arrays to differentiate or fit them.
    """

    net: Any
    kind: str = eqx.field(static=True, default="nngp")

    def __call__(self, X1, X2=None):
        return self.net.kernel_fn(X1, X2, self.kind)


class FunctionKernel(GPKernel):
    """A callable ``fn(X1, X2)`` returning a matrix, or a namedtuple from which the
    ``kind`` field is taken (e.g. neural-tangents-style ``kernel_fn`` closures)."""

    fn: Callable
    kind: str | None = eqx.field(static=True, default=None)

    def __call__(self, X1, X2=None):
        out = self.fn(X1, X1 if X2 is None else X2)
        if self.kind is not None and hasattr(out, self.kind) and not hasattr(out, "ndim"):
            out = getattr(out, self.kind)
        return out


def as_kernel(
    net_or_callable: Layer | GPKernel | Callable[..., Any], kind: str = "nngp"
) -> GPKernel:
    """Wrap a network or a callable as a :class:`GPKernel`.

    Args:
        net_or_callable: a stax network (its analytic ``kind`` kernel is used), a
            :class:`GPKernel` (returned unchanged), or a callable ``k(X1, X2)``
            returning an ``(n1, n2)`` matrix (e.g. a tinygp kernel); a callable that
            returns a namedtuple has its ``kind`` field taken.
        kind: ``"nngp"`` (the prior of the Bayesian network) or ``"ntk"``.

    Returns:
        A :class:`GPKernel` with ``k(X1, X2)`` and ``k.diag(X)``.
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}")
    from ..stax import Layer  # stax imports nothing from gp; local import keeps it so

    if isinstance(net_or_callable, GPKernel):
        return net_or_callable
    if isinstance(net_or_callable, Layer):
        return NetworkKernel(net_or_callable, kind)
    if callable(net_or_callable):
        return FunctionKernel(net_or_callable, kind)
    raise TypeError(
        "`kernel` must be a stax network, a GPKernel or a callable k(X1, X2) -> matrix, got "
        f"{type(net_or_callable).__name__}"
    )


def check_kernel_matrix(K, shape: tuple, what: str):
    """Validate a kernel's output shape (shape errors otherwise surface as obscure
    broadcasting failures deep inside a solver)."""
    K = jnp.asarray(K)
    if tuple(K.shape) != tuple(shape):
        raise ValueError(
            f"the kernel returned {what} of shape {tuple(K.shape)}, expected {tuple(shape)}; "
            "a network kernel must end in a single-output readout (e.g. Dense(1)) and a "
            "callable must return the full (n1, n2) matrix"
        )
    return K

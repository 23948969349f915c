"""The kernel state that flows through a network, one layer at a time.

A layer maps a frozen :class:`Kernel` to a new one with :meth:`Kernel.replace`
(neural-tangents' design, kept as data). Symbols (see ``docs/notation.md``):

* ``nngp``  Σ(x1, x2): covariance of the layer's outputs, shape ``(n1, n2, *S)``;
* ``ntk``   Θ(x1, x2): neural tangent kernel, same shape, or ``None`` when not requested;
* ``cov1``  Σ(x1, x1) for each point of ``x1`` alone, shape ``(n1, *S1)``;
* ``cov2``  Σ(x2, x2) likewise for ``x2``, shape ``(n2, *S1)``;
* ``same_points``  ``None``, or ``(same, offset)``: which pairs are one point twice
  (``x1[i]`` is ``x2[j]`` iff ``same``, a boolean scalar: ``x2`` was omitted or equals
  ``x1``, and ``j - i == offset``, non-zero inside an off-diagonal tile). Train-mode
  ``Dropout`` needs it (its masks are shared only by a point and itself), and every
  nonlinearity uses it to give self-pairs their exact same-point value instead of
  recovering it from round-off (``q1 q2 - Σ12²`` is one ulp, not 0, in compiled code).
* ``point_ids``  ``None``, or ``(ids1, ids2)``: an integer per point of ``x1`` and of
  ``x2``, equal exactly when two points are equal in value (their inputs and their
  per-point keyword arguments, e.g. graphs and masks), so a point that occurs twice, at
  two rows or in both sets, is known to be one point: nonlinearities give such pairs the
  exact same-point value as they do self-pairs. Computed once per ``kernel_fn`` call
  and sliced by the tiler with the points; train-mode ``Dropout`` clears it (its masks
  differ between two copies of a point) and fan-ins keep it only if every branch does.
* ``points_alike``  whether every point has the same features: a layer whose output does
  not depend on its input (``Monomial(degree=0)``) came before, and nothing since told
  the points apart (a layer that does, train-mode ``Dropout``, ``Aggregate`` with a
  graph, or a fan-in with a branch that is not alike, clears it). Nonlinearities then
  give every pair the same-point value, as for self-pairs; ``Dropout`` still pairs only
  a point with itself (its masks are drawn per point).
* ``independent``  whether the stream is zero-mean and independent of its sibling
  branches given the input of the last ``FanOut`` (it ends with its own random affine
  layer: Dense, Conv, attention): fan-ins may add kernels only when at most one branch
  is not.
* ``layer_inputs``  ``None``, or a dict ``name -> (rows for x1, rows for x2)``: the
  per-call keyword arguments of ``kernel_fn`` that layers read (``stax.Aggregate``'s
  ``pattern``), sliced by the tiler together with the points they belong to.

``S`` is ``()`` for (N, features) data. For spatial data with ``diagonal_spatial``
it is ``(H, W, ...)`` (only same-position covariances are kept); otherwise it is
``(H, H', W, W', ...)``, interleaved as in neural-tangents.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any

import equinox as eqx
import jax.numpy as jnp

__all__ = ["Kernel"]


def _dims(shape) -> tuple:
    """A shape as Python ints: layers compute output shapes with NumPy, whose integer
    scalars equinox 0.13.0 takes for arrays in a static field (and warns)."""
    return tuple(operator.index(d) for d in shape)


class Kernel(eqx.Module):
    """Kernel state of a (possibly multi-branch) network at one layer."""

    nngp: Any
    ntk: Any
    cov1: Any
    cov2: Any
    same_points: Any
    shape1: tuple = eqx.field(static=True, converter=_dims)
    shape2: tuple = eqx.field(static=True, converter=_dims)
    diagonal_spatial: bool = eqx.field(static=True, default=True)
    is_gaussian: bool = eqx.field(static=True, default=False)
    is_input: bool = eqx.field(static=True, default=False)
    is_reversed: bool = eqx.field(static=True, default=False)
    independent: bool = eqx.field(static=True, default=False)
    points_alike: bool = eqx.field(static=True, default=False)
    layer_inputs: Any = None
    point_ids: Any = None

    def replace(self, **changes) -> Kernel:
        return dataclasses.replace(self, **changes)

    def map_arrays(self, fn, **changes) -> Kernel:
        """Apply ``fn(array, batch_ndim)`` to every kernel array (two batch axes for
        ``nngp``/``ntk``, one for ``cov1``/``cov2``) and replace the fields in
        ``changes``: the shape of every spatial reduction (pooling, flattening)."""
        return self.replace(
            nngp=fn(self.nngp, 2),
            ntk=None if self.ntk is None else fn(self.ntk, 2),
            cov1=fn(self.cov1, 1),
            cov2=fn(self.cov2, 1),
            **changes,
        )

    @property
    def n_spatial(self) -> int:
        return len(self.shape1) - 2

    # -- variances, broadcast against the arrays they normalise -------------------

    def _diag(self, cov):
        """Same-position variances (n, *spatial) of a per-point covariance ``cov``."""
        return cov if self.diagonal_spatial else _same_positions(cov, 1, self.n_spatial)

    def pair_vars(self):
        """``(q1, q2)``: Σ(x1,x1) and Σ(x2,x2) broadcastable to ``nngp``'s shape."""
        d1, d2 = self._diag(self.cov1), self._diag(self.cov2)
        if self.diagonal_spatial:
            return d1[:, None], d2[None, :]
        return _interleave(d1, True)[:, None], _interleave(d2, False)[None, :]

    def to_diagonal(self) -> Kernel:
        """The same kernel with only same-position covariances (the diagonal layout)."""
        if self.diagonal_spatial:
            return self
        diag = lambda a, batch_ndim: _same_positions(a, batch_ndim, self.n_spatial)
        return self.map_arrays(diag, diagonal_spatial=True)

    def same_pair_mask(self):
        """``(n1, n2)`` booleans: which pairs are one point twice (see ``same_points``)."""
        n1, n2 = self.nngp.shape[:2]
        if self.same_points is None:
            return jnp.zeros((n1, n2), bool)
        same, offset = self.same_points
        return same & (jnp.arange(n2)[None, :] - jnp.arange(n1)[:, None] == offset)

    def equal_pair_mask(self):
        """``(n1, n2)`` booleans: which pairs are two copies of one point (equal in value,
        by ``point_ids``; by index, ``same_points``, when the ids are unknown), or
        ``None`` when neither is known."""
        if self.point_ids is not None:
            ids1, ids2 = self.point_ids
            return ids1[:, None] == ids2[None, :]
        if self.same_points is None:
            return None
        return self.same_pair_mask()

    def self_pair_mask(self):
        """Booleans broadcastable to ``nngp``: entries that pair a point with itself or
        with a copy of itself (or, with ``points_alike``, any two points) at the same
        position; ``None`` when neither ``point_ids`` nor ``same_points`` is known."""
        if self.points_alike:
            mask = jnp.ones(self.nngp.shape[:2], bool)
        else:
            mask = self.equal_pair_mask()
            if mask is None:
                return None
        if self.diagonal_spatial:
            return mask.reshape(mask.shape + (1,) * self.n_spatial)
        return mask.reshape(mask.shape + (1,) * (2 * self.n_spatial)) & self.position_eye()

    def position_eye(self):
        """Booleans ``(X, X', Y, Y', ...)``: same positions, in the full layout."""
        eye = jnp.ones((), bool)
        for s in self.shape1[1:-1]:
            eye = eye[..., None, None] & jnp.eye(s, dtype=bool)
        return eye

    def self_vars(self, cov):
        """``(q_a, q_b)`` for a per-point covariance ``cov`` of full spatial layout."""
        d = self._diag(cov)
        return _interleave(d, True), _interleave(d, False)


def _same_positions(a, batch_ndim: int, n_spatial: int):
    """(*batch, X, X', Y, Y', ...) -> (*batch, X, Y, ...): the entries of equal positions."""
    for _ in range(n_spatial):
        # jnp.diagonal moves the paired axis to the end, so the spatial order is kept.
        a = jnp.diagonal(a, axis1=batch_ndim, axis2=batch_ndim + 1)
    return a


def _interleave(d, first: bool):
    """(n, X, Y, ...) -> (n, X, 1, Y, 1, ...) if first else (n, 1, X, 1, Y, ...)."""
    shape = [d.shape[0]]
    for s in d.shape[1:]:
        shape += [s, 1] if first else [1, s]
    return d.reshape(shape)

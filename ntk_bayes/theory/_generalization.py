r"""Data-dependent generalisation bound of Arora et al. (2019), with kernel-regression error.

For a two-layer ReLU network trained by gradient descent from small random
initialisation, with unit-norm inputs and labels |y_i| <= 1, Arora, Du, Hu, Li & Wang
(2019, "Fine-grained analysis of optimization and generalization for overparameterized
two-layer neural networks", Theorem 5.1) bound the population 1-Lipschitz loss by

.. math::

    \sqrt{\frac{2\, y^\top (H^\infty)^{-1} y}{n}}
    + O\Big(\sqrt{\tfrac{\log(n / (λ_0 δ))}{n}}\Big),
    \qquad H^\infty_{ij} = \frac{x_i^\top x_j\, (π - \arccos x_i^\top x_j)}{2π}

with n the number of training points and λ_0 = λ_min(H^∞). :func:`arora_gram` gives
H^∞; :func:`generalization_report` evaluates the leading term with that Gram matrix
or any network's NTK Θ (the natural extension: y^T Θ^{-1} y is the RKHS norm of the
interpolant, Belkin et al. 2018), together with the test error of the kernel
regressor f(x) = Θ(x, X) Θ^{-1} y that the infinitely wide network converges to.
Labels that the kernel finds easy (aligned with its top eigenvectors) give a small
bound; random labels a large one.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from jaxtyping import ArrayLike

from .. import stax
from .._linalg import NotPSDError
from .._numerics import as_float_array, check_finite

__all__ = ["arora_gram", "arora_bound", "GeneralizationReport", "generalization_report"]


def arora_gram(x1, x2=None, *, atol: float = 1e-4) -> np.ndarray:
    """H^∞ of Arora et al. (2019) for unit-norm inputs (rows of ``x1``, ``x2``).

    It is the NTK of the hidden layer of ``f(x) = m^{-1/2} Σ_r a_r relu(w_r·x)`` with
    the readout a fixed; in ``stax`` terms, ``d · (Θ - Σ)`` of
    ``serial(Dense(n, W_std=1), Relu(), Dense(1, W_std=1))`` on d-dimensional inputs.
    """
    a = _float64(x1, "x1")
    b = a if x2 is None else _float64(x2, "x2")
    for arr, name in ((a, "x1"), (b, "x2")):
        if arr.ndim != 2:
            raise ValueError(f"`{name}` must be (n, d), got shape {arr.shape}")
        check_finite(arr, name)
        norms = np.linalg.norm(arr, axis=1)
        if np.any(np.abs(norms - 1) > atol):
            raise ValueError(
                f"`{name}` rows must have unit norm (the bound of Arora et al. assumes "
                f"||x|| = 1); got norms in [{norms.min():.3g}, {norms.max():.3g}]. Normalise "
                "with x / np.linalg.norm(x, axis=1, keepdims=True)"
            )
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"`x1` has {a.shape[1]} features but `x2` has {b.shape[1]}")
    # Cosines of the directions: arccos is ill-conditioned at 1, so round-off in the norms
    # (e.g. inputs stored in float32) must not leak into the diagonal.
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    c = np.clip(a @ b.T, -1.0, 1.0)
    return c * (np.pi - _angles(a, b)) / (2 * np.pi)


def _angles(a, b, rows: int = 256) -> np.ndarray:
    """Angles between unit rows, as 2 arcsin(|a - b| / 2): exact for coincident points,
    where arccos(a·b) loses half the digits."""
    out = np.empty((a.shape[0], b.shape[0]))
    for s in range(0, a.shape[0], rows):
        d = np.linalg.norm(a[s : s + rows, None, :] - b[None, :, :], axis=-1)
        out[s : s + rows] = 2 * np.arcsin(np.clip(d / 2, 0.0, 1.0))
    return out


def _float64(x, name) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be an array of numbers, got {type(x).__name__}") from None
    return arr


def _as_targets(y, n, name):
    y = _float64(y, name)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"`{name}` must have shape ({n},) or ({n}, K), got {y.shape}")
    check_finite(y, name)
    return y


def _solve_psd(K, rhs, name):
    """Solve K a = rhs for symmetric K in float64 by eigendecomposition, refusing
    matrices that are not numerically positive definite."""
    ev, V = np.linalg.eigh(K)
    floor = K.shape[0] * np.finfo(np.float64).eps * max(ev[-1], 0.0)
    if ev[0] <= floor:
        raise NotPSDError(
            f"{name} is singular or indefinite (λ_min = {ev[0]:.3e}, λ_max = {ev[-1]:.3e}); "
            "remove duplicate inputs or pass diag_reg > 0"
        )
    return V @ ((V.T @ rhs) / ev[:, None]), ev


def arora_bound(kernel_train_train, y_train) -> float:
    """The leading term sqrt(2 yᵀ K⁻¹ y / n) (summed over output columns of ``y``)."""
    K = np.asarray(kernel_train_train, np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"`kernel_train_train` must be square (n, n), got {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError("`kernel_train_train` contains NaN or inf")
    y = _as_targets(y_train, K.shape[0], "y_train")
    alpha, _ = _solve_psd(0.5 * (K + K.T), y, "kernel_train_train")
    return float(np.sqrt(2.0 * np.sum(y * alpha) / K.shape[0]))


@dataclasses.dataclass(frozen=True)
class GeneralizationReport:
    """The bound and the kernel regressor's errors, side by side.

    Attributes:
        bound: sqrt(2 yᵀ K⁻¹ y / n).
        train_size: n. lambda_min: smallest eigenvalue of the (regularised) train kernel.
        test_mse: mean squared error of f(x) = K(x, X) K⁻¹ y on the test set.
        test_error: misclassification rate of sign(f) when the labels are ±1
            (single output), else NaN.
        kernel: ``"ntk"``, ``"nngp"`` or ``"arora"``.
    """

    bound: float
    train_size: int
    lambda_min: float
    test_mse: float
    test_error: float
    kernel: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def generalization_report(
    net: stax.Layer | None,
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_test: ArrayLike,
    y_test: ArrayLike,
    *,
    get: str = "ntk",
    diag_reg: float = 0.0,
) -> GeneralizationReport:
    """Arora et al.'s bound and kernel-regression test error for one dataset.

    Args:
        net: a ``stax`` network whose analytic kernel is used; ``None`` with
            ``get="arora"`` uses :func:`arora_gram` (unit-norm inputs required).
        x_train: ``(n, d)`` training inputs.
        y_train: ``(n,)`` or ``(n, K)`` training targets.
        x_test: held-out inputs, laid out as ``x_train``.
        y_test: held-out targets, laid out as ``y_train``.
        get: ``"ntk"``, ``"nngp"`` or ``"arora"``.
        diag_reg: relative ridge added as ``diag_reg * trace(K) / n`` (neural-tangents'
            convention), for both the bound and the regressor.
    """
    if get not in ("ntk", "nngp", "arora"):
        raise ValueError(f"`get` must be 'ntk', 'nngp' or 'arora', got {get!r}")
    if get == "arora":
        if net is not None:
            raise ValueError("get='arora' uses the closed-form H^∞: pass net=None")
    elif not isinstance(net, stax.Layer):
        raise TypeError(f"`net` must be a stax network, got {type(net).__name__}")
    reg = float(diag_reg)
    if not np.isfinite(reg) or reg < 0:
        raise ValueError(f"`diag_reg` must be >= 0, got {diag_reg}")
    convert = _float64 if get == "arora" else as_float_array
    x, xt = convert(x_train, "x_train"), convert(x_test, "x_test")
    y = _as_targets(y_train, x.shape[0], "y_train")
    yt = _as_targets(y_test, xt.shape[0], "y_test")
    if y.shape[1] != yt.shape[1]:
        raise ValueError(f"`y_train` has {y.shape[1]} outputs but `y_test` has {yt.shape[1]}")
    if get == "arora":
        K, Kt = arora_gram(x), arora_gram(xt, x)
    else:
        K = np.asarray(net.kernel_fn(x, None, get), np.float64)
        Kt = np.asarray(net.kernel_fn(xt, x, get), np.float64)
    n = K.shape[0]
    K = 0.5 * (K + K.T) + reg * np.trace(K) / n * np.eye(n)
    alpha, ev = _solve_psd(K, y, f"the {get} kernel on x_train")
    bound = float(np.sqrt(2.0 * np.sum(y * alpha) / n))
    pred = Kt @ alpha
    mse = float(np.mean((pred - yt) ** 2))
    labels = np.unique(np.concatenate([y.ravel(), yt.ravel()]))
    if y.shape[1] == 1 and set(labels.tolist()) <= {-1.0, 1.0}:
        err = float(np.mean(np.sign(pred) != yt))
    else:
        err = float("nan")
    return GeneralizationReport(bound, n, float(ev[0]), mse, err, get)

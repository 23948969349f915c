"""The network and tolerances of the neural-tangents ``predict`` reference values
(``tests/data/nt_predict_public.npz``, fixture ``nt_predict_reference``)."""

import numpy as np

from ntk_bayes import stax


def ref_net():
    return stax.serial(
        stax.Dense(512, W_std=1.4, b_std=0.1),
        stax.Relu(),
        stax.Dense(512, W_std=1.4, b_std=0.1),
        stax.Erf(),
        stax.Dense(1, W_std=1.0, b_std=0.05),
    )


def rel(got, ref):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return np.max(np.abs(got - ref)) / np.max(np.abs(ref))


def ref_tol(dtype, kernel=None):
    """Agreement expected with neural-tangents' float64 values.

    float32: kernel round-off (~1e-6 relative) is amplified by the condition number of
    the train kernel (~1e2 for the NTK here). float64: 1e-8, or, for a solve without
    regularisation, the round-off both implementations make, 100 * cond(K) * eps (a
    backward-stable solve errs by about cond(K) * eps each; the factor covers BLAS
    orderings that differ between jaxlib versions).
    """
    if dtype != np.float64:
        return 2e-3
    if kernel is None:
        return 1e-8
    return max(
        1e-8, 100 * np.linalg.cond(np.asarray(kernel, np.float64)) * np.finfo(np.float64).eps
    )

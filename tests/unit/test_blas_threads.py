"""jaxlib's LAPACK (SciPy's OpenBLAS) runs on one thread unless the user says otherwise.

Under load, OpenBLAS worker threads beside XLA's pool made a 40 x 40 triangular solve
1000x slower (docs/kernels.md, "LAPACK threads"); every GP gradient does several.
"""

import os

import pytest
from threadpoolctl import ThreadpoolController

import ntk_bayes._numerics  # noqa: F401  (the import that applies the limit)
from ntk_bayes import _blas


def _scipy_openblas_threads():
    return [lib.num_threads for lib in _blas.lapack_openblas(ThreadpoolController())]


@pytest.mark.skipif(
    "OPENBLAS_NUM_THREADS" in os.environ or "NTK_BAYES_LAPACK_THREADS" in os.environ,
    reason="the user chose the thread count for this process",
)
def test_lapack_openblas_is_single_threaded_after_import():
    assert _scipy_openblas_threads() == [1]

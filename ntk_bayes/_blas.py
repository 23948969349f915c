"""One LAPACK thread for JAX's CPU linear algebra.

On CPU, jaxlib runs Cholesky factorisations, triangular solves and eigendecompositions
through the LAPACK of SciPy's bundled OpenBLAS. OpenBLAS starts its own worker threads
for every call; beside XLA's thread pool (and a second process, e.g. parallel chains
or test workers) those threads wait on each other, and a triangular solve with a 40 x 40
right-hand side, 0.02 ms alone, took 24 ms on the project's 2-core machine under load.
Every NUTS gradient of a GP prior does several such calls, so the whole sampler ran
100x slower than its arithmetic (docs/kernels.md, "LAPACK threads").

On first use ntk_bayes therefore sets the OpenBLAS that jaxlib's LAPACK calls (SciPy's,
not NumPy's) to one thread. A user who sets ``OPENBLAS_NUM_THREADS`` or
``NTK_BAYES_LAPACK_THREADS`` (a positive integer, or ``keep`` to leave OpenBLAS alone)
decides instead.
"""

from __future__ import annotations

import os
import pathlib

_done = False


def _numpy_dirs() -> tuple[str, ...]:
    import numpy

    root = pathlib.Path(numpy.__file__).resolve().parent
    # Wheels keep NumPy's own OpenBLAS beside the package, in numpy.libs (or numpy/.libs).
    return (str(root), str(root.parent / "numpy.libs"))


def limit_lapack_threads() -> int | None:
    """Set jaxlib's LAPACK (SciPy's OpenBLAS) to the configured thread count, once.

    Returns the thread count set, or ``None`` when left alone (explicit
    ``OPENBLAS_NUM_THREADS``, ``NTK_BAYES_LAPACK_THREADS=keep``, or no OpenBLAS found).
    """
    global _done
    if _done:
        return None
    _done = True
    wanted = os.environ.get("NTK_BAYES_LAPACK_THREADS", "").strip()
    if wanted.lower() == "keep" or (not wanted and "OPENBLAS_NUM_THREADS" in os.environ):
        return None
    try:
        threads = int(wanted) if wanted else 1
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(
            f"NTK_BAYES_LAPACK_THREADS must be a positive integer or 'keep', got {wanted!r}"
        )
    try:
        import scipy.linalg.cython_lapack  # noqa: F401  (loads the library jaxlib calls)
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - both are dependencies
        return None
    libs = lapack_openblas(ThreadpoolController())
    for lib in libs:
        lib.set_num_threads(threads)
    return threads if libs else None


def lapack_openblas(controller) -> list:
    """The OpenBLAS libraries of a ``threadpoolctl.ThreadpoolController`` that jaxlib's
    LAPACK calls: every loaded OpenBLAS outside NumPy's own folders."""
    numpy_dirs = _numpy_dirs()
    return [
        lib
        for lib in controller.lib_controllers
        if lib.internal_api == "openblas"
        and not str(pathlib.Path(lib.filepath).resolve()).startswith(numpy_dirs)
    ]

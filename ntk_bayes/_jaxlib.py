"""jaxlib releases whose CPU linear algebra can hang, and the warning that names them.

jaxlib 0.10.0 started to split a batched LAPACK call (Cholesky, triangular solve,
eigendecomposition over a leading batch axis, as ``vmap`` produces) into chunks scheduled
on XLA's intra-op thread pool, and to block the calling thread until they finish. The
calling thread is itself one of that pool's workers, so when as many such calls run at
once as the pool has threads (two on a 2-core machine), every worker waits on chunks
that no free worker can start: the process hangs with all threads in a futex wait.
ntk_bayes met it in the width sweep (16 vectorised NUTS chains, each solving its
collapsed readout; gdb: ``lapack_strsm_ffi`` -> ``TriMatrixEquationSolver`` ->
``jax::ParallelBatchMap`` -> ``BlockingCounter::Wait``). jaxlib 0.9.2 has no such path and
open-source builds from 0.11.1 on leave it out; ``pyproject.toml`` excludes 0.10.* and
0.11.0, so a fresh install never gets them (on Python 3.11, whose last jaxlib is 0.10.2,
pip picks 0.9.2). A user who has one installed anyway is told once, on import.
"""

from __future__ import annotations

import re
import warnings

__all__ = ["JaxlibDeadlockWarning", "lapack_may_deadlock", "warn_if_lapack_may_deadlock"]

# Inclusive bounds of the releases with the blocking batch path.
_FIRST, _LAST = (0, 10, 0), (0, 11, 0)
_warned = False


class JaxlibDeadlockWarning(RuntimeWarning):
    """The installed jaxlib can deadlock in batched CPU LAPACK calls."""


def _release(version: str) -> tuple[int, int, int] | None:
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    return tuple(int(p) for p in m.groups()) if m else None  # type: ignore[return-value]


def lapack_may_deadlock(version: str) -> bool:
    """Whether jaxlib ``version`` (e.g. ``"0.10.2"``) has the blocking batch path."""
    release = _release(version)
    return release is not None and _FIRST <= release <= _LAST


def warn_if_lapack_may_deadlock(version: str | None = None) -> bool:
    """Warn once (:class:`JaxlibDeadlockWarning`) when the installed jaxlib, or
    ``version``, is one of the releases that can hang; returns whether it is."""
    global _warned
    if version is None:
        import jaxlib

        version = jaxlib.__version__
    risky = lapack_may_deadlock(version)
    if risky and not _warned:
        _warned = True
        warnings.warn(
            f"jaxlib {version} runs batched CPU LAPACK calls (Cholesky, triangular solves "
            "under vmap, e.g. vectorised NUTS chains) on XLA's own thread pool and can hang "
            "forever. Install a release without that path: "
            "pip install 'jax!=0.10.*,!=0.11.0' 'jaxlib!=0.10.*,!=0.11.0' "
            "(0.9.2 on Python 3.11, >= 0.11.1 on newer Pythons).",
            JaxlibDeadlockWarning,
            stacklevel=2,
        )
    return risky

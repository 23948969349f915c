"""NTK_BAYES_LAPACK_THREADS and OPENBLAS_NUM_THREADS decide jaxlib's LAPACK threads
(one fresh interpreter each: OpenBLAS reads its variable when it loads)."""

import os
import subprocess
import sys


def _child(env_extra: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS",)}
    env.pop("NTK_BAYES_LAPACK_THREADS", None)
    env.update(env_extra)
    code = (
        "import ntk_bayes._numerics, scipy.linalg.cython_lapack\n"
        "from threadpoolctl import ThreadpoolController\n"
        "from ntk_bayes._blas import lapack_openblas\n"
        "print([lib.num_threads for lib in lapack_openblas(ThreadpoolController())])\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_environment_decides_the_thread_count():
    assert _child({"NTK_BAYES_LAPACK_THREADS": "2"}).stdout.strip() == "[2]"
    # An explicit OpenBLAS setting is the user's: left as OpenBLAS read it.
    assert _child({"OPENBLAS_NUM_THREADS": "2"}).stdout.strip() == "[2]"
    bad = _child({"NTK_BAYES_LAPACK_THREADS": "many"})
    assert bad.returncode != 0
    assert "NTK_BAYES_LAPACK_THREADS must be a positive integer or 'keep'" in bad.stderr

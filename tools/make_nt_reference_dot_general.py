"""neural-tangents 0.6.5 reference values for DotGeneral with batch dims and constants
with free axes (the networks of ``tests/_dot_general_nets.py``).

Run once, in the neural-tangents environment (no network access needed)::

    /work/ntvenv/bin/python tools/make_nt_reference_dot_general.py

It writes ``tests/data/nt_dot_general.npz``: per network ``{name}/x1``, ``{name}/x2``,
the float64 ``{name}/{nngp,ntk}`` of x1 with itself (``x2=None``; the blocks of a point
with itself from one-point calls, as in ``tools/make_nt_reference.py``) and
``{name}/{nngp,ntk}12`` of x1 against x2; full spatial covariances (N1, N2, S1, S1', ...)
for the ``raw_*`` networks; plus ``meta/versions``.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import _dot_general_nets as dn  # noqa: E402

OUT = ROOT / "tests" / "data" / "nt_dot_general.npz"


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import neural_tangents as nt
    from neural_tangents import stax

    arrays: dict[str, np.ndarray] = {}
    for name in dn.NAMES:
        x1, x2 = dn.inputs(name)
        _, _, kernel_fn = dn.build(stax, name)
        k11 = kernel_fn(x1, None, ("nngp", "ntk"))
        k12 = kernel_fn(x1, x2, ("nngp", "ntk"))
        alone = [kernel_fn(x1[i : i + 1], None, ("nngp", "ntk")) for i in range(len(x1))]
        arrays[f"{name}/x1"], arrays[f"{name}/x2"] = x1, x2
        for g in ("nngp", "ntk"):
            full = np.array(getattr(k11, g), np.float64)
            for i, k in enumerate(alone):
                full[i, i] = np.asarray(getattr(k, g), np.float64)[0, 0]
            arrays[f"{name}/{g}"] = full
            arrays[f"{name}/{g}12"] = np.asarray(getattr(k12, g), np.float64)
        print(name, arrays[f"{name}/ntk"].shape, flush=True)
    arrays["meta/versions"] = np.array(f"neural-tangents {nt.__version__}, jax {jax.__version__}")
    tmp = OUT.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(OUT)  # nothing half-written is left on disk
    print("wrote", OUT)


if __name__ == "__main__":
    main()

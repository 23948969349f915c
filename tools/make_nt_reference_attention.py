"""neural-tangents 0.6.5 reference values for GlobalSelfAttention's positional-embedding
options and ``linear_scaling=False`` (the networks of ``tests/_attention_pos_nets.py``).

Run once, in the neural-tangents environment (no network access needed)::

    /work/ntvenv/bin/python tools/make_nt_reference_attention.py

It writes ``tests/data/nt_attention_pos.npz``: per network ``{name}/x1``, ``{name}/x2`` and
the float64 ``{name}/{nngp,ntk}`` of x1 with itself (``x2=None``) and
``{name}/{nngp,ntk}12`` of x1 against x2 (self-pairs of x1 from one-point calls, as in
``tools/make_nt_reference.py``); plus ``meta/versions``.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import _attention_pos_nets as an  # noqa: E402

OUT = ROOT / "tests" / "data" / "nt_attention_pos.npz"


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import warnings

    import neural_tangents as nt
    from neural_tangents import stax

    warnings.filterwarnings("ignore", "Linear scaling attention")

    arrays: dict[str, np.ndarray] = {}
    for name in an.NAMES:
        x1, x2 = an.inputs(name)
        _, _, kernel_fn = an.build(stax, name)
        k11 = kernel_fn(x1, None, ("nngp", "ntk"))
        k12 = kernel_fn(x1, x2, ("nngp", "ntk"))
        # Self-pairs from one-point calls: in a batch neural-tangents recovers the angle
        # between a point and itself from q1 q2 - Σ12², one ulp off, which the ReLU NTK
        # factor's square root turns into ~1e-9 (see tools/make_nt_reference.py).
        alone = [kernel_fn(x1[i : i + 1], None, ("nngp", "ntk")) for i in range(len(x1))]
        arrays[f"{name}/x1"], arrays[f"{name}/x2"] = x1, x2
        for g in ("nngp", "ntk"):
            full = np.array(getattr(k11, g), np.float64)
            diag = np.array([np.asarray(getattr(k, g), np.float64)[0, 0] for k in alone])
            err = np.abs(np.diag(full) - diag).max() / np.abs(full).max()
            print(f"  {name} {g}: batch self-pairs off the one-point values by {err:.1e}")
            full[np.diag_indices(len(x1))] = diag
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

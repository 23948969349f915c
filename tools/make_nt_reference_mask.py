"""neural-tangents 0.6.5 reference values of networks on padded inputs
(``mask_constant``; the networks of ``tests/_mask_nets.py``).

Run once, in the neural-tangents environment (no network access needed)::

    /work/ntvenv/bin/python tools/make_nt_reference_mask.py

It writes ``tests/data/nt_mask.npz``: per network ``{name}/x1``, ``{name}/x2`` (padded
with the case's constant) and the float64 ``{name}/{nngp,ntk}`` of x1 with itself
(``x2=None``; self-pairs from one-point calls, as in ``make_nt_reference_structural.py``)
and ``{name}/{nngp,ntk}12`` of x1 against x2, all with ``mask_constant``; plus
``meta/versions``.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import _mask_nets as mn  # noqa: E402

OUT = ROOT / "tests" / "data" / "nt_mask.npz"


def main() -> None:
    import warnings

    import jax

    warnings.simplefilter("ignore")  # attention's tied weights, fan-in independence
    jax.config.update("jax_enable_x64", True)
    import neural_tangents as nt
    from neural_tangents import stax

    arrays: dict[str, np.ndarray] = {}
    for name in mn.NAMES:
        x1, x2, c = mn.inputs(name)
        _, _, kernel_fn = mn.build(stax, name)
        get = ("nngp", "ntk")
        k11 = kernel_fn(x1, None, get, mask_constant=c)
        k12 = kernel_fn(x1, x2, get, mask_constant=c)
        alone = [kernel_fn(x1[i : i + 1], None, get, mask_constant=c) for i in range(len(x1))]
        arrays[f"{name}/x1"], arrays[f"{name}/x2"] = x1, x2
        for g in get:
            full = np.array(getattr(k11, g), np.float64)
            diag = np.array([np.asarray(getattr(k, g), np.float64)[0, 0] for k in alone])
            err = np.abs(np.diag(full) - diag).max() / np.abs(full).max()
            print(f"  {name} {g}: batch self-pairs off the one-point values by {err:.1e}")
            full[np.diag_indices(len(x1))] = diag
            arrays[f"{name}/{g}"] = full
            arrays[f"{name}/{g}12"] = np.asarray(getattr(k12, g), np.float64)
            for key in (f"{name}/{g}", f"{name}/{g}12"):
                if not np.all(np.isfinite(arrays[key])):
                    raise RuntimeError(f"neural-tangents gave non-finite {key}")
        print(name, arrays[f"{name}/ntk"].shape, flush=True)
    arrays["meta/versions"] = np.array(f"neural-tangents {nt.__version__}, jax {jax.__version__}")
    tmp = OUT.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(OUT)  # nothing half-written is left on disk
    print("wrote", OUT)


if __name__ == "__main__":
    main()

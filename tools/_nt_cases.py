"""What the ``make_nt_reference_*.py`` scripts share: one kernel case into the arrays of
an ``.npz`` file, the checks, and the write (run in the neural-tangents environment).

Every script takes ``--out DIR`` to write its file into ``DIR`` instead of
``tests/data/``, so a regenerated file can be compared before it replaces the stored one.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import sys

import numpy as np

DATA = pathlib.Path(__file__).parent.parent / "tests" / "data"
GETS = ("nngp", "ntk")


def out_path(file_name: str, argv: list[str] | None = None) -> pathlib.Path:
    """``tests/data/<file_name>``, or ``DIR/<file_name>`` after ``--out DIR``."""
    argv = sys.argv[1:] if argv is None else argv
    if "--out" in argv:
        i = argv.index("--out")
        if i + 1 == len(argv):
            raise SystemExit("--out needs a folder, e.g. --out /tmp/nt_check")
        folder = pathlib.Path(argv[i + 1])
        folder.mkdir(parents=True, exist_ok=True)
        return folder / file_name
    return DATA / file_name


def add_kernels(
    arrays: dict,
    name: str,
    kernel_fn,
    x1,
    x2,
    *,
    inputs: dict | None = None,
    kw11: dict | None = None,
    kw12: dict | None = None,
    self_pairs_alone: bool = False,
) -> None:
    """Store ``{name}/x1``, ``{name}/x2`` (then ``{name}/<key>`` of ``inputs``) and the
    float64 ``{name}/{nngp,ntk}`` of x1 with itself (``x2=None``, keywords ``kw11``) and
    ``{name}/{nngp,ntk}12`` of x1 against x2 (keywords ``kw12``).

    ``self_pairs_alone``: the blocks of a point with itself come from one-point calls
    (with the keywords ``kw11``, which must not be per-point, e.g. ``mask_constant``).
    In a batch neural-tangents recovers the angle between a point and itself from
    q1 q2 - Σ12², one ulp off, which the ReLU NTK factor's square root turns into ~1e-9
    (see tools/make_nt_reference.py); the batch's distance from them is printed.
    """
    k11 = kernel_fn(x1, None, GETS, **(kw11 or {}))
    k12 = kernel_fn(x1, x2, GETS, **(kw12 or {}))
    alone = []
    if self_pairs_alone:
        alone = [kernel_fn(x1[i : i + 1], None, GETS, **(kw11 or {})) for i in range(len(x1))]
    arrays[f"{name}/x1"], arrays[f"{name}/x2"] = x1, x2
    for key, value in (inputs or {}).items():
        arrays[f"{name}/{key}"] = value
    for g in GETS:
        full = np.array(getattr(k11, g), np.float64)
        if alone:
            # The (i, i) block: a number, or spatial axes for networks without a readout.
            blocks = [np.asarray(getattr(k, g), np.float64)[0, 0] for k in alone]
            err = max(np.abs(full[i, i] - b).max() for i, b in enumerate(blocks))
            err /= np.abs(full).max()
            print(f"  {name} {g}: batch self-pairs off the one-point values by {err:.1e}")
            for i, b in enumerate(blocks):
                full[i, i] = b
        arrays[f"{name}/{g}"] = full
        arrays[f"{name}/{g}12"] = np.asarray(getattr(k12, g), np.float64)
    print(name, arrays[f"{name}/ntk"].shape, flush=True)


def check_finite(arrays: dict) -> None:
    for key, a in arrays.items():
        if not np.all(np.isfinite(a)):
            raise RuntimeError(f"neural-tangents gave non-finite {key}")


def versions() -> str:
    """The versions line stored as ``meta/versions``."""
    import jax
    import neural_tangents as nt

    return f"neural-tangents {nt.__version__}, jax {jax.__version__}"


def spec_versions() -> dict:
    """The versions and date entries of a JSON ``spec``."""
    import jax
    import neural_tangents as nt

    return {
        "neural_tangents": nt.__version__,
        "jax": jax.__version__,
        "date": datetime.date.today().isoformat(),
    }


def save(path: pathlib.Path, arrays: dict, *, spec: dict | None = None) -> None:
    """Write ``arrays`` (and ``spec`` as JSON, compressed) to ``path`` through a
    temporary file, so nothing half-written is left on disk."""
    tmp = path.with_name(path.stem + ".tmp.npz")
    if spec is None:
        np.savez(tmp, **arrays)
    else:
        np.savez_compressed(tmp, spec=json.dumps(spec), **arrays)
    tmp.replace(path)
    print("wrote", path)

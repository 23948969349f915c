"""neural-tangents 0.6.5 reference values for the layer options of issue 15's second
round, one file per network module:

- ``tests/_attention_pos_nets.py`` -> ``tests/data/nt_attention_pos.npz``:
  GlobalSelfAttention's positional-embedding options (``pos_emb_decay_fn``,
  ``pos_emb_p_norm``, ``val_pos_emb``, ``n_chan_pos_emb``) and ``linear_scaling=False``;
- ``tests/_dot_general_nets.py`` -> ``tests/data/nt_dot_general.npz``: DotGeneral with
  batch dims and constants with free axes.

Run once, in the neural-tangents environment (no network access needed)::

    /work/ntvenv/bin/python tools/make_nt_reference_layers.py

Each file holds per network ``{name}/x1``, ``{name}/x2``, the float64
``{name}/{nngp,ntk}`` of x1 with itself (``x2=None``; the blocks of a point with itself
from one-point calls, as in ``tools/make_nt_reference.py``: in a batch neural-tangents'
self-pairs are only as exact as round-off allows) and ``{name}/{nngp,ntk}12`` of x1
against x2 (full spatial covariances where a network ends without a readout); plus
``meta/versions``.
"""

from __future__ import annotations

import importlib
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "tests"))

MODULES = {"_attention_pos_nets": "nt_attention_pos.npz", "_dot_general_nets": "nt_dot_general.npz"}


def reference(module, stax) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name in module.NAMES:
        x1, x2 = module.inputs(name)
        _, _, kernel_fn = module.build(stax, name)
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
    return arrays


def main() -> None:
    import warnings

    import jax

    jax.config.update("jax_enable_x64", True)
    import neural_tangents as nt
    from neural_tangents import stax

    warnings.filterwarnings("ignore", "Linear scaling attention")
    for module_name, file_name in MODULES.items():
        arrays = reference(importlib.import_module(module_name), stax)
        arrays["meta/versions"] = np.array(
            f"neural-tangents {nt.__version__}, jax {jax.__version__}"
        )
        out = ROOT / "tests" / "data" / file_name
        tmp = out.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(out)  # nothing half-written is left on disk
        print("wrote", out)


if __name__ == "__main__":
    main()

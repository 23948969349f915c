"""neural-tangents 0.6.5 reference values for the layer options of issue 15's second
round, one file per network module:

- ``tests/_attention_pos_nets.py`` -> ``tests/data/nt_attention_pos.npz``:
  GlobalSelfAttention's positional-embedding options (``pos_emb_decay_fn``,
  ``pos_emb_p_norm``, ``val_pos_emb``, ``n_chan_pos_emb``) and ``linear_scaling=False``;
- ``tests/_dot_general_nets.py`` -> ``tests/data/nt_dot_general.npz``: DotGeneral with
  batch dims and constants with free axes.

Run once, in the neural-tangents environment (no network access needed)::

    /work/ntvenv/bin/python tools/make_nt_reference_layers.py [--out DIR]

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

import _nt_cases as cases
import numpy as np

ROOT = pathlib.Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "tests"))

MODULES = {"_attention_pos_nets": "nt_attention_pos.npz", "_dot_general_nets": "nt_dot_general.npz"}


def reference(module, stax) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name in module.NAMES:
        x1, x2 = module.inputs(name)
        _, _, kernel_fn = module.build(stax, name)
        cases.add_kernels(arrays, name, kernel_fn, x1, x2, self_pairs_alone=True)
    return arrays


def main() -> None:
    import warnings

    import jax

    jax.config.update("jax_enable_x64", True)
    from neural_tangents import stax

    warnings.filterwarnings("ignore", "Linear scaling attention")
    for module_name, file_name in MODULES.items():
        arrays = reference(importlib.import_module(module_name), stax)
        arrays["meta/versions"] = np.array(cases.versions())
        cases.save(cases.out_path(file_name), arrays)


if __name__ == "__main__":
    main()

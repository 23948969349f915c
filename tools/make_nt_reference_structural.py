"""neural-tangents 0.6.5 reference values for FanInProd, Index, DotGeneral, linearize
and taylor_expand (the networks of ``tests/_structural_nets.py``).

Run once, in the neural-tangents environment (no network access needed)::

    /work/ntvenv/bin/python tools/make_nt_reference_structural.py [--out DIR]

It writes ``tests/data/nt_structural.npz``: per network ``{name}/x1``, ``{name}/x2`` and
the float64 ``{name}/{nngp,ntk}`` of x1 with itself (``x2=None``) and
``{name}/{nngp,ntk}12`` of x1 against x2 (self-pairs of x1 from one-point calls, as in
``tools/make_nt_reference.py``: in a batch neural-tangents' self-pairs are only as exact
as round-off allows); ``taylor/{degree}/{out,h}`` of
``nt.taylor_expand(taylor_f, params, degree)`` at the new parameters, and
``taylor/linearize/{out,h}`` of ``nt.linearize``; plus ``meta/versions``.
"""

from __future__ import annotations

import pathlib
import sys

import _nt_cases as cases
import numpy as np

ROOT = pathlib.Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import _structural_nets as sn  # noqa: E402

OUT_NAME = "nt_structural.npz"


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import neural_tangents as nt
    from neural_tangents import stax

    arrays: dict[str, np.ndarray] = {}
    for name in sn.NAMES:
        x1, x2 = sn.inputs(name)
        _, _, kernel_fn = sn.build(stax, name)
        cases.add_kernels(arrays, name, kernel_fn, x1, x2, self_pairs_alone=True)

    params, new, x, scale = sn.taylor_case()
    expansions = {"linearize": nt.linearize(sn.taylor_f, params)}
    for d in sn.TAYLOR_DEGREES:
        expansions[str(d)] = nt.taylor_expand(sn.taylor_f, params, d)
    for label, fn in expansions.items():
        out = fn(new, x, scale)
        for key, value in out.items():
            arrays[f"taylor/{label}/{key}"] = np.asarray(value, np.float64)
    arrays["meta/versions"] = np.array(cases.versions())
    cases.save(cases.out_path(OUT_NAME), arrays)


if __name__ == "__main__":
    main()

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

import _nt_cases as cases

ROOT = pathlib.Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import _mask_nets as mn  # noqa: E402

KERNELS = ("/nngp", "/ntk", "/nngp12", "/ntk12")


def main() -> None:
    import warnings

    import jax

    warnings.simplefilter("ignore")  # attention's tied weights, fan-in independence
    jax.config.update("jax_enable_x64", True)
    from neural_tangents import stax

    arrays: dict = {}
    for name in mn.NAMES:
        x1, x2, c = mn.inputs(name)
        _, _, kernel_fn = mn.build(stax, name)
        kw = {"mask_constant": c}
        cases.add_kernels(arrays, name, kernel_fn, x1, x2, kw11=kw, kw12=kw, self_pairs_alone=True)
    # Only the kernels: the inputs of the NaN-padded case hold NaN on purpose.
    cases.check_finite({k: v for k, v in arrays.items() if k.endswith(KERNELS)})
    arrays["meta/versions"] = cases.versions()
    cases.save(cases.out_path("nt_mask.npz"), arrays)


if __name__ == "__main__":
    main()

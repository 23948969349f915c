"""neural-tangents 0.6.5 reference kernels of networks around the polynomial-type layers
(``tools/make_nt_reference_poly.py``, stored in ``tests/data/nt_poly.{json,npz}``)."""

import functools
import json

import numpy as np
from _differential import architectures
from conftest import DATA, enable_x64

from ntk_bayes import stax

# Matrix-relative error max|K - K_nt| / max|K_nt| in float64 (issue 15: <= 1e-10).
RTOL = 1e-10


@functools.cache
def reference():
    meta = json.loads((DATA / "nt_poly.json").read_text())
    return {c["name"]: c for c in meta["cases"]}, dict(np.load(DATA / "nt_poly.npz"))


def case_names(networks=None) -> list:
    """Reference case names (``layer/network``), optionally of some networks only."""
    return [n for n in reference()[0] if networks is None or n.split("/")[1] in networks]


def rel_err(a, b, mask=None):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if mask is not None:
        a, b = a[mask], b[mask]
    return np.abs(a - b).max() / np.abs(b).max()


def errors(name: str, dtype=np.float64) -> dict:
    """Matrix-relative errors of one case at ``dtype``: x1 against x2, and x1 against
    itself off the diagonal (neural-tangents recovers same-point entries from round-off;
    ``RectifiedMonomial`` divides by sin θ = 0 there). One kernel call on [x1; x2]
    gives both blocks."""
    specs, ref = reference()
    x1, x2 = ref[f"{name}/x1"], ref[f"{name}/x2"]
    n1 = len(x1)
    with enable_x64(np.dtype(dtype) == np.float64):
        net = architectures().build(stax, specs[name]["net"])
        k = net.kernel_fn(np.concatenate([x1, x2]).astype(dtype), None, ("nngp", "ntk"))
        assert k.nngp.dtype == dtype
    off = ~np.eye(n1, dtype=bool)
    out = {}
    for g in ("nngp", "ntk"):
        full = np.asarray(getattr(k, g))
        out[f"{g}12"] = rel_err(full[:n1, n1:], ref[f"{name}/{g}12"])
        out[f"{g}11"] = rel_err(full[:n1, :n1], ref[f"{name}/{g}"], off)
    return out

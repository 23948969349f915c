"""The Minnesota radon survey (Gelman & Hill 2007): 919 homes in 85 counties.

The standard example of a hierarchical model: few homes in most counties, so county
effects borrow strength from each other. Provenance and licence: ``data/radon_mn.NOTICE.txt``.
"""

from __future__ import annotations

import csv
import pathlib
from typing import NamedTuple

import numpy as np
from numpy.typing import DTypeLike

from ._base import resolve_dtype

__all__ = ["Radon", "load_radon"]

_PATH = pathlib.Path(__file__).parent / "data" / "radon_mn.csv"


class Radon(NamedTuple):
    """Columns of the radon survey, one row per home.

    Attributes:
        county: county index ``0..84`` (int).
        county_names: the 85 county names, by index.
        floor: 0 if measured in the basement, 1 on the first floor.
        log_uranium: log soil uranium of the home's county (county-level covariate).
        log_radon: log radon activity (pCi/L), the target.
    """

    county: np.ndarray
    county_names: tuple[str, ...]
    floor: np.ndarray
    log_uranium: np.ndarray
    log_radon: np.ndarray

    @property
    def num_counties(self) -> int:
        return len(self.county_names)


def load_radon(dtype: DTypeLike | None = None) -> Radon:
    """Load the radon survey (no network: the CSV ships with the package).

    Args:
        dtype: float32 or float64 for ``floor``, ``log_uranium`` and ``log_radon``;
            default JAX's default float (float64 when ``jax_enable_x64`` is on).
    """
    dtype = resolve_dtype(dtype)
    with open(_PATH, newline="") as f:
        rows = list(csv.DictReader(f))
    county = np.array([int(r["county"]) - 1 for r in rows])
    names = {int(r["county"]) - 1: r["county_name"] for r in rows}
    return Radon(
        county=county,
        county_names=tuple(names[i] for i in range(len(names))),
        floor=np.array([float(r["floor"]) for r in rows], dtype),
        log_uranium=np.array([float(r["log_uranium"]) for r in rows], dtype),
        log_radon=np.array([float(r["log_radon"]) for r in rows], dtype),
    )

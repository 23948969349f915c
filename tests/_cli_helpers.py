"""Helpers shared by test modules (moved out so both tiers can import them)."""

import warnings

import arviz as az

from ntk_bayes import diagnostics as dg


def open_idata(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return az.from_netcdf(path)


def idata_group(idata, name):
    return idata[name] if dg.ARVIZ_1 else getattr(idata, name)


def file_tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))

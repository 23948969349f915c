"""Small embedded datasets and a CSV loader, as seeded, standardised train/test splits.

::

    from ntk_bayes import datasets
    ds = datasets.load("toy1d", seed=0)          # or "diabetes", "breast_cancer", "digits"
    ds = datasets.load_csv("my.csv", target="y")
    ds.X_train, ds.y_train, ds.X_test, ds.y_test, ds.task
"""

from ._base import Dataset as Dataset
from ._csv import load_csv as load_csv
from ._embedded import available as available
from ._embedded import load as load
from ._embedded import subsample_train as subsample_train
from ._embedded import toy1d_function as toy1d_function
from ._radon import Radon as Radon
from ._radon import load_radon as load_radon

__all__ = [
    "Dataset",
    "Radon",
    "available",
    "load",
    "load_csv",
    "load_radon",
    "subsample_train",
    "toy1d_function",
]

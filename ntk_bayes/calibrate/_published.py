"""Published results on the UCI regression benchmarks, to print beside ours.

All use the protocol of Hernández-Lobato & Adams (2015): 20 random 90/10 train/test
splits, inputs and targets standardised on the training part, scores in the target's
raw units averaged over splits, one hidden layer of 50 units. RMSE (lower is better)
and test NLPD = -(mean test log-likelihood) (lower is better), each ± the error bar
the paper prints (:data:`ERROR_BARS` says which kind).

Checked on 2026-12-01 against the text of the papers' tables (no network at run time;
found with the project's reference search):

* L17 Table 1 (Lakshminarayanan et al. 2017, PDF text): every value of its Deep
  ensembles column, and its PBP column, which quotes HLA15 at two decimals.
* GG16 Table 1 (Gal & Ghahramani 2016): the "original" Dropout column reproduced in
  the authors' own code repository (yaringal/DropoutUncertaintyExps, README) and a
  reading note quoting the paper (Boston 2.97 ± 0.19, LL -2.46). L17's MC-dropout column
  prints these standard errors times √20 (2.97 ± 0.85): standard deviations over splits.
  The earlier values here were those rescaled ones, attributed to GG16: fixed.
* HLA15's own Table could not be opened here; its PBP values are taken as L17 quotes
  them. The VI (Graves 2011) rows of HLA15 are left out: no checkable copy was found.
"""

from __future__ import annotations

__all__ = ["PUBLISHED", "CITATIONS", "ERROR_BARS", "PROTOCOL_SPLITS"]

#: the random train/test splits every published row averages over
PROTOCOL_SPLITS = 20

CITATIONS = {
    "HLA15": "Hernández-Lobato & Adams (2015), Probabilistic backpropagation, ICML; PBP "
    "values as quoted in Lakshminarayanan et al. (2017), Table 1",
    "GG16": "Gal & Ghahramani (2016), Dropout as a Bayesian approximation, ICML, Table 1",
    "L17": "Lakshminarayanan, Pritzel & Blundell (2017), Deep ensembles, NeurIPS, Table 1",
}

#: what the ± of each source is (over the 20 splits)
ERROR_BARS = {
    "HLA15": "standard error",
    "GG16": "standard error",
    "L17": "standard deviation",
}

# dataset -> [(method, source, (rmse, err), (nlpd, err))]
PUBLISHED: dict[str, list[tuple[str, str, tuple[float, float], tuple[float, float]]]] = {
    "boston": [
        ("PBP", "HLA15", (3.01, 0.18), (2.57, 0.09)),  # L17 Table 1 (PBP column)
        ("MC dropout", "GG16", (2.97, 0.19), (2.46, 0.06)),  # GG16 Table 1
        ("Deep ensembles", "L17", (3.28, 1.00), (2.41, 0.25)),  # L17 Table 1
    ],
    "concrete": [
        ("PBP", "HLA15", (5.67, 0.09), (3.16, 0.02)),  # L17 Table 1 (PBP column)
        ("MC dropout", "GG16", (5.23, 0.12), (3.04, 0.02)),  # GG16 Table 1
        ("Deep ensembles", "L17", (6.03, 0.58), (3.06, 0.18)),  # L17 Table 1
    ],
}
PUBLISHED["boston_nob"] = []  # the published tables all use the full 13 inputs

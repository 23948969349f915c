"""Published results on the UCI regression benchmarks, to print beside ours.

All use the protocol of Hernández-Lobato & Adams (2015): 20 random 90/10 train/test
splits, inputs and targets standardised on the training part, scores in the target's
raw units averaged over splits, one hidden layer of 50 units. RMSE (lower is better)
and test NLPD = -(mean test log-likelihood) (lower is better), each ± the error bar
the paper prints (standard errors in the first two; Lakshminarayanan et al. print
± one standard deviation over splits). Written down from the papers' tables without
the PDFs at hand (no network here); they agree with the values commonly quoted in later
work, but check them against the original tables before citing this comparison.
"""

from __future__ import annotations

__all__ = ["PUBLISHED", "CITATIONS"]

CITATIONS = {
    "HLA15": "Hernández-Lobato & Adams (2015), Probabilistic backpropagation, ICML, Table 2",
    "GG16": "Gal & Ghahramani (2016), Dropout as a Bayesian approximation, ICML, Table 1",
    "L17": "Lakshminarayanan, Pritzel & Blundell (2017), Deep ensembles, NeurIPS, Table 1",
}

# dataset -> [(method, source, (rmse, err), (nlpd, err))]
PUBLISHED: dict[str, list[tuple[str, str, tuple[float, float], tuple[float, float]]]] = {
    "boston": [
        ("VI (Graves 2011)", "HLA15", (4.320, 0.29), (2.90, 0.07)),
        ("PBP", "HLA15", (3.014, 0.18), (2.57, 0.09)),
        ("MC dropout", "GG16", (2.97, 0.85), (2.46, 0.25)),
        ("Deep ensembles", "L17", (3.28, 1.00), (2.41, 0.25)),
    ],
    "concrete": [
        ("VI (Graves 2011)", "HLA15", (7.128, 0.12), (3.39, 0.02)),
        ("PBP", "HLA15", (5.667, 0.09), (3.16, 0.02)),
        ("MC dropout", "GG16", (5.23, 0.53), (3.04, 0.09)),
        ("Deep ensembles", "L17", (6.03, 0.58), (3.06, 0.18)),
    ],
}
PUBLISHED["boston_nob"] = []  # the published tables all use the full 13 inputs

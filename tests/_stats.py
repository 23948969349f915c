"""Bounds on random counts in tests, each with a stated false-alarm rate.

A test that counts random events (divergent NUTS transitions, intervals that cover the
truth, alarms of a statistical check) asserts the count against a quantile of the count's
distribution under the hypothesis that the code works, so that the test fails by chance
with a known, small probability, never "exactly zero" of a random count.
"""

from scipy import stats


def binomial_upper(n, p, alpha):
    """Smallest ``k`` with P(Binomial(n, p) > k) <= alpha.

    If each of ``n`` independent trials fires with probability at most ``p``, asserting
    ``count <= binomial_upper(n, p, alpha)`` fails by chance with probability <= alpha.
    """
    k = int(stats.binom.isf(alpha, n, p))
    assert stats.binom.sf(k, n, p) <= alpha
    return k


def binomial_lower(n, p, alpha):
    """Largest ``k`` with P(Binomial(n, p) < k) <= alpha.

    If each of ``n`` independent trials succeeds with probability at least ``p``,
    asserting ``count >= binomial_lower(n, p, alpha)`` fails by chance with probability
    <= alpha.
    """
    k = int(stats.binom.ppf(alpha, n, p))
    assert stats.binom.cdf(k - 1, n, p) <= alpha
    return k

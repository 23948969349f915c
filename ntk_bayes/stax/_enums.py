"""neural-tangents' option enums, for code written against its ``stax``.

Each member is also its name as a string (``enum.StrEnum``), so the layers, which take
the names as strings, accept either: ``Conv(8, (3,), padding=stax.Padding.SAME)`` is
``Conv(8, (3,), padding="SAME")``. (``PositionalEmbedding`` lives with the attention
layer.)
"""

from __future__ import annotations

import enum

__all__ = ["Padding", "AttentionMechanism", "AggregateImplementation"]


class Padding(enum.StrEnum):
    """Padding of convolutions and pools: ``CIRCULAR``, ``SAME``, ``VALID``."""

    CIRCULAR = "CIRCULAR"
    SAME = "SAME"
    VALID = "VALID"


class AttentionMechanism(enum.StrEnum):
    """``GlobalSelfAttention(attention_mechanism=...)``."""

    SOFTMAX = "SOFTMAX"
    IDENTITY = "IDENTITY"
    ABS = "ABS"
    RELU = "RELU"


class AggregateImplementation(enum.StrEnum):
    """``Aggregate(implementation=...)``."""

    DENSE = "DENSE"
    SPARSE = "SPARSE"

"""The exact merge of many encoded interval histograms into one :class:`LatencyHistogram`."""
from __future__ import annotations

from typing import Iterable

from flowchain.histograms import LatencyHistogram


def merge_encoded(encoded: Iterable[str]) -> LatencyHistogram:
    """Return the HDR merge (counts added bucket by bucket) of encoded histograms.

    Raises
    ------
    ValueError
        When a text is not an encoded HdrHistogram.
    """
    merged = LatencyHistogram()
    for text in encoded:
        merged.merge(LatencyHistogram.decode(text))
    return merged

"""Latency histograms: the engine's native HDR counts <-> the ``hdrhistogram`` package.

The engine records every step duration (ns) natively into counts arrays laid out exactly like
HdrHistogram's. :class:`LatencyHistogram` wraps an ``hdrh.histogram.HdrHistogram`` built from
those counts, so percentiles, the standard base64 encoding and merging are the package's own.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from flowchain.stats import LatencySummary

LOWEST_NS = 1
"""Lowest discernible value: 1 ns."""
HIGHEST_NS = 3_600_000_000_000
"""Highest trackable value: one hour in ns; longer durations are clamped and counted."""
SIGNIFICANT_FIGURES = 3
"""Value precision: 0.1% of any value."""


@dataclass(frozen=True, slots=True)
class HistogramSettings:
    """The HDR parameters shared by the native recorder and the hdrhistogram package."""

    lowest: int = LOWEST_NS
    highest: int = HIGHEST_NS
    significant_figures: int = SIGNIFICANT_FIGURES

    def new(self) -> HdrHistogram:
        """Return an empty ``HdrHistogram`` with these parameters."""
        return HdrHistogram(self.lowest, self.highest, self.significant_figures)

    def layout(self) -> dict[str, int]:
        """Return the counts layout, read off a real HdrHistogram (one layout by construction)."""
        h = self.new()
        return {
            "unit_magnitude": h.unit_magnitude,
            "sub_bucket_half_count_magnitude": h.sub_bucket_half_count_magnitude,
            "sub_bucket_half_count": h.sub_bucket_half_count,
            "sub_bucket_mask": h.sub_bucket_mask,
            "counts_len": h.counts_len,
            "highest_trackable_value": h.highest_trackable_value,
        }


DEFAULT_SETTINGS = HistogramSettings()


class LatencyHistogram:
    """A latency distribution in nanoseconds.

    Build one from the engine (:meth:`from_counts`, done for you by
    ``ChainRegistry.histogram``), from an encoded string (:meth:`decode`), or empty.
    """

    __slots__ = ("hdr", "overflow")

    def __init__(self, hdr: HdrHistogram | None = None, overflow: int = 0) -> None:
        self.hdr = hdr if hdr is not None else DEFAULT_SETTINGS.new()
        self.overflow = overflow

    @classmethod
    def from_counts(cls, counts: np.ndarray, stats: Sequence[int],
                    settings: HistogramSettings = DEFAULT_SETTINGS) -> LatencyHistogram:
        """Convert a native counts row and its (total, min, max, overflow) losslessly.

        Raises
        ------
        ValueError
            When ``counts`` does not have the layout of ``settings``.
        """
        hdr = settings.new()
        if counts.shape != (hdr.counts_len,):
            raise ValueError(f"counts of length {counts.shape} do not fit a histogram of "
                             f"{hdr.counts_len} counts ({settings})")
        np.frombuffer(hdr.counts, dtype=np.int64)[:] = counts
        _, minimum, maximum, overflow = (int(v) for v in stats)
        # the counts are what percentiles walk: their sum is the total (the engine's snapshots
        # copy both together, so this only differs for a caller's hand-made pair)
        total = int(counts.sum())
        if total:
            hdr.total_count = total
            hdr.min_value = minimum
            hdr.max_value = maximum
        return cls(hdr, overflow)

    @classmethod
    def from_values(cls, values: Iterable[int],
                    settings: HistogramSettings = DEFAULT_SETTINGS) -> LatencyHistogram:
        """Record ``values`` (ns) with the hdrhistogram package itself."""
        hdr = settings.new()
        for v in values:
            hdr.record_value(int(v))
        return cls(hdr)

    @property
    def count(self) -> int:
        """Number of recorded values."""
        return int(self.hdr.get_total_count())

    @property
    def min(self) -> int:
        return int(self.hdr.get_min_value()) if self.count else 0

    @property
    def max(self) -> int:
        return int(self.hdr.get_max_value()) if self.count else 0

    @property
    def mean(self) -> float:
        return float(self.hdr.get_mean_value()) if self.count else 0.0

    def percentile(self, percentile: float) -> int:
        """Return the value (ns) at ``percentile`` (0..100), 0 when empty."""
        return int(self.hdr.get_value_at_percentile(percentile)) if self.count else 0

    def percentiles(self, percentiles: Iterable[float]) -> dict[float, int]:
        """Return several percentiles in one pass."""
        ps = list(percentiles)
        if not self.count:
            return {p: 0 for p in ps}
        found = self.hdr.get_percentile_to_value_dict(ps)
        top = self.max
        # never above the maximum, and every percentile asked for answered
        return {p: min(int(found.get(p, top)), top) for p in ps}

    def summary(self) -> dict[str, Any]:
        """Return count, min, max, mean and p50/p90/p99/p99.9 (ns) as plain data.

        The mapping form of :meth:`latency` (its field names are the keys).
        """
        return self.latency().to_dict()

    def latency(self) -> LatencySummary:
        """Return count, min, max, mean and p50/p90/p99/p99.9 (ns), typed."""
        return LatencySummary.of(self)

    def encode(self) -> str:
        """Return the standard HdrHistogram base64 (compressed V2) encoding."""
        encoded = self.hdr.encode()
        return encoded.decode("ascii") if isinstance(encoded, bytes) else encoded

    @classmethod
    def decode(cls, encoded: str | bytes) -> LatencyHistogram:
        """Decode a standard HdrHistogram base64 string (from any HdrHistogram implementation).

        Raises
        ------
        ValueError
            When the text is not an encoded HdrHistogram.
        """
        try:
            return cls(HdrHistogram.decode(encoded))
        except Exception as exc:  # the package raises several unrelated types
            raise ValueError(f"not an encoded HdrHistogram: {exc}") from exc

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add ``other``'s counts into this histogram and return self."""
        self.hdr.add(other.hdr)
        self.overflow += other.overflow
        return self

    def __add__(self, other: LatencyHistogram) -> LatencyHistogram:
        out = LatencyHistogram.decode(self.encode())
        out.overflow = self.overflow
        return out.merge(other)

    def __repr__(self) -> str:
        s = self.latency()
        return (f"LatencyHistogram(count={s.count}, p50={s.p50_ns}ns, p99={s.p99_ns}ns, "
                f"max={s.max_ns}ns)")

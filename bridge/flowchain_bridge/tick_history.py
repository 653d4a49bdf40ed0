"""A bounded history of the ticks a bridge published, by seq: what backfill is served from."""
from __future__ import annotations

import threading

import numpy as np

from flowchain_bridge.ticks import TICK_DTYPE


class TickHistory:
    """The last ``capacity`` ticks of one symbol, with their seqs (1, 2, ...), in a ring.

    Written by the stream thread, read by the order thread (backfill): a lock guards both.

    Parameters
    ----------
    capacity
        Ticks kept; older ones are evicted and reported missing to backfill requests.
    """

    def __init__(self, capacity: int = 65_536) -> None:
        if capacity <= 0:
            raise ValueError(f"history capacity {capacity}: must be > 0")
        self._ring = np.zeros(capacity, dtype=TICK_DTYPE)
        self._capacity = capacity
        self._last_seq = 0
        self._lock = threading.Lock()

    @property
    def last_seq(self) -> int:
        """Seq of the newest tick (0 when none)."""
        return self._last_seq

    def append(self, records: np.ndarray) -> int:
        """Store ``records`` (in order) and return the seq of the first of them."""
        with self._lock:
            first = self._last_seq + 1
            n = len(records)
            if n == 1:
                self._ring[(first - 1) % self._capacity] = records[0]
            elif n:
                kept = records[-self._capacity:]
                start = first + n - len(kept)
                self._ring[(np.arange(start, first + n) - 1) % self._capacity] = kept
            self._last_seq += n
            return first

    def get(self, from_seq: int, to_seq: int, limit: int) -> tuple[int, np.ndarray]:
        """Return ``(first_seq, records)`` for the held part of ``from_seq .. to_seq``.

        ``first_seq > from_seq`` when older ticks were evicted; at most ``limit`` records.
        An empty array means none of the range is held.
        """
        with self._lock:
            oldest = max(1, self._last_seq - self._capacity + 1)
            start, stop = max(from_seq, oldest), min(to_seq, self._last_seq)
            if start > stop or self._last_seq == 0:
                return start, self._ring[:0].copy()
            stop = min(stop, start + limit - 1)
            idx = (np.arange(start, stop + 1) - 1) % self._capacity
            return start, self._ring[idx]

"""Memory for per-user meters: HDR counts as columns of anonymous memory maps.

A meter in the engine's layout is 33,792 int64 counts (264 KiB), of which an execution
touches one bucket. Meters are columns of blocks of shape ``(counts_len, 64)`` carved from
anonymous ``mmap`` chunks: pages stay unbacked until written, and meters created together
(a tenant's chains) share the pages of the buckets their latencies fall in. A tenant's ten
meters then cost a page or two of resident memory, not ten pages, and never 2.6 MiB.
"""
from __future__ import annotations

import mmap
import threading

import numpy as np

METERS_PER_BLOCK = 64
"""Meters side by side in one block (one memory map each)."""


class MeterArena:
    """Hand out (block, column) places for :class:`~flowchain._engine.UserMeter`.

    Places are never given back: a meter lives as long as the manager that holds it.
    """

    def __init__(self, counts_len: int, meters_per_block: int = METERS_PER_BLOCK) -> None:
        if counts_len < 1 or meters_per_block < 1:
            raise ValueError(f"a meter arena needs positive sizes, got {counts_len} counts and "
                             f"{meters_per_block} meters per block")
        self.counts_len = counts_len
        self.meters_per_block = meters_per_block
        self._blocks: list[tuple[mmap.mmap, np.ndarray]] = []
        self._next = meters_per_block
        self._lock = threading.Lock()

    @property
    def meters(self) -> int:
        """Places handed out so far."""
        if not self._blocks:
            return 0
        return (len(self._blocks) - 1) * self.meters_per_block + self._next

    def place(self) -> tuple[np.ndarray, int]:
        """Return a fresh zeroed (block, column)."""
        with self._lock:
            if self._next == self.meters_per_block:
                mm = mmap.mmap(-1, self.counts_len * self.meters_per_block * 8)
                block = np.frombuffer(mm, dtype=np.int64).reshape(self.counts_len,
                                                                  self.meters_per_block)
                self._blocks.append((mm, block))
                self._next = 0
            column = self._next
            self._next += 1
            return self._blocks[-1][1], column

"""Batches for the MT5 -> database chain: copy out what each ring received since the last call.

The hot path writes ticks into the rings; the batch consumer reads them later, off the tick,
with one cursor per ring. Nothing is queued per tick, so a slow database never slows a tick.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from flowchain.feeds.base import Feed
from flowchain.feeds.ring import TickRing


class TickBatch(NamedTuple):
    """The ticks one symbol received since the previous batch."""

    symbol: str
    symbol_id: int
    ticks: np.ndarray
    """A copy, oldest first, in the MT5 tick dtype."""
    seqs: np.ndarray
    """Their wire sequence numbers."""
    lost: int
    """Ticks that were overwritten before this batch could copy them."""


class TickBatcher:
    """Drain every ring of a feed into per-symbol batches, remembering where it stopped.

    Parameters
    ----------
    feed : Feed
        The feed whose rings to read.
    from_start : bool, optional
        If True, the first call returns what the rings already hold; otherwise only what
        arrives after the batcher was created.

    Notes
    -----
    ``lost`` grows when the consumer is slower than the feed by more than a ring's capacity;
    the node counts it as a drop with reason ``batch_overrun``.
    """

    def __init__(self, feed: Feed, from_start: bool = True) -> None:
        self._rings: list[TickRing] = list(feed.rings.values())
        self._cursors: dict[str, int] = {
            r.symbol: (0 if from_start else r.count) for r in self._rings}
        self.lost = 0
        """Total ticks lost to overruns, all symbols."""

    def drain(self) -> list[TickBatch]:
        """Return one batch per symbol that received ticks since the last call.

        Returns
        -------
        list of TickBatch
            Empty when nothing arrived.
        """
        out: list[TickBatch] = []
        for ring in self._rings:
            cursor = self._cursors[ring.symbol]
            if ring.count == cursor:
                continue
            ticks, seqs, self._cursors[ring.symbol], lost = ring.read_since(cursor)
            self.lost += lost
            out.append(TickBatch(ring.symbol, ring.symbol_id, ticks, seqs, lost))
        return out

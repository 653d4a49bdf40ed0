"""The hybrid tick stream: poll ``symbol_info_tick``, fetch ``copy_ticks_range`` on change, dedup.

``symbol_info_tick`` alone loses the ticks between polls; ``copy_ticks_range`` alone overlaps
(its dates have second resolution). So each symbol keeps ``(last_time_msc, seen_at_last_ms)``:
when the latest tick differs from the last one emitted, the range since ``last_time_msc`` is
fetched and only records after it, or beyond the count already seen at that millisecond, are new.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from flowchain_bridge.ticks import TICK_DTYPE

_COPY_TICKS_ALL = -1  # MetaTrader5.COPY_TICKS_ALL


def ticks_between(records: np.ndarray, after: tuple[int, int], upto: tuple[int, int]) -> np.ndarray:
    """The records after position ``after`` and up to position ``upto`` (both included as said).

    A position is ``(time_msc, n)``: the first ``n`` records of millisecond ``time_msc`` (several
    ticks can share one). ``records`` is a ``copy_ticks_range`` result, sorted by time, that
    starts at or before ``after``'s millisecond. This is what a restart backfill serves: after
    the node's last tick, up to where the bridge's session began streaming.
    """
    times = records["time_msc"]
    first = int(np.searchsorted(times, after[0], side="left"))
    at = int(np.searchsorted(times, after[0], side="right")) - first
    start = first + min(after[1], at)
    first = int(np.searchsorted(times, upto[0], side="left"))
    at = int(np.searchsorted(times, upto[0], side="right")) - first
    stop = first + min(upto[1], at)
    return records[start:max(start, stop)]


class SymbolCursor:
    """Where one symbol's stream stands: the last emitted millisecond and how many ticks had it."""

    __slots__ = ("symbol", "last_msc", "seen_at_last", "last_key", "polls", "fetches")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.last_msc: int | None = None
        self.seen_at_last = 0
        self.last_key: tuple | None = None
        self.polls = 0
        self.fetches = 0

    def new_records(self, records: np.ndarray) -> np.ndarray:
        """Return the records not emitted yet and advance the cursor past them.

        ``records`` is a ``copy_ticks_range`` result starting at or before ``last_msc``.
        """
        if not len(records):
            return records
        times = records["time_msc"]
        if self.last_msc is None:
            fresh = records
        else:
            first_at = int(np.searchsorted(times, self.last_msc, side="left"))
            after = int(np.searchsorted(times, self.last_msc, side="right"))
            at_last = after - first_at
            skip = first_at + min(self.seen_at_last, at_last)
            # records at last_msc beyond those already seen are new, then everything after
            fresh = records[skip:] if at_last >= self.seen_at_last else records[after:]
        if len(fresh):
            newest = int(times[-1])
            count_newest = len(records) - int(np.searchsorted(times, newest, side="left"))
            self.last_msc = newest
            self.seen_at_last = count_newest
            last = records[-1]
            self.last_key = (newest, float(last["bid"]), float(last["ask"]), float(last["last"]),
                             int(last["volume"]), int(last["flags"]))
        return fresh


class TickPoller:
    """Polls a terminal for new ticks of its symbols; the stream thread calls :meth:`poll`.

    Parameters
    ----------
    mt5
        The ``MetaTrader5`` module or the fake.
    symbols
        Symbols in ``symbol_id`` order.
    """

    def __init__(self, mt5: Any, symbols: list[str]) -> None:
        self.mt5 = mt5
        self.cursors = [SymbolCursor(s) for s in symbols]
        self.starts: list[tuple[int, int] | None] = [None] * len(symbols)
        """Where each symbol's stream began, ``(time_msc, ticks of that ms)``: everything up
        to it predates the session (a restart backfill serves it), after it has a seq."""
        self._empty = np.zeros(0, dtype=TICK_DTYPE)

    def start_at_now(self, symbol_id: int) -> bool:
        """Mark everything up to the latest tick as seen (a stream starts from now); False on error."""
        cursor = self.cursors[symbol_id]
        tick = self.mt5.symbol_info_tick(cursor.symbol)
        if tick is None:
            return False
        if tick.time_msc == 0:  # no tick yet: everything that comes is new
            cursor.last_msc, cursor.seen_at_last = 0, 0
            cursor.last_key = (0, 0.0, 0.0, 0.0, 0, 0)
            self.starts[symbol_id] = (0, 0)
            return True
        records = self.mt5.copy_ticks_range(cursor.symbol, tick.time, tick.time + 1, _COPY_TICKS_ALL)
        if records is None:
            return False
        at_ms = records[records["time_msc"] <= tick.time_msc]
        cursor.last_msc = tick.time_msc
        cursor.seen_at_last = int(np.count_nonzero(at_ms["time_msc"] == tick.time_msc)) or 1
        cursor.last_key = (tick.time_msc, tick.bid, tick.ask, tick.last, tick.volume, tick.flags)
        if self.starts[symbol_id] is None:  # a reconnect repositions nothing: seqs go on
            self.starts[symbol_id] = (cursor.last_msc, cursor.seen_at_last)
        return True

    def poll(self, symbol_id: int) -> np.ndarray | None:
        """Return the symbol's new ticks (often empty); ``None`` when a terminal call failed."""
        cursor = self.cursors[symbol_id]
        cursor.polls += 1
        tick = self.mt5.symbol_info_tick(cursor.symbol)
        if tick is None:
            return None
        key = (tick.time_msc, tick.bid, tick.ask, tick.last, tick.volume, tick.flags)
        if key == cursor.last_key:
            return self._empty
        cursor.fetches += 1
        since = (cursor.last_msc if cursor.last_msc is not None else tick.time_msc) // 1000
        records = self.mt5.copy_ticks_range(cursor.symbol, since, tick.time_msc // 1000 + 1, _COPY_TICKS_ALL)
        if records is None:
            return None
        fresh = cursor.new_records(records)
        cursor.last_key = key  # a tick not yet in the range comes with the next change
        return fresh

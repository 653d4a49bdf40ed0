"""The per-symbol tick ring: a preallocated numpy buffer of MT5 ticks every feed writes into.

A :class:`TickRing` holds the last ``capacity`` ticks of one symbol in the MT5 dtype
(:data:`flowchain_bridge.ticks.TICK_DTYPE`) beside a parallel ``uint64`` array of their sequence numbers
(the bridge's wire seq, or the feed's own count), which the batches carry to the database as the
ticks' identity. It is a *mirrored* ring: every tick is written twice, at slot ``i`` and ``i +
capacity``, so the newest ``n`` ticks are always one contiguous slice of the buffer. Readers (the
AI decision chain's numba kernels, the batch writer) therefore get zero-copy, chronologically
ordered views with no wrap-around case, at the price of one extra 60-byte copy per tick.

Appending allocates nothing that outlives the call: the record is copied (or packed) straight
into the preallocated buffer. The ring is single-writer; readers on the same thread (the node's
event loop) see every completed append.
"""
from __future__ import annotations

import struct
from array import array

import numpy as np
from flowchain_bridge.ticks import TICK_DTYPE

_RECORD = struct.Struct("<qdddQqId")
"""The packed MT5 tick record (time, bid, ask, last, volume, time_msc, flags, volume_real)."""
_ITEM = TICK_DTYPE.itemsize

assert _RECORD.size == _ITEM


class TickRing:
    """A preallocated, mirrored ring of one symbol's MT5 ticks with their sequence numbers.

    Parameters
    ----------
    capacity : int
        How many of the newest ticks the ring keeps (at least 1).
    symbol : str, optional
        The symbol's name, for messages and for readers.
    symbol_id : int, optional
        The symbol's numeric id on the wire.

    Raises
    ------
    ValueError
        If ``capacity`` is smaller than 1.

    Notes
    -----
    ``count`` is the total number of ticks ever appended; it doubles as the cursor that
    :meth:`read_since` takes, so a batch consumer knows exactly which ticks it has not yet read
    and how many it lost when it fell more than ``capacity`` ticks behind.
    """

    __slots__ = ("symbol", "symbol_id", "capacity", "ticks", "seqs", "_raw", "_seq_store",
                 "_count", "_head", "_last_seq")

    def __init__(self, capacity: int, symbol: str = "", symbol_id: int = 0) -> None:
        if capacity < 1:
            raise ValueError(
                f"TickRing for symbol {symbol!r}: capacity must be at least 1, got {capacity}; "
                "pass the number of newest ticks the ring should keep")
        self.symbol = symbol
        self.symbol_id = symbol_id
        self.capacity = int(capacity)
        self.ticks = np.zeros(2 * self.capacity, dtype=TICK_DTYPE)
        """The mirrored buffer (2 x capacity); prefer :meth:`window` to indexing it."""
        # The seqs live in an array.array (item assignment ~25 ns, half of struct.pack_into);
        # numpy views the same memory.
        self._seq_store = array("Q", bytes(16 * self.capacity))
        self.seqs = np.frombuffer(self._seq_store, dtype=np.uint64)
        """Wire sequence numbers, parallel to :attr:`ticks`."""
        self._raw = memoryview(self.ticks.view(np.uint8))
        self._count = 0
        self._head = -1
        self._last_seq = -1

    # -- writing (the hot path) ------------------------------------------------------------
    def append_record(self, record: bytes | bytearray | memoryview, seq: int) -> int:
        """Copy one packed 60-byte MT5 tick record into the ring.

        Parameters
        ----------
        record : bytes-like
            Exactly 60 bytes in the layout of :data:`TICK_DTYPE`.
        seq : int
            The tick's sequence number; with its ``time_msc``, the tick's identity in the
            database (two ticks of one millisecond under one seq are one tick, the second a
            duplicate), so a feed numbers every tick.

        Returns
        -------
        int
            The slot the tick went to; ``ticks[slot]`` is the newest tick.

        Raises
        ------
        ValueError
            If ``record`` is not exactly 60 bytes (nothing is written then).
        """
        slot = self._count % self.capacity
        mirror = slot + self.capacity
        raw = self._raw
        raw[slot * _ITEM:(slot + 1) * _ITEM] = record
        raw[mirror * _ITEM:(mirror + 1) * _ITEM] = record
        return self._commit(slot, mirror, seq)

    def append(self, time: int, bid: float, ask: float, last: float, volume: int, time_msc: int,
               flags: int, volume_real: float, seq: int) -> int:
        """Pack one tick from its fields into the ring.

        Parameters
        ----------
        time, bid, ask, last, volume, time_msc, flags, volume_real : scalars
            The MT5 tick fields (``time`` in s, ``time_msc`` in ms).
        seq : int
            The tick's sequence number; with its ``time_msc``, the tick's identity in the
            database (two ticks of one millisecond under one seq are one tick, the second a
            duplicate), so a feed numbers every tick.

        Returns
        -------
        int
            The slot the tick went to.

        Raises
        ------
        struct.error
            If a field does not fit its MT5 type (for example a negative ``volume``); nothing
            is written then.
        """
        slot = self._count % self.capacity
        mirror = slot + self.capacity
        _RECORD.pack_into(self._raw, slot * _ITEM, time, bid, ask, last, volume, time_msc,
                          flags, volume_real)
        self._raw[mirror * _ITEM:(mirror + 1) * _ITEM] = self._raw[slot * _ITEM:(slot + 1) * _ITEM]
        return self._commit(slot, mirror, seq)

    def extend(self, ticks: np.ndarray, first_seq: int = 0, seq_step: int = 1) -> None:
        """Append a batch of ticks (an array of :data:`TICK_DTYPE`) in order.

        Parameters
        ----------
        ticks : numpy.ndarray
            The ticks, oldest first.
        first_seq : int, optional
            The sequence number of ``ticks[0]``.
        seq_step : int, optional
            The increment between consecutive ticks' sequence numbers (0 for "no seq").

        Raises
        ------
        TypeError
            If ``ticks`` is not an array of the MT5 tick dtype.
        """
        if not isinstance(ticks, np.ndarray) or ticks.dtype != TICK_DTYPE:
            raise TypeError(
                f"TickRing.extend for {self.symbol!r} expects a numpy array of TICK_DTYPE, got "
                f"{type(ticks).__name__} with dtype {getattr(ticks, 'dtype', None)}")
        n = len(ticks)
        if n == 0:
            return
        seqs = first_seq + seq_step * np.arange(n, dtype=np.uint64)
        if n > self.capacity:  # only the newest `capacity` survive; count all of them
            skipped = n - self.capacity
            self._count += skipped
            ticks, seqs = ticks[skipped:], seqs[skipped:]
            n = self.capacity
        cap = self.capacity
        start = self._count % cap
        first = min(n, cap - start)
        for lo, dst, m in ((0, start, first), (first, 0, n - first)):
            if m:
                self.ticks[dst:dst + m] = ticks[lo:lo + m]
                self.ticks[dst + cap:dst + cap + m] = ticks[lo:lo + m]
                self.seqs[dst:dst + m] = seqs[lo:lo + m]
                self.seqs[dst + cap:dst + cap + m] = seqs[lo:lo + m]
        self._count += n
        self._head = (self._count - 1) % cap + cap
        self._last_seq = int(seqs[-1])

    def _commit(self, slot: int, mirror: int, seq: int) -> int:
        store = self._seq_store
        store[slot] = seq
        store[mirror] = seq
        self._count += 1
        self._head = mirror
        self._last_seq = seq
        return mirror

    # -- reading --------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Total ticks ever appended (also the cursor for :meth:`read_since`)."""
        return self._count

    @property
    def size(self) -> int:
        """How many ticks the ring holds now: ``min(count, capacity)``."""
        return self._count if self._count < self.capacity else self.capacity

    @property
    def head(self) -> int:
        """Index in :attr:`ticks` of the newest tick (-1 while empty).

        ``ticks[head - n + 1:head + 1]`` are the newest ``n`` ticks, oldest first, for any
        ``n <= size``: hand ``ticks`` and ``head`` to a numba kernel to read without a copy.
        """
        return self._head

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest tick (-1 while empty)."""
        return self._last_seq

    @property
    def latest_bid(self) -> float:
        """Bid of the newest tick.

        Raises
        ------
        IndexError
            If the ring is empty.
        """
        self._require(1)
        return float(self.ticks["bid"][self._head])

    @property
    def latest_ask(self) -> float:
        """Ask of the newest tick.

        Raises
        ------
        IndexError
            If the ring is empty.
        """
        self._require(1)
        return float(self.ticks["ask"][self._head])

    def window(self, n: int) -> np.ndarray:
        """A zero-copy view of the newest ``n`` ticks, oldest first.

        The view is overwritten as new ticks arrive: copy it (or use :meth:`latest`) to keep it.

        Raises
        ------
        IndexError
            If the ring holds fewer than ``n`` ticks, or ``n`` is negative.
        """
        self._require(n)
        return self.ticks[self._head - n + 1:self._head + 1]

    def seq_window(self, n: int) -> np.ndarray:
        """A zero-copy view of the sequence numbers of the newest ``n`` ticks, oldest first.

        Raises
        ------
        IndexError
            If the ring holds fewer than ``n`` ticks, or ``n`` is negative.
        """
        self._require(n)
        return self.seqs[self._head - n + 1:self._head + 1]

    def latest(self, n: int = 1) -> np.ndarray:
        """A copy of the newest ``n`` ticks, oldest first (safe to keep).

        Raises
        ------
        IndexError
            If the ring holds fewer than ``n`` ticks, or ``n`` is negative.
        """
        return self.window(n).copy()

    def read_since(self, cursor: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Copy every tick appended after ``cursor`` (a previous :attr:`count`).

        Parameters
        ----------
        cursor : int
            The :attr:`count` the consumer saw last time (0 at first).

        Returns
        -------
        ticks : numpy.ndarray
            The new ticks, oldest first (a copy).
        seqs : numpy.ndarray
            Their sequence numbers.
        cursor : int
            The cursor to pass next time.
        lost : int
            Ticks the consumer missed because it fell more than ``capacity`` behind.

        Raises
        ------
        ValueError
            If ``cursor`` is negative or ahead of :attr:`count`.
        """
        if cursor < 0 or cursor > self._count:
            raise ValueError(
                f"TickRing {self.symbol!r}: cursor {cursor} is outside 0..{self._count} "
                "(the ring's count); pass the count returned by the previous read_since")
        pending = self._count - cursor
        lost = pending - self.capacity if pending > self.capacity else 0
        n = pending - lost
        if n == 0:
            return self.ticks[:0].copy(), self.seqs[:0].copy(), self._count, lost
        lo = self._head - n + 1
        return (self.ticks[lo:self._head + 1].copy(), self.seqs[lo:self._head + 1].copy(),
                self._count, lost)

    def _require(self, n: int) -> None:
        if n < 0 or n > self.size:
            raise IndexError(
                f"TickRing {self.symbol!r} holds {self.size} ticks (capacity {self.capacity}); "
                f"asked for the newest {n}")

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return (f"TickRing(symbol={self.symbol!r}, symbol_id={self.symbol_id}, "
                f"capacity={self.capacity}, count={self._count}, last_seq={self._last_seq})")

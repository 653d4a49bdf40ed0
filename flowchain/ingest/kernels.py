"""Numba kernels of the MT5 -> database chain: one pass over a batch instead of a dozen numpy ops.

A batch of a few hundred ticks makes numpy's per-operation overhead (on 60-byte-strided field
views) dominate; these loops do the same work in one pass each. They are compiled on first use
(``cache=True`` keeps the machine code across processes) and :func:`warm_up` runs each once, so
the components call it from their constructors and no batch pays for compilation.
"""
from __future__ import annotations

import numpy as np
from flowchain_bridge import ticks as _ticks
from numba import njit

tick_fault = njit(cache=True, nogil=True)(_ticks.tick_fault)
"""The compiled twin of :func:`flowchain_bridge.ticks.tick_fault` (the one definition of the quote
rules), for kernels to call."""

# Reason codes, as flowchain.ingest.validation.REJECT_REASONS numbers them (0 = accepted); the
# first four are flowchain_bridge.ticks.TICK_FAULTS' codes.
NON_FINITE, NON_POSITIVE, CROSSED, VOLUME_OUT_OF_RANGE = (
    _ticks.NON_FINITE, _ticks.NON_POSITIVE, _ticks.CROSSED, _ticks.VOLUME_OUT_OF_RANGE)
FUTURE, OUT_OF_ORDER, DUPLICATE = 5, 6, 7


@njit(cache=True, nogil=True)
def reject_codes(bid, ask, last, volume, volume_real, time_msc, previous_msc, latest_allowed_msc,
                 codes):  # pragma: no cover - compiled
    """Write each tick's first reject reason (or 0) into ``codes``; return how many were rejected.

    Checks, in order: the quote rules (:func:`tick_fault`), dated in the future (``time_msc``
    after ``latest_allowed_msc``), out of order (against the latest accepted ``time_msc``,
    starting from ``previous_msc``). Duplicates are :func:`mark_duplicates`' job.
    """
    rejected = 0
    latest = previous_msc
    for i in range(len(bid)):
        code = tick_fault(bid[i], ask[i], last[i], volume[i], volume_real[i])
        if code == 0:
            if time_msc[i] > latest_allowed_msc:
                code = FUTURE
            elif time_msc[i] < latest:
                code = OUT_OF_ORDER
            else:
                latest = time_msc[i]
        codes[i] = code
        if code:
            rejected += 1
    return rejected


@njit(cache=True, nogil=True)
def mark_duplicates(time_msc, seqs, duplicate):  # pragma: no cover - compiled
    """Set ``duplicate[i]`` when tick ``i`` has the identity (``time_msc``, ``seq``) of an
    earlier non-duplicate tick.

    ``time_msc`` is non-decreasing, so only ticks within one millisecond are compared. Ticks
    that share a millisecond but not a sequence number are distinct, however equal their
    prices (a quote that moves A -> B -> A within a millisecond is three ticks). Return how
    many were marked.
    """
    n = len(time_msc)
    marked = 0
    group = 0
    for i in range(1, n):
        if time_msc[i] != time_msc[group]:
            group = i
            continue
        if duplicate[i]:
            continue
        for j in range(group, i):
            if not duplicate[j] and seqs[j] == seqs[i]:
                duplicate[i] = True
                marked += 1
                break
    return marked


@njit(cache=True, nogil=True)
def ohlc_bars(time_msc, price, volume, bar_ms, start, open_, high, low, close, count,
              volume_sum, first, last):  # pragma: no cover - compiled
    """Aggregate time-sorted ticks into bars of ``bar_ms``; write them into the outputs.

    The outputs need room for ``len(time_msc)`` bars; return how many were written.
    """
    bars = -1
    current = np.int64(-1)
    for i in range(len(time_msc)):
        t = time_msc[i]
        s = t - t % bar_ms
        p = price[i]
        if bars < 0 or s != current:
            bars += 1
            current = s
            start[bars] = s
            open_[bars] = p
            high[bars] = p
            low[bars] = p
            count[bars] = 0
            volume_sum[bars] = 0.0
            first[bars] = t
        if p > high[bars]:
            high[bars] = p
        if p < low[bars]:
            low[bars] = p
        close[bars] = p
        count[bars] += 1
        volume_sum[bars] += volume[i]
        last[bars] = t
    return bars + 1


def warm_up() -> None:
    """Compile (or load from cache) every kernel for the types the chain passes."""
    from flowchain_bridge.ticks import TICK_DTYPE

    from flowchain.store import BAR_DTYPE

    ticks = np.zeros(2, dtype=TICK_DTYPE)
    ticks["bid"], ticks["ask"], ticks["time_msc"] = 1.0, 1.0, 1
    codes = np.zeros(2, dtype=np.uint8)
    readonly = np.frombuffer(ticks.tobytes(), dtype=TICK_DTYPE)  # as DataBridge views bytes
    for view in (ticks, readonly):
        reject_codes(view["bid"], view["ask"], view["last"], view["volume"],
                     view["volume_real"], view["time_msc"], np.iinfo(np.int64).min,
                     np.iinfo(np.int64).max, codes)
    mark_duplicates(ticks["time_msc"], np.arange(2, dtype=np.int64), np.zeros(2, dtype=np.bool_))
    tick_fault(1.0, 1.0, 0.0, np.uint64(0), 0.0)
    bars = np.zeros(2, dtype=BAR_DTYPE)
    mid = np.ones(2)
    ohlc_bars(ticks["time_msc"], mid, ticks["volume_real"], 1000, bars["start_msc"],
              bars["open"], bars["high"], bars["low"], bars["close"], bars["tick_count"],
              bars["volume"], bars["first_msc"], bars["last_msc"])

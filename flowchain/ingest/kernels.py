"""Numba kernels of the MT5 -> database chain: one pass over a batch instead of a dozen numpy ops.

A batch of a few hundred ticks makes numpy's per-operation overhead (on 60-byte-strided field
views) dominate; these loops do the same work in one pass each. They are compiled on first use
(``cache=True`` keeps the machine code across processes) and :func:`warm_up` runs each once, so
the components call it from their constructors and no batch pays for compilation.
"""
from __future__ import annotations

import numpy as np
from numba import njit

INT64_MAX_AS_U64 = np.uint64(np.iinfo(np.int64).max)

# Reason codes, as flowchain.ingest.validation.REJECT_REASONS numbers them (0 = accepted).
NON_FINITE, NON_POSITIVE, CROSSED, VOLUME_OUT_OF_RANGE, OUT_OF_ORDER, DUPLICATE = range(1, 7)


@njit(cache=True, nogil=True)
def reject_codes(bid, ask, last, volume, volume_real, time_msc, previous_msc, codes):  # pragma: no cover - compiled
    """Write each tick's first reject reason (or 0) into ``codes``; return how many were rejected.

    Checks, in order: non-finite, non-positive, crossed, volume out of range, out of order
    (against the latest accepted ``time_msc``, starting from ``previous_msc``). Duplicates are
    :func:`mark_duplicates`' job.
    """
    rejected = 0
    latest = previous_msc
    for i in range(len(bid)):
        b, a, p, v = bid[i], ask[i], last[i], volume_real[i]
        if not (np.isfinite(b) and np.isfinite(a) and np.isfinite(p) and np.isfinite(v)):
            code = NON_FINITE
        elif b <= 0.0 or a <= 0.0 or p < 0.0:
            code = NON_POSITIVE
        elif b > a:
            code = CROSSED
        elif volume[i] > INT64_MAX_AS_U64 or v < 0.0:
            code = VOLUME_OUT_OF_RANGE
        elif time_msc[i] < latest:
            code = OUT_OF_ORDER
        else:
            code = 0
            latest = time_msc[i]
        codes[i] = code
        if code:
            rejected += 1
    return rejected


@njit(cache=True, nogil=True)
def mark_duplicates(time_msc, records, duplicate):  # pragma: no cover - compiled
    """Set ``duplicate[i]`` when record ``i`` equals an earlier non-duplicate record.

    ``time_msc`` is non-decreasing and identical records share a millisecond, so only records
    within one millisecond are compared (byte for byte, rows of ``records``: ``uint8 [n, 60]``).
    Return how many were marked.
    """
    n = len(time_msc)
    width = records.shape[1]
    marked = 0
    group = 0
    for i in range(1, n):
        if time_msc[i] != time_msc[group]:
            group = i
            continue
        if duplicate[i]:
            continue
        for j in range(group, i):
            if duplicate[j]:
                continue
            same = True
            for k in range(width):
                if records[i, k] != records[j, k]:
                    same = False
                    break
            if same:
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
    from flowchain.store import BAR_DTYPE
    from flowchain.ticks import TICK_DTYPE

    ticks = np.zeros(2, dtype=TICK_DTYPE)
    ticks["bid"], ticks["ask"], ticks["time_msc"] = 1.0, 1.0, 1
    codes = np.zeros(2, dtype=np.uint8)
    readonly = np.frombuffer(ticks.tobytes(), dtype=TICK_DTYPE)  # as DataBridge views bytes
    for view in (ticks, readonly):
        reject_codes(view["bid"], view["ask"], view["last"], view["volume"],
                     view["volume_real"], view["time_msc"], np.iinfo(np.int64).min, codes)
    mark_duplicates(ticks["time_msc"], ticks.view(np.uint8).reshape(2, 60),
                    np.zeros(2, dtype=np.bool_))
    bars = np.zeros(2, dtype=BAR_DTYPE)
    mid = np.ones(2)
    ohlc_bars(ticks["time_msc"], mid, ticks["volume_real"], 1000, bars["start_msc"],
              bars["open"], bars["high"], bars["low"], bars["close"], bars["tick_count"],
              bars["volume"], bars["first_msc"], bars["last_msc"])

"""The MT5 tick record as numpy sees it: the dtype every feed, ring and store shares.

This is the structured dtype that ``MetaTrader5.copy_ticks_range`` returns (packed, itemsize 60);
see shared facts in docs/protocol.md. It also holds the quote rules (:func:`tick_fault`) that every
feed, decoder and step applies.
"""
import math

import numpy as np

TICK_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("bid", "<f8"),
        ("ask", "<f8"),
        ("last", "<f8"),
        ("volume", "<u8"),
        ("time_msc", "<i8"),
        ("flags", "<u4"),
        ("volume_real", "<f8"),
    ]
)
"""The MetaTrader5 tick dtype: ``time`` (s), prices, ``time_msc`` (ms), ``flags`` bitmask."""

assert TICK_DTYPE.itemsize == 60

# Tick flag bits, as the MetaTrader5 package defines them (unknown bits are passed through).
TICK_FLAG_BID = 0x02
TICK_FLAG_ASK = 0x04
TICK_FLAG_LAST = 0x08
TICK_FLAG_VOLUME = 0x10
TICK_FLAG_BUY = 0x20
TICK_FLAG_SELL = 0x40

# -- The quote rules ------------------------------------------------------------------------------
# One definition, used by the wire decoders, the replay reader, the validator's numba kernel, the
# feature step's guard and the simulator's tests: a tick that breaks one of them is refused
# everywhere, before anything decides on it.
TICK_FAULTS = ("non_finite", "non_positive", "crossed", "volume_out_of_range")
"""What :func:`tick_fault` can find, in the order it checks; fault code ``i + 1`` is
``TICK_FAULTS[i]`` (0: the tick is fine)."""
NON_FINITE, NON_POSITIVE, CROSSED, VOLUME_OUT_OF_RANGE = 1, 2, 3, 4
VOLUME_MAX = np.uint64(np.iinfo(np.int64).max)
"""The largest ``volume`` SQLite can store (a signed 64-bit integer)."""


def tick_fault(bid, ask, last, volume, volume_real):  # type: ignore[no-untyped-def]
    """Return the code of the first quote rule a tick breaks, or 0 when it breaks none.

    The rules, in order:

    1. ``non_finite``: ``bid``, ``ask``, ``last`` or ``volume_real`` is NaN or infinite;
    2. ``non_positive``: ``bid`` or ``ask`` is zero or negative, or ``last`` is negative
       (``last == 0`` is MT5's "no trade price");
    3. ``crossed``: ``bid > ask`` (a locked quote, ``bid == ask``, is fine);
    4. ``volume_out_of_range``: ``volume`` above a signed 64-bit integer, or ``volume_real``
       negative.

    Plain Python that numba compiles as it is (the validator's and the feature step's kernels
    call the compiled twin), so the rules exist once.
    """
    if not (math.isfinite(bid) and math.isfinite(ask) and math.isfinite(last)
            and math.isfinite(volume_real)):
        return NON_FINITE
    if bid <= 0.0 or ask <= 0.0 or last < 0.0:
        return NON_POSITIVE
    if bid > ask:
        return CROSSED
    if volume > VOLUME_MAX or volume_real < 0.0:
        return VOLUME_OUT_OF_RANGE
    return 0


def tick_faults(ticks: np.ndarray) -> np.ndarray:
    """Return the :func:`tick_fault` code of every tick of a :data:`TICK_DTYPE` array (``uint8``).

    A vectorized look finds the suspects (any tick that is not plainly fine); only those go
    through :func:`tick_fault` itself, so a clean batch costs a few numpy passes.
    """
    codes = np.zeros(len(ticks), dtype=np.uint8)
    if len(ticks) == 0:
        return codes
    bid, ask, last, volume_real = ticks["bid"], ticks["ask"], ticks["last"], ticks["volume_real"]
    with np.errstate(invalid="ignore"):
        fine = (bid > 0.0) & (bid <= ask) & (last >= 0.0) & (volume_real >= 0.0)
        fine &= np.isfinite(ask) & np.isfinite(last) & np.isfinite(volume_real)
        fine &= ticks["volume"] <= VOLUME_MAX
    if fine.all():
        return codes
    for i in np.flatnonzero(~fine).tolist():
        t = ticks[i]
        codes[i] = tick_fault(float(t["bid"]), float(t["ask"]), float(t["last"]),
                              int(t["volume"]), float(t["volume_real"]))
    return codes

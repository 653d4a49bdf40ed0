"""The MT5 tick record as numpy sees it: the dtype every feed, ring and store shares.

This is the structured dtype that ``MetaTrader5.copy_ticks_range`` returns (packed, itemsize 60);
see shared facts in docs/protocol.md.
"""
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

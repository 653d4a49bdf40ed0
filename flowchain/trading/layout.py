"""Index layout of the feature vector, the feature engine's state and its parameter vector.

numba compiles these module-level integers in as constants. Agents and models read features by
these names, e.g. ``features[F_RSI]``.
"""
from __future__ import annotations

# -- the feature vector ------------------------------------------------------------------------
F_MID = 0
"""(bid + ask) / 2."""
F_SPREAD = 1
"""ask - bid."""
F_RET_SHORT = 2
"""log(mid_t / mid_{t-h}) for the shortest horizon h (0.0 until h ticks were seen)."""
F_RET_MEDIUM = 3
F_RET_LONG = 4
F_EMA_FAST = 5
"""Exponential moving average of the mid, alpha = 2 / (fast_period + 1), seeded with the first mid."""
F_EMA_SLOW = 6
F_VOLATILITY = 7
"""sqrt of the EWMA of squared 1-tick log returns (realized volatility per tick)."""
F_RSI = 8
"""Wilder's RSI of the mid over ``rsi_period`` changes, 0..100 (50 until warmed up)."""
F_TICK_RATE = 9
"""Ticks per second over the last ``rate_window_ms`` of ``time_msc`` (at most ``history`` ticks)."""
F_IMBALANCE = 10
"""EWMA of signed tick weight over EWMA of weight, -1..1: buy (+) versus sell (-) pressure."""
F_CHANNEL_HIGH = 11
"""Highest mid of the previous ``channel`` ticks (the current mid before any)."""
F_CHANNEL_LOW = 12
F_BID = 13
F_ASK = 14
F_TIME_MSC = 15
F_COUNT = 16
"""Ticks seen since the context was created or reset (the warm-up gauge)."""
N_FEATURES = 17

FEATURE_NAMES = ("mid", "spread", "ret_short", "ret_medium", "ret_long", "ema_fast", "ema_slow",
                 "volatility", "rsi", "tick_rate", "imbalance", "channel_high", "channel_low",
                 "bid", "ask", "time_msc", "count")
assert len(FEATURE_NAMES) == N_FEATURES

# -- the per-symbol state: scalars, then four rings of ``history`` entries ------------------
S_COUNT = 0
S_PREV_MID = 1
S_EMA_FAST = 2
S_EMA_SLOW = 3
S_VARIANCE = 4
S_GAIN = 5
S_LOSS = 6
S_RATE_TAIL = 7
S_IMB_NUM = 8
S_IMB_DEN = 9
S_MAXQ_HEAD = 10
S_MAXQ_TAIL = 11
S_MINQ_HEAD = 12
S_MINQ_TAIL = 13
N_STATE_SCALARS = 16


def state_size(history: int) -> int:
    """Return the length of a state vector with rings of ``history`` entries."""
    return N_STATE_SCALARS + 4 * history


# -- the feature engine's parameters -----------------------------------------------------------
P_ALPHA_FAST = 0
P_ALPHA_SLOW = 1
P_ALPHA_VOL = 2
P_RSI_PERIOD = 3
P_RATE_WINDOW_MS = 4
P_ALPHA_IMBALANCE = 5
P_CHANNEL = 6
P_H_SHORT = 7
P_H_MEDIUM = 8
P_H_LONG = 9
N_PARAMS = 10

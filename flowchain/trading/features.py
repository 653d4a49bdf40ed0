"""FeatureEngine: O(1) incremental per-tick features in one numba kernel call.

Every tick costs exactly one crossing into numba: :func:`update_features` reads the tick straight
from its buffer (a tick ring, zero copy), updates the symbol's preallocated state and writes the
symbol's preallocated feature vector. The layout of both is in :mod:`flowchain.trading.layout`.

A tick that breaks a quote rule (:func:`flowchain_bridge.ticks.tick_fault`: zero, negative, NaN or
infinite price, bid above ask, volume out of range) is refused before the kernel touches the
state: the step raises :class:`QuoteRefused`, so no agent, consensus or order ever sees it, and
the symbol's next good tick is computed as if the bad one had never come.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
from flowchain_bridge.ticks import TICK_DTYPE, TICK_FAULTS, TICK_FLAG_BUY, TICK_FLAG_SELL
from flowchain_bridge.ticks import tick_fault as _tick_fault
from numba import njit

from flowchain.errors import FlowChainError
from flowchain.trading.context import DecisionContext
from flowchain.trading.layout import (
    F_ASK,
    F_BID,
    F_CHANNEL_HIGH,
    F_CHANNEL_LOW,
    F_COUNT,
    F_EMA_FAST,
    F_EMA_SLOW,
    F_IMBALANCE,
    F_MID,
    F_RET_LONG,
    F_RET_MEDIUM,
    F_RET_SHORT,
    F_RSI,
    F_SPREAD,
    F_TICK_RATE,
    F_TIME_MSC,
    F_VOLATILITY,
    N_PARAMS,
    N_STATE_SCALARS,
    P_ALPHA_FAST,
    P_ALPHA_IMBALANCE,
    P_ALPHA_SLOW,
    P_ALPHA_VOL,
    P_CHANNEL,
    P_H_LONG,
    P_H_MEDIUM,
    P_H_SHORT,
    P_RATE_WINDOW_MS,
    P_RSI_PERIOD,
    S_COUNT,
    S_EMA_FAST,
    S_EMA_SLOW,
    S_GAIN,
    S_IMB_DEN,
    S_IMB_NUM,
    S_LOSS,
    S_MAXQ_HEAD,
    S_MAXQ_TAIL,
    S_MINQ_HEAD,
    S_MINQ_TAIL,
    S_PREV_MID,
    S_RATE_TAIL,
    S_VARIANCE,
)

_BUY = TICK_FLAG_BUY
_SELL = TICK_FLAG_SELL

tick_fault = njit(cache=True, nogil=True)(_tick_fault)
"""The compiled twin of :func:`flowchain_bridge.ticks.tick_fault`, the one definition of the quote rules."""


class QuoteRefused(FlowChainError, ValueError):
    """The tick breaks a quote rule: no decision is taken on it.

    Attributes
    ----------
    symbol : str
    reason : str
        The rule's name, as the validator quarantines it (``non_finite``, ``non_positive``,
        ``crossed``, ``volume_out_of_range``).
    """

    def __init__(self, symbol: str, reason: str, bid: float, ask: float) -> None:
        super().__init__(f"{symbol}: tick refused ({reason}): bid={bid!r} ask={ask!r}; no "
                         "decision is taken on it and the symbol's features are untouched")
        self.symbol = symbol
        self.reason = reason


@njit(cache=True, nogil=True)
def update_features(ticks, index, state, features, params):  # pragma: no cover - numba
    """Fold ``ticks[index]`` into ``state`` and write the feature vector into ``features``.

    ``state`` holds ``N_STATE_SCALARS`` scalars followed by four rings of ``history`` entries:
    mids, ``time_msc`` values, and the channel's max and min monotonic queues (tick numbers).

    Return 0, or the :func:`tick_fault` code of a tick that breaks a quote rule; then neither
    ``state`` nor ``features`` is touched.
    """
    history = (state.shape[0] - N_STATE_SCALARS) // 4
    mids = state[N_STATE_SCALARS:N_STATE_SCALARS + history]
    times = state[N_STATE_SCALARS + history:N_STATE_SCALARS + 2 * history]
    maxq = state[N_STATE_SCALARS + 2 * history:N_STATE_SCALARS + 3 * history]
    minq = state[N_STATE_SCALARS + 3 * history:N_STATE_SCALARS + 4 * history]

    tick = ticks[index]
    bid = tick["bid"]
    ask = tick["ask"]
    fault = tick_fault(bid, ask, tick["last"], tick["volume"], tick["volume_real"])
    if fault != 0:
        return fault
    time_msc = float(tick["time_msc"])
    flags = tick["flags"]
    weight = tick["volume_real"]
    if weight <= 0.0:
        weight = 1.0
    mid = 0.5 * (bid + ask)

    t = int(state[S_COUNT])
    prev_mid = state[S_PREV_MID] if t > 0 else mid

    # Breakout channel over the previous ``channel`` ticks (monotonic queues, amortized O(1)).
    channel = int(params[P_CHANNEL])
    oldest = t - channel
    head = int(state[S_MAXQ_HEAD])
    tail = int(state[S_MAXQ_TAIL])
    while head < tail and maxq[head % history] < oldest:
        head += 1
    high = mids[int(maxq[head % history]) % history] if head < tail else mid
    while head < tail and mids[int(maxq[(tail - 1) % history]) % history] <= mid:
        tail -= 1
    maxq[tail % history] = t
    state[S_MAXQ_HEAD] = head
    state[S_MAXQ_TAIL] = tail + 1
    head = int(state[S_MINQ_HEAD])
    tail = int(state[S_MINQ_TAIL])
    while head < tail and minq[head % history] < oldest:
        head += 1
    low = mids[int(minq[head % history]) % history] if head < tail else mid
    while head < tail and mids[int(minq[(tail - 1) % history]) % history] >= mid:
        tail -= 1
    minq[tail % history] = t
    state[S_MINQ_HEAD] = head
    state[S_MINQ_TAIL] = tail + 1

    # Log returns at three horizons, from the mid ring (before this tick overwrites its slot).
    h = int(params[P_H_SHORT])
    features[F_RET_SHORT] = math.log(mid / mids[(t - h) % history]) if t >= h else 0.0
    h = int(params[P_H_MEDIUM])
    features[F_RET_MEDIUM] = math.log(mid / mids[(t - h) % history]) if t >= h else 0.0
    h = int(params[P_H_LONG])
    features[F_RET_LONG] = math.log(mid / mids[(t - h) % history]) if t >= h else 0.0
    mids[t % history] = mid

    # EMAs, seeded with the first mid.
    if t == 0:
        ema_fast = mid
        ema_slow = mid
    else:
        ema_fast = state[S_EMA_FAST] + params[P_ALPHA_FAST] * (mid - state[S_EMA_FAST])
        ema_slow = state[S_EMA_SLOW] + params[P_ALPHA_SLOW] * (mid - state[S_EMA_SLOW])
    state[S_EMA_FAST] = ema_fast
    state[S_EMA_SLOW] = ema_slow

    # Realized volatility: EWMA of squared 1-tick log returns.
    r1 = math.log(mid / prev_mid) if t > 0 else 0.0
    alpha = params[P_ALPHA_VOL]
    variance = (1.0 - alpha) * state[S_VARIANCE] + alpha * r1 * r1
    state[S_VARIANCE] = variance

    # Wilder's RSI: simple mean of the first ``period`` changes, then Wilder smoothing.
    period = int(params[P_RSI_PERIOD])
    change = mid - prev_mid
    gain = change if change > 0.0 else 0.0
    loss = -change if change < 0.0 else 0.0
    if t >= 1:
        if t < period:
            state[S_GAIN] += gain
            state[S_LOSS] += loss
        elif t == period:
            state[S_GAIN] = (state[S_GAIN] + gain) / period
            state[S_LOSS] = (state[S_LOSS] + loss) / period
        else:
            state[S_GAIN] = (state[S_GAIN] * (period - 1) + gain) / period
            state[S_LOSS] = (state[S_LOSS] * (period - 1) + loss) / period
    if t < period:
        rsi = 50.0
    elif state[S_LOSS] == 0.0:
        rsi = 100.0 if state[S_GAIN] > 0.0 else 50.0
    else:
        rsi = 100.0 - 100.0 / (1.0 + state[S_GAIN] / state[S_LOSS])

    # Tick rate over the last ``rate_window_ms`` (bounded by the ring: at most ``history`` ticks).
    window_ms = params[P_RATE_WINDOW_MS]
    times[t % history] = time_msc
    first = int(state[S_RATE_TAIL])
    if first < t - history + 1:
        first = t - history + 1
    while first < t and times[first % history] <= time_msc - window_ms:
        first += 1
    state[S_RATE_TAIL] = first
    rate = (t - first + 1) * 1000.0 / window_ms

    # Buy/sell imbalance: trade flags when they say, else the tick rule on the mid.
    side = 0.0
    if (flags & _BUY) != 0 and (flags & _SELL) == 0:
        side = 1.0
    elif (flags & _SELL) != 0 and (flags & _BUY) == 0:
        side = -1.0
    elif change > 0.0:
        side = 1.0
    elif change < 0.0:
        side = -1.0
    alpha = params[P_ALPHA_IMBALANCE]
    num = (1.0 - alpha) * state[S_IMB_NUM] + alpha * side * weight
    den = (1.0 - alpha) * state[S_IMB_DEN] + alpha * weight
    state[S_IMB_NUM] = num
    state[S_IMB_DEN] = den

    state[S_PREV_MID] = mid
    state[S_COUNT] = t + 1

    features[F_MID] = mid
    features[F_SPREAD] = ask - bid
    features[F_EMA_FAST] = ema_fast
    features[F_EMA_SLOW] = ema_slow
    features[F_VOLATILITY] = math.sqrt(variance)
    features[F_RSI] = rsi
    features[F_TICK_RATE] = rate
    features[F_IMBALANCE] = num / den if den > 0.0 else 0.0
    features[F_CHANNEL_HIGH] = high
    features[F_CHANNEL_LOW] = low
    features[F_BID] = bid
    features[F_ASK] = ask
    features[F_TIME_MSC] = time_msc
    features[F_COUNT] = t + 1
    return 0


class FeatureEngine:
    """The ``feature_extraction`` step: one numba call per tick, O(1) per feature.

    Parameters
    ----------
    horizons : tuple of int, optional
        The three return horizons in ticks, increasing (default 1, 10, 100).
    fast_period, slow_period : int, optional
        EMA periods in ticks (alpha = 2 / (period + 1)).
    volatility_period : int, optional
        EWMA period of the squared returns (alpha = 2 / (period + 1)).
    rsi_period : int, optional
        Wilder's RSI period in ticks.
    rate_window_ms : float, optional
        Window of the tick rate, in ms of ``time_msc``.
    imbalance_period : int, optional
        EWMA period of the buy/sell imbalance.
    channel : int, optional
        Ticks in the breakout channel (high/low of the previous ``channel`` mids).

    Raises
    ------
    ValueError
        If a period or window is not positive, or the horizons are not three increasing
        positive integers.

    Notes
    -----
    Call it with a :class:`DecisionContext`; it returns the same context with ``features``
    filled. The kernel is compiled (or loaded from numba's cache) and warmed up here, so the
    first tick pays no compilation.
    """

    def __init__(self, horizons: tuple[int, int, int] = (1, 10, 100), fast_period: int = 12,
                 slow_period: int = 48, volatility_period: int = 100, rsi_period: int = 14,
                 rate_window_ms: float = 1000.0, imbalance_period: int = 50,
                 channel: int = 50) -> None:
        horizons = tuple(int(h) for h in horizons)
        if len(horizons) != 3 or not 0 < horizons[0] < horizons[1] < horizons[2]:
            raise ValueError(f"FeatureEngine: horizons must be three increasing positive tick "
                             f"counts such as (1, 10, 100), got {horizons}")
        for name, value in (("fast_period", fast_period), ("slow_period", slow_period),
                            ("volatility_period", volatility_period), ("rsi_period", rsi_period),
                            ("rate_window_ms", rate_window_ms),
                            ("imbalance_period", imbalance_period), ("channel", channel)):
            if not value > 0:
                raise ValueError(f"FeatureEngine: {name} must be positive, got {value}")
        self.horizons = horizons
        self.fast_period = int(fast_period)
        self.slow_period = int(slow_period)
        self.volatility_period = int(volatility_period)
        self.rsi_period = int(rsi_period)
        self.rate_window_ms = float(rate_window_ms)
        self.imbalance_period = int(imbalance_period)
        self.channel = int(channel)
        self.min_history = max(horizons[2], self.channel) + 1
        """The shortest context history this engine can run on."""
        params = np.zeros(N_PARAMS, dtype=np.float64)
        params[P_ALPHA_FAST] = 2.0 / (self.fast_period + 1)
        params[P_ALPHA_SLOW] = 2.0 / (self.slow_period + 1)
        params[P_ALPHA_VOL] = 2.0 / (self.volatility_period + 1)
        params[P_RSI_PERIOD] = self.rsi_period
        params[P_RATE_WINDOW_MS] = self.rate_window_ms
        params[P_ALPHA_IMBALANCE] = 2.0 / (self.imbalance_period + 1)
        params[P_CHANNEL] = self.channel
        params[P_H_SHORT], params[P_H_MEDIUM], params[P_H_LONG] = horizons
        self.params = params
        self._checked: set[int] = set()
        self.refused: Counter = Counter()
        """Ticks refused for a quote rule, by the rule's name (``crossed`` ...)."""
        self._warm_up()

    def _warm_up(self) -> None:
        ctx = DecisionContext("__warmup__", history=self.min_history)
        ticks = np.zeros(4, dtype=TICK_DTYPE)
        ticks["bid"] = (1.0, 1.1, 0.9, 1.0)
        ticks["ask"] = ticks["bid"] + 0.0001
        ticks["time_msc"] = (0, 1, 2, 3)
        ticks["flags"] = (0, TICK_FLAG_BUY, TICK_FLAG_SELL, 0)
        for i in range(4):
            update_features(ticks, i, ctx.state, ctx.features, self.params)

    def check_context(self, ctx: DecisionContext) -> None:
        """Verify that ``ctx``'s history is long enough for this engine's horizons and channel.

        Raises
        ------
        ValueError
            If the context's history is shorter than :attr:`min_history`.
        """
        if ctx.history < self.min_history:
            raise ValueError(
                f"FeatureEngine: context {ctx.symbol!r} keeps {ctx.history} ticks of history but "
                f"the longest horizon {self.horizons[2]} / channel {self.channel} need "
                f"{self.min_history}; create it with DecisionContext(symbol, history="
                f"{self.min_history}) or more")
        self._checked.add(id(ctx.state))

    def __call__(self, ctx: DecisionContext) -> DecisionContext:
        """Update ``ctx.features`` from its current tick and return ``ctx``.

        Raises
        ------
        QuoteRefused
            When the tick breaks a quote rule (counted in :attr:`refused`); the context's
            state and features are left as the previous tick left them.
        ValueError
            The first time it sees a context whose history is too short (see
            :meth:`check_context`).
        """
        state = ctx.state
        if id(state) not in self._checked:
            self.check_context(ctx)
        if update_features(ctx.ticks, ctx.index, state, ctx.features, self.params):
            self._refuse(ctx)
        return ctx

    def _refuse(self, ctx: DecisionContext) -> None:
        tick = ctx.ticks[ctx.index]
        bid, ask = float(tick["bid"]), float(tick["ask"])
        reason = TICK_FAULTS[_tick_fault(bid, ask, float(tick["last"]), int(tick["volume"]),
                                         float(tick["volume_real"])) - 1]
        self.refused[reason] += 1
        raise QuoteRefused(ctx.symbol, reason, bid, ask)

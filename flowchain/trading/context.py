"""The per-symbol decision context: the one object the AI decision chain's steps pass along.

A :class:`DecisionContext` is created once per symbol, before the first tick, and holds every
buffer a tick touches on its way to a decision: the tick reference, the feature engine's state and
feature vector, the agents' signals and confidences, the :class:`~flowchain.trading.decision.Decision`
and the :class:`~flowchain.trading.decision.TradeResult`. Steps fill it in place, so the chain
allocates nothing per tick.
"""
from __future__ import annotations

import time

import numpy as np
from flowchain_bridge.ticks import TICK_DTYPE

from flowchain.trading.decision import Decision, TradeResult
from flowchain.trading.layout import N_FEATURES, state_size

DEFAULT_HISTORY = 1024
"""Ticks of mid/time history kept per symbol (bounds the return horizons and the rate window)."""


class DecisionContext:
    """Every buffer one symbol's ticks touch on the way from the tick ring to a trade result.

    Parameters
    ----------
    symbol : str
        The symbol this context belongs to.
    history : int, optional
        Length of the per-symbol history rings (mids, times, channel queues); every return
        horizon and the breakout channel must be shorter.

    Raises
    ------
    ValueError
        If ``symbol`` is empty or ``history`` is smaller than 2.

    Notes
    -----
    Load a tick with :meth:`point_at` (zero copy: a tick ring's buffer and index, as
    :class:`flowchain.feeds.ring.TickRing` exposes them with ``ticks`` and ``head``) or with
    :meth:`load` (copies one record), then run the chain on the context.
    """

    __slots__ = ("symbol", "history", "ticks", "index", "received_ns", "state", "features",
                 "signals", "confidences", "agent_names", "agents_owner", "decision", "result",
                 "_own_tick")

    def __init__(self, symbol: str, history: int = DEFAULT_HISTORY) -> None:
        if not isinstance(symbol, str) or not symbol:
            raise ValueError(f"DecisionContext: symbol must be a non-empty string, got {symbol!r}")
        if int(history) < 2:
            raise ValueError(f"DecisionContext({symbol!r}): history must be at least 2 ticks, "
                             f"got {history}")
        self.symbol = symbol
        self.history = int(history)
        self._own_tick = np.zeros(1, dtype=TICK_DTYPE)
        self.ticks: np.ndarray = self._own_tick
        """The array holding the current tick (a tick ring's buffer, or the context's own)."""
        self.index = 0
        """Index of the current tick in :attr:`ticks`."""
        self.received_ns = 0
        """``time.monotonic_ns()`` when the current tick arrived (the stale-tick guard's clock)."""
        self.state = np.zeros(state_size(self.history), dtype=np.float64)
        """The feature engine's incremental state (see :mod:`flowchain.trading.layout`)."""
        self.features = np.zeros(N_FEATURES, dtype=np.float64)
        """The feature vector of the current tick (indices in :mod:`flowchain.trading.layout`)."""
        self.signals = np.zeros(0, dtype=np.float64)
        self.confidences = np.zeros(0, dtype=np.float64)
        self.agent_names: tuple[str, ...] = ()
        self.agents_owner: object = None
        """The orchestrator that sized :attr:`signals` (rebinds when another one runs)."""
        self.decision = Decision()
        self.result = TradeResult(symbol)

    def point_at(self, ticks: np.ndarray, index: int, received_ns: int | None = None) -> None:
        """Make ``ticks[index]`` the current tick, without copying it.

        Parameters
        ----------
        ticks : numpy.ndarray
            A 1-d array of :data:`flowchain_bridge.ticks.TICK_DTYPE` (e.g. ``TickRing.ticks``).
        index : int
            The tick's index in ``ticks`` (e.g. ``TickRing.head``).
        received_ns : int, optional
            When the tick arrived (``time.monotonic_ns()``); now when omitted.
        """
        self.ticks = ticks
        self.index = index
        self.received_ns = time.monotonic_ns() if received_ns is None else received_ns

    def load(self, record: object, received_ns: int | None = None) -> None:
        """Copy one tick record (a ``TICK_DTYPE`` scalar or 1-row array) into the context.

        Raises
        ------
        ValueError, TypeError
            If ``record`` does not convert to :data:`flowchain_bridge.ticks.TICK_DTYPE`.
        """
        self._own_tick[0] = record
        self.point_at(self._own_tick, 0, received_ns)

    def load_quote(self, bid: float, ask: float, time_msc: int, flags: int = 0,
                   volume_real: float = 0.0, received_ns: int | None = None) -> None:
        """Write a tick from its fields into the context's own buffer (tests, simulators)."""
        tick = self._own_tick
        tick["bid"][0] = bid
        tick["ask"][0] = ask
        tick["time_msc"][0] = time_msc
        tick["time"][0] = time_msc // 1000
        tick["flags"][0] = flags
        tick["volume_real"][0] = volume_real
        self.point_at(tick, 0, received_ns)

    def reset(self) -> None:
        """Forget the feature history (after a gap or a bridge restart); keeps the buffers."""
        self.state.fill(0.0)
        self.features.fill(0.0)

    def __repr__(self) -> str:
        return f"DecisionContext({self.symbol!r}, history={self.history})"

"""Pre-trade risk checks: each refusal is a named reason, counted.

Checks run in this order, only when the decision is to trade: kill switch (file or signal),
feed-stale block, stale tick, orders in flight (back-pressure), orders per second, position per
symbol (filled plus in flight), daily loss.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

KILL_SWITCH = "kill_switch"
FEED_STALE = "feed_stale"
STALE_TICK = "stale_tick"
ORDERS_IN_FLIGHT = "orders_in_flight"
"""Back-pressure: as many orders are in flight as the broker can execute before their deadline."""
MAX_ORDERS_PER_SECOND = "max_orders_per_second"
MAX_POSITION = "max_position"
MAX_DAILY_LOSS = "max_daily_loss"
REASONS = (KILL_SWITCH, FEED_STALE, STALE_TICK, ORDERS_IN_FLIGHT, MAX_ORDERS_PER_SECOND,
           MAX_POSITION, MAX_DAILY_LOSS)

_MS_PER_DAY = 86_400_000


class RiskGuard:
    """The risk limits of one trading node, checked before any order.

    Parameters
    ----------
    max_position : float, optional
        Largest absolute net position per symbol, in lots, after the order, counting every
        order in flight as if it filled (an order that reduces the position always passes).
    max_orders_per_second : int, optional
        Orders allowed in any rolling second (by ``time.monotonic_ns``).
    max_daily_loss : float, optional
        Refuse new orders once the day's PnL (realized + unrealized, since the first tick of the
        UTC day of ``time_msc``) is at or below ``-max_daily_loss``.
    max_tick_age_ms : float, optional
        Refuse when the tick arrived (``DecisionContext.received_ns``) longer ago than this.
    kill_file : str or Path, optional
        When this path exists, every order is refused (checked on every order).
    feed_stale : callable, optional
        Returns True while the feed is stale (the feed's heartbeat monitor); besides, the feed may
        call :meth:`set_feed_stale`.

    Raises
    ------
    ValueError
        If a limit is not positive.
    """

    def __init__(self, max_position: float = 1.0, max_orders_per_second: int = 5,
                 max_daily_loss: float = 1_000.0, max_tick_age_ms: float = 500.0,
                 kill_file: str | Path | None = None,
                 feed_stale: Callable[[], bool] | None = None) -> None:
        for name, value in (("max_position", max_position),
                            ("max_orders_per_second", max_orders_per_second),
                            ("max_daily_loss", max_daily_loss),
                            ("max_tick_age_ms", max_tick_age_ms)):
            if not value > 0:
                raise ValueError(f"RiskGuard: {name} must be positive, got {value}")
        self.max_position = float(max_position)
        self.max_orders_per_second = int(max_orders_per_second)
        self.max_daily_loss = float(max_daily_loss)
        self.max_tick_age_ns = int(max_tick_age_ms * 1_000_000)
        self.kill_file = str(kill_file) if kill_file is not None else None
        self._feed_stale_source = feed_stale
        self._feed_stale_flag = False
        self._killed_by: str | None = None
        self._sent_ns = np.zeros(self.max_orders_per_second, dtype=np.int64)
        self._sent_count = 0
        self._day = -1
        self._day_start_pnl = 0.0
        self.rejections: Counter = Counter({reason: 0 for reason in REASONS})
        """Refused orders by reason."""

    # -- the switches the outside world flips -------------------------------------------------
    def set_feed_stale(self, stale: bool) -> None:
        """Block (True) or unblock (False) new orders because the feed is stale."""
        self._feed_stale_flag = bool(stale)

    def kill(self, why: str = "manual") -> None:
        """Engage the kill switch: every later order is refused until :meth:`reset_kill`."""
        self._killed_by = why

    def reset_kill(self) -> None:
        """Release a kill switch engaged by :meth:`kill` or a signal (not the kill file)."""
        self._killed_by = None

    def install_kill_signal(self, signum: int | None = None) -> int:
        """Engage the kill switch when the process receives ``signum`` (SIGUSR1 by default).

        Returns
        -------
        int
            The signal number installed.

        Raises
        ------
        RuntimeError
            On platforms without SIGUSR1 (Windows): use the kill file there.
        ValueError
            When called outside the main thread (Python installs handlers only there).
        """
        if signum is None:
            if not hasattr(signal, "SIGUSR1"):
                raise RuntimeError(f"RiskGuard: no SIGUSR1 on {sys.platform}; use kill_file= "
                                   "as the kill switch on this platform")
            signum = signal.SIGUSR1
        signal.signal(signum, lambda num, frame: self.kill(f"signal {num}"))
        return int(signum)

    @property
    def killed(self) -> str | None:
        """Why the kill switch is engaged, or None."""
        if self._killed_by is not None:
            return self._killed_by
        if self.kill_file is not None and os.path.exists(self.kill_file):
            return f"kill file {self.kill_file}"
        return None

    @property
    def feed_stale(self) -> bool:
        """Whether the feed-stale block is on."""
        source = self._feed_stale_source
        return self._feed_stale_flag or (source is not None and bool(source()))

    # -- the checks -----------------------------------------------------------------------
    def daily_pnl(self, total_pnl: float, time_msc: int) -> float:
        """Return today's PnL: ``total_pnl`` less its value at the first tick of the UTC day."""
        day = time_msc // _MS_PER_DAY
        if day != self._day:
            self._day = day
            self._day_start_pnl = total_pnl
        return total_pnl - self._day_start_pnl

    def check(self, side: int, volume: float, position: float, total_pnl: float, time_msc: int,
              received_ns: int, now_ns: int | None = None, *, pending_long: float = 0.0,
              pending_short: float = 0.0, in_flight: int = 0, capacity: int | None = None,
              day_pnl: float | None = None) -> str | None:
        """Return the reason the order must not go, or None; a refusal is counted.

        Parameters
        ----------
        side : int
            +1 buy, -1 sell.
        volume : float
            Lots.
        position : float
            The symbol's net position before the order.
        total_pnl : float
            The broker's realized + unrealized PnL.
        time_msc : int
            The tick's ``time_msc`` (sets the trading day).
        received_ns : int
            ``time.monotonic_ns()`` when the tick arrived.
        now_ns : int, optional
            ``time.monotonic_ns()`` now (read when omitted).
        pending_long, pending_short : float
            Lots of the symbol's buy and sell orders in flight (they may still fill).
        in_flight, capacity : int
            Orders in flight now, and how many the broker can execute before their deadline
            (None: no limit).
        day_pnl : float, optional
            Today's PnL when the broker knows it (the terminal's deals of the day); else it is
            ``total_pnl`` less its value at the first tick of the day.
        """
        now = time.monotonic_ns() if now_ns is None else now_ns
        reason = None
        if self.killed is not None:
            reason = KILL_SWITCH
        elif self.feed_stale:
            reason = FEED_STALE
        elif now - received_ns > self.max_tick_age_ns:
            reason = STALE_TICK
        elif capacity is not None and in_flight >= capacity:
            reason = ORDERS_IN_FLIGHT
        elif (self._sent_count >= self.max_orders_per_second and
              now - self._sent_ns[self._sent_count % self.max_orders_per_second] < 1_000_000_000):
            reason = MAX_ORDERS_PER_SECOND
        elif (position + pending_long + volume > self.max_position + 1e-9 if side > 0
              else position - pending_short - volume < -self.max_position - 1e-9):
            reason = MAX_POSITION
        elif (self.daily_pnl(total_pnl, time_msc) if day_pnl is None else day_pnl) \
                <= -self.max_daily_loss:
            reason = MAX_DAILY_LOSS
        if reason is not None:
            self.rejections[reason] += 1
        return reason

    def record_order(self, now_ns: int | None = None) -> None:
        """Count an order that went out (for the orders-per-second limit)."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        self._sent_ns[self._sent_count % self.max_orders_per_second] = now
        self._sent_count += 1

"""The bridge's link to the MT5 terminal: initialize, login, symbol selection, reconnect with backoff."""
from __future__ import annotations

import threading
import time
from typing import Any

from flowchain.wire import HeartbeatState

IPC_ERRORS = range(-10005, -9999)
"""``last_error`` codes of the package's IPC layer (-10005 .. -10000)."""


class TerminalLink:
    """Owns ``initialize``/``login``/``symbol_select`` and the terminal state heartbeats report.

    Parameters
    ----------
    mt5
        The ``MetaTrader5`` module or a :class:`~flowchain.bridge.fake_mt5.FakeMetaTrader5`.
    symbols
        Symbols to select after every (re)connection.
    login, password, server, path
        Passed to ``initialize``.
    backoff_s, max_backoff_s
        First and longest wait between failed connection attempts (doubling).
    """

    def __init__(self, mt5: Any, symbols: list[str], *, login: int | None = None,
                 password: str | None = None, server: str | None = None, path: str | None = None,
                 backoff_s: float = 0.5, max_backoff_s: float = 10.0) -> None:
        self.mt5 = mt5
        self.symbols = list(symbols)
        self._kwargs = {k: v for k, v in (("login", login), ("password", password), ("server", server)) if v is not None}
        self._path = path
        self._backoff = backoff_s
        self._min_backoff, self._max_backoff = backoff_s, max_backoff_s
        self._next_attempt = 0.0
        self.initialized = False
        self.connected = False
        self.trade_allowed = False
        self.last_error = 1
        self.last_error_message = "Success"
        self.reconnects = 0
        self.attempts = 0
        self._lock = threading.Lock()

    @property
    def state(self) -> HeartbeatState:
        """The heartbeat state bits."""
        bits = HeartbeatState(0)
        if self.initialized:
            bits |= HeartbeatState.INITIALIZED
        if self.initialized and self.connected:
            bits |= HeartbeatState.CONNECTED
        if self.initialized and self.trade_allowed:
            bits |= HeartbeatState.TRADE_ALLOWED
        return bits

    def ensure(self) -> bool:
        """Connect when not connected and the backoff allows; True when the link is up."""
        if self.initialized:
            return True
        now = time.monotonic()
        if now < self._next_attempt:
            return False
        with self._lock:
            if self.initialized:
                return True
            self.attempts += 1
            ok = (self.mt5.initialize(self._path, **self._kwargs) if self._path
                  else self.mt5.initialize(**self._kwargs))
            if ok:
                ok = all(self.mt5.symbol_select(s, True) for s in self.symbols)
            if not ok:
                self._record_error()
                self._next_attempt = now + self._backoff
                self._backoff = min(self._backoff * 2, self._max_backoff)
                return False
            if self.attempts > 1:
                self.reconnects += 1
            self.initialized = True
            self._backoff = self._min_backoff
            self.refresh()
            return True

    def refresh(self) -> None:
        """Read ``terminal_info`` into the state (a failed read marks the link down)."""
        info = self.mt5.terminal_info()
        if info is None:
            self.lost()
            return
        self.connected = bool(info.connected)
        self.trade_allowed = bool(info.trade_allowed)

    def _record_error(self) -> tuple[int, str]:
        code, message = self.mt5.last_error()
        self.last_error, self.last_error_message = code, message
        return code, message

    def lost(self) -> None:
        """The last call failed: keep its error; drop the link when it was an IPC error and the terminal no longer answers."""
        code, _ = self._record_error()
        if code in IPC_ERRORS and self.mt5.terminal_info() is None:  # a timeout alone keeps the link
            self.initialized = False
            self.connected = False
            self._next_attempt = time.monotonic() + self._backoff

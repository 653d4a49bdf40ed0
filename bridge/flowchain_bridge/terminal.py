"""The bridge's link to the MT5 terminal: initialize, login, symbol selection, reconnect with backoff.

Every failed connection attempt is logged with the terminal's own error (``last_error()``) and
the wait before the next one; after ``max_attempts`` failures in a row the link gives up
(:attr:`TerminalLink.fatal` says why) and the bridge exits non-zero. A symbol the terminal does
not know is fatal at once: retrying cannot make it appear.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flowchain_bridge.wire import HeartbeatState

log = logging.getLogger("flowchain_bridge")

IPC_ERRORS = range(-10005, -9999)
"""``last_error`` codes of the package's IPC layer (-10005 .. -10000)."""
RES_E_NOT_FOUND = -4
"""``last_error`` code of ``symbol_select`` for a symbol the terminal does not know."""
RES_E_AUTH_FAILED = -6
"""``last_error`` code of a refused login (the heartbeat carries it: the node says "login failed")."""


class TerminalLink:
    """Owns ``initialize``/``login``/``symbol_select`` and the terminal state heartbeats report.

    Parameters
    ----------
    mt5
        The ``MetaTrader5`` module or a :class:`~flowchain_bridge.fake_mt5.FakeMetaTrader5`.
    symbols
        Symbols to select after every (re)connection.
    login, password, server, path
        Passed to ``initialize``.
    backoff_s, max_backoff_s
        First and longest wait between failed connection attempts (doubling).
    max_attempts
        Failed attempts in a row before the link gives up (:attr:`fatal` is set); 0: never.
    """

    def __init__(self, mt5: Any, symbols: list[str], *, login: int | None = None,
                 password: str | None = None, server: str | None = None, path: str | None = None,
                 backoff_s: float = 0.5, max_backoff_s: float = 10.0, max_attempts: int = 0) -> None:
        self.mt5 = mt5
        self.symbols = list(symbols)
        self._kwargs = {k: v for k, v in (("login", login), ("password", password), ("server", server))
                        if v is not None}
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
        self.failures_in_row = 0
        self.max_attempts = max_attempts
        self.fatal: str | None = None
        """Why the link gave up for good (a sentence for the operator), else None."""
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

    @property
    def status(self) -> str:
        """``connected``, ``server_disconnected`` (terminal up, no trade server),
        ``login_failed`` or ``disconnected`` (no IPC session with the terminal)."""
        if self.initialized:
            return "connected" if self.connected else "server_disconnected"
        return "login_failed" if self.last_error == RES_E_AUTH_FAILED else "disconnected"

    def ensure(self) -> bool:
        """Connect when not connected and the backoff allows; True when the link is up."""
        if self.initialized:
            return True
        now = time.monotonic()
        if now < self._next_attempt or self.fatal is not None:
            return False
        with self._lock:
            if self.initialized:
                return True
            self.attempts += 1
            ok = (self.mt5.initialize(self._path, **self._kwargs) if self._path
                  else self.mt5.initialize(**self._kwargs))
            what = "initialize" + (f" (login {self._kwargs['login']})" if "login" in self._kwargs else "")
            if ok:
                for symbol in self.symbols:
                    if not self.mt5.symbol_select(symbol, True):
                        what = f"symbol_select({symbol!r})"
                        ok = False
                        break
            if not ok:
                code, message = self._record_error()
                if what.startswith("symbol_select") and code == RES_E_NOT_FOUND:
                    self.fatal = (f"the terminal does not know symbol {what[14:-1]}: MT5 error "
                                  f"{code} {message!r}; check its name in Market Watch (brokers "
                                  "often add a suffix) and pass it with -s/--symbol")
                    log.error("%s", self.fatal)
                    return False
                self.failures_in_row += 1
                self._next_attempt = now + self._backoff
                if self.max_attempts and self.failures_in_row >= self.max_attempts:
                    self.fatal = (f"the terminal could not be used after {self.failures_in_row} "
                                  f"attempts in a row: {what} failed with MT5 error {code} "
                                  f"{message!r}")
                    log.error("%s", self.fatal)
                    return False
                log.warning("terminal connection attempt %d%s failed: %s gave MT5 error %d %r; "
                            "next attempt in %.1f s", self.failures_in_row,
                            f"/{self.max_attempts}" if self.max_attempts else "", what, code,
                            message, self._backoff)
                self._backoff = min(self._backoff * 2, self._max_backoff)
                return False
            if self.attempts > 1:
                self.reconnects += 1
            self.initialized = True
            self.failures_in_row = 0
            self._backoff = self._min_backoff
            self.last_error, self.last_error_message = 1, "Success"
            self.refresh()
            log.info("terminal %s (attempt %d); symbols %s selected",
                     "reconnected" if self.reconnects else "connected", self.attempts,
                     ", ".join(self.symbols))
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
        """The last call failed: keep its error; drop the link when it was an IPC error and the
        terminal no longer answers."""
        code, _ = self._record_error()
        if code in IPC_ERRORS and self.mt5.terminal_info() is None:  # a timeout alone keeps the link
            self.initialized = False
            self.connected = False
            self._next_attempt = time.monotonic() + self._backoff
            log.warning("terminal lost: MT5 error %d %r; reconnecting", code, self.last_error_message)

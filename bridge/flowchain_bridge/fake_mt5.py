"""A faithful fake of the ``MetaTrader5`` package, for running and testing the bridge on Linux.

:class:`FakeMetaTrader5` is a module-like object: the real package's function names and
signatures, its constants (checked against the official wheel), its tick dtype, named-tuple
records with ``_asdict()``, ``None``/``False`` on error with the cause in ``last_error()``.
Behind it runs a seeded market: per-symbol ticks with realistic spreads, same-millisecond
bursts and flag bits beyond the documented ones, generated as wall-clock time passes (or on
demand with :meth:`FakeMetaTrader5.add_ticks`), plus a hedging account whose positions, orders
and deals make reconciliation work. Faults are scripted through :attr:`FakeMetaTrader5.faults`.

Thread-safety: every call holds one lock (the bridge calls from a tick thread and an order
thread); the simulated ``order_send`` latency is spent outside it. ``last_error`` is kept per
thread, so a thread reads the cause of its own last call.
"""
from __future__ import annotations

import datetime as _dt
import enum
import operator
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowchain_bridge.mt5_records import (
    RATES_DTYPE,
    AccountInfo,
    BookInfo,
    MT5Constants,
    OrderCheckResult,
    OrderSendResult,
    SymbolInfo,
    TerminalInfo,
    Tick,
    TradeDeal,
    TradeOrder,
    TradePosition,
    TradeRequest,
)
from flowchain_bridge.ticks import TICK_DTYPE

__all__ = ["FakeMetaTrader5", "FakeSymbol", "OrderFault", "FaultScript"]

_C = MT5Constants
_REQUEST_KEYS = frozenset(TradeRequest._fields)
_REQUEST_DEFAULTS = {**{k: 0 for k in TradeRequest._fields}, "symbol": "", "comment": "", "volume": 0.0,
                     "price": 0.0, "stoplimit": 0.0, "sl": 0.0, "tp": 0.0}
"""A request's fields before the caller's dict is applied (what the real package assumes)."""
_PRICE_KEYS = ("volume", "price", "stoplimit", "sl", "tp")
_REQUEST_FIELDS = TradeRequest._fields


_request_values = operator.itemgetter(*_REQUEST_FIELDS)
_price_values = operator.itemgetter(*_PRICE_KEYS)
_FLOAT_PRICES = (float,) * len(_PRICE_KEYS)
_new = tuple.__new__
"""Records are built positionally with ``tuple.__new__`` on the order path (no argument parsing)."""
_DEAL, _PENDING = _C.TRADE_ACTION_DEAL, _C.TRADE_ACTION_PENDING
_CHECKED_ACTIONS = frozenset({_DEAL, _PENDING, _C.TRADE_ACTION_SLTP, _C.TRADE_ACTION_MODIFY,
                              _C.TRADE_ACTION_REMOVE})
_VOLUME_ACTIONS = frozenset({_DEAL, _PENDING})
_ORDER_ACTIONS = frozenset({_C.TRADE_ACTION_REMOVE, _C.TRADE_ACTION_MODIFY})
_MARKET_TYPES = frozenset({_C.ORDER_TYPE_BUY, _C.ORDER_TYPE_SELL})
_FOK, _IOC = _C.ORDER_FILLING_FOK, _C.ORDER_FILLING_IOC
_RESTING_FILLINGS = frozenset({_C.ORDER_FILLING_RETURN, _C.ORDER_FILLING_BOC})
_EXPIRING = frozenset({_C.ORDER_TIME_SPECIFIED, _C.ORDER_TIME_SPECIFIED_DAY})
_OK = (_C.RES_S_OK, "Success")
_NO_IPC = (_C.RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
_IPC_TIMEOUT = (_C.RES_E_INTERNAL_FAIL_TIMEOUT, "IPC timeout")
_TIMEFRAME_SECONDS = {1: 60, 2: 120, 3: 180, 4: 240, 5: 300, 6: 360, 10: 600, 12: 720, 15: 900,
                      20: 1200, 30: 1800, 1 | 0x4000: 3600, 2 | 0x4000: 7200, 3 | 0x4000: 10800,
                      4 | 0x4000: 14400, 6 | 0x4000: 21600, 8 | 0x4000: 28800,
                      12 | 0x4000: 43200, 24 | 0x4000: 86400, 1 | 0x8000: 604800}


class OrderFault(enum.Enum):
    """What a scripted ``order_send`` does instead of executing normally."""

    REQUOTE = "requote"  # retcode 10004, nothing executed
    REJECT = "reject"  # retcode 10006
    MARKET_CLOSED = "market_closed"  # retcode 10018
    INVALID_FILL = "invalid_fill"  # retcode 10030
    TIMEOUT_FILLED = "timeout_filled"  # executed, but the answer is retcode 10012 TIMEOUT
    TIMEOUT_ABSENT = "timeout_absent"  # retcode 10012 and nothing executed
    NONE_FILLED = "none_filled"  # executed, but order_send returns None (IPC timeout)
    NONE_ABSENT = "none_absent"  # order_send returns None and nothing executed


_SCRIPTED_REFUSALS = {OrderFault.REQUOTE: (_C.TRADE_RETCODE_REQUOTE, "Requote"),
                      OrderFault.REJECT: (_C.TRADE_RETCODE_REJECT, "Request rejected"),
                      OrderFault.MARKET_CLOSED: (_C.TRADE_RETCODE_MARKET_CLOSED, "Market closed"),
                      OrderFault.INVALID_FILL: (_C.TRADE_RETCODE_INVALID_FILL, "Unsupported filling mode"),
                      OrderFault.TIMEOUT_ABSENT: (_C.TRADE_RETCODE_TIMEOUT, "Request timed out")}
"""Scripted ``order_send`` outcomes that execute nothing: their retcode and comment."""


@dataclass
class FaultScript:
    """Scripted faults; the fake consumes them as calls come.

    Attributes
    ----------
    failed_initializes
        The next N ``initialize`` calls fail (IPC init failure).
    ipc_timeouts
        The next N API calls of any kind return ``None``/``False`` with ``IPC timeout``.
    orders
        Outcomes for the next ``order_send`` calls, in order.
    order_latency_s
        Seconds each ``order_send`` takes (spent outside the fake's lock).
    disconnect_after_polls
        After N more ``symbol_info_tick`` calls the IPC connection drops (a mid-stream
        disconnect); ``None`` for never.
    """

    failed_initializes: int = 0
    ipc_timeouts: int = 0
    orders: deque = field(default_factory=deque)
    order_latency_s: float = 0.0
    disconnect_after_polls: int | None = None


@dataclass
class FakeSymbol:
    """A symbol of the fake market."""

    name: str
    price: float
    digits: int = 5
    spread_points: int = 12
    ticks_per_second: float = 20.0
    filling_mode: int = 1 | 2  # FOK and IOC allowed
    volume_min: float = 0.01
    volume_max: float = 100.0
    volume_step: float = 0.01
    contract_size: float = 100_000.0
    market_open: bool = True
    currency_base: str = ""
    """What a buy buys (``symbol_info().currency_base``); empty: the name's first three letters."""
    currency_profit: str = ""
    """The currency the price is quoted in, so profit is made in; empty: letters 4 to 6."""

    def __post_init__(self) -> None:
        self.currency_base = self.currency_base or self.name[:3]
        self.currency_profit = self.currency_profit or self.name[3:6]

    @property
    def point(self) -> float:
        """The price step, ``10 ** -digits``."""
        return 10.0 ** -self.digits


DEFAULT_SYMBOLS = (
    FakeSymbol("EURUSD", 1.08500, 5, 12),
    FakeSymbol("GBPUSD", 1.26500, 5, 16),
    FakeSymbol("USDJPY", 151.250, 3, 14),
    FakeSymbol("XAUUSD", 2350.00, 2, 25, contract_size=100.0),
)


class _Market:
    """One symbol's generated ticks: a growing array, of which the past part is visible."""

    def __init__(self, spec: FakeSymbol, rng: np.random.Generator, start_msc: int) -> None:
        self.spec = spec
        self.rng = rng
        self.ticks = np.zeros(0, dtype=TICK_DTYPE)  # also sets _times and the caches
        self.mid = spec.price
        self.bid = self.ask = 0.0  # of the last generated tick (flags compare with them)
        self.next_msc = start_msc
        self.selected = False

    def generate(self, n: int, start_msc: int | None = None, spacing_ms: float | None = None) -> None:
        """Append ``n`` ticks from ``start_msc`` (default: after the last one)."""
        out = self._make(n, start_msc, spacing_ms)
        self.ticks = np.concatenate((self.ticks, out)) if len(self.ticks) else out

    def _make(self, n: int, start_msc: int | None = None, spacing_ms: float | None = None) -> np.ndarray:
        """The next ``n`` ticks (the market moves on to after them)."""
        spec, rng = self.spec, self.rng
        point = spec.point
        mean_gap = spacing_ms if spacing_ms is not None else 1000.0 / max(spec.ticks_per_second, 1e-9)
        gaps = np.floor(rng.exponential(mean_gap, n)).astype(np.int64)
        gaps[rng.random(n) < 0.15] = 0  # same-millisecond bursts
        base = self.next_msc if start_msc is None else max(start_msc, self.next_msc)
        times = base + np.cumsum(gaps) - gaps[0]
        mids = self.mid + np.cumsum(rng.normal(0.0, 2.5 * point, n))
        spreads = np.maximum(1, np.round(spec.spread_points * np.exp(rng.normal(0.0, 0.25, n))))
        spreads[rng.random(n) < 0.01] *= 5  # news-time widening
        bids = np.round(mids - spreads * point / 2, spec.digits)
        asks = np.round(bids + spreads * point, spec.digits)
        out = np.zeros(n, dtype=TICK_DTYPE)
        out["time_msc"] = times
        out["time"] = times // 1000
        out["bid"] = bids
        out["ask"] = asks
        prev_bid = np.concatenate(([self.bid], bids[:-1]))
        prev_ask = np.concatenate(([self.ask], asks[:-1]))
        flags = np.where(bids != prev_bid, _C.TICK_FLAG_BID, 0) | np.where(asks != prev_ask, _C.TICK_FLAG_ASK, 0)
        flags[flags == 0] = _C.TICK_FLAG_BID | _C.TICK_FLAG_ASK
        trades = rng.random(n) < 0.05
        side = np.where(rng.random(n) < 0.5, _C.TICK_FLAG_BUY, _C.TICK_FLAG_SELL)
        volumes = rng.integers(1, 10, n)
        flags[trades] |= _C.TICK_FLAG_LAST | _C.TICK_FLAG_VOLUME | side[trades]
        out["last"] = np.where(trades, np.round(mids, spec.digits), 0.0)
        out["volume"] = np.where(trades, volumes, 0)
        out["volume_real"] = np.where(trades, volumes.astype(np.float64), 0.0)
        unknown = rng.random(n)
        flags[unknown < 0.05] |= 0x80  # undocumented bits appear in real data (flags=134)
        flags[unknown < 0.01] |= 0x100
        out["flags"] = flags
        self.mid = float(mids[-1])
        self.bid, self.ask = float(bids[-1]), float(asks[-1])
        self.next_msc = int(times[-1]) + int(gaps[-1] if n > 1 else 1)
        return out

    @property
    def ticks(self) -> np.ndarray:
        """Every generated tick, past and (for a while) future."""
        return self._ticks

    @ticks.setter
    def ticks(self, value: np.ndarray) -> None:
        self._ticks = value
        self._times = value["time_msc"]
        self.touched()

    def touched(self) -> None:
        """Forget the cached position of ``now`` (call after changing tick times in place)."""
        times = self._times
        self._horizon = int(times[-1]) if len(times) else -1  # the last tick's time, as a plain int
        self._seen_msc = -1
        self._seen_n = 0
        self._quote_n = -1
        self._quote: tuple[float, float] | None = None

    def visible(self, now_msc: int) -> int:
        """How many ticks have happened by ``now_msc`` (cached for the last ``now_msc`` asked)."""
        if now_msc != self._seen_msc:
            self._seen_n = int(self._times.searchsorted(now_msc, "right"))
            self._seen_msc = now_msc
        return self._seen_n

    def quote(self, now_msc: int) -> tuple[float, float] | None:
        """The bid and ask of the last tick by ``now_msc``; None before the first tick."""
        n = self._seen_n if now_msc == self._seen_msc else self.visible(now_msc)
        if n != self._quote_n:
            self._quote_n = n
            self._quote = (float(self._ticks["bid"][n - 1]), float(self._ticks["ask"][n - 1])) if n else None
        return self._quote

    def advance(self, now_msc: int, history_limit: int) -> None:
        """Generate ticks until the market is ahead of ``now_msc``; trim old history."""
        if self._horizon > now_msc or self.spec.ticks_per_second <= 0 or not self.spec.market_open:
            return  # the usual case: already ahead (every order and poll asks)
        # Blocks of one size (a quarter second of ticks) whenever this is called: the market's
        # history is then a function of the seed, the rate and the start time only, so a fake
        # built again with the same three (a restarted bridge) holds the same past ticks.
        block = int(min(65536, max(64, self.spec.ticks_per_second * 0.25)))
        blocks = [self._ticks] if len(self._ticks) else []
        while len(blocks) < 4096 and (not blocks or blocks[-1]["time_msc"][-1] <= now_msc):
            blocks.append(self._make(block))
        self.ticks = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
        if len(self.ticks) > 2 * history_limit:
            self.ticks = self.ticks[-history_limit:].copy()

    def last_tick(self, now_msc: int) -> np.void | None:
        n = self.visible(now_msc)
        return self.ticks[n - 1] if n else None


class FakeMetaTrader5(MT5Constants):
    """A stand-in for ``import MetaTrader5 as mt5`` on any OS.

    Parameters
    ----------
    symbols
        The market's symbols (default: EURUSD, GBPUSD, USDJPY, XAUUSD at 20 ticks/s each).
    seed
        Seeds every generated tick: the same seed gives the same prices, spreads and flags.
    login, password, server
        The account credentials ``initialize``/``login`` accept.
    clock_ms
        Wall-clock milliseconds since the epoch (UTC); injectable for tests.
    history_limit
        Ticks kept per symbol for ``copy_ticks_*``.
    start_ms
        When the market's first tick happens (epoch ms; default: now). Two fakes with the same
        symbols, rates, seed and ``start_ms`` hold the same tick history, as one terminal seen
        by a bridge and by the same bridge restarted.
    currency
        The account's currency: deal and position profit, margin and equity are in it,
        converted from each symbol's profit currency at the market's current rates.

    Raises
    ------
    ValueError
        When a symbol's profit currency cannot be converted to the account currency through
        the market's symbols (directly, inversely, or through one other currency).
    """

    __version__ = "5.0.6231"
    __author__ = "MetaQuotes Ltd. (fake: flowchain)"

    def __init__(self, symbols: tuple[FakeSymbol, ...] | list[FakeSymbol] = DEFAULT_SYMBOLS, *,
                 seed: int = 7, login: int = 5_000_001, password: str = "fake",
                 server: str = "FlowChain-Fake", clock_ms: Callable[[], int] | None = None,
                 history_limit: int = 500_000, currency: str = "USD",
                 start_ms: int | None = None) -> None:
        self._lock = threading.RLock()
        self._errors = threading.local()
        self._clock = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._credentials = (login, password, server)
        self._history_limit = history_limit
        now = self._clock() if start_ms is None else int(start_ms)
        root = np.random.default_rng(seed)
        self._markets = {s.name: _Market(FakeSymbol(**s.__dict__), np.random.default_rng(root.integers(2**63)), now)
                         for s in symbols}
        self.faults = FaultScript()
        self._ipc = False  # an IPC session with the terminal (initialize succeeded)
        self.server_connected = True  # the terminal's link to its trade server
        self.trade_allowed = True  # algorithmic trading enabled in the terminal
        self.initialize_calls = 0
        self.order_send_calls = 0
        self._ticket = 100_000
        self._request_id = 0
        self._positions: dict[int, TradePosition] = {}
        self._orders: dict[int, TradeOrder] = {}
        self._history_orders: list[TradeOrder] = []
        self._deals: list[TradeDeal] = []
        self._checked: tuple[dict, dict, TradeRequest] | None = None
        """The last dict ``order_check`` accepted, a copy of it, and its TradeRequest: an
        ``order_send`` of the same, unchanged dict skips the conversion."""
        self._fills: list[tuple] = []
        """Market fills whose history order and deal are not written yet (see :meth:`_settle`)."""
        self._balance = 10_000.0
        self._books: set[str] = set()
        self._currency = currency
        self._routes = {s.currency_profit: self._route(s.currency_profit) for s in self._markets_specs()}

    # ------------------------------------------------------------------ control (not in MT5)
    def add_ticks(self, symbol: str, n: int, spacing_ms: float = 0.3) -> np.ndarray:
        """Generate ``n`` ticks of ``symbol`` now (ending at or before the current time).

        Raises
        ------
        KeyError
            When the symbol is not in the fake market.
        """
        with self._lock:
            market = self._markets[symbol]
            now = self._clock()
            start = max(market.next_msc, now - int(n * spacing_ms) - 1)
            before = len(market.ticks)
            market.generate(n, start, spacing_ms)
            over = market.ticks["time_msc"][before:] > now
            if over.any():  # keep them in the past: squeeze the tail onto `now`
                market.ticks["time_msc"][before:][over] = now
                market.ticks["time"][before:] = market.ticks["time_msc"][before:] // 1000
                market.next_msc = now + 1
                market.touched()
            return market.ticks[before:].copy()

    def generated_ticks(self, symbol: str) -> np.ndarray:
        """Every tick of ``symbol`` that has happened so far (a copy)."""
        with self._lock:
            market = self._markets[symbol]
            market.advance(self._clock(), self._history_limit)
            return market.ticks[: market.visible(self._clock())].copy()

    def set_rate(self, symbol: str, ticks_per_second: float) -> None:
        """Change a symbol's tick rate; 0 stops automatic ticks (use :meth:`add_ticks`)."""
        with self._lock:
            market = self._markets[symbol]
            market.ticks = market.ticks[: market.visible(self._clock())].copy()
            market.next_msc = max(market.next_msc if not len(market.ticks) else
                                  int(market.ticks["time_msc"][-1]), self._clock())
            market.spec.ticks_per_second = ticks_per_second

    def set_market_open(self, symbol: str, is_open: bool) -> None:
        """Open or close a symbol's market (closed: no ticks, orders get 10018)."""
        with self._lock:
            self._markets[symbol].spec.market_open = is_open

    def disconnect(self) -> None:
        """Drop the IPC connection (the terminal closed): calls fail until ``initialize``."""
        with self._lock:
            self._ipc = False

    # ------------------------------------------------------------------ error plumbing
    def _set_error(self, error: tuple[int, str]) -> None:
        self._errors.value = error

    def _fail(self, error: tuple[int, str], value: Any = None) -> Any:
        self._set_error(error)
        return value

    def _enter(self) -> tuple[int, str] | None:
        """Common start of a terminal call: the error to fail with, or None to go on."""
        if not self._ipc:
            return _NO_IPC
        if self.faults.ipc_timeouts > 0:
            self.faults.ipc_timeouts -= 1
            return _IPC_TIMEOUT
        return None

    def _market(self, symbol: Any, need_selected: bool = True) -> _Market | None:
        market = self._markets.get(symbol) if isinstance(symbol, str) else None
        if market is None or (need_selected and not market.selected):
            return None
        market.advance(self._clock(), self._history_limit)
        return market

    # ------------------------------------------------------------------ session
    def initialize(self, path: str | None = None, *, login: int | None = None,
                   password: str | None = None, server: str | None = None,
                   timeout: int | None = None, portable: bool = False) -> bool:
        """Connect to the (fake) terminal, optionally logging in; False with last_error on failure."""
        with self._lock:
            self.initialize_calls += 1
            if self.faults.failed_initializes > 0:
                self.faults.failed_initializes -= 1
                return self._fail((_C.RES_E_INTERNAL_FAIL_INIT,
                                   "IPC initialize failed, MetaTrader 5 x64 not found"), False)
            if path is not None and not isinstance(path, str):
                return self._fail((_C.RES_E_INVALID_PARAMS, 'Invalid "path" argument'), False)
            if login is not None and not self._credentials_match(login, password, server):
                return self._fail((_C.RES_E_AUTH_FAILED, "Terminal: Authorization failed"), False)
            self._ipc = True
            self._set_error(_OK)
            return True

    def _credentials_match(self, login: Any, password: Any, server: Any) -> bool:
        want_login, want_password, want_server = self._credentials
        return (login == want_login and (password is None or password == want_password)
                and (server is None or server == want_server))

    def login(self, login: int, password: str | None = None, server: str | None = None,
              timeout: int | None = None) -> bool:
        """Log in to a trading account; False with last_error on failure."""
        with self._lock:
            error = self._enter()
            if error:
                return self._fail(error, False)
            if not isinstance(login, int):
                return self._fail((_C.RES_E_INVALID_PARAMS, 'Invalid "login" argument'), False)
            if not self._credentials_match(login, password, server):
                return self._fail((_C.RES_E_AUTH_FAILED, "Terminal: Authorization failed"), False)
            self._set_error(_OK)
            return True

    def shutdown(self) -> None:
        """Close the IPC connection to the terminal."""
        with self._lock:
            self._ipc = False
            self._set_error(_OK)

    def version(self) -> tuple[int, int, str] | None:
        """``(terminal version, build, release date)``; None when not connected."""
        with self._lock:
            error = self._enter()
            if error:
                return self._fail(error)
            self._set_error(_OK)
            return (500, 4231, "1 Mar 2024")

    def last_error(self) -> tuple[int, str]:
        """The cause of this thread's last failed call (``(1, 'Success')`` after a good one)."""
        return getattr(self._errors, "value", _OK)

    def terminal_info(self) -> TerminalInfo | None:
        """The terminal's state; None when not connected."""
        with self._lock:
            error = self._enter()
            if error:
                return self._fail(error)
            self._set_error(_OK)
            return TerminalInfo(False, False, self.server_connected, False, self.trade_allowed,
                                False, False, False, False, False, 4231, 100000, 0, 1200, 0.0, 0.0,
                                "FlowChain", "FlowChain fake MetaTrader 5", "English",
                                "C:\\Program Files\\MetaTrader 5", "C:\\fake", "C:\\fake\\common")

    def account_info(self) -> AccountInfo | None:
        """The logged-in account; None when not connected."""
        with self._lock:
            error = self._enter()
            if error:
                return self._fail(error)
            self._set_error(_OK)
            now = self._clock()
            profit = round(sum(self._marked(p, now).profit for p in self._positions.values()), 2)
            return AccountInfo(self._credentials[0], _C.ACCOUNT_TRADE_MODE_DEMO, 100, 200,
                               _C.ACCOUNT_STOPOUT_MODE_PERCENT, True, True,
                               _C.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING, 2, False, self._balance, 0.0,
                               profit, self._balance + profit, 0.0, self._balance, 0.0, 50.0, 30.0,
                               0.0, 0.0, 0.0, 0.0, 0.0, "FlowChain Fake", self._credentials[2], self._currency,
                               "FlowChain")

    # ------------------------------------------------------------------ symbols
    def symbols_total(self) -> int:
        """How many symbols the market has (0 when not connected, like the real package)."""
        with self._lock:
            error = self._enter()
            if error:
                return self._fail(error, 0)
            self._set_error(_OK)
            return len(self._markets)

    def symbols_get(self, group: str | None = None) -> tuple[SymbolInfo, ...] | None:
        """Every symbol's info, filtered by a ``*`` pattern group; None when not connected."""
        import fnmatch

        with self._lock:
            error = self._enter()
            if error:
                return self._fail(error)
            self._set_error(_OK)
            names = [n for n in self._markets if group is None
                     or any(fnmatch.fnmatchcase(n, g) for g in group.split(","))]
            return tuple(self._symbol_info(self._markets[n]) for n in names)

    def _symbol_info(self, market: _Market) -> SymbolInfo:
        s = market.spec
        tick = market.last_tick(self._clock())
        bid = float(tick["bid"]) if tick is not None else 0.0
        ask = float(tick["ask"]) if tick is not None else 0.0
        spread = int(round((ask - bid) / s.point)) if tick is not None else 0
        return SymbolInfo(False, 0, market.selected, market.selected,
                          int(tick["time"]) if tick is not None else 0, s.digits, spread, True,
                          _C.SYMBOL_CALC_MODE_FOREX,
                          _C.SYMBOL_TRADE_MODE_FULL if s.market_open else _C.SYMBOL_TRADE_MODE_DISABLED,
                          _C.SYMBOL_TRADE_EXECUTION_MARKET, s.filling_mode, 127, bid, ask, 0.0, s.point,
                          self._to_account(s.point * s.contract_size, s.currency_profit, self._clock()),
                          s.point, s.contract_size, s.volume_min, s.volume_max, s.volume_step,
                          s.currency_base, s.currency_profit, s.currency_base, f"{s.name} (fake)",
                          f"Forex\\{s.name}", s.name)

    def symbol_info(self, symbol: str) -> SymbolInfo | None:
        """A symbol's properties (works for unselected symbols); None when unknown."""
        with self._lock:
            error = self._enter()
            if error:
                return self._fail(error)
            market = self._market(symbol, need_selected=False)
            if market is None:
                return self._fail((_C.RES_E_NOT_FOUND, "Terminal: Not found"))
            self._set_error(_OK)
            return self._symbol_info(market)

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        """Show or hide a symbol in Market Watch; False for an unknown symbol."""
        with self._lock:
            error = self._enter()
            if error:
                return self._fail(error, False)
            market = self._markets.get(symbol) if isinstance(symbol, str) else None
            if market is None:
                return self._fail((_C.RES_E_NOT_FOUND, "Terminal: Not found"), False)
            market.selected = bool(enable)
            self._set_error(_OK)
            return True

    def symbol_info_tick(self, symbol: str) -> Tick | None:
        """The latest tick of a selected symbol; None when unknown, unselected or not connected."""
        with self._lock:
            if self.faults.disconnect_after_polls is not None:
                if self.faults.disconnect_after_polls <= 0:
                    self.faults.disconnect_after_polls = None
                    self._ipc = False
                else:
                    self.faults.disconnect_after_polls -= 1
            error = self._enter()
            if error:
                return self._fail(error)
            market = self._market(symbol)
            if market is None:
                return self._fail((_C.RES_E_NOT_FOUND, "Terminal: Not found"))
            tick = market.last_tick(self._clock())
            self._set_error(_OK)
            if tick is None:  # a selected symbol with no tick yet: the terminal gives zeros
                return Tick(0, 0.0, 0.0, 0.0, 0, 0, 0, 0.0)
            return Tick(int(tick["time"]), float(tick["bid"]), float(tick["ask"]), float(tick["last"]),
                        int(tick["volume"]), int(tick["time_msc"]), int(tick["flags"]),
                        float(tick["volume_real"]))

    # ------------------------------------------------------------------ ticks and rates
    @staticmethod
    def _seconds(value: Any) -> int | None:
        if isinstance(value, _dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=_dt.timezone.utc)
            return int(value.timestamp())
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return int(value)
        return None

    def _filter(self, ticks: np.ndarray, flags: int) -> np.ndarray:
        if flags == _C.COPY_TICKS_INFO:
            return ticks[(ticks["flags"] & (_C.TICK_FLAG_BID | _C.TICK_FLAG_ASK)) != 0]
        if flags == _C.COPY_TICKS_TRADE:
            return ticks[(ticks["flags"] & (_C.TICK_FLAG_LAST | _C.TICK_FLAG_VOLUME)) != 0]
        return ticks

    def _tick_source(self, symbol: Any, flags: Any) -> tuple[np.ndarray | None, tuple[int, str] | None]:
        error = self._enter()
        if error:
            return None, error
        if flags not in (_C.COPY_TICKS_ALL, _C.COPY_TICKS_INFO, _C.COPY_TICKS_TRADE):
            return None, (_C.RES_E_INVALID_PARAMS, 'Invalid "flags" argument')
        market = self._market(symbol)
        if market is None:
            return None, (_C.RES_E_NOT_FOUND, "Terminal: Not found")
        return market.ticks[: market.visible(self._clock())], None

    def copy_ticks_from(self, symbol: str, date_from: Any, count: int, flags: int) -> np.ndarray | None:
        """Up to ``count`` ticks from ``date_from`` (UTC datetime or epoch seconds) on."""
        with self._lock:
            ticks, error = self._tick_source(symbol, flags)
            start = self._seconds(date_from)
            if error is None and (start is None or not isinstance(count, int) or count < 0):
                error = (_C.RES_E_INVALID_PARAMS, 'Invalid "date_from" or "count" argument')
            if error:
                return self._fail(error)
            lo = int(np.searchsorted(ticks["time_msc"], start * 1000, side="left"))
            out = self._filter(ticks[lo:], flags)[:count].copy()
            self._set_error(_OK)
            return out

    def copy_ticks_range(self, symbol: str, date_from: Any, date_to: Any, flags: int) -> np.ndarray | None:
        """Every tick from ``date_from`` through the second ``date_to`` (UTC datetime or epoch s).

        Both ends have second resolution, so consecutive calls overlap; that is why the bridge
        deduplicates by ``(time_msc, count seen at that ms)``.
        """
        with self._lock:
            ticks, error = self._tick_source(symbol, flags)
            start, end = self._seconds(date_from), self._seconds(date_to)
            if error is None and (start is None or end is None):
                error = (_C.RES_E_INVALID_PARAMS, 'Invalid "date_from" or "date_to" argument')
            if error:
                return self._fail(error)
            lo = int(np.searchsorted(ticks["time_msc"], start * 1000, side="left"))
            hi = int(np.searchsorted(ticks["time_msc"], (end + 1) * 1000, side="left"))
            out = self._filter(ticks[lo:hi], flags).copy()
            self._set_error(_OK)
            return out

    def _rates(self, symbol: Any, timeframe: Any) -> tuple[np.ndarray | None, tuple[int, str] | None]:
        ticks, error = self._tick_source(symbol, _C.COPY_TICKS_ALL)
        if error:
            return None, error
        seconds = _TIMEFRAME_SECONDS.get(timeframe)
        if seconds is None:
            return None, (_C.RES_E_INVALID_PARAMS, 'Invalid "timeframe" argument')
        if not len(ticks):
            return np.zeros(0, dtype=RATES_DTYPE), None
        bars = ticks["time"] // seconds * seconds
        starts = np.flatnonzero(np.concatenate(([True], bars[1:] != bars[:-1])))
        ends = np.concatenate((starts[1:], [len(ticks)]))
        out = np.zeros(len(starts), dtype=RATES_DTYPE)
        bid = ticks["bid"]
        out["time"] = bars[starts]
        out["open"] = bid[starts]
        out["close"] = bid[ends - 1]
        out["high"] = np.maximum.reduceat(bid, starts)
        out["low"] = np.minimum.reduceat(bid, starts)
        out["tick_volume"] = ends - starts
        point = self._markets[symbol].spec.point
        out["spread"] = np.round(np.minimum.reduceat(ticks["ask"] - bid, starts) / point)
        out["real_volume"] = np.add.reduceat(ticks["volume"], starts)
        return out, None

    def copy_rates_from(self, symbol: str, timeframe: int, date_from: Any, count: int) -> np.ndarray | None:
        """Up to ``count`` bars (built from the fake's ticks) ending at ``date_from``."""
        with self._lock:
            rates, error = self._rates(symbol, timeframe)
            end = self._seconds(date_from)
            if error is None and (end is None or not isinstance(count, int) or count < 0):
                error = (_C.RES_E_INVALID_PARAMS, 'Invalid "date_from" or "count" argument')
            if error:
                return self._fail(error)
            self._set_error(_OK)
            return rates[rates["time"] <= end][-count:].copy() if count else rates[:0].copy()

    def copy_rates_from_pos(self, symbol: str, timeframe: int, start_pos: int, count: int) -> np.ndarray | None:
        """``count`` bars ending ``start_pos`` bars before the current one."""
        with self._lock:
            rates, error = self._rates(symbol, timeframe)
            if error is None and not (isinstance(start_pos, int) and isinstance(count, int)
                                      and start_pos >= 0 and count >= 0):
                error = (_C.RES_E_INVALID_PARAMS, 'Invalid "start_pos" or "count" argument')
            if error:
                return self._fail(error)
            self._set_error(_OK)
            stop = len(rates) - start_pos
            return rates[max(0, stop - count):max(0, stop)].copy()

    def copy_rates_range(self, symbol: str, timeframe: int, date_from: Any, date_to: Any) -> np.ndarray | None:
        """Bars whose open time is within ``[date_from, date_to]``."""
        with self._lock:
            rates, error = self._rates(symbol, timeframe)
            start, end = self._seconds(date_from), self._seconds(date_to)
            if error is None and (start is None or end is None):
                error = (_C.RES_E_INVALID_PARAMS, 'Invalid "date_from" or "date_to" argument')
            if error:
                return self._fail(error)
            self._set_error(_OK)
            return rates[(rates["time"] >= start) & (rates["time"] <= end)].copy()

    # ------------------------------------------------------------------ market depth
    def market_book_add(self, symbol: str) -> bool:
        """Subscribe to a selected symbol's depth of market."""
        with self._lock:
            error = self._enter()
            if error:
                return self._fail(error, False)
            if self._market(symbol) is None:
                return self._fail((_C.RES_E_NOT_FOUND, "Terminal: Not found"), False)
            self._books.add(symbol)
            self._set_error(_OK)
            return True

    def market_book_get(self, symbol: str) -> tuple[BookInfo, ...] | None:
        """The top of book (one level a side, from the last tick) of a subscribed symbol."""
        with self._lock:
            error = self._enter()
            if error:
                return self._fail(error)
            market = self._market(symbol)
            if market is None or symbol not in self._books:
                return self._fail((_C.RES_E_NOT_FOUND, "Terminal: Not found"))
            tick = market.last_tick(self._clock())
            self._set_error(_OK)
            if tick is None:
                return ()
            return (BookInfo(_C.BOOK_TYPE_SELL, float(tick["ask"]), 10, 10.0),
                    BookInfo(_C.BOOK_TYPE_BUY, float(tick["bid"]), 10, 10.0))

    def market_book_release(self, symbol: str) -> bool:
        """Unsubscribe from a symbol's depth of market."""
        with self._lock:
            error = self._enter()
            if error:
                return self._fail(error, False)
            if symbol not in self._books:
                return self._fail((_C.RES_E_NOT_FOUND, "Terminal: Not found"), False)
            self._books.discard(symbol)
            self._set_error(_OK)
            return True

    # ------------------------------------------------------------------ account state
    def positions_total(self) -> int:
        """Open positions (0 when not connected)."""
        return self._count_open(self._positions)

    def positions_get(self, symbol: str | None = None, group: str | None = None,
                      ticket: int | None = None) -> tuple[TradePosition, ...] | None:
        """Open positions, optionally by symbol, group pattern or ticket; None when not connected.

        Each is marked at its symbol's current quote (a buy at the bid, a sell at the ask):
        ``price_current`` and ``profit`` in the account currency, as the terminal shows them.
        """
        found = self._select_open(self._positions, symbol, group, ticket)
        if not found:
            return found
        with self._lock:
            now = self._clock()
            return tuple(self._marked(p, now) for p in found)

    def orders_total(self) -> int:
        """Active pending orders (0 when not connected)."""
        self._expire_orders()
        return self._count_open(self._orders)

    def orders_get(self, symbol: str | None = None, group: str | None = None,
                   ticket: int | None = None) -> tuple[TradeOrder, ...] | None:
        """Active pending orders, filtered like :meth:`positions_get`."""
        self._expire_orders()
        return self._select_open(self._orders, symbol, group, ticket)

    def _expire_orders(self) -> None:
        """Move pending orders whose ``time_expiration`` has passed (``type_time`` SPECIFIED or
        SPECIFIED_DAY) to the history as ORDER_STATE_EXPIRED, as the trade server does."""
        with self._lock:
            if not self._orders:
                return
            now_ms = self._clock()
            now_s = now_ms // 1000
            due = [o for o in self._orders.values()
                   if o.type_time in _EXPIRING and 0 < o.time_expiration <= now_s]
            if not due:
                return
            if self._fills:
                self._settle()  # the history stays in time order
            for order in due:
                del self._orders[order.ticket]
                self._history_orders.append(order._replace(state=_C.ORDER_STATE_EXPIRED, time_done=now_s,
                                                           time_done_msc=now_ms))

    def _count_open(self, table: dict[int, Any]) -> int:
        """How many open records ``table`` (positions or pending orders) holds; 0 when not
        connected."""
        with self._lock:
            error = self._enter()
            if error:
                return self._fail(error, 0)
            self._set_error(_OK)
            return len(table)

    def _select_open(self, table: dict[int, Any], symbol: str | None, group: str | None,
                     ticket: int | None) -> tuple | None:
        """The open records of ``table`` that pass :meth:`_match`; None when not connected."""
        with self._lock:
            error = self._enter()
            if error:
                return self._fail(error)
            self._set_error(_OK)
            return tuple(r for r in table.values() if self._match(r, symbol, group, ticket))

    @staticmethod
    def _match(record: Any, symbol: str | None, group: str | None, ticket: int | None) -> bool:
        import fnmatch

        if symbol is not None and record.symbol != symbol:
            return False
        if ticket is not None and record.ticket != ticket:
            return False
        return group is None or any(fnmatch.fnmatchcase(record.symbol, g) for g in group.split(","))

    def _history(self, records: list, time_field: str, args: tuple, group: str | None,
                 ticket: int | None, position: int | None) -> tuple | None:
        self._expire_orders()
        if self._fills:
            self._settle()
        error = self._enter()
        if error:
            return self._fail(error)
        if ticket is not None:
            out = tuple(r for r in records if r.ticket == ticket)
        elif position is not None:
            out = tuple(r for r in records if r.position_id == position)
        else:
            if len(args) != 2:
                return self._fail((_C.RES_E_INVALID_PARAMS, "Invalid arguments"))
            start, end = self._seconds(args[0]), self._seconds(args[1])
            if start is None or end is None:
                return self._fail((_C.RES_E_INVALID_PARAMS, 'Invalid "date_from" or "date_to" argument'))
            out = tuple(r for r in records if start <= getattr(r, time_field) <= end
                        and self._match(r, None, group, None))
        self._set_error(_OK)
        return out

    def history_deals_get(self, *args: Any, group: str | None = None, ticket: int | None = None,
                          position: int | None = None) -> tuple[TradeDeal, ...] | None:
        """Deals: ``(date_from, date_to, group=)``, ``(ticket=)`` or ``(position=)``."""
        with self._lock:
            return self._history(self._deals, "time", args, group, ticket, position)

    def history_deals_total(self, date_from: Any, date_to: Any) -> int:
        """Deals between two dates."""
        return self._history_count(self._deals, "time", date_from, date_to)

    def history_orders_get(self, *args: Any, group: str | None = None, ticket: int | None = None,
                           position: int | None = None) -> tuple[TradeOrder, ...] | None:
        """Finished orders, selected like :meth:`history_deals_get`."""
        with self._lock:
            return self._history(self._history_orders, "time_setup", args, group, ticket, position)

    def history_orders_total(self, date_from: Any, date_to: Any) -> int:
        """Finished orders between two dates."""
        return self._history_count(self._history_orders, "time_setup", date_from, date_to)

    def _history_count(self, records: list, time_field: str, date_from: Any, date_to: Any) -> int:
        """How many of ``records`` fall between two dates (0 when not connected or the dates
        are invalid, the error then set as :meth:`_history` sets it)."""
        with self._lock:
            found = self._history(records, time_field, (date_from, date_to), None, None, None)
            return len(found) if found is not None else 0

    # ------------------------------------------------------------------ trading
    def order_calc_margin(self, action: int, symbol: str, volume: float, price: float) -> float | None:
        """Margin for a deal at leverage 1:100."""
        with self._lock:
            error = self._enter()
            if error:
                return self._fail(error)
            market = self._markets.get(symbol)
            if market is None or action not in (_C.ORDER_TYPE_BUY, _C.ORDER_TYPE_SELL):
                return self._fail((_C.RES_E_INVALID_PARAMS, "Invalid arguments"))
            self._set_error(_OK)
            return self._margin(market, volume, price, self._clock())

    def order_calc_profit(self, action: int, symbol: str, volume: float, price_open: float,
                          price_close: float) -> float | None:
        """Profit of a deal closed at ``price_close``, in the account currency at current rates."""
        with self._lock:
            error = self._enter()
            if error:
                return self._fail(error)
            market = self._markets.get(symbol)
            if market is None or action not in (_C.ORDER_TYPE_BUY, _C.ORDER_TYPE_SELL):
                return self._fail((_C.RES_E_INVALID_PARAMS, "Invalid arguments"))
            self._set_error(_OK)
            return round(self._profit(market, action, volume, price_open, price_close, self._clock()), 2)

    def _trade_request(self, request: Any) -> tuple[TradeRequest | None, tuple[int, str] | None]:
        """The request dict as a TradeRequest, or the error the real package gives for it."""
        if type(request) is dict and request.keys() <= _REQUEST_KEYS:  # the usual case, checked at once
            values = {**_REQUEST_DEFAULTS, **request}
            if tuple(map(type, _price_values(values))) == _FLOAT_PRICES:
                return _new(TradeRequest, _request_values(values)), None
        return self._checked_request(request)

    def _checked_request(self, request: Any) -> tuple[TradeRequest | None, tuple[int, str] | None]:
        if not isinstance(request, dict):
            return None, (_C.RES_E_INVALID_PARAMS, "Invalid arguments")
        if not _REQUEST_KEYS.issuperset(request):
            key = next(k for k in request if k not in _REQUEST_KEYS)
            return None, (_C.RES_E_INVALID_PARAMS, f'Invalid "{key}" argument')
        values = {**_REQUEST_DEFAULTS, **request}
        for key, value in zip(_PRICE_KEYS, _price_values(values), strict=False):
            if type(value) is not float and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                return None, (_C.RES_E_INVALID_PARAMS, f'Invalid "{key}" argument')
        return _new(TradeRequest, _request_values(values)), None

    def _check(self, req: TradeRequest, market: _Market | None, now_ms: int) -> tuple[int, str]:
        """The retcode and comment a request gets before execution (0 = passes); ``market`` is
        the request symbol's (None when unknown)."""
        if not self.server_connected:
            return _C.TRADE_RETCODE_CONNECTION, "No connection"
        if not self.trade_allowed:
            return _C.TRADE_RETCODE_CLIENT_DISABLES_AT, "AutoTrading disabled by client"
        if market is None or not market.selected:
            return _C.TRADE_RETCODE_INVALID, "Invalid request"
        spec = market.spec
        action = req.action
        if action not in _CHECKED_ACTIONS:
            return _C.TRADE_RETCODE_INVALID, "Invalid request"
        if not spec.market_open:
            return _C.TRADE_RETCODE_MARKET_CLOSED, "Market closed"
        if action in _VOLUME_ACTIONS:
            volume = req.volume
            steps = volume / spec.volume_step
            if volume < spec.volume_min or volume > spec.volume_max or abs(steps - round(steps)) > 1e-7:
                return _C.TRADE_RETCODE_INVALID_VOLUME, "Invalid volume"
            filling = req.type_filling
            if filling == _FOK:
                allowed = spec.filling_mode & 1
            elif filling == _IOC:
                allowed = spec.filling_mode & 2
            else:  # RETURN and BOC rest in the book: pending orders only
                allowed = filling in _RESTING_FILLINGS and action == _PENDING
            if not allowed:
                return _C.TRADE_RETCODE_INVALID_FILL, "Unsupported filling mode"
            if action == _PENDING and req.type_time in _EXPIRING and req.expiration <= now_ms // 1000:
                return _C.TRADE_RETCODE_INVALID_EXPIRATION, "Invalid expiration"
        if action == _DEAL:
            if req.type not in _MARKET_TYPES:
                return _C.TRADE_RETCODE_INVALID, "Invalid request"
            if req.position and req.position not in self._positions:
                return _C.TRADE_RETCODE_POSITION_CLOSED, "Position closed"
            if req.position and req.volume > self._positions[req.position].volume + 1e-9:
                return _C.TRADE_RETCODE_INVALID_CLOSE_VOLUME, "Invalid close volume"
            if req.price:
                bid, ask = self._quote(market, now_ms)
                market_price = ask if req.type == _C.ORDER_TYPE_BUY else bid
                if abs(req.price - market_price) > max(req.deviation, 0) * spec.point + 1e-12:
                    return _C.TRADE_RETCODE_REQUOTE, "Requote"
        elif action in _ORDER_ACTIONS:
            self._expire_orders()  # an order past its expiration is gone
            if req.order not in self._orders:
                return _C.TRADE_RETCODE_INVALID_ORDER, "Invalid order"
        elif action == _C.TRADE_ACTION_SLTP and req.position not in self._positions:
            return _C.TRADE_RETCODE_POSITION_CLOSED, "Position closed"
        return 0, "Done"

    def order_check(self, request: dict) -> OrderCheckResult | None:
        """Check a request without sending it; ``retcode`` 0 ("Done") when it would pass."""
        # The order calls run per order on the bridge's round trip: their usual path makes as
        # few Python calls as it can (no helper for what one line does).
        with self._lock:
            if not self._ipc or self.faults.ipc_timeouts > 0:
                return self._fail(self._enter())
            req, error = self._trade_request(request)
            if error:
                return self._fail(error)
            self._checked = (request, request.copy(), req)
            market = self._markets.get(req.symbol)
            now = self._clock()
            if market is not None and market._horizon <= now:
                market.advance(now, self._history_limit)
            retcode, comment = self._check(req, market, now)
            margin = 0.0
            if retcode == 0 and req.action == _DEAL:  # (a passing deal has a market)
                margin = self._margin(market, req.volume, self._quote(market, now)[1], now)
            self._errors.value = _OK
            balance = self._balance
            return _new(OrderCheckResult, (retcode, balance, balance, 0.0, margin, balance - margin, 0.0,
                                           comment, req))

    def order_send(self, request: dict) -> OrderSendResult | None:
        """Send a trade request; None (see ``last_error``) on a call or IPC failure."""
        latency = self.faults.order_latency_s
        if latency > 0:
            time.sleep(latency)
        with self._lock:
            self.order_send_calls += 1
            if not self._ipc or self.faults.ipc_timeouts > 0:
                return self._fail(self._enter())
            checked = self._checked  # order_send of the dict order_check just passed: reuse its request
            if checked is not None and checked[0] is request and checked[1] == request:
                req, error = checked[2], None
            else:
                req, error = self._trade_request(request)
            if error:
                return self._fail(error)
            market = self._markets.get(req.symbol)
            now = self._clock()
            if market is not None and market._horizon <= now:
                market.advance(now, self._history_limit)
            self._request_id += 1
            bid, ask = self._quote(market, now) if market else (0.0, 0.0)
            fault = self.faults.orders.popleft() if self.faults.orders else None
            if fault is not None:
                return self._faulty_send(OrderFault(fault), req, market, now, bid, ask)
            retcode, comment = self._check(req, market, now)
            if retcode:
                self._errors.value = _OK
                return OrderSendResult(retcode, 0, 0, 0.0, 0.0, bid, ask, comment, self._request_id, 0, req)
            result = self._execute(req, market, now, bid, ask)
            self._errors.value = _OK
            return result

    def _faulty_send(self, fault: OrderFault, req: TradeRequest, market: _Market | None, now: int,
                     bid: float, ask: float) -> OrderSendResult | None:
        """``order_send`` with a scripted fault (the lock held, the request valid)."""
        if fault in _SCRIPTED_REFUSALS:
            retcode, comment = _SCRIPTED_REFUSALS[fault]
            self._set_error(_OK)
            return OrderSendResult(retcode, 0, 0, 0.0, 0.0, bid, ask, comment, self._request_id, 0, req)
        if fault is OrderFault.NONE_ABSENT:
            return self._fail(_IPC_TIMEOUT)
        retcode, comment = self._check(req, market, now)
        if retcode:
            self._set_error(_OK)
            return OrderSendResult(retcode, 0, 0, 0.0, 0.0, bid, ask, comment, self._request_id, 0, req)
        result = self._execute(req, market, now, bid, ask)
        if fault is OrderFault.NONE_FILLED:
            return self._fail(_IPC_TIMEOUT)
        self._set_error(_OK)
        if fault is OrderFault.TIMEOUT_FILLED:
            return result._replace(retcode=_C.TRADE_RETCODE_TIMEOUT, deal=0, order=0, comment="Request timed out")
        return result

    def _quote(self, market: _Market, now_ms: int) -> tuple[float, float]:
        """The bid and ask of the market's last tick by ``now_ms`` (its seed price before any)."""
        quote = market.quote(now_ms)
        if quote is None:
            return market.spec.price, market.spec.price
        return quote

    # ------------------------------------------------------------------ money (account currency)
    def _markets_specs(self) -> list[FakeSymbol]:
        return [m.spec for m in self._markets.values()]

    def _route(self, currency: str) -> tuple[tuple[str, bool], ...]:
        """The symbols that convert ``currency`` into the account currency: ``(name, divide)``
        legs (a pair quoting it in the account currency, the inverse pair, or two pairs through
        a third currency)."""
        account = self._currency
        if currency == account:
            return ()
        specs = self._markets_specs()

        def leg(src: str, dst: str) -> tuple[str, bool] | None:
            for s in specs:
                if (s.currency_base, s.currency_profit) == (src, dst):
                    return s.name, False
            for s in specs:
                if (s.currency_base, s.currency_profit) == (dst, src):
                    return s.name, True
            return None

        direct = leg(currency, account)
        if direct is not None:
            return (direct,)
        for via in dict.fromkeys(c for s in specs for c in (s.currency_base, s.currency_profit)):
            if via in (currency, account):
                continue
            first, second = leg(currency, via), leg(via, account)
            if first is not None and second is not None:
                return first, second
        raise ValueError(f"FakeMetaTrader5: no symbol of the market converts {currency} to the "
                         f"account currency {account}; add a {currency}{account} or "
                         f"{account}{currency} symbol")

    def _to_account(self, amount: float, currency: str, now_ms: int) -> float:
        """``amount`` of ``currency`` in the account currency at the current quotes, the side
        less favourable to the account (a profit at the bid of a pair it multiplies by or the
        ask of one it divides by; a loss the other way round)."""
        for name, divide in self._routes[currency]:
            market = self._markets[name]
            if market._horizon <= now_ms:
                market.advance(now_ms, self._history_limit)
            bid, ask = self._quote(market, now_ms)
            if divide:
                amount /= ask if amount > 0 else bid
            else:
                amount *= bid if amount > 0 else ask
        return amount

    def _profit(self, market: _Market, position_type: int, volume: float, price_open: float,
                price_close: float, now_ms: int) -> float:
        """A buy's (type 0) or sell's profit from ``price_open`` to ``price_close``, unrounded:
        points x volume x contract size in the profit currency, converted."""
        sign = 1.0 if position_type == _C.POSITION_TYPE_BUY else -1.0
        spec = market.spec
        return self._to_account(sign * (price_close - price_open) * volume * spec.contract_size,
                                spec.currency_profit, now_ms)

    def _margin(self, market: _Market, volume: float, price: float, now_ms: int) -> float:
        """The margin of ``volume`` lots at ``price`` at leverage 1:100, in the account currency."""
        spec = market.spec
        return round(self._to_account(volume * spec.contract_size * price / 100.0, spec.currency_profit,
                                      now_ms), 2)

    def _marked(self, position: TradePosition, now_ms: int) -> TradePosition:
        """``position`` at its symbol's current quote: ``price_current`` and account-currency
        ``profit``."""
        market = self._markets[position.symbol]
        if market._horizon <= now_ms:
            market.advance(now_ms, self._history_limit)
        bid, ask = self._quote(market, now_ms)
        price = bid if position.type == _C.POSITION_TYPE_BUY else ask
        profit = round(self._profit(market, position.type, position.volume, position.price_open, price,
                                    now_ms), 2)
        return position._replace(price_current=price, profit=profit)

    def _next_ticket(self) -> int:
        self._ticket += 1
        return self._ticket

    def _settle(self) -> None:
        """Write the fills since the last history read into the history (order, then deal).

        A fill's position is opened at once (checks need it); its history records are built
        only when the history is read, which keeps ``order_send`` short.
        """
        fills, self._fills = self._fills, []
        for order_ticket, deal_ticket, now_s, now_ms, req, position_id, entry, price, profit, comment in fills:
            self._history_orders.append(_new(TradeOrder, (
                order_ticket, now_s, now_ms, now_s, now_ms, 0, req.type, req.type_time, req.type_filling,
                _C.ORDER_STATE_FILLED, req.magic, position_id, 0, _C.ORDER_REASON_EXPERT, req.volume, 0.0,
                price, req.sl, req.tp, price, 0.0, req.symbol, comment, "")))
            self._deals.append(_new(TradeDeal, (
                deal_ticket, order_ticket, now_s, now_ms, req.type, entry, req.magic, position_id,
                _C.DEAL_REASON_EXPERT, req.volume, price, 0.0, 0.0, profit, 0.0, req.symbol, comment, "")))

    def _execute(self, req: TradeRequest, market: _Market, now_ms: int, bid: float,
                 ask: float) -> OrderSendResult:
        now_s = now_ms // 1000
        comment = req.comment[:31]
        if req.action == _DEAL:
            price = ask if req.type == _C.ORDER_TYPE_BUY else bid
            self._ticket += 2
            order_ticket, deal_ticket = self._ticket - 1, self._ticket
            closing = self._positions.pop(req.position, None) if req.position else None
            position_id = closing.ticket if closing else order_ticket
            entry = _C.DEAL_ENTRY_OUT if closing else _C.DEAL_ENTRY_IN
            profit = 0.0
            if closing:
                closed = min(req.volume, closing.volume)  # less than the position: a partial close
                profit = round(self._profit(market, closing.type, closed, closing.price_open, price, now_ms), 2)
                self._balance += profit
                rest = round(closing.volume - closed, 8)
                if rest > 0:
                    self._positions[position_id] = closing._replace(volume=rest, time_update=now_s,
                                                                    time_update_msc=now_ms)
            else:
                self._positions[position_id] = _new(TradePosition, (
                    position_id, now_s, now_ms, now_s, now_ms, req.type, req.magic, position_id,
                    _C.POSITION_REASON_EXPERT, req.volume, price, req.sl, req.tp, price, 0.0, 0.0,
                    req.symbol, comment, ""))
            self._fills.append((order_ticket, deal_ticket, now_s, now_ms, req, position_id, entry, price,
                                profit, comment))  # its history order and deal: see _settle
            return _new(OrderSendResult, (_C.TRADE_RETCODE_DONE, deal_ticket, order_ticket, req.volume,
                                          price, bid, ask, "Request executed", self._request_id, 0, req))
        if req.action == _C.TRADE_ACTION_PENDING:
            ticket = self._next_ticket()
            self._orders[ticket] = TradeOrder(
                ticket, now_s, now_ms, 0, 0, req.expiration, req.type, req.type_time, req.type_filling,
                _C.ORDER_STATE_PLACED, req.magic, 0, 0, _C.ORDER_REASON_EXPERT, req.volume, req.volume,
                req.price, req.sl, req.tp, bid, req.stoplimit, req.symbol, comment, "")
            return OrderSendResult(_C.TRADE_RETCODE_PLACED, 0, ticket, req.volume, req.price, bid,
                                   ask, "Request executed", self._request_id, 0, req)
        if req.action == _C.TRADE_ACTION_REMOVE:
            order = self._orders.pop(req.order)
            if self._fills:
                self._settle()  # the history stays in time order
            self._history_orders.append(order._replace(state=_C.ORDER_STATE_CANCELED, time_done=now_s,
                                                       time_done_msc=now_ms))
            return OrderSendResult(_C.TRADE_RETCODE_DONE, 0, req.order, 0.0, 0.0, bid, ask,
                                   "Request executed", self._request_id, 0, req)
        if req.action == _C.TRADE_ACTION_MODIFY:
            self._orders[req.order] = self._orders[req.order]._replace(price_open=req.price, sl=req.sl, tp=req.tp)
            return OrderSendResult(_C.TRADE_RETCODE_DONE, 0, req.order, 0.0, req.price, bid,
                                   ask, "Request executed", self._request_id, 0, req)
        # TRADE_ACTION_SLTP
        self._positions[req.position] = self._positions[req.position]._replace(sl=req.sl, tp=req.tp)
        return OrderSendResult(_C.TRADE_RETCODE_DONE, 0, 0, 0.0, 0.0, bid, ask,
                               "Request executed", self._request_id, 0, req)

"""The one interface every tick feed implements: simulator, replay file and ZeroMQ subscriber.

How the node uses a feed
------------------------
A feed owns one preallocated :class:`~flowchain.feeds.ring.TickRing` per symbol and writes every
tick it accepts into that ring *before* anyone hears of it. Consumers then read the rings:

* **Per tick (the AI decision chain, hot path).** Register one handler with
  :meth:`Feed.on_tick`. The feed calls ``handler(ring, index)`` synchronously, on the event
  loop, right after the tick landed at ``ring.ticks[index]`` (``index == ring.head``). The
  handler runs the chain on ``ring`` (``ring.window(n)`` is a zero-copy view of the newest
  ``n`` ticks). A handler that raises never stops the feed: the exception is counted in
  ``stats.handler_errors`` and kept in ``stats.last_handler_error``.
* **Per batch (the MT5 -> database chain, cold path).** A
  :class:`~flowchain.feeds.batches.TickBatcher` keeps one cursor per ring and, when the node
  asks (say every 100 ms), copies out every tick appended since the last call. The hot path
  never waits for it; if it falls more than a ring's capacity behind, the lost ticks are counted.
* **Trading gate.** ``feed.state.stale`` is True whenever new orders are blocked for the feed:
  while the source is silent (``state.silent``: three missed heartbeats for the ZeroMQ feed),
  while the MT5 terminal is not connected (``state.terminal``: login failed, disconnected, no
  trade server) and while the terminal does not allow trading. The trading engine reads
  ``state.orders_allowed`` before every new order. ``state.add_listener(fn)`` calls
  ``fn(state)`` on every change of ``connected``, ``silent`` or the terminal's state.

Lifecycle: ``await feed.start()`` begins delivering in a background task on the running loop;
``await feed.stop()`` ends it (idempotent); ``await feed.wait_finished()`` returns when a finite
feed (a replay file, a simulator with ``max_ticks``) has delivered everything; ``async with
feed:`` starts and stops. Bad input never raises out of a feed: every rejected or dropped tick
is counted in :class:`FeedStats` under a named reason.
"""
from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from flowchain.feeds.ring import TickRing

log = logging.getLogger(__name__)

TickHandler = Callable[[TickRing, int], None]
"""``handler(ring, index)``: the tick at ``ring.ticks[index]`` has just arrived."""

StateListener = Callable[["FeedState"], None]

DEFAULT_RING_CAPACITY = 65_536
"""Ticks kept per symbol unless a feed is told otherwise (about 7.5 MiB per symbol, mirrored)."""


class FeedStats:
    """Counters of one feed; every reject and drop is counted under a named reason.

    Attributes
    ----------
    received : int
        Ticks written into a ring (live and backfilled).
    rejects : dict[str, int]
        Malformed input, by reason (``short``, ``bad_version``, ``non_finite_price``, a replay
        file's ``not_a_number`` ...).
    drops : dict[str, int]
        Well-formed input deliberately not delivered, by reason (``duplicate``,
        ``unknown_symbol``, ``stale_session`` ...).
    gaps : int
        Sequence gaps detected.
    gap_ticks : int
        Ticks missing across those gaps when they were detected.
    backfilled : int
        Ticks recovered by backfill and delivered.
    unrecovered : int
        Ticks a backfill could not return (given up on).
    unrecovered_restarts : int
        Source restarts whose hole (the ticks between the last one held and the new session's
        first) could not be asked for; how many ticks it held is unknown.
    restarts : int
        Source restarts detected (a new bridge session id).
    heartbeats : int
        Heartbeats received.
    handler_errors : int
        Exceptions raised by the per-tick handler (the tick itself was delivered).
    """

    __slots__ = ("received", "rejects", "drops", "gaps", "gap_ticks", "backfilled",
                 "unrecovered", "unrecovered_restarts", "restarts", "heartbeats", "handler_errors",
                 "last_handler_error", "reject_examples", "_max_examples")

    def __init__(self, max_examples: int = 20) -> None:
        self.received = 0
        self.rejects: dict[str, int] = {}
        self.drops: dict[str, int] = {}
        self.gaps = 0
        self.gap_ticks = 0
        self.backfilled = 0
        self.unrecovered = 0
        self.unrecovered_restarts = 0
        self.restarts = 0
        self.heartbeats = 0
        self.handler_errors = 0
        self.last_handler_error: BaseException | None = None
        self.reject_examples: list[str] = []
        """The first few rejects, each as ``where: reason: detail`` (for operators)."""
        self._max_examples = max_examples

    def reject(self, reason: str, where: str = "", detail: str = "") -> None:
        """Count one malformed input under ``reason``; keep the first few as examples."""
        self.rejects[reason] = self.rejects.get(reason, 0) + 1
        if len(self.reject_examples) < self._max_examples:
            text = f"{reason}: {detail}" if detail else reason
            self.reject_examples.append(f"{where}: {text}" if where else text)

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` well-formed ticks or frames not delivered, under ``reason``."""
        self.drops[reason] = self.drops.get(reason, 0) + n

    @property
    def rejected(self) -> int:
        """Total rejects, all reasons."""
        return sum(self.rejects.values())

    @property
    def dropped(self) -> int:
        """Total drops, all reasons."""
        return sum(self.drops.values())

    def as_dict(self) -> dict:
        """A JSON-ready snapshot of every counter."""
        return {
            "received": self.received, "rejects": dict(self.rejects), "drops": dict(self.drops),
            "gaps": self.gaps, "gap_ticks": self.gap_ticks, "backfilled": self.backfilled,
            "unrecovered": self.unrecovered, "unrecovered_restarts": self.unrecovered_restarts,
            "restarts": self.restarts,
            "heartbeats": self.heartbeats, "handler_errors": self.handler_errors,
        }

    def __repr__(self) -> str:
        return f"FeedStats({self.as_dict()})"


TERMINAL_STATES = ("connected", "server_disconnected", "login_failed", "disconnected")
"""What a feed knows of the MT5 terminal behind it (``FeedState.terminal``): connected to its
trade server; running but without its trade server; refusing the login; not reachable."""


class FeedState:
    """What the node and the trading engine need to know about a feed's source, right now.

    Attributes
    ----------
    connected : bool
        The feed is running and its source is reachable.
    silent : bool
        The source went silent (no frame for the staleness period) until it speaks again.
    last_heartbeat_ns : int
        ``time.monotonic_ns()`` of the last heartbeat or tick (0 if none yet).
    session_id : int
        The source's current session id (0 for feeds without sessions).
    terminal_connected, trade_allowed : bool
        The MT5 terminal's state as the last heartbeat reported it (True for local feeds).
    terminal : str
        One of :data:`TERMINAL_STATES` (``connected`` for local feeds).
    terminal_error : int
        The terminal's ``last_error()`` code as the bridge last saw it (1: none).
    """

    __slots__ = ("connected", "silent", "last_heartbeat_ns", "session_id",
                 "terminal_connected", "trade_allowed", "terminal", "terminal_error", "_listeners")

    def __init__(self) -> None:
        self.connected = False
        self.silent = False
        self.last_heartbeat_ns = 0
        self.session_id = 0
        self.terminal_connected = True
        self.trade_allowed = True
        self.terminal = "connected"
        self.terminal_error = 1
        self._listeners: list[StateListener] = []

    @property
    def stale(self) -> bool:
        """True whenever new orders are blocked for the feed's sake: silent, terminal not
        connected, or trading not allowed in the terminal."""
        return self.silent or not self.terminal_connected or not self.trade_allowed

    @property
    def orders_allowed(self) -> bool:
        """True when a new order may be sent: connected, fresh, terminal up, trading allowed."""
        return self.connected and not self.stale

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(state)`` after every change of connectivity, silence or terminal."""
        self._listeners.append(listener)

    def update(self, *, connected: bool | None = None, stale: bool | None = None,
               silent: bool | None = None, terminal_connected: bool | None = None,
               trade_allowed: bool | None = None, terminal: str | None = None,
               terminal_error: int | None = None) -> bool:
        """Set the given fields (``stale`` sets ``silent``); notify listeners if any changed.

        Returns
        -------
        bool
            True if something changed.
        """
        if silent is None:
            silent = stale
        changed = False
        for name, value in (("connected", connected), ("silent", silent),
                            ("terminal_connected", terminal_connected),
                            ("trade_allowed", trade_allowed), ("terminal", terminal),
                            ("terminal_error", terminal_error)):
            if value is not None and getattr(self, name) != value:
                setattr(self, name, value)
                changed = True
        if changed:
            for listener in list(self._listeners):
                try:
                    listener(self)
                except Exception:  # a listener's bug must not stop the feed
                    log.exception("feed state listener %r raised", listener)
        return changed

    def as_dict(self) -> dict:
        """A JSON-ready snapshot."""
        age = (time.monotonic_ns() - self.last_heartbeat_ns) if self.last_heartbeat_ns else None
        return {"connected": self.connected, "stale": self.stale, "silent": self.silent,
                "orders_allowed": self.orders_allowed, "session_id": self.session_id,
                "terminal": self.terminal, "terminal_error": self.terminal_error,
                "terminal_connected": self.terminal_connected,
                "trade_allowed": self.trade_allowed, "last_heartbeat_age_ns": age}


class Feed(ABC):
    """Base class of every tick feed: rings, counters, state, one tick handler, a lifecycle.

    Parameters
    ----------
    symbols : sequence of str
        The symbols this feed delivers; symbol ids are their positions in this sequence unless
        a subclass maps them otherwise.
    ring_capacity : int, optional
        Ticks each per-symbol ring keeps.

    Raises
    ------
    ValueError
        If ``symbols`` is empty or names a symbol twice.
    """

    def __init__(self, symbols: Sequence[str],
                 ring_capacity: int = DEFAULT_RING_CAPACITY) -> None:
        symbols = tuple(symbols)
        if not symbols:
            raise ValueError(f"{type(self).__name__}: no symbols given; pass at least one symbol")
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"{type(self).__name__}: a symbol is listed twice in {symbols}")
        self.symbols = symbols
        self.rings: dict[str, TickRing] = {
            name: TickRing(ring_capacity, name, i) for i, name in enumerate(symbols)}
        self.stats = FeedStats()
        self.state = FeedState()
        self._handler: TickHandler | None = None
        self.delivering_backfill = False
        """True while the handler is called for ticks recovered late (after a gap); a handler
        may skip new orders on them. Only the ZeroMQ feed ever sets it."""
        self._task: asyncio.Task | None = None
        self._finished: asyncio.Event | None = None  # created on the running loop

    # -- consumers ------------------------------------------------------------------------
    def on_tick(self, handler: TickHandler | None) -> None:
        """Set the per-tick handler (``None`` removes it); see the module docstring."""
        self._handler = handler

    def ring(self, symbol: str) -> TickRing:
        """The ring of ``symbol``.

        Raises
        ------
        KeyError
            If this feed does not deliver ``symbol`` (the message lists those it does).
        """
        try:
            return self.rings[symbol]
        except KeyError:
            raise KeyError(f"{type(self).__name__} delivers no symbol {symbol!r}; it delivers "
                           f"{list(self.symbols)}") from None

    def _deliver(self, ring: TickRing, index: int) -> None:
        """Count a tick that landed in ``ring`` at ``index`` and hand it to the handler."""
        self.stats.received += 1
        handler = self._handler
        if handler is not None:
            try:
                handler(ring, index)
            except Exception as exc:  # the feed outlives a failing chain
                self.stats.handler_errors += 1
                self.stats.last_handler_error = exc

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Begin delivering ticks in a background task on the running loop.

        Raises
        ------
        RuntimeError
            If the feed is already running.
        """
        if self._task is not None and not self._task.done():
            raise RuntimeError(f"{type(self).__name__} is already running; stop it first")
        self._finished = asyncio.Event()
        await self._open()
        self.state.update(connected=True)
        self._task = asyncio.get_running_loop().create_task(self._guarded_run())

    async def _guarded_run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s stopped on an unexpected error", type(self).__name__)
            self.stats.drop("feed_error")
        finally:
            self.state.update(connected=False)
            if self._finished is not None:
                self._finished.set()

    async def stop(self) -> None:
        """Stop delivering and release the source (safe to call twice or before start)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self._close()
        self.state.update(connected=False)

    async def wait_finished(self, timeout: float | None = None) -> None:
        """Wait until a finite feed has delivered everything (or was stopped).

        Raises
        ------
        RuntimeError
            If the feed was never started.
        asyncio.TimeoutError
            If ``timeout`` seconds passed first.
        """
        if self._finished is None:
            raise RuntimeError(f"{type(self).__name__} was never started; await start() first")
        await asyncio.wait_for(self._finished.wait(), timeout)

    @property
    def running(self) -> bool:
        """True while the background task runs."""
        return self._task is not None and not self._task.done()

    async def __aenter__(self) -> Feed:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- for subclasses -------------------------------------------------------------------
    async def _open(self) -> None:  # noqa: B027 (an optional hook, empty by default)
        """Acquire the source (sockets, files) before the task starts; default: nothing."""

    async def _close(self) -> None:  # noqa: B027 (an optional hook, empty by default)
        """Release the source; default: nothing."""

    @abstractmethod
    async def _run(self) -> None:
        """Deliver ticks until the source ends or the task is cancelled."""

    def describe(self) -> dict:
        """A JSON-ready snapshot: kind, symbols, per-ring counts, stats and state."""
        return {"feed": type(self).__name__, "symbols": list(self.symbols),
                "ticks": {s: r.count for s, r in self.rings.items()},
                "stats": self.stats.as_dict(), "state": self.state.as_dict()}


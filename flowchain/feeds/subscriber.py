"""The ZeroMQ feed: the bridge's PUB -> the node's per-symbol tick rings, on the event loop.

The SUB socket's file descriptor is watched with ``loop.add_reader`` and drained with
non-blocking ``recv_multipart`` until ``zmq.Again``: one loop wake-up per burst and no future or
``await`` per message (``zmq.asyncio`` costs about 60 us more per message on this machine; see
docs/benchmarks.md). Each tick frame is validated and its 60-byte MT5 record copied straight into the
symbol's :class:`~flowchain.feeds.ring.TickRing`, then the per-tick handler runs. A TICK_BATCH
frame (several ticks from one poll of the terminal) is delivered tick by tick the same way.

Protocol duties (docs/protocol.md, "Sequence, gaps, restarts, staleness"):

* **Gap** (a tick with ``seq > last + 1``, or a heartbeat with ``last_seq > last``): a
  BACKFILL_REQUEST for ``last+1 .. seq-1`` goes out on a DEALER to the bridge's ROUTER. Until it
  is answered, that symbol's live ticks are *held* (in a preallocated buffer, not the ring);
  the response's ticks are delivered first, then the held ones, in seq order, each exactly once
  (``feed.delivering_backfill`` is True while recovered ticks are delivered). A response cut at
  the batch limit is followed by a request for the rest. Ticks the bridge no longer has, or a
  request unanswered after its retries, are counted in ``stats.unrecovered``, never invented.
* **Duplicate** (``seq <= last``): dropped, counted as ``duplicate``.
* **Absurd jumps**: a tick whose seq is more than ``max_seq_jump`` ahead of the last one, or
  whose ``time_msc`` is more than ``max_time_jump`` seconds ahead of what the symbol's last
  tick and the time since allow (or 14 hours past the wall clock, the widest server time
  zone), is refused and counted (``seq_jump``, ``future_time``): it moves neither the seq nor
  the time cursor, and the next good tick is delivered as usual. (A refused future time with
  the next seq still uses up that seq: no gap is opened for it.) When ``seq_jump_confirm``
  consecutive frames all jump the same way, the jump is real (the bridge lost that many): it
  is taken as a gap.
* **Restart** (a new ``session_id``): counted in ``stats.restarts``; held ticks of the old
  session are delivered, and every symbol starts again from seq 1. For each symbol that had
  ticks, a BACKFILL_SINCE with the time of its last tick asks the new session for the ticks
  the terminal made in between (the new session's live ticks are held meanwhile); they are
  delivered first, each with seq :data:`RESTART_SEQ_BASE` + its index among the terminal's
  ticks of its millisecond (they belong to no session: that identity is theirs alone, and the
  same if a tick is ever recovered twice). A restart whose hole cannot be asked for is counted
  in ``stats.unrecovered_restarts``.
* **Staleness**: a symbol without any frame for ``stale_after`` heartbeat intervals is silent;
  ``feed.state.silent`` is True while any symbol is, and ``feed.state.stale`` (what blocks new
  orders) while any is silent or the terminal is not connected or refuses trading.
* **Every state change is logged once** (logger ``flowchain.feeds.subscriber``): a symbol
  silent or fresh again, the terminal's state (with its MT5 error), a bridge restart and what
  its backfill recovered, gaps (at most one line a second) and absurd frames refused.
* **Malformed input** never raises into the loop: every frame is counted under a reason (the
  :data:`flowchain_bridge.wire.REJECT_REASONS` plus ``parts`` for a message that is not
  ``[topic, body]``). A one-part message takes the next message's first part with it (the
  framing realigns at once); the tick lost that way comes back through the gap it leaves.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import zmq
from flowchain_bridge import wire
from flowchain_bridge.ticks import TICK_DTYPE

from flowchain.feeds.base import DEFAULT_RING_CAPACITY, Feed, FeedState
from flowchain.feeds.ring import TickRing

log = logging.getLogger(__name__)

SocketSetup = Callable[[zmq.Socket], None]
"""Called on each socket before it connects (apply CurveZMQ client keys here)."""

_FRAME_SIZE = wire.TICK_FRAME_SIZE
_HEAD = wire.TICK_HEAD.size
_VERSION = wire.PROTOCOL_VERSION
_TICK = int(wire.FrameType.TICK)
_BATCH = int(wire.FrameType.TICK_BATCH)
_UNPACK = wire.TICK_FRAME.unpack_from
_REC = wire.TICK_RECORD_SIZE
_VOLUME_MAX = (1 << 63) - 1
_INF = float("inf")
_TIME_MSC = wire.TICK_TIME_MSC
_RECORD_TIME = slice(40, 48)
"""Bytes of ``time_msc`` inside a 60-byte MT5 tick record."""
_WALL_AHEAD_MS = 14 * 3_600_000
"""How far past the node's wall clock a tick's time may be: MT5 stamps ticks in the trade
server's time zone, at most UTC+14."""
RESTART_SEQ_BASE = 1 << 62
"""Seq of a tick recovered across a bridge restart, plus its index within its millisecond: far
above any session's seqs, so (symbol, time_msc, seq) stays one tick's identity."""
_NOT_READY = wire.BackfillStatus.NOT_READY
_TERMINAL_ERROR = wire.BackfillStatus.TERMINAL_ERROR
_AUTH_FAILED = -6  # MetaTrader5.RES_E_AUTH_FAILED


def terminal_state(beat: wire.Heartbeat) -> str:
    """The terminal's state a heartbeat reports, one of :data:`flowchain.feeds.base.TERMINAL_STATES`."""
    if beat.state & wire.HeartbeatState.INITIALIZED:
        return "connected" if beat.connected else "server_disconnected"
    return "login_failed" if beat.last_error == _AUTH_FAILED else "disconnected"


class _Track:
    """Per-symbol protocol state: the last seq delivered, a pending backfill, held ticks."""

    __slots__ = ("ring", "bridge_id", "last", "joined", "heard_ns", "pending", "hold",
                 "hold_raw", "hold_seqs", "held", "stale", "time_limit", "seen_count",
                 "tick_ns", "last_msc", "jumps", "silent_since")

    def __init__(self, ring: TickRing, hold_capacity: int) -> None:
        self.ring = ring
        self.bridge_id = -1
        self.last = 0
        self.joined = False
        """False until the first frame; then ``last == 0`` means "expect 1", not "joined"."""
        self.heard_ns = 0
        self.pending: _Backfill | None = None
        self.hold = np.zeros(hold_capacity, dtype=TICK_DTYPE)
        self.hold_raw = memoryview(self.hold.view(np.uint8))
        self.hold_seqs: list[int] = []
        self.held = 0
        self.stale = False
        self.time_limit = (time.time_ns() // 1_000_000) + _WALL_AHEAD_MS
        """The latest ``time_msc`` a tick may have (refreshed by the clock check)."""
        self.seen_count = 0
        self.tick_ns = 0
        self.last_msc = 0
        self.jumps = 0
        """Consecutive frames refused as ``seq_jump``."""
        self.silent_since = 0


class _Backfill:
    """One outstanding backfill request: a seq range, or (``since``) a restart's hole."""

    __slots__ = ("req_id", "from_seq", "to_seq", "deadline_ns", "tries", "since", "recovered")

    def __init__(self, req_id: int, from_seq: int, to_seq: int, deadline_ns: int,
                 since: tuple[int, int] | None = None) -> None:
        self.req_id = req_id
        self.from_seq = from_seq
        self.to_seq = to_seq
        self.deadline_ns = deadline_ns
        self.tries = 1
        self.since = since
        """``(time_msc, ticks held at that ms)`` of the last tick before a restart."""
        self.recovered = 0
        """Ticks the earlier parts of this restart backfill delivered."""


class ZmqFeed(Feed):
    """Ticks from the bridge over ZeroMQ, with gap backfill, restart and staleness detection.

    Parameters
    ----------
    endpoint : str
        The bridge's PUB endpoint, e.g. ``tcp://127.0.0.1:5555``.
    symbols : sequence of str
        Symbols to subscribe to (topics ``T<symbol>\\0`` and ``H<symbol>\\0``).
    backfill_endpoint : str or None, optional
        The bridge's ROUTER endpoint; ``None`` disables backfill (gaps are then counted as
        ``unrecovered`` at once).
    heartbeat_interval : float, optional
        The bridge's heartbeat interval in seconds (0.25 by protocol).
    stale_after : float, optional
        Intervals without a frame before a symbol is stale (3 by protocol).
    backfill_timeout : float, optional
        Seconds to wait for a backfill response before resending it.
    backfill_tries : int, optional
        Requests sent for one range before its ticks are counted unrecovered.
    hold_capacity : int, optional
        Live ticks of one symbol held while its backfill is pending; beyond that the backfill
        is abandoned (its ticks counted unrecovered) and live delivery resumes.
    rcvhwm : int, optional
        The SUB socket's receive high-water mark (messages).
    max_batch : int, optional
        Messages drained per loop wake-up before yielding to other callbacks.
    context : zmq.Context, optional
        The ZeroMQ context (default: the process-wide instance).
    socket_setup : callable, optional
        ``setup(socket)`` before connecting, e.g. to set CurveZMQ keys.
    ring_capacity : int, optional
        Ticks each ring keeps.
    max_seq_jump : int, optional
        A seq further ahead than this of the symbol's last one is refused as ``seq_jump``.
    seq_jump_confirm : int, optional
        Consecutive jumping frames after which the jump is taken as real (a gap).
    max_time_jump : float, optional
        Seconds a tick's ``time_msc`` may run ahead of the symbol's last tick time plus the
        time elapsed since it arrived; beyond that it is refused as ``future_time``.

    Raises
    ------
    ValueError
        If a symbol cannot be a topic, or a number is out of range.
    """

    def __init__(self, endpoint: str, symbols: Sequence[str],
                 backfill_endpoint: str | None = None, *, heartbeat_interval: float = 0.25,
                 stale_after: float = 3.0, backfill_timeout: float = 1.0, backfill_tries: int = 3,
                 hold_capacity: int = 16_384, rcvhwm: int = 1_000_000, max_batch: int = 4096,
                 context: zmq.Context | None = None,
                 socket_setup: SocketSetup | None = None,
                 ring_capacity: int = DEFAULT_RING_CAPACITY, max_seq_jump: int = 1 << 24,
                 seq_jump_confirm: int = 16, max_time_jump: float = 300.0) -> None:
        super().__init__(symbols, ring_capacity)
        for name, value in (("heartbeat_interval", heartbeat_interval),
                            ("stale_after", stale_after), ("backfill_timeout", backfill_timeout),
                            ("backfill_tries", backfill_tries), ("hold_capacity", hold_capacity),
                            ("max_batch", max_batch), ("max_seq_jump", max_seq_jump),
                            ("seq_jump_confirm", seq_jump_confirm),
                            ("max_time_jump", max_time_jump)):
            if not value > 0:
                raise ValueError(f"ZmqFeed({endpoint}): {name} must be positive, got {value}")
        self.endpoint = endpoint
        self.backfill_endpoint = backfill_endpoint
        self.heartbeat_interval = heartbeat_interval
        self.stale_after = stale_after
        self.backfill_timeout = backfill_timeout
        self.backfill_tries = backfill_tries
        self.rcvhwm = rcvhwm
        self.max_batch = max_batch
        self.max_seq_jump = max_seq_jump
        self.seq_jump_confirm = seq_jump_confirm
        self.max_time_jump_ms = int(max_time_jump * 1000)
        self._gap_log_ns = 0
        self._gaps_unlogged = 0
        self._future_log_ns = 0
        self._context = context
        self._socket_setup = socket_setup
        self._tracks: dict[bytes, _Track] = {}
        self._beats: dict[bytes, _Track] = {}
        self._all: list[_Track] = []
        self._by_symbol: dict[str, _Track] = {}
        for symbol in self.symbols:
            try:
                t_topic, h_topic = wire.tick_topic(symbol), wire.heartbeat_topic(symbol)
            except wire.FrameError as exc:
                raise ValueError(
                    f"ZmqFeed: symbol {symbol!r} cannot be subscribed: {exc}") from None
            track = _Track(self.rings[symbol], hold_capacity)
            self._tracks[t_topic] = self._beats[h_topic] = track
            self._all.append(track)
            self._by_symbol[symbol] = track
        self._by_request: dict[int, _Track] = {}
        self._req_ids = itertools.count(1)
        self._session = 0
        self._sub: zmq.Socket | None = None
        self._dealer: zmq.Socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_scheduled = False
        self._logged_state = (False, "connected", True)
        self.state.add_listener(self._log_state)

    # -- public state ---------------------------------------------------------------------
    def symbol_stale(self, symbol: str) -> bool:
        """True if ``symbol`` has been silent for ``stale_after`` heartbeat intervals.

        Raises
        ------
        KeyError
            If this feed does not subscribe to ``symbol``.
        """
        self.ring(symbol)  # raises the KeyError that names the subscribed symbols
        return self._by_symbol[symbol].stale

    @property
    def session_id(self) -> int:
        """The bridge session the feed follows (0 before the first frame)."""
        return self._session

    @property
    def backfills_pending(self) -> int:
        """Symbols waiting for a backfill response."""
        return sum(1 for t in self._all if t.pending is not None)

    # -- lifecycle ------------------------------------------------------------------------
    async def _open(self) -> None:
        ctx = self._context or zmq.Context.instance()
        self._loop = asyncio.get_running_loop()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, self.rcvhwm)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.MAXMSGSIZE, wire.MAX_MESSAGE_BYTES)
        if self._socket_setup is not None:
            self._socket_setup(sub)
        for topic in itertools.chain(self._tracks, self._beats):
            sub.setsockopt(zmq.SUBSCRIBE, topic)
        sub.connect(self.endpoint)
        self._sub = sub
        if self.backfill_endpoint is not None:
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.setsockopt(zmq.MAXMSGSIZE, wire.MAX_MESSAGE_BYTES)
            if self._socket_setup is not None:
                self._socket_setup(dealer)
            dealer.connect(self.backfill_endpoint)
            self._dealer = dealer
            self._loop.add_reader(dealer.getsockopt(zmq.FD), self._on_dealer_readable)
        now = time.monotonic_ns()
        for track in self._all:
            track.heard_ns = now
        self._loop.add_reader(sub.getsockopt(zmq.FD), self._on_readable)
        self._loop.call_soon(self._on_readable)  # the FD is edge-triggered: drain what is queued

    async def _close(self) -> None:
        for sock in (self._sub, self._dealer):
            if sock is not None and not sock.closed:
                if self._loop is not None:
                    self._loop.remove_reader(sock.getsockopt(zmq.FD))
                sock.close(0)
        self._sub = self._dealer = None

    async def _run(self) -> None:
        """Watch staleness and backfill deadlines; the ticks arrive through the reader."""
        period = min(self.heartbeat_interval / 4.0, self.backfill_timeout / 4.0)
        while True:
            await asyncio.sleep(period)
            self._check_clock(time.monotonic_ns())

    def _check_clock(self, now: int) -> None:
        limit = int(self.stale_after * self.heartbeat_interval * 1e9)
        any_stale = False
        wall_limit = time.time_ns() // 1_000_000 + _WALL_AHEAD_MS
        for symbol, track in self._by_symbol.items():
            stale = now - track.heard_ns > limit
            if stale != track.stale:
                self._log_silence(symbol, track, stale, now)
            track.stale = stale
            any_stale = any_stale or stale
            ring = track.ring
            if ring.count != track.seen_count:  # ticks came: the time cursor moved
                track.seen_count = ring.count
                track.tick_ns = now
                track.last_msc = int(ring.ticks["time_msc"][ring.head])
            if track.seen_count:
                ahead = track.last_msc + (now - track.tick_ns) // 1_000_000 + self.max_time_jump_ms
                track.time_limit = min(ahead, wall_limit)
            else:
                track.time_limit = wall_limit
            pending = track.pending
            if pending is not None and now > pending.deadline_ns:
                if pending.tries >= self.backfill_tries:
                    self._give_up(track, "backfill_timeout")
                else:
                    pending.tries += 1
                    pending.deadline_ns = now + int(self.backfill_timeout * 1e9)
                    self._send_backfill(track, pending)
        self.state.update(silent=any_stale)

    # -- what the operator reads -------------------------------------------------------------
    def _log_silence(self, symbol: str, track: _Track, stale: bool, now: int) -> None:
        if stale:
            track.silent_since = track.heard_ns
            log.warning("feed %s: %s silent for %.2f s (no tick or heartbeat): stale, new orders "
                        "blocked", self.endpoint, symbol, (now - track.heard_ns) / 1e9)
        else:
            log.warning("feed %s: %s fresh again after %.2f s of silence", self.endpoint, symbol,
                        (now - track.silent_since) / 1e9)

    def _log_state(self, state: FeedState) -> None:
        """Log the feed-wide changes the operator must hear of: silence, the terminal's state."""
        now = (state.silent, state.terminal, state.trade_allowed)
        before, self._logged_state = self._logged_state, now
        if now[0] != before[0]:
            log.warning("feed %s: %s", self.endpoint, "stale: a symbol went silent, new orders "
                        "blocked" if state.silent else "every symbol fresh again")
        if now[1] != before[1]:
            text = {"connected": "connected to its trade server",
                    "server_disconnected": "running but disconnected from its trade server",
                    "login_failed": "refusing the login (check login, password, server)",
                    "disconnected": "not reachable by the bridge (terminal closed or starting)"}
            log.warning("feed %s: MT5 terminal %s%s%s", self.endpoint, text[state.terminal],
                        "" if state.terminal == "connected" else
                        f" (MT5 error {state.terminal_error}); new orders blocked",
                        "" if before[1] == "connected" or state.terminal != "connected" else
                        "; orders allowed again")
        if now[1] == "connected" and not state.trade_allowed and (now[1] != before[1] or before[2]):
            log.warning("feed %s: the terminal disallows algorithmic trading: new orders blocked",
                        self.endpoint)
        elif now[1] == before[1] == "connected" and state.trade_allowed and not before[2]:
            log.warning("feed %s: the terminal allows algorithmic trading again", self.endpoint)

    def _log_gap(self, symbol: str, first: int, last: int) -> None:
        now = time.monotonic_ns()
        if now - self._gap_log_ns < 1_000_000_000:
            self._gaps_unlogged += 1
            return
        more = f" (and {self._gaps_unlogged} more gaps since the last line)" if self._gaps_unlogged else ""
        self._gap_log_ns, self._gaps_unlogged = now, 0
        log.warning("feed %s: %s gap, seq %d..%d missing (%d ticks): %s%s", self.endpoint, symbol,
                    first, last, last - first + 1,
                    "asking the bridge" if self._dealer is not None else "counted unrecovered", more)

    # -- the SUB socket (hot path) -----------------------------------------------------------
    def _on_readable(self) -> None:
        self._drain_scheduled = False
        sub = self._sub
        if sub is None:
            return
        recv = sub.recv
        option = sub.getsockopt
        on_frame = self._on_frame
        try:
            for _ in range(self.max_batch):
                # Read until zmq.Again. Not getsockopt(EVENTS) after a tick, although it costs
                # less than the failing recv: measured, it delays 5-15% of ticks by 50-100 us
                # at 20,000 ticks/s (the p99 doubles), where reading to Again never does.
                try:
                    topic = recv(zmq.NOBLOCK)
                except zmq.Again:
                    return
                try:  # the body as a Frame: its ``more`` keeps the framing honest without a
                    body = recv(zmq.NOBLOCK, copy=False)  # getsockopt(RCVMORE) call
                except zmq.Again:
                    self.stats.reject("parts", self.endpoint, "1 message part, 2 expected")
                    continue
                if body.more:
                    extra = 0
                    while option(zmq.RCVMORE):
                        recv(zmq.NOBLOCK)
                        extra += 1
                    self.stats.reject("parts", self.endpoint,
                                      f"{2 + extra} message parts, 2 expected")
                    continue
                on_frame(topic, body.bytes)
        except Exception:  # a bug here must not kill the loop's reader
            log.exception("ZmqFeed(%s): unexpected error while draining the SUB socket",
                          self.endpoint)
            self.stats.drop("internal_error")
        if not self._drain_scheduled and self._loop is not None:
            self._drain_scheduled = True  # more may be queued: the FD will not fire again
            self._loop.call_soon(self._on_readable)

    def on_message(self, parts: list[bytes]) -> None:
        """Handle one ``[topic, body]`` message as the reader does (tests, benchmarks, and
        transports other than this SUB socket call it directly); never raises on bad input."""
        if len(parts) != 2:
            self.stats.reject("parts", self.endpoint, f"{len(parts)} message parts, 2 expected")
            return
        self._on_frame(parts[0], parts[1])

    def _on_frame(self, topic: bytes, frame: bytes) -> None:
        track = self._tracks.get(topic)
        if track is None:
            track = self._beats.get(topic)
            if track is None:
                self._unknown_topic(topic)
            else:
                self._on_heartbeat(track, frame)
            return
        if len(frame) != _FRAME_SIZE or frame[0] != _VERSION or frame[1] != _TICK:
            if len(frame) > 1 and frame[1] == _BATCH:
                self._on_batch(track, frame)
            else:
                self._reject_tick(frame)
            return
        values = _UNPACK(frame)
        bid, ask, last, volume_real = values[6], values[7], values[8], values[12]
        if not (0.0 < bid <= ask < _INF and 0.0 <= last < _INF and 0.0 <= volume_real < _INF
                and values[9] <= _VOLUME_MAX):  # the quote rules, inlined (wire.decode_tick_into)
            self._reject_tick(frame, track)  # wire.decode_tick names the rule it breaks
            return
        track.heard_ns = time.monotonic_ns()
        if track.stale:
            self._fresh(track)
        if values[3] != self._session:
            self._new_session(values[3])
        seq = values[4]
        if values[_TIME_MSC] > track.time_limit:
            self._future_time(track, seq, values[_TIME_MSC])
            return
        if track.pending is None and seq == track.last + 1:
            track.last = seq
            ring = track.ring
            self._deliver(ring, ring.append_record(frame[_HEAD:], seq))
            return
        track.bridge_id = values[2]
        self._out_of_order(track, frame[_HEAD:], seq)

    def _out_of_order(self, track: _Track, record: bytes | memoryview, seq: int) -> None:
        """Place a 60-byte ``record`` whose seq is not simply the next one (or held behind a
        pending backfill): hold, drop as duplicate, join, or open a gap."""
        if track.pending is not None:
            if seq <= track.last or (track.hold_seqs and seq <= track.hold_seqs[-1]):
                self.stats.drop("duplicate")
            elif track.held >= len(track.hold):
                self._give_up(track, "hold_full")
                self._out_of_order(track, record, seq)
            else:
                i = track.held
                track.hold_raw[i * _REC:(i + 1) * _REC] = record
                track.hold_seqs.append(seq)
                track.held += 1
            return
        if seq <= track.last:
            self.stats.drop("duplicate")
            return
        if seq == track.last + 1 or (track.last == 0 and not track.joined):
            # In order, or the first tick after joining mid-stream: nothing to recover.
            track.joined = True
            track.last = seq
            track.jumps = 0
            ring = track.ring
            self._deliver(ring, ring.append_record(record, seq))
            return
        if seq - track.last > self.max_seq_jump and not self._jump_confirmed(track, seq):
            return
        self.stats.gaps += 1
        self.stats.gap_ticks += seq - track.last - 1
        self._log_gap(self.symbols[track.ring.symbol_id], track.last + 1, seq - 1)
        if self._dealer is None:
            self.stats.unrecovered += seq - track.last - 1
            track.last = seq
            ring = track.ring
            self._deliver(ring, ring.append_record(record, seq))
            return
        track.hold_raw[0:_REC] = record
        track.hold_seqs.append(seq)
        track.held = 1
        self._request(track, track.last + 1, seq - 1)

    def _jump_confirmed(self, track: _Track, seq: int) -> bool:
        """A seq absurdly far ahead: refuse it, unless ``seq_jump_confirm`` frames in a row say so."""
        track.jumps += 1
        if track.jumps >= self.seq_jump_confirm:
            log.warning("feed %s: %s seq jumped from %d to %d in %d frames in a row: taken as real",
                        self.endpoint, self.symbols[track.ring.symbol_id], track.last, seq, track.jumps)
            track.jumps = 0
            return True
        self.stats.reject("seq_jump", self.endpoint,
                          f"{self.symbols[track.ring.symbol_id]} seq {seq} after {track.last} "
                          f"(more than {self.max_seq_jump} ahead)")
        if track.jumps == 1:
            log.warning("feed %s: %s tick with seq %d refused: %d ahead of the last (%d)",
                        self.endpoint, self.symbols[track.ring.symbol_id], seq, seq - track.last,
                        track.last)
        return False

    def _future_time(self, track: _Track, seq: int, time_msc: int) -> None:
        """Refuse a tick dated absurdly far ahead; its seq (when next) is used up, nothing else moves."""
        symbol = self.symbols[track.ring.symbol_id]
        self.stats.reject("future_time", self.endpoint,
                          f"{symbol} seq {seq} time_msc {time_msc}, latest allowed {track.time_limit}")
        now = time.monotonic_ns()
        if now - self._future_log_ns >= 1_000_000_000:  # a clock gone wrong: a line a second
            self._future_log_ns = now
            log.warning("feed %s: %s tick seq %d refused: time_msc %d is %.1f s past the latest "
                        "plausible time (%d refused so far)", self.endpoint, symbol, seq, time_msc,
                        (time_msc - track.time_limit) / 1000, self.stats.rejects["future_time"])
        if track.pending is None and seq == track.last + 1:
            track.last = seq

    def _on_batch(self, track: _Track, frame: bytes) -> None:
        """A TICK_BATCH (what the bridge publishes when one poll found several ticks)."""
        try:
            batch = wire.decode_batch(frame)
        except wire.FrameError as exc:
            self.stats.reject(exc.reason, self.endpoint, str(exc))
            return
        track.heard_ns = time.monotonic_ns()
        if track.stale:
            self._fresh(track)
        if batch.session_id != self._session:
            self._new_session(batch.session_id)
        track.bridge_id = batch.symbol_id
        raw = memoryview(batch.records.view(np.uint8))
        ring = track.ring
        seq = batch.first_seq
        refusals = batch.refusals
        times = batch.records["time_msc"]
        late = bool((times > track.time_limit).any())
        for i in range(len(batch.records)):
            record = raw[i * _REC:(i + 1) * _REC]
            if refusals is not None and refusals[i] is not None:
                self.stats.reject(refusals[i], self.endpoint, f"batch tick seq {seq}")
                self._spend(track, seq)
            elif late and times[i] > track.time_limit:
                self._future_time(track, seq, int(times[i]))
            elif track.pending is None and seq == track.last + 1:
                track.last = seq
                self._deliver(ring, ring.append_record(record, seq))
            else:
                self._out_of_order(track, record, seq)
            seq += 1

    def _reject_tick(self, frame: bytes, track: _Track | None = None) -> None:
        try:
            wire.decode_tick(frame)
        except wire.FrameError as exc:
            self.stats.reject(exc.reason, self.endpoint, str(exc))
            if track is not None and exc.reason in wire.TICK_REFUSALS:
                values = _UNPACK(frame)
                if values[3] == self._session:
                    self._spend(track, values[4])
            return
        self.stats.reject("bad_field", self.endpoint, "tick failed the fast check")

    def _spend(self, track: _Track, seq: int) -> None:
        """A well-formed tick refused for its quote arrived: its seq is spent, not a gap (out of
        order, it is left to the gap it leaves, whose backfill refuses it again)."""
        if track.pending is None and (seq == track.last + 1
                                      or (track.last == 0 and not track.joined)):
            track.joined = True
            track.last = seq

    def _unknown_topic(self, topic: bytes) -> None:
        try:
            kind, symbol = wire.parse_topic(topic)
        except wire.FrameError as exc:
            self.stats.reject(exc.reason, self.endpoint, str(exc))
            return
        self.stats.drop("unknown_symbol")

    def _on_heartbeat(self, track: _Track, frame: bytes) -> None:
        try:
            beat = wire.decode_heartbeat(frame)
        except wire.FrameError as exc:
            self.stats.reject(exc.reason, self.endpoint, str(exc))
            return
        self.stats.heartbeats += 1
        track.heard_ns = self.state.last_heartbeat_ns = time.monotonic_ns()
        if track.stale:
            self._fresh(track)
        if beat.session_id != self._session:
            self._new_session(beat.session_id)
        track.bridge_id = beat.symbol_id
        self.state.update(terminal_connected=beat.connected and bool(
            beat.state & wire.HeartbeatState.INITIALIZED), trade_allowed=beat.trade_allowed,
            terminal=terminal_state(beat), terminal_error=beat.last_error)
        if beat.last_seq > track.last and track.pending is None:
            if track.last == 0 and not track.joined:
                track.joined = True
                track.last = beat.last_seq  # joined mid-stream: start from here
                return
            if beat.last_seq - track.last > self.max_seq_jump and not self._jump_confirmed(track, beat.last_seq):
                return
            self.stats.gaps += 1
            self._log_gap(self.symbols[track.ring.symbol_id], track.last + 1, beat.last_seq)
            self.stats.gap_ticks += beat.last_seq - track.last
            if self._dealer is None:
                self.stats.unrecovered += beat.last_seq - track.last
                track.last = beat.last_seq
            else:
                self._request(track, track.last + 1, beat.last_seq)

    def _fresh(self, track: _Track) -> None:
        track.stale = False
        self._log_silence(self.symbols[track.ring.symbol_id], track, False, time.monotonic_ns())
        if not any(t.stale for t in self._all):
            self.state.update(silent=False)

    def _new_session(self, session_id: int) -> None:
        old, self._session = self._session, session_id
        self.state.session_id = session_id
        if old == 0:
            log.info("feed %s: following bridge session %016x", self.endpoint, session_id)
            return
        self.stats.restarts += 1
        asked = []
        for symbol, track in self._by_symbol.items():
            if track.pending is not None:
                self._give_up(track, "restart", backfill=False)
            track.last = 0
            track.joined = True  # the new session counts from 1: a missing 1 is a gap
            track.jumps = 0
            if track.ring.count:  # the terminal's ticks since this one are the hole to fill
                since = self._last_position(track.ring)
                if self._dealer is None:
                    self.stats.unrecovered_restarts += 1
                else:
                    self._request_since(track, since)
                    asked.append(symbol)
        log.warning("feed %s: the bridge restarted (session %016x -> %016x)%s", self.endpoint,
                    old, session_id, f"; asking it for the ticks missed by {', '.join(asked)}"
                    if asked else "")

    @staticmethod
    def _last_position(ring: TickRing) -> tuple[int, int]:
        """``(time_msc, ticks of that ms)`` of the ring's newest tick(s) (a burst of one
        millisecond can be thousands of ticks: the whole ring is looked at, once per restart)."""
        times = ring.window(min(ring.count, ring.capacity))["time_msc"]
        newest = int(times[-1])
        other = np.flatnonzero(times != newest)
        return newest, len(times) - (int(other[-1]) + 1 if len(other) else 0)

    # -- backfill -------------------------------------------------------------------------
    def _request(self, track: _Track, from_seq: int, to_seq: int) -> None:
        pending = _Backfill(next(self._req_ids), from_seq, to_seq,
                            time.monotonic_ns() + int(self.backfill_timeout * 1e9))
        track.pending = pending
        self._by_request[pending.req_id] = track
        self._send_backfill(track, pending)

    def _request_since(self, track: _Track, since: tuple[int, int], recovered: int = 0) -> None:
        pending = _Backfill(next(self._req_ids), 0, 0,
                            time.monotonic_ns() + int(self.backfill_timeout * 1e9), since)
        pending.recovered = recovered
        track.pending = pending
        self._by_request[pending.req_id] = track
        self._send_backfill(track, pending)

    def _send_backfill(self, track: _Track, pending: _Backfill) -> None:
        if pending.since is not None:
            frame = wire.encode_backfill_since(wire.BackfillSince(
                pending.req_id, self._session, self.symbols[track.ring.symbol_id],
                pending.since[0], pending.since[1]))
        else:
            frame = wire.encode_backfill_request(wire.BackfillRequest(
                pending.req_id, self._session, max(track.bridge_id, 0), pending.from_seq,
                pending.to_seq))
        try:
            self._dealer.send(frame, zmq.NOBLOCK)
        except zmq.ZMQError:
            self.stats.drop("backfill_send_failed")  # retried at the deadline
        if self._loop is not None:
            # A send may consume the FD's edge for a reply already queued: look once more.
            self._loop.call_soon(self._on_dealer_readable)

    def _on_dealer_readable(self) -> None:
        dealer = self._dealer
        if dealer is None:
            return
        try:
            for _ in range(self.max_batch):
                try:
                    parts = dealer.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    return
                self._on_backfill(parts[-1])
        except Exception:
            log.exception("ZmqFeed(%s): unexpected error on the backfill socket",
                          self.backfill_endpoint)
            self.stats.drop("internal_error")
        if self._loop is not None:
            self._loop.call_soon(self._on_dealer_readable)

    def _on_backfill(self, frame: bytes) -> None:
        try:
            resp = wire.decode_backfill_response(frame)
        except wire.FrameError as exc:
            self.stats.reject(exc.reason, str(self.backfill_endpoint), str(exc))
            return
        track = self._by_request.pop(resp.req_id, None)
        if track is None or track.pending is None or track.pending.req_id != resp.req_id:
            self.stats.drop("late_backfill")  # answered after a retry, a give-up or a restart
            return
        pending = track.pending
        if pending.since is not None:
            self._on_since(track, pending, resp)
            return
        if resp.status != wire.BackfillStatus.OK or resp.session_id != self._session:
            self._give_up(track, f"backfill_{resp.status.name.lower()}")
            return
        self.delivering_backfill = True
        try:
            raw = memoryview(resp.records.view(np.uint8))
            ring = track.ring
            seq = resp.first_seq
            if seq > track.last + 1:  # the bridge no longer had the oldest ones
                self.stats.unrecovered += seq - track.last - 1
                track.last = seq - 1
            refusals = resp.refusals
            for i in range(len(resp.records)):
                if seq == track.last + 1 and seq <= pending.to_seq:
                    track.last = seq
                    if refusals is not None and refusals[i] is not None:
                        self.stats.reject(refusals[i], str(self.backfill_endpoint),
                                          f"backfilled tick seq {seq}")
                    else:
                        self.stats.backfilled += 1
                        self._deliver(ring, ring.append_record(raw[i * _REC:(i + 1) * _REC], seq))
                else:
                    self.stats.drop("duplicate")
                seq += 1
        finally:
            self.delivering_backfill = False
        track.pending = None
        if track.last < pending.to_seq:  # cut at the batch limit: ask for the rest
            self._request(track, track.last + 1, pending.to_seq)
            return
        self._release_held(track)

    def _on_since(self, track: _Track, pending: _Backfill, resp: wire.BackfillResponse) -> None:
        """A restart backfill's answer: deliver the terminal's ticks of the hole (seqs from
        :data:`RESTART_SEQ_BASE`), ask
        for more when it was cut, then release the new session's held ticks."""
        if resp.status in (_NOT_READY, _TERMINAL_ERROR) and resp.session_id == self._session:
            if resp.status == _NOT_READY:
                pending.tries -= 1  # the bridge is still connecting: not a failed try
            self._by_request[pending.req_id] = track  # asked again at the deadline
            return
        if resp.status != wire.BackfillStatus.OK or resp.session_id != self._session:
            self._give_up(track, f"backfill_{resp.status.name.lower()}")
            return
        self.delivering_backfill = True
        ring = track.ring
        at_msc, index = pending.since  # the next tick of that millisecond is its index-th
        try:
            raw = memoryview(resp.records.view(np.uint8))
            times = resp.records["time_msc"].tolist()
            for i in range(len(times)):
                if times[i] != at_msc:
                    at_msc, index = times[i], 0
                seq = RESTART_SEQ_BASE + index
                index += 1
                if times[i] > track.time_limit:
                    self._future_time(track, seq, times[i])
                    continue
                self.stats.backfilled += 1
                self._deliver(ring, ring.append_record(raw[i * _REC:(i + 1) * _REC], seq))
        finally:
            self.delivering_backfill = False
        symbol = self.symbols[ring.symbol_id]
        track.pending = None
        recovered = pending.recovered + len(resp.records)
        if len(resp.records) >= wire.MAX_BATCH_TICKS:  # cut: ask for the rest
            self._request_since(track, self._last_position(ring), recovered)
            return
        log.warning("feed %s: %s recovered %d ticks the bridge restart would have missed",
                    self.endpoint, symbol, recovered)
        self._release_held(track)

    def _give_up(self, track: _Track, reason: str, backfill: bool = True) -> None:
        pending, track.pending = track.pending, None
        if pending is None:
            return
        self._by_request.pop(pending.req_id, None)
        self.stats.drop(reason)
        if pending.since is not None:
            self.stats.unrecovered_restarts += 1
            log.warning("feed %s: %s: the ticks between the last one before the bridge restart "
                        "and the new session could not be recovered (%s)", self.endpoint,
                        self.symbols[track.ring.symbol_id], reason)
            self._release_held(track, backfill)
            return
        missing = pending.to_seq - track.last
        if missing > 0:
            self.stats.unrecovered += missing
            track.last = pending.to_seq
        self._release_held(track, backfill)

    def _release_held(self, track: _Track, backfill: bool = True) -> None:
        """Deliver held ticks in order; a new gap among them starts a new backfill.

        With ``backfill`` False (the session ended) a gap among them is counted unrecovered.
        """
        seqs, held = track.hold_seqs, track.held
        ring, raw = track.ring, track.hold_raw
        self.delivering_backfill = True
        try:
            for i in range(held):
                seq = seqs[i]
                if seq <= track.last:
                    self.stats.drop("duplicate")
                    continue
                if seq > track.last + 1:
                    self.stats.gaps += 1
                    self.stats.gap_ticks += seq - track.last - 1
                if seq > track.last + 1 and not backfill:
                    self.stats.unrecovered += seq - track.last - 1
                elif seq > track.last + 1:
                    rest = held - i
                    track.hold[:rest] = track.hold[i:held]
                    del seqs[:i]
                    track.held = rest
                    self._request(track, track.last + 1, seq - 1)
                    return
                track.last = seq
                self._deliver(ring, ring.append_record(raw[i * _REC:(i + 1) * _REC], seq))
        finally:
            self.delivering_backfill = False
        seqs.clear()
        track.held = 0

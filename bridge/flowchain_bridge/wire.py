"""The bridge <-> node wire protocol: frame layouts, encoders and validating decoders.

Every frame is one ZeroMQ message part of fixed little-endian binary, opening with
``version:u8, type:u8``. Ticks and heartbeats travel on PUB/SUB as two parts ``[topic, body]``;
orders, backfill and account queries travel on DEALER/ROUTER as one part. The layouts are
documented in ``docs/protocol.md``; the ``struct.Struct`` objects below are the single source
of truth.

Decoders either return a value or raise :class:`FrameError` whose ``reason`` is one of
:data:`REJECT_REASONS` (short, stable codes that callers count with :class:`RejectCounts`).
They never raise anything else, whatever bytes they are given.

This module is imported by the Windows bridge: it needs nothing beyond the stdlib and numpy.
"""
from __future__ import annotations

import enum
import math
import struct
from typing import NamedTuple

import numpy as np

from flowchain_bridge.ticks import TICK_DTYPE, TICK_FAULTS, tick_fault, tick_faults

PROTOCOL_VERSION = 1
"""The version byte every frame opens with; a frame with another version is rejected."""

TICK_RECORD_SIZE = TICK_DTYPE.itemsize
"""Bytes of one MT5 tick record (60): tick frames and batches carry these bytes verbatim."""

MAX_SYMBOL_BYTES = 32
"""Longest symbol name (UTF-8 bytes) in a topic or an order request."""
MAX_COMMENT_BYTES = 32
"""Longest order comment (UTF-8 bytes); MT5 itself keeps 31 characters."""
MAX_BATCH_TICKS = 16384
"""Most ticks in one batch or backfill response (about 1 MiB)."""
MAX_MESSAGE_BYTES = 1 << 20
"""``zmq.MAXMSGSIZE`` of every socket that receives ticks, batches or backfill (the largest
frame, a full backfill response, is 983,076 bytes): a peer sending more is disconnected."""
MAX_REQUEST_BYTES = 4096
"""``zmq.MAXMSGSIZE`` of the bridge's sockets (requests are at most 152 bytes, subscriptions 35)."""


class FrameType(enum.IntEnum):
    """The second byte of every frame."""

    TICK = 1
    TICK_BATCH = 2
    HEARTBEAT = 3
    BACKFILL_REQUEST = 4
    BACKFILL_RESPONSE = 5
    ORDER_REQUEST = 6
    ORDER_ACK = 7
    ORDER_RESULT = 8
    BACKFILL_SINCE = 9
    ACCOUNT_QUERY = 10
    ACCOUNT_STATE = 11


class HeartbeatState(enum.IntFlag):
    """Bits of a heartbeat's ``state`` byte: the terminal as the bridge last saw it."""

    CONNECTED = 0x01
    """``terminal_info().connected``: the terminal is connected to its trade server."""
    TRADE_ALLOWED = 0x02
    """``terminal_info().trade_allowed``: algorithmic trading is enabled in the terminal."""
    INITIALIZED = 0x04
    """The bridge holds a live IPC session with the terminal (``initialize`` succeeded)."""


class BackfillStatus(enum.IntEnum):
    """Outcome of a backfill request."""

    OK = 0
    """The response holds ticks ``first_seq .. first_seq+count-1`` (see docs on eviction)."""
    GONE = 1
    """None of the requested ticks is in the bridge's history any more."""
    SESSION_MISMATCH = 2
    """The request named another bridge session: the bridge restarted."""
    UNKNOWN_SYMBOL = 3
    """The bridge streams no symbol with that id."""
    NOT_READY = 4
    """(BACKFILL_SINCE) The bridge has not positioned its stream on the terminal yet: ask again."""
    TERMINAL_ERROR = 5
    """(BACKFILL_SINCE) The terminal's ``copy_ticks_range`` failed: ask again."""


class AckStatus(enum.IntEnum):
    """What the bridge did on receiving an order request."""

    QUEUED = 0
    """New req_id: queued for the MT5 thread; a RESULT follows."""
    DUPLICATE_PENDING = 1
    """The req_id is already queued or executing: nothing new is sent; one RESULT follows."""
    DUPLICATE_DONE = 2
    """The req_id already has a result: nothing is sent; the cached RESULT follows."""
    REQ_ID_CONFLICT = 3
    """The req_id is known with *other* content (another order): this request is refused,
    nothing is sent; a RESULT with :attr:`OrderStatus.REQ_ID_CONFLICT` follows."""


class OrderStatus(enum.IntEnum):
    """How a RESULT came about; ``retcode`` then says what MT5 decided."""

    SENT = 0
    """``order_send`` answered; ``retcode`` and every other field are MT5's."""
    RECONCILED_FILLED = 1
    """``order_send`` gave TIMEOUT/IPC error/None, and a deal with the request's magic and
    comment was found: the order went through (``deal``/``order``/``price`` are the deal's)."""
    RECONCILED_ABSENT = 2
    """``order_send`` gave TIMEOUT/IPC error/None, and no position, order or deal with the
    request's magic and comment exists: the order did not go through; resend with a NEW req_id."""
    UNKNOWN = 3
    """``order_send`` failed and reconciliation could not run (terminal gone): the outcome is
    unknown; do not resend until a later reconciliation or an operator decides."""
    EXPIRED = 4
    """The request's deadline had passed when the MT5 thread took it: never sent."""
    INVALID = 5
    """The request failed the bridge's checks (unknown symbol, bad field): never sent."""
    CHECK_FAILED = 6
    """``order_check`` refused it (``retcode`` is the check's): never sent."""
    DISCONNECTED = 7
    """The terminal was not connected: never sent."""
    REQ_ID_CONFLICT = 8
    """The req_id is already held by a request with other content: this one was refused at
    once, never sent; the earlier request's outcome is untouched and never given to it."""
    OVERLOADED = 9
    """Refused at once, never sent: the orders ahead of it on the bridge would take it past its
    deadline (back-pressure on a slow terminal)."""


class AccountStatus(enum.IntEnum):
    """Outcome of an account query."""

    OK = 0
    """The figures are the terminal's, read when the query was served."""
    UNAVAILABLE = 1
    """The terminal could not be asked (not connected, IPC error): no figures."""


RESULT_FLAG_REPLAYED = 0x01
"""RESULT ``flags`` bit: this is the cached result of an earlier identical req_id."""
REQUEST_FLAG_RESEND = 0x0001
"""An ORDER_REQUEST flag: this req_id may have been sent before (to this bridge or to an
earlier run of it). A bridge that does not know the req_id then looks for the order in the
terminal (magic + comment) before anything else, and answers RECONCILED_FILLED if it is there."""

REJECT_REASONS: tuple[str, ...] = (
    "short",  # fewer bytes than the frame's fixed layout
    "length",  # more bytes than the layout, or a batch whose size disagrees with its count
    "version",  # first byte is not PROTOCOL_VERSION
    "unknown_type",  # second byte names no FrameType
    "wrong_type",  # a valid frame of another type than the decoder expects
    "nan_price",  # a NaN price or volume_real
    "inf_price",  # an infinite price or volume_real
    "non_positive_price",  # a tick's bid or ask <= 0, or its last < 0
    "crossed_price",  # a tick's bid > ask
    "bad_tick_volume",  # a tick's volume above int64 or its volume_real < 0
    "bad_topic",  # topic not `T<symbol>\0` / `H<symbol>\0`
    "bad_symbol",  # empty, too long, or not UTF-8
    "bad_volume",  # order volume not > 0
    "bad_field",  # an enum field (order type, filling, action, status) out of range
    "bad_count",  # batch/backfill count of 0 or above MAX_BATCH_TICKS
    "bad_time",  # a BACKFILL_SINCE time below 0
)
"""Every reason a decoder can give; counters are preallocated from this tuple."""

TICK_REFUSALS: tuple[str, ...] = ("nan_price", "inf_price", "non_positive_price", "crossed_price",
                                  "bad_tick_volume")
"""The reasons a well-formed tick is refused for (it breaks a quote rule of
:func:`flowchain_bridge.ticks.tick_fault`): the frame is sound, so its ``seq`` is spent, not a gap."""
_FAULT_REASONS = {"non_positive": "non_positive_price", "crossed": "crossed_price",
                  "volume_out_of_range": "bad_tick_volume"}
_VOLUME_MAX = (1 << 63) - 1
_INF = math.inf


class FrameError(ValueError):
    """A frame was malformed; ``reason`` is one of :data:`REJECT_REASONS`.

    Parameters
    ----------
    reason
        The stable reason code, counted by the caller.
    detail
        A human sentence: what was received and what was expected.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class RejectCounts:
    """Counts of rejected frames by reason, preallocated from :data:`REJECT_REASONS`.

    Not thread-safe by itself: each thread that decodes keeps its own, or the owner serialises.
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)

    def count(self, reason: str) -> None:
        """Add one rejection for ``reason`` (an unforeseen reason is counted under its name)."""
        self._counts[reason] = self._counts.get(reason, 0) + 1

    def __getitem__(self, reason: str) -> int:
        return self._counts.get(reason, 0)

    @property
    def total(self) -> int:
        """All rejections so far."""
        return sum(self._counts.values())

    def as_dict(self) -> dict[str, int]:
        """A copy of the counts, every known reason present."""
        return dict(self._counts)


# ---------------------------------------------------------------------------------------------
# Layouts. ``x`` bytes are reserved and sent as zero.
_HEAD = struct.Struct("<BB")
TICK_HEAD = struct.Struct("<BBHQQ")
"""Tick frame head: version, type, symbol_id u16, session_id u64, seq u64 (20 bytes);
the 60-byte MT5 tick record follows."""
TICK_FRAME_SIZE = TICK_HEAD.size + TICK_RECORD_SIZE
BATCH_HEAD = struct.Struct("<BBHIQQ")
"""Batch head: version, type, symbol_id u16, count u32, session_id u64, first_seq u64
(24 bytes); ``count`` MT5 tick records follow."""
HEARTBEAT = struct.Struct("<BBBBHHIiIQQq")
"""Heartbeat: version, type, state u8, reserved u8, symbol_id u16, reserved u16,
interval_ms u32, last_error i32, reconnects u32, session_id u64, last_seq u64, bridge_time_ns i64."""
BACKFILL_REQUEST = struct.Struct("<BBHIQQQQ")
"""Backfill request: version, type, symbol_id u16, reserved u32, req_id u64, session_id u64,
from_seq u64, to_seq u64 (inclusive)."""
BACKFILL_SINCE = struct.Struct("<BBHIQQq32s")
"""Backfill-since request: version, type, reserved u16, seen_at_time u32, req_id u64,
session_id u64, after_time_msc i64, symbol 32s (NUL-padded UTF-8) (64 bytes)."""
BACKFILL_HEAD = struct.Struct("<BBBBHHIQQQ")
"""Backfill response head: version, type, status u8, reserved u8, symbol_id u16, reserved u16,
count u32, req_id u64, session_id u64, first_seq u64; ``count`` MT5 tick records follow."""
ORDER_REQUEST = struct.Struct("<BBBBBBHQqQQIIddddd32s32s")
"""Order request: version, type, action u8, order_type u8, filling u8, type_time u8,
flags u16 (bit 0: RESEND), req_id u64, deadline_ns i64, magic u64, position u64, deviation u32,
expiration u32 (s since the epoch, 0: none), volume f64, price f64, stoplimit f64, sl f64,
tp f64, symbol 32s, comment 32s."""
ORDER_ACK = struct.Struct("<BBBBIQq")
"""Order ACK: version, type, status u8, reserved u8, queue_depth u32, req_id u64,
bridge_time_ns i64."""
ACCOUNT_QUERY = struct.Struct("<BBHIQQq32s")
"""Account query: version, type, reserved u16, reserved u32, req_id u64, magic u64, since_s i64,
comment_prefix 32s (64 bytes)."""
ACCOUNT_HEAD = struct.Struct("<BBBBHHIQqdq")
"""Account state head: version, type, status u8, reserved u8, count u16 (symbol rows), reserved
u16, deals u32, req_id u64, since_s i64, realized f64, bridge_time_ns i64 (44 bytes)."""
ACCOUNT_ROW = struct.Struct("<32sddddII")
"""One symbol of an account state: symbol 32s, net_volume f64, long_volume f64, short_volume f64,
profit f64, positions u32, reserved u32 (72 bytes)."""
MAX_ACCOUNT_SYMBOLS = 1024
"""Most symbol rows in one account state."""
ORDER_RESULT = struct.Struct("<BBBBIQQQddddIiiIq64s128s")
"""Order RESULT: version, type, status u8, flags u8, retcode u32, req_id u64, deal u64,
order u64, volume f64, price f64, bid f64, ask f64, request_id u32, retcode_external i32,
last_error_code i32, reserved u32, mt5_ns i64, comment 64s, last_error_message 128s."""

TICK_FRAME = struct.Struct("<BBHQQqdddQqId")
"""A whole tick frame: the head, then the MT5 record's fields in dtype order (80 bytes)."""
TICK_SYMBOL_ID, TICK_SESSION_ID, TICK_SEQ, TICK_TIME_MSC, TICK_FLAGS = 2, 3, 4, 10, 11
"""Indices into the tuple :func:`decode_tick_into` returns."""
assert TICK_FRAME.size == TICK_FRAME_SIZE
_TICK_UNPACK = TICK_FRAME.unpack_from
_TICK_HEAD_SIZE = TICK_HEAD.size
_TICK = int(FrameType.TICK)

_TRADE_ACTIONS = frozenset({1, 5, 6, 7, 8, 10})  # TRADE_ACTION_DEAL .. CLOSE_BY
_MAX_ORDER_TYPE = 8  # ORDER_TYPE_CLOSE_BY
_MAX_FILLING = 3  # ORDER_FILLING_BOC
_MAX_TYPE_TIME = 3  # ORDER_TIME_SPECIFIED_DAY


# ---------------------------------------------------------------------------------------------
# Topics
def tick_topic(symbol: str) -> bytes:
    """Return the PUB topic of ``symbol``'s ticks and batches: ``b"T" + symbol + b"\\0"``.

    Raises
    ------
    FrameError
        ``bad_symbol`` when the name is empty, too long or contains NUL.
    """
    return b"T" + _symbol_bytes(symbol) + b"\0"


def heartbeat_topic(symbol: str) -> bytes:
    """Return the PUB topic of ``symbol``'s heartbeats: ``b"H" + symbol + b"\\0"``.

    Raises
    ------
    FrameError
        ``bad_symbol`` when the name is empty, too long or contains NUL.
    """
    return b"H" + _symbol_bytes(symbol) + b"\0"


def parse_topic(topic: bytes) -> tuple[str, str]:
    """Split a topic into its kind (``"T"`` or ``"H"``) and symbol.

    Raises
    ------
    FrameError
        ``bad_topic`` when it is not ``T<symbol>\\0``/``H<symbol>\\0``; ``bad_symbol`` when the
        symbol is empty, too long or not UTF-8.
    """
    if len(topic) < 3 or topic[-1] != 0 or topic[:1] not in (b"T", b"H"):
        raise FrameError("bad_topic", f"topic {bytes(topic[:40])!r} is not T<symbol>\\0 or H<symbol>\\0")
    raw = bytes(topic[1:-1])
    if len(raw) > MAX_SYMBOL_BYTES or b"\0" in raw:
        raise FrameError("bad_symbol", f"topic symbol {raw[:40]!r} is too long or holds NUL")
    try:
        symbol = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("bad_symbol", f"topic symbol {raw!r} is not UTF-8") from None
    return chr(topic[0]), symbol


def _symbol_bytes(symbol: str) -> bytes:
    raw = symbol.encode("utf-8") if isinstance(symbol, str) else b""
    if not raw or len(raw) > MAX_SYMBOL_BYTES or b"\0" in raw:
        raise FrameError(
            "bad_symbol",
            f"symbol {symbol!r} must be 1..{MAX_SYMBOL_BYTES} UTF-8 bytes without NUL",
        )
    return raw


def _fixed_text(text: str, size: int) -> bytes:
    """Encode ``text`` as UTF-8 cut to ``size`` bytes at a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) <= size:
        return raw
    return raw[:size].decode("utf-8", "ignore").encode("utf-8")


def _read_text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", "replace")


_SYMBOLS_KEPT = 4096
"""Most symbols the order codecs remember (validated text <-> fixed field); past it they start over."""
_symbol_fields: dict[str, bytes] = {}
_symbol_texts: dict[bytes, str] = {}


def _symbol_field(symbol: str) -> bytes:
    """``symbol`` checked and encoded (memoized: a node trades a handful of symbols)."""
    if type(symbol) is not str:
        return _symbol_bytes(symbol)  # raises bad_symbol
    raw = _symbol_fields.get(symbol)
    if raw is None:
        raw = _symbol_bytes(symbol)
        if len(_symbol_fields) >= _SYMBOLS_KEPT:
            _symbol_fields.clear()
        _symbol_fields[symbol] = raw
    return raw


def _symbol_text(field: bytes) -> str:
    """The symbol in a NUL-padded order field, checked (memoized like :func:`_symbol_field`).

    Raises
    ------
    FrameError
        ``bad_symbol`` when it is empty, holds a NUL inside or is not UTF-8.
    """
    text = _symbol_texts.get(field)
    if text is None:
        symbol = field.rstrip(b"\0")
        if not symbol or b"\0" in symbol:
            raise FrameError("bad_symbol", f"order symbol {field!r} is empty or holds NUL")
        try:
            text = symbol.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("bad_symbol", f"order symbol {symbol!r} is not UTF-8") from None
        if len(_symbol_texts) >= _SYMBOLS_KEPT:
            _symbol_texts.clear()
        _symbol_texts[field] = text
    return text


# ---------------------------------------------------------------------------------------------
# Common checks
def frame_type(frame: bytes) -> FrameType:
    """Return the type of ``frame`` after checking its version byte.

    Raises
    ------
    FrameError
        ``short``, ``version`` or ``unknown_type``.
    """
    if len(frame) < 2:
        raise FrameError("short", f"frame of {len(frame)} bytes has no version/type head")
    if frame[0] != PROTOCOL_VERSION:
        raise FrameError("version", f"version {frame[0]} received, {PROTOCOL_VERSION} expected")
    try:
        return FrameType(frame[1])
    except ValueError:
        raise FrameError("unknown_type", f"frame type {frame[1]} is not a FrameType") from None


def _expect(frame: bytes, ftype: FrameType, size: int, exact: bool = True) -> None:
    n = len(frame)
    if n < 2:
        raise FrameError("short", f"{ftype.name} frame of {n} bytes, {size} expected")
    if frame[0] != PROTOCOL_VERSION:
        raise FrameError("version", f"version {frame[0]} received, {PROTOCOL_VERSION} expected")
    if frame[1] != ftype:
        if frame[1] in FrameType._value2member_map_:
            raise FrameError("wrong_type", f"{FrameType(frame[1]).name} received, {ftype.name} expected")
        raise FrameError("unknown_type", f"frame type {frame[1]} is not a FrameType")
    if n < size:
        raise FrameError("short", f"{ftype.name} frame of {n} bytes, {size} expected")
    if exact and n != size:
        raise FrameError("length", f"{ftype.name} frame of {n} bytes, {size} expected")


def _check_price(value: float, name: str) -> None:
    if value != value:
        raise FrameError("nan_price", f"{name} is NaN")
    if value in (math.inf, -math.inf):
        raise FrameError("inf_price", f"{name} is infinite")


def _check_prices(names: tuple[str, ...], *values: float) -> None:
    """Name the first NaN or infinite value (called once a sum of them came out non-finite;
    finite values whose sum merely overflowed pass)."""
    for name, value in zip(names, values, strict=False):
        _check_price(value, name)


def tick_refusal(bid: float, ask: float, last: float, volume: int,
                 volume_real: float) -> str | None:
    """The reason a tick with these fields is refused (one of :data:`TICK_REFUSALS`), or None.

    The rules are :func:`flowchain_bridge.ticks.tick_fault`'s; a non-finite value is named
    ``nan_price`` or ``inf_price``.
    """
    code = tick_fault(bid, ask, last, volume, volume_real)
    if code == 0:
        return None
    name = TICK_FAULTS[code - 1]
    if name == "non_finite":
        values = (bid, ask, last, volume_real)
        return "nan_price" if any(v != v for v in values) else "inf_price"
    return _FAULT_REASONS[name]


def _check_tick(bid: float, ask: float, last: float, volume: int, volume_real: float) -> None:
    reason = tick_refusal(bid, ask, last, volume, volume_real)
    if reason is not None:
        raise FrameError(reason, f"bid={bid!r} ask={ask!r} last={last!r} volume={volume} "
                                 f"volume_real={volume_real!r} break the quote rules")


def record_refusals(records: np.ndarray) -> np.ndarray | None:
    """The refusal of each record of a batch: None when every one is fine, else an object array
    holding None or a :data:`TICK_REFUSALS` reason per record."""
    codes = tick_faults(records)
    if not codes.any():
        return None
    out = np.full(len(records), None, dtype=object)
    for i in np.flatnonzero(codes).tolist():
        r = records[i]
        out[i] = tick_refusal(float(r["bid"]), float(r["ask"]), float(r["last"]),
                              int(r["volume"]), float(r["volume_real"]))
    return out


# ---------------------------------------------------------------------------------------------
# Ticks
class TickFrame(NamedTuple):
    """One decoded tick frame (the slow path; the hot path is :func:`decode_tick_into`)."""

    symbol_id: int
    session_id: int
    seq: int
    time: int
    bid: float
    ask: float
    last: float
    volume: int
    time_msc: int
    flags: int
    volume_real: float


def encode_tick(session_id: int, seq: int, symbol_id: int, record: bytes | memoryview) -> bytes:
    """Build a tick frame from one raw 60-byte MT5 tick record.

    Parameters
    ----------
    session_id, seq, symbol_id
        The bridge session, the symbol's sequence number (from 1), the symbol's id.
    record
        The record's bytes, e.g. ``ticks[i:i+1].tobytes()`` of a ``TICK_DTYPE`` array.

    Raises
    ------
    ValueError
        When ``record`` is not 60 bytes.
    struct.error
        When an integer is out of its field's range.
    """
    if len(record) != TICK_RECORD_SIZE:
        raise ValueError(f"tick record of {len(record)} bytes, {TICK_RECORD_SIZE} expected")
    return TICK_HEAD.pack(PROTOCOL_VERSION, FrameType.TICK, symbol_id, session_id, seq) + bytes(record)


def encode_tick_into(buffer: bytearray, session_id: int, seq: int, symbol_id: int,
                     records: memoryview, index: int) -> None:
    """Write a tick frame for ``records[index]`` into a preallocated ``TICK_FRAME_SIZE`` buffer.

    ``records`` is a flat byte view of a ``TICK_DTYPE`` array (``memoryview(a).cast("B")``).

    Raises
    ------
    IndexError
        When ``index`` is outside ``records``.
    """
    start = index * TICK_RECORD_SIZE
    if index < 0 or start + TICK_RECORD_SIZE > len(records):
        raise IndexError(f"tick record {index} is outside a view of {len(records) // TICK_RECORD_SIZE}")
    TICK_HEAD.pack_into(buffer, 0, PROTOCOL_VERSION, FrameType.TICK, symbol_id, session_id, seq)
    buffer[TICK_HEAD.size:TICK_FRAME_SIZE] = records[start:start + TICK_RECORD_SIZE]


def encode_tick_values(session_id: int, seq: int, symbol_id: int, *, time_msc: int, bid: float,
                       ask: float, last: float = 0.0, volume: int = 0, volume_real: float = 0.0,
                       flags: int = 0) -> bytes:
    """Build a tick frame from field values (``time`` is derived from ``time_msc``).

    Raises
    ------
    struct.error
        When a value is out of its field's range.
    """
    rec = np.zeros(1, dtype=TICK_DTYPE)
    rec[0] = (time_msc // 1000, bid, ask, last, volume, time_msc, flags, volume_real)
    return encode_tick(session_id, seq, symbol_id, rec.tobytes())


def decode_tick(frame: bytes) -> TickFrame:
    """Decode and validate a tick frame into a :class:`TickFrame`.

    Raises
    ------
    FrameError
        ``short``/``length``/``version``/``unknown_type``/``wrong_type``/``nan_price``/``inf_price``.
    """
    _expect(frame, FrameType.TICK, TICK_FRAME_SIZE)
    out = TickFrame._make(_TICK_UNPACK(frame)[2:])
    _check_tick(out.bid, out.ask, out.last, out.volume, out.volume_real)
    return out


def decode_tick_into(frame: bytes, ring: memoryview, row: int) -> tuple:
    """Validate a tick frame and copy its MT5 record into row ``row`` of a tick ring.

    The hot path: no array is created; the record's 60 bytes are copied straight into the ring
    and the frame is unpacked once.

    Parameters
    ----------
    frame
        The frame's bytes (or any buffer).
    ring
        A writable flat byte view of a preallocated ``TICK_DTYPE`` array:
        ``memoryview(ring_array).cast("B")``.
    row
        The row to write (the caller wraps it).

    Returns
    -------
    tuple
        The whole frame unpacked by :data:`TICK_FRAME`: ``(version, type, symbol_id, session_id,
        seq, time, bid, ask, last, volume, time_msc, flags, volume_real)``; index it with
        :data:`TICK_SYMBOL_ID`, :data:`TICK_SESSION_ID`, :data:`TICK_SEQ`, :data:`TICK_TIME_MSC`.

    Raises
    ------
    FrameError
        Any frame fault, or a tick that breaks a quote rule (:data:`TICK_REFUSALS`); the ring
        row is left untouched then.
    IndexError
        When ``row`` is outside the ring (a caller bug, not a frame fault).
    """
    if len(frame) != TICK_FRAME_SIZE or frame[0] != PROTOCOL_VERSION or frame[1] != _TICK:
        _expect(frame, FrameType.TICK, TICK_FRAME_SIZE)  # raises the precise reason
    _, _, _, _, _, _, bid, ask, last, volume, _, _, volume_real = values = _TICK_UNPACK(frame)
    # The quote rules of flowchain_bridge.ticks.tick_fault, inlined as chained comparisons (each is
    # False for NaN; ``< inf`` rules out infinities); a tick that fails them is named by the rules.
    if not (0.0 < bid <= ask < _INF and 0.0 <= last < _INF and 0.0 <= volume_real < _INF
            and volume <= _VOLUME_MAX):
        _check_tick(bid, ask, last, volume, volume_real)
    start = row * TICK_RECORD_SIZE
    if not 0 <= start <= len(ring) - TICK_RECORD_SIZE:
        raise IndexError(f"ring row {row} is outside a ring of {len(ring) // TICK_RECORD_SIZE} rows")
    ring[start:start + TICK_RECORD_SIZE] = frame[_TICK_HEAD_SIZE:]
    return values


# ---------------------------------------------------------------------------------------------
# Batches
class TickBatch(NamedTuple):
    """A decoded batch: ``records`` is a read-only ``TICK_DTYPE`` view over the frame.

    ``refusals`` is None when every record keeps the quote rules; else it holds, per record,
    None or the :data:`TICK_REFUSALS` reason it is refused for. A refused record's seq is
    spent (it arrived), and the batch's other records stand.
    """

    symbol_id: int
    session_id: int
    first_seq: int
    records: np.ndarray
    refusals: np.ndarray | None = None


def encode_batch(session_id: int, first_seq: int, symbol_id: int, records: np.ndarray) -> bytes:
    """Build a batch frame from a ``TICK_DTYPE`` array (its raw bytes are sent verbatim).

    Raises
    ------
    ValueError
        When ``records`` is not a ``TICK_DTYPE`` array or holds 0 or over MAX_BATCH_TICKS ticks.
    """
    if records.dtype != TICK_DTYPE:
        raise ValueError(f"batch records have dtype {records.dtype}, TICK_DTYPE expected")
    if not 0 < len(records) <= MAX_BATCH_TICKS:
        raise ValueError(f"batch of {len(records)} ticks, 1..{MAX_BATCH_TICKS} allowed")
    head = BATCH_HEAD.pack(PROTOCOL_VERSION, FrameType.TICK_BATCH, symbol_id, len(records),
                           session_id, first_seq)
    return head + np.ascontiguousarray(records).tobytes()


def decode_batch(frame: bytes) -> TickBatch:
    """Decode and validate a batch frame.

    A record that breaks a quote rule does not refuse the batch: it is named in
    :attr:`TickBatch.refusals`.

    Raises
    ------
    FrameError
        ``short``/``length``/``version``/``unknown_type``/``wrong_type``/``bad_count``.
    """
    _expect(frame, FrameType.TICK_BATCH, BATCH_HEAD.size, exact=False)
    _, _, symbol_id, count, session_id, first_seq = BATCH_HEAD.unpack_from(frame)
    records = _records(frame, BATCH_HEAD.size, count, allow_empty=False)
    return TickBatch(symbol_id, session_id, first_seq, records, record_refusals(records))


def _records(frame: bytes, offset: int, count: int, allow_empty: bool) -> np.ndarray:
    if count > MAX_BATCH_TICKS or (count == 0 and not allow_empty):
        raise FrameError("bad_count", f"batch count {count}, 1..{MAX_BATCH_TICKS} allowed")
    expected = offset + count * TICK_RECORD_SIZE
    if len(frame) != expected:
        raise FrameError("length", f"{len(frame)} bytes for {count} ticks, {expected} expected")
    return np.frombuffer(frame, dtype=TICK_DTYPE, count=count, offset=offset)


# ---------------------------------------------------------------------------------------------
# Heartbeats
class Heartbeat(NamedTuple):
    """A decoded heartbeat: one per symbol per interval, on topic ``H<symbol>\\0``."""

    symbol_id: int
    session_id: int
    last_seq: int
    state: HeartbeatState
    interval_ms: int
    last_error: int
    reconnects: int
    bridge_time_ns: int

    @property
    def connected(self) -> bool:
        """The terminal is connected to its trade server."""
        return bool(self.state & HeartbeatState.CONNECTED)

    @property
    def trade_allowed(self) -> bool:
        """Algorithmic trading is enabled in the terminal."""
        return bool(self.state & HeartbeatState.TRADE_ALLOWED)


def encode_heartbeat(session_id: int, symbol_id: int, last_seq: int, state: int, *,
                     interval_ms: int = 250, last_error: int = 1, reconnects: int = 0,
                     bridge_time_ns: int = 0) -> bytes:
    """Build a heartbeat frame.

    Raises
    ------
    struct.error
        When a value is out of its field's range.
    """
    return HEARTBEAT.pack(PROTOCOL_VERSION, FrameType.HEARTBEAT, int(state), 0, symbol_id, 0,
                          interval_ms, last_error, reconnects, session_id, last_seq, bridge_time_ns)


def decode_heartbeat(frame: bytes) -> Heartbeat:
    """Decode and validate a heartbeat frame.

    Raises
    ------
    FrameError
        ``short``/``length``/``version``/``unknown_type``/``wrong_type``/``bad_field``.
    """
    _expect(frame, FrameType.HEARTBEAT, HEARTBEAT.size)
    (_, _, state, _, symbol_id, _, interval_ms, last_error, reconnects, session_id, last_seq,
     bridge_time_ns) = HEARTBEAT.unpack_from(frame)
    if state & ~0x07:
        raise FrameError("bad_field", f"heartbeat state 0x{state:02x} has unknown bits")
    return Heartbeat(symbol_id, session_id, last_seq, HeartbeatState(state), interval_ms,
                     last_error, reconnects, bridge_time_ns)


# ---------------------------------------------------------------------------------------------
# Backfill
class BackfillRequest(NamedTuple):
    """Ask the bridge for ticks ``from_seq .. to_seq`` (inclusive) of one symbol and session."""

    req_id: int
    session_id: int
    symbol_id: int
    from_seq: int
    to_seq: int


class BackfillResponse(NamedTuple):
    """Ticks ``first_seq .. first_seq+len(records)-1``; ``records`` views the frame.

    ``refusals`` as in :class:`TickBatch`: None, or per record None or the reason it is refused.
    """

    req_id: int
    session_id: int
    symbol_id: int
    status: BackfillStatus
    first_seq: int
    records: np.ndarray
    refusals: np.ndarray | None = None


def encode_backfill_request(req: BackfillRequest) -> bytes:
    """Build a backfill request frame.

    Raises
    ------
    ValueError
        When ``from_seq`` is 0 or above ``to_seq``.
    """
    if not 0 < req.from_seq <= req.to_seq:
        raise ValueError(f"backfill range {req.from_seq}..{req.to_seq}: need 0 < from_seq <= to_seq")
    return BACKFILL_REQUEST.pack(PROTOCOL_VERSION, FrameType.BACKFILL_REQUEST, req.symbol_id, 0,
                                 req.req_id, req.session_id, req.from_seq, req.to_seq)


def decode_backfill_request(frame: bytes) -> BackfillRequest:
    """Decode and validate a backfill request.

    Raises
    ------
    FrameError
        ``short``/``length``/``version``/``unknown_type``/``wrong_type``/``bad_count``.
    """
    _expect(frame, FrameType.BACKFILL_REQUEST, BACKFILL_REQUEST.size)
    _, _, symbol_id, _, req_id, session_id, from_seq, to_seq = BACKFILL_REQUEST.unpack_from(frame)
    if not 0 < from_seq <= to_seq:
        raise FrameError("bad_count", f"backfill range {from_seq}..{to_seq}: need 0 < from <= to")
    return BackfillRequest(req_id, session_id, symbol_id, from_seq, to_seq)


class BackfillSince(NamedTuple):
    """Ask the bridge for the terminal's ticks of one symbol after the node's last one, up to
    where the bridge's current session began streaming (the hole a bridge restart leaves).

    ``after_time_msc`` is the time of the node's last tick of the symbol and ``seen_at_time``
    how many ticks of that millisecond it holds (several ticks can share one ``time_msc``).
    """

    req_id: int
    session_id: int
    symbol: str
    after_time_msc: int
    seen_at_time: int


def encode_backfill_since(req: BackfillSince) -> bytes:
    """Build a backfill-since request frame (the symbol by name: a restarted bridge may number
    its symbols differently).

    Raises
    ------
    FrameError
        ``bad_symbol`` for a symbol that cannot travel.
    struct.error
        When a number is out of its field's range.
    """
    return BACKFILL_SINCE.pack(PROTOCOL_VERSION, FrameType.BACKFILL_SINCE, 0, req.seen_at_time,
                               req.req_id, req.session_id, req.after_time_msc,
                               _symbol_bytes(req.symbol))


def decode_backfill_since(frame: bytes) -> BackfillSince:
    """Decode and validate a backfill-since request.

    Raises
    ------
    FrameError
        ``short``/``length``/``version``/``unknown_type``/``wrong_type``/``bad_time``/
        ``bad_symbol``.
    """
    _expect(frame, FrameType.BACKFILL_SINCE, BACKFILL_SINCE.size)
    _, _, _, seen, req_id, session_id, after, symbol = BACKFILL_SINCE.unpack_from(frame)
    if after < 0:
        raise FrameError("bad_time", f"backfill-since time {after} ms is before the epoch")
    return BackfillSince(req_id, session_id, _symbol_text(symbol), after, seen)


def encode_backfill_response(req_id: int, session_id: int, symbol_id: int, status: BackfillStatus,
                             first_seq: int, records: np.ndarray) -> bytes:
    """Build a backfill response frame (``records`` may be empty unless status is OK).

    Raises
    ------
    ValueError
        When ``records`` is not ``TICK_DTYPE`` or holds more than MAX_BATCH_TICKS.
    """
    if records.dtype != TICK_DTYPE or len(records) > MAX_BATCH_TICKS:
        raise ValueError(f"backfill records: TICK_DTYPE and at most {MAX_BATCH_TICKS} needed, "
                         f"{records.dtype} x {len(records)} given")
    head = BACKFILL_HEAD.pack(PROTOCOL_VERSION, FrameType.BACKFILL_RESPONSE, int(status), 0,
                              symbol_id, 0, len(records), req_id, session_id, first_seq)
    return head + np.ascontiguousarray(records).tobytes()


def decode_backfill_response(frame: bytes) -> BackfillResponse:
    """Decode and validate a backfill response.

    Raises
    ------
    FrameError
        ``short``/``length``/``version``/``unknown_type``/``wrong_type``/``bad_field``/
        ``bad_count``. A record that breaks a quote rule is named in ``refusals``.
    """
    _expect(frame, FrameType.BACKFILL_RESPONSE, BACKFILL_HEAD.size, exact=False)
    (_, _, status, _, symbol_id, _, count, req_id, session_id,
     first_seq) = BACKFILL_HEAD.unpack_from(frame)
    if status not in BackfillStatus._value2member_map_:
        raise FrameError("bad_field", f"backfill status {status} is not a BackfillStatus")
    records = _records(frame, BACKFILL_HEAD.size, count, allow_empty=True)
    return BackfillResponse(req_id, session_id, symbol_id, BackfillStatus(status), first_seq, records,
                            record_refusals(records))


# ---------------------------------------------------------------------------------------------
# Orders
class OrderRequest(NamedTuple):
    """An order as the node sends it; field names follow the MT5 request dict.

    ``req_id`` is the idempotency key: resending the same req_id never trades twice.
    ``deadline_ns`` is wall-clock (``time.time_ns()``) ns; past it the bridge does not send.
    """

    req_id: int
    deadline_ns: int
    symbol: str
    type: int
    volume: float
    price: float = 0.0
    sl: float = 0.0
    tp: float = 0.0
    deviation: int = 0
    magic: int = 0
    comment: str = ""
    type_filling: int = 0
    action: int = 1
    position: int = 0
    stoplimit: float = 0.0
    type_time: int = 0
    expiration: int = 0
    """When a pending order with ``type_time`` ORDER_TIME_SPECIFIED(_DAY) expires: seconds since
    the epoch, MT5's ``expiration``; 0 for none."""
    resend: bool = False
    """Set on every send after the first of this req_id (see :data:`REQUEST_FLAG_RESEND`)."""


class OrderAck(NamedTuple):
    """The bridge received a request (``status``: queued or duplicate)."""

    req_id: int
    status: AckStatus
    queue_depth: int
    bridge_time_ns: int


class OrderResult(NamedTuple):
    """The outcome of a request: every ``OrderSendResult`` field plus ``last_error``.

    ``request`` (the echo of the request in MT5's result) is not sent back: the node has it.
    """

    req_id: int
    status: OrderStatus
    retcode: int
    deal: int
    order: int
    volume: float
    price: float
    bid: float
    ask: float
    comment: str
    request_id: int
    retcode_external: int
    last_error: tuple[int, str]
    mt5_ns: int = 0
    replayed: bool = False


_V = PROTOCOL_VERSION
_T_REQUEST = int(FrameType.ORDER_REQUEST)
_T_ACK = int(FrameType.ORDER_ACK)
_T_RESULT = int(FrameType.ORDER_RESULT)
_REQUEST_SIZE = ORDER_REQUEST.size
_ACK_SIZE = ORDER_ACK.size
_RESULT_SIZE = ORDER_RESULT.size
_REQUEST_PACK = ORDER_REQUEST.pack
_REQUEST_UNPACK = ORDER_REQUEST.unpack_from
_ACK_PACK = ORDER_ACK.pack
_ACK_UNPACK = ORDER_ACK.unpack_from
_RESULT_PACK = ORDER_RESULT.pack
_RESULT_UNPACK = ORDER_RESULT.unpack_from
_ACK_STATUSES = AckStatus._value2member_map_
_ORDER_STATUSES = OrderStatus._value2member_map_
_REQUEST_PRICES = ("volume", "price", "stoplimit", "sl", "tp")
_RESULT_PRICES = ("volume", "price", "bid", "ask")
_NO_TEXT = bytes(MAX_COMMENT_BYTES)
_new = tuple.__new__
# The order frames are on the round trip's critical path (node and bridge each encode and decode
# per order): the checks below are the ones of ``_expect``/``_check_price``, ordered so that a
# valid frame pays one comparison per check and a rejected one gets the exact reason.


def encode_order_request(req: OrderRequest) -> bytes:
    """Build an order request frame.

    Raises
    ------
    FrameError
        ``bad_symbol`` for a symbol that cannot travel.
    struct.error
        When a number is out of its field's range.
    """
    comment = req.comment
    return _REQUEST_PACK(
        _V, _T_REQUEST, req.action, req.type, req.type_filling, req.type_time,
        REQUEST_FLAG_RESEND if req.resend else 0, req.req_id,
        req.deadline_ns, req.magic, req.position, req.deviation, req.expiration, req.volume, req.price,
        req.stoplimit, req.sl, req.tp, _symbol_field(req.symbol),
        _fixed_text(comment, MAX_COMMENT_BYTES) if comment else b"",
    )


def decode_order_request(frame: bytes) -> OrderRequest:
    """Decode and validate an order request.

    Raises
    ------
    FrameError
        ``short``/``length``/``version``/``unknown_type``/``wrong_type``/``bad_field``/
        ``bad_symbol``/``bad_volume``/``nan_price``/``inf_price``.
    """
    if len(frame) != _REQUEST_SIZE or frame[0] != _V or frame[1] != _T_REQUEST:
        _expect(frame, FrameType.ORDER_REQUEST, _REQUEST_SIZE)
    (_, _, action, otype, filling, type_time, flags, req_id, deadline_ns, magic, position, deviation,
     expiration, volume, price, stoplimit, sl, tp, symbol_raw, comment_raw) = _REQUEST_UNPACK(frame)
    if flags & ~REQUEST_FLAG_RESEND:
        raise FrameError("bad_field", f"request flags 0x{flags:04x} have unknown bits")
    if action not in _TRADE_ACTIONS:
        raise FrameError("bad_field", f"action {action} is not a TRADE_ACTION_*")
    if otype > _MAX_ORDER_TYPE:
        raise FrameError("bad_field", f"order type {otype} is not an ORDER_TYPE_*")
    if filling > _MAX_FILLING:
        raise FrameError("bad_field", f"filling {filling} is not an ORDER_FILLING_*")
    if type_time > _MAX_TYPE_TIME:
        raise FrameError("bad_field", f"type_time {type_time} is not an ORDER_TIME_*")
    total = volume + price + stoplimit + sl + tp
    if total - total != 0.0:  # NaN or infinite somewhere (or a finite overflow: then it passes)
        _check_prices(_REQUEST_PRICES, volume, price, stoplimit, sl, tp)
    if action == 1 and not volume > 0.0:
        raise FrameError("bad_volume", f"volume {volume} for a deal, > 0 expected")
    return _new(OrderRequest, (req_id, deadline_ns, _symbol_text(symbol_raw), otype, volume, price,
                               sl, tp, deviation, magic,
                               "" if comment_raw == _NO_TEXT else _read_text(comment_raw), filling,
                               action, position, stoplimit, type_time, expiration,
                               flags == REQUEST_FLAG_RESEND))


def encode_order_ack(ack: OrderAck) -> bytes:
    """Build an ACK frame.

    Raises
    ------
    struct.error
        When a number is out of its field's range.
    """
    return _ACK_PACK(_V, _T_ACK, int(ack.status), 0, ack.queue_depth, ack.req_id, ack.bridge_time_ns)


def decode_order_ack(frame: bytes) -> OrderAck:
    """Decode and validate an ACK frame.

    Raises
    ------
    FrameError
        ``short``/``length``/``version``/``unknown_type``/``wrong_type``/``bad_field``.
    """
    if len(frame) != _ACK_SIZE or frame[0] != _V or frame[1] != _T_ACK:
        _expect(frame, FrameType.ORDER_ACK, _ACK_SIZE)
    _, _, status, _, depth, req_id, bridge_ns = _ACK_UNPACK(frame)
    member = _ACK_STATUSES.get(status)
    if member is None:
        raise FrameError("bad_field", f"ACK status {status} is not an AckStatus")
    return _new(OrderAck, (req_id, member, depth, bridge_ns))


def encode_order_result(res: OrderResult) -> bytes:
    """Build a RESULT frame (comment and error message are cut at a UTF-8 boundary).

    Raises
    ------
    struct.error
        When a number is out of its field's range.
    """
    code, message = res.last_error
    return _RESULT_PACK(
        _V, _T_RESULT, int(res.status), RESULT_FLAG_REPLAYED if res.replayed else 0, res.retcode,
        res.req_id, res.deal, res.order, res.volume, res.price, res.bid, res.ask, res.request_id,
        res.retcode_external, code, 0, res.mt5_ns, _fixed_text(res.comment, 64),
        _fixed_text(message, 128),
    )


def decode_order_result(frame: bytes) -> OrderResult:
    """Decode and validate a RESULT frame.

    Raises
    ------
    FrameError
        ``short``/``length``/``version``/``unknown_type``/``wrong_type``/``bad_field``/
        ``nan_price``/``inf_price``.
    """
    if len(frame) != _RESULT_SIZE or frame[0] != _V or frame[1] != _T_RESULT:
        _expect(frame, FrameType.ORDER_RESULT, _RESULT_SIZE)
    (_, _, status, flags, retcode, req_id, deal, order, volume, price, bid, ask, request_id,
     retcode_external, err_code, _, mt5_ns, comment, message) = _RESULT_UNPACK(frame)
    member = _ORDER_STATUSES.get(status)
    if member is None:
        raise FrameError("bad_field", f"RESULT status {status} is not an OrderStatus")
    if flags & ~RESULT_FLAG_REPLAYED:
        raise FrameError("bad_field", f"RESULT flags 0x{flags:02x} have unknown bits")
    total = volume + price + bid + ask
    if total - total != 0.0:
        _check_prices(_RESULT_PRICES, volume, price, bid, ask)
    return _new(OrderResult, (req_id, member, retcode, deal, order, volume, price, bid, ask,
                              _read_text(comment), request_id, retcode_external,
                              (err_code, _read_text(message)), mt5_ns, flags == RESULT_FLAG_REPLAYED))


# ---------------------------------------------------------------------------------------------
# Account state (positions and the day's deals of one node, by magic and comment prefix)
class AccountQuery(NamedTuple):
    """Ask the bridge for the terminal's positions and deals of one node.

    Matching records carry ``magic`` and a comment that starts with ``comment_prefix`` (the
    node's namespace, so another node with the same magic is never counted); deals are those
    since ``since_s`` (seconds since the epoch, the start of the trading day).
    """

    req_id: int
    magic: int
    comment_prefix: str
    since_s: int


class SymbolExposure(NamedTuple):
    """The open positions of one symbol that match a query (lots; ``profit`` in account currency,
    the positions' ``profit`` plus ``swap`` as the terminal reports them)."""

    symbol: str
    net_volume: float
    long_volume: float
    short_volume: float
    profit: float
    positions: int


class AccountState(NamedTuple):
    """The answer to an :class:`AccountQuery`: the terminal's own figures.

    ``realized`` sums ``profit + commission + swap + fee`` of the matching deals since
    ``since_s`` (account currency); ``deals`` counts them.
    """

    req_id: int
    status: AccountStatus
    since_s: int
    deals: int
    realized: float
    bridge_time_ns: int
    symbols: tuple[SymbolExposure, ...] = ()


def encode_account_query(query: AccountQuery) -> bytes:
    """Build an account query frame.

    Raises
    ------
    struct.error
        When a number is out of its field's range.
    """
    return ACCOUNT_QUERY.pack(_V, FrameType.ACCOUNT_QUERY, 0, 0, query.req_id, query.magic,
                              query.since_s, _fixed_text(query.comment_prefix, MAX_COMMENT_BYTES))


def decode_account_query(frame: bytes) -> AccountQuery:
    """Decode and validate an account query.

    Raises
    ------
    FrameError
        ``short``/``length``/``version``/``unknown_type``/``wrong_type``.
    """
    _expect(frame, FrameType.ACCOUNT_QUERY, ACCOUNT_QUERY.size)
    _, _, _, _, req_id, magic, since_s, prefix = ACCOUNT_QUERY.unpack_from(frame)
    return AccountQuery(req_id, magic, _read_text(prefix), since_s)


def encode_account_state(state: AccountState) -> bytes:
    """Build an account state frame.

    Raises
    ------
    ValueError
        When it holds more than :data:`MAX_ACCOUNT_SYMBOLS` symbols.
    FrameError
        ``bad_symbol`` for a symbol that cannot travel.
    """
    if len(state.symbols) > MAX_ACCOUNT_SYMBOLS:
        raise ValueError(f"account state of {len(state.symbols)} symbols, at most "
                         f"{MAX_ACCOUNT_SYMBOLS} travel")
    parts = [ACCOUNT_HEAD.pack(_V, FrameType.ACCOUNT_STATE, int(state.status), 0, len(state.symbols),
                               0, state.deals, state.req_id, state.since_s, state.realized,
                               state.bridge_time_ns)]
    for row in state.symbols:
        parts.append(ACCOUNT_ROW.pack(_symbol_field(row.symbol), row.net_volume, row.long_volume,
                                      row.short_volume, row.profit, row.positions, 0))
    return b"".join(parts)


def decode_account_state(frame: bytes) -> AccountState:
    """Decode and validate an account state.

    Raises
    ------
    FrameError
        ``short``/``length``/``version``/``unknown_type``/``wrong_type``/``bad_field``/
        ``bad_count``/``bad_symbol``/``nan_price``/``inf_price``.
    """
    _expect(frame, FrameType.ACCOUNT_STATE, ACCOUNT_HEAD.size, exact=False)
    (_, _, status, _, count, _, deals, req_id, since_s, realized,
     bridge_ns) = ACCOUNT_HEAD.unpack_from(frame)
    member = AccountStatus._value2member_map_.get(status)
    if member is None:
        raise FrameError("bad_field", f"account status {status} is not an AccountStatus")
    if count > MAX_ACCOUNT_SYMBOLS:
        raise FrameError("bad_count", f"account state of {count} symbols, at most "
                                      f"{MAX_ACCOUNT_SYMBOLS}")
    expected = ACCOUNT_HEAD.size + count * ACCOUNT_ROW.size
    if len(frame) != expected:
        raise FrameError("length", f"account state of {count} symbols is {expected} bytes, "
                                   f"{len(frame)} received")
    _check_price(realized, "realized")
    rows = []
    for offset in range(ACCOUNT_HEAD.size, expected, ACCOUNT_ROW.size):
        raw, net, long_, short, profit, positions, _ = ACCOUNT_ROW.unpack_from(frame, offset)
        _check_prices(("net_volume", "long_volume", "short_volume", "profit"), net, long_, short,
                      profit)
        rows.append(SymbolExposure(_symbol_text(raw), net, long_, short, profit, positions))
    return AccountState(req_id, member, since_s, deals, realized, bridge_ns, tuple(rows))


_DECODERS = {
    FrameType.TICK: decode_tick,
    FrameType.TICK_BATCH: decode_batch,
    FrameType.HEARTBEAT: decode_heartbeat,
    FrameType.BACKFILL_REQUEST: decode_backfill_request,
    FrameType.BACKFILL_RESPONSE: decode_backfill_response,
    FrameType.ORDER_REQUEST: decode_order_request,
    FrameType.ORDER_ACK: decode_order_ack,
    FrameType.ORDER_RESULT: decode_order_result,
    FrameType.BACKFILL_SINCE: decode_backfill_since,
    FrameType.ACCOUNT_QUERY: decode_account_query,
    FrameType.ACCOUNT_STATE: decode_account_state,
}


def decode(frame: bytes) -> (TickFrame | TickBatch | Heartbeat | BackfillRequest | BackfillResponse
                             | OrderRequest | OrderAck | OrderResult | BackfillSince
                             | AccountQuery | AccountState):
    """Decode any frame by its type byte.

    Raises
    ------
    FrameError
        Any reason in :data:`REJECT_REASONS` but ``bad_topic``.
    """
    return _DECODERS[frame_type(frame)](frame)

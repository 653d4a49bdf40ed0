"""SQLite persistence in WAL mode: the connection helper and the MT5 -> database chain's tables.

Every module that persists something opens its connection with :func:`open_database` (WAL,
``synchronous=NORMAL``, a busy timeout) and creates its own tables with :func:`ensure_schema`;
this module owns the market-data tables, defined once in :data:`MARKET_DATA_SCHEMA`:

``ticks``
    One row per accepted MT5 tick. The primary key is the tick's identity: the symbol, its
    ``time_msc`` and the sequence number its feed gave it (the validator's definition of a
    duplicate). A replayed batch (the same ticks again, after a restart or a failed write) adds
    no row, while a quote that repeats within a millisecond (A -> B -> A: three seqs) is three
    rows, and ``ORDER BY time_msc, seq`` gives them in arrival order. A database made when the
    key was the tick's content is moved to this key when it is opened
    (:func:`ensure_schema`).
``bars``
    1 s and 1 min OHLC bars on the mid price, keyed by (symbol, timeframe, start). Writes are
    upserts that merge with the stored bar (earliest open, latest close, extreme high/low), so a
    bar that spans batches, or is written again, ends up as one correct row.
``quarantine``
    Every tick the validator rejected, with its reason and its exact 60-byte record; unique by
    (symbol, seq, record), so a replayed batch adds no quarantine row either.

A reader in another process opens the same file with :func:`open_database` (or
``readonly=True``) and reads while the node writes: WAL lets readers see the last committed
transaction without blocking the writer.
"""
from __future__ import annotations

import itertools
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flowchain_bridge.ticks import TICK_DTYPE

from flowchain.errors import FlowChainError

DatabasePath = str | Path

DEFAULT_BUSY_TIMEOUT_MS = 5000
"""How long a connection waits for another writer's lock before failing (``busy_timeout``)."""

BAR_DTYPE = np.dtype(
    [
        ("start_msc", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("tick_count", "<i8"),
        ("volume", "<f8"),
        ("first_msc", "<i8"),
        ("last_msc", "<i8"),
    ]
)
"""One OHLC bar on the mid price: its start (ms), prices, tick count, summed ``volume_real``,
and the ``time_msc`` of its first and last tick (which let two partial bars merge)."""

TIMEFRAMES: Mapping[str, int] = {"1s": 1_000, "1m": 60_000}
"""The bar timeframes the MT5 -> database chain builds: label -> length in milliseconds."""

MARKET_DATA_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS ticks (
        symbol      TEXT    NOT NULL,
        time_msc    INTEGER NOT NULL,
        time        INTEGER NOT NULL,
        bid         REAL    NOT NULL,
        ask         REAL    NOT NULL,
        last        REAL    NOT NULL,
        volume      INTEGER NOT NULL,
        flags       INTEGER NOT NULL,
        volume_real REAL    NOT NULL,
        seq         INTEGER NOT NULL,
        PRIMARY KEY (symbol, time_msc, seq)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS bars (
        symbol     TEXT    NOT NULL,
        timeframe  TEXT    NOT NULL,
        start_msc  INTEGER NOT NULL,
        open       REAL    NOT NULL,
        high       REAL    NOT NULL,
        low        REAL    NOT NULL,
        close      REAL    NOT NULL,
        tick_count INTEGER NOT NULL,
        volume     REAL    NOT NULL,
        first_msc  INTEGER NOT NULL,
        last_msc   INTEGER NOT NULL,
        PRIMARY KEY (symbol, timeframe, start_msc)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS quarantine (
        id             INTEGER PRIMARY KEY,
        symbol         TEXT    NOT NULL,
        seq            INTEGER NOT NULL,
        reason         TEXT    NOT NULL,
        time_msc       INTEGER NOT NULL,
        bid            REAL,
        ask            REAL,
        last           REAL,
        flags          INTEGER NOT NULL,
        volume_real    REAL,
        record         BLOB    NOT NULL,
        quarantined_ns INTEGER NOT NULL,
        UNIQUE (symbol, seq, record)
    )
    """,
    "CREATE INDEX IF NOT EXISTS quarantine_by_reason ON quarantine (reason, symbol)",
)
"""The market-data tables; ``NaN`` prices of quarantined ticks are stored as ``NULL``."""

TICK_COLUMNS = ("symbol", "time_msc", "time", "bid", "ask", "last", "volume", "flags",
                "volume_real", "seq")
INSERT_TICKS_SQL = (f"INSERT OR IGNORE INTO ticks ({', '.join(TICK_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(TICK_COLUMNS))})")
"""The tick insert both the chain and the bare-SQLite baseline use."""

UPSERT_BAR_SQL = """
    INSERT INTO bars (symbol, timeframe, start_msc, open, high, low, close, tick_count, volume,
                      first_msc, last_msc)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (symbol, timeframe, start_msc) DO UPDATE SET
        open       = CASE WHEN excluded.first_msc < bars.first_msc
                          THEN excluded.open ELSE bars.open END,
        high       = max(bars.high, excluded.high),
        low        = min(bars.low, excluded.low),
        close      = CASE WHEN excluded.last_msc >= bars.last_msc
                          THEN excluded.close ELSE bars.close END,
        tick_count = max(bars.tick_count, excluded.tick_count),
        volume     = max(bars.volume, excluded.volume),
        first_msc  = min(bars.first_msc, excluded.first_msc),
        last_msc   = max(bars.last_msc, excluded.last_msc)
"""
"""Merge a bar into the stored one. The DataProcessor emits the *whole* open bar each time (it
keeps it across batches), so the larger tick count and volume are the current ones."""

INSERT_QUARANTINE_SQL = """
    INSERT OR IGNORE INTO quarantine (symbol, seq, reason, time_msc, bid, ask, last, flags,
                                      volume_real, record, quarantined_ns)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


class StoreError(FlowChainError, RuntimeError):
    """The database could not be opened or configured as FlowChain needs it."""


def open_database(path: DatabasePath, *, readonly: bool = False,
                  busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """Open (creating if needed) the SQLite database at ``path`` in WAL mode.

    The connection is in autocommit mode (``isolation_level=None``): group writes with
    :func:`transaction`. ``synchronous=NORMAL`` (safe in WAL: a crash loses at most the last
    transactions, never corrupts), ``busy_timeout`` set, ``foreign_keys`` on. It may be handed to
    another thread (``check_same_thread=False``) but must be used by one thread at a time.

    Parameters
    ----------
    path : str or Path
        The database file; its directory must exist.
    readonly : bool
        Open an existing database read-only (``mode=ro``), as a second process reading while
        the node writes.
    busy_timeout_ms : int
        How long to wait for another connection's lock before ``database is locked``.

    Returns
    -------
    sqlite3.Connection

    Raises
    ------
    StoreError
        When the directory is missing, the file cannot be opened, or WAL mode could not be
        enabled (for example on a network file system without shared memory).
    """
    db_path = Path(path)
    if not db_path.parent.exists():
        raise StoreError(f"cannot open database {str(db_path)!r}: directory "
                         f"{str(db_path.parent)!r} does not exist; create it or pass another path")
    try:
        if readonly:
            conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True,
                                   isolation_level=None, check_same_thread=False,
                                   timeout=busy_timeout_ms / 1000)
        else:
            conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False,
                                   timeout=busy_timeout_ms / 1000)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if readonly:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        else:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {str(db_path)!r}: {exc}; check the path and its "
                         "permissions") from exc
    if str(mode).lower() != "wal":
        conn.close()
        raise StoreError(f"database {str(db_path)!r} is in journal mode {mode!r}, not WAL; "
                         "other processes could not read while the node writes. Put the file "
                         "on a local file system (WAL needs shared memory)")
    return conn


def ensure_schema(conn: sqlite3.Connection, statements: Iterable[str] = MARKET_DATA_SCHEMA) -> None:
    """Create the tables and indexes in ``statements`` that do not exist yet, in one transaction.

    Other modules pass their own ``CREATE ... IF NOT EXISTS`` statements.

    Raises
    ------
    sqlite3.Error
        When a statement is invalid or the database is read-only.
    """
    with transaction(conn):
        if statements is MARKET_DATA_SCHEMA:
            _key_ticks_by_sequence(conn)
        for statement in statements:
            conn.execute(statement)


_TICK_KEY = ["symbol", "time_msc", "seq"]


def _key_ticks_by_sequence(conn: sqlite3.Connection) -> None:
    """Move a ``ticks`` table keyed by the tick's content to the (symbol, ms, seq) key.

    Such a table merged real repeated quotes into one row; its rows are kept (a pair that
    shares symbol, ``time_msc`` and seq keeps its first row).
    """
    columns = conn.execute("PRAGMA table_info(ticks)").fetchall()
    key = [name for _, name, _, _, _, pk in sorted(columns, key=lambda c: c[5]) if pk]
    if not columns or key == _TICK_KEY:
        return
    names = ", ".join(TICK_COLUMNS)
    conn.execute("ALTER TABLE ticks RENAME TO ticks_keyed_by_content")
    conn.execute(MARKET_DATA_SCHEMA[0])
    conn.execute(f"INSERT OR IGNORE INTO ticks ({names}) SELECT {names} "
                 "FROM ticks_keyed_by_content ORDER BY symbol, time_msc, seq")
    conn.execute("DROP TABLE ticks_keyed_by_content")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block in one write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``).

    The write lock is taken at the start, so the block never fails half-way for a lock it could
    not upgrade; any exception rolls everything back and propagates.

    Raises
    ------
    sqlite3.OperationalError
        When another writer holds the lock for longer than the busy timeout.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def tick_rows(symbol: str, ticks: np.ndarray, seqs: np.ndarray) -> Iterator[tuple]:
    """Yield one ``ticks``-table row per tick (columns as :data:`TICK_COLUMNS`), built by C loops.

    Raises
    ------
    ValueError
        When ``ticks`` and ``seqs`` differ in length.
    """
    if len(ticks) != len(seqs):
        raise ValueError(f"{symbol}: {len(ticks)} ticks but {len(seqs)} sequence numbers")
    return zip(itertools.repeat(symbol, len(ticks)), ticks["time_msc"].tolist(),
               ticks["time"].tolist(), ticks["bid"].tolist(), ticks["ask"].tolist(),
               ticks["last"].tolist(), ticks["volume"].tolist(), ticks["flags"].tolist(),
               ticks["volume_real"].tolist(), seqs.astype(np.int64, copy=False).tolist(), strict=False)


def bar_rows(symbol: str, timeframe: str, bars: np.ndarray) -> Iterator[tuple]:
    """Yield one ``bars``-table row per bar of :data:`BAR_DTYPE`."""
    return zip(itertools.repeat(symbol, len(bars)), itertools.repeat(timeframe, len(bars)),
               bars["start_msc"].tolist(), bars["open"].tolist(), bars["high"].tolist(),
               bars["low"].tolist(), bars["close"].tolist(), bars["tick_count"].tolist(),
               bars["volume"].tolist(), bars["first_msc"].tolist(), bars["last_msc"].tolist(), strict=False)


def quarantine_rows(symbol: str, ticks: np.ndarray, seqs: np.ndarray,
                    reasons: Sequence[str], quarantined_ns: int) -> Iterator[tuple]:
    """Yield one ``quarantine`` row per rejected tick (non-finite prices become ``NULL``).

    Raises
    ------
    ValueError
        When ``ticks``, ``seqs`` and ``reasons`` differ in length.
    """
    n = len(ticks)
    if len(seqs) != n or len(reasons) != n:
        raise ValueError(f"{symbol}: {n} quarantined ticks but {len(seqs)} sequence numbers and "
                         f"{len(reasons)} reasons")
    packed = np.ascontiguousarray(ticks, dtype=TICK_DTYPE)
    records = [packed[i:i + 1].tobytes() for i in range(n)]

    def finite_or_none(values: np.ndarray) -> list:
        return [v if math.isfinite(v) else None for v in values.tolist()]

    return zip(itertools.repeat(symbol, n), seqs.astype(np.int64, copy=False).tolist(),
               reasons, packed["time_msc"].tolist(), finite_or_none(packed["bid"]),
               finite_or_none(packed["ask"]), finite_or_none(packed["last"]),
               packed["flags"].tolist(), finite_or_none(packed["volume_real"]), records,
               itertools.repeat(quarantined_ns, n), strict=False)


@dataclass(frozen=True, slots=True)
class WriteCounts:
    """Rows one write added (``inserted``) and rows it found already there (``ignored``)."""

    inserted: int
    ignored: int


def insert_ticks(conn: sqlite3.Connection, symbol: str, ticks: np.ndarray,
                 seqs: np.ndarray) -> WriteCounts:
    """Insert ticks, ignoring those already stored; call inside :func:`transaction`.

    Raises
    ------
    sqlite3.Error
        When the database rejects the write (locked past the busy timeout, disk full).
    """
    if len(ticks) == 0:
        return WriteCounts(0, 0)
    cur = conn.executemany(INSERT_TICKS_SQL, tick_rows(symbol, ticks, seqs))
    return WriteCounts(cur.rowcount, len(ticks) - cur.rowcount)


def upsert_bars(conn: sqlite3.Connection, symbol: str, timeframe: str, bars: np.ndarray) -> int:
    """Insert or merge bars of one timeframe; return how many bar rows were written.

    Raises
    ------
    ValueError
        When ``timeframe`` is not one of :data:`TIMEFRAMES`.
    sqlite3.Error
        When the database rejects the write.
    """
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown bar timeframe {timeframe!r} for {symbol}; expected one of "
                         f"{sorted(TIMEFRAMES)}")
    if len(bars) == 0:
        return 0
    conn.executemany(UPSERT_BAR_SQL, bar_rows(symbol, timeframe, bars))
    return len(bars)


def insert_quarantine(conn: sqlite3.Connection, symbol: str, ticks: np.ndarray,
                      seqs: np.ndarray, reasons: Sequence[str],
                      quarantined_ns: int | None = None) -> WriteCounts:
    """Record rejected ticks with their reasons, ignoring ones already recorded.

    Raises
    ------
    sqlite3.Error
        When the database rejects the write.
    """
    if len(ticks) == 0:
        return WriteCounts(0, 0)
    when = time.time_ns() if quarantined_ns is None else quarantined_ns
    cur = conn.executemany(INSERT_QUARANTINE_SQL,
                           quarantine_rows(symbol, ticks, seqs, reasons, when))
    return WriteCounts(cur.rowcount, len(ticks) - cur.rowcount)


# ---------------------------------------------------------------------------------------------
# Node identity
NODE_IDENTITY_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS node_identity (
        node_id    TEXT    PRIMARY KEY,
        namespace  INTEGER NOT NULL UNIQUE,
        is_default INTEGER NOT NULL DEFAULT 0,
        created_ns INTEGER NOT NULL
    )
    """,
)
"""Each node id that traded from this database, with the random namespace of its orders."""

_NAMESPACE_BITS = 32


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """Who a node is, for order identity: its id and the random namespace of its orders.

    ``namespace`` is a random non-zero 32-bit number created with the (database, node id) pair
    and stored with it: the node's req_ids are ``namespace << 32 | sequence``, so no other
    database, node or restart produces the same one (short of a 1-in-2^32 draw, which the
    bridge's request digest still refuses as a conflict).
    """

    node_id: str
    namespace: int

    @property
    def comment_prefix(self) -> str:
        """The start of every MT5 comment of this node's orders (``fc`` + 8 hex digits)."""
        return f"fc{self.namespace:08x}"

    def req_id(self, sequence: int) -> int:
        """The u64 req_id of this node's order number ``sequence`` (1 .. 2^32-1).

        Raises
        ------
        ValueError
            When ``sequence`` is outside 1 .. 2^32-1.
        """
        if not 0 < sequence < 1 << _NAMESPACE_BITS:
            raise ValueError(f"order sequence {sequence} of node {self.node_id!r} is outside "
                             f"1..{(1 << _NAMESPACE_BITS) - 1}")
        return self.namespace << _NAMESPACE_BITS | sequence

    def comment(self, req_id: int) -> str:
        """The MT5 comment of the order ``req_id``: ``fc`` + its 16 hex digits (18 characters,
        within MT5's 31), which starts with :attr:`comment_prefix`."""
        return f"fc{req_id:016x}"


def _new_namespace(conn: sqlite3.Connection) -> int:
    import secrets

    while True:
        namespace = secrets.randbits(_NAMESPACE_BITS)
        if namespace and conn.execute("SELECT 1 FROM node_identity WHERE namespace = ?",
                                      (namespace,)).fetchone() is None:
            return namespace


def node_identity(conn: sqlite3.Connection, node_id: str | None = None) -> NodeIdentity:
    """Return this database's node identity, creating and storing it on first use.

    Without ``node_id``: the database's default node, whose id (``n`` + 8 random hex digits)
    was created with the database. With one: that node id, given its own namespace the first
    time it trades from this database.

    Raises
    ------
    ValueError
        When ``node_id`` is empty, longer than 32 characters, or holds anything but letters,
        digits and ``_``.
    sqlite3.Error
        When the database cannot be read or written.
    """
    import secrets

    if node_id is not None:
        check_node_id(node_id)
    ensure_schema(conn, NODE_IDENTITY_SCHEMA)
    with transaction(conn):
        if node_id is None:
            row = conn.execute("SELECT node_id, namespace FROM node_identity "
                               "WHERE is_default = 1").fetchone()
            if row is None:
                row = (f"n{secrets.token_hex(4)}", _new_namespace(conn))
                conn.execute("INSERT INTO node_identity (node_id, namespace, is_default, "
                             "created_ns) VALUES (?, ?, 1, ?)", (*row, time.time_ns()))
        else:
            row = conn.execute("SELECT node_id, namespace FROM node_identity WHERE node_id = ?",
                               (node_id,)).fetchone()
            if row is None:
                row = (node_id, _new_namespace(conn))
                conn.execute("INSERT INTO node_identity (node_id, namespace, is_default, "
                             "created_ns) VALUES (?, ?, 0, ?)", (*row, time.time_ns()))
    return NodeIdentity(str(row[0]), int(row[1]))


def check_node_id(node_id: str) -> str:
    """Return ``node_id`` when it can name a node: 1..32 letters, digits or ``_``.

    Raises
    ------
    ValueError
        Naming the id and what is allowed.
    """
    if not isinstance(node_id, str) or not 0 < len(node_id) <= 32 \
            or not all(c.isascii() and (c.isalnum() or c == "_") for c in node_id):
        raise ValueError(f"node id {node_id!r} must be 1..32 ASCII letters, digits or '_'")
    return node_id

"""DatabaseService, the chain's last step: write a processed batch to SQLite in one transaction.

Accepted ticks, the bars the batch touched and its quarantined ticks are written together (one
``BEGIN IMMEDIATE ... COMMIT``): a reader never sees a batch's ticks without its bars, and a
failure leaves nothing of the batch behind. Replaying a batch adds no rows (see
:mod:`flowchain.store`); the confirmation says how many rows each table gained and how many were
already there.
"""
from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flowchain.ingest.batch import BatchStage, TickBatch
from flowchain.ingest.errors import BatchStageError
from flowchain.ingest.validation import reason_name
from flowchain.store import ensure_schema, insert_quarantine, insert_ticks, open_database, transaction, upsert_bars

DEFAULT_DATABASE = "flowchain.db"
"""The database file DatabaseService opens when given none and ``FLOWCHAIN_DB`` is unset."""


@dataclass(frozen=True, slots=True)
class StorageConfirmation:
    """What one batch's write did.

    Attributes
    ----------
    symbol, first_seq
        The batch written.
    inserted : Mapping[str, int]
        New rows per table (``ticks``, ``quarantine``); for ``bars``, bar rows inserted or
        merged into an existing bar.
    ignored : Mapping[str, int]
        Rows per table that were already stored (a replayed batch): ``ticks``, ``quarantine``.
    reason_counts : Mapping[str, int]
        The batch's rejected ticks by reason, as the validator counted them.
    commit_ns : int
        Wall-clock time (``time.time_ns``) right after the commit.
    """

    symbol: str
    first_seq: int
    inserted: Mapping[str, int] = field(default_factory=dict)
    ignored: Mapping[str, int] = field(default_factory=dict)
    reason_counts: Mapping[str, int] = field(default_factory=dict)
    commit_ns: int = 0


class DatabaseService:
    """Persist processed batches (step ``database_storage``).

    Parameters
    ----------
    database : str, Path or sqlite3.Connection, optional
        The database file, or a connection from :func:`flowchain.store.open_database`. Default:
        ``$FLOWCHAIN_DB`` or ``flowchain.db`` in the working directory. A path is opened on the
        first batch; the schema is created if missing.

    Attributes
    ----------
    batches_written : int
    rows_inserted, rows_ignored : dict
        Totals per table over every batch written.

    Notes
    -----
    The write is synchronous (a WAL commit with ``synchronous=NORMAL`` does not fsync). Run the
    chain off the event loop (an executor thread) when batches are large; the connection may
    move between threads but is used by one at a time.
    """

    def __init__(self, database: str | Path | sqlite3.Connection | None = None) -> None:
        self._conn: sqlite3.Connection | None = None
        self._owns_connection = False
        if isinstance(database, sqlite3.Connection):
            self._conn = database
            ensure_schema(database)
            self.path: Path | None = None
        else:
            self.path = Path(database or os.environ.get("FLOWCHAIN_DB") or DEFAULT_DATABASE)
        self.batches_written = 0
        self.rows_inserted: dict[str, int] = {"ticks": 0, "bars": 0, "quarantine": 0}
        self.rows_ignored: dict[str, int] = {"ticks": 0, "quarantine": 0}

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection, opened (and the schema created) on first use.

        Raises
        ------
        flowchain.store.StoreError
            When the database cannot be opened in WAL mode.
        """
        if self._conn is None:
            assert self.path is not None
            conn = open_database(self.path)
            ensure_schema(conn)
            self._conn, self._owns_connection = conn, True
        return self._conn

    def close(self) -> None:
        """Close the connection if this service opened it."""
        if self._conn is not None and self._owns_connection:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> DatabaseService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, batch: TickBatch) -> StorageConfirmation:
        """Write ``batch`` (ticks, bars, quarantine) in one transaction and confirm it.

        Raises
        ------
        BatchStageError
            When ``batch`` is not a :class:`TickBatch` fresh from DataProcessor.
        sqlite3.Error
            When the write fails (locked past the busy timeout, disk full); nothing of the
            batch is kept.
        """
        if not isinstance(batch, TickBatch) or batch.stage != BatchStage.PROCESSED:
            what = (f"a TickBatch at stage {batch.stage.name}" if isinstance(batch, TickBatch)
                    else f"a {type(batch).__name__}")
            raise BatchStageError(f"DatabaseService received {what}; expected a TickBatch at "
                                  "stage PROCESSED: chain DatabaseService after DataProcessor")
        conn = self.connection
        symbol = batch.symbol
        reasons = [reason_name(code) for code in batch.rejected_reasons.tolist()]
        with transaction(conn):
            ticks = insert_ticks(conn, symbol, batch.ticks, batch.seqs)
            bars = sum(upsert_bars(conn, symbol, label, bars)
                       for label, bars in batch.bars.items())
            quarantine = insert_quarantine(conn, symbol, batch.rejected, batch.rejected_seqs,
                                           reasons)
        inserted = {"ticks": ticks.inserted, "bars": bars, "quarantine": quarantine.inserted}
        ignored = {"ticks": ticks.ignored, "quarantine": quarantine.ignored}
        self.batches_written += 1
        for table, count in inserted.items():
            self.rows_inserted[table] += count
        for table, count in ignored.items():
            self.rows_ignored[table] += count
        return StorageConfirmation(symbol=symbol, first_seq=batch.first_seq, inserted=inserted,
                                   ignored=ignored, reason_counts=dict(batch.reason_counts),
                                   commit_ns=time.time_ns())

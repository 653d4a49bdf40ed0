"""The hub's store in one SQLite file (WAL): one machine, zero set-up.

One connection serves the store's threads in turn (a lock around each call); several processes
may open the same file (WAL, ``BEGIN IMMEDIATE`` for each batch, a busy timeout). A tenant view
shares the connection and adds the tenant to every WHERE clause: SQLite has no roles, so the
filter in the queries is the only wall here (PostgreSQL adds row-level security).
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowchain.hub.rows import KINDS, Batch
from flowchain.hub.store import (
    SCHEMA,
    HubStoreUnavailable,
    IngestResult,
    SqlHubStore,
    batch_rows,
    batch_tenants,
    ingest_result,
    insert_sql,
)
from flowchain.store import StoreError, ensure_schema, open_database, transaction

DEFAULT_BUSY_TIMEOUT_MS = 10_000
"""How long a write waits for another process's write lock before failing."""


class _Shared:
    """The connection and its lock, shared by a store and its tenant views."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.closed = False


class SqliteHubStore(SqlHubStore):
    """The hub's store in the SQLite file at ``path`` (created with its tables when missing).

    Raises
    ------
    HubStoreUnavailable
        When the file cannot be opened in WAL mode.
    """

    def __init__(self, path: Path, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
                 _shared: _Shared | None = None, _tenant: str | None = None) -> None:
        super().__init__(_tenant)
        self.path = Path(path)
        if _shared is None:
            try:
                conn = open_database(self.path, busy_timeout_ms=busy_timeout_ms)
                ensure_schema(conn, SCHEMA)
            except (StoreError, sqlite3.Error) as exc:
                raise HubStoreUnavailable(f"cannot open the hub database {str(self.path)!r}: "
                                          f"{exc}") from exc
            _shared = _Shared(conn)
        self._shared = _shared

    def __repr__(self) -> str:
        view = f", tenant={self.tenant!r}" if self.tenant is not None else ""
        return f"SqliteHubStore({str(self.path)!r}{view})"

    def for_tenant(self, tenant: str) -> SqliteHubStore:
        if not tenant:
            raise ValueError("tenant must be a non-empty string")
        if self.tenant is not None and tenant != self.tenant:
            raise PermissionError(f"the view of tenant {self.tenant!r} cannot open a view of "
                                  f"{tenant!r}")
        return SqliteHubStore(self.path, _shared=self._shared, _tenant=tenant)

    def close(self) -> None:
        if self.tenant is not None:
            return
        with self._shared.lock:
            if not self._shared.closed:
                self._shared.closed = True
                self._shared.conn.close()

    def _conn(self) -> sqlite3.Connection:
        if self._shared.closed:
            raise HubStoreUnavailable(f"the hub database {str(self.path)!r} is closed")
        return self._shared.conn

    def _read(self, sql: str, args: Sequence[Any]) -> list[tuple]:
        with self._shared.lock:
            try:
                return self._conn().execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                raise HubStoreUnavailable(f"hub database {str(self.path)!r}: {exc}") from exc

    def _ingest(self, batch: Batch) -> IngestResult:
        stored: dict[str, int] = {}
        with self._shared.lock:
            conn = self._conn()
            try:
                with transaction(conn):
                    for kind in KINDS:
                        rows = batch_rows(batch, kind)
                        if rows:
                            stored[kind] = conn.executemany(insert_sql(kind), rows).rowcount
                    conn.executemany("INSERT INTO hub_node_tenants (node_id, tenant) "
                                     "VALUES (?, ?) ON CONFLICT DO NOTHING",
                                     batch_tenants(batch))
            except sqlite3.OperationalError as exc:
                raise HubStoreUnavailable(f"hub database {str(self.path)!r}: {exc}") from exc
        return ingest_result(batch, stored)

    def _write_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._shared.lock:
            conn = self._conn()
            try:
                with transaction(conn):
                    conn.executemany(sql, rows)
            except sqlite3.OperationalError as exc:
                raise HubStoreUnavailable(f"hub database {str(self.path)!r}: {exc}") from exc

    def _touch(self, node_id: str, seen_ns: int, info: str) -> None:
        with self._shared.lock:
            try:
                self._conn().execute(
                    "INSERT INTO hub_nodes (node_id, first_seen_ns, last_contact_ns, info) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (node_id) DO UPDATE SET "
                    "last_contact_ns = max(hub_nodes.last_contact_ns, excluded.last_contact_ns),"
                    " first_seen_ns = min(hub_nodes.first_seen_ns, excluded.first_seen_ns), "
                    "info = excluded.info", (node_id, seen_ns, seen_ns, info))
            except sqlite3.OperationalError as exc:
                raise HubStoreUnavailable(f"hub database {str(self.path)!r}: {exc}") from exc

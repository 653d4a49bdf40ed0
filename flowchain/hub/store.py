"""The hub's store: what nodes ship, kept once, read merged across nodes and per tenant.

:func:`open_store` opens an embedded SQLite file (one machine, zero set-up;
:mod:`flowchain.hub.store_sqlite`) or a PostgreSQL database shared by several hubs
(``postgresql://...``; :mod:`flowchain.hub.store_pg`). Both keep the same tables and answer the
same queries, written once here (:class:`SqlHubStore`); they differ in connections, bulk
ingest and, in PostgreSQL, row-level security per tenant.

Ingest is idempotent: interval, execution and alert rows are keyed by (node_id, local_id) in
their kind's table, so a batch sent twice, or re-cut differently after a node restarts, is
stored once. Usage rows are an upsert per (node_id, tenant, period) where the newest
``updated_ns`` wins; an alert row already stored is updated only forward (an open escalation
closing, or counting more alerts), never back.

The store holds no state of its own beyond its connections: every answer is read from the
database, so several hubs sharing one PostgreSQL agree.
"""
from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec
import numpy as np

from flowchain.errors import FlowChainError
from flowchain.histograms import LatencyHistogram
from flowchain.hub.merge import empty_counts, histogram_of_counts, merged_counts
from flowchain.hub.rows import KINDS, LOCAL_KINDS, AlertRow, Batch, ExecutionRow, IntervalRow, UsageRow

ROW_TYPES = {"intervals": IntervalRow, "executions": ExecutionRow, "alerts": AlertRow,
             "usage": UsageRow}
"""The row type of each kind."""
TABLES = {"intervals": "hub_intervals", "executions": "hub_executions", "alerts": "hub_alerts",
          "usage": "hub_usage"}
"""The table of each kind."""
COLUMNS = {kind: tuple(t.__struct_fields__) for kind, t in ROW_TYPES.items()}
"""The columns of each kind's table: the row type's fields, in order."""
TENANT_TABLES = (*TABLES.values(), "hub_node_tenants", "hub_rollups")
"""The tables with a ``tenant`` column (row-level security in PostgreSQL)."""

SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS hub_intervals (
        node_id           TEXT    NOT NULL,
        local_id          BIGINT  NOT NULL,
        run_id            TEXT    NOT NULL,
        tenant            TEXT    NOT NULL,
        chain             TEXT    NOT NULL,
        chain_id          TEXT    NOT NULL,
        step              TEXT    NOT NULL,
        step_index        INTEGER NOT NULL,
        start_ns          BIGINT  NOT NULL,
        end_ns            BIGINT  NOT NULL,
        count             BIGINT  NOT NULL,
        errors            BIGINT  NOT NULL,
        expected_ns       BIGINT,
        histogram         TEXT    NOT NULL,
        failure_histogram TEXT,
        PRIMARY KEY (node_id, local_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS hub_intervals_by_chain ON hub_intervals (chain, step, start_ns)",
    """
    CREATE TABLE IF NOT EXISTS hub_executions (
        node_id        TEXT    NOT NULL,
        local_id       BIGINT  NOT NULL,
        run_id         TEXT    NOT NULL,
        execution_id   TEXT    NOT NULL,
        tenant         TEXT    NOT NULL,
        chain          TEXT    NOT NULL,
        chain_id       TEXT    NOT NULL,
        status         TEXT    NOT NULL,
        sampled        BOOLEAN NOT NULL,
        start_epoch_ns BIGINT  NOT NULL,
        duration_ns    BIGINT,
        failed_step    TEXT,
        record         TEXT    NOT NULL,
        PRIMARY KEY (node_id, local_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS hub_executions_by_time "
    "ON hub_executions (tenant, start_epoch_ns)",
    """
    CREATE TABLE IF NOT EXISTS hub_alerts (
        node_id   TEXT    NOT NULL,
        local_id  BIGINT  NOT NULL,
        run_id    TEXT    NOT NULL,
        kind      TEXT    NOT NULL,
        tenant    TEXT    NOT NULL,
        chain     TEXT    NOT NULL,
        chain_id  TEXT    NOT NULL,
        step      TEXT    NOT NULL,
        start_ns  BIGINT  NOT NULL,
        end_ns    BIGINT,
        alerts    BIGINT  NOT NULL,
        message   TEXT    NOT NULL,
        fields    TEXT    NOT NULL,
        PRIMARY KEY (node_id, local_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS hub_alerts_by_time ON hub_alerts (tenant, start_ns)",
    """
    CREATE TABLE IF NOT EXISTS hub_usage (
        node_id    TEXT   NOT NULL,
        tenant     TEXT   NOT NULL,
        period     TEXT   NOT NULL,
        used       BIGINT NOT NULL,
        reserved   BIGINT NOT NULL,
        refused    BIGINT NOT NULL,
        updated_ns BIGINT NOT NULL,
        PRIMARY KEY (node_id, tenant, period)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS hub_nodes (
        node_id         TEXT   PRIMARY KEY,
        first_seen_ns   BIGINT NOT NULL,
        last_contact_ns BIGINT NOT NULL,
        info            TEXT   NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS hub_rollups (
        node_id TEXT   NOT NULL,
        tenant  TEXT   NOT NULL,
        chain   TEXT   NOT NULL,
        step    TEXT   NOT NULL,
        hour_ns BIGINT NOT NULL,
        intervals BIGINT NOT NULL,
        idx     BYTEA  NOT NULL,
        counts  BYTEA  NOT NULL,
        PRIMARY KEY (chain, step, hour_ns, node_id, tenant)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS hub_node_tenants (
        node_id TEXT NOT NULL,
        tenant  TEXT NOT NULL,
        PRIMARY KEY (node_id, tenant)
    )
    """,
)
"""The hub's tables, the same in SQLite and PostgreSQL (``CREATE ... IF NOT EXISTS``)."""

ROLLUP_NS = 3_600_000_000_000
"""The span of a stored merge of interval histograms (:meth:`SqlHubStore.merged_histogram`)."""

ALERT_FORWARD = ("hub_alerts.end_ns IS NULL AND (excluded.end_ns IS NOT NULL "
                 "OR excluded.alerts > hub_alerts.alerts)")
"""When a shipped alert row replaces the stored copy: only forward (closing, more alerts)."""


class HubStoreError(FlowChainError, RuntimeError):
    """The hub's database failed a request (unreachable, locked too long, refused)."""


class HubStoreUnavailable(HubStoreError):
    """The hub's database cannot be reached now; the request may be retried later."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    """Per kind, the rows stored (new or moved forward) and the duplicates already held."""

    stored: dict[str, int]
    duplicates: dict[str, int]


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node the hub has heard from: first and last contact (epoch ns) and what it said."""

    node_id: str
    first_seen_ns: int
    last_contact_ns: int
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class IntervalTotal:
    """Executions and errors of a chain (``step == ''``) or step on one node, summed."""

    node_id: str
    tenant: str
    chain: str
    chain_id: str
    step: str
    count: int
    errors: int


class HubStore(Protocol):
    """What the hub stores and reads; every method is safe to call from several threads."""

    def ingest(self, batch: Batch) -> IngestResult: ...

    def touch_node(self, node_id: str, seen_ns: int, info: dict[str, Any]) -> None: ...

    def nodes(self) -> list[NodeRecord]: ...

    def shipped_up_to(self, node_id: str) -> dict[str, int]: ...

    def merged_histogram(self, chain: str, step: str = "", *, start_ns: int, end_ns: int,
                         tenant: str | None = None,
                         node_ids: Sequence[str] | None = None) -> LatencyHistogram: ...

    def interval_totals(self, *, start_ns: int | None = None, end_ns: int | None = None,
                        tenant: str | None = None) -> list[IntervalTotal]: ...

    def executions(self, *, tenant: str | None = None, chain: str | None = None,
                   status: str | None = None, limit: int = 100) -> list[ExecutionRow]: ...

    def alerts(self, *, tenant: str | None = None, limit: int = 100) -> list[AlertRow]: ...

    def usage(self, *, tenant: str | None = None) -> list[UsageRow]: ...

    def for_tenant(self, tenant: str) -> HubStore: ...

    def close(self) -> None: ...


def open_store(url_or_path: str | Path, **options: Any) -> HubStore:
    """Open the hub's store: ``postgresql://...`` (or ``postgres://``) or a SQLite file path.

    ``options`` go to :class:`~flowchain.hub.store_pg.PostgresHubStore` or
    :class:`~flowchain.hub.store_sqlite.SqliteHubStore`. The tables are created when missing.

    Raises
    ------
    HubStoreUnavailable
        When the database cannot be reached or opened.
    """
    text = str(url_or_path)
    if text.startswith(("postgresql://", "postgres://")):
        from flowchain.hub.store_pg import PostgresHubStore

        return PostgresHubStore(text, **options)
    from flowchain.hub.store_sqlite import SqliteHubStore

    return SqliteHubStore(Path(text), **options)


def _where(clauses: list[str]) -> str:
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be a non-negative int, got {limit!r}")
    return limit


def node_json(info: dict[str, Any]) -> str:
    """Return a node's info as stored (JSON text).

    Raises
    ------
    ValueError
        When ``info`` cannot be written as JSON.
    """
    try:
        return json.dumps(info, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"node info is not JSON-serializable: {exc}") from None


class SqlHubStore(ABC):
    """The queries both stores answer, on SQL with ``?`` placeholders.

    A subclass runs statements (:meth:`_read`), writes batches (:meth:`_ingest`) and opens
    tenant views (:meth:`for_tenant`). ``tenant`` set makes this a read-only view of that
    tenant: every query also filters on it.
    """

    def __init__(self, tenant: str | None = None) -> None:
        self.tenant = tenant

    # -- what a backend provides ------------------------------------------------------------
    @abstractmethod
    def _read(self, sql: str, args: Sequence[Any]) -> list[tuple]:
        """Run one query (in the tenant's scope for a view) and return its rows."""

    @abstractmethod
    def _ingest(self, batch: Batch) -> IngestResult:
        """Store a batch in one transaction."""

    @abstractmethod
    def _write_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each of ``rows`` in one transaction."""

    @abstractmethod
    def _touch(self, node_id: str, seen_ns: int, info: str) -> None:
        """Upsert a node's contact."""

    @abstractmethod
    def for_tenant(self, tenant: str) -> SqlHubStore:
        """Return a read-only view that sees only ``tenant``'s rows."""

    @abstractmethod
    def close(self) -> None:
        """Release the connections (a view's close leaves its parent's open)."""

    def __enter__(self) -> SqlHubStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------------
    def _writable(self, what: str) -> None:
        if self.tenant is not None:
            raise PermissionError(f"the view of tenant {self.tenant!r} is read-only: "
                                  f"it cannot {what}")

    def ingest(self, batch: Batch) -> IngestResult:
        """Store a node's batch in one transaction, each row once (see the module).

        Raises
        ------
        PermissionError
            On a tenant view.
        HubStoreUnavailable
            When the database cannot be reached; nothing of the batch is stored.
        """
        self._writable("ingest batches")
        if not isinstance(batch, Batch):
            raise TypeError(f"ingest takes a Batch, got {type(batch).__name__}")
        return self._ingest(batch)

    def touch_node(self, node_id: str, seen_ns: int, info: dict[str, Any]) -> None:
        """Record a contact from ``node_id`` at ``seen_ns`` (epoch ns) with its ``info``.

        The first contact is kept; the last contact only moves forward; ``info`` is replaced.

        Raises
        ------
        PermissionError
            On a tenant view.
        ValueError
            When ``node_id`` is empty or ``info`` is not JSON-serializable.
        """
        self._writable("record node contacts")
        if not node_id:
            raise ValueError("node_id must be a non-empty string")
        self._touch(node_id, int(seen_ns), node_json(info))

    # -- reads ------------------------------------------------------------------------------
    def _scope(self, clauses: list[str], args: list, tenant: str | None,
               column: str = "tenant") -> None:
        """Add the view's tenant and the asked-for tenant to a WHERE (both when both)."""
        for value in (self.tenant, tenant):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)

    def nodes(self) -> list[NodeRecord]:
        """Return every node heard from (a tenant view: the nodes that shipped its rows)."""
        clauses: list[str] = []
        args: list = []
        if self.tenant is not None:
            clauses.append("node_id IN (SELECT node_id FROM hub_node_tenants WHERE tenant = ?)")
            args.append(self.tenant)
        return [NodeRecord(n, int(first), int(last), json.loads(info)) for n, first, last, info
                in self._read("SELECT node_id, first_seen_ns, last_contact_ns, info FROM "
                              f"hub_nodes{_where(clauses)} ORDER BY node_id", args)]

    def shipped_up_to(self, node_id: str) -> dict[str, int]:
        """Per kind (intervals, executions, alerts), the highest local_id stored; 0 for none."""
        clauses, args = ["node_id = ?"], [node_id]
        self._scope(clauses, args, None)
        selects = " UNION ALL ".join(
            f"SELECT '{kind}', max(local_id) FROM {TABLES[kind]}{_where(clauses)}"
            for kind in LOCAL_KINDS)
        found = {kind: int(top or 0)
                 for kind, top in self._read(selects, args * len(LOCAL_KINDS))}
        return {kind: found.get(kind, 0) for kind in LOCAL_KINDS}

    def _interval_where(self, *, chain: str | None = None, step: str | None = None,
                        start_ns: int | None = None, end_ns: int | None = None,
                        tenant: str | None = None,
                        node_ids: Sequence[str] | None = None) -> tuple[str, list]:
        clauses: list[str] = []
        args: list = []
        for column, value in (("chain", chain), ("step", step)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if start_ns is not None:
            clauses.append("end_ns > ?")
            args.append(int(start_ns))
        if end_ns is not None:
            clauses.append("start_ns < ?")
            args.append(int(end_ns))
        self._scope(clauses, args, tenant)
        if node_ids is not None:
            ids = list(node_ids)
            if not ids:
                clauses.append("1 = 0")
            else:
                clauses.append(f"node_id IN ({', '.join('?' * len(ids))})")
                args.extend(ids)
        return _where(clauses), args

    def merged_histogram(self, chain: str, step: str = "", *, start_ns: int, end_ns: int,
                         tenant: str | None = None,
                         node_ids: Sequence[str] | None = None) -> LatencyHistogram:
        """Return the exact HDR merge of the interval histograms of ``chain``'s ``step``.

        ``step=''`` is the whole chain. Intervals overlapping [start_ns, end_ns) (epoch ns) are
        merged, of every node and tenant unless ``tenant``/``node_ids`` narrow them.

        The hours wholly inside the range are read from stored merges (``hub_rollups``: one
        per node, tenant, chain, step and hour, with the number of intervals it merged); a
        stored merge is used only while its hour still holds that many intervals (intervals
        are only ever added, so equal counts mean the same intervals), else it is merged again
        from the intervals and stored for the next query. The edges of the range are merged
        from the intervals themselves. Either way the answer is the exact merge.

        Raises
        ------
        ValueError
            When a stored histogram is not an encoded HdrHistogram.
        """
        try:
            return self._merged(chain, step, int(start_ns), int(end_ns), tenant, node_ids)
        except ValueError as exc:
            raise ValueError(f"hub_intervals of chain {chain!r} step {step!r} in "
                             f"[{start_ns}, {end_ns}): {exc}") from exc

    def _merged(self, chain: str, step: str, start_ns: int, end_ns: int, tenant: str | None,
                node_ids: Sequence[str] | None) -> LatencyHistogram:
        counts = empty_counts()
        first_hour = (start_ns // ROLLUP_NS + 1) * ROLLUP_NS   # hours starting after start_ns
        last_hour = end_ns // ROLLUP_NS * ROLLUP_NS             # ... and ending by end_ns
        where, args = self._interval_where(chain=chain, step=step, start_ns=start_ns,
                                           end_ns=end_ns, tenant=tenant, node_ids=node_ids)
        if last_hour > first_hour:
            counts += self._hours_merged(chain, step, first_hour, last_hour, tenant, node_ids)
            where += " AND NOT (start_ns >= ? AND start_ns < ?)"
            args += [first_hour, last_hour]
        rows = self._read(f"SELECT histogram FROM hub_intervals{where}", args)
        counts += merged_counts(row[0] for row in rows)
        return histogram_of_counts(counts)

    def _hours_merged(self, chain: str, step: str, first_hour: int, last_hour: int,
                      tenant: str | None, node_ids: Sequence[str] | None) -> np.ndarray:
        """The merged counts of the intervals starting in [first_hour, last_hour)."""
        hour = f"start_ns / {ROLLUP_NS} * {ROLLUP_NS}"
        where, args = self._interval_where(chain=chain, step=step, tenant=tenant,
                                           node_ids=node_ids)
        where += " AND start_ns >= ? AND start_ns < ?"
        args += [first_hour, last_hour]
        held = {(n, t, int(h)): int(c) for n, t, h, c in self._read(
            f"SELECT node_id, tenant, {hour}, count(*) FROM hub_intervals{where} "
            "GROUP BY node_id, tenant, 3", args)}
        rwhere, rargs = self._interval_where(chain=chain, step=step, tenant=tenant,
                                             node_ids=node_ids)
        rwhere += " AND hour_ns >= ? AND hour_ns < ?"
        rargs += [first_hour, last_hour]
        counts = empty_counts()
        for n, t, h, rows, idx, cnt in self._read(
                f"SELECT node_id, tenant, hour_ns, intervals, idx, counts FROM hub_rollups{rwhere}",
                rargs):
            if held.get((n, t, int(h))) == int(rows):
                del held[(n, t, int(h))]
                counts[np.frombuffer(idx, dtype="<i4")] += np.frombuffer(cnt, dtype="<i8")
        if not held:
            return counts
        groups: dict[tuple, list] = {key: [] for key in held}
        for n, t, h, text in self._read(
                f"SELECT node_id, tenant, {hour}, histogram FROM hub_intervals{where}", args):
            texts = groups.get((n, t, int(h)))
            if texts is not None:
                texts.append(text)
        fresh = []
        keys = list(groups)
        # zlib and the counts kernel release the GIL: hours are merged on several cores
        with ThreadPoolExecutor(max_workers=max(1, min(len(keys), os.cpu_count() or 1, 8)),
                                thread_name_prefix="flowchain-hub-merge") as workers:
            merges = list(workers.map(lambda key: merged_counts(groups[key]), keys))
        for (n, t, h), merged in zip(keys, merges, strict=False):
            texts = groups[(n, t, h)]
            counts += merged
            nz = np.flatnonzero(merged)
            fresh.append((n, t, chain, step, h, len(texts), nz.astype("<i4").tobytes(),
                          merged[nz].astype("<i8").tobytes()))
        if self.tenant is None:  # a tenant view reads stored merges but does not write them
            self._write_many(
                "INSERT INTO hub_rollups (node_id, tenant, chain, step, hour_ns, intervals, idx, "
                "counts) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (chain, step, hour_ns, "
                "node_id, tenant) DO UPDATE SET intervals = excluded.intervals, idx = excluded.idx, "
                "counts = excluded.counts WHERE excluded.intervals > hub_rollups.intervals", fresh)
        return counts

    def interval_totals(self, *, start_ns: int | None = None, end_ns: int | None = None,
                        tenant: str | None = None) -> list[IntervalTotal]:
        """Return count and errors per (node, tenant, chain, step) over the intervals in range."""
        where, args = self._interval_where(start_ns=start_ns, end_ns=end_ns, tenant=tenant)
        keys = "node_id, tenant, chain, chain_id, step"
        return [IntervalTotal(n, t, c, cid, s, int(count), int(errors))
                for n, t, c, cid, s, count, errors in self._read(
                    f"SELECT {keys}, sum(count), sum(errors) FROM hub_intervals{where} "
                    f"GROUP BY {keys} ORDER BY {keys}", args)]

    def executions(self, *, tenant: str | None = None, chain: str | None = None,
                   status: str | None = None, limit: int = 100) -> list[ExecutionRow]:
        """Return stored executions (failed and sampled), newest first."""
        clauses: list[str] = []
        args: list = []
        for column, value in (("chain", chain), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        self._scope(clauses, args, tenant)
        cols = COLUMNS["executions"]
        rows = self._read(f"SELECT {', '.join(cols)} FROM hub_executions{_where(clauses)} "
                          "ORDER BY start_epoch_ns DESC, node_id, local_id DESC LIMIT ?",
                          [*args, _limit(limit)])
        sampled = cols.index("sampled")
        return [ExecutionRow(*row[:sampled], bool(row[sampled]), *row[sampled + 1:])
                for row in rows]

    def alerts(self, *, tenant: str | None = None, limit: int = 100) -> list[AlertRow]:
        """Return stored warnings, escalations and recoveries, newest first."""
        clauses: list[str] = []
        args: list = []
        self._scope(clauses, args, tenant)
        rows = self._read(f"SELECT {', '.join(COLUMNS['alerts'])} FROM hub_alerts"
                          f"{_where(clauses)} ORDER BY start_ns DESC, node_id, local_id DESC "
                          "LIMIT ?", [*args, _limit(limit)])
        return [AlertRow(*row) for row in rows]

    def usage(self, *, tenant: str | None = None) -> list[UsageRow]:
        """Return every node's latest usage counters per tenant and period."""
        clauses: list[str] = []
        args: list = []
        self._scope(clauses, args, tenant)
        rows = self._read(f"SELECT {', '.join(COLUMNS['usage'])} FROM hub_usage"
                          f"{_where(clauses)} ORDER BY tenant, period, node_id", args)
        return [UsageRow(*row) for row in rows]


def batch_rows(batch: Batch, kind: str) -> list[tuple]:
    """Return a batch's rows of ``kind`` as tuples in column order, one per key, in key order.

    Rows repeated within the batch keep one copy: for usage the newest ``updated_ns``, for
    alerts the one furthest forward, otherwise the first.
    """
    rows: Iterable[Any] = getattr(batch, kind)
    if kind == "usage":
        newest: dict[tuple, UsageRow] = {}
        for row in rows:
            key = (row.tenant, row.period)
            held = newest.get(key)
            if held is None or row.updated_ns >= held.updated_ns:
                newest[key] = row
        rows = [newest[key] for key in sorted(newest)]
    elif kind == "alerts":
        forward: dict[int, AlertRow] = {}
        for row in rows:
            held = forward.get(row.local_id)
            if held is None or (held.end_ns is None and (row.end_ns is not None
                                                        or row.alerts > held.alerts)):
                forward[row.local_id] = row
        rows = [forward[key] for key in sorted(forward)]
    else:
        first: dict[int, Any] = {}
        for row in rows:
            first.setdefault(row.local_id, row)
        rows = [first[key] for key in sorted(first)]
    return [msgspec.structs.astuple(row) for row in rows]


def batch_tenants(batch: Batch) -> list[tuple[str, str]]:
    """Return the (node_id, tenant) pairs a batch carries rows of."""
    return sorted({(batch.node_id, row.tenant) for kind in KINDS
                   for row in getattr(batch, kind)})


def insert_sql(kind: str) -> str:
    """Return the idempotent INSERT of one row of ``kind`` (``?`` placeholders)."""
    cols = COLUMNS[kind]
    table = TABLES[kind]
    head = (f"INSERT INTO {table} ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' * len(cols))})")
    return head + conflict_sql(kind)


def conflict_sql(kind: str) -> str:
    """Return the ON CONFLICT clause of ``kind``: nothing, or a forward-only update."""
    cols = COLUMNS[kind]
    table = TABLES[kind]
    if kind == "usage":
        keys = ("node_id", "tenant", "period")
        sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in keys)
        return (f" ON CONFLICT (node_id, tenant, period) DO UPDATE SET {sets} "
                f"WHERE {table}.updated_ns < excluded.updated_ns")
    if kind == "alerts":
        sets = ", ".join(f"{c} = excluded.{c}" for c in ("end_ns", "alerts", "message",
                                                         "fields"))
        return f" ON CONFLICT (node_id, local_id) DO UPDATE SET {sets} WHERE {ALERT_FORWARD}"
    return " ON CONFLICT (node_id, local_id) DO NOTHING"


def ingest_result(batch: Batch, stored: dict[str, int]) -> IngestResult:
    """Return the result of a batch of which ``stored`` rows per kind were new (or moved)."""
    counts = batch.counts()
    return IngestResult(stored={k: stored.get(k, 0) for k in KINDS},
                        duplicates={k: counts[k] - stored.get(k, 0) for k in KINDS})

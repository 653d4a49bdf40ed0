"""The hub's store in PostgreSQL (psycopg 3): one database shared by several hubs.

The store keeps nothing of its own beyond a pool of connections, so any number of hubs may
serve from one database. Creating the tables, the row-level security and a tenant's role runs
under a transaction-scoped advisory lock, so hubs starting together do it once.

Row-level security, the second wall behind the queries' own ``tenant = ...`` filters: every
table with tenant rows has RLS enabled with one policy: a session whose ``current_user`` is a
tenant role (``flowchain_tenant_<hash>``, mapped to its tenant in ``hub_tenant_roles``) sees,
updates, inserts and deletes only that tenant's rows (an unmapped one: none); any other role
holding privileges on the tables sees all. A tenant view (:meth:`PostgresHubStore.for_tenant`)
runs every query in a transaction that first does ``SET LOCAL ROLE`` to that tenant's role, so
it is not the tables' owner and the policy applies: even a query that forgot its ``WHERE
tenant`` returns only that tenant's rows. Tenant roles are ``NOLOGIN`` and hold only SELECT;
an operator may give one LOGIN for a reporting tool and it still sees one tenant only.

RLS is deliberately not FORCE'd on the owner: the hub's own login (the owner, or a member of
the owning role) writes every tenant's rows, and PostgreSQL refuses ``COPY FROM`` into a table
whose row security applies to the session, which would halve the ingest rate. Tenant reads
never run as the owner, so forcing it would add nothing to the wall.
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from flowchain.hub.rows import KINDS, Batch
from flowchain.hub.store import (
    COLUMNS,
    SCHEMA,
    TABLES,
    TENANT_TABLES,
    HubStoreError,
    HubStoreUnavailable,
    IngestResult,
    SqlHubStore,
    batch_rows,
    batch_tenants,
    conflict_sql,
    ingest_result,
)

SCHEMA_VERSION = 1
"""Bumped when the hub's tables or policies change."""
MIGRATION_LOCK = 0x466C6F77487562  # "FlowHub"
"""The advisory lock key under which hubs create tables, policies and tenant roles."""
TENANT_ROLE_PREFIX = "flowchain_tenant_"
"""Every tenant role's name starts with this (the policies key on it)."""

_IS_TENANT_ROLE = f"left(current_user, {len(TENANT_ROLE_PREFIX)}) = '{TENANT_ROLE_PREFIX}'"
_MY_TENANT = "(SELECT r.tenant FROM hub_tenant_roles r WHERE r.role_name = current_user)"

RLS_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS hub_tenant_roles (
        role_name TEXT PRIMARY KEY,
        tenant    TEXT NOT NULL UNIQUE
    )
    """,
    *(stmt for table in TENANT_TABLES for stmt in (
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS hub_tenant_rows ON {table}",
        f"CREATE POLICY hub_tenant_rows ON {table} USING (CASE WHEN {_IS_TENANT_ROLE} "
        f"THEN tenant = {_MY_TENANT} ELSE true END)",
    )),
    "ALTER TABLE hub_nodes ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE hub_nodes NO FORCE ROW LEVEL SECURITY",
    "DROP POLICY IF EXISTS hub_tenant_rows ON hub_nodes",
    f"CREATE POLICY hub_tenant_rows ON hub_nodes USING (CASE WHEN {_IS_TENANT_ROLE} THEN "
    "node_id IN (SELECT nt.node_id FROM hub_node_tenants nt) ELSE true END)",
    "ALTER TABLE hub_tenant_roles ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE hub_tenant_roles NO FORCE ROW LEVEL SECURITY",
    "DROP POLICY IF EXISTS hub_tenant_rows ON hub_tenant_roles",
    f"CREATE POLICY hub_tenant_rows ON hub_tenant_roles USING (CASE WHEN {_IS_TENANT_ROLE} "
    "THEN role_name = current_user ELSE true END)",
    "CREATE TABLE IF NOT EXISTS hub_schema (version INTEGER NOT NULL)",
)
"""Row-level security per tenant (see the module); run after :data:`SCHEMA`."""

READ_TABLES = (*TENANT_TABLES, "hub_nodes", "hub_tenant_roles")
"""What a tenant role may SELECT (row-level security filters every one of them)."""


def tenant_role(tenant: str) -> str:
    """Return the name of ``tenant``'s role (a hash: any tenant name fits 63 bytes, quoted)."""
    return TENANT_ROLE_PREFIX + hashlib.sha256(tenant.encode()).hexdigest()[:32]


T = TypeVar("T")


class Connections:
    """At most ``max_size`` autocommit connections, reused; broken ones are dropped.

    A connection is opened when none is idle (so a database back from an outage is reached
    by the next request, with no back-off), and closed instead of kept when it broke.
    """

    def __init__(self, url: str, *, max_size: int, timeout_s: float) -> None:
        import psycopg

        self._psycopg = psycopg
        self.url = url
        self.max_size = max_size
        self.timeout_s = timeout_s
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_size)
        self.closed = False

    @contextmanager
    def connection(self) -> Iterator[Any]:
        if self.closed:
            raise HubStoreUnavailable("the hub store is closed")
        if not self._slots.acquire(timeout=self.timeout_s):
            raise HubStoreUnavailable(f"all {self.max_size} database connections stayed busy "
                                      f"for {self.timeout_s} s")
        conn = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._psycopg.connect(self.url, autocommit=True,
                                             connect_timeout=max(1, round(self.timeout_s)))
            yield conn
        finally:
            if conn is not None:
                idle = self._psycopg.pq.TransactionStatus.IDLE
                if self.closed or conn.closed or conn.broken or \
                        conn.info.transaction_status != idle:
                    conn.close()
                else:
                    with self._lock:
                        self._idle.append(conn)
            self._slots.release()

    def drop_idle(self) -> None:
        """Close the idle connections (after a failure they are likely dead too)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def close(self) -> None:
        self.closed = True
        self.drop_idle()


def _pg(sql: str) -> str:
    """Turn the shared queries' ``?`` placeholders into psycopg's ``%s``."""
    return sql.replace("?", "%s")


class PostgresHubStore(SqlHubStore):
    """The hub's store in the PostgreSQL database at ``url`` (``postgresql://...``).

    Parameters
    ----------
    url : str
        A libpq URL; the login needs to own (or create) the hub's tables and CREATEROLE for
        tenant views (see docs/hub.md).
    max_size : int
        Connections the store may open (kept open while idle).
    timeout_s : float
        How long a request waits for a connection (and a connection attempt) before
        :class:`HubStoreUnavailable`.

    Raises
    ------
    HubStoreUnavailable
        When the database cannot be reached.
    HubStoreError
        When the tables or policies cannot be created (privileges).
    """

    def __init__(self, url: str, *, max_size: int = 8,
                 timeout_s: float = 10.0, _parent: PostgresHubStore | None = None,
                 _tenant: str | None = None) -> None:
        super().__init__(_tenant)
        import psycopg

        self._psycopg = psycopg
        self.url = url
        if _parent is not None:
            self._pool = _parent._pool
            self._role: str | None = tenant_role(_tenant) if _tenant is not None else None
            return
        self._role = None
        connect_timeout = max(1, int(timeout_s))
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout) as conn:
                self._migrate(conn)
        except psycopg.OperationalError as exc:
            raise HubStoreUnavailable(f"cannot reach the hub database: {exc}") from exc
        except psycopg.Error as exc:
            raise HubStoreError(f"cannot create the hub's tables: {exc}") from exc
        self._pool = Connections(url, max_size=max_size, timeout_s=timeout_s)

    def __repr__(self) -> str:
        view = f", tenant={self.tenant!r}" if self.tenant is not None else ""
        return f"PostgresHubStore(pool of {self._pool.max_size}{view})"

    @staticmethod
    def _migrate(conn: Any) -> None:
        def version() -> int:
            if conn.execute("SELECT to_regclass('hub_schema')").fetchone()[0] is None:
                return 0
            row = conn.execute("SELECT max(version) FROM hub_schema").fetchone()
            return int(row[0] or 0)

        if version() >= SCHEMA_VERSION:
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            if version() >= SCHEMA_VERSION:
                return
            for statement in (*SCHEMA, *RLS_SCHEMA):
                conn.execute(statement)
            conn.execute("INSERT INTO hub_schema (version) VALUES (%s)", (SCHEMA_VERSION,))

    def for_tenant(self, tenant: str) -> PostgresHubStore:
        """Return a read-only view of ``tenant``: its queries run as the tenant's role.

        The role is created (NOLOGIN, SELECT only) and granted to the hub's login on first use.

        Raises
        ------
        PermissionError
            On a view of another tenant.
        HubStoreError
            When the hub's login may not create or grant roles (CREATEROLE).
        """
        if not tenant:
            raise ValueError("tenant must be a non-empty string")
        if self.tenant is not None and tenant != self.tenant:
            raise PermissionError(f"the view of tenant {self.tenant!r} cannot open a view of "
                                  f"{tenant!r}")
        self._ensure_role(tenant)
        return PostgresHubStore(self.url, _parent=self, _tenant=tenant)

    def _run(self, what: str, work: Callable[[Any], T]) -> T:
        """Run ``work(connection)``; once more on a fresh connection when the first one failed.

        Every request is idempotent (ingest included), so repeating one whose connection died
        mid-way (a database restarted since the connection was opened) is safe.
        """
        for attempt in (1, 2):
            try:
                with self._pool.connection() as conn:
                    return work(conn)
            except self._psycopg.OperationalError as exc:
                self._pool.drop_idle()
                if attempt == 2:
                    raise HubStoreUnavailable(f"hub database unavailable ({what}): "
                                              f"{exc}") from exc
            except self._psycopg.Error as exc:
                raise HubStoreError(f"hub database refused {what}: {exc}") from exc
        raise AssertionError("unreachable")

    def _ensure_role(self, tenant: str) -> None:
        from psycopg import sql

        role = tenant_role(tenant)
        name = sql.Identifier(role)

        def work(conn: Any) -> None:
            with conn.transaction():
                mapped = conn.execute("SELECT tenant FROM hub_tenant_roles WHERE role_name = %s",
                                      (role,)).fetchone()
                member = conn.execute("SELECT pg_has_role(current_user, oid, 'USAGE') "
                                      "FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
                if mapped is not None and member is not None and member[0]:
                    return
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                (role,)).fetchone() is None:
                    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(name))
                conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, READ_TABLES)), name))
                conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(name))
                conn.execute("INSERT INTO hub_tenant_roles (role_name, tenant) VALUES (%s, %s) "
                             "ON CONFLICT (role_name) DO NOTHING", (role, tenant))

        self._run(f"the role of tenant {tenant!r} ({role})", work)

    def close(self) -> None:
        if self.tenant is None:
            self._pool.close()

    def _read(self, sql: str, args: Sequence[Any]) -> list[tuple]:
        from psycopg import sql as pgsql

        def work(conn: Any) -> list[tuple]:
            if self._role is None:
                return conn.execute(_pg(sql), args).fetchall()
            with conn.transaction():
                conn.execute(pgsql.SQL("SET LOCAL ROLE {}").format(pgsql.Identifier(self._role)))
                return conn.execute(_pg(sql), args).fetchall()

        return self._run("a query", work)

    def _ingest(self, batch: Batch) -> IngestResult:
        def work(conn: Any) -> dict[str, int]:
            stored: dict[str, int] = {}
            with conn.transaction(), conn.cursor() as cur:
                for kind in KINDS:
                    rows = batch_rows(batch, kind)
                    if rows:
                        stored[kind] = self._insert(conn, cur, kind, rows)
                cur.executemany("INSERT INTO hub_node_tenants (node_id, tenant) VALUES (%s, %s)"
                                " ON CONFLICT DO NOTHING", batch_tenants(batch))
            return stored

        return ingest_result(batch, self._run(f"a batch of node {batch.node_id!r}", work))

    def _insert(self, conn: Any, cur: Any, kind: str, rows: list[tuple]) -> int:
        """Store rows of ``kind`` idempotently; return how many were new (or moved forward).

        New interval and execution rows (the usual case) are COPY'd straight into their table
        under a savepoint; when one is already there the savepoint is rolled back and the rows
        go through a staging table and ``INSERT ... ON CONFLICT``, as alerts and usage always
        do. Rows are in key order, so concurrent batches take their row locks in one order.
        """
        cols = ", ".join(COLUMNS[kind])
        table = TABLES[kind]
        if kind in ("intervals", "executions"):
            try:
                with conn.transaction(), cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                return len(rows)
            except self._psycopg.errors.UniqueViolation:
                pass
        stage = f"hub_stage_{kind}"
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} "
                    f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        with cur.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(f"INSERT INTO {table} AS {table} ({cols}) SELECT {cols} FROM {stage}"
                    + conflict_sql(kind))
        return cur.rowcount

    def _write_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        def work(conn: Any) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(_pg(sql), rows)

        self._run("a write", work)

    def _touch(self, node_id: str, seen_ns: int, info: str) -> None:
        def work(conn: Any) -> None:
            conn.execute(
                "INSERT INTO hub_nodes (node_id, first_seen_ns, last_contact_ns, info) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (node_id) DO UPDATE SET "
                "last_contact_ns = GREATEST(hub_nodes.last_contact_ns, "
                "excluded.last_contact_ns), first_seen_ns = LEAST(hub_nodes.first_seen_ns, "
                "excluded.first_seen_ns), info = excluded.info",
                (node_id, seen_ns, seen_ns, info))

        self._run(f"node {node_id!r}'s contact", work)

"""Business workflows in the hub's store: tenants and their API tokens, registered chains,
finished executions.

The tables live in the hub's own database (SQLite file or PostgreSQL) beside what nodes ship,
through the store's connections, so several hubs sharing one PostgreSQL see the same tenants,
chains and executions. Like the rest of the store they are tenant-scoped: a
:class:`TenantWorkflows` view (:meth:`WorkflowStore.for_tenant`) filters every query on its
tenant and, in PostgreSQL, runs every statement as the tenant's role under row-level security
(the second wall: even a statement that forgot its ``tenant = ...`` reads and writes only that
tenant's rows). ``hub_workflow_tenants`` (tiers and token hashes) is the operator's table:
tenant roles are granted nothing on it.

Tokens are kept only as their SHA-256 (``sha256:HEX``); the token itself is printed once by
``flowchain hub tenant-token add``. A deleted tenant keeps a row with ``deleted_ns`` set, so its
old token is refused with the reason.
"""
from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flowchain.hub.auth import token_hash
from flowchain.hub.store import HubStoreUnavailable
from flowchain.tenancy.tenant_id import check_tenant_id

WORKFLOW_TENANT_TABLES = ("hub_workflow_chains", "hub_workflow_executions")
"""The workflow tables holding tenant rows (row-level security in PostgreSQL)."""

WORKFLOW_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS hub_workflow_tenants (
        tenant      TEXT   PRIMARY KEY,
        tier        TEXT   NOT NULL,
        token_hash  TEXT   NOT NULL UNIQUE,
        created_ns  BIGINT NOT NULL,
        deleted_ns  BIGINT
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS hub_workflow_chains (
        tenant        TEXT   NOT NULL,
        chain_id      TEXT   NOT NULL,
        name          TEXT   NOT NULL,
        version       TEXT   NOT NULL,
        definition    TEXT   NOT NULL,
        registered_ns BIGINT NOT NULL,
        PRIMARY KEY (tenant, chain_id)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS hub_workflow_executions (
        tenant        TEXT   NOT NULL,
        execution_id  TEXT   NOT NULL,
        workflow      TEXT   NOT NULL,
        chain_id      TEXT   NOT NULL,
        user_id       TEXT   NOT NULL,
        hub_id        TEXT   NOT NULL,
        status        TEXT   NOT NULL,
        start_ns      BIGINT NOT NULL,
        duration_ns   BIGINT,
        failed_step   TEXT,
        record        TEXT   NOT NULL,
        PRIMARY KEY (tenant, execution_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS hub_workflow_executions_by_user "
    "ON hub_workflow_executions (tenant, user_id, start_ns)",
)
"""The workflow tables, the same in SQLite and PostgreSQL."""


@dataclass(frozen=True, slots=True)
class TenantRecord:
    """A tenant of the hub: its tier, and when it was deleted (None while it exists)."""

    tenant: str
    tier: str
    created_ns: int
    deleted_ns: int | None


@dataclass(frozen=True, slots=True)
class StoredChain:
    """One registered chain version of a tenant, as YAML text."""

    chain_id: str
    name: str
    version: str
    definition: str
    registered_ns: int


@dataclass(frozen=True, slots=True)
class StoredExecution:
    """One execution as the store keeps it (``record``: the execution's JSON description)."""

    execution_id: str
    workflow: str
    chain_id: str
    user_id: str
    hub_id: str
    status: str
    start_ns: int
    duration_ns: int | None
    failed_step: str | None
    record: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"execution_id": self.execution_id, "workflow": self.workflow,
                "chain_id": self.chain_id, "user": self.user_id, "hub": self.hub_id,
                "status": self.status, "start_ns": self.start_ns,
                "duration_ns": self.duration_ns, "failed_step": self.failed_step,
                **{k: v for k, v in self.record.items() if k not in ("status",)}}


_EXECUTION_COLUMNS = ("execution_id, workflow, chain_id, user_id, hub_id, status, start_ns, "
                      "duration_ns, failed_step, record")


def _execution(row: Sequence[Any]) -> StoredExecution:
    return StoredExecution(row[0], row[1], row[2], row[3], row[4], row[5], int(row[6]),
                           None if row[7] is None else int(row[7]), row[8], json.loads(row[9]))


class _Sql:
    """Statements on the hub store's own connections (SQLite or PostgreSQL)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.postgres = hasattr(store, "_pool")

    def run(self, sql: str, args: Sequence[Any] = (), *, role: str | None = None,
            many: Sequence[Sequence[Any]] | None = None) -> list[tuple]:
        """Run one statement in a transaction (as ``role`` in PostgreSQL); return its rows."""
        if self.postgres:
            return self._run_pg(sql, args, role, many)
        from flowchain.store import transaction

        shared = self.store._shared
        with shared.lock:
            conn = self.store._conn()
            try:
                with transaction(conn):
                    if many is not None:
                        conn.executemany(sql, many)
                        return []
                    return conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                raise HubStoreUnavailable(f"hub database {str(self.store.path)!r}: "
                                          f"{exc}") from exc

    def _run_pg(self, sql: str, args: Sequence[Any], role: str | None,
                many: Sequence[Sequence[Any]] | None) -> list[tuple]:
        from psycopg import sql as pgsql

        statement = sql.replace("?", "%s")

        def work(conn: Any) -> list[tuple]:
            with conn.transaction(), conn.cursor() as cur:
                if role is not None:
                    cur.execute(pgsql.SQL("SET LOCAL ROLE {}").format(pgsql.Identifier(role)))
                if many is not None:
                    cur.executemany(statement, many)
                    return []
                cur.execute(statement, args)
                return cur.fetchall() if cur.description is not None else []

        return self.store._run("a workflow statement", work)


class WorkflowStore:
    """The workflow tables over a hub store (the operator's view: every tenant).

    Creating the tables (and, in PostgreSQL, their row-level security) is idempotent and runs
    under the store's advisory lock, so hubs starting together do it once.
    """

    def __init__(self, store: Any) -> None:
        if getattr(store, "tenant", None) is not None:
            raise PermissionError("the workflow store needs the hub's own store, not a view of "
                                  f"tenant {store.tenant!r}")
        self.store = store
        self._sql = _Sql(store)
        self._granted: set[str] = set()
        self._grant_lock = threading.Lock()
        self._migrate()

    def _migrate(self) -> None:
        if not self._sql.postgres:
            for statement in WORKFLOW_SCHEMA:
                self._sql.run(statement)
            return
        from flowchain.hub.store_pg import _IS_TENANT_ROLE, _MY_TENANT, MIGRATION_LOCK

        def done(conn: Any) -> bool:
            found = conn.execute("SELECT count(*) FROM pg_policies WHERE policyname = "
                                 "'hub_tenant_rows' AND tablename = ANY(%s)",
                                 (list(WORKFLOW_TENANT_TABLES),)).fetchone()[0]
            return found == len(WORKFLOW_TENANT_TABLES) and conn.execute(
                "SELECT to_regclass('hub_workflow_tenants')").fetchone()[0] is not None

        def work(conn: Any) -> None:
            if done(conn):  # no DDL (and its table locks) when another hub made them
                return
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                if done(conn):
                    return
                for statement in WORKFLOW_SCHEMA:
                    conn.execute(statement)
                for table in WORKFLOW_TENANT_TABLES:
                    conn.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
                    conn.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
                    conn.execute(f"DROP POLICY IF EXISTS hub_tenant_rows ON {table}")
                    conn.execute(f"CREATE POLICY hub_tenant_rows ON {table} USING (CASE WHEN "
                                 f"{_IS_TENANT_ROLE} THEN tenant = {_MY_TENANT} ELSE true END)")

        self.store._run("creating the workflow tables", work)

    # ------------------------------------------------------------------ tenants (operator)

    def add_tenant(self, tenant: str, tier: str, *, replace_token: bool = False) -> str:
        """Create ``tenant`` on ``tier`` (or move an existing one to it) and issue its API
        token; return the token (the only time it is seen: the store keeps its hash).

        A deleted tenant is restored with a new token. ``replace_token`` is needed to issue a
        new token to a tenant that has one (the old one stops working).

        Raises
        ------
        UnknownTenantError
            When ``tenant`` is not a usable tenant id.
        ValueError
            When the tenant has a token and ``replace_token`` is false.
        """
        check_tenant_id(tenant)
        existing = self.tenant(tenant)
        if existing is not None and existing.deleted_ns is None and not replace_token:
            raise ValueError(f"tenant {tenant!r} already has a token; pass --replace to issue "
                             "a new one (the old one stops working)")
        token = secrets.token_urlsafe(32)
        self._sql.run(
            "INSERT INTO hub_workflow_tenants (tenant, tier, token_hash, created_ns, deleted_ns)"
            " VALUES (?, ?, ?, ?, NULL) ON CONFLICT (tenant) DO UPDATE SET tier = excluded.tier,"
            " token_hash = excluded.token_hash, deleted_ns = NULL",
            (tenant, tier, token_hash(token), time.time_ns()))
        return token

    def set_tier(self, tenant: str, tier: str) -> bool:
        """Move a tenant to ``tier``; return whether it exists."""
        rows = self._sql.run("UPDATE hub_workflow_tenants SET tier = ? WHERE tenant = ? AND "
                             "deleted_ns IS NULL RETURNING tenant", (tier, tenant))
        return bool(rows)

    def delete_tenant(self, tenant: str) -> bool:
        """Delete a tenant: its token stops working at once (on every hub); its chains and
        executions stay stored. Return whether it existed."""
        rows = self._sql.run("UPDATE hub_workflow_tenants SET deleted_ns = ? WHERE tenant = ? "
                             "AND deleted_ns IS NULL RETURNING tenant", (time.time_ns(), tenant))
        return bool(rows)

    def tenant(self, tenant: str) -> TenantRecord | None:
        rows = self._sql.run("SELECT tenant, tier, created_ns, deleted_ns FROM "
                             "hub_workflow_tenants WHERE tenant = ?", (tenant,))
        return TenantRecord(*rows[0]) if rows else None

    def tenants(self) -> list[TenantRecord]:
        """Every tenant, deleted ones included, by id."""
        return [TenantRecord(*r) for r in self._sql.run(
            "SELECT tenant, tier, created_ns, deleted_ns FROM hub_workflow_tenants "
            "ORDER BY tenant")]

    def tenant_of_token(self, token: str) -> TenantRecord | None:
        """The tenant whose token this is (deleted or not), or None.

        The token is hashed before the lookup, so nothing about the token itself is compared
        or timed; only its SHA-256 meets the index.
        """
        rows = self._sql.run("SELECT tenant, tier, created_ns, deleted_ns FROM "
                             "hub_workflow_tenants WHERE token_hash = ?", (token_hash(token),))
        return TenantRecord(*rows[0]) if rows else None

    # ------------------------------------------------------------------ views

    def for_tenant(self, tenant: str) -> TenantWorkflows:
        """A view that reads and writes only ``tenant``'s chains and executions."""
        role = None
        if self._sql.postgres:
            from psycopg import sql as pgsql

            from flowchain.hub.store_pg import tenant_role

            role = tenant_role(tenant)
            with self._grant_lock:
                if tenant not in self._granted:
                    self.store.for_tenant(tenant)  # creates the role, maps it, grants it to us
                    tables = pgsql.SQL(", ").join(map(pgsql.Identifier,
                                                      WORKFLOW_TENANT_TABLES))
                    grant = pgsql.SQL("GRANT SELECT, INSERT, UPDATE ON {} TO {}").format(
                        tables, pgsql.Identifier(role))

                    def work(conn: Any) -> None:
                        conn.execute(grant)

                    self.store._run(f"the workflow grants of tenant {tenant!r}", work)
                    self._granted.add(tenant)
        return TenantWorkflows(self._sql, tenant, role)


class TenantWorkflows:
    """One tenant's chains and executions (every statement filtered on the tenant; in
    PostgreSQL run as the tenant's role under row-level security)."""

    def __init__(self, sql: _Sql, tenant: str, role: str | None) -> None:
        self._sql = sql
        self.tenant = tenant
        self._role = role

    def _run(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        return self._sql.run(sql, args, role=self._role)

    def save_chain(self, chain: StoredChain) -> None:
        self._run("INSERT INTO hub_workflow_chains (tenant, chain_id, name, version, definition,"
                  " registered_ns) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, chain_id) "
                  "DO NOTHING", (self.tenant, chain.chain_id, chain.name, chain.version,
                                 chain.definition, chain.registered_ns))

    def chains(self) -> list[StoredChain]:
        """Every registered version, oldest first (the order they were registered in)."""
        return [StoredChain(*r) for r in self._run(
            "SELECT chain_id, name, version, definition, registered_ns FROM hub_workflow_chains"
            " WHERE tenant = ? ORDER BY registered_ns, chain_id", (self.tenant,))]

    def save_execution(self, e: StoredExecution, *, replace: bool = True) -> None:
        """Insert an execution; ``replace``: update the stored one (a running one ends).

        A running execution is stored with ``replace=False``, so it never overwrites the
        ended one when the two writes cross."""
        update = ("DO UPDATE SET status = excluded.status, duration_ns = excluded.duration_ns, "
                  "failed_step = excluded.failed_step, record = excluded.record"
                  if replace else "DO NOTHING")
        self._run(
            f"INSERT INTO hub_workflow_executions (tenant, {_EXECUTION_COLUMNS}) VALUES "
            f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, execution_id) {update}",
            (self.tenant, e.execution_id, e.workflow, e.chain_id, e.user_id, e.hub_id, e.status,
             e.start_ns, e.duration_ns, e.failed_step, json.dumps(e.record)))

    def execution(self, execution_id: str) -> StoredExecution | None:
        rows = self._run(f"SELECT {_EXECUTION_COLUMNS} FROM hub_workflow_executions WHERE "
                         "tenant = ? AND execution_id = ?", (self.tenant, execution_id))
        return _execution(rows[0]) if rows else None

    def executions(self, *, user: str | None = None, workflow: str | None = None,
                   since_ns: int = 0, limit: int = 10_000) -> list[StoredExecution]:
        """The tenant's executions (of one user, one workflow), newest first."""
        where, args = ["tenant = ?", "start_ns >= ?"], [self.tenant, since_ns]
        if user is not None:
            where.append("user_id = ?")
            args.append(user)
        if workflow is not None:
            where.append("workflow = ?")
            args.append(workflow)
        args.append(int(limit))
        return [_execution(r) for r in self._run(
            f"SELECT {_EXECUTION_COLUMNS} FROM hub_workflow_executions WHERE "
            f"{' AND '.join(where)} ORDER BY start_ns DESC, execution_id LIMIT ?", args)]

"""Tenant usage in SQLite (the node's database, beside the history): it survives restarts.

Per tenant and UTC day the store keeps ``used`` (executions admitted, exact as of the last
flush) and ``reserved`` (a claim written *before* the executions it covers are admitted). A
process that dies between flushes comes back with its reservation, so a restart never
resets a tenant's day and never under-counts it; it over-counts by at most one reservation
block. The store also keeps the tenants with their tiers, and the upgrade triggers already
fired (once per tenant, limit, threshold and period, across restarts).
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

USAGE_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS tenants (
        tenant     TEXT PRIMARY KEY,
        tier       TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS tenant_usage (
        tenant     TEXT    NOT NULL,
        period     TEXT    NOT NULL,
        used       INTEGER NOT NULL,
        reserved   INTEGER NOT NULL,
        refused    INTEGER NOT NULL DEFAULT 0,
        updated_ns INTEGER NOT NULL,
        PRIMARY KEY (tenant, period)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS tenant_triggers (
        tenant      TEXT    NOT NULL,
        limit_name  TEXT    NOT NULL,
        threshold   REAL    NOT NULL,
        period      TEXT    NOT NULL,
        time_ns     INTEGER NOT NULL,
        usage       REAL    NOT NULL,
        limit_value REAL    NOT NULL,
        tier        TEXT    NOT NULL,
        next_tier   TEXT,
        PRIMARY KEY (tenant, limit_name, threshold, period)
    )
    """,
)
"""The usage tables; :class:`UsageStore` creates them."""

LIFETIME = "lifetime"
"""The period of limits that never reset (chains registered, steps per chain)."""


def utc_day(epoch_s: float) -> str:
    """The UTC date (``YYYY-MM-DD``) of a Unix time: the period of daily quotas."""
    return dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc).strftime("%Y-%m-%d")


def utc_day_end(epoch_s: float) -> float:
    """The Unix time of the next UTC midnight after ``epoch_s``."""
    day = dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc).date()
    nxt = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    return nxt.timestamp()


@dataclass(frozen=True, slots=True)
class DayUsage:
    """One tenant's stored usage of one day."""

    tenant: str
    period: str
    used: int
    reserved: int
    refused: int

    @property
    def counted(self) -> int:
        """What a restart resumes from: the larger of the exact count and the claim."""
        return max(self.used, self.reserved)


class UsageStore:
    """Tenants, daily usage and fired triggers in one SQLite file (WAL, shared with history).

    Parameters
    ----------
    path : str or Path
        The database; created with its tables when missing.

    Raises
    ------
    flowchain.store.StoreError
        When the file cannot be opened.
    """

    def __init__(self, path: str | Path) -> None:
        from flowchain.store import ensure_schema, open_database

        self.path = Path(path)
        self.conn = open_database(self.path)
        ensure_schema(self.conn, USAGE_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def save_tenant(self, tenant: str, tier: str) -> None:
        """Record (or update) a tenant and its tier."""
        now = time.time_ns()
        with self._lock:
            self.conn.execute(
                "INSERT INTO tenants (tenant, tier, created_ns, updated_ns) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (tenant) DO UPDATE SET tier = excluded.tier, "
                "updated_ns = excluded.updated_ns", (tenant, tier, now, now))

    def tenants(self) -> list[dict[str, Any]]:
        """Every stored tenant with its tier, sorted by id."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT tenant, tier, created_ns FROM tenants ORDER BY tenant").fetchall()
        return [{"tenant": t, "tier": tier, "created_ns": c} for t, tier, c in rows]

    def tenant_tier(self, tenant: str) -> str | None:
        """The stored tier of ``tenant``, None when it is not stored."""
        with self._lock:
            row = self.conn.execute("SELECT tier FROM tenants WHERE tenant = ?",
                                    (tenant,)).fetchone()
        return None if row is None else row[0]

    def day(self, tenant: str, period: str) -> DayUsage:
        """The stored usage of ``tenant`` on ``period`` (zeros when none)."""
        with self._lock:
            row = self.conn.execute(
                "SELECT used, reserved, refused FROM tenant_usage WHERE tenant = ? AND period = ?",
                (tenant, period)).fetchone()
        if row is None:
            return DayUsage(tenant, period, 0, 0, 0)
        return DayUsage(tenant, period, *row)

    def reserve(self, tenant: str, period: str, reserved: int) -> None:
        """Persist a claim of ``reserved`` executions on ``period`` before admitting them."""
        with self._lock:
            self.conn.execute(
                "INSERT INTO tenant_usage (tenant, period, used, reserved, updated_ns) "
                "VALUES (?, ?, 0, ?, ?) ON CONFLICT (tenant, period) DO UPDATE SET "
                "reserved = max(reserved, excluded.reserved), updated_ns = excluded.updated_ns",
                (tenant, period, reserved, time.time_ns()))

    def record(self, tenant: str, period: str, used: int, refused: int, *,
               release: bool = False) -> None:
        """Persist the exact ``used`` and ``refused`` counts of ``period``.

        ``release=True`` (a clean close or the end of the day) drops the claim to ``used``.
        """
        with self._lock:
            self.conn.execute(
                "INSERT INTO tenant_usage (tenant, period, used, reserved, refused, updated_ns) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, period) DO UPDATE SET "
                "used = max(used, excluded.used), refused = max(refused, excluded.refused), "
                "reserved = CASE WHEN ? THEN max(used, excluded.used) ELSE reserved END, "
                "updated_ns = excluded.updated_ns",
                (tenant, period, used, used, refused, time.time_ns(), 1 if release else 0))

    def history(self, tenant: str | None = None, limit: int = 30) -> list[DayUsage]:
        """Stored days, newest first (of one tenant, or all)."""
        sql = "SELECT tenant, period, used, reserved, refused FROM tenant_usage"
        args: tuple = ()
        if tenant is not None:
            sql += " WHERE tenant = ?"
            args = (tenant,)
        sql += " ORDER BY period DESC, tenant LIMIT ?"
        with self._lock:
            rows = self.conn.execute(sql, (*args, limit)).fetchall()
        return [DayUsage(*r) for r in rows]

    def claim_trigger(self, tenant: str, limit: str, threshold: float, period: str, *,
                      usage: float, limit_value: float, tier: str,
                      next_tier: str | None) -> bool:
        """Record that a trigger fired; True only the first time for its key."""
        with self._lock:
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO tenant_triggers (tenant, limit_name, threshold, period, "
                "time_ns, usage, limit_value, tier, next_tier) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (tenant, limit, threshold, period, time.time_ns(), usage, limit_value, tier,
                 next_tier))
            return cur.rowcount == 1

    def triggers(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """The triggers fired, newest first."""
        sql = ("SELECT tenant, limit_name, threshold, period, time_ns, usage, limit_value, tier, "
               "next_tier FROM tenant_triggers")
        args: tuple = ()
        if tenant is not None:
            sql += " WHERE tenant = ?"
            args = (tenant,)
        with self._lock:
            rows = self.conn.execute(sql + " ORDER BY time_ns DESC", args).fetchall()
        keys = ("tenant", "limit", "threshold", "period", "time_ns", "usage", "limit_value",
                "tier", "next_tier")
        return [dict(zip(keys, r, strict=True)) for r in rows]

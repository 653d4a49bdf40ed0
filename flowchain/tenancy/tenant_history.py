"""Per-user history: interval histograms keyed by tenant, user, tier and chain, in SQLite.

:class:`TenantHistoryWriter` runs on the cold path beside the history writer, in the same
database. Every flush it reads the per-user meters of the tenant manager (the admitted wall
time of every successful execution, recorded natively), takes the difference since the
previous flush, and stores one row per (tenant, user, tier, chain) that ran: count, errors
and the histogram's non-zero buckets. Merging rows is exact (same buckets as the engine's
HDR layout), over any time range; rows older than the tenant's tier retention are deleted.

The buckets are stored sparse and uncompressed: a row is the bytes of ``(index int32, pad
int32, count int64)`` records, so merging thousands of rows is one ``b"".join`` and one
``numpy.bincount``.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flowchain.histograms import DEFAULT_SETTINGS, HistogramSettings, LatencyHistogram
from flowchain.periodic import PeriodicThread
from flowchain.tenancy.resources import RESOURCE_SCHEMA

log = logging.getLogger("flowchain.tenancy")

TENANT_HISTORY_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS tenant_series (
        series    INTEGER PRIMARY KEY,
        tenant    TEXT NOT NULL,
        user      TEXT NOT NULL,
        tier      TEXT NOT NULL,
        chain     TEXT NOT NULL,
        chain_id  TEXT NOT NULL,
        UNIQUE (tenant, user, tier, chain_id)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS tenant_intervals (
        id        INTEGER PRIMARY KEY,
        series    INTEGER NOT NULL REFERENCES tenant_series (series),
        start_ns  INTEGER NOT NULL,
        end_ns    INTEGER NOT NULL,
        count     INTEGER NOT NULL,
        errors    INTEGER NOT NULL,
        buckets   BLOB    NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS tenant_intervals_by_series "
    "ON tenant_intervals (series, start_ns, end_ns, count, errors)",
)
"""Per-user interval rows: a series per (tenant, user, tier, chain version), its rows by time
(integers and the buckets only, so a whole history reads at the speed of a plain scan)."""

SPARSE = np.dtype([("index", "<i4"), ("pad", "<i4"), ("count", "<i8")])
"""One stored bucket: its index in the engine's HDR layout and its count."""


def encode_buckets(counts: np.ndarray) -> bytes:
    """Return the sparse bytes of a dense counts row (its non-zero buckets)."""
    idx = np.flatnonzero(counts)
    out = np.zeros(len(idx), dtype=SPARSE)
    out["index"] = idx
    out["count"] = counts[idx]
    return out.tobytes()


def merge_buckets(blobs: Iterable[bytes], counts_len: int) -> np.ndarray:
    """Merge sparse rows into one dense counts row (exact: bucket by bucket).

    Raises
    ------
    ValueError
        When a row is not whole records or names a bucket outside the layout.
    """
    data = b"".join(blobs)
    if len(data) % SPARSE.itemsize:
        raise ValueError(f"stored buckets of {len(data)} bytes are not whole "
                         f"{SPARSE.itemsize}-byte records; the row is corrupt")
    records = np.frombuffer(data, dtype=SPARSE)
    if len(records) and (records["index"].min() < 0 or records["index"].max() >= counts_len):
        raise ValueError(f"stored buckets fall outside the layout of {counts_len} counts")
    return np.bincount(records["index"], weights=records["count"],
                       minlength=counts_len).astype(np.int64)


@functools.lru_cache(maxsize=4)
def _equivalents(layout_key: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest equivalent value (ns) of every counts index of a layout."""
    from flowchain.observe._reader import bucket_bounds

    lowest, width = bucket_bounds(dict(layout_key))
    return lowest, lowest + width - 1


def percentiles_of(counts: np.ndarray, percentiles: Iterable[float],
                   settings: HistogramSettings = DEFAULT_SETTINGS) -> dict[float, int]:
    """Percentiles of a dense counts row, as HdrHistogram computes them, vectorized.

    The same values as ``LatencyHistogram.percentiles`` (the highest equivalent value of the
    first bucket whose cumulative count reaches the target), without its per-bucket loop.
    """
    ps = list(percentiles)
    total = int(counts.sum())
    if not total:
        return {p: 0 for p in ps}
    lowest, highest = _equivalents(tuple(sorted(settings.layout().items())))
    cumulative = np.cumsum(counts)
    out = {}
    for p in ps:
        target = max(int(min(p, 100.0) * total / 100 + 0.5), 1)
        index = int(np.searchsorted(cumulative, target, side="left"))
        out[p] = int(highest[index] if p else lowest[index])
    return out


def histogram_of(counts: np.ndarray, settings: HistogramSettings = DEFAULT_SETTINGS
                 ) -> LatencyHistogram:
    """A LatencyHistogram of a merged counts row (total, min and max derived from it)."""
    from flowchain.observe._reader import bucket_values
    from flowchain.observe.history import histogram_of_counts

    lowest = bucket_values(settings.layout())[0]
    return histogram_of_counts(counts, lowest, settings)


class _Base:
    __slots__ = ("nonzero", "counts", "executions", "failures", "completed")

    def __init__(self) -> None:
        self.nonzero = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.executions = 0
        self.failures = 0
        self.completed = 0


class TenantHistoryWriter:
    """Persist the tenant manager's per-user meters as interval rows.

    Parameters
    ----------
    manager : TenantManager
    path : str or Path
        The SQLite database (the node's, beside the history tables).
    interval_s : float
        The interval when running in a thread (:meth:`start`).

    Attributes
    ----------
    counters : dict
        ``rows`` written, ``pruned`` rows deleted past retention, ``flush_errors``.
    """

    def __init__(self, manager: Any, path: str | Path, *, interval_s: float = 10.0,
                 clock: Any = time.time_ns) -> None:
        from flowchain.store import ensure_schema, open_database

        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.manager = manager
        self.path = Path(path)
        self.conn = open_database(self.path)
        ensure_schema(self.conn, TENANT_HISTORY_SCHEMA)
        ensure_schema(self.conn, RESOURCE_SCHEMA)
        self.counters = {"rows": 0, "resource_rows": 0, "pruned": 0, "flush_errors": 0}
        self._resource_bases: dict[int, dict[str, np.ndarray]] = {}
        self._clock = clock
        self._bases: dict[int, _Base] = {}
        self._series_ids: dict[tuple[str, str, str, str], int] = {}
        self._start = clock()
        self._lock = threading.Lock()
        self._periodic = PeriodicThread(self._guarded, interval_s, "flowchain-tenant-history")

    def start(self) -> TenantHistoryWriter:
        self._periodic.start()
        return self

    def close(self) -> None:
        if not self._periodic.stop(30):
            self.flush()
        self.conn.close()

    def _guarded(self) -> None:
        try:
            self.flush()
        except Exception:
            self.counters["flush_errors"] += 1
            log.exception("tenant history flush to %s failed", self.path)

    def flush(self) -> int:
        """Write one interval of every meter that ran since the last flush; return rows."""
        from flowchain.store import transaction

        with self._lock:
            end = self._clock()
            rows = []
            for ctx, chain, chain_id, call in self.manager.meters():
                base = self._bases.get(id(call))
                if base is None:
                    base = self._bases[id(call)] = _Base()
                executions, failures = int(call.executions), int(call.failures)
                if executions == base.executions == base.completed + base.failures:
                    continue  # nothing ran, nothing was in flight at the last flush
                counts, stats = call.meter.snapshot()
                diff = counts.copy()
                diff[base.nonzero] -= base.counts
                base.nonzero = np.flatnonzero(counts)
                base.counts = counts[base.nonzero]
                d_fail = failures - base.failures
                base.executions, base.failures = executions, failures
                base.completed = int(stats[0])
                if not diff.any() and not d_fail:
                    continue
                rows.append((self._series(ctx.tenant_id, ctx.user_id, ctx.tier, chain,
                                          chain_id),
                             self._start, end, int(diff.sum()), d_fail, encode_buckets(diff)))
            resource_rows = self._resource_rows(end)
            with transaction(self.conn):
                self.conn.executemany(
                    "INSERT INTO tenant_intervals (series, start_ns, end_ns, count, errors, "
                    "buckets) VALUES (?, ?, ?, ?, ?, ?)", rows)
                self.conn.executemany(
                    "INSERT INTO tenant_resources (tenant, tier, chain, chain_id, step, "
                    "start_ns, end_ns, samples, wall_ns, cpu_ns, alloc_bytes, cpu_buckets, "
                    "alloc_buckets) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    resource_rows)
                pruned = self._prune(end)
            self._start = end
            self.counters["rows"] += len(rows)
            self.counters["resource_rows"] += len(resource_rows)
            self.counters["pruned"] += pruned
            return len(rows)

    def _resource_rows(self, end: int) -> list[tuple]:
        """One row per probe row measured since the last flush (sampled executions)."""
        probes = getattr(self.manager, "resource_probes", None)
        out: list[tuple] = []
        for probe in (probes() if probes is not None else ()):
            now = probe.snapshot()
            base = self._resource_bases.get(id(probe))
            self._resource_bases[id(probe)] = now
            diff = {k: v - base[k] for k, v in now.items()} if base is not None else now
            for row in np.flatnonzero(diff["samples"]):
                out.append((probe.tenant, probe.tier, probe.chain, probe.chain_id,
                            probe.row_names[row], self._start, end,
                            int(diff["samples"][row]), int(diff["wall_ns"][row]),
                            int(diff["cpu_ns"][row]), int(diff["alloc_bytes"][row]),
                            encode_buckets(diff["cpu_counts"][row]),
                            encode_buckets(diff["alloc_counts"][row])))
        return out

    def _series(self, tenant: str, user: str, tier: str, chain: str, chain_id: str) -> int:
        key = (tenant, user, tier, chain_id)
        series = self._series_ids.get(key)
        if series is None:
            self.conn.execute("INSERT OR IGNORE INTO tenant_series (tenant, user, tier, chain, "
                              "chain_id) VALUES (?, ?, ?, ?, ?)", (*key[:3], chain, chain_id))
            series = self._series_ids[key] = self.conn.execute(
                "SELECT series FROM tenant_series WHERE tenant = ? AND user = ? AND tier = ? "
                "AND chain_id = ?", key).fetchone()[0]
        return series

    def _prune(self, now_ns: int) -> int:
        pruned = 0
        for tenant in self.manager.tenants():
            days = self.manager.tier_of(tenant).history_retention_days
            if days is None:
                continue
            cut = now_ns - int(days * 86400e9)
            pruned += self.conn.execute(
                "DELETE FROM tenant_intervals WHERE end_ns < ? AND series IN "
                "(SELECT series FROM tenant_series WHERE tenant = ?)", (cut, tenant)).rowcount
            pruned += self.conn.execute(
                "DELETE FROM tenant_resources WHERE end_ns < ? AND tenant = ?",
                (cut, tenant)).rowcount
        return pruned


@dataclass(frozen=True, slots=True)
class UserHistory:
    """A user's executions over a time range, from merged interval rows (exact)."""

    tenant: str
    user: str
    tiers: tuple[str, ...]
    executions: int
    failures: int
    histogram: LatencyHistogram
    by_chain: dict[str, int]

    @property
    def success_rate(self) -> float | None:
        attempts = self.executions
        return (attempts - self.failures) / attempts if attempts else None

    def to_dict(self) -> dict[str, Any]:
        s = self.histogram.summary()
        return {"tenant": self.tenant, "user": self.user, "tiers": list(self.tiers),
                "executions": self.executions, "failures": self.failures,
                "success_rate": self.success_rate, "mean_ns": s.get("mean_ns"),
                "p50_ns": s.get("p50_ns"), "p99_ns": s.get("p99_ns"),
                "most_used": [{"chain": c, "executions": n} for c, n in
                              sorted(self.by_chain.items(), key=lambda kv: (-kv[1], kv[0]))]}


def user_history(conn: Any, tenant: str, user: str, *, since_ns: int | None = None,
                 until_ns: int | None = None,
                 settings: HistogramSettings = DEFAULT_SETTINGS) -> UserHistory:
    """Merge one user's rows over a range: executions, failures, latency, most-used chains.

    ``count`` is successful executions (the histogram); ``errors`` the failed ones.
    """
    sql = ("SELECT s.tier, s.chain, i.count, i.errors, i.buckets FROM tenant_intervals i "
           "JOIN tenant_series s ON s.series = i.series WHERE s.tenant = ? AND s.user = ?")
    args: list = [tenant, user]
    if since_ns is not None:
        sql += " AND i.end_ns > ?"
        args.append(since_ns)
    if until_ns is not None:
        sql += " AND i.start_ns < ?"
        args.append(until_ns)
    tiers, blobs, by_chain = set(), [], {}
    ok = errors = 0
    for tier, chain, count, err, blob in conn.execute(sql, args):
        tiers.add(tier)
        blobs.append(blob)
        ok += count
        errors += err
        by_chain[chain] = by_chain.get(chain, 0) + count + err
    counts = merge_buckets(blobs, int(settings.layout()["counts_len"]))
    return UserHistory(tenant, user, tuple(sorted(tiers)), ok + errors, errors,
                       histogram_of(counts, settings), by_chain)

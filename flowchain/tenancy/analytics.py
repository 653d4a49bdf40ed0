"""Usage analytics over a node's database: who runs what, trends, error patterns, tiers.

:func:`analyze` reads the per-user interval rows (``tenant_intervals``), the tenants and,
when present, the failed executions the history writer stored, and returns:

* ``most_used``: chains by executions, by tenant, by user and by tier;
* ``trends``: p50/p99 per chain per hour or day (exact merges of the interval histograms),
  the direction and size of the change from the first bucket to the last, and
  ``regressions``: a chain version whose p50 is at least :data:`REGRESSION_RATIO` times the
  previous version's, naming the version (chain id) that introduced it;
* ``errors``: error rate by chain x tier, failures by step x tier, and the failing inputs seen
  more than once (the values over-represented among failures);
* ``usage_by_tier``: tenants, executions and errors per tier;
* ``resources``: which chains consume most, from the sampled executions' measurements
  (``tenant_resources``): per chain (and per step) and tier, the samples, the mean CPU ms and
  allocated KiB per call with their p50/p99 (exact HDR merges), and the mean wall ms;
  ``by_chain`` sorted by mean CPU per call, ``by_step`` likewise.
"""
from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from flowchain.histograms import DEFAULT_SETTINGS, HistogramSettings
from flowchain.tenancy.tenant_history import (
    SPARSE,
    TENANT_HISTORY_SCHEMA,
    percentiles_of,
)

_BUCKET_BITS = 24
"""Bits of the time-bucket number in a row's key (hours since 1970 fit until the 3800s)."""

REGRESSION_RATIO = 1.2
"""A new chain version whose p50 is this many times the previous one's is a regression."""

BUCKETS = {"hour": 3600, "day": 86400}

TOP = 10


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).fetchone() is not None


def _where(since_ns: int | None, tenant: str | None) -> tuple[str, list]:
    clauses, args = [], []
    if since_ns is not None:
        clauses.append("end_ns > ?")
        args.append(since_ns)
    if tenant is not None:
        clauses.append("series IN (SELECT series FROM tenant_series WHERE tenant = ?)")
        args.append(tenant)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def analyze(db: str | Path, *, since_ns: int | None = None,
            tenant: str | None = None, bucket: str = "day",
            settings: HistogramSettings = DEFAULT_SETTINGS) -> dict[str, Any]:
    """Return the analytics of a node database (see the module docstring).

    Raises
    ------
    FileNotFoundError
        When ``db`` does not exist.
    ValueError
        When ``bucket`` is not ``hour`` or ``day``.
    """
    from flowchain.store import open_database

    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be 'hour' or 'day', got {bucket!r}")
    path = Path(db)
    if not path.exists():
        raise FileNotFoundError(f"no database at {str(path)!r}; pass the node's --db path")
    conn = open_database(path, readonly=True)
    try:
        if not _table_exists(conn, "tenant_intervals"):
            return {"db": str(path), "tenants": 0, "most_used": {}, "trends": [],
                    "regressions": [], "errors": {}, "usage_by_tier": [],
                    "resources": {"by_chain": [], "by_step": []},
                    "note": "no per-user history in this database (run the node with tenants)"}
        result = _analyze(conn, str(path), since_ns, tenant, bucket, settings)
        result["resources"] = resource_use(conn, since_ns=since_ns, tenant=tenant,
                                           settings=settings)
        return result
    finally:
        conn.close()


def resource_use(conn: sqlite3.Connection, *, since_ns: int | None = None,
                 tenant: str | None = None,
                 settings: HistogramSettings = DEFAULT_SETTINGS) -> dict[str, list]:
    """Resource use per chain and step by tier, from the sampled executions' rows.

    Each entry: ``chain``, ``step`` (``""`` for the whole execution), ``tier``, ``samples``,
    ``cpu_ms`` and ``alloc_kib`` (mean, p50, p99 per call) and ``wall_ms_mean``.
    """
    if not _table_exists(conn, "tenant_resources"):
        return {"by_chain": [], "by_step": []}
    clauses, args = [], []
    if since_ns is not None:
        clauses.append("end_ns > ?")
        args.append(since_ns)
    if tenant is not None:
        clauses.append("tenant = ?")
        args.append(tenant)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    rows = conn.execute("SELECT chain, step, tier, samples, wall_ns, cpu_ns, alloc_bytes, "
                        f"cpu_buckets, alloc_buckets FROM tenant_resources{where}",
                        args).fetchall()
    if not rows:
        return {"by_chain": [], "by_step": []}
    counts_len = int(settings.layout()["counts_len"])
    groups: dict[tuple[str, str, str], int] = {}
    sums = []
    codes = np.empty(len(rows), dtype=np.int64)
    for i, (chain, step, tier, samples, wall, cpu, alloc, _, _) in enumerate(rows):
        g = groups.setdefault((chain, step, tier), len(groups))
        if g == len(sums):
            sums.append([0, 0, 0, 0])
        acc = sums[g]
        acc[0] += samples
        acc[1] += wall
        acc[2] += cpu
        acc[3] += alloc
        codes[i] = g
    cpu_merged = _merged_by_group(codes, len(groups), tuple(r[7] for r in rows), counts_len)
    alloc_merged = _merged_by_group(codes, len(groups), tuple(r[8] for r in rows), counts_len)
    by_chain, by_step = [], []
    for (chain, step, tier), g in groups.items():
        n, wall, cpu, alloc = sums[g]
        cpu_p = percentiles_of(cpu_merged[g], (50.0, 99.0), settings)
        alloc_p = percentiles_of(alloc_merged[g], (50.0, 99.0), settings)
        entry = {"chain": chain, "step": step, "tier": tier, "samples": n,
                 "wall_ms_mean": round(wall / n / 1e6, 6),
                 "cpu_ms": {"mean": round(cpu / n / 1e6, 6),
                            "p50": round(cpu_p[50.0] / 1e6, 6),
                            "p99": round(cpu_p[99.0] / 1e6, 6)},
                 "alloc_kib": {"mean": round(alloc / n / 1024, 3),
                               "p50": round(alloc_p[50.0] / 1024, 3),
                               "p99": round(alloc_p[99.0] / 1024, 3)}}
        (by_chain if step == "" else by_step).append(entry)

    def order(e: dict) -> tuple:
        return (-e["cpu_ms"]["mean"], -e["alloc_kib"]["mean"], e["chain"], e["step"],
                e["tier"])

    return {"by_chain": sorted(by_chain, key=order), "by_step": sorted(by_step, key=order)}


def _merged_by_group(groups: np.ndarray, n_groups: int, blobs: tuple,
                     counts_len: int) -> np.ndarray:
    """Dense merged counts per group, shape (n_groups, counts_len): one bincount."""
    sizes = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
    if (sizes % SPARSE.itemsize).any():
        raise ValueError("stored buckets are not whole records; the history is corrupt")
    records = np.frombuffer(b"".join(blobs), dtype=SPARSE)
    group_of = np.repeat(groups, sizes // SPARSE.itemsize)
    index = records["index"].astype(np.int64)
    if len(index) and (index.min() < 0 or index.max() >= counts_len):
        raise ValueError(f"stored buckets fall outside the layout of {counts_len} counts")
    merged = np.bincount(group_of * counts_len + index, weights=records["count"],
                         minlength=n_groups * counts_len)
    return merged.astype(np.int64).reshape(n_groups, counts_len)


def _analyze(conn: sqlite3.Connection, path: str, since_ns: int | None,
             tenant: str | None, bucket: str, settings: HistogramSettings) -> dict[str, Any]:
    where, args = _where(since_ns, tenant)
    counts_len = int(settings.layout()["counts_len"])
    width = BUCKETS[bucket] * 1_000_000_000
    series = {row[0]: row[1:] for row in conn.execute(
        "SELECT series, tenant, user, tier, chain, chain_id FROM tenant_series")}
    # per-series totals, index-only (series, start_ns, end_ns, count, errors)
    totals_rows = conn.execute(
        "SELECT series, SUM(count), SUM(errors), MIN(start_ns) FROM tenant_intervals"
        f"{where} GROUP BY series", args).fetchall()
    if not totals_rows:
        return {"db": path, "tenants": 0, "bucket": bucket, "most_used": {}, "trends": [],
                "regressions": [], "errors": _failure_patterns(conn, since_ns, tenant),
                "usage_by_tier": []}
    s_values = np.array([r[0] for r in totals_rows], dtype=np.int64)
    ok_by_series = np.array([r[1] for r in totals_rows], dtype=np.int64)
    errs_by_series = np.array([r[2] for r in totals_rows], dtype=np.int64)
    runs_by_series = ok_by_series + errs_by_series
    first_by_series = np.array([r[3] for r in totals_rows], dtype=np.int64)
    ns = len(s_values)
    # every row: one integer key (series, time bucket) and its buckets
    rows = conn.execute(f"SELECT (series << {_BUCKET_BITS}) | (start_ns / ?), buckets "
                        f"FROM tenant_intervals{where}", [width, *args]).fetchall()
    key_col, blobs = zip(*rows, strict=False)
    del rows
    keys = np.asarray(key_col, dtype=np.int64)
    s_ids = keys >> _BUCKET_BITS
    row_bucket = keys & ((1 << _BUCKET_BITS) - 1)
    s_slot = np.zeros(int(s_values.max()) + 1, dtype=np.int64)
    s_slot[s_values] = np.arange(ns)
    s_code = s_slot[s_ids]

    by_tenant: Counter = Counter()
    by_user: Counter = Counter()
    by_tier: Counter = Counter()
    chain_tier: dict[tuple[str, str], list[int]] = {}
    tier_usage: dict[str, list] = {}
    version_of_series = np.zeros(ns, dtype=np.int64)
    versions: dict[tuple[str, str], int] = {}
    version_first: list[int] = []
    for i, sid in enumerate(s_values.tolist()):
        t, user, tier, chain, chain_id = series[sid]
        runs, errors = int(runs_by_series[i]), int(errs_by_series[i])
        by_tenant[(t, chain)] += runs
        by_user[(t, user, chain)] += runs
        by_tier[(tier, chain)] += runs
        held = chain_tier.setdefault((chain, tier), [0, 0])
        held[0] += runs
        held[1] += errors
        usage = tier_usage.setdefault(tier, [set(), 0, 0])
        usage[0].add(t)
        usage[1] += runs
        usage[2] += errors
        v = versions.setdefault((chain, chain_id), len(versions))
        if v == len(version_first):
            version_first.append(int(first_by_series[i]))
        version_first[v] = min(version_first[v], int(first_by_series[i]))
        version_of_series[i] = v

    def top(counter: Counter, names: tuple[str, ...]) -> list[dict[str, Any]]:
        return [dict(zip(names, key, strict=True), executions=n)
                for key, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]]

    def summary(row: np.ndarray) -> dict[str, int]:
        ps = percentiles_of(row, (50.0, 99.0), settings)
        return {"count": int(row.sum()), "p50_ns": ps[50.0], "p99_ns": ps[99.0]}

    # every row's buckets merged per (chain version, time bucket) with one bincount
    first_bucket = int(row_bucket.min())
    b_code = row_bucket - first_bucket
    nb = int(b_code.max()) + 1
    b_values = np.arange(first_bucket, first_bucket + nb, dtype=np.int64)
    group = version_of_series[s_code] * nb + b_code
    merged = _merged_by_group(group, len(versions) * nb, blobs, counts_len)
    merged = merged.reshape(len(versions), nb, counts_len)

    regressions = []
    per_chain: dict[str, np.ndarray] = {}
    for (chain, _chain_id), v in sorted(versions.items(),
                                        key=lambda kv: (kv[0][0], version_first[kv[1]])):
        per_chain[chain] = per_chain[chain] + merged[v] if chain in per_chain else merged[v]
    previous: dict[str, tuple[str, dict[str, int]]] = {}
    for (chain, chain_id), v in sorted(versions.items(),
                                       key=lambda kv: (kv[0][0], version_first[kv[1]])):
        s = summary(merged[v].sum(axis=0))
        before = previous.get(chain)
        if before is not None and before[1]["p50_ns"] and \
                s["p50_ns"] >= REGRESSION_RATIO * before[1]["p50_ns"]:
            regressions.append({
                "chain": chain, "chain_id": chain_id, "previous_chain_id": before[0],
                "since_ns": version_first[v], "p50_ns": s["p50_ns"],
                "previous_p50_ns": before[1]["p50_ns"],
                "ratio": round(s["p50_ns"] / before[1]["p50_ns"], 3)})
        previous[chain] = (chain_id, s)

    trends = []
    for chain in sorted(per_chain):
        points = [dict(start_ns=int(b_values[b]) * width, **summary(per_chain[chain][b]))
                  for b in range(nb) if per_chain[chain][b].any()]
        if not points:  # only failures: no latency to trend
            continue
        first, last = points[0]["p50_ns"], points[-1]["p50_ns"]
        change = (last - first) / first if first else 0.0
        trends.append({"chain": chain, "bucket": bucket, "points": points,
                       "p50_change": round(change, 4),
                       "direction": "slower" if change > 0.05 else
                       ("faster" if change < -0.05 else "steady")})

    errors_out: dict[str, Any] = {"by_chain_tier": sorted((
        {"chain": c, "tier": tier, "executions": n, "errors": e,
         "error_rate": round(e / n, 6) if n else 0.0}
        for (c, tier), (n, e) in chain_tier.items() if e),
        key=lambda d: (-d["error_rate"], d["chain"], d["tier"]))}
    errors_out.update(_failure_patterns(conn, since_ns, tenant))
    return {"db": path, "tenants": len({t for t, _ in by_tenant}), "bucket": bucket,
            "most_used": {"by_tenant": top(by_tenant, ("tenant", "chain")),
                          "by_user": top(by_user, ("tenant", "user", "chain")),
                          "by_tier": top(by_tier, ("tier", "chain"))},
            "trends": trends, "regressions": regressions, "errors": errors_out,
            "usage_by_tier": [{"tier": tier, "tenants": len(ts), "executions": n, "errors": e}
                              for tier, (ts, n, e) in sorted(tier_usage.items())]}


def _failure_patterns(conn: sqlite3.Connection, since_ns: int | None,
                      tenant: str | None) -> dict[str, Any]:
    """Failures by step x tier and repeated failing inputs, from stored failed executions."""
    if not _table_exists(conn, "execution_records"):
        return {"by_step_tier": [], "failing_inputs": []}
    tiers = dict(conn.execute("SELECT tenant, tier FROM tenants")) \
        if _table_exists(conn, "tenants") else {}
    sql = ("SELECT tenant, chain, failed_step, record FROM execution_records "
           "WHERE status = 'failed'")
    args: list = []
    if since_ns is not None:
        sql += " AND start_epoch_ns > ?"
        args.append(since_ns)
    if tenant is not None:
        sql += " AND tenant = ?"
        args.append(tenant)
    by_step: Counter = Counter()
    inputs: Counter = Counter()
    total: Counter = Counter()
    for t, chain, step, record in conn.execute(sql, args):
        tier = tiers.get(t, "unknown")
        by_step[(chain, step or "", tier)] += 1
        total[(chain, step or "")] += 1
        try:
            shown = json.loads(record).get("failure", {}).get("input")
        except (ValueError, AttributeError):
            shown = None
        if shown is not None:
            inputs[(chain, step or "", shown)] += 1
    return {
        "by_step_tier": [{"chain": c, "step": s, "tier": tier, "failures": n}
                         for (c, s, tier), n in sorted(by_step.items(),
                                                       key=lambda kv: (-kv[1], kv[0]))],
        "failing_inputs": [{"chain": c, "step": s, "input": value, "failures": n,
                            "share": round(n / total[(c, s)], 4)}
                           for (c, s, value), n in sorted(inputs.items(),
                                                          key=lambda kv: (-kv[1], kv[0]))
                           if n > 1][:TOP],
    }


def synthetic_history(db: str | Path, *, tenants: int = 1000, days: int = 7,
                      chains: int = 2, seed: int = 0) -> int:
    """Write a synthetic per-user history (hourly rows per tenant and chain); return rows.

    Tenants cycle through free, pro and enterprise; the last chain gets a slower second
    version half-way through (a regression to find).
    """
    from flowchain.store import ensure_schema, open_database, transaction
    from flowchain.tenancy.usage import USAGE_SCHEMA

    rng = np.random.default_rng(seed)
    conn = open_database(Path(db))
    ensure_schema(conn, TENANT_HISTORY_SCHEMA + USAGE_SCHEMA)
    hour = 3600 * 1_000_000_000
    t0 = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00Z
    hours = days * 24
    tiers = ("free", "pro", "enterprise")
    from flowchain._native import engine

    base_index = engine.HdrCounts(1, DEFAULT_SETTINGS.layout()).index_of(50_000)  # 50 us
    rows = 0
    with transaction(conn):
        conn.executemany("INSERT OR REPLACE INTO tenants VALUES (?, ?, ?, ?)",
                         [(f"tenant-{i:05d}", tiers[i % 3], t0, t0) for i in range(tenants)])
        for c in range(chains):
            slow = c == chains - 1
            batch = []
            for i in range(tenants):
                ids = []
                for version in ("v1", "v2"):
                    ids.append(conn.execute(
                        "INSERT INTO tenant_series (tenant, user, tier, chain, chain_id) "
                        "VALUES (?, ?, ?, ?, ?)", (f"tenant-{i:05d}", "user-1", tiers[i % 3],
                                                   f"chain_{c}", f"chain_{c}@{version}")
                    ).lastrowid)
                for h in range(hours):
                    second = slow and h >= hours // 2
                    rec = np.zeros(8, dtype=SPARSE)
                    rec["index"] = base_index + (700 if second else 0) + \
                        rng.integers(0, 200, 8)
                    rec["count"] = rng.integers(1, 50, 8)
                    batch.append((ids[1] if second else ids[0], t0 + h * hour,
                                  t0 + (h + 1) * hour, int(rec["count"].sum()),
                                  int(rng.integers(0, 3)), rec.tobytes()))
            conn.executemany(
                "INSERT INTO tenant_intervals (series, start_ns, end_ns, count, errors, buckets) "
                "VALUES (?, ?, ?, ?, ?, ?)", batch)
            rows += len(batch)
    conn.close()
    return rows

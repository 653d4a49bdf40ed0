"""The hub store's costs in PostgreSQL, each against a baseline measured in the same run:

* ``ingest_rows_per_s`` vs ``bare_rows_per_s``: interval rows stored through
  :meth:`HubStore.ingest` (idempotent: staged with COPY, then ``INSERT ... ON CONFLICT DO
  NOTHING``) against a bare psycopg ``COPY`` of the same rows, in the same batches, into a
  table of the same columns and primary key; repetitions interleaved, medians reported.
* ``merged_query_s`` vs ``scan_s``: the merged p99 of one chain over ``nodes`` nodes x ``days``
  days of 10 s intervals (604,800 rows at 10 x 7) through :meth:`HubStore.merged_histogram`
  against one plain SQL scan reading the same rows' histograms; interleaved, best of each.
  ``merged_query_cold_s`` is the first merge of that history, which also stores the merge of
  every whole hour (``hub_rollups``) that the later ones read; it is reported, not budgeted.

Functions the ``flowchain bench hub`` command calls; alone: ``python -m
flowchain.bench.hub_store postgresql://...`` prints the figures as JSON.
"""
from __future__ import annotations

import json
import random
import statistics
import sys
import time
import uuid
from typing import Any

import numpy as np

from flowchain.histograms import LatencyHistogram

BUDGET = {"ingest_vs_bare_min": 0.5, "merged_query_vs_scan_max": 3.0}
INTERVAL_NS = 10_000_000_000
T0 = 1_767_225_600_000_000_000
"""2026-01-01T00:00:00Z: the synthetic history starts here."""
CHAIN = "decision"


def histogram_pool(n: int = 64, values: int = 1_000, seed: int = 7) -> list[LatencyHistogram]:
    """Return ``n`` distinct interval histograms: ``values`` log-normal latencies around 50 µs."""
    rng = random.Random(seed)
    pool = []
    for _ in range(n):
        mu = rng.uniform(10.4, 11.0)
        pool.append(LatencyHistogram.from_values(
            int(rng.lognormvariate(mu, 0.6)) + 1 for _ in range(values)))
    return pool


def interval_rows(node_ids: list[str], slots: int, encoded: list[str],
                  counts: list[int]) -> list[tuple]:
    """Return the interval rows of every node and slot (columns of ``IntervalRow``)."""
    rows = []
    k = len(encoded)
    for n, node in enumerate(node_ids):
        for slot in range(slots):
            h = (slot * 7919 + n * 104_729) % k
            rows.append((node, slot + 1, "run-bench", "bench", CHAIN, f"{CHAIN}-id", "", -1,
                         T0 + slot * INTERVAL_NS, T0 + (slot + 1) * INTERVAL_NS, counts[h], 0,
                         None, encoded[h], None))
    return rows


def _connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


def _new_database(url: str) -> str:
    """Create an empty database beside ``url``'s and return its URL."""
    from psycopg import sql

    name = f"flowchain_bench_{uuid.uuid4().hex[:10]}"
    with _connect(url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    head, mark, query = url.partition("?")
    base = head.rsplit("/", 1)[0] if head.count("/") > 2 else head
    return f"{base}/{name}{mark}{query}"


def _drop_database(url: str, bench_url: str) -> None:
    from psycopg import sql

    name = bench_url.partition("?")[0].rsplit("/", 1)[1]
    with _connect(url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def measure_ingest(url: str, *, rows: int = 20_000, batch_rows: int = 1_000,
                   repetitions: int = 5) -> dict[str, Any]:
    """Interval rows per second through ``store.ingest`` against a bare COPY (see the module)."""
    from flowchain.hub.rows import Batch, IntervalRow
    from flowchain.hub.store import COLUMNS, open_store

    pool = histogram_pool()
    encoded = [h.encode() for h in pool]
    node_rows = interval_rows(["node-bench"], rows, encoded, [h.count for h in pool])
    batches = [node_rows[i:i + batch_rows] for i in range(0, len(node_rows), batch_rows)]
    shipped = [Batch("node-bench", intervals=tuple(IntervalRow(*r) for r in b))
               for b in batches]
    cols = ", ".join(COLUMNS["intervals"])
    db = _new_database(url)
    store = open_store(db)
    try:
        with _connect(db) as conn:
            conn.execute("CREATE TABLE bench_bare (LIKE hub_intervals INCLUDING ALL)")
            ingest, bare = [], []
            for rep in range(repetitions):
                order = ("hub", "bare") if rep % 2 == 0 else ("bare", "hub")
                for what in order:
                    if what == "hub":
                        conn.execute("TRUNCATE hub_intervals")
                        start = time.perf_counter()
                        for b in shipped:
                            store.ingest(b)
                        ingest.append(len(node_rows) / (time.perf_counter() - start))
                    else:
                        conn.execute("TRUNCATE bench_bare")
                        start = time.perf_counter()
                        for b in batches:
                            with conn.transaction(), conn.cursor() as cur, \
                                    cur.copy(f"COPY bench_bare ({cols}) FROM STDIN") as copy:
                                for r in b:
                                    copy.write_row(r)
                        bare.append(len(node_rows) / (time.perf_counter() - start))
            stored = conn.execute("SELECT count(*) FROM hub_intervals").fetchone()[0]
            copied = conn.execute("SELECT count(*) FROM bench_bare").fetchone()[0]
    finally:
        store.close()
        _drop_database(url, db)
    if stored != len(node_rows) or copied != len(node_rows):
        raise RuntimeError(f"bench stored {stored} and copied {copied} of {len(node_rows)} rows")
    ingest_rate = statistics.median(ingest)
    bare_rate = statistics.median(bare)
    return {"rows": len(node_rows), "batch_rows": batch_rows,
            "ingest_rows_per_s": round(ingest_rate), "bare_rows_per_s": round(bare_rate),
            "ingest_vs_bare": round(ingest_rate / bare_rate, 3)}


def measure_merged_query(url: str, *, nodes: int = 10, days: float = 7.0,
                         repetitions: int = 3) -> dict[str, Any]:
    """The merged p99 of one chain over the history against a plain scan (see the module)."""
    from flowchain.hub.store import COLUMNS, open_store

    slots = int(days * 86_400 * 1e9 // INTERVAL_NS)
    pool = histogram_pool()
    encoded = [h.encode() for h in pool]
    node_ids = [f"node-{i:02d}" for i in range(nodes)]
    rows = interval_rows(node_ids, slots, encoded, [h.count for h in pool])
    # the merge every answer must equal: each pool histogram's counts times its uses
    index_of = {e: i for i, e in enumerate(encoded)}
    uses = np.bincount([index_of[r[13]] for r in rows], minlength=len(pool))
    want = np.zeros_like(np.frombuffer(pool[0].hdr.counts, dtype=np.int64))
    for h, n in zip(pool, uses.tolist(), strict=False):
        want += np.frombuffer(h.hdr.counts, dtype=np.int64) * n
    cols = ", ".join(COLUMNS["intervals"])
    db = _new_database(url)
    store = open_store(db)
    end = T0 + slots * INTERVAL_NS
    try:
        with _connect(db) as conn:
            with conn.transaction(), conn.cursor() as cur, \
                    cur.copy(f"COPY hub_intervals ({cols}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
            conn.execute("ANALYZE hub_intervals")
            start = time.perf_counter()  # the first merge also stores each whole hour's merge
            store.merged_histogram(CHAIN, "", start_ns=T0, end_ns=end)
            cold = time.perf_counter() - start
            scan, merged = [], []
            got = None
            for rep in range(repetitions):
                order = ("merge", "scan") if rep % 2 == 0 else ("scan", "merge")
                for what in order:
                    start = time.perf_counter()
                    if what == "merge":
                        got = store.merged_histogram(CHAIN, "", start_ns=T0, end_ns=end)
                        p99 = got.percentile(99.0)
                        merged.append(time.perf_counter() - start)
                    else:
                        read = conn.execute(
                            "SELECT histogram FROM hub_intervals WHERE chain = %s AND "
                            "step = '' AND end_ns > %s AND start_ns < %s",
                            (CHAIN, T0, end)).fetchall()
                        scan.append(time.perf_counter() - start)
                        if len(read) != len(rows):
                            raise RuntimeError(f"scan read {len(read)} of {len(rows)} rows")
    finally:
        store.close()
        _drop_database(url, db)
    exact = got is not None and np.array_equal(
        np.frombuffer(got.hdr.counts, dtype=np.int64), want)
    if not exact:
        raise RuntimeError("the merged histogram differs from the HDR merge of its rows")
    return {"rows": len(rows), "nodes": nodes, "days": days, "p99_ns": p99,
            "merged_query_s": round(min(merged), 4), "scan_s": round(min(scan), 4),
            "merged_query_cold_s": round(cold, 4),
            "merged_query_vs_scan": round(min(merged) / min(scan), 3), "merged_exact": exact}


def run(url: str, *, ingest_rows: int = 20_000, nodes: int = 10, days: float = 7.0,
        repetitions: int = 3) -> dict[str, Any]:
    """Both measurements and ``within_budget`` against :data:`BUDGET`."""
    ingest = measure_ingest(url, rows=ingest_rows, repetitions=max(repetitions, 3))
    query = measure_merged_query(url, nodes=nodes, days=days, repetitions=repetitions)
    within = (ingest["ingest_vs_bare"] >= BUDGET["ingest_vs_bare_min"]
              and query["merged_query_vs_scan"] <= BUDGET["merged_query_vs_scan_max"])
    return {"ingest": ingest, "merged_query": query, "budget": BUDGET,
            "within_budget": within}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].startswith(("postgresql://", "postgres://")):
        print("usage: python -m flowchain.bench.hub_store postgresql://USER@HOST:PORT/DB "
              "(the login may create databases)", file=sys.stderr)
        return 2
    result = run(args[0])
    print(json.dumps(result, indent=2))
    return 0 if result["within_budget"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

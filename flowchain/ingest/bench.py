"""Measure the MT5 -> database chain against a bare SQLite ``executemany`` of the same rows.

One repetition of each way writes the same batches (raw MT5-dtype bytes, one symbol per batch,
symbols alternating) into a fresh database file opened with :func:`~flowchain.store.open_database`
(WAL, ``synchronous=NORMAL``) and the same schema, one transaction per batch:

* ``bare``: ``numpy.frombuffer`` + ``BEGIN`` + ``executemany(INSERT OR IGNORE INTO ticks ...)``
  + ``COMMIT``: the simplest code that stores the ticks;
* ``ingest``: the node's ``MT5_To_Database_Chain`` run through the engine (``runner.run(batch)``,
  every step timed): decode, validate, mid/spread and 1 s / 1 min bars, and the write of ticks,
  bars and quarantine.

Repetitions are interleaved (bare, ingest, bare, ingest, ...); the figures are the medians of
the per-repetition rates; per-batch latencies of both go into HDR histograms.
"""
from __future__ import annotations

import gc
import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from flowchain.bench.distribution import interleave, new_histogram, summarize_histogram
from flowchain.ingest.batch import RawTickBatch
from flowchain.ingest.synthetic import synthetic_ticks
from flowchain.store import INSERT_TICKS_SQL, ensure_schema, open_database

BUDGET_INGEST_VS_BARE_MIN = 0.5
"""The budget: the whole chain stores at least half as many ticks per second as bare."""

SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD")


def make_batches(ticks_total: int, batch_size: int, symbols: int, seed: int) -> list[RawTickBatch]:
    """Return the benchmark's batches: clean synthetic ticks, symbols taking turns.

    Raises
    ------
    ValueError
        When a count is not positive or more symbols are asked than :data:`SYMBOLS` holds.
    """
    if ticks_total <= 0 or batch_size <= 0 or not 1 <= symbols <= len(SYMBOLS):
        raise ValueError(f"need positive ticks_total and batch_size and 1..{len(SYMBOLS)} "
                         f"symbols; got {ticks_total}, {batch_size}, {symbols}")
    per_symbol = -(-ticks_total // symbols)
    streams = {s: synthetic_ticks(per_symbol, seed=seed + i, price=1.0 + i)
               for i, s in enumerate(SYMBOLS[:symbols])}
    batches = []
    for lo in range(0, per_symbol, batch_size):
        for symbol, ticks in streams.items():
            chunk = ticks[lo:lo + batch_size]
            batches.append(RawTickBatch(symbol, lo, chunk.tobytes()))
    return batches


def _bare_writer(path: Path) -> tuple[Callable[[RawTickBatch], int], Callable[[], None]]:
    conn = open_database(path)
    ensure_schema(conn)
    from flowchain_bridge.ticks import TICK_DTYPE

    def write(raw: RawTickBatch) -> int:
        t = np.frombuffer(raw.payload, dtype=TICK_DTYPE)
        n = len(t)
        rows = zip(itertools.repeat(raw.symbol, n), t["time_msc"].tolist(), t["time"].tolist(),
                   t["bid"].tolist(), t["ask"].tolist(), t["last"].tolist(),
                   t["volume"].tolist(), t["flags"].tolist(), t["volume_real"].tolist(),
                   range(raw.first_seq, raw.first_seq + n), strict=True)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_TICKS_SQL, rows)
        conn.execute("COMMIT")
        return n

    return write, conn.close


def _ingest_writer(path: Path) -> tuple[Callable[[RawTickBatch], int], Callable[[], None]]:
    from flowchain import ChainRegistry, ComponentRegistry
    from flowchain.chain import load_chains_file
    from flowchain.chains import MT5_TO_DATABASE_CHAIN, TRADING_NODE_YAML
    from flowchain.ingest.ingestion import DataBridge
    from flowchain.ingest.processing import DataProcessor
    from flowchain.ingest.storage import DatabaseService
    from flowchain.ingest.validation import DataValidator

    service = DatabaseService(path)
    components = ComponentRegistry()
    components.register("DataBridge", DataBridge)
    components.register("DataValidator", DataValidator)
    components.register("DataProcessor", DataProcessor)
    components.register("DatabaseService", service)
    definition = next(d for d in load_chains_file(TRADING_NODE_YAML)
                      if d.name == MT5_TO_DATABASE_CHAIN)
    registry = ChainRegistry(components)
    run = registry.runner(registry.register_chain(definition)).run

    def write(raw: RawTickBatch) -> int:
        return run(raw).inserted["ticks"]

    return write, service.close


def _one_repetition(make_writer: Callable, path: Path, batches: list[RawTickBatch],
                    latency: HdrHistogram) -> float:
    write, close = make_writer(path)
    gc_was = gc.isenabled()
    gc.disable()
    rows = 0
    try:
        t0 = time.perf_counter_ns()
        for raw in batches:
            b0 = time.perf_counter_ns()
            rows += write(raw)
            latency.record_value(max(time.perf_counter_ns() - b0, 1))
        elapsed = time.perf_counter_ns() - t0
    finally:
        if gc_was:
            gc.enable()
        close()
    expected = sum(len(raw.payload) for raw in batches) // 60
    if rows != expected:
        raise RuntimeError(f"{path.name}: stored {rows} ticks of {expected}; the benchmark data "
                           "must be clean and the database fresh")
    return rows / (elapsed / 1e9)


def measure_ingest(*, ticks_total: int = 100_000, batch_size: int = 500, symbols: int = 2,
                   repetitions: int = 5, seed: int = 7,
                   workdir: str | Path | None = None) -> dict[str, Any]:
    """Measure ``ingest_ticks_per_s`` against ``bare_sqlite_rows_per_s`` in one run.

    Parameters
    ----------
    ticks_total : int
        Ticks written per repetition, by each way.
    batch_size : int
        Ticks per batch (one transaction each).
    symbols : int
        How many symbols take turns (1 to 4).
    repetitions : int
        Interleaved repetitions of each way (at least 5).
    seed : int
        Seed of the synthetic ticks.
    workdir : str or Path, optional
        Where the database files go (a temporary directory, removed after, by default).

    Returns
    -------
    dict
        ``ingest_ticks_per_s`` and ``bare_sqlite_rows_per_s`` (medians), their ratio, the
        budget and verdict, per-repetition samples and per-batch latency percentiles.

    Raises
    ------
    ValueError
        When ``repetitions`` is below 5 or a size is not positive.
    """
    if repetitions < 5:
        raise ValueError(f"at least 5 interleaved repetitions are needed, got {repetitions}")
    batches = make_batches(ticks_total, batch_size, symbols, seed)
    ways = {"bare": _bare_writer, "ingest": _ingest_writer}
    latency = {k: new_histogram() for k in ways}
    with tempfile.TemporaryDirectory(prefix="flowchain-bench-ingest-", dir=workdir) as tmp:
        directory = Path(tmp)
        warm_up = batches[: max(2, len(batches) // 20)]
        for name, make_writer in ways.items():  # imports, schema paths, allocator
            _one_repetition(make_writer, directory / f"warm-{name}.db", warm_up,
                            new_histogram())

        def repetition_of(name: str) -> Callable[[int], float]:
            def measure(rep: int) -> float:
                path = directory / f"{name}-{rep}.db"
                rate = _one_repetition(ways[name], path, batches, latency[name])
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
                return rate
            return measure

        rates = interleave({name: repetition_of(name) for name in ways}, repetitions)
    ingest, bare = median(rates["ingest"]), median(rates["bare"])
    ratio = ingest / bare
    return {
        "ingest_ticks_per_s": round(ingest),
        "bare_sqlite_rows_per_s": round(bare),
        "ingest_vs_bare": round(ratio, 3),
        "budget": {"ingest_vs_bare_min": BUDGET_INGEST_VS_BARE_MIN},
        "within_budget": ratio >= BUDGET_INGEST_VS_BARE_MIN,
        "batch_latency": {k: summarize_histogram(h) for k, h in latency.items()},
        "samples_per_s": {k: [round(r) for r in v] for k, v in rates.items()},
        "repetitions": repetitions,
        "ticks_per_repetition": sum(len(raw.payload) for raw in batches) // 60,
        "batch_size": batch_size,
        "symbols": symbols,
    }

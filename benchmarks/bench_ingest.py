"""Benchmark: the MT5 -> database chain against a bare SQLite executemany of the same rows.

What it measures, in one run, on fresh WAL database files with the same schema:

* ``bare_sqlite_rows_per_s``: per batch, ``numpy.frombuffer`` of the raw MT5 bytes, then
  ``BEGIN; executemany(INSERT OR IGNORE INTO ticks ...); COMMIT`` (the simplest code that
  stores the ticks);
* ``ingest_ticks_per_s``: per batch, one ``runner.run(batch)`` of the node's
  ``MT5_To_Database_Chain`` through the engine (decode, validate, mid/spread and 1 s / 1 min
  bars, one transaction writing ticks, bars and quarantine; every step timed).

Repetitions alternate bare and ingest (A B A B ..., at least 5 each); the rates are the medians
of the per-repetition rates, and per-batch latencies (p50/p99/p99.9/max, HDR) are printed for
both. Budget: ingest at least 0.5x bare.

Run: ``python benchmarks/bench_ingest.py [--json] [--ticks N] [--batch N] [--repetitions N]``.
"""
from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from flowchain.bench.environment import cpu, versions
from flowchain.ingest.bench import measure_ingest


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its result; return 0 within budget, 1 outside it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--ticks", type=int, default=100_000, help="ticks per repetition")
    parser.add_argument("--batch", type=int, default=500, help="ticks per batch")
    parser.add_argument("--symbols", type=int, default=2, help="symbols taking turns (1-4)")
    parser.add_argument("--repetitions", type=int, default=5, help="repetitions of each (>= 5)")
    args = parser.parse_args(argv)
    if args.repetitions < 5:
        parser.error(f"--repetitions must be at least 5, got {args.repetitions}")
    result = measure_ingest(ticks_total=args.ticks, batch_size=args.batch, symbols=args.symbols,
                            repetitions=args.repetitions)
    result["versions"] = versions()
    result["cpu"] = cpu()
    if args.json:
        print(json.dumps(result))
        return 0 if result["within_budget"] else 1

    console = Console()
    rates = Table(title=f"ticks stored per second (median of {args.repetitions} interleaved "
                        f"repetitions of {result['ticks_per_repetition']:,} ticks, "
                        f"{args.batch}-tick batches)")
    rates.add_column("way")
    rates.add_column("ticks/s", justify="right")
    rates.add_column("per repetition", justify="right")
    rates.add_row("bare executemany", f"{result['bare_sqlite_rows_per_s']:,}",
                  " ".join(f"{r:,}" for r in result["samples_per_s"]["bare"]))
    rates.add_row("MT5 -> database chain", f"{result['ingest_ticks_per_s']:,}",
                  " ".join(f"{r:,}" for r in result["samples_per_s"]["ingest"]))
    console.print(rates)
    latency = Table(title="per-batch latency (HDR, ns)")
    for column in ("way", "batches", "p50", "p99", "p99.9", "max"):
        latency.add_column(column, justify="left" if column == "way" else "right")
    for way, s in result["batch_latency"].items():
        latency.add_row(way, f"{s['count']:,}", f"{s['p50_ns']:,}", f"{s['p99_ns']:,}",
                        f"{s['p999_ns']:,}", f"{s['max_ns']:,}")
    console.print(latency)
    verdict = "within budget" if result["within_budget"] else "OUTSIDE budget"
    console.print(f"ingest/bare {result['ingest_vs_bare']}x "
                  f"(>= {result['budget']['ingest_vs_bare_min']}): {verdict}")
    console.print(f"{result['cpu']}; {result['versions']}")
    return 0 if result["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())

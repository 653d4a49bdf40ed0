"""Standalone: the engine's tracking overhead on a 4-step chain against four baselines.

Runs ``flowchain.bench.overhead`` (plain nested calls, a naive perf_counter tracker,
OpenTelemetry SDK spans, prometheus_client + hdrhistogram, and the engine) interleaved in one
process, with the failure path (the same chain whose last step raises, against nested calls
raising into a bare try/except) interleaved among them, and prints the JSON object
``flowchain bench overhead --json`` prints, then a one-line verdict against the budget (engine
<= 2x floor, >= 20x below OpenTelemetry, >= 3x below naive, a failure <= 3x the bare raise).

    python benchmarks/bench_overhead.py [repetitions] [executions]
"""
import json
import sys

from flowchain.bench import overhead

if __name__ == "__main__":
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    result = overhead.run(repetitions=reps, n=n)
    print(json.dumps(result, indent=2))
    print(f"flowchain/floor {result['flowchain_vs_floor']}x, otel/flowchain "
          f"{result['otel_vs_flowchain']}x, naive/flowchain {result['naive_vs_flowchain']}x, "
          f"failure/bare failure {result['failure_vs_bare_failure']}x: "
          f"{'within' if result['within_budget'] else 'OUTSIDE'} budget", file=sys.stderr)

"""Benchmark: the bridge <-> node wire, against bare pyzmq, in one run.

What it measures (see flowchain/bench/wire.py for the details; ``flowchain bench wire`` runs
the same code):

* ``decode_ns``: validating one 80-byte tick frame and copying its MT5 record into a ring row.
* One-way tick latency at 20,000 ticks/s from a paced publisher process, bare PUB -> blocking
  SUB ``recv`` (the floor) against the node's ZmqFeed on uvloop (tick in the ring), interleaved
  A B A B (at least 5 each), HDR p50/p99/p99.9/max per repetition, medians reported.
* ``ticks_sent``/``ticks_lost`` over a sustained run (10 s at 20,000 ticks/s by default).
* Order round trip: a bare DEALER/ROUTER echo against OrderClient -> Bridge on the fake MT5
  (zero order latency) -> RESULT, interleaved.

Budgets: one-way <= 1.3x bare at p50 and p99, order round trip <= 1.5x, no loss.
Exit status 0 within budget, 1 outside it.

Run: ``python benchmarks/bench_wire.py [--json] [--seconds S] [--rate R] [--repetitions N]``.
"""
from __future__ import annotations

import argparse
import json
import sys

from flowchain.bench import wire


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print its JSON (``--json``) or a summary; 0 within budget, else 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seconds", type=float, default=10.0, help="sustained run length")
    parser.add_argument("--rate", type=float, default=20_000.0, help="ticks per second")
    parser.add_argument("--repetitions", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--rep-seconds", type=float, default=1.0, help="one repetition's length")
    parser.add_argument("--order-trips", type=int, default=2000, help="round trips per repetition")
    args = parser.parse_args(argv)
    say = None if args.json else (lambda line: print(f"# {line}", file=sys.stderr))
    result = wire.run(seconds=args.seconds, rate=args.rate, repetitions=args.repetitions,
                      rep_seconds=args.rep_seconds, order_trips=args.order_trips, progress=say)
    if args.json:
        print(json.dumps(result))
    else:
        for key in ("decode_ns", "feed_message_ns", "bare_oneway_p50_ns", "bare_oneway_p99_ns",
                    "flowchain_oneway_p50_ns", "flowchain_oneway_p99_ns", "oneway_p50_ratio",
                    "oneway_p99_ratio", "zmq_asyncio_oneway_p50_ns",
                    "zmq_asyncio_oneway_p99_ns", "bare_order_rtt_p50_ns", "bare_order_rtt_p99_ns",
                    "flowchain_order_rtt_p50_ns", "flowchain_order_rtt_p99_ns",
                    "flowchain_ack_first_order_rtt_p50_ns", "flowchain_ack_first_order_rtt_p99_ns",
                    "order_rtt_p50_ratio", "order_rtt_p99_ratio", "ticks_sent", "ticks_lost",
                    "within_budget", "cpu", "versions"):
            print(f"{key:38} {result[key]}")
    return 0 if result["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())

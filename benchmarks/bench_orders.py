"""Benchmark: the order round trip node -> bridge (fake MT5) -> RESULT, against a bare pyzmq echo.

What it measures, in one run, on 127.0.0.1 TCP, each server in its own process (as on the
real deployment, where the bridge runs beside the terminal, not inside the node):

* ``bare``: a blocking DEALER ``send`` of an ORDER_REQUEST frame, then a blocking ``recv`` of
  the same bytes echoed by a bare ROUTER (``recv_multipart`` / ``send_multipart``). The
  physical floor of one request/reply on this machine.
* ``flowchain``: :meth:`flowchain_bridge.OrderClient.send` of an ``OrderRequest`` (encode,
  send, ACK, RESULT, decode) to a :class:`flowchain_bridge.Bridge` running on the
  :class:`~flowchain_bridge.FakeMetaTrader5` with zero order latency, on its default config:
  the bridge's order thread (which owns the ROUTER) decodes the request, admits it in the
  idempotency log, runs ``order_check`` + ``order_send`` on the fake inline and sends the
  RESULT; its ACK leaves at once for the first orders, and in the same message as the RESULT
  once the terminal has answered within ``ack_defer_us`` 8 times in a row (the fake always
  does). Every trip is a new req_id (a real trade on the fake), alternating buy and sell.
* ``flowchain_ack_first``: the same against a second bridge with ``ack_defer_us=0`` (every ACK
  sent before its order runs): what an early ACK costs when the terminal answers at once.

What stays above the bare echo, by design: the bridge's Python work per order (decode, admit,
order_check + order_send on the fake, RESULT encode: 60-70 us of a cold CPU here, a third of
that in a hot loop), the client's (encode, ACK and RESULT decode), and the ACK frame.

The ways take turns of 10 round trips each (A B C A B C ..., the first way rotating), so that
each meets the same moments of a noisy machine; at least 5 repetitions of ``--trips`` each.
Each repetition's latencies go into an HDR histogram (p50/p99/p99.9/max); the figures reported are the medians
over repetitions, and the ratios are flowchain/bare of those medians. Budget:
at most 1.5x bare at p50 and p99.

Run: ``python benchmarks/bench_orders.py [--json] [--trips N] [--repetitions N]``.
"""
from __future__ import annotations

import argparse
import json
import sys

from flowchain.bench.distribution import SUMMARY_KEYS, median_summary
from flowchain.bench.environment import cpu, versions
from flowchain.bench.wire import BUDGET, measure_order_rtt

BUDGET_RATIO = BUDGET["order_rtt"]
"""The order round trip at most 1.5x the bare echo, at p50 and p99."""


def measure(trips: int = 2000, repetitions: int = 5, warmup: int = 200) -> dict:
    """Run the interleaved bare / flowchain repetitions and return the JSON-ready result.

    Raises
    ------
    ValueError
        If ``repetitions`` < 5 or ``trips`` < 10.
    RuntimeError
        If a server process does not start or an order does not fill.
    """
    rtt = measure_order_rtt(trips, repetitions, warmup)
    result: dict = {"trips_per_repetition": trips, "repetitions": repetitions}
    for way in ("bare", "flowchain", "flowchain_ack_first"):
        for key, value in median_summary(rtt[way]).items():
            result[f"{way}_order_rtt_{key}"] = value
        result[f"{way}_order_rtt_reps"] = rtt[way]
    for q in ("p50", "p99"):
        result[f"ratio_{q}"] = round(result[f"flowchain_order_rtt_{q}_ns"]
                                     / result[f"bare_order_rtt_{q}_ns"], 3)
        result[f"ack_first_ratio_{q}"] = round(result[f"flowchain_ack_first_order_rtt_{q}_ns"]
                                               / result[f"bare_order_rtt_{q}_ns"], 3)
    result["budget_ratio"] = BUDGET_RATIO
    result["within_budget"] = (result["ratio_p50"] <= BUDGET_RATIO
                               and result["ratio_p99"] <= BUDGET_RATIO)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its result; return 0 within budget, 1 outside it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--trips", type=int, default=2000, help="round trips per repetition")
    parser.add_argument("--repetitions", type=int, default=5, help="repetitions of each (>= 5)")
    args = parser.parse_args(argv)
    if args.repetitions < 5 or args.trips < 10:
        parser.error(f"--repetitions must be >= 5 and --trips >= 10, got {args.repetitions}, "
                     f"{args.trips}")
    result = measure(args.trips, args.repetitions)
    result["versions"] = versions()
    result["cpu"] = cpu()
    if args.json:
        print(json.dumps(result))
        return 0 if result["within_budget"] else 1

    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"order round trip, ns (HDR; median of {args.repetitions} interleaved "
                        f"repetitions of {args.trips:,} trips)")
    for column in ("way", "p50", "p99", "p99.9", "max", "p50 per repetition"):
        table.add_column(column, justify="left" if column == "way" else "right")
    for way, prefix in (("bare DEALER/ROUTER echo", "bare_order_rtt"),
                        ("OrderClient -> bridge (fake MT5) -> RESULT", "flowchain_order_rtt"),
                        ("the same, every ACK at once (ack_defer_us=0)",
                         "flowchain_ack_first_order_rtt")):
        table.add_row(way, *(f"{result[f'{prefix}_{k}']:,}" for k in SUMMARY_KEYS),
                      " ".join(f"{r['p50_ns']:,}" for r in result[f"{prefix}_reps"]))
    console.print(table)
    verdict = "within budget" if result["within_budget"] else "OUTSIDE budget"
    console.print(f"flowchain/bare: p50 {result['ratio_p50']}x, p99 {result['ratio_p99']}x "
                  f"(<= {BUDGET_RATIO}x): {verdict}")
    console.print(f"{result['cpu']}; {result['versions']}")
    return 0 if result["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())

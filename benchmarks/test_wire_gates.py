"""CI latency gates for the wire: ticks bridge -> node and orders node -> bridge, against bare pyzmq.

Short runs with generous bounds so a noisy 2-core CI machine never fails them, while a
regression of the kind that matters does: a wait on the path (a poll or a sleep before a message
is read, an await that yields to the loop's next turn, a second round trip per order), a lost
tick. `flowchain bench wire` reports the true figures against its budgets (1.3x and 1.5x).

The order round trip is bounded at 3x the bare echo, not 2x: what stays above the echo is the
bridge's and the client's Python work per order, and that scales with the machine's speed
where the echo's wake-ups do not: its p50 ratio read 1.34-1.47x on a VM that decoded a tick
frame in 540 ns, and 1.7-2.3x (10 trips a turn, idle or with both vCPUs busy) on one that took
1,500 ns (docs/benchmarks.md). A measurement over the bound is taken again, up to
``ATTEMPTS`` in all, and the best one is judged: noise only ever adds latency, and a wait
that is on the path is in every attempt. So is the tick one-way figure.

Every measurement runs in a fresh interpreter: at the end of the suite the test process holds
whatever earlier tests left running, and its threads would take the GIL from the feed and the
order client (whose Python runs in the measuring process), never from the bare receivers
blocked in libzmq.
"""
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from flowchain.bench import wire
from flowchain.bench.distribution import median_summary

pytestmark = pytest.mark.latency_gate

ONEWAY_BOUND = 2.0
ORDER_RTT_BOUND = 3.0
ATTEMPTS = 3
ACK_RIDING_BOUND = 1.25
"""The round trip with the ACK riding on the RESULT at most 1.25x the one that ACKs first."""


def in_fresh_process(fn, **kwargs):
    """``fn(**kwargs)`` in a new interpreter (spawned; its helpers are its own children)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, **kwargs).result(timeout=600)


def run_wire():
    return in_fresh_process(wire.run, seconds=1.0, rate=5_000.0, repetitions=5, rep_seconds=0.2,
                            order_trips=300)


@pytest.fixture(scope="module")
def measured():
    return run_wire()


def _order_figures(rtt: dict[str, list[dict[str, int]]]) -> dict[str, float]:
    p50 = {way: median_summary(reps, ("p50_ns",))["p50_ns"] for way, reps in rtt.items()}
    return {"ratio": round(p50["flowchain"] / p50["bare"], 3),
            "ack_riding": round(p50["flowchain"] / p50["flowchain_ack_first"], 3), **p50}


def test_no_tick_lost_and_every_figure_reported(measured):
    assert measured["ticks_sent"] == 5_000 and measured["ticks_lost"] == 0, measured["feed_stats"]
    for way in ("bare", "flowchain", "flowchain_ack_first"):
        assert measured[f"{way}_order_rtt_p50_ns"] > 0 and len(measured[f"{way}_order_rtt_reps"]) == 5


def test_tick_one_way_within_2x_of_bare_pubsub(measured):
    keys = ("oneway_p50_ratio", "bare_oneway_p50_ns", "flowchain_oneway_p50_ns")
    attempts = [{k: measured[k] for k in keys}]
    while len(attempts) < ATTEMPTS and attempts[-1]["oneway_p50_ratio"] >= ONEWAY_BOUND:
        again = run_wire()
        attempts.append({k: again[k] for k in keys})
    assert min(a["oneway_p50_ratio"] for a in attempts) < ONEWAY_BOUND, attempts


def test_order_round_trip_within_3x_of_a_bare_echo(measured):
    attempts = [_order_figures({way: measured[f"{way}_order_rtt_reps"]
                                for way in ("bare", "flowchain", "flowchain_ack_first")})]
    while len(attempts) < ATTEMPTS and (attempts[-1]["ratio"] >= ORDER_RTT_BOUND
                                       or attempts[-1]["ack_riding"] >= ACK_RIDING_BOUND):
        attempts.append(_order_figures(in_fresh_process(wire.measure_order_rtt, trips=300,
                                                        reps=5)))
    assert min(a["ratio"] for a in attempts) < ORDER_RTT_BOUND, attempts
    # the ACK riding with the RESULT must never make the round trip slower than ACKing first
    assert min(a["ack_riding"] for a in attempts) < ACK_RIDING_BOUND, attempts

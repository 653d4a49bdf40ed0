"""CI latency gates for the wire: ticks bridge -> node and orders node -> bridge, against bare pyzmq.

Short runs with generous bounds (2x bare where `flowchain bench wire`'s budgets are 1.3x and 1.5x) so a noisy
2-core CI machine never fails them, while a regression of the kind that matters (a thread
hand-off or an await per message on the path, a lost tick) does. `flowchain bench wire` reports
the true figures.
"""
import pytest

from flowchain.bench import wire

pytestmark = pytest.mark.latency_gate


@pytest.fixture(scope="module")
def measured():
    return wire.run(seconds=1.0, rate=5_000.0, repetitions=5, rep_seconds=0.2, order_trips=300)


def test_no_tick_lost_and_every_figure_reported(measured):
    assert measured["ticks_sent"] == 5_000 and measured["ticks_lost"] == 0, measured["feed_stats"]
    for way in ("bare", "flowchain", "flowchain_ack_first"):
        assert measured[f"{way}_order_rtt_p50_ns"] > 0 and len(measured[f"{way}_order_rtt_reps"]) == 5


def test_tick_one_way_within_2x_of_bare_pubsub(measured):
    assert measured["oneway_p50_ratio"] < 2.0, measured


def test_order_round_trip_within_2x_of_a_bare_echo(measured):
    assert measured["order_rtt_p50_ratio"] < 2.0, measured
    # the ACK riding with the RESULT must never make the round trip slower than ACKing first
    assert measured["flowchain_order_rtt_p50_ns"] < 1.25 * measured["flowchain_ack_first_order_rtt_p50_ns"], measured

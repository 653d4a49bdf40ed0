"""ZmqFeed against a plain pyzmq PUB/ROUTER the test drives: order, gaps, backfill, restarts,
staleness and malformed frames, on real sockets on 127.0.0.1."""
from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest
import zmq
from flowchain_bridge import wire
from flowchain_bridge.ticks import TICK_DTYPE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowchain.feeds.subscriber import RESTART_SEQ_BASE, ZmqFeed

SYMBOL = "EURUSD"
TOPIC = wire.tick_topic(SYMBOL)
BEAT = wire.heartbeat_topic(SYMBOL)
STATE_OK = int(wire.HeartbeatState.CONNECTED | wire.HeartbeatState.TRADE_ALLOWED
               | wire.HeartbeatState.INITIALIZED)


def record(seq: int, bid: float | None = None) -> bytes:
    """A distinct 60-byte MT5 record per seq (the bid encodes the seq)."""
    rec = np.zeros(1, dtype=TICK_DTYPE)
    b = 1.1 + seq * 1e-5 if bid is None else bid
    rec[0] = (1_700_000_000 + seq // 1000, b, b + 1e-4, 0.0, 0, 1_700_000_000_000 + seq, 6, 0.0)
    return rec.tobytes()


class ScriptedBridge:
    """A bare PUB + ROUTER: publishes what the test says, answers backfill from its history."""

    def __init__(self, ctx: zmq.Context, session: int = 7) -> None:
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind("tcp://127.0.0.1:*")
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind("tcp://127.0.0.1:*")
        self.pub_endpoint = self.pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.router_endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.session = session
        self.history: dict[int, bytes] = {}
        self.requests: list[wire.BackfillRequest] = []
        self.since_requests: list[wire.BackfillSince] = []
        self.since_answer = np.zeros(0, dtype=TICK_DTYPE)
        """What a BACKFILL_SINCE (a restart's hole) is answered with."""
        self.answer = True
        self.status = wire.BackfillStatus.OK

    def tick(self, seq: int, send: bool = True) -> None:
        self.history[seq] = record(seq)
        if send:
            frame = wire.encode_tick(self.session, seq, 0, self.history[seq])
            self.pub.send_multipart([TOPIC, frame])

    def beat(self, last_seq: int = 0) -> None:
        self.pub.send_multipart([BEAT, wire.encode_heartbeat(self.session, 0, last_seq, STATE_OK)])

    def serve(self) -> None:
        """Answer every queued backfill request (non-blocking)."""
        while self.answer:
            try:
                ident, body = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if body[1] == wire.FrameType.BACKFILL_SINCE:
                since = wire.decode_backfill_since(body)
                self.since_requests.append(since)
                self.router.send_multipart([ident, wire.encode_backfill_response(
                    since.req_id, self.session, 0, wire.BackfillStatus.OK, 0, self.since_answer)])
                continue
            req = wire.decode_backfill_request(body)
            self.requests.append(req)
            seqs = [s for s in range(req.from_seq, req.to_seq + 1) if s in self.history]
            status = self.status if seqs else wire.BackfillStatus.GONE
            recs = np.frombuffer(b"".join(self.history[s] for s in seqs), dtype=TICK_DTYPE)
            if status != wire.BackfillStatus.OK:
                recs = recs[:0]
            self.router.send_multipart([ident, wire.encode_backfill_response(
                req.req_id, req.session_id if status != wire.BackfillStatus.SESSION_MISMATCH
                else self.session, req.symbol_id, status, seqs[0] if seqs else req.from_seq, recs)])

    def close(self) -> None:
        self.pub.close(0)
        self.router.close(0)


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.term()


@pytest.fixture
async def bridge(ctx):
    b = ScriptedBridge(ctx)
    yield b
    b.close()


async def connected_feed(bridge, ctx, eventually_async, **kw):
    """Start a feed and wait until its subscription reached the PUB (heartbeats arrive)."""
    feed = ZmqFeed(bridge.pub_endpoint, [SYMBOL], bridge.router_endpoint, context=ctx,
                   backfill_timeout=kw.pop("backfill_timeout", 5.0), ring_capacity=1024, **kw)
    await feed.start()
    await eventually_async(lambda: bridge.beat() or feed.stats.heartbeats > 0)
    return feed


async def serving(bridge: ScriptedBridge):
    while True:
        bridge.serve()
        await asyncio.sleep(0.001)


def ring_seqs(feed: ZmqFeed) -> list[int]:
    ring = feed.ring(SYMBOL)
    return ring.seq_window(ring.size).tolist()


async def test_in_order_ticks_land_in_the_ring_and_reach_the_handler(bridge, ctx,
                                                                     eventually_async):
    feed = await connected_feed(bridge, ctx, eventually_async)
    seen = []
    feed.on_tick(lambda ring, i: seen.append((ring.symbol, int(ring.seqs[i]),
                                              float(ring.ticks["bid"][i]))))
    try:
        for seq in range(1, 51):
            bridge.tick(seq)
        await eventually_async(lambda: feed.ring(SYMBOL).count == 50)
        assert ring_seqs(feed) == list(range(1, 51))
        assert feed.ring(SYMBOL).window(50).tobytes() == b"".join(record(s) for s in range(1, 51))
        assert seen == [(SYMBOL, s, 1.1 + s * 1e-5) for s in range(1, 51)]
        assert feed.stats.gaps == 0 and feed.stats.dropped == 0 and feed.stats.received == 50
        assert feed.session_id == bridge.session
    finally:
        await feed.stop()


async def test_gap_is_backfilled_and_every_tick_arrives_once_in_order(bridge, ctx,
                                                                      eventually_async):
    feed = await connected_feed(bridge, ctx, eventually_async)
    late = []
    feed.on_tick(lambda ring, i: late.append(int(ring.seqs[i])) if feed.delivering_backfill
                 else None)
    try:
        for seq in range(1, 21):
            bridge.tick(seq, send=not 6 <= seq <= 10)  # 6..10 lost on the way
        bridge.tick(21)
        # Ticks 11..21 arrive while the backfill is unanswered: they are held, not delivered.
        await eventually_async(lambda: feed.ring(SYMBOL).count == 5 and
                               feed.backfills_pending == 1)
        bridge.tick(3)  # a duplicate while the backfill is pending
        bridge.serve()
        for seq in range(22, 31):
            bridge.tick(seq)
        await eventually_async(lambda: feed.ring(SYMBOL).count == 30)
        assert ring_seqs(feed) == list(range(1, 31))
        assert feed.ring(SYMBOL).window(30).tobytes() == b"".join(record(s) for s in range(1, 31))
        assert (feed.stats.gaps, feed.stats.gap_ticks, feed.stats.backfilled) == (1, 5, 5)
        assert feed.stats.drops.get("duplicate") == 1
        assert feed.stats.unrecovered == 0
        assert [(r.from_seq, r.to_seq, r.session_id) for r in bridge.requests] == [(6, 10, 7)]
        # recovered 6..10, then those held behind them (11..21, and 22.. if they came early)
        assert late[:16] == list(range(6, 22)) and late == list(range(6, 6 + len(late)))
    finally:
        await feed.stop()


async def test_heartbeat_reveals_lost_tail_and_backfill_recovers_it(bridge, ctx,
                                                                    eventually_async):
    feed = await connected_feed(bridge, ctx, eventually_async)
    server = asyncio.get_running_loop().create_task(serving(bridge))
    try:
        for seq in range(1, 7):
            bridge.tick(seq, send=seq <= 3)
        bridge.beat(last_seq=6)
        await eventually_async(lambda: feed.ring(SYMBOL).count == 6)
        assert ring_seqs(feed) == [1, 2, 3, 4, 5, 6]
        assert feed.stats.backfilled == 3 and feed.stats.gaps == 1
    finally:
        server.cancel()
        await feed.stop()


async def test_unanswered_backfill_is_retried_then_counted_unrecovered(bridge, ctx,
                                                                       eventually_async):
    feed = await connected_feed(bridge, ctx, eventually_async, backfill_timeout=0.05,
                                backfill_tries=2)
    bridge.answer = False
    try:
        for seq in range(1, 11):
            bridge.tick(seq, send=seq not in (4, 5))
        await eventually_async(lambda: feed.ring(SYMBOL).count == 8)
        assert ring_seqs(feed) == [1, 2, 3, 6, 7, 8, 9, 10]
        assert feed.stats.unrecovered == 2
        assert feed.stats.drops.get("backfill_timeout") == 1
        bridge.answer = True
        bridge.serve()
        assert len(bridge.requests) == 2  # the original and one retry, same range
        assert {(r.from_seq, r.to_seq) for r in bridge.requests} == {(4, 5)}
        bridge.tick(11)
        await eventually_async(lambda: feed.ring(SYMBOL).count == 9)
        assert feed.stats.drops.get("late_backfill", 0) >= 1
    finally:
        await feed.stop()


async def test_gone_backfill_counts_the_loss_and_releases_held_ticks(bridge, ctx,
                                                                     eventually_async):
    feed = await connected_feed(bridge, ctx, eventually_async)
    server = asyncio.get_running_loop().create_task(serving(bridge))
    try:
        bridge.tick(1)
        for seq in (2, 3):
            bridge.tick(seq, send=False)
            del bridge.history[seq]  # evicted from the bridge's history
        bridge.tick(4)
        await eventually_async(lambda: feed.ring(SYMBOL).count == 2)
        assert ring_seqs(feed) == [1, 4]
        assert feed.stats.unrecovered == 2
        assert feed.stats.drops.get("backfill_gone") == 1
    finally:
        server.cancel()
        await feed.stop()


async def test_new_session_is_counted_as_restart_and_seq_starts_again(bridge, ctx,
                                                                      eventually_async):
    feed = await connected_feed(bridge, ctx, eventually_async)
    try:
        for seq in range(1, 6):
            bridge.tick(seq)
        await eventually_async(lambda: feed.ring(SYMBOL).count == 5)
        bridge.session = 8
        bridge.history.clear()
        for seq in range(1, 4):
            bridge.tick(seq)
        await asyncio.sleep(0.05)  # the new session's ticks wait for the restart backfill
        assert feed.ring(SYMBOL).count == 5
        bridge.serve()  # answers it: nothing between the last tick and the new session
        await eventually_async(lambda: feed.ring(SYMBOL).count == 8)
        assert feed.stats.restarts == 1
        assert feed.session_id == 8 and feed.state.session_id == 8
        assert ring_seqs(feed) == [1, 2, 3, 4, 5, 1, 2, 3]
        assert feed.stats.gaps == 0 and feed.stats.dropped == 0
        # the request named the last tick held: its time and how many ticks had that ms
        assert [(r.symbol, r.session_id, r.after_time_msc, r.seen_at_time)
                for r in bridge.since_requests] == [(SYMBOL, 8, 1_700_000_000_005, 1)]
    finally:
        await feed.stop()


async def test_a_restart_hole_is_filled_before_the_new_session_in_time_order(bridge, ctx,
                                                                            eventually_async):
    feed = await connected_feed(bridge, ctx, eventually_async)
    server = asyncio.get_running_loop().create_task(serving(bridge))
    try:
        for seq in range(1, 4):
            bridge.tick(seq)
        await eventually_async(lambda: feed.ring(SYMBOL).count == 3)
        hole = np.frombuffer(record(4) + record(5), dtype=TICK_DTYPE)  # made while the bridge was down
        bridge.since_answer = hole
        bridge.session = 9
        bridge.history.clear()
        for seq in range(1, 3):
            bridge.history[seq] = record(5 + seq)
            bridge.pub.send_multipart([TOPIC, wire.encode_tick(9, seq, 0, bridge.history[seq])])
        await eventually_async(lambda: feed.ring(SYMBOL).count == 7)
        ring = feed.ring(SYMBOL)
        assert ring.window(7).tobytes() == b"".join(record(s) for s in range(1, 8))
        # recovered ticks belong to no session: RESTART_SEQ_BASE + their index in their ms
        assert ring_seqs(feed) == [1, 2, 3, RESTART_SEQ_BASE, RESTART_SEQ_BASE, 1, 2]
        assert feed.stats.backfilled == 2 and feed.stats.unrecovered_restarts == 0
    finally:
        server.cancel()
        await feed.stop()


async def test_missed_heartbeats_make_the_feed_stale_until_they_resume(bridge, ctx,
                                                                       eventually_async):
    changes = []
    feed = await connected_feed(bridge, ctx, eventually_async, heartbeat_interval=0.05)
    feed.state.add_listener(lambda state: changes.append(state.stale))
    try:
        await eventually_async(lambda: feed.state.stale, timeout=5)
        assert feed.symbol_stale(SYMBOL) and not feed.state.orders_allowed
        bridge.beat()
        await eventually_async(lambda: not feed.state.stale, timeout=5)
        assert feed.state.orders_allowed and not feed.symbol_stale(SYMBOL)
        assert changes[:2] == [True, False]
        with pytest.raises(KeyError, match="GBPUSD"):
            feed.symbol_stale("GBPUSD")
    finally:
        await feed.stop()


async def test_heartbeat_terminal_state_gates_orders(bridge, ctx, eventually_async):
    feed = await connected_feed(bridge, ctx, eventually_async)
    try:
        bridge.pub.send_multipart([BEAT, wire.encode_heartbeat(
            bridge.session, 0, 0, int(wire.HeartbeatState.INITIALIZED))])
        await eventually_async(lambda: not feed.state.terminal_connected)
        assert not feed.state.orders_allowed
        bridge.beat()
        await eventually_async(lambda: feed.state.orders_allowed)
    finally:
        await feed.stop()


async def test_malformed_frames_are_counted_by_reason_and_never_stop_the_feed(bridge, ctx,
                                                                              eventually_async):
    feed = await connected_feed(bridge, ctx, eventually_async)
    feed.on_tick(lambda ring, i: 1 / 0 if ring.seqs[i] == 4 else None)
    good = wire.encode_tick(bridge.session, 1, 0, record(1))
    # Well-formed ticks refused for their prices: their seqs (1, 2) are spent, not gaps.
    nan = wire.encode_tick(bridge.session, 1, 0, record(1, bid=math.nan))
    inf = wire.encode_tick(bridge.session, 2, 0, record(1, bid=math.inf))
    try:
        bridge.pub.send_multipart([TOPIC, good[:30]])
        bridge.pub.send_multipart([TOPIC, bytes([9]) + good[1:]])
        bridge.pub.send_multipart([TOPIC, nan])
        bridge.pub.send_multipart([TOPIC, inf])
        bridge.pub.send_multipart([TOPIC, good, b"extra"])
        bridge.pub.send_multipart([TOPIC + b"junk", good])
        bridge.pub.send_multipart([BEAT, b"\x01\x03"])
        bridge.pub.send_multipart([TOPIC, good[:1] + bytes([42]) + good[2:]])
        for seq in (3, 4, 5):
            bridge.tick(seq)
        await eventually_async(lambda: feed.ring(SYMBOL).count == 3)
        assert feed.stats.rejects == {"short": 2, "version": 1, "nan_price": 1, "inf_price": 1,
                                      "parts": 1, "bad_topic": 1, "unknown_type": 1}
        assert feed.stats.handler_errors == 1
        assert isinstance(feed.stats.last_handler_error, ZeroDivisionError)
        assert ring_seqs(feed) == [3, 4, 5]
        assert feed.stats.gaps == 0
    finally:
        await feed.stop()


VALID = [wire.encode_tick(7, seq, 0, record(seq)) for seq in (1, 2, 5)] + [
    wire.encode_heartbeat(7, 0, 5, STATE_OK)]


@st.composite
def frames(draw):
    """Random bytes, or a valid frame with a few bytes overwritten, cut or extended."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=100))
    frame = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 3))):
        frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(frame) + 4))
    return bytes(frame[:cut]) + b"\0" * max(0, cut - len(frame))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([TOPIC, BEAT, TOPIC + b"x", b"T\0", b"H"]), frames()),
                max_size=20))
def test_fuzzed_messages_never_raise_and_each_is_counted_once(messages):
    feed = ZmqFeed("tcp://127.0.0.1:1", [SYMBOL])  # no backfill socket: gaps are delivered
    for topic, frame in messages:
        feed.on_message([topic, frame])
    s = feed.stats
    assert s.received + s.rejected + s.dropped + s.heartbeats == len(messages)
    assert feed.ring(SYMBOL).count == s.received


def test_bad_parameters_are_refused_with_the_name():
    with pytest.raises(ValueError, match="stale_after"):
        ZmqFeed("tcp://127.0.0.1:1", [SYMBOL], stale_after=0)
    with pytest.raises(ValueError, match="cannot be subscribed"):
        ZmqFeed("tcp://127.0.0.1:1", ["A\0B"])


async def test_batches_are_delivered_tick_by_tick_with_the_same_seq_rules(bridge, ctx,
                                                                          eventually_async):
    feed = await connected_feed(bridge, ctx, eventually_async)
    server = asyncio.get_running_loop().create_task(serving(bridge))

    def batch(first: int, last: int) -> list:
        for seq in range(first, last + 1):
            bridge.tick(seq, send=False)
        recs = np.frombuffer(b"".join(bridge.history[s] for s in range(first, last + 1)),
                             dtype=TICK_DTYPE)
        return [TOPIC, wire.encode_batch(bridge.session, first, 0, recs)]
    try:
        bridge.pub.send_multipart(batch(1, 5))
        bridge.pub.send_multipart(batch(4, 8))     # 4, 5 already delivered
        for seq in (9, 10, 11):                     # lost on the way: backfilled
            bridge.tick(seq, send=False)
        bridge.pub.send_multipart(batch(12, 14))
        await eventually_async(lambda: feed.ring(SYMBOL).count == 14)
        assert ring_seqs(feed) == list(range(1, 15))
        assert feed.ring(SYMBOL).window(14).tobytes() == b"".join(record(s) for s in range(1, 15))
        assert feed.stats.drops == {"duplicate": 2} and feed.stats.backfilled == 3
    finally:
        server.cancel()
        await feed.stop()


async def test_full_hold_abandons_the_backfill_and_delivers_in_order(bridge, ctx,
                                                                     eventually_async):
    feed = await connected_feed(bridge, ctx, eventually_async, hold_capacity=4)
    bridge.answer = False
    try:
        for seq in range(1, 13):
            bridge.tick(seq, send=seq not in (2, 3))
        await eventually_async(lambda: feed.ring(SYMBOL).count == 10)
        assert ring_seqs(feed) == [1] + list(range(4, 13))
        assert feed.stats.drops.get("hold_full") == 1 and feed.stats.unrecovered == 2
        assert feed.backfills_pending == 0
    finally:
        await feed.stop()


async def test_restart_while_backfilling_releases_held_ticks_then_follows_the_new_session(
        bridge, ctx, eventually_async):
    feed = await connected_feed(bridge, ctx, eventually_async)
    bridge.answer = False
    try:
        for seq in range(1, 7):
            bridge.tick(seq, send=seq != 3)
        await eventually_async(lambda: feed.ring(SYMBOL).count == 2 and
                               feed.backfills_pending == 1)
        bridge.session = 99
        for seq in (1, 2):
            bridge.tick(seq)
        bridge.answer = True  # the restart backfill (nothing in the hole) is answered

        def served() -> bool:
            bridge.serve()
            return feed.ring(SYMBOL).count == 7

        await eventually_async(served)
        assert ring_seqs(feed) == [1, 2, 4, 5, 6, 1, 2]
        assert feed.stats.restarts == 1 and feed.stats.unrecovered == 1
        assert feed.stats.drops.get("restart") == 1 and feed.backfills_pending == 0
    finally:
        await feed.stop()


def _tick_at(seq: int, time_msc: int, session: int = 7) -> bytes:
    rec = np.frombuffer(record(seq), dtype=TICK_DTYPE).copy()
    rec["time_msc"], rec["time"] = time_msc, time_msc // 1000
    return wire.encode_tick(session, seq, 0, rec.tobytes())


async def test_an_absurd_seq_is_refused_and_the_next_good_tick_is_delivered(bridge, ctx, eventually_async):
    feed = await connected_feed(bridge, ctx, eventually_async)
    try:
        for seq in range(1, 4):
            bridge.tick(seq)
        bogus = wire.encode_tick(bridge.session, 3 + 2**40, 0, record(4))
        bridge.pub.send_multipart([TOPIC, bogus])
        bridge.pub.send_multipart([BEAT, wire.encode_heartbeat(bridge.session, 0, 3 + 2**40, STATE_OK)])
        bridge.tick(4)
        await eventually_async(lambda: feed.ring(SYMBOL).count == 4)
        assert ring_seqs(feed) == [1, 2, 3, 4]
        assert feed.stats.rejects == {"seq_jump": 2} and feed.stats.gaps == 0
        assert feed.backfills_pending == 0 and feed.stats.dropped == 0
        for seq in range(5, 8):  # and the symbol goes on
            bridge.tick(seq)
        await eventually_async(lambda: feed.ring(SYMBOL).count == 7)
    finally:
        await feed.stop()


async def test_a_jump_repeated_by_every_frame_is_real_and_taken_as_a_gap(bridge, ctx, eventually_async):
    feed = await connected_feed(bridge, ctx, eventually_async, seq_jump_confirm=3, max_seq_jump=100)
    try:
        bridge.tick(1)
        await eventually_async(lambda: feed.ring(SYMBOL).count == 1)
        for seq in range(1001, 1004):  # the bridge really lost 999: every frame says so
            bridge.tick(seq)
        await eventually_async(lambda: feed.stats.gaps == 1)
        assert feed.stats.rejects == {"seq_jump": 2} and feed.stats.gap_ticks == 1001

        def served() -> bool:
            bridge.serve()
            return feed.ring(SYMBOL).count == 4

        await eventually_async(served)  # the refused two come back through the backfill
        assert ring_seqs(feed) == [1, 1001, 1002, 1003] and feed.stats.unrecovered == 999
    finally:
        await feed.stop()


async def test_a_far_future_time_is_refused_without_moving_the_cursors(bridge, ctx, eventually_async):
    feed = await connected_feed(bridge, ctx, eventually_async, heartbeat_interval=0.05)
    try:
        for seq in range(1, 4):
            bridge.tick(seq)
        await eventually_async(lambda: feed.ring(SYMBOL).count == 3)
        base = 1_700_000_000_000
        tomorrow = time.time_ns() // 1_000_000 + 86_400_000
        bridge.pub.send_multipart([TOPIC, _tick_at(4, tomorrow)])  # past any server time zone
        track = feed._by_symbol[SYMBOL]  # wait for the clock check to learn the last tick's time
        await eventually_async(lambda: track.seen_count == 3 and track.last_msc == base + 3)
        bridge.pub.send_multipart([TOPIC, _tick_at(5, base + 3 + 3_600_000)])  # an hour on, in ms
        bridge.pub.send_multipart([TOPIC, _tick_at(6, base + 6)])
        await eventually_async(lambda: feed.ring(SYMBOL).count == 4)
        assert ring_seqs(feed) == [1, 2, 3, 6]  # 4 and 5 used up their seqs: no gap, no backfill
        assert feed.stats.rejects == {"future_time": 2} and feed.stats.gaps == 0
        assert int(feed.ring(SYMBOL).latest()["time_msc"][-1]) == base + 6
        batch = np.frombuffer(b"".join(record(s) for s in (7, 8, 9)), dtype=TICK_DTYPE).copy()
        batch["time_msc"][1] = tomorrow
        bridge.pub.send_multipart([TOPIC, wire.encode_batch(bridge.session, 7, 0, batch)])
        await eventually_async(lambda: feed.ring(SYMBOL).count == 6)
        assert ring_seqs(feed) == [1, 2, 3, 6, 7, 9] and feed.stats.rejects == {"future_time": 3}
    finally:
        await feed.stop()

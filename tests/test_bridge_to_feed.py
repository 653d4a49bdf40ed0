"""End to end on real sockets: the bridge on the fake MT5 -> the node's ZmqFeed.

Every tick the fake market makes reaches the ring once, in order, with its bridge seq: live,
after the subscriber slept (gap -> backfill), after the bridge restarted (new session), and
the feed goes stale while the bridge is gone and recovers when it is back.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import zmq
from bridge_fixtures import fake_mt5, local_bridge_config
from flowchain_bridge import Bridge, BridgeConfig

from flowchain.feeds.subscriber import RESTART_SEQ_BASE, ZmqFeed

SYMBOLS = ["EURUSD", "GBPUSD"]
BEAT_S = 0.05


def config(**kw) -> BridgeConfig:
    return local_bridge_config(**{"symbols": SYMBOLS, "poll_ms": 1.0,
                                  "heartbeat_ms": int(BEAT_S * 1000), **kw})


@pytest.fixture
def mt5():
    return fake_mt5(seed=11, symbols=SYMBOLS, rate=0)  # ticks only when the test makes them


@pytest.fixture
def bridge(mt5, eventually):
    with Bridge(mt5, config()) as running:
        eventually(lambda: running.ready, message="the bridge never positioned on the fake")
        yield running


def new_feed(bridge: Bridge, ctx: zmq.Context, **kw) -> ZmqFeed:
    return ZmqFeed(bridge.pub_endpoint, SYMBOLS, bridge.router_endpoint, context=ctx,
                   heartbeat_interval=BEAT_S, backfill_timeout=2.0, ring_capacity=8192, **kw)


async def subscribed(feed: ZmqFeed, eventually_async) -> None:
    await feed.start()
    await eventually_async(lambda: feed.stats.heartbeats >= 2 * len(SYMBOLS),
                           message="no heartbeat reached the feed")


def assert_ring_is(feed: ZmqFeed, symbol: str, ticks: np.ndarray, first_seq: int = 1) -> None:
    ring = feed.ring(symbol)
    assert ring.count == len(ticks), f"{symbol}: {ring.count} ticks in the ring, {len(ticks)} made"
    assert ring.seq_window(len(ticks)).tolist() == list(range(first_seq, first_seq + len(ticks)))
    assert ring.window(len(ticks)).tobytes() == ticks.tobytes(), f"{symbol}: ticks differ"


async def test_every_fake_tick_reaches_the_ring_once_in_order(bridge, mt5, ctx,
                                                              eventually_async):
    feed = new_feed(bridge, ctx)
    handled = []
    feed.on_tick(lambda ring, i: handled.append((ring.symbol, int(ring.seqs[i]))))
    await subscribed(feed, eventually_async)
    made = {s: [] for s in SYMBOLS}
    try:
        for round_ in range(15):
            made["EURUSD"].append(mt5.add_ticks("EURUSD", 1 + 17 * (round_ % 2)))  # tick, batch
            made["GBPUSD"].append(mt5.add_ticks("GBPUSD", 1 + round_ % 3))
            await eventually_async(lambda: all(
                feed.ring(s).count == sum(map(len, made[s])) for s in SYMBOLS))
        for symbol in SYMBOLS:
            assert_ring_is(feed, symbol, np.concatenate(made[symbol]))
        assert [seq for s, seq in handled if s == "GBPUSD"] == list(
            range(1, feed.ring("GBPUSD").count + 1))
        assert feed.stats.gaps == 0 and feed.stats.dropped == 0 and feed.stats.rejected == 0
        assert feed.session_id == bridge.session_id
        await eventually_async(lambda: feed.state.orders_allowed)
    finally:
        await feed.stop()


async def test_a_subscriber_that_slept_gets_every_tick_once_through_backfill(
        bridge, mt5, ctx, eventually_async):
    feed = new_feed(bridge, ctx)
    await subscribed(feed, eventually_async)
    made = [mt5.add_ticks("EURUSD", 40)]
    await eventually_async(lambda: feed.ring("EURUSD").count == 40)
    await feed.stop()  # asleep: its socket is gone, the market goes on
    for _ in range(10):
        made.append(mt5.add_ticks("EURUSD", 25))
    published = sum(map(len, made))
    deadline = time.monotonic() + 10
    while bridge.histories[0].last_seq < published and time.monotonic() < deadline:
        time.sleep(0.005)
    try:
        await feed.start()  # awake: the first heartbeat or tick reveals the gap
        made.append(mt5.add_ticks("EURUSD", 5))
        total = np.concatenate(made)
        await eventually_async(lambda: feed.ring("EURUSD").count == len(total), timeout=15)
        assert_ring_is(feed, "EURUSD", total)
        assert feed.stats.gaps >= 1 and feed.stats.backfilled >= 250
        assert feed.stats.unrecovered == 0 and feed.stats.rejected == 0
    finally:
        await feed.stop()


async def test_a_subscriber_that_blocks_its_loop_loses_nothing(bridge, mt5, ctx,
                                                               eventually_async):
    feed = new_feed(bridge, ctx)
    slept = []

    def slow_once(ring, index):
        if not slept:
            slept.append(True)
            time.sleep(0.5)  # the chain stalls the loop while the bridge keeps publishing

    feed.on_tick(slow_once)
    await subscribed(feed, eventually_async)
    try:
        made = [mt5.add_ticks("EURUSD", 1)]
        for _ in range(40):
            made.append(mt5.add_ticks("EURUSD", 50))
            time.sleep(0.002)
        total = np.concatenate(made)
        await eventually_async(lambda: feed.ring("EURUSD").count == len(total), timeout=15)
        assert_ring_is(feed, "EURUSD", total)
        assert feed.stats.unrecovered == 0
    finally:
        await feed.stop()


async def test_bridge_restart_goes_stale_then_counts_a_restart_and_starts_again_at_seq_1(
        mt5, ctx, eventually, eventually_async):
    first = Bridge(mt5, config()).start()
    eventually(lambda: first.ready)
    pub, router = first.pub_endpoint, first.router_endpoint
    feed = ZmqFeed(pub, SYMBOLS, router, context=ctx, heartbeat_interval=BEAT_S,
                   backfill_timeout=2.0)
    await subscribed(feed, eventually_async)
    before = mt5.add_ticks("EURUSD", 7)
    await eventually_async(lambda: feed.ring("EURUSD").count == 7)
    old_session = feed.session_id
    first.stop()
    try:
        await eventually_async(lambda: feed.state.stale, timeout=10,
                               message="the feed never went stale without heartbeats")
        assert not feed.state.orders_allowed
        with Bridge(mt5, config(pub_endpoint=pub, router_endpoint=router)) as second:
            eventually(lambda: second.ready)
            await eventually_async(lambda: not feed.state.stale, timeout=10)
            after = mt5.add_ticks("EURUSD", 4)
            await eventually_async(lambda: feed.ring("EURUSD").count == 11)
            assert feed.stats.restarts == 1
            assert feed.session_id == second.session_id != old_session
            ring = feed.ring("EURUSD")
            assert ring.seq_window(11).tolist() == list(range(1, 8)) + [1, 2, 3, 4]
            assert ring.window(11).tobytes() == before.tobytes() + after.tobytes()
            await eventually_async(lambda: feed.state.orders_allowed)
    finally:
        await feed.stop()


async def test_a_terminal_disconnect_makes_the_feed_stale_and_each_change_is_logged_once(
        bridge, mt5, ctx, eventually_async, caplog):
    caplog.set_level("WARNING", logger="flowchain.feeds.subscriber")
    feed = new_feed(bridge, ctx)
    await subscribed(feed, eventually_async)
    try:
        await eventually_async(lambda: feed.state.orders_allowed)
        mt5.disconnect()  # the terminal closed: the bridge's next call fails with no IPC
        await eventually_async(lambda: feed.state.terminal == "disconnected", timeout=10)
        assert feed.state.stale and not feed.state.orders_allowed and not feed.state.silent
        assert feed.state.terminal_error == -10004
        # the bridge reconnects by itself (backoff), and trading may go on
        await eventually_async(lambda: feed.state.terminal == "connected" and feed.state.orders_allowed,
                               timeout=15)
        assert not feed.state.stale
        made = mt5.add_ticks("EURUSD", 5)
        await eventually_async(lambda: feed.ring("EURUSD").count == 5)
        assert feed.ring("EURUSD").window(5).tobytes() == made.tobytes()
    finally:
        await feed.stop()
    lines = [r.getMessage() for r in caplog.records]
    assert sum("MT5 terminal not reachable by the bridge" in line for line in lines) == 1, lines
    assert sum("MT5 terminal connected to its trade server; orders allowed again" in line
               for line in lines) == 1, lines


async def test_a_bridge_restart_is_logged_with_what_its_backfill_recovered(
        mt5, ctx, eventually, eventually_async, caplog):
    caplog.set_level("INFO", logger="flowchain.feeds.subscriber")
    first = Bridge(mt5, config()).start()
    eventually(lambda: first.ready)
    pub, router = first.pub_endpoint, first.router_endpoint
    feed = ZmqFeed(pub, SYMBOLS, router, context=ctx, heartbeat_interval=BEAT_S, backfill_timeout=2.0)
    await subscribed(feed, eventually_async)
    try:
        before = mt5.add_ticks("EURUSD", 3)
        await eventually_async(lambda: feed.ring("EURUSD").count == 3)
        first.stop()
        await eventually_async(lambda: feed.state.silent and feed.state.stale)
        mt5.initialize()  # the terminal runs on while no bridge streams it
        mt5.symbol_select("EURUSD", True)
        hole = mt5.add_ticks("EURUSD", 4)
        with Bridge(mt5, config(pub_endpoint=pub, router_endpoint=router)) as second:
            eventually(lambda: second.ready)
            after = mt5.add_ticks("EURUSD", 2)
            await eventually_async(lambda: feed.ring("EURUSD").count == 9)
            ring = feed.ring("EURUSD")
            assert ring.window(9).tobytes() == before.tobytes() + hole.tobytes() + after.tobytes()
            seqs = ring.seq_window(9).tolist()
            assert seqs[:3] == [1, 2, 3] and seqs[-2:] == [1, 2]
            recovered = [seq - RESTART_SEQ_BASE for seq in seqs[3:7]]
            times = hole["time_msc"].tolist()  # the index of each among its millisecond's ticks
            assert recovered == [times[:i].count(t) + (before["time_msc"] == t).sum() for i, t in enumerate(times)]
    finally:
        await feed.stop()
    lines = [r.getMessage() for r in caplog.records]
    assert sum("the bridge restarted" in line for line in lines) == 1, lines
    assert any("EURUSD recovered 4 ticks the bridge restart would have missed" in line for line in lines)
    for symbol in SYMBOLS:  # silent, then fresh again: each said once
        assert sum(f"{symbol} silent for" in line for line in lines) == 1, lines
        assert sum(f"{symbol} fresh again after" in line for line in lines) == 1, lines
    assert sum("stale: a symbol went silent" in line for line in lines) == 1, lines
    assert sum("every symbol fresh again" in line for line in lines) == 1, lines


async def test_a_restart_hole_larger_than_one_answer_is_fetched_in_parts(mt5, ctx, eventually,
                                                                         eventually_async, caplog):
    caplog.set_level("WARNING", logger="flowchain.feeds.subscriber")
    first = Bridge(mt5, config()).start()
    eventually(lambda: first.ready)
    pub, router = first.pub_endpoint, first.router_endpoint
    feed = ZmqFeed(pub, SYMBOLS, router, context=ctx, heartbeat_interval=BEAT_S, backfill_timeout=5.0,
                   ring_capacity=1 << 16)
    await subscribed(feed, eventually_async)
    try:
        before = mt5.add_ticks("EURUSD", 3)
        await eventually_async(lambda: feed.ring("EURUSD").count == 3)
        first.stop()
        mt5.initialize()
        mt5.symbol_select("EURUSD", True)
        hole = mt5.add_ticks("EURUSD", 20_000, spacing_ms=0.2)  # more than one answer holds (16,384)
        with Bridge(mt5, config(pub_endpoint=pub, router_endpoint=router)) as second:
            eventually(lambda: second.ready)
            after = mt5.add_ticks("EURUSD", 2)
            total = 3 + len(hole) + 2
            await eventually_async(lambda: feed.ring("EURUSD").count == total, timeout=30)
            ring = feed.ring("EURUSD")
            assert ring.window(total).tobytes() == before.tobytes() + hole.tobytes() + after.tobytes()
            # the hole, and the new session's first ticks if they beat the SUB's reconnection
            assert feed.stats.backfilled == len(hole) + feed.stats.gap_ticks
            assert feed.stats.unrecovered_restarts == 0 and feed.stats.unrecovered == 0
            assert second.backfills_served >= 2
    finally:
        await feed.stop()
    assert any(f"EURUSD recovered {len(hole)} ticks" in r.getMessage() for r in caplog.records)

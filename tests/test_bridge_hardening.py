"""The bridge's defences, on real sockets with the fake MT5: who may trade without CurveZMQ keys,
how large a message any socket takes, and a clean stop."""
from __future__ import annotations

import time

import numpy as np
import pytest
import zmq
from bridge_fixtures import fake_mt5, local_bridge_config
from flowchain_bridge import Bridge, FakeMetaTrader5, OrderClient, wire
from flowchain_bridge.ticks import TICK_DTYPE

from flowchain.feeds.subscriber import ZmqFeed


@pytest.fixture
def mt5():
    return fake_mt5(seed=21)


def _order(client: OrderClient) -> wire.OrderRequest:
    return wire.OrderRequest(req_id=client.next_req_id(), deadline_ns=time.time_ns() + 5_000_000_000,
                             symbol="EURUSD", type=FakeMetaTrader5.ORDER_TYPE_BUY, volume=0.1, magic=5,
                             type_filling=FakeMetaTrader5.ORDER_FILLING_IOC)


def _ready(bridge: Bridge, eventually) -> Bridge:
    eventually(lambda: bridge.ready, message="the bridge never positioned on the fake")
    return bridge


def test_without_keys_orders_are_refused_unless_the_operator_allowed_them(mt5, ctx, eventually):
    with Bridge(mt5, local_bridge_config(allow_unauthenticated_orders=False), ctx) as bridge:
        _ready(bridge, eventually)
        with OrderClient(bridge.router_endpoint, context=ctx) as client:
            result = client.send(_order(client))
        assert result.status is wire.OrderStatus.INVALID and mt5.order_send_calls == 0
        assert "unauthenticated orders refused" in result.comment
        assert "--allow-unauthenticated-orders" in result.last_error[1]
        assert bridge.stats()["orders_refused"] == 1
    with Bridge(mt5, local_bridge_config(allow_unauthenticated_orders=True), ctx) as bridge:
        _ready(bridge, eventually)
        with OrderClient(bridge.router_endpoint, context=ctx) as client:
            result = client.send(_order(client))
        assert result.status is wire.OrderStatus.SENT and mt5.order_send_calls == 1


def test_unauthenticated_orders_are_never_taken_off_loopback(mt5, ctx, eventually):
    config = local_bridge_config(allow_unauthenticated_orders=True, allow_remote=True,
                                 router_endpoint="tcp://0.0.0.0:*")
    with Bridge(mt5, config, ctx) as bridge:
        _ready(bridge, eventually)
        endpoint = bridge.router_endpoint.replace("0.0.0.0", "127.0.0.1")
        with OrderClient(endpoint, context=ctx) as client:
            result = client.send(_order(client))
        assert result.status is wire.OrderStatus.INVALID and mt5.order_send_calls == 0
        assert "is not loopback" in result.last_error[1]


def test_an_oversized_message_disconnects_its_sender_and_the_bridge_serves_on(mt5, ctx, eventually, bridge):
    rogue = ctx.socket(zmq.DEALER)
    rogue.setsockopt(zmq.LINGER, 0)
    rogue.connect(bridge.router_endpoint)
    rogue.send(b"\x01\x06" + bytes(wire.MAX_REQUEST_BYTES + 1))  # over the limit: dropped unread
    with OrderClient(bridge.router_endpoint, context=ctx) as client:
        assert client.send(_order(client)).status is wire.OrderStatus.SENT
    # read, it would have been counted (`length`): libzmq dropped it and its sender's connection
    assert bridge.rejects.total == 0
    small = b"\x01\x06" + bytes(wire.MAX_REQUEST_BYTES - 2)  # at the limit: read and refused
    rogue.send(small)
    eventually(lambda: bridge.rejects["length"] == 1, message="a message at the limit was not read")
    rogue.close(0)


async def test_the_feed_drops_a_publisher_sending_a_frame_over_the_limit(ctx, eventually_async):
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind("tcp://127.0.0.1:*")
    endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
    feed = ZmqFeed(endpoint, ["EURUSD"], context=ctx, heartbeat_interval=0.05)
    await feed.start()
    try:
        topic = wire.heartbeat_topic("EURUSD")
        await eventually_async(lambda: pub.send_multipart([topic, wire.encode_heartbeat(3, 0, 0, 7)])
                               or feed.stats.heartbeats > 0)
        huge = np.zeros(wire.MAX_MESSAGE_BYTES // wire.TICK_RECORD_SIZE + 1, dtype=TICK_DTYPE)
        pub.send_multipart([wire.tick_topic("EURUSD"), wire.BATCH_HEAD.pack(1, 2, 0, len(huge), 3, 1)
                            + huge.tobytes()])
        received = feed.stats.received
        await eventually_async(lambda: feed.state.silent, timeout=10,
                               message="the feed kept hearing a publisher that sent too much")
        assert feed.stats.received == received and feed.stats.rejected == 0
    finally:
        await feed.stop()
        pub.close(0)


def test_stop_shuts_the_terminal_link_down(mt5, ctx, eventually):
    bridge = _ready(Bridge(mt5, local_bridge_config(), ctx).start(), eventually)
    assert mt5.terminal_info() is not None
    bridge.stop()
    assert mt5.terminal_info() is None and mt5.last_error()[0] == -10004  # shutdown(): no IPC


class BrokenTerminal(FakeMetaTrader5):
    """A terminal whose tick call starts raising (a package bug, a corrupted record)."""

    broken = False

    def symbol_info_tick(self, symbol):
        if self.broken:
            raise TypeError("unexpected record layout")
        return super().symbol_info_tick(symbol)


def test_a_failing_stream_thread_stops_the_bridge_instead_of_leaving_it_half_alive(ctx, eventually):
    mt5 = BrokenTerminal(seed=3)
    bridge = Bridge(mt5, local_bridge_config(), ctx).start()
    try:
        _ready(bridge, eventually)
        mt5.broken = True
        assert bridge.failed.wait(10), "the bridge ran on with a dead stream thread"
        assert bridge.failure == "the stream thread failed: TypeError: unexpected record layout"
        assert bridge.link.fatal is None  # not the terminal's refusal: the CLI exits 1, not 3
    finally:
        bridge.stop()


def test_inconsistent_settings_are_refused_before_anything_starts():
    with pytest.raises(ValueError, match="connect_attempts -1"):
        Bridge(FakeMetaTrader5(), local_bridge_config(connect_attempts=-1))
    with pytest.raises(ValueError, match="listed twice"):
        Bridge(FakeMetaTrader5(), local_bridge_config(symbols=["EURUSD", "EURUSD"]))
    with pytest.raises(ValueError, match="no symbol to stream"):
        Bridge(FakeMetaTrader5(), local_bridge_config(symbols=[]))

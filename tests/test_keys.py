"""CurveZMQ: the right key pair talks to the bridge, a wrong one is rejected; loopback rules."""
import time

import pytest
import zmq
from flowchain_bridge import Bridge, BridgeConfig, FakeMetaTrader5, OrderClient, keys, wire


@pytest.fixture
def keydir(tmp_path):
    paths = keys.generate(tmp_path / "keys")
    return paths


@pytest.fixture
def secured_bridge(keydir, eventually):
    mt5 = FakeMetaTrader5(seed=1)
    config = BridgeConfig(symbols=["EURUSD"], pub_endpoint="tcp://127.0.0.1:*", router_endpoint="tcp://127.0.0.1:*",
                          secret_key=str(keydir["bridge_secret"]), authorized_dir=str(keydir["authorized"]),
                          reconcile_delay_s=0.0, heartbeat_ms=50)
    with Bridge(mt5, config) as bridge:
        eventually(lambda: bridge.ready)
        eventually(lambda: mt5.symbol_info_tick("EURUSD").time_msc > 0)
        yield bridge


def test_generate_writes_pairs_and_refuses_to_overwrite(keydir):
    public, secret = keys.load_pair(keydir["node_secret"])
    assert len(public) == len(secret) == 40 and keys.load_public(keydir["authorized"] / "node.key") == public
    with pytest.raises(FileExistsError, match="already holds"):
        keys.generate(keydir["authorized"].parent)
    with pytest.raises(ValueError, match="no secret key"):
        keys.load_pair(keydir["node_public"])


def test_right_key_trades_and_receives_ticks(secured_bridge, keydir, eventually):
    ctx = zmq.Context()
    try:
        sub = ctx.socket(zmq.SUB)
        keys.secure_client(sub, keydir["node_secret"], keydir["bridge_public"])
        sub.setsockopt(zmq.SUBSCRIBE, wire.heartbeat_topic("EURUSD"))
        sub.connect(secured_bridge.pub_endpoint)
        assert sub.poll(10_000), "no heartbeat reached the authorized SUB"
        assert wire.decode_heartbeat(sub.recv_multipart()[1]).session_id == secured_bridge.session_id
        sub.close(0)
        with OrderClient(secured_bridge.router_endpoint, secret_key=keydir["node_secret"],
                         server_public_key=keydir["bridge_public"], context=ctx) as client:
            result = client.send(wire.OrderRequest(client.next_req_id(), time.time_ns() + 5_000_000_000,
                                                   "EURUSD", 0, 0.1, type_filling=1))
        assert result.status is wire.OrderStatus.SENT and result.retcode == 10009
    finally:
        ctx.destroy(linger=0)


def test_wrong_key_is_rejected(secured_bridge, keydir, tmp_path):
    intruder = keys.generate(tmp_path / "intruder")
    ctx = zmq.Context()
    try:
        sub = ctx.socket(zmq.SUB)
        keys.secure_client(sub, intruder["node_secret"], keydir["bridge_public"])  # unknown client key
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(secured_bridge.pub_endpoint)
        dealer = ctx.socket(zmq.DEALER)
        keys.secure_client(dealer, intruder["node_secret"], keydir["bridge_public"])
        dealer.connect(secured_bridge.router_endpoint)
        dealer.send(wire.encode_order_request(wire.OrderRequest(1, time.time_ns() + 10**9, "EURUSD", 0, 0.1)),
                    zmq.NOBLOCK)
        plain = ctx.socket(zmq.SUB)  # no Curve at all
        plain.setsockopt(zmq.SUBSCRIBE, b"")
        plain.connect(secured_bridge.pub_endpoint)
        # Heartbeats flow every 50 ms to authorized peers; in 1 s none may reach these.
        assert not sub.poll(1000) and not dealer.poll(10) and not plain.poll(10)
        assert secured_bridge.idempotency.__len__() == 0, "the bridge accepted an order from a wrong key"
        for s in (sub, dealer, plain):
            s.close(0)
    finally:
        ctx.destroy(linger=0)


def test_secret_key_without_authorized_dir_is_refused(keydir):
    with pytest.raises(ValueError, match="authorized_dir"):
        Bridge(FakeMetaTrader5(), BridgeConfig(secret_key=str(keydir["bridge_secret"])))


@pytest.mark.parametrize("endpoint,ok", [("tcp://127.0.0.1:5555", True), ("tcp://localhost:1", True),
                                         ("tcp://[::1]:1", True), ("ipc:///tmp/x", True),
                                         ("tcp://0.0.0.0:5555", False), ("tcp://10.0.0.2:1", False),
                                         ("tcp://*:5555", False)])
def test_loopback_rule(endpoint, ok):
    assert keys.is_loopback(endpoint) is ok
    if not ok:
        with pytest.raises(keys.InsecureEndpointError):
            keys.check_endpoint(endpoint, secured=False, allow_remote=False)
        keys.check_endpoint(endpoint, secured=True, allow_remote=False)
        keys.check_endpoint(endpoint, secured=False, allow_remote=True)
    with pytest.raises(keys.InsecureEndpointError):
        OrderClient("tcp://192.168.1.5:5556")

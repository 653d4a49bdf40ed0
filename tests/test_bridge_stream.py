"""The bridge on the fake MT5 publishes every tick once with contiguous seqs, survives disconnects."""
import numpy as np
import pytest
import zmq
from bridge_fixtures import local_bridge_config
from flowchain_bridge import Bridge, FakeMetaTrader5, wire
from flowchain_bridge.ticks import TICK_DTYPE


def _config(**kw):
    return local_bridge_config(**{"symbols": ["EURUSD", "GBPUSD"], "poll_ms": 1.0,
                                  "heartbeat_ms": 50, **kw})


class Subscriber:
    """A plain pyzmq SUB that collects ticks and heartbeats by symbol."""

    def __init__(self, ctx, endpoint, symbols):
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        for s in symbols:
            self.sock.setsockopt(zmq.SUBSCRIBE, wire.tick_topic(s))
            self.sock.setsockopt(zmq.SUBSCRIBE, wire.heartbeat_topic(s))
        self.sock.connect(endpoint)
        self.ticks = {s: [] for s in symbols}  # (session, seq, record bytes)
        self.heartbeats = []

    def drain(self):
        while self.sock.poll(0):
            topic, frame = self.sock.recv_multipart()
            kind, symbol = wire.parse_topic(topic)
            if kind == "H":
                self.heartbeats.append((symbol, wire.decode_heartbeat(frame)))
            elif frame[1] == wire.FrameType.TICK:
                t = wire.decode_tick(frame)
                self.ticks[symbol].append((t.session_id, t.seq, frame[wire.TICK_HEAD.size:]))
            else:
                b = wire.decode_batch(frame)
                for k, rec in enumerate(b.records):
                    self.ticks[symbol].append((b.session_id, b.first_seq + k, rec.tobytes()))
        return self


def _wait_subscribed(sub, eventually):
    eventually(lambda: sub.drain().heartbeats, timeout=10, message="no heartbeat reached the SUB")


def test_every_tick_is_published_once_with_contiguous_seq(ctx, eventually):
    mt5 = FakeMetaTrader5(seed=5)
    for s in ("EURUSD", "GBPUSD"):
        mt5.set_rate(s, 0)
    with Bridge(mt5, _config(), ctx) as bridge:
        eventually(lambda: bridge.ready, message="bridge never positioned on the fake")
        sub = Subscriber(ctx, bridge.pub_endpoint, ["EURUSD", "GBPUSD"])
        _wait_subscribed(sub, eventually)
        expected = {"EURUSD": [], "GBPUSD": []}
        for round_ in range(20):
            for s, n in (("EURUSD", 37), ("GBPUSD", 1 + round_ % 3)):
                expected[s].append(mt5.add_ticks(s, n))
            eventually(lambda: bridge.ticks_published >= sum(sum(map(len, v)) for v in expected.values()))
        total = {s: np.concatenate(v) for s, v in expected.items()}
        eventually(lambda: all(len(sub.drain().ticks[s]) >= len(total[s]) for s in total))
        for s, records in total.items():
            got = sub.ticks[s]
            assert [seq for _, seq, _ in got] == list(range(1, len(records) + 1)), s
            assert b"".join(r for _, _, r in got) == records.tobytes(), f"{s}: ticks differ from the fake's"
            assert {sess for sess, _, _ in got} == {bridge.session_id}


def test_free_running_market_is_streamed_without_loss(ctx, eventually):
    mt5 = FakeMetaTrader5(seed=9)
    mt5.set_rate("EURUSD", 2000)
    with Bridge(mt5, _config(symbols=["EURUSD"]), ctx) as bridge:
        eventually(lambda: bridge.ready)
        sub = Subscriber(ctx, bridge.pub_endpoint, ["EURUSD"])
        _wait_subscribed(sub, eventually)
        start_seq = bridge.histories[0].last_seq
        eventually(lambda: bridge.histories[0].last_seq > start_seq + 1500, timeout=20)
        mt5.set_rate("EURUSD", 0)
        generated = mt5.generated_ticks("EURUSD")
        eventually(lambda: bridge.histories[0].last_seq >= 1 and
                   bridge.poller.cursors[0].last_msc == int(generated["time_msc"][-1]))
        final_seq = bridge.histories[0].last_seq
        eventually(lambda: sub.drain().ticks["EURUSD"] and sub.ticks["EURUSD"][-1][1] == final_seq)
        got = [(seq, rec) for _, seq, rec in sub.ticks["EURUSD"] if seq > start_seq]
        assert [seq for seq, _ in got] == list(range(start_seq + 1, final_seq + 1))
        published = np.frombuffer(b"".join(rec for _, rec in got), dtype=TICK_DTYPE)
        tail = generated[-len(published):]
        assert published.tobytes() == tail.tobytes(), "published ticks are not the fake's contiguous tail"


def test_disconnect_is_reported_in_heartbeats_and_recovered_without_loss(ctx, eventually):
    mt5 = FakeMetaTrader5(seed=2)
    mt5.set_rate("EURUSD", 0)
    with Bridge(mt5, _config(symbols=["EURUSD"]), ctx) as bridge:
        bridge.link._min_backoff = bridge.link._backoff = 0.05
        eventually(lambda: bridge.ready)
        sub = Subscriber(ctx, bridge.pub_endpoint, ["EURUSD"])
        _wait_subscribed(sub, eventually)
        before = mt5.add_ticks("EURUSD", 10)
        eventually(lambda: bridge.histories[0].last_seq == 10)
        mt5.faults.failed_initializes = 3
        mt5.disconnect()
        during = mt5.add_ticks("EURUSD", 15)  # the market goes on while the bridge is cut off
        eventually(lambda: any(not hb.state & wire.HeartbeatState.INITIALIZED for _, hb in sub.drain().heartbeats),
                   message="no heartbeat reported the disconnect")
        down = [hb for _, hb in sub.heartbeats if not hb.state & wire.HeartbeatState.INITIALIZED]
        assert down[0].last_error == mt5.RES_E_INTERNAL_FAIL_CONNECT or down[0].last_error < -10000 \
            or down[0].last_error == mt5.RES_E_INTERNAL_FAIL_INIT
        eventually(lambda: bridge.link.reconnects >= 1 and bridge.histories[0].last_seq == 25, timeout=15)
        eventually(lambda: any(hb.reconnects >= 1 and hb.connected for _, hb in sub.drain().heartbeats))
        eventually(lambda: len(sub.drain().ticks["EURUSD"]) == 25)
        published = b"".join(r for _, _, r in sub.ticks["EURUSD"])
        assert published == before.tobytes() + during.tobytes()
        assert [seq for _, seq, _ in sub.ticks["EURUSD"]] == list(range(1, 26))


def test_restart_gives_a_new_session_and_seq_restarts(ctx, eventually):
    mt5 = FakeMetaTrader5(seed=4)
    mt5.set_rate("EURUSD", 0)
    sessions = []
    for _ in range(2):
        with Bridge(mt5, _config(symbols=["EURUSD"]), ctx) as bridge:
            eventually(lambda: bridge.ready)
            sub = Subscriber(ctx, bridge.pub_endpoint, ["EURUSD"])
            _wait_subscribed(sub, eventually)
            mt5.add_ticks("EURUSD", 3)
            eventually(lambda sub=sub: len(sub.drain().ticks["EURUSD"]) == 3)
            sessions.append({sess for sess, _, _ in sub.ticks["EURUSD"]})
            assert [seq for _, seq, _ in sub.ticks["EURUSD"]] == [1, 2, 3]
            sub.sock.close(0)
    assert len(sessions[0]) == len(sessions[1]) == 1 and sessions[0] != sessions[1]


def test_backfill_serves_history_by_seq(ctx, eventually):
    mt5 = FakeMetaTrader5(seed=6)
    mt5.set_rate("EURUSD", 0)
    with Bridge(mt5, _config(symbols=["EURUSD"], history_ticks=50), ctx) as bridge:
        eventually(lambda: bridge.ready)
        ticks = np.concatenate([mt5.add_ticks("EURUSD", 20) for _ in range(4)])
        eventually(lambda: bridge.histories[0].last_seq == 80)
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(bridge.router_endpoint)

        def ask(session, from_seq, to_seq, symbol_id=0):
            dealer.send(wire.encode_backfill_request(wire.BackfillRequest(7, session, symbol_id, from_seq, to_seq)))
            assert dealer.poll(5000)
            return wire.decode_backfill_response(dealer.recv())

        resp = ask(bridge.session_id, 41, 60)
        assert resp.status is wire.BackfillStatus.OK and resp.first_seq == 41
        assert resp.records.tobytes() == ticks[40:60].tobytes()
        evicted = ask(bridge.session_id, 1, 40)
        assert evicted.status is wire.BackfillStatus.OK and evicted.first_seq == 31
        assert evicted.records.tobytes() == ticks[30:40].tobytes()
        assert ask(bridge.session_id, 1, 20).status is wire.BackfillStatus.GONE
        assert ask(bridge.session_id ^ 1, 1, 2).status is wire.BackfillStatus.SESSION_MISMATCH
        assert ask(bridge.session_id, 1, 2, symbol_id=9).status is wire.BackfillStatus.UNKNOWN_SYMBOL
        dealer.send(b"\x01\x63garbage")
        eventually(lambda: bridge.rejects["unknown_type"] == 1)
        dealer.close(0)


def test_non_loopback_endpoint_without_keys_is_refused():
    from flowchain_bridge.keys import InsecureEndpointError

    with pytest.raises(InsecureEndpointError, match="allow-remote"):
        Bridge(FakeMetaTrader5(), _config(pub_endpoint="tcp://0.0.0.0:5555"))
    Bridge(FakeMetaTrader5(), _config(pub_endpoint="tcp://0.0.0.0:*", allow_remote=True))  # explicit: accepted


def test_ticks_between_counts_ticks_that_share_a_millisecond():
    from flowchain_bridge.stream import ticks_between

    records = np.zeros(7, dtype=TICK_DTYPE)
    records["time_msc"] = [100, 100, 101, 101, 101, 102, 103]
    records["bid"] = np.arange(7)
    assert ticks_between(records, (100, 1), (101, 2))["bid"].tolist() == [1, 2, 3]
    assert ticks_between(records, (100, 2), (103, 1))["bid"].tolist() == [2, 3, 4, 5, 6]
    assert ticks_between(records, (101, 3), (101, 3))["bid"].tolist() == []
    assert ticks_between(records, (99, 0), (100, 2))["bid"].tolist() == [0, 1]
    assert ticks_between(records, (100, 9), (102, 1))["bid"].tolist() == [2, 3, 4, 5]  # past what exists


def test_backfill_since_serves_the_terminals_ticks_before_the_session_began(ctx, eventually):
    mt5 = FakeMetaTrader5(seed=8)
    mt5.set_rate("EURUSD", 0)
    mt5.initialize()
    mt5.symbol_select("EURUSD", True)
    older = mt5.add_ticks("EURUSD", 30)  # made before this bridge started
    with Bridge(mt5, _config(symbols=["EURUSD"]), ctx) as bridge:
        eventually(lambda: bridge.ready)
        mt5.add_ticks("EURUSD", 5)  # the session's own (seq 1..5): never in the answer
        eventually(lambda: bridge.histories[0].last_seq == 5)
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(bridge.router_endpoint)

        def ask(after: int, seen: int, session: int | None = None, symbol: str = "EURUSD"):
            dealer.send(wire.encode_backfill_since(wire.BackfillSince(
                5, bridge.session_id if session is None else session, symbol, after, seen)))
            assert dealer.poll(5000)
            return wire.decode_backfill_response(dealer.recv())

        last = older[9]
        seen = int((older["time_msc"][:10] == last["time_msc"]).sum())
        resp = ask(int(last["time_msc"]), seen)
        assert resp.status is wire.BackfillStatus.OK and resp.first_seq == 0
        assert resp.records.tobytes() == older[10:].tobytes()
        assert len(ask(int(older["time_msc"][-1]), 99).records) == 0  # nothing after the last one
        assert ask(1, 0, session=bridge.session_id ^ 1).status is wire.BackfillStatus.SESSION_MISMATCH
        assert ask(1, 0, symbol="GBPUSD").status is wire.BackfillStatus.UNKNOWN_SYMBOL
        dealer.close(0)
    down = FakeMetaTrader5(seed=8)
    down.faults.failed_initializes = 1_000  # a terminal that never comes up
    with Bridge(down, _config(symbols=["EURUSD"]), ctx) as bridge:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(bridge.router_endpoint)
        dealer.send(wire.encode_backfill_since(wire.BackfillSince(6, bridge.session_id, "EURUSD", 1, 0)))
        assert dealer.poll(5000)
        assert wire.decode_backfill_response(dealer.recv()).status is wire.BackfillStatus.NOT_READY
        dealer.close(0)

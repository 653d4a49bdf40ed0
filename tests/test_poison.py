"""Bad data never trades and never poisons: zero, crossed and NaN quotes on live sockets and in
replay files, through the whole node (feed, decision chain, MT5 -> database chain); the feature
guard on its own; and a quote that moves A -> B -> A within one millisecond stored as three ticks.

The live tests speak the bridge's protocol from a plain PUB + ROUTER on 127.0.0.1 (ticks, batches,
heartbeats, backfill answered from its history) into a real :class:`TradingNode`.
"""
from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest
import zmq
from flowchain_bridge import wire
from flowchain_bridge.ticks import TICK_DTYPE

from flowchain.chains import AI_DECISION_CHAIN, TRADING_NODE_YAML
from flowchain.components import ComponentRegistry
from flowchain.config import load_config
from flowchain.node import TradingNode
from flowchain.registry import ChainRegistry
from flowchain.store import open_database
from flowchain.trading.brokers.paper import PaperBroker
from flowchain.trading.consensus import ConsensusEngine
from flowchain.trading.context import DecisionContext
from flowchain.trading.engine import TradingEngine
from flowchain.trading.features import FeatureEngine
from flowchain.trading.orchestrator import MultiAgentOrchestrator
from flowchain.trading.risk import RiskGuard

SYMBOL = "EURUSD"
TOPIC = wire.tick_topic(SYMBOL)
BEAT = wire.heartbeat_topic(SYMBOL)
STATE_OK = int(wire.HeartbeatState.CONNECTED | wire.HeartbeatState.TRADE_ALLOWED
               | wire.HeartbeatState.INITIALIZED)
T0 = 1_767_225_600_000


def quote(seq: int, bid: float | None = None, ask: float | None = None,
          time_msc: int | None = None) -> np.ndarray:
    """One MT5 record; by default a distinct good quote per seq, 3 ms apart."""
    rec = np.zeros(1, dtype=TICK_DTYPE)
    b = 1.1 + (seq % 50) * 1e-5 if bid is None else bid
    a = b + 1e-4 if ask is None else ask
    t = T0 + 3 * seq if time_msc is None else time_msc
    rec[0] = (t // 1000, b, a, 0.0, 0, t, 6, 0.0)
    return rec


class BridgeLike:
    """PUB + ROUTER speaking the bridge's protocol: the test says what to publish."""

    def __init__(self, ctx: zmq.Context, session: int = 77) -> None:
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
        self.last_seq = 0

    def tick(self, seq: int, record: np.ndarray) -> None:
        self.history[seq] = record.tobytes()
        self.last_seq = max(self.last_seq, seq)
        self.pub.send_multipart([TOPIC, wire.encode_tick(self.session, seq, 0, record.tobytes())])

    def batch(self, first_seq: int, records: np.ndarray) -> None:
        for i in range(len(records)):
            self.history[first_seq + i] = records[i:i + 1].tobytes()
        self.last_seq = max(self.last_seq, first_seq + len(records) - 1)
        self.pub.send_multipart([TOPIC, wire.encode_batch(self.session, first_seq, 0, records)])

    def beat(self) -> None:
        self.pub.send_multipart([BEAT, wire.encode_heartbeat(self.session, 0, self.last_seq,
                                                             STATE_OK, interval_ms=250)])

    def serve(self) -> None:
        while True:
            try:
                ident, body = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            req = wire.decode_backfill_request(body)
            seqs = [s for s in range(req.from_seq, req.to_seq + 1) if s in self.history]
            recs = np.frombuffer(b"".join(self.history[s] for s in seqs), dtype=TICK_DTYPE)
            status = wire.BackfillStatus.OK if seqs else wire.BackfillStatus.GONE
            self.router.send_multipart([ident, wire.encode_backfill_response(
                req.req_id, self.session, req.symbol_id, status,
                seqs[0] if seqs else req.from_seq, recs)])

    def close(self) -> None:
        self.pub.close(0)
        self.router.close(0)


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.term()


async def _run_node_on(bridge: BridgeLike, tmp_path: Path, eventually_async, script):
    """Run a node (paper broker) on ``bridge``; ``await script(node)`` publishes; then stop."""
    config_file = tmp_path / "node.toml"
    config_file.write_text(f'[bridge]\norders = "{bridge.router_endpoint}"\n'
                           "connect_timeout = 10\n", encoding="utf-8")
    config = load_config(config_file, {
        "feed": bridge.pub_endpoint, "db": str(tmp_path / "node.db"), "duration": 120,
        "symbols": [SYMBOL], "status_interval": 0, "dashboard_enabled": False})
    node = TradingNode(config)
    stop = asyncio.Event()

    async def keep_alive() -> None:  # heartbeats and backfill answers, as a bridge does
        while not stop.is_set():
            bridge.beat()
            bridge.serve()
            await asyncio.sleep(0.02)

    beats = asyncio.ensure_future(keep_alive())
    task = asyncio.ensure_future(node.run(install_signals=False))
    try:
        await eventually_async(lambda: node.feed is not None and node.feed.stats.heartbeats > 2,
                               timeout=30, message="the node never heard the bridge")
        await script(node)
        node.request_stop("test")
        summary = await asyncio.wait_for(task, 60)
    finally:
        stop.set()
        await beats
        if not task.done():
            node.request_stop("test")
            await asyncio.wait_for(task, 60)
    return node, summary


def _stored(path: Path, sql: str) -> list:
    conn = open_database(path, readonly=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_live_zero_crossed_and_nan_ticks_are_refused_and_the_symbol_trades_on(
        ctx, tmp_path, eventually_async):
    bridge = BridgeLike(ctx)
    bad = {51: dict(bid=0.0), 101: dict(bid=1.2, ask=1.1), 151: dict(bid=math.nan),
           205: dict(ask=-1.0)}
    good = [s for s in range(1, 221) if s not in bad]

    async def script(node: TradingNode) -> None:
        for seq in range(1, 201):
            bridge.tick(seq, quote(seq, **bad.get(seq, {})))
            if seq % 25 == 0:
                await asyncio.sleep(0)
        # A batch (one poll of the terminal) with one bad record among good ones.
        records = np.concatenate([quote(s, **bad.get(s, {})) for s in range(201, 221)])
        bridge.batch(201, records)
        await eventually_async(lambda: node.feed.stats.received == len(good), timeout=30,
                               message="the good ticks did not all arrive")
        await eventually_async(lambda: node.counters.decisions == len(good), timeout=30)

    try:
        node, summary = await _run_node_on(bridge, tmp_path, eventually_async, script)
    finally:
        bridge.close()
    stats = node.feed.stats
    # Every bad tick is counted by the rule it breaks; none became a gap or a backfill.
    assert stats.rejects == {"non_positive_price": 2, "crossed_price": 1, "nan_price": 1}
    assert (stats.gaps, stats.unrecovered, stats.backfilled) == (0, 0, 0)
    # Every good tick reached the ring and was decided on, the ones right after a bad one too.
    ring = node.feed.ring(SYMBOL)
    assert ring.seq_window(ring.size).tolist() == good
    assert node.counters.decisions == len(good)
    assert sum(node.counters.decision_failures.values()) == 0
    # ... and stored: nothing good was quarantined.
    db = tmp_path / "node.db"
    assert _stored(db, "SELECT seq FROM ticks ORDER BY time_msc, seq") == [(s,) for s in good]
    assert _stored(db, "SELECT count(*) FROM quarantine") == [(0,)]
    assert summary["stopped_by"] == "test"


async def test_live_a_b_a_within_one_millisecond_is_stored_as_three_ticks(
        ctx, tmp_path, eventually_async):
    bridge = BridgeLike(ctx)
    a, b = (1.10010, 1.10020), (1.10012, 1.10022)
    same_ms = T0 + 10_000

    async def script(node: TradingNode) -> None:
        bridge.tick(1, quote(1))
        for seq, (bid, ask) in ((2, a), (3, b), (4, a)):
            bridge.tick(seq, quote(seq, bid=bid, ask=ask, time_msc=same_ms))
        bridge.tick(5, quote(5, time_msc=same_ms + 1))
        await eventually_async(lambda: node.counters.decisions == 5, timeout=30)

    try:
        node, _ = await _run_node_on(bridge, tmp_path, eventually_async, script)
    finally:
        bridge.close()
    db = tmp_path / "node.db"
    rows = _stored(db, f"SELECT seq, bid, ask FROM ticks WHERE time_msc = {same_ms} "
                       "ORDER BY seq")
    assert rows == [(2, *a), (3, *b), (4, *a)]
    final = _stored(db, f"SELECT bid, ask FROM ticks WHERE time_msc = {same_ms} "
                        "ORDER BY seq DESC LIMIT 1")
    assert final == [a]
    assert _stored(db, "SELECT count(*) FROM quarantine") == [(0,)]
    assert node.parts.components["DataValidator"].rejected_by_reason["duplicate"] == 0


async def test_a_replay_file_with_poison_rows_trades_on_through_the_node(tmp_path):
    rows = []
    for i in range(300):
        t = T0 + 5 * i
        rows.append(f"{t // 1000},{1.1 + (i % 40) * 1e-5:.5f},{1.1002 + (i % 40) * 1e-5:.5f},"
                    f"0,0,{t},6,0")
    lines = (rows[:100] + [f"{T0 // 1000},0,1.1001,0,0,{T0 + 501},6,0"]
             + rows[100:200] + [f"{T0 // 1000},1.2,1.1,0,0,{T0 + 1001},6,0"]
             + rows[200:250] + [f"{T0 // 1000},nan,1.1,0,0,{T0 + 1251},6,0",
                                f"{(T0 + 86_400_000) // 1000},1.1,1.1002,0,0,"
                                f"{T0 + 86_400_000},6,0",  # dated a day ahead
                                "garbage,row"]
             + rows[250:])
    path = tmp_path / "poison.csv"
    path.write_text("time,bid,ask,last,volume,time_msc,flags,volume_real\n"
                    + "\n".join(lines) + "\n")
    db = tmp_path / "replay.db"
    config = load_config(None, {"feed": f"replay:{path}", "db": str(db), "duration": 60,
                                "symbols": [SYMBOL], "status_interval": 0,
                                "dashboard_enabled": False})
    node = TradingNode(config)
    summary = await node.run(install_signals=False)
    assert summary["stopped_by"] == "feed finished"
    assert node.feed.stats.rejects == {"non_positive_price": 1, "crossed_price": 1,
                                       "non_finite_price": 1, "time_ahead": 1,
                                       "field_count": 1}
    assert node.counters.decisions == 300
    assert sum(node.counters.decision_failures.values()) == 0
    assert _stored(db, "SELECT count(*) FROM ticks") == [(300,)]
    assert _stored(db, "SELECT count(*) FROM quarantine") == [(0,)]
    assert summary["refused_quotes"] == {} and summary["quarantined"] == {}
    assert summary["feed_stats"]["rejects"]["crossed_price"] == 1


class AlwaysBuy:
    """An agent that wants to buy on every tick, so every decided tick sends an order."""

    name = "always_buy"

    def analyze(self, features: np.ndarray) -> tuple[float, float]:
        return 1.0, 1.0


def test_no_order_is_ever_sent_on_a_quote_the_validator_would_quarantine():
    """A tick that reaches the decision chain without a feed's checks (a ring written by other
    code): the feature step refuses it, so no agent, consensus or order runs on it, and the
    symbol's next good tick trades."""
    from flowchain.errors import ChainStepError
    from flowchain.ingest import DataBridge, DataValidator, RawTickBatch
    from flowchain.ingest.validation import reason_name

    broker = PaperBroker()
    engine = TradingEngine(broker=broker, risk=RiskGuard(
        max_position=1e9, max_orders_per_second=1_000_000, max_daily_loss=1e12,
        max_tick_age_ms=1e9))
    features = FeatureEngine()
    components = ComponentRegistry()
    components.register("FeatureEngine", features)
    components.register("MultiAgentOrchestrator", MultiAgentOrchestrator(agents=[AlwaysBuy()]))
    components.register("ConsensusEngine", ConsensusEngine(threshold=0.1))
    components.register("TradingEngine", engine)
    for name in ("DataBridge", "DataValidator", "DataProcessor", "DatabaseService"):
        components.register(name, object)  # the other chain of the file is not run here
    registry = ChainRegistry(components)
    registry.register_file(TRADING_NODE_YAML)
    decide = registry.runner(AI_DECISION_CHAIN).run

    bad_quotes = [dict(bid=0.0), dict(bid=1.2, ask=1.1), dict(bid=math.nan),
                  dict(ask=math.inf), dict(bid=-1.0, ask=-0.9)]
    ticks = np.concatenate([quote(1), *[np.concatenate([quote(2 * k + 2, **q), quote(2 * k + 3)])
                                        for k, q in enumerate(bad_quotes)]])
    quarantined = DataValidator()(DataBridge()(RawTickBatch(SYMBOL, 1, ticks.tobytes())))
    would_quarantine = {int(s) for s in quarantined.rejected_seqs}
    assert len(would_quarantine) == len(bad_quotes)

    ctx = DecisionContext(SYMBOL)
    orders_on = []
    for i in range(len(ticks)):
        seq = i + 1
        ctx.point_at(ticks, i)
        before = sum(engine.outcomes.values())
        try:
            result = decide(ctx)
        except ChainStepError as exc:
            assert seq in would_quarantine
            assert exc.execution.failure.step == "feature_extraction"
            continue
        assert seq not in would_quarantine
        if sum(engine.outcomes.values()) > before:
            orders_on.append(seq)
        assert result.status in ("filled", "pending")
    assert orders_on == [s for s in range(1, len(ticks) + 1) if s not in would_quarantine]
    reasons = [reason_name(int(c)) for c in quarantined.rejected_reasons]
    assert sorted(features.refused.elements()) == sorted(reasons)


async def test_the_bridge_on_the_fake_terminal_stores_every_tick_repeated_quotes_too(
        ctx, tmp_path, eventually_async):
    """The real bridge on the fake MT5, dense same-millisecond bursts: every tick the terminal
    made is stored once, in order (repeated quotes within a millisecond included), and none is
    quarantined as a duplicate."""
    from bridge_fixtures import fake_mt5, local_bridge_config
    from flowchain_bridge import Bridge

    mt5 = fake_mt5(seed=5, symbols=[SYMBOL], rate=0)
    made = []
    with Bridge(mt5, local_bridge_config(symbols=[SYMBOL], poll_ms=1.0), ctx) as bridge:
        config_file = tmp_path / "node.toml"
        config_file.write_text(f'[bridge]\norders = "{bridge.router_endpoint}"\n'
                               "connect_timeout = 10\n", encoding="utf-8")
        config = load_config(config_file, {
            "feed": bridge.pub_endpoint, "db": str(tmp_path / "node.db"), "duration": 120,
            "symbols": [SYMBOL], "status_interval": 0, "dashboard_enabled": False})
        node = TradingNode(config)
        task = asyncio.ensure_future(node.run(install_signals=False))
        try:
            await eventually_async(lambda: node.feed is not None
                                   and node.feed.stats.heartbeats > 0, timeout=30)
            for _ in range(10):
                made.append(mt5.add_ticks(SYMBOL, 300, spacing_ms=0.05))
                total = sum(map(len, made))
                await eventually_async(lambda total=total: node.counters.decisions == total, timeout=30)
        finally:
            node.request_stop("test")
            summary = await asyncio.wait_for(task, 60)
    ticks = np.concatenate(made)
    keys = list(zip(ticks["time_msc"].tolist(), ticks["bid"].tolist(), ticks["ask"].tolist(),
                    ticks["last"].tolist(), ticks["flags"].tolist(), strict=False))
    repeats = sum(1 for i in range(1, len(keys)) if keys[i] in keys[max(0, i - 8):i])
    assert repeats > 0, "the fake made no repeated quote within a millisecond: nothing tested"
    rows = _stored(tmp_path / "node.db", "SELECT time, bid, ask, last, volume, time_msc, flags, "
                                         "volume_real FROM ticks ORDER BY time_msc, seq")
    stored = np.array([tuple(r) for r in rows], dtype=TICK_DTYPE)
    assert stored.tobytes() == ticks.tobytes()
    assert summary["quarantined"] == {} and summary["feed_stats"]["rejects"] == {}


_BAD = [dict(bid=0.0), dict(ask=0.0), dict(bid=-1.0), dict(bid=1.3, ask=1.2),
        dict(bid=math.nan), dict(ask=math.inf), dict(ask=-math.inf)]


def test_any_mix_of_good_and_bad_ticks_and_batches_delivers_exactly_the_good_ones():
    """Random streams of TICK and TICK_BATCH frames, some ticks bad: the ring holds exactly the
    good ticks in seq order, each bad one is counted once, and no bad tick leaves a gap."""
    from flowchain_bridge.ticks import tick_fault
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from flowchain.feeds.subscriber import ZmqFeed

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.integers(1, 5), st.lists(st.integers(-1, len(_BAD) - 1),
                                                         min_size=5, max_size=5)),
                    min_size=1, max_size=12))
    def check(frames):
        feed = ZmqFeed("tcp://127.0.0.1:1", [SYMBOL], ring_capacity=256)
        seq, good, bad = 1, [], 0
        for size, kinds in frames:
            records = np.concatenate([quote(seq + i, **(_BAD[k] if k >= 0 else {}))
                                      for i, k in enumerate(kinds[:size])])
            for i, k in enumerate(kinds[:size]):
                if k >= 0:
                    bad += 1
                else:
                    good.append(seq + i)
            if size == 1:
                feed.on_message([TOPIC, wire.encode_tick(9, seq, 0, records.tobytes())])
            else:
                feed.on_message([TOPIC, wire.encode_batch(9, seq, 0, records)])
            seq += size
        ring = feed.ring(SYMBOL)
        assert ring.seq_window(ring.size).tolist() == good[-256:]
        window = ring.window(ring.size)
        assert all(tick_fault(float(t["bid"]), float(t["ask"]), float(t["last"]),
                              int(t["volume"]), float(t["volume_real"])) == 0 for t in window)
        assert feed.stats.rejected == bad
        assert set(feed.stats.rejects) <= set(wire.TICK_REFUSALS)
        assert (feed.stats.gaps, feed.stats.unrecovered, feed.stats.dropped) == (0, 0, 0)

    check()

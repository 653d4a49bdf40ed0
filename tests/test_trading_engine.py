"""TradingEngine: hold, risk refusal, journal-before-send, broker failure, latency fills, the chain."""
import json

import numpy as np
from decisions import ctx_with
from flowchain_bridge.ticks import TICK_DTYPE

from flowchain import ChainRegistry, ComponentRegistry
from flowchain.trading.brokers.paper import PaperBroker
from flowchain.trading.components import ai_decision_chain, register_decision_components
from flowchain.trading.context import DecisionContext
from flowchain.trading.engine import TradingEngine
from flowchain.trading.journal import OrderJournal
from flowchain.trading.orders import FILLED, SENDING, UNKNOWN, BrokerReport
from flowchain.trading.risk import RiskGuard


def test_hold_sends_and_journals_nothing(tmp_path):
    engine = TradingEngine(journal=tmp_path / "j.db")
    result = engine(ctx_with(0))
    assert result.status == "hold" and engine.holds == 1 and engine.journal.states() == {}


def test_buy_is_journaled_before_it_is_sent_and_filled_at_the_ask(tmp_path):
    journal = OrderJournal(tmp_path / "j.db", "n1")
    seen_at_send = []

    class Spy(PaperBroker):
        def send(self, order):
            seen_at_send.append(journal.order(order.client_order_id)["state"])
            return super().send(order)

    engine = TradingEngine(broker=Spy(), journal=journal)
    ctx = ctx_with(+1, 0.2)
    result = engine(ctx)
    assert seen_at_send == [SENDING]
    assert result.status == "filled" and result.price == 1.1002 and result.client_order_id == "n1-1"
    row = journal.order("n1-1")
    assert row["state"] == FILLED and row["volume"] == 0.2
    assert json.loads(row["reason"])["votes"]["momentum"] == {"signal": 0.9, "confidence": 0.8}
    assert journal.events("n1-1") == [SENDING, FILLED]
    assert engine.broker.position("EURUSD") == 0.2 and engine.outcomes["filled"] == 1


def test_risk_refusal_journals_nothing(tmp_path):
    (tmp_path / "KILL").touch()
    engine = TradingEngine(journal=tmp_path / "j.db", risk=RiskGuard(kill_file=tmp_path / "KILL"))
    result = engine(ctx_with(-1))
    assert result.status == "rejected" and result.reason == "kill_switch"
    assert engine.journal.states() == {} and engine.risk.rejections["kill_switch"] == 1


def test_stale_tick_and_position_limit_through_the_engine(tmp_path):
    engine = TradingEngine(journal=tmp_path / "j.db", risk=RiskGuard(max_position=0.15,
                                                                     max_tick_age_ms=50))
    stale = ctx_with(+1)
    stale.received_ns -= 100_000_000
    assert engine(stale).reason == "stale_tick"
    assert engine(ctx_with(+1)).status == "filled"
    assert engine(ctx_with(+1)).reason == "max_position"


def test_broker_failure_is_unknown_never_resent_and_reconciled_on_restart(tmp_path):
    class Down(PaperBroker):
        def send(self, order):
            raise TimeoutError("no answer within the deadline")

    engine = TradingEngine(broker=Down(), journal=tmp_path / "j.db", node_id="n1")
    result = engine(ctx_with(+1))
    assert result.status == "failed" and "TimeoutError" in result.reason
    assert engine.journal.states() == {"n1-1": UNKNOWN} and engine.send_errors["TimeoutError"] == 1
    engine.journal.close()

    sent = []

    class Knows(PaperBroker):
        def lookup(self, cid):
            return BrokerReport(cid, FILLED, 1.1002, 0.1, 10009, "found by comment")

        def send(self, order):
            sent.append(order.client_order_id)
            return super().send(order)

    restarted = TradingEngine(broker=Knows(), journal=tmp_path / "j.db", node_id="n1")
    assert restarted.recovered == {FILLED: 1} and sent == []
    assert restarted.journal.states() == {"n1-1": FILLED}
    assert restarted(ctx_with(-1)).client_order_id == "n1-2"


def test_latency_fill_is_journaled_on_a_later_tick(tmp_path):
    engine = TradingEngine(broker=PaperBroker(latency_ms=100), journal=tmp_path / "j.db",
                           node_id="node")
    first = engine(ctx_with(+1, time_msc=1_000))
    assert first.status == "pending"
    engine(ctx_with(0, time_msc=1_050, ask=1.2))
    assert engine.journal.states() == {"node-1": "pending"}
    engine(ctx_with(0, time_msc=1_100, bid=1.2, ask=1.2004))
    assert engine.journal.states() == {"node-1": FILLED}
    assert engine.journal.order("node-1")["fill_price"] == 1.2004
    assert engine.journal.events("node-1") == [SENDING, "pending", FILLED]


def test_the_four_components_trade_through_the_chain_registry(tmp_path):
    rng = np.random.default_rng(11)
    n = 3000
    ticks = np.zeros(n, dtype=TICK_DTYPE)
    drift = np.where(np.arange(n) % 1000 < 500, 3e-5, -3e-5)  # trends both ways
    mid = 1.1 * np.exp(np.cumsum(drift + rng.normal(0, 3e-5, n)))
    ticks["bid"], ticks["ask"] = mid - 5e-5, mid + 5e-5
    ticks["time_msc"] = 1_700_000_000_000 + np.arange(n) * 250
    components = ComponentRegistry()
    trading = TradingEngine(journal=tmp_path / "j.db",
                            risk=RiskGuard(max_position=1.0, max_orders_per_second=1000))
    register_decision_components(components, trading=trading)
    registry = ChainRegistry(components)
    runner = registry.runner(registry.register_chain(ai_decision_chain()))
    ctx = DecisionContext("EURUSD")
    statuses = []
    for i in range(n):
        ctx.point_at(ticks, i)
        statuses.append(runner.run(ctx).status)
    assert statuses.count("filled") >= 2, statuses[-20:]
    states = trading.journal.states()
    assert len(states) == statuses.count("filled") and set(states.values()) == {FILLED}
    assert trading.broker.position("EURUSD") != 0.0 or trading.broker.realized_pnl() != 0.0

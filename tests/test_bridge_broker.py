"""BridgeBroker against the real bridge on the fake MT5, over 127.0.0.1 sockets."""

import pytest
import zmq
from bridge_fixtures import fake_mt5, started_bridge
from decisions import ctx_with
from flowchain_bridge import OrderFault

from flowchain.store import NodeIdentity
from flowchain.trading.brokers import BridgeBroker, BridgeUnreachableError
from flowchain.trading.brokers.bridge import order_comment
from flowchain.trading.engine import TradingEngine
from flowchain.trading.journal import OrderJournal
from flowchain.trading.orders import (
    FILLED,
    NOT_SENT,
    PENDING,
    REJECTED,
    SENDING,
    UNKNOWN,
    OrderRequest,
)


@pytest.fixture
def mt5():
    return fake_mt5(seed=2)


def _broker(bridge, ctx, **options):
    return BridgeBroker.connect(bridge.router_endpoint, timeout_s=5.0, context=ctx, **options)


@pytest.fixture
def broker(bridge, ctx):
    b = _broker(bridge, ctx)
    yield b
    b.close()


IDENTITY = NodeIdentity("t", 0x5EED_0001)


def _order(cid, side=+1, volume=0.1, symbol="EURUSD"):
    """An order with the req_id a journal of :data:`IDENTITY` would give the cid's number."""
    return OrderRequest(cid, symbol, side, volume, 0.0, 0.0, 0, IDENTITY.req_id(int(cid.rsplit("-", 1)[1])))


def _answers(broker, eventually, n=1):
    """Poll the broker's hook (as the engine does on every tick) until ``n`` reports came."""
    got = []

    def polled():
        got.extend(broker.on_quote("EURUSD", 1.085, 1.0852, 0))
        return len(got) >= n

    eventually(polled)
    return got


def test_fill_comes_back_through_the_polling_hook(broker, mt5, eventually):
    sent = broker.send(_order("n1-1", volume=0.2))
    assert sent.state == PENDING and broker.in_flight() == 1
    (report,) = _answers(broker, eventually)
    (deal,) = mt5.history_deals_get(0, 2**33)
    assert report.client_order_id == "n1-1" and report.state == FILLED
    assert (report.price, report.volume, report.retcode) == (deal.price, 0.2, 10009)
    assert deal.comment == order_comment(IDENTITY.req_id(1)) and deal.magic == broker.magic
    assert (report.deal, report.order) == (deal.ticket, deal.order)
    assert broker.position("EURUSD") == pytest.approx(0.2) and broker.in_flight() == 0
    broker.send(_order("n1-2", side=-1, volume=0.2))
    _answers(broker, eventually)
    assert broker.position("EURUSD") == 0.0 and mt5.positions_total() == 2  # the fake hedges


@pytest.mark.parametrize("fault,retcode", [(OrderFault.REQUOTE, 10004), (OrderFault.REJECT, 10006),
                                           (OrderFault.MARKET_CLOSED, 10018)])
def test_mt5_refusals_are_rejected_with_their_retcode(broker, mt5, eventually, fault, retcode):
    mt5.faults.orders.append(fault)
    broker.send(_order("n1-7"))
    (report,) = _answers(broker, eventually)
    assert report.state == REJECTED and report.retcode == retcode
    assert broker.position("EURUSD") == 0.0 and mt5.positions_total() == 0


def test_order_check_refusal_is_rejected_unsent(broker, mt5, eventually):
    broker.send(_order("n1-8", volume=0.015))
    (report,) = _answers(broker, eventually)
    assert report.state == REJECTED and report.retcode == mt5.TRADE_RETCODE_INVALID_VOLUME
    assert report.comment.startswith("check_failed") and mt5.order_send_calls == 0


def test_duplicate_send_trades_once(broker, mt5, eventually):
    broker.send(_order("n1-3"))
    broker.send(_order("n1-3"))  # the same client order id: the same req_id
    broker.send(_order("n1-30"))  # the MT5 thread is FIFO: once this fills, a 2nd n1-3 would have too
    reports = _answers(broker, eventually, n=2)
    assert sorted((r.client_order_id, r.state) for r in reports) == [("n1-3", FILLED), ("n1-30", FILLED)]
    assert mt5.order_send_calls == 2 and mt5.positions_total() == 2
    assert broker.position("EURUSD") == pytest.approx(0.2)


def test_overdue_result_is_reconciled_by_req_id_never_resent(bridge, ctx, mt5, eventually):
    mt5.faults.order_latency_s = 0.8  # order_send outlives the deadline plus grace
    broker = _broker(bridge, ctx, deadline_ms=300, grace_ms=100, resend_every_ms=100)
    try:
        broker.send(_order("n1-4"))
        reports = _answers(broker, eventually, n=2)
        assert [r.state for r in reports] == [UNKNOWN, FILLED]
        assert broker.resends >= 1 and mt5.order_send_calls == 1 and mt5.positions_total() == 1
    finally:
        broker.close()


def test_timeout_in_mt5_is_reconciled_on_the_bridge(broker, mt5, eventually):
    mt5.faults.orders.append(OrderFault.TIMEOUT_FILLED)
    broker.send(_order("n1-5"))
    (report,) = _answers(broker, eventually)
    assert report.state == FILLED and report.comment.startswith("reconciled_filled")
    assert mt5.order_send_calls == 1 and broker.position("EURUSD") == pytest.approx(0.1)


def test_absent_after_timeout_is_not_sent(broker, mt5, eventually):
    mt5.faults.orders.append(OrderFault.TIMEOUT_ABSENT)
    broker.send(_order("n1-6"))
    (report,) = _answers(broker, eventually)
    assert report.state == NOT_SENT and mt5.positions_total() == 0


def test_lookup_from_a_new_broker_replays_and_never_trades(bridge, ctx, broker, mt5, eventually):
    broker.send(_order("n1-9"))
    (first,) = _answers(broker, eventually)
    restarted = _broker(bridge, ctx)
    try:
        again = restarted.settle(_order("n1-9"))
        assert again.state == FILLED and again.price == first.price
        assert restarted.settle(_order("n1-404")) is None  # never sent: answered EXPIRED, not executed
        with pytest.raises(LookupError, match="not in flight"):
            restarted.lookup("n1-9")  # a broker that did not send it needs the journaled order
        assert mt5.order_send_calls == 1
    finally:
        restarted.close()


def test_unreachable_bridge_is_a_clear_error(ctx):
    silent = ctx.socket(zmq.ROUTER)  # accepts connections, never answers
    silent.setsockopt(zmq.LINGER, 0)
    silent.bind("tcp://127.0.0.1:*")
    endpoint = silent.getsockopt_string(zmq.LAST_ENDPOINT)
    with pytest.raises(BridgeUnreachableError, match=endpoint.replace(".", r"\.")):
        BridgeBroker.connect(endpoint, timeout_s=0.3, context=ctx)
    silent.close(0)


def test_req_id_and_comment_carry_the_node_namespace():
    req_id = IDENTITY.req_id(7)
    assert req_id == 0x5EED_0001_0000_0007 and order_comment(req_id) == "fc5eed000100000007"
    assert order_comment(req_id).startswith(IDENTITY.comment_prefix) and len(order_comment(req_id)) <= 31
    with pytest.raises(ValueError, match="sequence"):
        IDENTITY.req_id(2**32)


def _ctx(side, bid=1.0850, ask=1.0852, volume=0.1):
    return ctx_with(side, volume, bid, ask)


def test_trading_engine_trade_through_the_bridge_is_journaled(bridge, broker, mt5, tmp_path, eventually):
    journal = OrderJournal(tmp_path / "journal.db", "n7")
    engine = TradingEngine(broker=broker, journal=journal)
    quote = mt5.symbol_info_tick("EURUSD")  # decide on the market's own quote (no requote)
    result = engine(_ctx(+1, quote.bid, quote.ask))
    assert result.status == "pending" and result.client_order_id == "n7-1"
    eventually(lambda: engine(_ctx(0)) is not None and journal.states()["n7-1"] == FILLED)
    (deal,) = mt5.history_deals_get(0, 2**33)
    row = journal.order("n7-1")
    assert row["fill_price"] == deal.price and row["retcode"] == 10009 and row["deal"] == deal.ticket
    assert deal.comment == order_comment(journal.req_id_of("n7-1"))
    assert journal.events("n7-1") == [SENDING, PENDING, FILLED]
    reader = OrderJournal(tmp_path / "journal.db", "n7")  # another connection sees it committed
    assert reader.states() == {"n7-1": FILLED}
    reader.close()


def test_lookup_after_a_bridge_restart_finds_the_order_in_the_terminal(mt5, ctx, eventually):
    first_run = started_bridge(mt5, ctx, eventually)
    broker = _broker(first_run, ctx)
    broker.send(_order("r1-7"))
    (filled,) = _answers(broker, eventually)
    broker.close()
    first_run.stop()  # the bridge restarts: its req_id log is gone, the terminal keeps the deal
    second_run = started_bridge(mt5, ctx, eventually)
    node = _broker(second_run, ctx)
    try:
        again = node.settle(_order("r1-7"))
        assert again.state == FILLED and again.price == filled.price
        assert node.settle(_order("r1-404")) is None  # no trace in the terminal: never traded
        assert mt5.order_send_calls == 1 and second_run.stats()["resends_checked"] == 2
    finally:
        node.close()
        second_run.stop()


def test_positions_and_pnl_follow_the_terminal_through_account_queries(bridge, ctx, mt5, eventually):
    broker = _broker(bridge, ctx, identity=IDENTITY, sync_every_s=0.05)
    try:
        broker.sync()
        assert broker.positions() == {} and broker.pnl() == 0.0
        broker.send(_order("t-1", volume=0.3))
        _answers(broker, eventually)
        assert broker.position("EURUSD") == pytest.approx(0.3)  # at once, from the fill
        (held,) = mt5.positions_get()
        closed = mt5.order_send({"action": mt5.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.3,
                                 "type": mt5.ORDER_TYPE_SELL, "position": held.ticket,
                                 "magic": broker.magic, "comment": order_comment(IDENTITY.req_id(2)),
                                 "type_filling": mt5.ORDER_FILLING_IOC})
        (deal,) = mt5.history_deals_get(ticket=closed.deal)
        eventually(lambda: broker.on_quote("EURUSD", 1.0, 1.0, 0) == () and broker.position("EURUSD") == 0.0)
        assert broker.pnl() == pytest.approx(deal.profit) == broker.daily_pnl()
        assert broker.account.deals == 2 and broker.syncs >= 2
    finally:
        broker.close()


def test_capacity_follows_the_bridges_pace(bridge, ctx, mt5, eventually):
    broker = _broker(bridge, ctx, deadline_ms=2000)
    try:
        assert broker.capacity() == 1  # nothing measured yet: one order at a time
        mt5.faults.order_latency_s = 0.3
        broker.send(_order("n1-1"))
        _answers(broker, eventually)
        assert 4 <= broker.capacity() <= 5  # 80% of 2 s at ~0.3 s an order
    finally:
        broker.close()


def test_sync_without_a_terminal_is_a_clear_error(bridge, ctx, mt5):
    broker = _broker(bridge, ctx, identity=IDENTITY)
    try:
        mt5.faults.failed_initializes = 10**6  # the terminal is gone and stays gone
        mt5.disconnect()
        with pytest.raises(ConnectionError, match="could not read the terminal"):
            broker.sync(timeout_s=1.0)
    finally:
        broker.close()


def test_sync_waits_for_a_terminal_that_comes_back(bridge, ctx, mt5, eventually):
    broker = _broker(bridge, ctx, identity=IDENTITY)
    try:
        mt5.faults.ipc_timeouts = 3  # the next calls fail; the bridge and the broker ask again
        state = broker.sync(timeout_s=5.0)
        assert state.status.name == "OK" and mt5.faults.ipc_timeouts == 0
    finally:
        broker.close()


def test_an_engine_whose_terminal_is_down_refuses_orders_until_the_account_is_read(
        bridge, ctx, mt5, tmp_path, eventually):
    journal = OrderJournal(tmp_path / "journal.db", "down")
    broker = _broker(bridge, ctx, identity=journal.identity, lookup_timeout_s=0.5,
                     sync_every_s=0.05)
    try:
        mt5.faults.failed_initializes = 10**6  # the bridge answers; its terminal does not
        mt5.disconnect()
        engine = TradingEngine(broker=broker, journal=journal)   # starts: no SettlementError
        assert "could not read the terminal" in engine.account_unknown
        result = engine(_ctx(+1))
        assert (result.status, result.reason) == ("rejected", "account_unknown")
        assert journal.states() == {}                            # nothing journaled or sent
        mt5.faults.failed_initializes = 0                        # the terminal comes back
        eventually(lambda: engine(_ctx(0)) is not None and broker.account is not None,
                   timeout=30, message="the account was never read after the terminal came back")
        quote = mt5.symbol_info_tick("EURUSD")
        result = engine(_ctx(+1, quote.bid, quote.ask))
        assert result.status == "pending" and engine.account_unknown is None
    finally:
        broker.close()
        journal.close()

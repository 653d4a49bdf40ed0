"""Orders end to end: nodes (trading engine, SQLite journal, bridge broker) on one bridge over
127.0.0.1 sockets, the fake MT5 behind it. Two nodes with fresh databases, restarts with orders
in flight on a slow terminal, position and daily-loss limits across restarts."""
import time

import pytest
from bridge_fixtures import fake_mt5, started_bridge
from decisions import ctx_with

from flowchain.trading.brokers import BridgeBroker
from flowchain.trading.brokers.bridge import order_comment
from flowchain.trading.engine import TradingEngine
from flowchain.trading.journal import OrderJournal
from flowchain.trading.orders import FILLED, OPEN_STATES
from flowchain.trading.risk import RiskGuard


@pytest.fixture
def mt5():
    return fake_mt5(seed=9)


@pytest.fixture
def bridge(mt5, ctx, eventually):
    running = started_bridge(mt5, ctx, eventually)
    yield running
    running.stop()


class Node:
    """What ``flowchain node --broker bridge`` builds for orders: journal, broker, engine."""

    def __init__(self, bridge, ctx, db, node_id=None, **risk):
        self.journal = OrderJournal(db, node_id)
        self.broker = BridgeBroker.connect(bridge.router_endpoint, timeout_s=5.0, context=ctx,
                                           identity=self.journal.identity, lookup_timeout_s=5.0)
        limits = dict(max_position=100.0, max_orders_per_second=1000, max_daily_loss=1e9)
        limits.update(risk)
        self.engine = TradingEngine(broker=self.broker, journal=self.journal, risk=RiskGuard(**limits))

    def decide(self, mt5, side, volume=0.01):
        quote = mt5.symbol_info_tick("EURUSD")  # decide on the market's own quote
        return self.engine(ctx_with(side, volume, quote.bid, quote.ask, quote.time_msc))

    def settle(self, mt5, eventually):
        """Poll (hold decisions, as ticks do) until no order of this node is in flight."""
        eventually(lambda: self.decide(mt5, 0) and not self.journal.unresolved(), timeout=20)

    def kill(self):
        """Stop as a killed process would: nothing finished, nothing flushed beyond the journal."""
        self.broker.close()
        self.journal.close()

    def stop(self):
        self.engine.finish(10.0)
        self.kill()


def terminal_net(mt5, identity, magic):
    """The terminal's net EURUSD lots of one node (its magic and comment prefix)."""
    return round(sum(p.volume if p.type == 0 else -p.volume for p in mt5.positions_get()
                     if p.magic == magic and p.comment.startswith(identity.comment_prefix)), 8)


def filled_rows(journal):
    return [journal.order(cid) for cid, state in journal.states().items() if state == FILLED]


def misattributed(mt5, journal):
    """Journaled fills that do not match the terminal deal of that very order."""
    wrong = []
    for row in filled_rows(journal):
        deals = mt5.history_deals_get(ticket=row["deal"]) if row["deal"] else ()
        ok = len(deals) == 1 and deals[0].comment == order_comment(journal.req_id_of(row["client_order_id"])) \
            and deals[0].price == row["fill_price"] and deals[0].volume == row["fill_volume"] \
            and deals[0].symbol == row["symbol"] and deals[0].type == (0 if row["side"] > 0 else 1)
        if not ok:
            wrong.append(row["client_order_id"])
    return wrong


def test_two_nodes_with_fresh_databases_never_get_each_others_fills(bridge, ctx, mt5, tmp_path, eventually):
    # the same configured node id and fresh databases: their client order ids are the same
    one = Node(bridge, ctx, tmp_path / "one.db", "node")
    two = Node(bridge, ctx, tmp_path / "two.db", "node")
    assert one.journal.identity.namespace != two.journal.identity.namespace
    for i in range(15):
        one.decide(mt5, +1 if i % 3 else -1, 0.01 * (1 + i % 4))
        two.decide(mt5, -1 if i % 3 else +1, 0.05)
        time.sleep(0.005)  # ticks come apart; each engine picks up its RESULTs on the next one
    one.settle(mt5, eventually)
    two.settle(mt5, eventually)
    assert set(one.journal.states()) == set(two.journal.states())  # node-1 .. node-15 in both
    for node in (one, two):
        assert len(filled_rows(node.journal)) >= 10 and misattributed(mt5, node.journal) == []
        node.broker.sync()
        assert node.broker.position("EURUSD") == terminal_net(mt5, node.journal.identity, node.broker.magic)
    deals = {d.ticket for d in mt5.history_deals_get(0, 2**33)}
    journaled = {r["deal"] for node in (one, two) for r in filled_rows(node.journal)}
    assert journaled == deals  # every deal journaled, by the node that sent it
    # and a third node with a fresh database, after them: none of its req_ids is one of theirs
    three = Node(bridge, ctx, tmp_path / "three.db", "node")
    assert three.decide(mt5, +1).status == "pending"
    three.settle(mt5, eventually)
    assert misattributed(mt5, three.journal) == [] and len(filled_rows(three.journal)) == 1
    for node in (one, two, three):
        node.stop()


def test_a_node_killed_with_orders_in_flight_settles_them_all_at_restart(bridge, ctx, mt5, tmp_path,
                                                                        eventually):
    mt5.faults.order_latency_s = 0.3  # a slow terminal: orders queue on the bridge
    first = Node(bridge, ctx, tmp_path / "node.db")
    first.decide(mt5, +1, 0.02)
    first.settle(mt5, eventually)  # the broker has measured the bridge's pace
    sent = [first.decide(mt5, +1, 0.01 * (1 + i % 3)) for i in range(8)]
    assert sum(r.status == "pending" for r in sent) >= 2
    assert first.engine.risk.rejections["orders_in_flight"] >= 1  # back-pressure, not a queue
    assert first.journal.unresolved()  # killed now: orders pending in the journal, in flight
    first.kill()

    again = Node(bridge, ctx, tmp_path / "node.db")  # same database: same node id and namespace
    assert again.journal.identity == first.journal.identity
    again.settle(mt5, eventually)
    assert again.journal.unresolved() == []  # 0 left unsettled
    states = again.journal.state_counts()
    assert not set(states) & set(OPEN_STATES)
    assert misattributed(mt5, again.journal) == []
    comments = [d.comment for d in mt5.history_deals_get(0, 2**33)]
    assert len(comments) == len(set(comments)) == states[FILLED]  # 0 executed twice
    assert mt5.order_send_calls <= states[FILLED] + states.get("rejected", 0)  # none sent twice
    net = terminal_net(mt5, again.journal.identity, again.broker.magic)
    assert net > 0 and again.broker.position("EURUSD") == net  # positions equal the terminal's
    again.stop()


def test_max_position_holds_on_a_slow_terminal_and_across_a_restart(bridge, ctx, mt5, tmp_path, eventually):
    mt5.faults.order_latency_s = 0.2
    limit = 0.1
    node = Node(bridge, ctx, tmp_path / "node.db", max_position=limit)
    magic, identity = node.broker.magic, node.journal.identity
    most = 0.0
    for _run in range(3):
        began = time.monotonic()
        # buy as fast as decisions come, for 1.5 s and until the limit has refused one
        while time.monotonic() - began < 1.5 or not node.engine.risk.rejections["max_position"]:
            assert time.monotonic() - began < 20, "the position never reached its limit"
            node.decide(mt5, +1, 0.03)
            most = max(most, terminal_net(mt5, identity, magic))
            time.sleep(0.01)
        node.kill()  # orders still in flight
        node = Node(bridge, ctx, tmp_path / "node.db", max_position=limit)
        assert node.broker.position("EURUSD") + node.engine.in_flight().get("EURUSD", (0, 0))[0] \
            <= limit + 1e-9
    node.settle(mt5, eventually)
    final = terminal_net(mt5, identity, magic)
    assert max(most, final) <= limit + 1e-9 and final >= limit - 0.03 - 1e-9
    assert node.broker.position("EURUSD") == final
    node.stop()


def test_daily_loss_comes_from_the_terminals_deals_across_a_restart(bridge, ctx, mt5, tmp_path, eventually):
    node = Node(bridge, ctx, tmp_path / "node.db", max_daily_loss=5.0)
    assert node.decide(mt5, +1, 1.0).status == "pending"
    node.settle(mt5, eventually)
    (position,) = mt5.positions_get()
    close = {"action": mt5.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 1.0,
             "type": mt5.ORDER_TYPE_SELL, "position": position.ticket, "magic": node.broker.magic,
             "comment": node.journal.identity.comment(node.journal.req_id_of(f"{node.journal.node_id}-99")),
             "type_filling": mt5.ORDER_FILLING_IOC}
    mt5.faults.orders.clear()
    closed = mt5.order_send(close)  # the node's position closed at the bid: the spread is lost
    (deal,) = mt5.history_deals_get(ticket=closed.deal)
    assert deal.profit <= -5.0
    node.kill()
    again = Node(bridge, ctx, tmp_path / "node.db", max_daily_loss=5.0)
    assert again.broker.daily_pnl() == pytest.approx(deal.profit)  # the day's deals, not zero
    assert again.decide(mt5, +1, 0.01).reason == "max_daily_loss"
    other = Node(bridge, ctx, tmp_path / "other.db", max_daily_loss=5.0)  # another node's loss is not its own
    assert other.broker.daily_pnl() == 0.0 and other.decide(mt5, +1, 0.01).status == "pending"
    other.stop()
    again.stop()


async def test_the_node_on_a_slow_terminal_agrees_with_the_journal_and_the_terminal_across_runs(
        bridge, mt5, tmp_path):
    """Two runs of the trading node (feed, chains, journal, bridge broker) on one database
    against a slow terminal: every order settled, the summary's positions are the terminal's
    for this node, and max_position held."""
    import io

    from flowchain.config import load_config
    from flowchain.node import TradingNode

    mt5.faults.order_latency_s = 0.2
    mt5.set_rate("EURUSD", 200)
    toml = tmp_path / "node.toml"
    toml.write_text(f'[bridge]\norders = "{bridge.router_endpoint}"\nconnect_timeout = 10\n'
                    '[risk]\nmax_position = 0.1\nmax_orders_per_second = 50\nmax_tick_age_ms = 5000\n',
                    encoding="utf-8")
    db = tmp_path / "node.db"
    summaries = []
    for _ in range(2):
        config = load_config(toml, {"feed": bridge.pub_endpoint, "broker": "bridge", "db": str(db),
                                    "duration": 4, "symbols": ["EURUSD"], "status_interval": 0,
                                    "dashboard_enabled": False})
        summaries.append(await TradingNode(config, out=io.StringIO()).run(install_signals=False))
    journal = OrderJournal(db)
    identity, magic = journal.identity, 20_240_601
    assert all(s["trading"]["node_id"] == identity.node_id for s in summaries)
    assert sum(s["orders"] for s in summaries) > 0
    assert journal.unresolved() == [] and misattributed(mt5, journal) == []
    last = summaries[-1]
    assert last["trading"]["journal"] == journal.state_counts() and "pending" not in last["trading"]["journal"]
    net = terminal_net(mt5, identity, magic)
    assert last["positions"].get("EURUSD", 0.0) == net and abs(net) <= 0.1 + 1e-9
    journal.close()

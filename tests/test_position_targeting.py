"""Position targeting: a decision is the position a symbol should hold; orders go on a change of
view, for the difference, at most once per symbol's hold time (tick time)."""
import sqlite3

import pytest
from decisions import ctx_with

from flowchain.config import ConfigError, load_config
from flowchain.trading.brokers.paper import PaperBroker
from flowchain.trading.engine import TradingEngine
from flowchain.trading.risk import RiskGuard


def targeting(tmp_path, min_hold_ms=0.0, **broker):
    return TradingEngine(PaperBroker(**broker), journal=tmp_path / "j.db",
                         target_positions=True, min_hold_ms=min_hold_ms)


def sent(engine):
    """The orders sent, in order: (symbol, side, volume)."""
    with sqlite3.connect(engine.journal.path) as db:
        rows = db.execute("SELECT symbol, side, volume FROM orders ORDER BY seq").fetchall()
    return [(symbol, side, round(volume, 8)) for symbol, side, volume in rows]


def test_orders_go_on_a_change_of_view_for_the_difference(tmp_path):
    engine = targeting(tmp_path)
    views = [(+1, 0.1), (+1, 0.1), (+1, 0.05), (0, 0.0), (-1, 0.1), (-1, 0.2), (+1, 0.03)]
    statuses = [engine(ctx_with(side, volume, time_msc=1_000 * i)).status
                for i, (side, volume) in enumerate(views)]
    assert statuses == ["filled", "hold", "hold", "hold", "filled", "hold", "filled"]
    assert sent(engine) == [("EURUSD", 1, 0.1), ("EURUSD", -1, 0.2), ("EURUSD", 1, 0.13)]
    assert engine.broker.position("EURUSD") == pytest.approx(0.03)
    assert (engine.holds, engine.unchanged_views, engine.cooling) == (4, 3, 0)
    assert engine.risk.rejections.total() == 0


def test_each_symbol_targets_its_own_position(tmp_path):
    engine = targeting(tmp_path)
    engine(ctx_with(+1, 0.1, symbol="EURUSD"))
    engine(ctx_with(-1, 0.2, symbol="XAUUSD", bid=2000.0, ask=2000.5))
    engine(ctx_with(+1, 0.1, symbol="EURUSD"))
    engine(ctx_with(+1, 0.1, symbol="XAUUSD", bid=2000.0, ask=2000.5))
    assert sent(engine) == [("EURUSD", 1, 0.1), ("XAUUSD", -1, 0.2), ("XAUUSD", 1, 0.3)]


def test_the_hold_time_delays_a_change_of_view_per_symbol_in_tick_time(tmp_path):
    engine = targeting(tmp_path, min_hold_ms=60_000)
    assert engine(ctx_with(+1, time_msc=0)).status == "filled"
    assert engine(ctx_with(-1, symbol="GBPUSD", time_msc=10_000)).status == "filled"
    assert engine(ctx_with(-1, time_msc=59_999)).status == "hold"  # EURUSD cools down
    assert engine.cooling == 1
    assert engine(ctx_with(-1, time_msc=60_000)).status == "filled"
    assert engine(ctx_with(+1, symbol="GBPUSD", time_msc=69_999)).status == "hold"
    assert engine(ctx_with(+1, symbol="GBPUSD", time_msc=70_000)).status == "filled"
    assert sent(engine) == [("EURUSD", 1, 0.1), ("GBPUSD", -1, 0.1), ("EURUSD", -1, 0.2),
                            ("GBPUSD", 1, 0.2)]
    assert engine.cooling == 2


def test_a_refused_order_starts_no_hold_time(tmp_path):
    engine = TradingEngine(PaperBroker(), journal=tmp_path / "j.db",
                           risk=RiskGuard(max_tick_age_ms=50), target_positions=True,
                           min_hold_ms=60_000)
    stale = ctx_with(+1, time_msc=0)
    stale.received_ns -= 100_000_000
    assert engine(stale).reason == "stale_tick"
    assert engine(ctx_with(+1, time_msc=1)).status == "filled"  # the next tick may trade
    assert sent(engine) == [("EURUSD", 1, 0.1)]


def test_orders_in_flight_count_as_held(tmp_path):
    engine = targeting(tmp_path, latency_ms=100)
    assert engine(ctx_with(+1, time_msc=0)).status == "pending"
    assert engine(ctx_with(+1, time_msc=50)).status == "hold"  # the pending buy holds the view
    assert engine(ctx_with(-1, time_msc=60)).status == "pending"  # flips the pending 0.1 too
    assert sent(engine) == [("EURUSD", 1, 0.1), ("EURUSD", -1, 0.2)]
    engine(ctx_with(0, time_msc=500))  # both filled by now
    assert engine.broker.position("EURUSD") == pytest.approx(-0.1)
    assert engine.in_flight() == {}


def test_a_flip_still_obeys_max_position(tmp_path):
    engine = TradingEngine(PaperBroker(), journal=tmp_path / "j.db",
                           risk=RiskGuard(max_position=0.15), target_positions=True)
    assert engine(ctx_with(+1, 0.1)).status == "filled"
    assert engine(ctx_with(-1, 0.2)).reason == "max_position"  # 0.1 - 0.3 = -0.2 < -0.15
    assert engine(ctx_with(-1, 0.15)).status == "filled"
    assert sent(engine) == [("EURUSD", 1, 0.1), ("EURUSD", -1, 0.25)]


def test_without_targeting_every_decision_is_an_order(tmp_path):
    engine = TradingEngine(PaperBroker(), journal=tmp_path / "j.db")
    for side in (+1, +1, -1):
        engine(ctx_with(side))
    assert sent(engine) == [("EURUSD", 1, 0.1), ("EURUSD", 1, 0.1), ("EURUSD", -1, 0.1)]


@pytest.mark.parametrize("hold", [-1.0, float("nan"), float("inf")])
def test_a_bad_hold_time_is_refused(tmp_path, hold):
    with pytest.raises(ValueError, match="min_hold_ms"):
        TradingEngine(journal=tmp_path / "j.db", target_positions=True, min_hold_ms=hold)


def test_the_node_targets_positions_by_default_and_the_file_can_say_otherwise(tmp_path):
    trading = load_config().trading
    assert (trading.target_positions, trading.min_hold_ms) == (True, 60_000.0)
    path = tmp_path / "node.toml"
    path.write_text("[trading]\ntarget_positions = false\nmin_hold_ms = 0\n")
    trading = load_config(path).trading
    assert (trading.target_positions, trading.min_hold_ms) == (False, 0.0)
    path.write_text("[trading]\nmin_hold_ms = -5\n")
    with pytest.raises(ConfigError, match="min_hold_ms"):
        load_config(path)


async def test_a_default_node_is_rarely_refused_by_the_order_rate(tmp_path):
    """A few seconds of the default simulated feed: orders go, the rate limit barely refuses."""
    from flowchain.node import TradingNode

    config = load_config(None, {"db": str(tmp_path / "demo.db"), "duration": 4,
                                "status_interval": 0, "dashboard_enabled": False})
    summary = await TradingNode(config).run(install_signals=False)
    decisions = summary["decisions"]
    refused = summary["trading"]["risk_rejections"]
    assert decisions > 1_000 and summary["orders"] >= len(config.node.symbols)
    assert refused.get("max_orders_per_second", 0) < 0.01 * decisions, refused
    assert refused.get("max_daily_loss", 0) == 0 and refused.get("max_position", 0) == 0
    positions = summary["positions"]
    assert all(abs(lots) <= 0.1 + 1e-9 for lots in positions.values()), positions

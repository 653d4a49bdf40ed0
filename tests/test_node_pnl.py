"""The node counts money in its account currency: the daily loss limit through the trading
engine, and the PnL and exposure of the exit summary, with their unit."""
from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from decisions import ctx_with
from rich.console import Console

import flowchain.cli.node as cli_node
from flowchain.config import load_config
from flowchain.node import TradingNode
from flowchain.trading.brokers.paper import PaperBroker
from flowchain.trading.engine import TradingEngine
from flowchain.trading.risk import MAX_DAILY_LOSS, RiskGuard


def engine_with_loss_limit(tmp_path: Path, limit: float) -> TradingEngine:
    return TradingEngine(broker=PaperBroker(), journal=tmp_path / "j.db",
                         risk=RiskGuard(max_daily_loss=limit, max_orders_per_second=100,
                                         max_position=5.0))


@pytest.mark.parametrize("bid, refused", [(149.951, False), (149.880, True)])
def test_daily_loss_on_usdjpy_is_counted_in_dollars(tmp_path, bid, refused):
    """1 lot USDJPY bought at 150.000: at 149.951 the loss is 4,900 JPY = about 33 USD, within a
    50 USD limit (counted as yen it would be 4,900 "dollars"); at 149.880 it is 80 USD."""
    engine = engine_with_loss_limit(tmp_path, 50.0)
    assert engine(ctx_with(+1, 1.0, 149.990, 150.000, symbol="USDJPY")).status == "filled"
    result = engine(ctx_with(-1, 0.01, bid, bid + 0.010, time_msc=6_000, symbol="USDJPY"))
    loss = -engine.broker.pnl()
    assert loss == pytest.approx((150.000 - bid) * 100_000 / bid, rel=1e-9)  # yen / the bid
    assert (result.reason == MAX_DAILY_LOSS) is refused
    assert (result.status == "rejected") is refused


@pytest.mark.parametrize("bid, refused", [(2349.50, False), (2344.00, True)])
def test_daily_loss_on_gold_uses_its_contract_of_100_ounces(tmp_path, bid, refused):
    """1 lot XAUUSD bought at 2350.00: at 2349.50 the loss is 50 USD + spread (a 100,000
    contract would make it 50,000); at 2344.00 it is 600 USD."""
    engine = engine_with_loss_limit(tmp_path, 100.0)
    assert engine(ctx_with(+1, 1.0, 2349.80, 2350.00, symbol="XAUUSD")).status == "filled"
    result = engine(ctx_with(-1, 0.01, bid, bid + 0.2, time_msc=6_000, symbol="XAUUSD"))
    assert -engine.broker.pnl() == pytest.approx((2350.00 - bid) * 100, rel=1e-9)
    assert (result.reason == MAX_DAILY_LOSS) is refused


async def test_the_node_reports_pnl_and_exposure_in_its_account_currency(
        tmp_path, eventually_async, monkeypatch):
    config_file = tmp_path / "node.toml"
    config_file.write_text(f'''
[node]
db = "{tmp_path / "eur.db"}"
status_interval = 0
duration = 60
[simulator]
rate = 0
[dashboard]
enabled = false
[account]
currency = "EUR"
''', encoding="utf-8")
    node = TradingNode(load_config(config_file))
    task = asyncio.ensure_future(node.run(install_signals=False))
    await eventually_async(lambda: node.counters.orders >= 5, timeout=60)
    node.request_stop("test")
    summary = await asyncio.wait_for(task, 60)
    broker = node.parts.trading.broker
    assert summary["account_currency"] == broker.account_currency == "EUR"
    assert broker.valuation.conversion("JPY").route == ("USDJPY", "EURUSD")
    assert summary["pnl"] == pytest.approx(broker.pnl(), abs=0.01)
    assert set(summary["exposure"]) == set(summary["positions"])
    for symbol, lots in summary["positions"].items():
        assert (summary["exposure"][symbol] > 0) == (lots > 0)
    out = io.StringIO()
    monkeypatch.setattr(cli_node, "Console", lambda: Console(file=out, width=200))
    cli_node.print_summary(summary)
    assert "PnL (EUR)" in out.getvalue()

"""PaperBroker: fills at bid/ask with slippage, simulated latency in tick time, positions and PnL."""
import pytest

from flowchain.trading.brokers.paper import PaperBroker
from flowchain.trading.orders import FILLED, PENDING, OrderRequest

n = 0


def req(side, volume=1.0, bid=1.1000, ask=1.1002, time_msc=1_000, symbol="EURUSD"):
    global n
    n += 1
    return OrderRequest(f"p-{n}", symbol, side, volume, bid, ask, time_msc)


def test_buy_fills_at_ask_sell_at_bid_with_slippage():
    broker = PaperBroker(slippage=0.00005, contract_size=100_000)
    buy = broker.send(req(+1))
    sell = broker.send(req(-1, volume=0.5, bid=1.1010, ask=1.1012))
    assert buy.state == FILLED and buy.price == pytest.approx(1.10025) and buy.retcode == 10009
    assert sell.price == pytest.approx(1.10095)
    assert broker.position("EURUSD") == 0.5
    assert broker.realized_pnl() == pytest.approx((1.10095 - 1.10025) * 0.5 * 100_000)
    assert broker.lookup(buy.client_order_id) is buy and broker.lookup("nope") is None


def test_positions_average_flip_and_unrealized():
    broker = PaperBroker(contract_size=1.0)
    broker.send(req(+1, 1.0, ask=10.0))
    broker.send(req(+1, 1.0, ask=12.0))
    assert broker.avg_price("EURUSD") == pytest.approx(11.0)
    broker.on_quote("EURUSD", 13.0, 13.5, 2_000)
    assert broker.unrealized_pnl() == pytest.approx(2 * (13.0 - 11.0))
    broker.send(req(-1, 3.0, bid=14.0, ask=14.5))  # close 2 at 14, open 1 short at 14
    assert broker.realized_pnl() == pytest.approx(2 * 3.0)
    assert broker.position("EURUSD") == -1.0 and broker.avg_price("EURUSD") == 14.0
    broker.on_quote("EURUSD", 12.5, 13.0, 3_000)
    assert broker.unrealized_pnl() == pytest.approx(1.0)  # short marked at the ask
    assert broker.pnl() == pytest.approx(7.0)
    broker.send(req(+1, 1.0, bid=12.5, ask=13.0))
    assert broker.positions() == {} and broker.avg_price("EURUSD") == 0.0


def test_latency_fills_on_the_first_quote_after_it_at_that_quote():
    broker = PaperBroker(latency_ms=50)
    report = broker.send(req(+1, time_msc=1_000))
    assert report.state == PENDING and broker.position("EURUSD") == 0.0
    assert broker.on_quote("EURUSD", 1.2, 1.2002, 1_049) == ()
    assert broker.on_quote("GBPUSD", 1.3, 1.3002, 1_060) == ()  # another symbol's quote
    (fill,) = broker.on_quote("EURUSD", 1.3, 1.3004, 1_050)
    assert fill.state == FILLED and fill.price == 1.3004 and fill.client_order_id == report.client_order_id
    assert broker.position("EURUSD") == 1.0 and broker.lookup(report.client_order_id) is fill
    assert broker.on_quote("EURUSD", 1.3, 1.3004, 1_100) == ()


def test_symbols_are_separate_and_memory_is_bounded():
    broker = PaperBroker(remember=2)
    first = broker.send(req(+1, symbol="EURUSD"))
    broker.send(req(-1, symbol="USDJPY", bid=150.0, ask=150.02))
    broker.send(req(-1, symbol="USDJPY", bid=150.0, ask=150.02))
    assert broker.positions() == {"EURUSD": 1.0, "USDJPY": -2.0}
    assert broker.lookup(first.client_order_id) is None and broker.fills == 3


@pytest.mark.parametrize("kwargs", [{"latency_ms": -1}, {"slippage": -0.1}, {"contract_size": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="PaperBroker"):
        PaperBroker(**kwargs)

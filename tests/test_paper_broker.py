"""PaperBroker: fills at bid/ask with slippage, simulated latency in tick time, positions and
PnL in the account currency (contract size and profit currency of each symbol)."""
import math

import pytest

from flowchain.trading.brokers.paper import PaperBroker
from flowchain.trading.orders import FILLED, PENDING, REJECTED, OrderRequest
from flowchain.trading.valuation import DEFAULT_CONTRACT_SPECS, ContractSpec, Valuation

n = 0
TOY = ContractSpec(trade_contract_size=1.0, currency_base="TOY", currency_profit="USD")


def req(side, volume=1.0, bid=1.1000, ask=1.1002, time_msc=1_000, symbol="EURUSD"):
    global n
    n += 1
    return OrderRequest(f"p-{n}", symbol, side, volume, bid, ask, time_msc)


def toy_broker(**kwargs) -> PaperBroker:
    """A USD account whose TOYUSD has a contract of 1 unit (PnL = price difference x lots)."""
    return PaperBroker(valuation=Valuation("USD", {**DEFAULT_CONTRACT_SPECS, "TOYUSD": TOY}), **kwargs)


def test_buy_fills_at_ask_sell_at_bid_with_slippage():
    broker = PaperBroker(slippage=0.00005)
    buy = broker.send(req(+1))
    sell = broker.send(req(-1, volume=0.5, bid=1.1010, ask=1.1012))
    assert buy.state == FILLED and buy.price == pytest.approx(1.10025) and buy.retcode == 10009
    assert sell.price == pytest.approx(1.10095)
    assert broker.position("EURUSD") == 0.5
    assert broker.realized_pnl() == pytest.approx((1.10095 - 1.10025) * 0.5 * 100_000)
    assert broker.lookup(buy.client_order_id) is buy and broker.lookup("nope") is None
    assert broker.account_currency == "USD"


def test_positions_average_flip_and_unrealized():
    broker = toy_broker()
    broker.send(req(+1, 1.0, ask=10.0, symbol="TOYUSD"))
    broker.send(req(+1, 1.0, ask=12.0, symbol="TOYUSD"))
    assert broker.avg_price("TOYUSD") == pytest.approx(11.0)
    broker.on_quote("TOYUSD", 13.0, 13.5, 2_000)
    assert broker.unrealized_pnl() == pytest.approx(2 * (13.0 - 11.0))
    broker.send(req(-1, 3.0, bid=14.0, ask=14.5, symbol="TOYUSD"))  # close 2 at 14, open 1 short
    assert broker.realized_pnl() == pytest.approx(2 * 3.0)
    assert broker.position("TOYUSD") == -1.0 and broker.avg_price("TOYUSD") == 14.0
    broker.on_quote("TOYUSD", 12.5, 13.0, 3_000)
    assert broker.unrealized_pnl() == pytest.approx(1.0)  # short marked at the ask
    assert broker.pnl() == pytest.approx(7.0)
    broker.send(req(+1, 1.0, bid=12.5, ask=13.0, symbol="TOYUSD"))
    assert broker.positions() == {} and broker.avg_price("TOYUSD") == 0.0


def test_usdjpy_profit_is_converted_from_yen_at_the_current_rate():
    broker = PaperBroker()
    broker.send(req(+1, 0.5, bid=149.990, ask=150.000, symbol="USDJPY"))
    broker.on_quote("USDJPY", 151.000, 151.010, 2_000)
    # 0.5 lot x 100,000 x 1.000 JPY = 50,000 JPY, a profit: divided by the ask (less favourable)
    assert broker.unrealized_pnl() == pytest.approx(50_000 / 151.010)
    broker.send(req(-1, 0.5, bid=151.000, ask=151.010, symbol="USDJPY"))
    assert broker.realized_pnl() == pytest.approx(50_000 / 151.010)
    assert broker.unrealized_pnl() == 0.0
    # the old quote-currency figure would have been 50,000 "USD"
    assert 330 < broker.pnl() < 332


def test_usdjpy_loss_is_divided_by_the_bid():
    broker = PaperBroker()
    broker.send(req(-1, 1.0, bid=150.000, ask=150.010, symbol="USDJPY"))
    broker.send(req(+1, 1.0, bid=150.500, ask=150.510, symbol="USDJPY"))
    assert broker.realized_pnl() == pytest.approx(-0.510 * 100_000 / 150.500)


def test_xauusd_uses_its_contract_of_100_ounces():
    broker = PaperBroker()
    broker.send(req(+1, 0.1, bid=2349.80, ask=2350.00, symbol="XAUUSD"))
    broker.send(req(-1, 0.1, bid=2352.00, ask=2352.20, symbol="XAUUSD"))
    assert broker.realized_pnl() == pytest.approx(2.00 * 0.1 * 100)  # 20 USD, not 20,000


def test_a_cross_is_converted_through_a_quoted_pair_and_refused_before_its_quote():
    broker = PaperBroker(valuation=Valuation("USD", quoted=["EURGBP", "GBPUSD"]))
    early = broker.send(req(+1, 1.0, bid=0.85000, ask=0.85010, symbol="EURGBP"))
    assert early.state == REJECTED and early.retcode == 10006
    assert early.comment.endswith("no quote of GBPUSD so far")
    assert broker.position("EURGBP") == 0.0
    assert broker.refusals == 1
    broker.on_quote("GBPUSD", 1.25000, 1.25020, 1_000)
    broker.send(req(+1, 1.0, bid=0.85000, ask=0.85010, symbol="EURGBP"))
    broker.on_quote("EURGBP", 0.85110, 0.85120, 2_000)
    # 0.001 GBP x 100,000 = 100 GBP profit, multiplied by GBPUSD's bid
    assert broker.unrealized_pnl() == pytest.approx(100.0 * 1.25000)
    broker.on_quote("GBPUSD", 1.26000, 1.26020, 3_000)
    assert broker.unrealized_pnl() == pytest.approx(100.0 * 1.26000)  # the current rate
    broker.on_quote("EURGBP", 0.84910, 0.84920, 4_000)
    assert broker.unrealized_pnl() == pytest.approx(-100.0 * 1.26020)  # a loss: the ask


def test_a_symbol_it_cannot_value_is_refused_never_valued_at_one():
    broker = PaperBroker(valuation=Valuation("USD", quoted=["USDJPY", "EURGBP"]))
    no_spec = broker.send(req(+1, symbol="FOOBAR"))
    no_pair = broker.send(req(+1, symbol="EURGBP", bid=0.85, ask=0.8501))
    assert no_spec.state == no_pair.state == REJECTED
    assert "FOOBAR has no symbol spec" in no_spec.comment
    assert "no quoted pair converts GBP to the account currency USD" in no_pair.comment
    assert broker.positions() == {} and broker.pnl() == 0.0 and broker.fills == 0


@pytest.mark.parametrize("bid, ask", [(0.0, 1.1), (-1.0, 1.1), (1.2, 1.1), (math.nan, 1.1),
                                      (1.1, math.inf)])
def test_an_invalid_quote_never_fills_nor_marks(bid, ask):
    broker = PaperBroker(latency_ms=10)
    assert broker.send(req(+1, bid=bid, ask=ask)).state == REJECTED
    broker.send(req(+1, bid=1.1, ask=1.1002, time_msc=1_000))
    assert broker.on_quote("EURUSD", bid, ask, 1_010) == ()  # not this one
    (fill,) = broker.on_quote("EURUSD", 1.1004, 1.1006, 1_020)
    assert fill.price == 1.1006
    assert broker.on_quote("EURUSD", bid, ask, 1_030) == ()
    assert broker.unrealized_pnl() == pytest.approx((1.1004 - 1.1006) * 100_000)


def test_exposure_is_the_notional_in_the_account_currency():
    broker = PaperBroker()
    broker.send(req(+1, 0.5, bid=149.99, ask=150.00, symbol="USDJPY"))
    broker.send(req(-1, 0.2, bid=2350.0, ask=2350.2, symbol="XAUUSD"))
    exposure = broker.exposure()
    assert exposure["USDJPY"] == pytest.approx(50_000.0, rel=1e-4)  # 0.5 lot of USD
    assert exposure["XAUUSD"] == pytest.approx(-0.2 * 100 * 2350.2)


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


@pytest.mark.parametrize("kwargs", [{"latency_ms": -1}, {"slippage": -0.1}, {"remember": 0},
                                    {"slippage": math.nan}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="PaperBroker"):
        PaperBroker(**kwargs)

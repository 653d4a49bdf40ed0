"""The paper broker's PnL equals the terminal's own profit: the MetaTrader5 fake's closing-deal
profit and open-position profit, for EURUSD (quoted in the account currency), USDJPY (based in
it, profit in yen), XAUUSD (a contract of 100 oz) and EURGBP (a cross, through GBPUSD).

The paper account is given the fills the terminal made, at the quotes it made them on, and the
specs the terminal reports (``symbol_info``); only the valuation is the paper broker's own."""
import random

import pytest
from flowchain_bridge.fake_mt5 import DEFAULT_SYMBOLS, FakeMetaTrader5, FakeSymbol

from flowchain.trading.brokers.paper import PaperBroker
from flowchain.trading.orders import FILLED, OrderRequest
from flowchain.trading.valuation import ContractSpec, Valuation

SYMBOLS = DEFAULT_SYMBOLS + (FakeSymbol("EURGBP", 0.85500, 5, 15),)
CENT = 0.005 + 1e-9
"""The terminal rounds each deal's profit to the cent."""


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def terminal():
    clock = Clock()
    fake = FakeMetaTrader5(SYMBOLS, seed=21, clock_ms=clock)
    assert fake.initialize()
    for s in SYMBOLS:
        assert fake.symbol_select(s.name)
    clock.now += 2_000
    return fake, clock


def paper_for(fake: FakeMetaTrader5) -> PaperBroker:
    names = [s.name for s in SYMBOLS]
    specs = {n: ContractSpec.from_symbol_info(fake.symbol_info(n)) for n in names}
    return PaperBroker(valuation=Valuation(fake.account_info().currency, specs, quoted=names))


def mark_all(paper: PaperBroker, fake: FakeMetaTrader5, clock: Clock) -> None:
    for s in SYMBOLS:
        tick = fake.symbol_info_tick(s.name)
        paper.on_quote(s.name, tick.bid, tick.ask, clock.now)


def send_both(fake, paper, symbol, side, volume, position=0):
    request = dict(action=fake.TRADE_ACTION_DEAL, symbol=symbol, volume=volume,
                   type=fake.ORDER_TYPE_BUY if side > 0 else fake.ORDER_TYPE_SELL,
                   type_filling=fake.ORDER_FILLING_IOC, magic=9, comment="pnl", position=position)
    result = fake.order_send(request)
    assert result.retcode == fake.TRADE_RETCODE_DONE, result
    report = paper.send(OrderRequest(f"t{result.order}", symbol, side, volume, result.bid,
                                     result.ask, 0))
    assert report.state == FILLED and report.price == result.price
    return result


@pytest.mark.parametrize("symbol", ["EURUSD", "USDJPY", "XAUUSD", "EURGBP"])
def test_realized_pnl_equals_the_terminals_deal_profit(terminal, symbol):
    fake, clock = terminal
    paper = paper_for(fake)
    rng = random.Random(symbol)
    deals = []
    for _ in range(12):
        side, volume = rng.choice((1, -1)), rng.randint(1, 200) / 100
        clock.now += rng.randint(100, 60_000)
        mark_all(paper, fake, clock)
        opened = send_both(fake, paper, symbol, side, volume)
        clock.now += rng.randint(100, 120_000)
        mark_all(paper, fake, clock)
        send_both(fake, paper, symbol, -side, volume, position=opened.order)
        (out,) = [d for d in fake.history_deals_get(position=opened.order)
                  if d.entry == fake.DEAL_ENTRY_OUT]
        deals.append(out.profit)
        assert paper.realized_pnl() == pytest.approx(sum(deals), abs=CENT * len(deals))
    assert paper.positions() == {} and fake.positions_total() == 0
    assert any(abs(p) > 1.0 for p in deals)  # the market moved: a real comparison


def test_unrealized_pnl_equals_the_terminals_position_profit(terminal):
    fake, clock = terminal
    paper = paper_for(fake)
    mark_all(paper, fake, clock)
    for symbol, side, volume in (("EURUSD", 1, 0.7), ("USDJPY", -1, 1.3), ("XAUUSD", 1, 0.4),
                                 ("EURGBP", -1, 2.0)):
        send_both(fake, paper, symbol, side, volume)
    for _ in range(5):
        clock.now += 45_000
        mark_all(paper, fake, clock)
        positions = fake.positions_get()
        assert len(positions) == 4
        assert paper.unrealized_pnl() == pytest.approx(sum(p.profit for p in positions),
                                                       abs=CENT * 4)
        assert paper.pnl() == pytest.approx(fake.account_info().profit, abs=CENT * 4)

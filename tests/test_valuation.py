"""Valuation: symbol specs, conversion of profit into the account currency, and the paper
broker's PnL against an independent, exact computation for random fills."""
from fractions import Fraction
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowchain.trading.brokers.paper import PaperBroker
from flowchain.trading.orders import FILLED, OrderRequest
from flowchain.trading.valuation import (
    DEFAULT_CONTRACT_SPECS,
    ContractSpec,
    Valuation,
    ValuationError,
)


def marked(valuation: Valuation, **quotes: tuple[float, float]) -> Valuation:
    for symbol, (bid, ask) in quotes.items():
        q = valuation.quote(symbol)
        q.bid, q.ask = bid, ask
    return valuation


# -- specs ------------------------------------------------------------------------------------
def test_default_specs_carry_real_contract_sizes_and_currencies():
    d = DEFAULT_CONTRACT_SPECS
    assert d["EURUSD"] == ContractSpec(trade_contract_size=100_000.0, currency_base="EUR",
                                     currency_profit="USD")
    assert d["USDJPY"].currency_profit == "JPY" and d["USDJPY"].currency_base == "USD"
    assert d["XAUUSD"].trade_contract_size == 100.0 and d["XAUUSD"].currency_base == "XAU"
    assert d["XAGUSD"].trade_contract_size == 5_000.0
    for name in ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "AUDUSD", "USDCHF"):  # the simulator's
        assert name in d


@pytest.mark.parametrize("kwargs, key", [
    (dict(trade_contract_size=0.0, currency_base="EUR", currency_profit="USD"), "trade_contract_size"),
    (dict(trade_contract_size=float("inf"), currency_base="EUR", currency_profit="USD"),
     "trade_contract_size"),
    (dict(trade_contract_size=1.0, currency_base="eur", currency_profit="USD"), "currency_base"),
    (dict(trade_contract_size=1.0, currency_base="EUR", currency_profit=""), "currency_profit"),
    (dict(trade_contract_size=1.0, currency_base="EUR", currency_profit="US DOLLAR"),
     "currency_profit"),
])
def test_bad_specs_are_refused_naming_the_field(kwargs, key):
    with pytest.raises(ValueError, match=key):
        ContractSpec(**kwargs)


def test_spec_from_a_terminal_symbol_info():
    info = SimpleNamespace(trade_contract_size=100.0, currency_base="XAU", currency_profit="USD")
    assert ContractSpec.from_symbol_info(info) == DEFAULT_CONTRACT_SPECS["XAUUSD"]


# -- conversions ------------------------------------------------------------------------------
def test_the_account_currency_needs_no_conversion():
    v = Valuation("USD")
    assert v.conversion("USD").route == () and v.conversion("USD")(-12.5) == -12.5
    assert v.instrument("XAUUSD").profit(0.1, 2350.0, 2352.0) == pytest.approx(20.0)


def test_direct_pair_multiplies_by_the_less_favourable_side():
    v = marked(Valuation("USD", quoted=["EURGBP", "GBPUSD"]), GBPUSD=(1.25, 1.2502))
    gbp = v.conversion("GBP")
    assert gbp.route == ("GBPUSD",)
    assert gbp(100.0) == pytest.approx(125.0)  # a profit at the bid
    assert gbp(-100.0) == pytest.approx(-125.02)  # a loss at the ask


def test_inverse_pair_divides_by_the_less_favourable_side():
    v = marked(Valuation("USD"), USDJPY=(150.0, 150.03))
    jpy = v.conversion("JPY")
    assert jpy.route == ("USDJPY",)
    assert jpy(15_003.0) == pytest.approx(100.0)  # a profit divided by the ask
    assert jpy(-15_000.0) == pytest.approx(-100.0)  # a loss divided by the bid


def test_two_pairs_through_a_third_currency():
    v = marked(Valuation("EUR", quoted=["GBPJPY", "USDJPY", "EURUSD"]),
               USDJPY=(150.0, 150.0), EURUSD=(1.08, 1.08))
    inst = v.instrument("GBPJPY")
    assert inst.conversion.route == ("USDJPY", "EURUSD")
    # 1 lot x 100,000 x 0.150 JPY = 15,000 JPY = 100 USD = 92.59 EUR
    assert inst.profit(1.0, 190.000, 190.150) == pytest.approx(100.0 / 1.08)


def test_the_shortest_route_wins():
    v = Valuation("USD", quoted=["EURGBP", "EURUSD", "GBPUSD"])
    assert v.conversion("GBP").route == ("GBPUSD",)
    assert Valuation("USD", quoted=["EURGBP", "EURUSD"]).conversion("GBP").route == \
        ("EURGBP", "EURUSD")


def test_no_route_is_an_error_never_a_rate_of_one():
    v = Valuation("USD", quoted=["EURGBP", "USDJPY"])
    with pytest.raises(ValuationError, match="no quoted pair converts GBP to the account currency "
                                             "USD") as info:
        v.instrument("EURGBP")
    assert info.value.symbol == "EURGBP"
    with pytest.raises(ValuationError, match="FOOBAR has no symbol spec"):
        v.instrument("FOOBAR")
    with pytest.raises(ValuationError, match="EURGBP"):
        v.check(["USDJPY", "EURGBP"])


def test_a_pair_not_among_the_quoted_symbols_does_not_serve():
    assert Valuation("USD").conversion("GBP").route  # every spec is quoted by default
    with pytest.raises(ValuationError):
        Valuation("USD", quoted=["EURGBP"]).conversion("GBP")


def test_an_unquoted_route_refuses_to_convert():
    v = Valuation("USD", quoted=["EURGBP", "GBPUSD"])
    gbp = v.conversion("GBP")
    assert not gbp.ready and gbp.unquoted() == ("GBPUSD",)
    with pytest.raises(ValuationError, match="GBPUSD has no quote"):
        gbp(10.0)
    marked(v, GBPUSD=(1.25, 1.2502))
    assert gbp.ready and gbp.unquoted() == ()


def test_bad_account_currency_is_refused():
    with pytest.raises(ValueError, match="account currency"):
        Valuation("usd")


def test_notional_in_the_account_currency():
    v = marked(Valuation("USD"), USDJPY=(150.0, 150.0))
    assert v.instrument("USDJPY").notional(0.5, 150.0) == pytest.approx(50_000.0)
    assert v.instrument("XAUUSD").notional(-0.2, 2000.0) == pytest.approx(-40_000.0)


# -- property: the paper broker's PnL against an exact computation ----------------------------
CONTRACT = {"EURUSD": 100_000, "XAUUSD": 100, "USDJPY": 100_000, "EURGBP": 100_000,
            "GBPJPY": 100_000, "GBPUSD": 100_000}
MID = {"EURUSD": 1.085, "XAUUSD": 2350.0, "USDJPY": 151.25, "EURGBP": 0.855, "GBPJPY": 191.5,
       "GBPUSD": 1.265}
DIGITS = {"EURUSD": 5, "XAUUSD": 2, "USDJPY": 3, "EURGBP": 5, "GBPJPY": 3, "GBPUSD": 5}
TRADED = ("EURUSD", "XAUUSD", "USDJPY", "EURGBP", "GBPJPY")


def to_usd(symbol: str, amount: Fraction, quotes: dict) -> Fraction:
    """The account (USD) value of a profit in ``symbol``'s profit currency, written out per kind
    of symbol: the less favourable side of the converting pair."""
    if symbol in ("EURUSD", "XAUUSD"):  # quoted in the account currency
        return amount
    if symbol in ("USDJPY", "GBPJPY"):  # yen: divided by USDJPY (the ask on a profit)
        bid, ask = quotes["USDJPY"]
        return amount / (ask if amount > 0 else bid)
    bid, ask = quotes["GBPUSD"]  # EURGBP: pounds, multiplied by GBPUSD (the bid on a profit)
    return amount * (bid if amount > 0 else ask)


def quote_for(symbol: str, offset: int, spread: int) -> tuple[float, float]:
    point = 10.0 ** -DIGITS[symbol]
    bid = round(MID[symbol] * (1 + offset / 2000.0), DIGITS[symbol])
    return bid, round(bid + spread * point, DIGITS[symbol])


steps = st.lists(st.one_of(
    st.tuples(st.just("quote"), st.sampled_from(TRADED + ("GBPUSD",)),
              st.integers(-40, 40), st.integers(0, 60)),
    st.tuples(st.just("order"), st.sampled_from(TRADED), st.sampled_from((1, -1)),
              st.integers(1, 300)),
), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_pnl_matches_an_exact_independent_computation(script):
    broker = PaperBroker()
    quotes = {s: quote_for(s, 0, 10) for s in CONTRACT}
    for s, (bid, ask) in quotes.items():
        broker.on_quote(s, bid, ask, 0)
    book = {s: [Fraction(0), Fraction(0)] for s in TRADED}  # position (lots), average price
    realized = Fraction(0)
    for i, step in enumerate(script, start=1):
        if step[0] == "quote":
            _, symbol, offset, spread = step
            quotes[symbol] = quote_for(symbol, offset, spread)
            broker.on_quote(symbol, *quotes[symbol], i)
            continue
        _, symbol, side, hundredths = step
        bid, ask = quotes[symbol]
        report = broker.send(OrderRequest(f"o{i}", symbol, side, hundredths / 100, bid, ask, i))
        assert report.state == FILLED
        price = Fraction(ask if side > 0 else bid)
        qty = Fraction(side * hundredths, 100)
        pos, avg = book[symbol]
        if pos == 0 or (pos > 0) == (qty > 0):
            avg = (avg * abs(pos) + price * abs(qty)) / (abs(pos) + abs(qty))
        else:
            closed = min(abs(qty), abs(pos))
            sign = 1 if pos > 0 else -1
            realized += to_usd(symbol, sign * closed * (price - avg) * CONTRACT[symbol], quotes)
            if abs(qty) > abs(pos):
                avg = price
        pos += qty
        book[symbol] = [pos, avg if pos else Fraction(0)]
    unrealized = Fraction(0)
    for symbol, (pos, avg) in book.items():
        if pos:
            bid, ask = quotes[symbol]
            mark = Fraction(bid if pos > 0 else ask)
            unrealized += to_usd(symbol, pos * (mark - avg) * CONTRACT[symbol], quotes)
        assert broker.position(symbol) == pytest.approx(float(pos), abs=1e-9)
    assert broker.realized_pnl() == pytest.approx(float(realized), rel=1e-9, abs=1e-6)
    assert broker.unrealized_pnl() == pytest.approx(float(unrealized), rel=1e-9, abs=1e-6)
    assert broker.pnl() == pytest.approx(float(realized + unrealized), rel=1e-9, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from((1, -1)), st.integers(1, 300), st.integers(-40, 40),
                          st.integers(0, 60)), min_size=1, max_size=40),
       st.sampled_from(("EURUSD", "XAUUSD", "USDJPY")))
def test_pnl_in_the_profit_currency_is_the_cash_flow_of_the_fills(fills, symbol):
    """With the account in the symbol's profit currency, realized + unrealized is what the fills
    paid and received plus the open position at its mark, however the position was averaged."""
    spec = DEFAULT_CONTRACT_SPECS[symbol]
    broker = PaperBroker(valuation=Valuation(spec.currency_profit, quoted=[symbol]))
    cash, pos = Fraction(0), Fraction(0)
    for i, (side, hundredths, offset, spread) in enumerate(fills):
        bid, ask = quote_for(symbol, offset, spread)
        assert broker.send(OrderRequest(f"c{i}", symbol, side, hundredths / 100, bid, ask,
                                        i)).state == FILLED
        qty = Fraction(side * hundredths, 100)
        cash -= qty * Fraction(ask if side > 0 else bid)
        pos += qty
    mark = Fraction(bid if pos > 0 else ask)
    expected = (cash + pos * mark) * CONTRACT[symbol]
    assert broker.pnl() == pytest.approx(float(expected), rel=1e-9, abs=1e-6)

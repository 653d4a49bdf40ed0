"""The MetaTrader5 fake behaves like the package: records, errors, ticks, orders and faults."""
import datetime as dt
import threading

import numpy as np
import pytest
from flowchain_bridge.fake_mt5 import FakeMetaTrader5, FakeSymbol, OrderFault
from flowchain_bridge.ticks import TICK_DTYPE


class ManualClock:
    """Wall-clock milliseconds that move only when told."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def mt5(clock):
    fake = FakeMetaTrader5(seed=3, clock_ms=clock)
    assert fake.initialize()
    assert fake.symbol_select("EURUSD")
    return fake


def _buy(**kw):
    req = dict(action=FakeMetaTrader5.TRADE_ACTION_DEAL, symbol="EURUSD", volume=0.1,
               type=FakeMetaTrader5.ORDER_TYPE_BUY, type_filling=FakeMetaTrader5.ORDER_FILLING_IOC,
               magic=77, comment="fc1")
    req.update(kw)
    return req


def test_calls_before_initialize_return_none_with_no_ipc_error():
    fake = FakeMetaTrader5()
    assert fake.symbol_info_tick("EURUSD") is None
    assert fake.last_error() == (fake.RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
    assert fake.positions_total() == 0 and fake.terminal_info() is None


def test_initialize_checks_credentials_and_scripted_failures():
    fake = FakeMetaTrader5(login=42, password="pw", server="S")
    fake.faults.failed_initializes = 1
    assert fake.initialize() is False and fake.last_error()[0] == fake.RES_E_INTERNAL_FAIL_INIT
    assert fake.initialize(login=42, password="bad") is False
    assert fake.last_error()[0] == fake.RES_E_AUTH_FAILED
    assert fake.initialize(login=42, password="pw", server="S") is True
    assert fake.last_error() == (1, "Success")


def test_records_are_namedtuples_with_asdict(mt5):
    info = mt5.terminal_info()._asdict()
    assert info["connected"] is True and info["trade_allowed"] is True
    assert mt5.account_info().login == 5_000_001
    assert mt5.symbol_info("EURUSD").digits == 5
    assert mt5.symbol_info("NOPE") is None and mt5.last_error()[0] == mt5.RES_E_NOT_FOUND


def test_ticks_have_the_mt5_dtype_spreads_bursts_and_unknown_flags(mt5, clock):
    clock.now += 600_000  # ten minutes of market at 20 ticks/s
    ticks = mt5.copy_ticks_range("EURUSD", (clock.now - 600_000) // 1000, clock.now // 1000, mt5.COPY_TICKS_ALL)
    assert ticks.dtype == TICK_DTYPE and len(ticks) > 5000
    spread = ticks["ask"] - ticks["bid"]
    assert spread.min() > 0 and 5e-5 < np.median(spread) < 3e-4
    assert np.all(np.diff(ticks["time_msc"]) >= 0)
    assert np.any(np.diff(ticks["time_msc"]) == 0), "no same-millisecond bursts"
    assert np.any(ticks["flags"] & 0x80) and np.all(ticks["time"] == ticks["time_msc"] // 1000)
    tick = mt5.symbol_info_tick("EURUSD")
    assert tick.time_msc == ticks["time_msc"][-1] and tick._asdict()["bid"] == ticks["bid"][-1]
    trade_only = mt5.copy_ticks_range("EURUSD", 0, clock.now // 1000, mt5.COPY_TICKS_TRADE)
    assert 0 < len(trade_only) < len(ticks) and np.all(trade_only["flags"] & mt5.TICK_FLAG_LAST)


def test_the_same_seed_gives_the_same_ticks(clock):
    runs = []
    for _ in range(2):
        fake = FakeMetaTrader5(seed=11, clock_ms=ManualClock())
        fake.initialize()
        fake.symbol_select("GBPUSD")
        runs.append(fake.add_ticks("GBPUSD", 200))
    assert runs[0].tobytes() == runs[1].tobytes()


def test_copy_ticks_range_takes_datetimes_and_overlaps_by_the_second(mt5, clock):
    mt5.set_rate("EURUSD", 0)
    added = mt5.add_ticks("EURUSD", 50, spacing_ms=1.0)
    start = dt.datetime.fromtimestamp(int(added["time"][0]), tz=dt.timezone.utc)
    again = mt5.copy_ticks_range("EURUSD", start, dt.datetime.fromtimestamp(clock.now / 1000, tz=dt.timezone.utc),
                                 mt5.COPY_TICKS_ALL)
    assert again[-50:].tobytes() == added.tobytes()
    assert mt5.copy_ticks_range("EURUSD", 0, 1, 99) is None
    assert mt5.last_error() == (mt5.RES_E_INVALID_PARAMS, 'Invalid "flags" argument')
    assert mt5.copy_ticks_from("EURUSD", int(added["time"][0]), 3, mt5.COPY_TICKS_ALL).shape == (3,)


def test_unselected_symbol_has_no_tick(mt5):
    assert mt5.symbol_info_tick("GBPUSD") is None
    assert mt5.symbol_select("NOPE") is False


def test_order_send_executes_and_history_reconciles(mt5, clock):
    clock.now += 2000
    result = mt5.order_send(_buy())
    assert result.retcode == mt5.TRADE_RETCODE_DONE and result.deal and result.order
    assert set(result._asdict()) == {"retcode", "deal", "order", "volume", "price", "bid", "ask", "comment",
                                     "request_id", "retcode_external", "request"}
    assert result.request.magic == 77
    (position,) = mt5.positions_get(symbol="EURUSD")
    assert position.magic == 77 and position.comment == "fc1"
    deals = mt5.history_deals_get(clock.now // 1000 - 60, clock.now // 1000 + 1)
    assert [d.ticket for d in deals] == [result.deal]
    close = mt5.order_send(_buy(type=mt5.ORDER_TYPE_SELL, position=position.ticket, comment="fc2"))
    assert close.retcode == mt5.TRADE_RETCODE_DONE and mt5.positions_total() == 0
    assert len(mt5.history_deals_get(position=position.ticket)) == 2


@pytest.mark.parametrize("request_overrides,retcode", [
    (dict(volume=0.013), FakeMetaTrader5.TRADE_RETCODE_INVALID_VOLUME),
    (dict(type_filling=FakeMetaTrader5.ORDER_FILLING_RETURN), FakeMetaTrader5.TRADE_RETCODE_INVALID_FILL),
    (dict(price=0.5, deviation=5), FakeMetaTrader5.TRADE_RETCODE_REQUOTE),
])
def test_order_check_and_send_refuse_bad_requests(mt5, clock, request_overrides, retcode):
    clock.now += 2000
    assert mt5.order_check(_buy(**request_overrides)).retcode == retcode
    assert mt5.order_send(_buy(**request_overrides)).retcode == retcode
    assert mt5.positions_total() == 0
    assert mt5.order_check(_buy()).retcode == 0 and mt5.order_check(_buy()).comment == "Done"


def test_unknown_request_key_is_none_with_invalid_params(mt5):
    assert mt5.order_send(_buy(volumes=1)) is None
    assert mt5.last_error() == (mt5.RES_E_INVALID_PARAMS, 'Invalid "volumes" argument')


@pytest.mark.parametrize("fault,retcode,executed", [
    (OrderFault.REQUOTE, 10004, False), (OrderFault.REJECT, 10006, False),
    (OrderFault.MARKET_CLOSED, 10018, False), (OrderFault.INVALID_FILL, 10030, False),
    (OrderFault.TIMEOUT_FILLED, 10012, True), (OrderFault.TIMEOUT_ABSENT, 10012, False),
    (OrderFault.NONE_FILLED, None, True), (OrderFault.NONE_ABSENT, None, False),
])
def test_scripted_order_faults(mt5, clock, fault, retcode, executed):
    clock.now += 2000
    mt5.faults.orders.append(fault)
    result = mt5.order_send(_buy())
    if retcode is None:
        assert result is None and mt5.last_error() == (mt5.RES_E_INTERNAL_FAIL_TIMEOUT, "IPC timeout")
    else:
        assert result.retcode == retcode
    assert (mt5.positions_total() == 1) is executed
    assert mt5.order_send(_buy()).retcode == mt5.TRADE_RETCODE_DONE  # the script is consumed


def test_disconnect_mid_stream_and_ipc_timeouts(mt5, clock):
    clock.now += 1000
    mt5.faults.disconnect_after_polls = 2
    assert mt5.symbol_info_tick("EURUSD") and mt5.symbol_info_tick("EURUSD")
    assert mt5.symbol_info_tick("EURUSD") is None
    assert mt5.last_error()[0] == mt5.RES_E_INTERNAL_FAIL_CONNECT
    assert mt5.initialize() and mt5.symbol_info_tick("EURUSD") is not None
    mt5.faults.ipc_timeouts = 1
    assert mt5.positions_get() is None and mt5.last_error()[0] == mt5.RES_E_INTERNAL_FAIL_TIMEOUT
    assert mt5.positions_get() == ()


def test_server_disconnect_and_closed_market_give_retcodes(mt5, clock):
    clock.now += 1000
    mt5.server_connected = False
    assert mt5.terminal_info().connected is False
    assert mt5.order_send(_buy()).retcode == mt5.TRADE_RETCODE_CONNECTION
    mt5.server_connected = True
    mt5.set_market_open("EURUSD", False)
    assert mt5.order_send(_buy()).retcode == mt5.TRADE_RETCODE_MARKET_CLOSED


def test_last_error_is_per_thread(mt5):
    seen = []
    thread = threading.Thread(target=lambda: (mt5.symbol_info("NOPE"), seen.append(mt5.last_error())))
    thread.start()
    thread.join(5)
    assert seen[0][0] == mt5.RES_E_NOT_FOUND and mt5.last_error() == (1, "Success")


def test_rates_are_built_from_the_ticks(mt5, clock):
    clock.now += 180_000
    rates = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 10)
    assert 2 <= len(rates) <= 4 and np.all(rates["high"] >= rates["low"])
    assert rates["tick_volume"].sum() > 0


def test_custom_symbols(clock):
    fake = FakeMetaTrader5([FakeSymbol("BTCUSD", 60000.0, 2, 500, ticks_per_second=100)], clock_ms=clock)
    fake.initialize()
    fake.symbol_select("BTCUSD")
    clock.now += 10_000
    assert 500 < len(fake.generated_ticks("BTCUSD")) < 2000


def test_pending_order_expires_into_the_history_when_its_time_passes(mt5, clock):
    clock.now += 2000
    ask = mt5.symbol_info_tick("EURUSD").ask
    expires = clock.now // 1000 + 60
    placed = mt5.order_send(_buy(action=mt5.TRADE_ACTION_PENDING, type=mt5.ORDER_TYPE_BUY_LIMIT,
                                 price=round(ask - 0.01, 5), type_filling=mt5.ORDER_FILLING_RETURN,
                                 type_time=mt5.ORDER_TIME_SPECIFIED, expiration=expires))
    assert placed.retcode == mt5.TRADE_RETCODE_PLACED and mt5.orders_total() == 1
    clock.now += 61_000
    assert mt5.orders_get() == () and mt5.orders_total() == 0
    (expired,) = mt5.history_orders_get(ticket=placed.order)
    assert expired.state == mt5.ORDER_STATE_EXPIRED and expired.time_done == clock.now // 1000
    removal = mt5.order_send(_buy(action=mt5.TRADE_ACTION_REMOVE, order=placed.order))
    assert removal.retcode == mt5.TRADE_RETCODE_INVALID_ORDER


# -- money: contract size, profit currency, conversion to the account currency ----------------
def _round_trip(fake, clock, symbol, side, volume, hold_ms=3_000):
    """Open ``side`` (+1 buy, -1 sell) ``volume`` lots of ``symbol``, let the market move, close
    it; return the opening and closing results and the closing deal."""
    assert fake.symbol_select(symbol)
    clock.now += 1_000
    buy, sell = fake.ORDER_TYPE_BUY, fake.ORDER_TYPE_SELL
    opened = fake.order_send(_buy(symbol=symbol, volume=volume, type=buy if side > 0 else sell))
    assert opened.retcode == fake.TRADE_RETCODE_DONE
    (position,) = fake.positions_get(symbol=symbol)
    clock.now += hold_ms
    closed = fake.order_send(_buy(symbol=symbol, volume=volume, type=sell if side > 0 else buy,
                                  position=position.ticket))
    assert closed.retcode == fake.TRADE_RETCODE_DONE
    (deal,) = [d for d in fake.history_deals_get(position=position.ticket)
               if d.entry == fake.DEAL_ENTRY_OUT]
    return opened, closed, deal


def test_symbol_info_carries_contract_sizes_and_currencies(mt5):
    want = {"EURUSD": (100_000.0, "EUR", "USD"), "GBPUSD": (100_000.0, "GBP", "USD"),
            "USDJPY": (100_000.0, "USD", "JPY"), "XAUUSD": (100.0, "XAU", "USD")}
    for symbol, spec in want.items():
        info = mt5.symbol_info(symbol)
        assert (info.trade_contract_size, info.currency_base, info.currency_profit) == spec
    assert mt5.symbol_info("EURUSD").trade_tick_value == pytest.approx(1.0)  # 1 point, 1 lot: 1 USD
    assert mt5.symbol_info("XAUUSD").trade_tick_value == pytest.approx(1.0)
    jpy = mt5.symbol_info("USDJPY")  # 0.001 x 100,000 = 100 JPY, in dollars
    assert jpy.trade_tick_value == pytest.approx(100.0 / jpy.ask if jpy.ask else 100.0 / 151.25)
    assert mt5.account_info().currency == "USD"


@pytest.mark.parametrize("side", [1, -1])
def test_eurusd_and_xauusd_deal_profit_is_points_times_volume_times_contract(mt5, clock, side):
    for symbol, contract in (("EURUSD", 100_000), ("XAUUSD", 100)):
        opened, closed, deal = _round_trip(mt5, clock, symbol, side, 0.3)
        assert deal.profit == round(side * (closed.price - opened.price) * 0.3 * contract, 2)
        assert deal.volume == 0.3 and deal.price == closed.price


@pytest.mark.parametrize("side", [1, -1])
def test_usdjpy_deal_profit_is_converted_from_yen_at_the_closing_quote(mt5, clock, side):
    balance = mt5.account_info().balance
    opened, closed, deal = _round_trip(mt5, clock, "USDJPY", side, 0.5, hold_ms=20_000)
    yen = side * (closed.price - opened.price) * 0.5 * 100_000
    rate = closed.ask if yen > 0 else closed.bid  # the less favourable side for the account
    assert deal.profit == round(yen / rate, 2)
    assert abs(deal.profit) < abs(yen) / 100  # dollars, not yen
    assert mt5.account_info().balance == pytest.approx(balance + deal.profit)


def test_open_positions_are_marked_at_the_current_quote_with_profit(mt5, clock):
    mt5.symbol_select("USDJPY")
    mt5.symbol_select("XAUUSD")
    clock.now += 1_000
    assert mt5.order_send(_buy(symbol="USDJPY", volume=1.0)).retcode == mt5.TRADE_RETCODE_DONE
    sold = mt5.order_send(_buy(symbol="XAUUSD", volume=0.2, type=mt5.ORDER_TYPE_SELL))
    assert sold.retcode == mt5.TRADE_RETCODE_DONE
    clock.now += 30_000
    jpy, xau = mt5.positions_get(symbol="USDJPY")[0], mt5.positions_get(symbol="XAUUSD")[0]
    tick = mt5.symbol_info_tick("USDJPY")
    assert jpy.price_current == tick.bid  # a buy is marked at the bid
    yen = (tick.bid - jpy.price_open) * 100_000
    assert jpy.profit == round(yen / (tick.ask if yen > 0 else tick.bid), 2)
    gold = mt5.symbol_info_tick("XAUUSD")
    assert xau.price_current == gold.ask  # a sell at the ask
    assert xau.profit == round(-(gold.ask - xau.price_open) * 0.2 * 100, 2)
    account = mt5.account_info()
    assert account.profit == pytest.approx(jpy.profit + xau.profit, abs=0.011)
    assert account.equity == pytest.approx(account.balance + account.profit)


def test_partial_close_keeps_the_rest_and_a_larger_close_is_refused(mt5, clock):
    clock.now += 1_000
    opened = mt5.order_send(_buy(volume=0.5))
    (position,) = mt5.positions_get()
    clock.now += 2_000
    too_much = mt5.order_send(_buy(type=mt5.ORDER_TYPE_SELL, volume=0.6, position=position.ticket))
    assert too_much.retcode == mt5.TRADE_RETCODE_INVALID_CLOSE_VOLUME
    part = mt5.order_send(_buy(type=mt5.ORDER_TYPE_SELL, volume=0.2, position=position.ticket))
    assert part.retcode == mt5.TRADE_RETCODE_DONE
    (rest,) = mt5.positions_get()
    assert rest.ticket == position.ticket and rest.volume == pytest.approx(0.3)
    out = [d for d in mt5.history_deals_get(position=position.ticket) if d.entry == mt5.DEAL_ENTRY_OUT]
    assert out[0].profit == round((part.price - opened.price) * 0.2 * 100_000, 2)


def test_a_cross_is_converted_through_another_pair(clock):
    symbols = (FakeSymbol("EURGBP", 0.85500, 5, 15), FakeSymbol("GBPUSD", 1.26500, 5, 16))
    fake = FakeMetaTrader5(symbols, seed=5, clock_ms=clock)
    assert fake.initialize() and fake.symbol_select("GBPUSD")
    opened, closed, deal = _round_trip(fake, clock, "EURGBP", 1, 1.0, hold_ms=20_000)
    pounds = (closed.price - opened.price) * 100_000
    gbpusd = fake.symbol_info_tick("GBPUSD")
    assert deal.profit == round(pounds * (gbpusd.bid if pounds > 0 else gbpusd.ask), 2)
    assert fake.symbol_info("EURGBP").currency_profit == "GBP"


def test_an_account_in_another_currency_converts_every_profit(clock):
    fake = FakeMetaTrader5(seed=6, clock_ms=clock, currency="EUR")
    assert fake.initialize() and fake.account_info().currency == "EUR"
    fake.symbol_select("EURUSD")
    opened, closed, deal = _round_trip(fake, clock, "XAUUSD", 1, 0.1, hold_ms=20_000)
    dollars = (closed.price - opened.price) * 0.1 * 100
    eurusd = fake.symbol_info_tick("EURUSD")
    assert deal.profit == round(dollars / (eurusd.ask if dollars > 0 else eurusd.bid), 2)


def test_a_market_that_cannot_convert_a_profit_currency_is_refused():
    with pytest.raises(ValueError, match="converts GBP to the account currency USD"):
        FakeMetaTrader5([FakeSymbol("EURGBP", 0.855)])


def test_calc_profit_and_margin_are_in_the_account_currency(mt5, clock):
    mt5.symbol_select("USDJPY")
    clock.now += 1_000
    tick = mt5.symbol_info_tick("USDJPY")
    profit = mt5.order_calc_profit(mt5.ORDER_TYPE_BUY, "USDJPY", 1.0, 150.000, 151.000)
    assert profit == round(100_000 / tick.ask, 2)
    margin = mt5.order_calc_margin(mt5.ORDER_TYPE_BUY, "USDJPY", 1.0, tick.ask)
    assert margin == pytest.approx(1_000.0, abs=0.01)  # 1 lot of USD at 1:100
    assert mt5.order_calc_profit(mt5.ORDER_TYPE_SELL, "XAUUSD", 0.1, 2350.0, 2340.0) == 100.0

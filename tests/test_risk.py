"""RiskGuard: every check refuses with its named reason, and counts it."""
import os
import signal
import time

import pytest

from flowchain.trading import risk as R
from flowchain.trading.risk import RiskGuard

NOW = 10_000_000_000_000
DAY = 86_400_000


def ok_args(**over):
    args = dict(side=1, volume=0.1, position=0.0, total_pnl=0.0, time_msc=5 * DAY,
                received_ns=NOW - 1_000_000, now_ns=NOW)
    args.update(over)
    if "now_ns" in over and "received_ns" not in over:
        args["received_ns"] = args["now_ns"] - 1_000_000  # a fresh tick at that moment
    return args


def only(guard, reason):
    assert guard.rejections[reason] >= 1
    assert sum(guard.rejections.values()) == guard.rejections[reason]


def test_clean_order_passes_and_counts_nothing():
    guard = RiskGuard()
    assert guard.check(**ok_args()) is None
    assert sum(guard.rejections.values()) == 0 and set(guard.rejections) == set(R.REASONS)


def test_kill_file(tmp_path):
    path = tmp_path / "KILL"
    guard = RiskGuard(kill_file=path)
    assert guard.check(**ok_args()) is None
    path.touch()
    assert guard.check(**ok_args()) == R.KILL_SWITCH and "kill file" in guard.killed
    only(guard, R.KILL_SWITCH)
    path.unlink()
    assert guard.check(**ok_args()) is None


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signal")
def test_kill_signal():
    guard = RiskGuard()
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        assert guard.install_kill_signal() == signal.SIGUSR1
        os.kill(os.getpid(), signal.SIGUSR1)
        assert guard.check(**ok_args()) == R.KILL_SWITCH
        assert guard.killed == f"signal {int(signal.SIGUSR1)}"
        guard.reset_kill()
        assert guard.check(**ok_args()) is None
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_kill_signal_unavailable_says_what_to_use(monkeypatch):
    monkeypatch.delattr(signal, "SIGUSR1")
    with pytest.raises(RuntimeError, match="kill_file"):
        RiskGuard().install_kill_signal()


def test_feed_stale_flag_and_callable():
    stale = {"on": False}
    guard = RiskGuard(feed_stale=lambda: stale["on"])
    guard.set_feed_stale(True)
    assert guard.check(**ok_args()) == R.FEED_STALE
    guard.set_feed_stale(False)
    assert guard.check(**ok_args()) is None
    stale["on"] = True
    assert guard.check(**ok_args()) == R.FEED_STALE
    only(guard, R.FEED_STALE)


def test_stale_tick():
    guard = RiskGuard(max_tick_age_ms=100)
    assert guard.check(**ok_args(received_ns=NOW - 99_000_000)) is None
    assert guard.check(**ok_args(received_ns=NOW - 101_000_000)) == R.STALE_TICK
    only(guard, R.STALE_TICK)


def test_max_orders_per_second_is_a_rolling_window():
    guard = RiskGuard(max_orders_per_second=3)
    for k in range(3):
        assert guard.check(**ok_args(now_ns=NOW + k)) is None
        guard.record_order(NOW + k)
    assert guard.check(**ok_args(now_ns=NOW + 500_000_000)) == R.MAX_ORDERS_PER_SECOND
    # one second after the first of the three, one slot frees up
    assert guard.check(**ok_args(now_ns=NOW + 1_000_000_000)) is None
    only(guard, R.MAX_ORDERS_PER_SECOND)


def test_max_position_counts_the_order_and_lets_reductions_through():
    guard = RiskGuard(max_position=0.5)
    assert guard.check(**ok_args(position=0.4, volume=0.1)) is None
    assert guard.check(**ok_args(position=0.45, volume=0.1)) == R.MAX_POSITION
    assert guard.check(**ok_args(position=-0.45, side=-1, volume=0.1)) == R.MAX_POSITION
    assert guard.check(**ok_args(position=0.5, side=-1, volume=0.3)) is None
    only(guard, R.MAX_POSITION)


def test_max_daily_loss_is_measured_from_the_start_of_the_day():
    guard = RiskGuard(max_daily_loss=100)
    assert guard.check(**ok_args(total_pnl=-500.0)) is None  # first tick of the day: baseline
    assert guard.check(**ok_args(total_pnl=-599.0)) is None
    assert guard.check(**ok_args(total_pnl=-600.0)) == R.MAX_DAILY_LOSS
    assert guard.check(**ok_args(total_pnl=-600.0, time_msc=6 * DAY)) is None  # a new day
    only(guard, R.MAX_DAILY_LOSS)


def test_checks_run_in_order_kill_first(tmp_path):
    guard = RiskGuard(kill_file=tmp_path)  # the directory exists: killed
    guard.set_feed_stale(True)
    assert guard.check(**ok_args(received_ns=0, position=99.0)) == R.KILL_SWITCH


@pytest.mark.parametrize("kwargs", [{"max_position": 0}, {"max_orders_per_second": 0},
                                    {"max_daily_loss": -1}, {"max_tick_age_ms": 0}])
def test_bad_limits_are_refused(kwargs):
    with pytest.raises(ValueError, match="RiskGuard"):
        RiskGuard(**kwargs)


def test_orders_in_flight_count_as_filled_for_the_position_limit():
    guard = RiskGuard(max_position=0.1)
    now = time.monotonic_ns()
    check = lambda side, position, **kw: guard.check(side, 0.05, position, 0.0, 0, now, now, **kw)  # noqa: E731
    assert check(+1, 0.0, pending_long=0.05) is None  # 0.05 filled-or-pending + 0.05 = 0.1
    assert check(+1, 0.0, pending_long=0.06) == "max_position"
    assert check(+1, 0.0, pending_short=0.5) is None  # sells in flight never block a buy
    assert check(-1, 0.0, pending_short=0.06) == "max_position"
    assert check(-1, 0.5) is None  # an order that reduces a position over the limit passes
    assert check(+1, 0.5) == "max_position"


def test_back_pressure_refuses_past_the_brokers_capacity():
    guard = RiskGuard()
    now = time.monotonic_ns()
    assert guard.check(+1, 0.1, 0.0, 0.0, 0, now, now, in_flight=2, capacity=3) is None
    assert guard.check(+1, 0.1, 0.0, 0.0, 0, now, now, in_flight=3, capacity=3) == "orders_in_flight"
    assert guard.rejections["orders_in_flight"] == 1


def test_daily_loss_from_the_broker_is_used_as_given():
    guard = RiskGuard(max_daily_loss=100)
    now = time.monotonic_ns()
    # the first tick of a day would zero a home-made daily PnL; the terminal's figure is kept
    assert guard.check(+1, 0.1, 0.0, -150.0, 0, now, now, day_pnl=-150.0) == "max_daily_loss"
    assert guard.check(+1, 0.1, 0.0, -150.0, 0, now, now, day_pnl=-50.0) is None

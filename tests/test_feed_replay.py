"""ReplayFeed: MT5 CSV, HistData CSV and Parquet; malformed rows counted by reason with
file:line; as fast as possible or at N x real time."""
from __future__ import annotations

import datetime as dt
import sys
import time

import numpy as np
import pytest
from flowchain_bridge.ticks import TICK_DTYPE

from flowchain.feeds.replay import ReplayFeed
from flowchain.feeds.simulator import SimulatorFeed

HEADER = "time,bid,ask,last,volume,time_msc,flags,volume_real\n"


def mt5_csv(path, ticks: np.ndarray, symbol_column: list | None = None) -> None:
    with open(path, "w") as fh:
        fh.write(("symbol," if symbol_column else "") + HEADER)
        for i, t in enumerate(ticks):
            prefix = f"{symbol_column[i]}," if symbol_column else ""
            fh.write(prefix + ",".join(repr(v) for v in t.tolist()) + "\n")


def sim_ticks(n: int) -> np.ndarray:
    feed = SimulatorFeed(["EURUSD"], seed=9)
    _, ticks = feed.generate(n)
    return ticks


def test_mt5_csv_replays_every_tick_exactly(tmp_path):
    ticks = sim_ticks(500)
    path = tmp_path / "EURUSD.csv"
    mt5_csv(path, ticks)
    feed = ReplayFeed(path, symbol="EURUSD")
    assert feed.total == 500
    assert feed.pump(10_000) == 500 and feed.pump(1) == 0
    ring = feed.ring("EURUSD")
    assert ring.window(500).tobytes() == ticks.tobytes()
    assert ring.seq_window(3).tolist() == [497, 498, 499]
    assert feed.stats.rejected == 0


def test_symbol_column_splits_ticks_and_filters(tmp_path):
    ticks = sim_ticks(30)
    names = ["EURUSD", "GBPUSD", "USDJPY"] * 10
    path = tmp_path / "mixed.csv"
    mt5_csv(path, ticks, names)
    feed = ReplayFeed(path)
    assert feed.symbols == ("EURUSD", "GBPUSD", "USDJPY")
    feed.pump(100)
    assert feed.ring("GBPUSD").window(10).tobytes() == ticks[1::3].tobytes()
    only = ReplayFeed(path, symbols=["USDJPY"])
    assert only.total == 10 and only.stats.rejects == {"unknown_symbol": 20}


def test_malformed_rows_are_counted_by_reason_with_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    good = "1700000000,1.1,1.1001,0,0,1700000000000,6,0"
    path.write_text(HEADER + "\n".join([
        good,
        "1700000000,1.1,1.1001,0,0",                      # 3: field_count
        "1700000000,abc,1.1001,0,0,1700000000001,6,0",    # 4: not_a_number
        "1700000000,nan,1.1001,0,0,1700000000002,6,0",    # 5: non_finite_price
        "1700000000,1.1,inf,0,0,1700000000002,6,0",       # 6: non_finite_price
        "1700000000,-1.1,1.1,0,0,1700000000002,6,0",      # 7: non_positive_price
        "1700000000,1.1,1.1001,0,-3,1700000000002,6,0",   # 8: negative_value
        "1699999999,1.1,1.1001,0,0,1699999999999,6,0",    # 9: time_backwards
        "",
        "1700000000,1.2,1.2001,0,0,1700000000005,134,0",  # 11: good, unknown flag bits
    ]) + "\n")
    feed = ReplayFeed(path, symbol="EURUSD")
    assert feed.stats.rejects == {"field_count": 1, "not_a_number": 1, "non_finite_price": 2,
                                  "non_positive_price": 1, "negative_value": 1,
                                  "time_backwards": 1}
    assert feed.total == 2
    assert feed.stats.reject_examples[0] == f"{path}:3: field_count: 5 fields, the header has 8"
    assert feed.stats.reject_examples[1].startswith(f"{path}:4: not_a_number: bid=")
    feed.pump(10)
    assert feed.ring("EURUSD").window(2)["flags"].tolist() == [6, 134]


def _rows(n, start=1_700_000_000_000, bid=1.1):
    return [f"{(start + i) // 1000},{bid + i * 1e-5:.5f},{bid + 2e-4 + i * 1e-5:.5f},0,0,"
            f"{start + i},6,0" for i in range(n)]


@pytest.mark.parametrize("bad, reason", [
    ("1700000000,0,1.1001,0,0,1700000000050,6,0", "non_positive_price"),
    ("1700000000,1.1,0.0,0,0,1700000000050,6,0", "non_positive_price"),
    ("1700000000,1.2,1.1,0,0,1700000000050,6,0", "crossed_price"),
    ("1700000000,NaN,1.1,0,0,1700000000050,6,0", "non_finite_price"),
    ("1700000000,1.1,1.1001,-2,0,1700000000050,6,0", "non_positive_price"),
    ("1700000000,1.1,1.1001,0,0,1700000000050,6,-1", "volume_out_of_range"),
    ("1700000000,1.1,1.1001,0,9223372036854775808,1700000000050,6,0", "volume_out_of_range"),
    ("1700000000,1.1,1.1001,0,0,17000000000x0,6,0", "not_a_number"),
    ("1700000000,1.1,1.1001", "field_count"),
    ("1700086400,1.1,1.1001,0,0,1700086400050,6,0", "time_ahead"),  # dated a day ahead
    ("1699913600,1.1,1.1001,0,0,1699913600050,6,0", "time_backwards"),  # a day behind
])
def test_one_bad_row_costs_that_row_only(tmp_path, bad, reason):
    rows = _rows(100)
    path = tmp_path / "ticks.csv"
    path.write_text(HEADER + "\n".join(rows[:50] + [bad] + rows[50:]) + "\n")
    feed = ReplayFeed(path, symbol="EURUSD")
    assert feed.stats.rejects == {reason: 1}
    assert feed.stats.reject_examples[0].startswith(f"{path}:52: {reason}")
    assert feed.total == 100
    assert feed.pump(1000) == 100
    ring = feed.ring("EURUSD")
    assert ring.window(100)["time_msc"].tolist() == [1_700_000_000_000 + i for i in range(100)]


def test_several_rows_misdated_ahead_keep_the_longest_ordered_run(tmp_path):
    rows = _rows(60)
    ahead = "1800000000,1.1,1.1001,0,0,1800000000000,6,0"
    lines = rows[:10] + [ahead, ahead, ahead] + rows[10:30] + [ahead] + rows[30:]
    path = tmp_path / "ticks.csv"
    path.write_text(HEADER + "\n".join(lines) + "\n")
    feed = ReplayFeed(path, symbol="EURUSD")
    assert feed.stats.rejects == {"time_ahead": 4}
    assert feed.total == 60


def test_time_order_is_per_symbol(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("symbol,time_msc,bid,ask\n"
                    "EURUSD,1000,1.1,1.1001\n"
                    "GBPUSD,5000,1.2,1.2001\n"
                    "EURUSD,2000,1.1,1.1001\n"
                    "GBPUSD,99999999,1.2,1.2001\n"
                    "GBPUSD,6000,1.2,1.2001\n"
                    "EURUSD,3000,1.1,1.1001\n"
                    "GBPUSD,7000,1.2,1.2001\n")
    feed = ReplayFeed(path)
    assert feed.stats.rejects == {"time_ahead": 1}
    assert feed.total == 6


def test_histdata_csv_is_read_and_shifted_from_est_to_utc(tmp_path):
    path = tmp_path / "DAT_ASCII_EURUSD_T_202401.csv"
    path.write_text("20240102 170000123,1.10412,1.10420,0\n"
                    "20240102 170000123,1.10413,1.10421,0\n"
                    "20240102 170001500,1.10410,1.10419,0\n"
                    "2024-01-02 17:00:02,1.1,1.2,0\n"
                    "20240102 170003000,1.10410\n"
                    "20240102 170004000,x,1.2,0\n")
    feed = ReplayFeed(path, symbol="EURUSD")
    assert feed.stats.rejects == {"bad_timestamp": 1, "field_count": 1, "not_a_number": 1}
    assert feed.stats.reject_examples[0].startswith(f"{path}:4: bad_timestamp")
    feed.pump(10)
    t = feed.ring("EURUSD").window(3)
    utc = dt.datetime(2024, 1, 2, 22, 0, 0, 123_000, tzinfo=dt.timezone.utc)
    assert int(t["time_msc"][0]) == int(utc.timestamp() * 1000)
    assert t["time"].tolist() == (t["time_msc"] // 1000).tolist()
    assert t["bid"].tolist() == [1.10412, 1.10413, 1.10410]
    utc0 = ReplayFeed(path, symbol="EURUSD", histdata_utc_offset_hours=0)
    assert utc0._ticks["time_msc"][0] == int(utc.timestamp() * 1000) - 5 * 3_600_000


def test_tab_separated_csv_with_mt5_style_header(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("<TIME_MSC>\t<BID>\t<ASK>\n1700000000000\t1.1\t1.2\n1700000000001\t1.1\t1.3\n")
    feed = ReplayFeed(path, symbol="X")
    feed.pump(5)
    assert feed.ring("X").window(2)["ask"].tolist() == [1.2, 1.3]
    assert feed.ring("X").window(2)["time"].tolist() == [1_700_000_000] * 2


async def test_paced_replay_takes_the_recorded_time_divided_by_speed(tmp_path):
    ticks = np.zeros(11, dtype=TICK_DTYPE)
    ticks["time_msc"] = 1_700_000_000_000 + np.arange(11) * 100  # 1 s of recorded time
    ticks["time"] = ticks["time_msc"] // 1000
    ticks["bid"], ticks["ask"] = 1.1, 1.2
    path = tmp_path / "paced.csv"
    mt5_csv(path, ticks)
    feed = ReplayFeed(path, symbol="EURUSD", speed=4.0)  # 0.25 s
    started = time.perf_counter()
    await feed.start()
    await feed.wait_finished(timeout=10)
    elapsed = time.perf_counter() - started
    assert feed.ring("EURUSD").count == 11
    assert 0.2 < elapsed < 5.0
    fast = ReplayFeed(path, symbol="EURUSD")
    await fast.start()
    await fast.wait_finished(timeout=10)
    assert fast.ring("EURUSD").count == 11


def test_file_level_problems_raise_with_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        ReplayFeed(tmp_path / "nope.csv", symbol="EURUSD")
    path = tmp_path / "noheader.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="noheader.csv:1: the header .* HistData"):
        ReplayFeed(path, symbol="EURUSD")
    good = tmp_path / "good.csv"
    mt5_csv(good, sim_ticks(2))
    with pytest.raises(ValueError, match="symbol='EURUSD'"):
        ReplayFeed(good)
    with pytest.raises(ValueError, match="speed"):
        ReplayFeed(good, symbol="EURUSD", speed=0)


def test_parquet_without_pyarrow_says_how_to_fix(tmp_path, monkeypatch):
    # None in sys.modules makes `import pyarrow...` raise ImportError, installed or not
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(ImportError, match="pip install pyarrow"):
        ReplayFeed(path, symbol="EURUSD")


def test_parquet_round_trip(tmp_path):  # pyarrow comes with the test extra
    import pyarrow as pa
    import pyarrow.parquet as pq

    ticks = sim_ticks(100)
    table = pa.table({name: ticks[name] for name in TICK_DTYPE.names})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    feed = ReplayFeed(path, symbol="EURUSD")
    feed.pump(1000)
    assert feed.ring("EURUSD").window(100).tobytes() == ticks.tobytes()


def test_the_kept_rows_are_a_longest_time_ordered_run():
    """Against an O(n^2) longest non-decreasing subsequence, on random misdated rows."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from flowchain.feeds.base import FeedStats
    from flowchain.feeds.replay import _keep_in_time_order

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.integers(0, 12), max_size=30))
    def check(times):
        n = len(times)
        best = [1] * n
        for i in range(n):
            for j in range(i):
                if times[j] <= times[i]:
                    best[i] = max(best[i], best[j] + 1)
        kept = [False] * n
        stats = FeedStats()
        _keep_in_time_order(times, list(range(n)), kept, [(None, f"row {i}", None)
                                                          for i in range(n)], stats)
        chosen = [t for t, k in zip(times, kept, strict=False) if k]
        assert len(chosen) == max(best, default=0)
        assert chosen == sorted(chosen)
        assert stats.rejected == n - len(chosen)

    check()

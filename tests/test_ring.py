"""TickRing: in-place appends, mirrored zero-copy windows, cursors for batch readers."""
from __future__ import annotations

import numpy as np
import pytest
from flowchain_bridge.ticks import TICK_DTYPE

from flowchain.feeds.batches import TickBatcher
from flowchain.feeds.ring import TickRing
from flowchain.feeds.simulator import SimulatorFeed


def ticks(n: int, start: int = 0) -> np.ndarray:
    out = np.zeros(n, dtype=TICK_DTYPE)
    idx = np.arange(start, start + n)
    out["time_msc"] = 1_700_000_000_000 + idx
    out["time"] = out["time_msc"] // 1000
    out["bid"] = 1.0 + idx * 1e-5
    out["ask"] = out["bid"] + 1e-4
    out["flags"] = 0x86
    return out


def test_appends_wrap_and_window_is_the_newest_in_order():
    ring = TickRing(8, "EURUSD", 3)
    data = ticks(21)
    for i in range(21):
        index = ring.append_record(data[i:i + 1].tobytes(), seq=i + 1)
        assert index == ring.head
        assert ring.ticks[index] == data[i]
    assert (ring.count, ring.size, len(ring), ring.last_seq) == (21, 8, 8, 21)
    assert ring.window(8).tobytes() == data[13:].tobytes()
    assert ring.seq_window(8).tolist() == list(range(14, 22))
    assert ring.window(3).tobytes() == data[18:].tobytes()
    assert ring.latest_bid == data["bid"][-1] and ring.latest_ask == data["ask"][-1]


def test_window_is_a_view_and_latest_is_a_copy():
    ring = TickRing(4)
    for row in ticks(3):
        ring.append_record(row.tobytes(), 0)
    view, copy = ring.window(2), ring.latest(2)
    assert np.shares_memory(view, ring.ticks) and not np.shares_memory(copy, ring.ticks)


def test_append_from_fields_equals_append_of_the_record():
    a, b = TickRing(4), TickRing(4)
    row = ticks(1)[0]
    a.append(*row.tolist(), seq=5)
    b.append_record(row.tobytes(), seq=5)
    assert a.window(1).tobytes() == b.window(1).tobytes() and a.last_seq == 5


def test_unknown_flag_bits_pass_through():
    ring = TickRing(2)
    row = ticks(1)
    row["flags"] = 0xFFFF_FF86
    ring.append_record(row.tobytes(), 1)
    assert int(ring.window(1)["flags"][0]) == 0xFFFF_FF86


def test_extend_matches_one_by_one_appends_across_the_wrap():
    one, many = TickRing(16), TickRing(16)
    data = ticks(40)
    for i, row in enumerate(data[:7]):
        one.append_record(row.tobytes(), 100 + i)
    many.extend(data[:7], first_seq=100)
    for i, row in enumerate(data[7:], start=7):
        one.append_record(row.tobytes(), 100 + i)
    many.extend(data[7:], first_seq=107)
    assert many.window(16).tobytes() == one.window(16).tobytes()
    assert many.seq_window(16).tolist() == one.seq_window(16).tolist()
    assert many.count == one.count == 40 and many.last_seq == 139


def test_read_since_returns_new_ticks_and_counts_overruns():
    ring = TickRing(8)
    data = ticks(30)
    for i in range(5):
        ring.append_record(data[i].tobytes(), i)
    got, seqs, cursor, lost = ring.read_since(0)
    assert got.tobytes() == data[:5].tobytes() and seqs.tolist() == [0, 1, 2, 3, 4]
    assert (cursor, lost) == (5, 0)
    got, _, cursor, lost = ring.read_since(cursor)
    assert len(got) == 0 and lost == 0
    for i in range(5, 30):
        ring.append_record(data[i].tobytes(), i)
    got, seqs, cursor, lost = ring.read_since(cursor)
    assert (cursor, lost, len(got)) == (30, 17, 8)
    assert got.tobytes() == data[22:].tobytes()


def test_bad_requests_name_the_ring_and_the_limit():
    ring = TickRing(4, "GBPUSD")
    with pytest.raises(IndexError, match="GBPUSD.*holds 0"):
        ring.window(1)
    with pytest.raises(ValueError, match="cursor 3"):
        ring.read_since(3)
    with pytest.raises(ValueError, match="capacity"):
        TickRing(0)
    with pytest.raises(TypeError, match="TICK_DTYPE"):
        ring.extend(np.zeros(3))
    with pytest.raises(ValueError):
        ring.append_record(b"short", 1)
    assert ring.count == 0


def test_append_record_allocates_nothing_that_survives():
    import tracemalloc

    ring = TickRing(1024)
    rec = ticks(1).tobytes()
    for i in range(2000):  # warm up: ints and caches
        ring.append_record(rec, i)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(20_000):
        ring.append_record(rec, i)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    assert grown < 4096, f"ring appends kept {grown} bytes"


def test_batcher_drains_each_symbol_once_and_counts_overruns():
    feed = SimulatorFeed(["EURUSD", "GBPUSD"], seed=3, ring_capacity=64)
    batcher = TickBatcher(feed)
    feed.pump(50)
    first = batcher.drain()
    assert sum(len(b.ticks) for b in first) == 50 and all(b.lost == 0 for b in first)
    assert batcher.drain() == []
    feed.pump(400)
    second = batcher.drain()
    assert sum(len(b.ticks) + b.lost for b in second) == 400 and batcher.lost > 0
    for b in second:
        ring = feed.ring(b.symbol)
        assert b.ticks.tobytes() == ring.window(ring.size).tobytes()

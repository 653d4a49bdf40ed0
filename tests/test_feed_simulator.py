"""SimulatorFeed: deterministic per seed, realistic FX ticks, paced or as fast as possible."""
from __future__ import annotations

import time

import numpy as np
import pytest
from flowchain_bridge.ticks import TICK_FLAG_ASK, TICK_FLAG_BID

from flowchain.feeds.simulator import DEFAULT_SPECS, SimulatorFeed

SYMBOLS = ["EURUSD", "USDJPY", "XAUUSD"]


def test_same_seed_same_ticks_other_seed_other_ticks():
    a, b, c = (SimulatorFeed(SYMBOLS, seed=s) for s in (11, 11, 12))
    for feed in (a, b, c):
        feed.pump(5000)
    for sym in SYMBOLS:
        ra, rb, rc = a.ring(sym), b.ring(sym), c.ring(sym)
        assert ra.count == rb.count and ra.window(ra.size).tobytes() == rb.window(rb.size).tobytes()
        assert ra.window(100).tobytes() != rc.window(100).tobytes()


def test_ticks_look_like_fx():
    feed = SimulatorFeed(SYMBOLS, seed=5)
    feed.pump(60_000)
    for sym in SYMBOLS:
        ring, spec = feed.ring(sym), DEFAULT_SPECS[sym]
        t = ring.window(ring.size)
        point = 10.0 ** -spec.digits
        spread = (t["ask"] - t["bid"]) / point
        assert (spread >= 0.999).all()
        assert 0.5 * spec.spread_points < np.median(spread) < 2 * spec.spread_points
        assert np.allclose(t["bid"] / point, np.round(t["bid"] / point), atol=1e-6)
        assert abs(t["bid"][-1] / spec.mid - 1) < 0.2  # a random walk, not an explosion
        assert (np.diff(t["time_msc"]) >= 0).all() and (t["time"] == t["time_msc"] // 1000).all()
        assert ((t["flags"] & (TICK_FLAG_BID | TICK_FLAG_ASK)) != 0).all()
        assert 0.2 < np.mean((t["flags"] & 0x80) != 0) < 0.4  # unknown bits, like flags=134
        returns = np.diff(np.log((t["bid"] + t["ask"]) / 2))
        # volatility clusters: |returns| are autocorrelated
        r = np.abs(returns) - np.abs(returns).mean()
        assert np.mean(r[1:] * r[:-1]) / np.mean(r * r) > 0.02
    msc = np.concatenate([feed.ring(s).window(feed.ring(s).size)["time_msc"] for s in SYMBOLS])
    _, counts = np.unique(msc, return_counts=True)
    assert (counts > 1).sum() > 100  # same-millisecond bursts


def test_every_tick_keeps_the_quote_rules_even_at_a_tiny_price():
    from flowchain_bridge.ticks import tick_faults

    from flowchain.feeds.simulator import SymbolSpec

    # A mid of two points with a wide, volatile spread: rounding alone would quote bid 0.
    tiny = SymbolSpec(mid=2e-5, digits=5, spread_points=8.0, sigma=3e-2)
    feed = SimulatorFeed(["TINY", "EURUSD"], seed=3, specs={"TINY": tiny})
    _, ticks = feed.generate(20_000)
    assert not tick_faults(ticks).any()
    assert (ticks["bid"] > 0).all() and (ticks["bid"] < ticks["ask"]).all()


def test_weights_share_the_ticks():
    feed = SimulatorFeed(["EURUSD", "AUDUSD"], seed=1)  # weights 3 : 1
    feed.pump(20_000)
    share = feed.ring("EURUSD").count / 20_000
    assert 0.72 < share < 0.78


def test_seqs_count_every_tick_across_symbols():
    feed = SimulatorFeed(SYMBOLS, seed=2)
    seen = []
    feed.on_tick(lambda ring, i: seen.append(int(ring.seqs[i])))
    feed.pump(1000)
    assert seen == list(range(1000)) and feed.stats.received == 1000


async def test_runs_as_fast_as_possible_until_max_ticks():
    feed = SimulatorFeed(SYMBOLS, seed=3, max_ticks=20_000)
    await feed.start()
    await feed.wait_finished(timeout=30)
    assert feed.sent == 20_000 and sum(r.count for r in feed.rings.values()) == 20_000
    assert not feed.running and not feed.state.connected
    await feed.stop()


async def test_paced_rate_is_kept_roughly(eventually_async):
    feed = SimulatorFeed(SYMBOLS, seed=4, rate=2000.0)
    started = time.perf_counter()
    async with feed:
        await eventually_async(lambda: feed.sent >= 1000, timeout=10)
        elapsed = time.perf_counter() - started
    assert elapsed > 0.3  # 1000 ticks at 2000/s take 0.5 s; never all at once
    assert feed.state.connected is False


async def test_handler_errors_are_counted_not_raised():
    feed = SimulatorFeed(SYMBOLS, seed=4, max_ticks=10)
    feed.on_tick(lambda ring, i: 1 / 0)
    await feed.start()
    await feed.wait_finished(timeout=10)
    assert feed.stats.handler_errors == 10 and feed.stats.received == 10


def test_bad_parameters_name_themselves():
    with pytest.raises(ValueError, match="rate"):
        SimulatorFeed(rate=0)
    with pytest.raises(ValueError, match="burst_share"):
        SimulatorFeed(burst_share=1.5)
    with pytest.raises(ValueError, match="twice"):
        SimulatorFeed(["EURUSD", "EURUSD"])
    with pytest.raises(KeyError, match="EURUSD"):
        SimulatorFeed(["EURUSD"]).ring("GBPUSD")

"""A bridge killed (SIGKILL) and started again mid-run loses no tick: real `flowchain bridge --fake`
processes, the node's ZmqFeed on real sockets, and the fake terminal's own history as the truth.

Both bridge processes run the fake with the same seed, rate and start time, so they see one
terminal whose tick history outlives the bridge, as a real MT5 terminal's does. The feed asks
the second session for the ticks after its last one (BACKFILL_SINCE); its ring must then hold
every tick the terminal made from the first one it received to the last, once, in order.
"""
from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from flowchain_bridge.fake_mt5 import DEFAULT_SYMBOLS, FakeMetaTrader5, FakeSymbol

from flowchain.feeds.subscriber import RESTART_SEQ_BASE, ZmqFeed

SYMBOLS = ["EURUSD", "GBPUSD"]
SEED, RATE = 13, 200.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_bridge(pub: str, router: str, start_ms: int) -> subprocess.Popen:
    args = [sys.executable, "-m", "flowchain.cli", "bridge", "--fake", "--seed", str(SEED), "--rate", str(RATE),
            "--fake-start-ms", str(start_ms), "--pub", pub, "--router", router]
    for symbol in SYMBOLS:
        args += ["-s", symbol]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def terminal_history(start_ms: int) -> FakeMetaTrader5:
    """The same terminal the bridges ran on (same symbols, rate, seed and start)."""
    return FakeMetaTrader5([FakeSymbol(**{**s.__dict__, "ticks_per_second": RATE}) for s in DEFAULT_SYMBOLS],
                           seed=SEED, start_ms=start_ms)


def assert_ring_is_the_terminals_history(feed: ZmqFeed, symbol: str, truth: np.ndarray) -> None:
    ring = feed.ring(symbol)
    got = ring.window(ring.count)
    first = int(np.searchsorted(truth["time_msc"], got["time_msc"][0], side="left"))
    while truth[first].tobytes() != got[0].tobytes():
        first += 1  # several ticks can share the first one's millisecond
    expected = truth[first:first + ring.count]
    assert len(expected) == ring.count, f"{symbol}: the ring holds ticks the terminal never made"
    differ = np.flatnonzero(expected != got)
    assert not len(differ), f"{symbol}: the ring differs from the terminal from tick {differ[:1]} on"


@pytest.mark.parametrize("kill", [signal.SIGKILL])
async def test_a_bridge_killed_and_restarted_mid_run_loses_no_tick(kill, eventually_async):
    pub, router = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    start_ms = time.time_ns() // 1_000_000 - 1000
    first = start_bridge(pub, router, start_ms)
    second = None
    feed = ZmqFeed(pub, SYMBOLS, router, backfill_timeout=5.0, ring_capacity=1 << 16)
    await feed.start()
    try:
        await eventually_async(lambda: all(feed.ring(s).count > 50 for s in SYMBOLS), timeout=60,
                               message="the first bridge's ticks never arrived")
        old_session = feed.session_id
        first.send_signal(kill)
        first.wait(30)
        before = {s: feed.ring(s).count for s in SYMBOLS}
        await asyncio.sleep(1.0)  # the terminal goes on making ticks nobody streams
        second = start_bridge(pub, router, start_ms)
        await eventually_async(lambda: feed.stats.restarts == 1 and feed.backfills_pending == 0, timeout=60,
                               message="the restarted bridge was never followed")
        assert feed.session_id != old_session
        await eventually_async(lambda: all(feed.ring(s).count > before[s] + 300 for s in SYMBOLS), timeout=60)
        await feed.stop()
        terminal = terminal_history(start_ms)
        for symbol in SYMBOLS:
            assert_ring_is_the_terminals_history(feed, symbol, terminal.generated_ticks(symbol))
        stats = feed.stats
        assert stats.unrecovered == 0 and stats.unrecovered_restarts == 0, stats
        assert stats.backfilled >= 2 * 100, stats  # the hole (over a second at 200 ticks/s) came back
        assert stats.rejected == 0, stats.reject_examples
        for symbol in SYMBOLS:  # every tick keeps one identity, (time_msc, seq), the recovered too
            ring = feed.ring(symbol)
            keys = set(zip(ring.window(ring.count)["time_msc"].tolist(),
                           ring.seq_window(ring.count).tolist(), strict=True))
            assert len(keys) == ring.count
        recovered = sum(int((feed.ring(s).seq_window(feed.ring(s).count) >= RESTART_SEQ_BASE).sum())
                        for s in SYMBOLS)
        assert recovered >= 200  # the restart's hole
    finally:
        await feed.stop()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)


def test_a_node_whose_bridge_is_killed_and_restarted_stores_every_tick(tmp_path):
    """The same through `flowchain node`: every tick the terminal made from the node's first to
    its last is in its database once (stored or quarantined), and the summary counts no hole."""
    import json
    import os
    import sqlite3

    pub, router = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    start_ms = time.time_ns() // 1_000_000 - 1000
    config = tmp_path / "node.toml"
    config.write_text(f'[bridge]\norders = "{router}"\nconnect_timeout = 60\n', encoding="utf-8")
    db = tmp_path / "node.db"
    first = start_bridge(pub, router, start_ms)
    node = subprocess.Popen([sys.executable, "-m", "flowchain.cli", "node", "--config", str(config), "--feed", pub,
                             "--db", str(db), "--duration", "12", "--status-interval", "0", "--no-dashboard",
                             "--json"], cwd=tmp_path, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = None
    try:
        deadline = time.monotonic() + 60
        while not _stored(db) and time.monotonic() < deadline:  # the node trades on the first bridge
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        time.sleep(1.0)
        second = start_bridge(pub, router, start_ms)
        out, err = node.communicate(timeout=120)
    finally:
        for proc in (first, second, node):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    assert node.returncode == 0, err
    summary = json.loads(out)
    feed = summary["feed_stats"]
    assert feed["restarts"] == 1 and feed["unrecovered"] == 0 and feed["unrecovered_restarts"] == 0, feed
    assert "the bridge restarted" in err and "recovered" in err
    terminal = terminal_history(start_ms)
    conn = sqlite3.connect(db)
    try:
        total = 0
        for symbol in SYMBOLS:
            rows = conn.execute("SELECT time_msc, bid, ask FROM ticks WHERE symbol = ? UNION ALL "
                                "SELECT time_msc, bid, ask FROM quarantine WHERE symbol = ?",
                                (symbol, symbol)).fetchall()
            total += len(rows)
            truth = terminal.generated_ticks(symbol)
            got = sorted(rows)
            lo = int(np.searchsorted(truth["time_msc"], got[0][0], side="left"))
            hi = int(np.searchsorted(truth["time_msc"], got[-1][0], side="right"))
            expected = sorted(zip(truth["time_msc"][lo:hi].tolist(), truth["bid"][lo:hi].tolist(),
                                  truth["ask"][lo:hi].tolist(), strict=False))
            assert got == expected, f"{symbol}: the database is not the terminal's history"
    finally:
        conn.close()
    assert total == summary["ticks"] >= 2 * 1000


def _stored(db) -> int:
    import sqlite3

    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0

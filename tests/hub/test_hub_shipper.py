"""The node's shipper against a real hub on loopback: the outbox cursor moves only on 2xx, open
alerts are sent again until they close, a restarted shipper resumes; [hub] is validated."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
from hub_running import node_config

from flowchain.config import ConfigError, load_config
from flowchain.histograms import LatencyHistogram
from flowchain.hub.app import build_app, serve
from flowchain.hub.auth import NodeTokens, add_token, token_hash
from flowchain.hub.shipper import HubShipper, read_token
from flowchain.hub.store import open_store
from flowchain.node import NodeStartError, TradingNode
from flowchain.observe.history import open_history


class HubThread:
    """A hub serving on a loop of its own thread (so blocking shippers can call it)."""

    def __init__(self, tmp: Path) -> None:
        self.tokens = tmp / "tokens"
        self.tokens.touch()
        self.store = open_store(tmp / "hub.db")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        app = build_app(self.store, NodeTokens(self.tokens))
        self.running = asyncio.run_coroutine_threadsafe(serve(app, "127.0.0.1", 0),
                                                        self.loop).result(30)
        self.url = self.running.url

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.running.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.store.close()


@pytest.fixture
def hub(tmp_path: Path):
    running = HubThread(tmp_path)
    yield running
    running.close()


def node_db(path: Path, intervals: int) -> Path:
    """A node database holding ``intervals`` interval rows and one open escalation."""
    conn = open_history(path)
    hist = LatencyHistogram.from_values([1000, 2000, 3000]).encode()
    now = time.time_ns()
    conn.executemany(
        "INSERT INTO latency_intervals (run_id, start_ns, end_ns, chain, chain_id, step, "
        "step_index, tenant, count, errors, expected_ns, histogram) VALUES "
        "('r', ?, ?, 'c', 'c@1', '', -1, 'default', 3, 0, NULL, ?)",
        [(now + i, now + i + 1, hist) for i in range(intervals)])
    conn.execute("INSERT INTO alert_events (run_id, kind, chain, chain_id, step, tenant, "
                 "start_ns, end_ns, alerts, message, fields) VALUES ('r', 'escalation', 'c', "
                 "'c@1', 's', 'default', ?, NULL, 1, 'escalated', '{}')", (now,))
    conn.close()
    return path


def test_the_cursor_moves_only_when_the_hub_takes_the_rows(hub: HubThread,
                                                          tmp_path: Path) -> None:
    db = node_db(tmp_path / "node.db", 120)
    token = "t" * 43  # not in the hub's tokens file yet: every post is refused with 401
    shipper = HubShipper(hub.url, token, db, "n1", interval_s=0.05, batch_rows=50)
    try:
        assert shipper.ship_once() == 0
        assert shipper.state == "retrying" and "401" in shipper.last_error
        assert shipper.cursors()["intervals"] == 0
        assert hub.store.interval_totals() == []
        # the hub learns the token (its file is re-read): the backlog goes in batches of 50
        hub.tokens.write_text(f"n1 {token_hash(token)}\n")
        assert shipper.ship_once() == 121
        assert shipper.state == "ok" and shipper.counters["posts"] == 3
        assert shipper.cursors()["intervals"] == 120
        assert sum(t.count for t in hub.store.interval_totals()) == 360
        assert shipper.ship_once() == 0  # nothing new: a heartbeat
        assert shipper.status()["shipped"]["intervals"] == 120
    finally:
        shipper.close(final_attempt=False)
    # a new shipper on the same database resumes after the cursor: nothing is sent twice
    again = HubShipper(hub.url, token, db, "n1", interval_s=0.05, batch_rows=50)
    try:
        assert again.ship_once() == 0
        assert again.counters["shipped_intervals"] == 0
    finally:
        again.close(final_attempt=False)


def test_an_open_escalation_is_sent_again_until_it_closes(hub: HubThread,
                                                          tmp_path: Path) -> None:
    token = add_token(hub.tokens, "n1")
    db = node_db(tmp_path / "node.db", 1)
    shipper = HubShipper(hub.url, token, db, "n1", interval_s=0.05)
    try:
        shipper.ship_once()
        (alert,) = hub.store.alerts()
        assert alert.end_ns is None and alert.alerts == 1
        conn = open_history(db)
        conn.execute("UPDATE alert_events SET alerts = 3, end_ns = start_ns + 5")
        conn.close()
        shipper.ship_once()
        (alert,) = hub.store.alerts()
        assert alert.alerts == 3 and alert.end_ns == alert.start_ns + 5
        posts = shipper.counters["shipped_alerts"]
        shipper.ship_once()  # closed on the hub: not sent any more
        assert shipper.counters["shipped_alerts"] == posts
    finally:
        shipper.close(final_attempt=False)


def test_a_hub_that_is_not_there_is_retried_with_back_off_and_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = node_db(tmp_path / "node.db", 3)
    shipper = HubShipper(f"http://127.0.0.1:{port}", "x" * 43, db, "n1", interval_s=0.01,
                         max_backoff_s=0.04)
    with caplog.at_level("WARNING", logger="flowchain.hub.shipper"):
        shipper.start()
        deadline = time.monotonic() + 20
        while shipper.counters["failures"] < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        shipper.close(final_attempt=False)
    assert shipper.counters["failures"] >= 4 and shipper.state == "retrying"
    assert len([r for r in caplog.records if "does not take" in r.getMessage()]) == 1
    conn = open_history(db)
    assert conn.execute("SELECT COUNT(*) FROM hub_outbox").fetchone()[0] == 0
    conn.close()


@pytest.mark.parametrize("hub_table, named", [
    ({"url": "ftp://hub"}, "http:// or https://"),
    ({"url": "http://127.0.0.1:8760"}, "needs token_file"),
    ({"url": "http://10.1.2.3:8760", "token_file": "t"}, "allow_insecure"),
    ({"url": "https://hub.example:8760", "token_file": "t", "batch_rows": 0}, "batch_rows"),
    ({"interval_s": 0}, "interval_s"),
    ({"urls": "x"}, "unknown key 'hub.urls'"),
])
def test_hub_section_is_validated(tmp_path: Path, hub_table: dict, named: str) -> None:
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in hub_table.items())
    path = tmp_path / "node.toml"
    path.write_text(f"[hub]\n{lines}\n")
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        load_config(path)


def test_the_flags_set_the_hub_section(tmp_path: Path) -> None:
    config = load_config(None, {"hub": "https://hub.example:8760", "hub_token_file": "tok"})
    assert config.hub.url == "https://hub.example:8760" and config.hub.token_file == "tok"


async def test_a_missing_token_file_is_a_start_error_naming_it(tmp_path: Path) -> None:
    config = load_config(node_config(tmp_path, "n1", "http://127.0.0.1:9", tmp_path / "absent"))
    with pytest.raises(NodeStartError, match="absent"):
        await TradingNode(config).run(install_signals=False)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="holds no token"):
        read_token(tmp_path / "empty")


def test_a_row_the_hub_refuses_is_passed_over_and_the_rest_ships(hub: HubThread,
                                                                 tmp_path: Path) -> None:
    from flowchain.hub.rows import TEXT_MAX

    token = add_token(hub.tokens, "n1")
    db = node_db(tmp_path / "node.db", 2)
    conn = open_history(db)
    for i, record in enumerate(("{}", "x" * (TEXT_MAX + 1), "{}")):
        conn.execute("INSERT INTO execution_records (run_id, execution_id, chain, chain_id, "
                     "tenant, status, sampled, start_epoch_ns, duration_ns, failed_step, "
                     "record) VALUES ('r', ?, 'c', 'c@1', 'default', 'failed', 0, 1, 5, 's', ?)",
                     (f"e{i}", record))
    conn.close()
    shipper = HubShipper(hub.url, token, db, "n1", interval_s=0.05)
    try:
        shipper.ship_once()
        assert shipper.state == "ok"
        assert shipper.status()["refused"] == {"executions": 1}
        assert sorted(e.execution_id for e in hub.store.executions()) == ["e0", "e2"]
        assert sum(t.count for t in hub.store.interval_totals()) == 6
        assert shipper.cursors()["executions"] == 3
    finally:
        shipper.close(final_attempt=False)


def test_shipping_without_a_history_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[history]\nenabled = false\n[hub]\nurl = "http://127.0.0.1:1"\n'
                    'token_file = "t"\n')
    with pytest.raises(ConfigError, match=r"key 'hub'.*\[history\] enabled = false"):
        load_config(path)


def test_the_node_runs_its_shipper_in_a_process_of_its_own(hub: HubThread,
                                                           tmp_path: Path) -> None:
    import os
    import signal

    from flowchain.hub.shipper_process import ShipperProcess

    token_file = tmp_path / "n1.token"
    token_file.write_text(add_token(hub.tokens, "n1") + "\n")
    db = node_db(tmp_path / "node.db", 7)
    child = ShipperProcess(hub.url, token_file, db, "n1", interval_s=0.05).start()
    try:
        assert child.status()["state"] in ("starting", "ok")
        deadline = time.monotonic() + 60
        while child.status()["shipped"]["intervals"] < 7 and time.monotonic() < deadline:
            time.sleep(0.02)
        status = child.status()
        assert status["state"] == "ok" and status["pid"] != os.getpid()
        assert sum(t.count for t in hub.store.interval_totals()) == 21
        os.kill(status["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while child.status()["state"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "exited with code" in child.status()["last_error"]
    finally:
        child.close()
    with pytest.raises(ValueError, match="absent"):
        ShipperProcess(hub.url, tmp_path / "absent", db, "n1")

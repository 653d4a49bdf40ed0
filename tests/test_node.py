"""The trading node end to end: real processes, real SQLite, real signals, real sockets."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from flowchain.config import load_config
from flowchain.feeds.simulator import SimulatorFeed
from flowchain.node import NodeStartError, TradingNode
from flowchain.store import open_database

LAUNCH = "import flowchain.cli.node; from flowchain.cli import main; main()"
"""Run ``flowchain`` with the node command registered (whether or not cli/__init__ imports it)."""


def start_node(*args: str, cwd: Path) -> subprocess.Popen:
    """Start ``flowchain node`` (its dashboard on a free port unless ``args`` name one)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if not any(a.startswith("--dashboard") or a == "--no-dashboard" for a in args):
        args = ("--dashboard", "127.0.0.1:0", *args)
    return subprocess.Popen([sys.executable, "-c", LAUNCH, "node", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the node did not exit within {timeout}s; stderr:\n{err}") from None
    return proc.returncode, out, err


def collect_stderr(proc: subprocess.Popen) -> tuple[list[str], threading.Thread]:
    """Read the node's stderr lines (status lines, warnings) in a thread while it runs."""
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")),
                              daemon=True)
    reader.start()
    return lines, reader


def sigterm(proc: subprocess.Popen) -> None:
    """Ask a node that is still running to stop, as a service manager would."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)


def stdout_after_sigterm(proc: subprocess.Popen, reader: threading.Thread,
                         lines: list[str]) -> str:
    """Wait (60 s at most) for the node to exit after SIGTERM; return its stdout.

    Fails when it does not exit in time or exits with a code other than 0 (showing stderr).
    """
    try:
        proc.wait(timeout=60)  # the JSON summary (a few KiB) fits the pipe's buffer
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the node did not exit within 60 s of SIGTERM") from None
    assert proc.stdout is not None
    out = proc.stdout.read()
    reader.join(timeout=10)
    assert proc.returncode == 0, "".join(lines)
    return out


def count(db: Path, sql: str) -> int:
    """Read from the test process: a second process beside the node."""
    if not db.exists():
        return 0
    try:
        conn = open_database(db, readonly=True)
    except Exception:
        return 0
    try:
        return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # the node has not created that table yet
        return 0
    finally:
        conn.close()


def test_node_trades_and_another_process_reads_while_it_runs_then_sigterm_flushes(
        tmp_path: Path, eventually) -> None:
    db = tmp_path / "node.db"
    proc = start_node("--db", str(db), "--duration", "120", "--status-interval", "0.2", "--json",
                      cwd=tmp_path)
    status_lines, reader = collect_stderr(proc)
    try:
        eventually(lambda: any("ticks/s=" in line for line in status_lines), timeout=60,
                   message="a periodic status line on stderr")
        eventually(lambda: count(db, "SELECT COUNT(*) FROM orders WHERE state = 'filled'") >= 3,
                   timeout=60, message="filled orders in the journal while the node runs")
        seen = eventually(lambda: count(db, "SELECT COUNT(*) FROM ticks"), timeout=30,
                          message="ticks stored while the node runs")
        eventually(lambda: count(db, "SELECT COUNT(*) FROM ticks") > seen, timeout=30,
                   message="the tick table growing while the node runs")
        assert count(db, "SELECT COUNT(*) FROM bars") > 0
        assert proc.poll() is None, "the node exited on its own before SIGTERM"
    finally:
        sigterm(proc)
    summary = json.loads(stdout_after_sigterm(proc, reader, status_lines))
    assert summary["stopped_by"] == "SIGTERM"
    assert summary["orders"] >= 3 and summary["results"]["filled"] >= 3
    assert summary["decisions"] == summary["ticks"] > 0
    assert summary["chains"]["AI_Decision_Chain"]["executions"] == summary["ticks"]
    # drained and flushed: every tick the feed delivered is in the database, stored or quarantined
    stored = count(db, "SELECT COUNT(*) FROM ticks") + count(db, "SELECT COUNT(*) FROM quarantine")
    assert stored == summary["ticks"]
    assert summary["batch_ticks_lost"] == 0
    assert count(db, "SELECT COUNT(*) FROM orders") == summary["orders"]
    assert count(db, "SELECT COUNT(*) FROM orders WHERE state IN ('sending', 'unknown')") == 0
    line = next(line for line in status_lines if "ticks/s=" in line)
    for part in ("decisions=", "orders=", "positions=", "decision p50=", "store p50="):
        assert part in line


def test_bad_config_is_a_clear_message_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[risk]\nmax_orders_per_second = "many"\n', encoding="utf-8")
    code, out, err = finish(start_node("--config", str(config), cwd=tmp_path))
    assert code == 2
    assert "bad.toml" in err and "risk.max_orders_per_second" in err
    assert not (tmp_path / "flowchain.db").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_bridge_is_a_clear_message_and_exit_3(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text("[bridge]\nconnect_timeout = 0.5\n", encoding="utf-8")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    code, out, err = finish(start_node("--config", str(config), "--feed", endpoint,
                                       "--db", str(tmp_path / "b.db"), cwd=tmp_path))
    assert code == 3
    assert "unreachable" in err and endpoint in err


def write_replay(path: Path, n: int) -> np.ndarray:
    feed = SimulatorFeed(("EURUSD",), seed=11)
    _, ticks = feed.generate(n)
    with open(path, "w", encoding="ascii") as fh:
        fh.write("time,bid,ask,last,volume,time_msc,flags,volume_real\n")
        for t in ticks:
            fh.write(f"{t['time']},{float(t['bid'])!r},{float(t['ask'])!r},0,0,{t['time_msc']},{t['flags']},0\n")
    return ticks


async def test_replay_feed_runs_to_its_end_and_stores_every_tick(tmp_path: Path) -> None:
    replay = tmp_path / "ticks.csv"
    ticks = write_replay(replay, 3000)
    db = tmp_path / "replay.db"
    config = load_config(None, {"feed": f"replay:{replay}", "db": str(db), "duration": 60,
                                "symbols": ["EURUSD"], "status_interval": 0,
                                "dashboard_enabled": False})
    node = TradingNode(config)
    summary = await node.run(install_signals=False)
    assert summary["stopped_by"] == "feed finished"
    assert summary["ticks"] == summary["decisions"] == len(ticks)
    stored = count(db, "SELECT COUNT(*) FROM ticks") + count(db, "SELECT COUNT(*) FROM quarantine")
    assert stored == len(ticks)
    assert summary["rows"]["ticks"] == count(db, "SELECT COUNT(*) FROM ticks")
    # the first decision pays no compilation: it is far below a numba compile (~0.1-1 s)
    assert 0 < summary["first_decision_ns"] < 50_000_000
    steps = summary["chains"]["AI_Decision_Chain"]["steps"]
    assert list(steps) == ["feature_extraction", "multi_agent_analysis", "consensus_generation",
                           "trading_execution"]


@pytest.mark.parametrize("batch_interval", [0.001, 0.05])
async def test_exit_summary_counts_every_stored_row_of_a_replay(tmp_path: Path,
                                                                batch_interval: float) -> None:
    """A store still running when the replay ends (and the batch loop is cancelled) is counted."""
    replay = tmp_path / "ticks.csv"
    ticks = write_replay(replay, 20_000)
    db = tmp_path / "replay.db"
    toml = tmp_path / "node.toml"
    toml.write_text(f"[node]\nbatch_interval = {batch_interval}\n", encoding="utf-8")
    config = load_config(toml, {"feed": f"replay:{replay}", "db": str(db), "duration": 120,
                                "symbols": ["EURUSD"], "status_interval": 0,
                                "dashboard_enabled": False})
    summary = await TradingNode(config).run(install_signals=False)
    assert summary["stopped_by"] == "feed finished"
    for table in ("ticks", "quarantine"):
        assert summary["rows"].get(table, 0) == count(db, f"SELECT COUNT(*) FROM {table}"), table
    assert summary["rows"]["ticks"] + summary["rows"].get("quarantine", 0) == len(ticks)
    store = summary["chains"]["MT5_To_Database_Chain"]
    assert summary["batches"] == store["executions"] - store["failures"]


async def test_request_stop_drains_in_process(tmp_path: Path, eventually_async) -> None:
    config = load_config(None, {"db": str(tmp_path / "stop.db"), "duration": 60,
                                "status_interval": 0, "dashboard": "127.0.0.1:0"})
    node = TradingNode(config)
    import asyncio

    task = asyncio.ensure_future(node.run(install_signals=False))
    await eventually_async(lambda: node.counters.decisions > 500, timeout=30)
    node.request_stop("test")
    summary = await asyncio.wait_for(task, 30)
    assert summary["stopped_by"] == "test"
    assert summary["batches"] > 0
    stored = sum(count(tmp_path / "stop.db", f"SELECT COUNT(*) FROM {t}")
                 for t in ("ticks", "quarantine"))
    assert stored == summary["ticks"]


async def test_missing_replay_file_is_a_start_error(tmp_path: Path) -> None:
    config = load_config(None, {"feed": f"replay:{tmp_path / 'absent.csv'}",
                                "db": str(tmp_path / "x.db"), "dashboard": "127.0.0.1:0"})
    with pytest.raises(NodeStartError, match="absent.csv"):
        await TradingNode(config).run(install_signals=False)


async def test_unusable_database_is_a_start_error(tmp_path: Path) -> None:
    config = load_config(None, {"db": str(tmp_path / "no" / "such" / "dir" / "x.db"),
                                "dashboard": "127.0.0.1:0"})
    with pytest.raises(NodeStartError, match="does not exist"):
        await TradingNode(config).run(install_signals=False)


def test_node_on_the_bridge_feed_and_broker_with_the_fake_terminal(tmp_path: Path) -> None:
    pub, router = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    bridge = subprocess.Popen([sys.executable, "-m", "flowchain.cli", "bridge", "--fake",
                               "--pub", pub, "--router", router], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        config = tmp_path / "bridge.toml"
        config.write_text(f'[bridge]\norders = "{router}"\nconnect_timeout = 30\n',
                          encoding="utf-8")
        db = tmp_path / "bridge.db"
        code, out, err = finish(start_node("--config", str(config), "--feed", pub, "--db",
                                           str(db), "--broker", "bridge", "--duration", "4",
                                           "--node-id", "desk_7",
                                           "--status-interval", "0", "--json", cwd=tmp_path))
    finally:
        bridge.terminate()
        bridge.communicate(timeout=30)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["stopped_by"] == "duration"
    assert summary["ticks"] > 0 and summary["decisions"] == summary["ticks"]
    assert summary["feed_stats"]["heartbeats"] > 0
    stored = count(db, "SELECT COUNT(*) FROM ticks") + count(db, "SELECT COUNT(*) FROM quarantine")
    assert stored == summary["ticks"]
    # orders went to the fake terminal through the bridge and came back journaled
    assert count(db, "SELECT COUNT(*) FROM orders") > 0
    assert count(db, "SELECT COUNT(*) FROM orders WHERE state NOT IN "
                     "('filled', 'rejected', 'not_sent')") == 0
    # the summary and the journal agree: no order reported pending that the journal settled
    trading = summary["trading"]
    assert trading["node_id"] == "desk_7" and trading["in_flight"] == {}
    assert trading["journal"].get("filled", 0) == count(db, "SELECT COUNT(*) FROM orders WHERE "
                                                            "state = 'filled'")
    assert summary["results"].get("pending", 0) == 0
    assert count(db, "SELECT COUNT(*) FROM orders WHERE client_order_id NOT LIKE 'desk_7-%'") == 0


def test_unreachable_bridge_broker_is_a_clear_message_and_exit_3(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config.write_text(f'[bridge]\norders = "{endpoint}"\nconnect_timeout = 0.5\n',
                      encoding="utf-8")
    feed = f"tcp://127.0.0.1:{free_port()}"
    code, out, err = finish(start_node("--config", str(config), "--broker", "bridge",
                                       "--feed", feed, "--db", str(tmp_path / "b.db"),
                                       cwd=tmp_path))
    assert code == 3
    assert "did not answer" in err and endpoint in err


STATUS = "import flowchain.cli.status; from flowchain.cli import main; main()"
"""Run ``flowchain status`` (whether or not cli/__init__ imports it)."""


def slow_feature_chains(tmp_path: Path) -> Path:
    """The bundled chains with feature_extraction expected to take 1 ns: every tick is slow."""
    from flowchain.chains import TRADING_NODE_YAML

    text = TRADING_NODE_YAML.read_text(encoding="utf-8")
    marker = 'name: "feature_extraction"'
    head, tail = text.split(marker, 1)
    before, sep, after = tail.partition("expected_duration:")
    value, newline, rest = after.partition("\n")
    path = tmp_path / "slow_features.yaml"
    path.write_text(head + marker + before + sep + " 0.000001" + newline + rest,
                    encoding="utf-8")
    return path


def scrape(url: str) -> dict[str, list]:
    """GET ``url/metrics`` and parse it with prometheus_client's parser: {family: samples}."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def sample(families: dict[str, list], name: str, **labels: str) -> float:
    """The value of the sample ``name`` whose labels include ``labels`` (0 when absent)."""
    family = name.removesuffix("_total").removesuffix("_count").removesuffix("_bucket")
    for s in families.get(family, []):
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return 0.0


def test_running_node_serves_metrics_status_and_history(tmp_path: Path, eventually) -> None:
    from flowchain.observe.history import HistoryReader

    db = tmp_path / "observed.db"
    url_file = tmp_path / "dashboard.url"
    config = tmp_path / "observed.toml"
    config.write_text(f'[node]\nchains = "{slow_feature_chains(tmp_path)}"\n'
                      "[history]\ninterval_s = 0.5\nprofile_rate = 0.1\n"
                      "record_inputs = true\n[monitor]\ninterval_s = 0.1\n",
                      encoding="utf-8")
    proc = start_node("--config", str(config), "--db", str(db), "--duration", "120",
                      "--status-interval", "0.3", "--dashboard", "127.0.0.1:0",
                      "--dashboard-url-file", str(url_file), "--json", cwd=tmp_path)
    lines, reader = collect_stderr(proc)
    try:
        url = eventually(lambda: proc.poll() is None and url_file.exists()
                         and url_file.read_text().strip(), timeout=60,
                         message="the node writing its dashboard URL")
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        assert proc.poll() is None, "".join(lines)

        # (1) /metrics, parsed: both chains' histograms, the feed and the order counters
        def metrics_ready() -> dict:
            m = scrape(url)
            ready = all(sample(m, "flowchain_chain_execution_seconds_count", chain=c) > 0
                        for c in ("AI_Decision_Chain", "MT5_To_Database_Chain"))
            return m if ready and sample(m, "flowchain_orders_total", status="filled") > 0 \
                else {}
        families = eventually(metrics_ready, timeout=60, message="both chains and a filled "
                              "order in /metrics")
        assert sample(families, "flowchain_feed_ticks_received_total", feed="feed") > 0
        assert sample(families, "flowchain_feed_connected", feed="feed") == 1
        assert sample(families, "flowchain_step_execution_seconds_count",
                      chain="AI_Decision_Chain", step="trading_execution") > 0
        assert sample(families, "flowchain_chain_success_ratio", chain="AI_Decision_Chain") == 1
        decisions = sample(families, "flowchain_chains_executed_total", chain="AI_Decision_Chain")
        eventually(lambda: sample(scrape(url), "flowchain_chains_executed_total",
                                  chain="AI_Decision_Chain") > decisions, timeout=30,
                   message="the decision count growing between scrapes")

        # (2) `flowchain status` against the running node: live figures and the slow warning
        env = dict(os.environ, COLUMNS="250")
        shown = subprocess.run([sys.executable, "-c", STATUS, "status", "--url", url],
                               capture_output=True, text=True, timeout=60, env=env)
        assert shown.returncode == 0, shown.stderr
        for text in ("AI_Decision_Chain", "MT5_To_Database_Chain", "feature_extraction (slow)",
                     "connected", "slow_step"):
            assert text in shown.stdout, f"{text!r} not in:\n{shown.stdout}"
        as_json = subprocess.run([sys.executable, "-c", STATUS, "status", "--url", url,
                                  "--json"], capture_output=True, text=True, timeout=60)
        snap = json.loads(as_json.stdout)
        chains = {c["chain"]: c for c in snap["chains"]}
        assert chains["AI_Decision_Chain"]["executions"] > decisions
        assert snap["feeds"]["feed"]["received"] > 0
        assert any(e["kind"] == "slow_step" and e["step"] == "feature_extraction"
                   for e in snap["events"])

        # (3) the history table gains interval rows that this (second) process reads
        whole_chain = ("SELECT COUNT(*) FROM latency_intervals "
                       "WHERE chain = 'AI_Decision_Chain' AND step = ''")
        eventually(lambda: count(db, whole_chain) >= 2, timeout=30,
                   message="two decision-chain interval rows in the history table")
        with HistoryReader(db) as history:
            assert history.histogram("AI_Decision_Chain").count > 0
            steps = [s.step for s in history.steps("MT5_To_Database_Chain")]
            assert "database_storage" in steps
        eventually(lambda: any(re.search(r" warnings=[1-9]", line) for line in lines),
                   timeout=30,
                   message="the status line counting the slow-step warning")
    finally:
        sigterm(proc)
    summary = json.loads(stdout_after_sigterm(proc, reader, lines))
    assert summary["dashboard"] == url
    assert summary["alerts"]["slow_step"] >= 1 and summary["alerts"]["escalation"] == 0
    assert summary["history"]["intervals"] >= 2 and summary["history"]["flush_errors"] == 0
    # 1 execution in 10 was profiled per step, and stored with the rest of history
    profiled = ("SELECT COUNT(*) FROM step_profiles WHERE chain = 'AI_Decision_Chain' "
                "AND step = 'feature_extraction'")
    assert 0 < count(db, profiled) and summary["history"]["profiles"] > 0
    # and recorded the profiled successes' chain inputs (record_inputs), decodable for replay
    from flowchain.optimizer.recorded_inputs import load_inputs
    from flowchain.trading.context import DecisionContext

    sampled = load_inputs(db, "AI_Decision_Chain", status="sampled")
    assert sampled and all(isinstance(r.value, DecisionContext) and r.step_index == 0
                           for r in sampled)
    # it profiled: the exit summary carries the optimizer's findings (one line a bottleneck)
    assert all(isinstance(line, str) and line for line in summary["optimizer"])
    assert summary["monitor"]["poll_errors"] == 0
    assert any("WARNING slow_step AI_Decision_Chain/feature_extraction" in line
               for line in lines), "".join(lines)
    # drained: the last interval was written after the last tick, and the dashboard is closed
    with HistoryReader(db) as history:
        assert history.histogram("AI_Decision_Chain").count == summary["decisions"]
    with pytest.raises(OSError):
        scrape(url)


def test_dashboard_address_in_use_is_a_clear_message_and_exit_3(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = finish(start_node("--dashboard", f"127.0.0.1:{port}", "--db",
                                           str(tmp_path / "busy.db"), "--duration", "30",
                                           cwd=tmp_path))
    assert code == 3
    message = " ".join(err.split())  # rich wraps the message at the terminal's width
    assert f"127.0.0.1:{port}" in message and "--no-dashboard" in message


def test_non_loopback_dashboard_is_refused_with_exit_2(tmp_path: Path) -> None:
    code, out, err = finish(start_node("--dashboard", "0.0.0.0:0", "--db",
                                       str(tmp_path / "open.db"), cwd=tmp_path))
    assert code == 2
    message = " ".join(err.split())  # rich wraps the message at the terminal's width
    assert "'dashboard.host'" in message and "not loopback" in message
    assert "--dashboard-allow-remote" in message
    assert not (tmp_path / "open.db").exists()


class WebhookReceiver:
    """A real HTTP server on loopback collecting the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_otlp_exporter(monkeypatch: pytest.MonkeyPatch) -> list:
    """Stand in for the OTLP/HTTP exporter package: the SDK's in-memory exporter under its
    module name, so the node's own wiring (config check, provider, batch processor) runs."""
    import importlib.machinery
    import types

    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from flowchain.config import OTLP_EXPORTER_MODULE

    built: list = []

    class OTLPSpanExporter(InMemorySpanExporter):
        def __init__(self, endpoint: str) -> None:
            super().__init__()
            self.endpoint = endpoint
            built.append(self)

    module = types.ModuleType(OTLP_EXPORTER_MODULE)
    module.__spec__ = importlib.machinery.ModuleSpec(OTLP_EXPORTER_MODULE, None)
    module.OTLPSpanExporter = OTLPSpanExporter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, OTLP_EXPORTER_MODULE, module)
    return built


async def test_events_reach_the_webhook_and_executions_the_trace_exporter(
        tmp_path: Path, eventually_async, fake_otlp_exporter: list) -> None:
    import asyncio

    hook = WebhookReceiver()
    config_file = tmp_path / "hooks.toml"
    config_file.write_text(
        f'[node]\nchains = "{slow_feature_chains(tmp_path)}"\n'
        f'[alerts]\nwebhook = "{hook.url}"\n[monitor]\ninterval_s = 0.05\n'
        '[otel]\nendpoint = "http://127.0.0.1:4318/v1/traces"\nsample_rate = 0.01\n',
        encoding="utf-8")
    config = load_config(config_file, {"db": str(tmp_path / "hooks.db"), "duration": 60,
                                       "status_interval": 0, "dashboard_enabled": False})
    node = TradingNode(config)
    task = asyncio.ensure_future(node.run(install_signals=False))
    try:
        await eventually_async(lambda: task.done() or hook.received, timeout=30,
                               message="a webhook POST")
        await eventually_async(lambda: task.done() or node.counters.decisions > 300, timeout=30)
        node.request_stop("test")
        summary = await asyncio.wait_for(task, 30)
    finally:
        node.request_stop("test")
        hook.close()
    event = hook.received[0]
    assert (event["kind"], event["chain"], event["step"]) == \
        ("slow_step", "AI_Decision_Chain", "feature_extraction")
    assert event["observed_ns"] > event["expected_ns"] == 1
    assert summary["webhook"]["sent"] == len(hook.received) >= 1
    assert summary["alerts"]["slow_step"] >= 1 and summary["dashboard"] == ""
    [exporter] = fake_otlp_exporter
    assert exporter.endpoint == "http://127.0.0.1:4318/v1/traces"
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.parent is None]
    assert roots and summary["traces"]["traces"] == len(roots)
    assert {s.name for s in spans} >= {"chain AI_Decision_Chain", "step feature_extraction"}


def test_every_event_kind_is_one_readable_line_on_the_node_terminal() -> None:
    import io
    import logging

    from flowchain.cli.node import NodeLogFormatter
    from flowchain.observe.alerts import ESCALATION, RECOVERY, SLOW_STEP, AlertEvent, LogSink

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(NodeLogFormatter("%(message)s"))
    logger = logging.getLogger("test_node.alerts")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    sink = LogSink(logger)
    try:
        for kind, message in ((SLOW_STEP, "took 2 ms"), (ESCALATION, "failed 9 of 40"),
                              (RECOVERY, "recovered")):
            sink.emit(AlertEvent(kind, "AI_Decision_Chain", "AI@1", "trading_execution",
                                 message, 0, {"error_rate": 0.2}))
        logger.error("journal %s", "closed")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == [
        "[node] WARNING slow_step AI_Decision_Chain/trading_execution: took 2 ms",
        "[node] CRITICAL escalation AI_Decision_Chain/trading_execution: failed 9 of 40",
        "[node] INFO recovery AI_Decision_Chain/trading_execution: recovered",
        "[node] ERROR test_node.alerts: journal closed",
    ]


def test_a_refused_terminal_login_reaches_the_node_which_says_so_and_exits_4(tmp_path: Path,
                                                                              eventually) -> None:
    pub, router = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    login = tmp_path / "login.json"
    login.write_text(json.dumps({"login": 42, "password": "wrong", "connect_attempts": 0}))
    bridge = subprocess.Popen([sys.executable, "-m", "flowchain.cli", "bridge", "--fake", "--pub", pub,
                               "--router", router, "--config", str(login)], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url_file = tmp_path / "url"
    try:
        config = tmp_path / "bridge.toml"
        config.write_text(f'[bridge]\norders = "{router}"\nconnect_timeout = 30\n', encoding="utf-8")
        proc = start_node("--config", str(config), "--feed", pub, "--db", str(tmp_path / "n.db"),
                          "--broker", "bridge", "--duration", "6", "--status-interval", "0.5", "--json",
                          "--dashboard", "127.0.0.1:0", "--dashboard-url-file", str(url_file), cwd=tmp_path)
        lines, reader = collect_stderr(proc)
        eventually(lambda: url_file.exists() and url_file.read_text().strip(), timeout=60)
        status = eventually(lambda: _feed_status(url_file.read_text().strip()), timeout=30,
                            message="/api/status never showed the refused login")
        assert status["stale"] and not status["orders_allowed"] and status["terminal_error"] == -6
        proc.wait(60)
        reader.join(10)
        out = proc.stdout.read()
    finally:
        bridge.terminate()
        bridge.communicate(timeout=30)
    err = "".join(lines)
    assert proc.returncode == 4, err
    assert "MT5 terminal refusing the login (check login, password, server) (MT5 error -6)" in err
    assert err.count("MT5 terminal refusing the login") == 1  # a state change is logged once
    assert "feed=STALE (terminal login_failed: orders blocked)" in err  # in every status line
    assert "feed=STALE (terminal login_failed: orders blocked)" in err
    assert "never received a tick" in err
    summary = json.loads(out)
    assert summary["ticks"] == 0 and summary["feed_state"]["terminal"] == "login_failed"


def _feed_status(url: str) -> dict | None:
    import urllib.request

    with urllib.request.urlopen(url + "/api/status", timeout=10) as response:
        feed = json.loads(response.read())["feeds"]["feed"]
    return feed if feed["terminal"] == "login_failed" else None

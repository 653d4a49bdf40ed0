"""A node whose decision step fails on every tick: it keeps its tick rate and says so loudly.

The node runs in process (its own loop in a thread, the real simulator feed, paper broker,
SQLite, dashboard and webhook over loopback); the only thing added is a switch that makes the
consensus step raise on every tick while it is on. While it is on, the escalation must show on
the node's terminal (status line and alert log line), in ``/metrics`` (parsed with
prometheus_client's parser), on the dashboard (a banner, in headless Chromium when present) and
at the webhook (repeated); once it is off, a recovery everywhere, and the history keeps both
with their span.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
from pathlib import Path

import pytest
from chromium import CHROMIUM, DevTools
from foreign_env import SANITIZED
from test_node import WebhookReceiver, sample, scrape

import flowchain.node as node_module
from flowchain.config import load_config
from flowchain.node import TradingNode

CHAIN = "AI_Decision_Chain"
STEP = "consensus_generation"


class FailWhileOn:
    """Wrap a component: raise on every call while ``switch`` is set, else pass through."""

    def __init__(self, inner, switch: threading.Event) -> None:
        self.inner = inner
        self.switch = switch

    def __call__(self, ctx):
        if self.switch.is_set():
            raise RuntimeError("consensus switched off by the test")
        return self.inner(ctx)


class LockedText(io.TextIOBase):
    """The node's terminal: lines written from several threads, read by the test."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._lines.extend(line for line in text.splitlines() if line)
        return len(text)

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)


class NodeThread:
    """Run a TradingNode on a loop of its own in a thread; stop it from the test thread."""

    def __init__(self, node: TradingNode) -> None:
        self.node = node
        self.loop = asyncio.new_event_loop()
        self.summary: dict = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        try:
            self.summary = self.loop.run_until_complete(self.node.run(install_signals=False))
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> dict:
        self.loop.call_soon_threadsafe(self.node.request_stop, "test")
        self.thread.join(60)
        assert not self.thread.is_alive(), "the node did not stop within 60 s"
        if self.error is not None:
            raise self.error
        return self.summary


def tick_rate(node: TradingNode, seconds: float) -> float:
    """Ticks the node took per second over ``seconds``."""
    before, begun = node.feed.stats.received, time.monotonic()
    time.sleep(seconds)
    return (node.feed.stats.received - before) / (time.monotonic() - begun)


def test_failing_step_keeps_the_tick_rate_and_escalates_everywhere_until_recovery(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, eventually) -> None:
    switch = threading.Event()
    build_parts = node_module.build_parts

    def build_with_switch(config):
        parts = build_parts(config)
        parts.components["ConsensusEngine"] = FailWhileOn(parts.components["ConsensusEngine"],
                                                          switch)
        return parts

    monkeypatch.setattr(node_module, "build_parts", build_with_switch)
    hook = WebhookReceiver()
    config_file = tmp_path / "node.toml"
    config_file.write_text(
        f'[node]\ndb = "{tmp_path / "node.db"}"\nduration = 300\nstatus_interval = 0.2\n'
        'symbols = ["EURUSD", "GBPUSD"]\n'
        '[simulator]\nrate = 400.0\n'
        '[dashboard]\nport = 0\ninterval_s = 0.1\n'
        '[history]\ninterval_s = 0.5\n'
        '[monitor]\ninterval_s = 0.1\nwindow_s = 1.0\nmin_attempts = 5\n'
        'warning_interval_s = 1000\nrepeat_interval_s = 0.5\n'
        f'[alerts]\nwebhook = "{hook.url}"\n', encoding="utf-8")
    terminal = LockedText()
    alert_log = logging.getLogger("flowchain.alerts")
    handler = logging.StreamHandler(terminal)
    from flowchain.cli.node import NodeLogFormatter

    handler.setFormatter(NodeLogFormatter("%(message)s"))
    alert_log.addHandler(handler)
    level = alert_log.level
    alert_log.setLevel(logging.INFO)
    node = TradingNode(load_config(config_file), out=terminal)
    running = NodeThread(node)
    browser = None
    try:
        eventually(lambda: node.observers is not None and node.observers.url
                   and node.counters.decisions > 300, timeout=60, message="node trading")
        url = node.observers.url
        monitor = node.observers.monitor
        healthy = tick_rate(node, 2.0)
        if CHROMIUM is not None:
            browser = DevTools(CHROMIUM, tmp_path / "profile")
            session = browser.open(url + "/")

            def banner() -> str:
                return browser.evaluate(session, "(() => { const b = document.getElementById("
                                                 "'escalations'); return b.hidden ? '' : "
                                                 "b.textContent; })()")

            eventually(lambda: browser.evaluate(session, "document.querySelector("
                                                         "'#chains td.executions') !== null"),
                       timeout=30, message="page rendered")
            assert banner() == ""

        switch.set()                                    # every tick now fails in consensus
        decisions_before = node.counters.decisions
        eventually(lambda: monitor.escalations(), timeout=30, message="escalated")
        failing = tick_rate(node, 2.0)
        [escalation] = monitor.escalations()
        assert (escalation.chain, escalation.step, escalation.error_rate) == (CHAIN, STEP, 1.0)
        # the node keeps taking ticks at the rate it did when healthy (under the sanitized
        # engine every Python allocation of the cold-path threads goes through ASan's malloc,
        # which slows them far more than the tick path: there the check is that the node is not
        # stalled; the optimized build and the latency gate hold the 0.7 and 0.9 budgets)
        assert failing >= (0.4 if SANITIZED else 0.7) * healthy, (failing, healthy)
        assert node.counters.decision_failures[STEP] > 0
        assert node.counters.decisions - decisions_before < 20   # at most those in flight

        # the terminal: an alert line, and every status line names the escalated step
        eventually(lambda: any(f"CRITICAL escalation {CHAIN}/{STEP}" in line
                               for line in terminal.lines()), timeout=10)
        eventually(lambda: any(f"ESCALATED: {CHAIN}/{STEP} 100%" in line
                               for line in terminal.lines() if line.startswith("[node ")),
                   timeout=10, message="status line")
        # /metrics, parsed
        escalated = lambda: sample(scrape(url), "flowchain_step_escalated",  # noqa: E731
                                   chain=CHAIN, step=STEP)
        eventually(lambda: escalated() == 1.0, timeout=10, message="gauge 1")
        families = scrape(url)
        others = [s.value for s in families["flowchain_step_escalated"]
                  if s.labels["step"] != STEP]
        assert others and set(others) == {0.0}
        # the webhook: the escalation, then repeated while it lasts
        def kinds() -> list:
            return [(e["kind"], e.get("repeat")) for e in hook.received if e["step"] == STEP]

        eventually(lambda: ("escalation", 2) in kinds(), timeout=20, message="repeats")
        # the dashboard: a banner naming the step, which stays while it lasts
        if browser is not None:
            eventually(lambda: f"ESCALATED {CHAIN}/{STEP}" in banner(), timeout=20,
                       message="banner shown")
            time.sleep(1.0)
            assert f"ESCALATED {CHAIN}/{STEP}" in banner()

        switch.clear()                                  # the step works again
        eventually(lambda: not monitor.escalations(), timeout=30, message="recovered")
        eventually(lambda: ("recovery", None) in kinds(), timeout=20, message="recovery sent")
        eventually(lambda: escalated() == 0.0, timeout=10, message="gauge 0")
        eventually(lambda: any(f"INFO recovery {CHAIN}/{STEP}" in line
                               for line in terminal.lines()), timeout=10)
        if browser is not None:
            eventually(lambda: banner() == "", timeout=20, message="banner gone")
        status_lines = [line for line in terminal.lines() if line.startswith("[node ")]
        eventually(lambda: "ESCALATED" not in [line for line in terminal.lines()
                                               if line.startswith("[node ")][-1],
                   timeout=10, message="status line clear")
        assert len(status_lines) > 5
    finally:
        if browser is not None:
            browser.close()
        summary = running.stop()
        alert_log.removeHandler(handler)
        alert_log.setLevel(level)
        hook.close()
    assert summary["alerts"]["escalation"] >= 3 and summary["alerts"]["recovery"] >= 1
    from flowchain.observe.history import HistoryReader

    with HistoryReader(tmp_path / "node.db") as reader:
        stored = [a for a in reader.alerts(chain=CHAIN) if a["step"] == STEP]
    [esc] = [a for a in stored if a["kind"] == "escalation"]
    [rec] = [a for a in stored if a["kind"] == "recovery"]
    assert esc["end_ns"] == rec["start_ns"] and esc["start_ns"] < esc["end_ns"]
    assert esc["alerts"] >= 3 and json.dumps(esc["fields"])

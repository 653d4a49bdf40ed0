"""Does watching the node slow it down? Decision latency with and without the observers.

What ``flowchain bench observe`` measures, in one process:

* **quiet**: the trading node's own per-tick decision path (tick appended to its ring, the
  symbol's DecisionContext pointed at it, ``runner.run(ctx)`` over the four tracked decision
  steps with the paper broker and SQLite journal: exactly :mod:`flowchain.bench.node`'s path),
  each tick timed with ``perf_counter_ns``, recorded into an HDR histogram per repetition.
* **observed**: the same, while the cold path runs as the node would run it: the
  :class:`~flowchain.monitor.Monitor` polling every 250 ms in its thread, the dashboard server
  (:class:`~flowchain.web.DashboardServer`, on its own uvloop thread) pushing a snapshot every
  500 ms to a connected server-sent-events client, and ``/metrics`` scraped over HTTP every
  second.

Repetitions interleave quiet and observed (A B A B ..., at least 5 each); the figures are the
medians of the per-repetition percentiles. Budget: observed p99 <= 1.05x quiet p99.
"""
from __future__ import annotations

import gc
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import numpy as np

from flowchain.bench.distribution import interleave, median_summary, summarize_ns
from flowchain.bench.environment import cpu, versions

BUDGET_RATIO = 1.05
"""Observed decision p99 may be at most this multiple of the quiet one."""


class Observers:
    """The cold path of a node (dashboard thread with an SSE client, /metrics scrapes, the
    monitor, the history writer), started once and stopped once around one repetition.

    Parameters
    ----------
    registry : ChainRegistry
    feeds : mapping of name -> feed
    history_db : str
        The SQLite file the history writer flushes into (every second here).
    scrape_every_s, sse_every_s, monitor_every_s : float
        How often ``/metrics`` is scraped, snapshots are pushed and the monitor polls.
    """

    def __init__(self, registry: Any, feeds: dict, *, scrape_every_s: float = 1.0,
                 sse_every_s: float = 0.5, monitor_every_s: float = 0.25,
                 history_db: str) -> None:
        from flowchain.history import HistoryWriter
        from flowchain.metrics import FlowChainCollector, feed_metrics
        from flowchain.monitor import Monitor
        from flowchain.web import DashboardServer, DashboardState
        from flowchain.web.background import DashboardThread

        self.monitor = Monitor(registry, interval_s=monitor_every_s)
        state = DashboardState(registry, self.monitor, feeds)
        collector = FlowChainCollector(registry, [feed_metrics(feeds)], monitors=self.monitor)
        self.server = DashboardServer(state, interval_s=sse_every_s, collector=collector)
        self.dashboard = DashboardThread(self.server)
        # the node's history writer, at a short interval so it flushes during the repetitions
        self.history = HistoryWriter(registry, history_db, interval_s=1.0)
        self.scrape_every_s = scrape_every_s
        self.counters = {"scrapes": 0, "sse_snapshots": 0, "errors": 0}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stream: Any = None

    def start(self, timeout: float = 30.0) -> None:
        """Start everything the node runs on its cold path, and return once a snapshot and a
        scrape have been received.

        Raises
        ------
        TimeoutError
            When the dashboard does not answer within ``timeout``.
        """
        self._stop.clear()
        self.dashboard.start(timeout)
        self.monitor.start()
        self.history.start()
        before = dict(self.counters)
        self._spawn(self._listen, "bench-sse-client")
        self._spawn(self._scrape, "bench-scraper")
        deadline = time.monotonic() + timeout
        while (self.counters["sse_snapshots"] == before["sse_snapshots"]
               or self.counters["scrapes"] == before["scrapes"]):
            if time.monotonic() > deadline:
                raise TimeoutError("no snapshot or scrape from the dashboard within "
                                   f"{timeout} s; counters {self.counters}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the client, the scraper, the monitor, the history writer and the server."""
        self._stop.set()
        self.monitor.stop()
        self.history.close()
        if self._stream is not None:
            try:
                self._stream.close()
            except OSError:
                pass
        self.dashboard.close()
        for t in self._threads:
            t.join(10)
        self._threads.clear()

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _listen(self) -> None:
        try:
            self._stream = urllib.request.urlopen(self.server.url + "/api/events", timeout=30)
            while not self._stop.is_set():
                line = self._stream.readline()
                if not line:
                    break
                if line.startswith(b"data: "):
                    self.counters["sse_snapshots"] += 1
        except (OSError, ValueError, AttributeError):
            if not self._stop.is_set():
                self.counters["errors"] += 1

    def _scrape(self) -> None:
        while True:
            try:
                with urllib.request.urlopen(self.server.url + "/metrics", timeout=10) as r:
                    r.read()
                self.counters["scrapes"] += 1
            except OSError:
                self.counters["errors"] += 1
            if self._stop.wait(self.scrape_every_s):
                return


def run(*, repetitions: int = 5, ticks: int = 300_000, seed: int = 7) -> dict[str, Any]:
    """Measure quiet and observed decision latency, interleaved; return the figures.

    Raises
    ------
    ValueError
        When ``repetitions`` is below 5 or ``ticks`` is not positive.
    """
    from flowchain.bench.node import SYMBOLS, NodePath, check_counts, decision_repetition

    check_counts(ticks=ticks, repetitions=repetitions)
    with tempfile.TemporaryDirectory() as tmp:
        path = NodePath(Path(tmp), SYMBOLS, seed)
        totals = {"scrapes": 0, "sse_snapshots": 0, "errors": 0, "monitor_polls": 0,
                  "history_intervals": 0}
        try:
            seq = 0
            scratch = np.zeros(ticks, dtype=np.int64)
            ids, t = path.ticks(5_000)
            decision_repetition(path, path.decide, ids, memoryview(t.view(np.uint8)), seq,
                                np.zeros(5_000, dtype=np.int64))
            seq += 5_000

            def repetition(observed: bool) -> Callable[[int], dict[str, int]]:
                def measure(rep: int) -> dict[str, int]:
                    nonlocal seq
                    ids, t = path.ticks(ticks)
                    if observed:
                        observers = Observers(path.registry, {"simulator": path.parts.feed},
                                              history_db=str(Path(tmp) / "history.db"))
                        observers.start()
                    gc.collect()
                    decision_repetition(path, path.decide, ids, memoryview(t.view(np.uint8)),
                                        seq, scratch)
                    if observed:
                        observers.stop()
                        for key in ("scrapes", "sse_snapshots", "errors"):
                            totals[key] += observers.counters[key]
                        totals["monitor_polls"] += observers.monitor.counters["polls"]
                        totals["history_intervals"] += observers.history.counters["intervals"]
                    seq += ticks
                    return summarize_ns(scratch)
                return measure

            per_rep = interleave({"quiet": repetition(False), "observed": repetition(True)},
                                 repetitions)
        finally:
            path.close()
    medians = {way: median_summary(reps) for way, reps in per_rep.items()}
    ratio = medians["observed"]["p99_ns"] / max(1, medians["quiet"]["p99_ns"])
    return {
        "decision_p99_ns_quiet": medians["quiet"]["p99_ns"],
        "decision_p99_ns_observed": medians["observed"]["p99_ns"],
        "observed_vs_quiet_p99": round(ratio, 3),
        "budget_ratio": BUDGET_RATIO,
        "within_budget": ratio <= BUDGET_RATIO,
        "quiet": medians["quiet"],
        "observed": medians["observed"],
        "samples_per_way": ticks * repetitions,
        "repetitions": repetitions,
        "observers": totals,
        "measured_on": "the node's decision chain (flowchain.bench.node path)",
        "versions": versions(),
        "cpu": cpu(),
    }

"""Does watching the node slow it down? Decision latency with and without the observers.

What ``flowchain bench observe`` measures, in one process:

* **quiet**: the trading node's own per-tick decision path (tick appended to its ring, the
  symbol's DecisionContext pointed at it, ``runner.run(ctx)`` over the four tracked decision
  steps with the paper broker and SQLite journal: exactly :mod:`flowchain.bench.node`'s path),
  each tick timed with ``perf_counter_ns``, recorded into an HDR histogram per repetition.
* **observed**: the same, while the cold path runs as the node would run it: the
  :class:`~flowchain.observe.monitor.Monitor` polling every 250 ms in its thread, the dashboard
  server (:class:`~flowchain.observe.web.DashboardServer`, on its own uvloop thread) pushing a
  snapshot every 500 ms to a connected server-sent-events client, and ``/metrics`` scraped
  over HTTP every second.

Repetitions interleave quiet and observed (A B A B ..., at least 5 each); the figures are the
medians of the per-repetition percentiles. Budget: observed p99 <= 1.05x quiet p99.

Two more measurements, each against a baseline taken in the same run:

* **failing vs healthy ticks/s**: ticks fed to the same per-tick path as fast as it takes them
  (no pacing), while the observers run, with the ``trading_execution`` step raising on every
  tick (a switch wrapped around the component, the chain otherwise the node's) against the
  same path with the switch off, interleaved. A failure is caught and counted as the node's
  ``on_tick`` does. Budget: ``ticks_per_s_failing / ticks_per_s_healthy >= 0.9``.
* **scrape vs status**: with :data:`SCRAPE_CHAINS` chains registered and run, a monitor
  polling and the dashboard on its own thread, ``GET /metrics`` and ``GET /api/status``
  timed over HTTP, alternately. Budget: ``metrics_scrape_p99_ns / status_call_p99_ns <= 2.0``.
"""
from __future__ import annotations

import gc
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from flowchain.bench.distribution import interleave, median_summary, summarize_ns
from flowchain.bench.environment import cpu, versions

BUDGET_RATIO = 1.05
"""Observed decision p99 may be at most this multiple of the quiet one."""
BUDGET_FAILING_VS_HEALTHY = 0.9
"""Ticks per second with a step failing on every tick, at least this fraction of healthy."""
BUDGET_SCRAPE_VS_STATUS = 2.0
"""A ``/metrics`` scrape's p99 at most this multiple of an ``/api/status`` call's p99."""
SCRAPE_CHAINS = 100
"""Chains registered (and run) while scrapes and status calls are timed."""


class SwitchedFailure:
    """A component that raises on every call while ``switch`` is set, else calls ``inner``.

    Parameters
    ----------
    inner : callable
        The component it stands in for.
    switch : threading.Event
        Set: every call raises :class:`RuntimeError`.
    """

    def __init__(self, inner: Callable[[Any], Any], switch: threading.Event) -> None:
        self.inner = inner
        self.switch = switch

    def __call__(self, data: Any) -> Any:
        if self.switch.is_set():
            raise RuntimeError("the broker is unreachable (switched off by the benchmark)")
        return self.inner(data)


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
        from flowchain.observe.history import HistoryWriter
        from flowchain.observe.metrics import FlowChainCollector, feed_metrics
        from flowchain.observe.monitor import Monitor
        from flowchain.observe.web import DashboardServer, DashboardState
        from flowchain.observe.web.background import DashboardThread

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


def measure_failing_throughput(path: Any, *, ticks: int, repetitions: int,
                               history_db: str) -> dict[str, Any]:
    """Ticks per second of the per-tick path, a step failing on every tick vs healthy.

    The node's decision chain is registered anew over the same component instances, with
    ``TradingEngine`` wrapped in a :class:`SwitchedFailure`; the observers watch it throughout.
    Each repetition feeds ``ticks`` ticks back to back; healthy and failing repetitions
    interleave. Returns the medians and the per-repetition rates.
    """
    from flowchain.bench.node import decision_repetition
    from flowchain.chains import AI_DECISION_CHAIN, TRADING_NODE_YAML
    from flowchain.components import ComponentRegistry
    from flowchain.errors import ChainStepError
    from flowchain.registry import ChainRegistry

    switch = threading.Event()
    components = ComponentRegistry()
    for name, impl in path.parts.components.items():
        components.register(name, impl)
    components.register("TradingEngine",
                        SwitchedFailure(path.parts.components["TradingEngine"], switch),
                        replace=True)
    registry = ChainRegistry(components, ring_capacity=4096)
    registry.register_file(TRADING_NODE_YAML)
    run_chain = registry.runner(AI_DECISION_CHAIN).run
    failures: dict[str, int] = {}

    def on_tick(ctx: Any) -> Any:   # what the node's on_tick does with a decision
        try:
            return run_chain(ctx)
        except ChainStepError as exc:
            failures[exc.step] = failures.get(exc.step, 0) + 1
            return None

    scratch = np.zeros(ticks, dtype=np.int64)
    seq = 50_000_000_000
    observers = Observers(registry, {"simulator": path.parts.feed}, history_db=history_db)
    observers.start()
    try:
        def repetition(failing: bool) -> Callable[[int], dict[str, float]]:
            def measure(rep: int) -> dict[str, float]:
                nonlocal seq
                ids, t = path.ticks(ticks)
                if failing:
                    switch.set()
                else:
                    switch.clear()
                gc.collect()
                begun = time.perf_counter()
                decision_repetition(path, on_tick, ids, memoryview(t.view(np.uint8)), seq,
                                    scratch)
                elapsed = time.perf_counter() - begun
                seq += ticks
                return {"ticks_per_s": ticks / elapsed}
            return measure

        per_rep = interleave({"healthy": repetition(False), "failing": repetition(True)},
                             repetitions)
    finally:
        switch.clear()
        observers.stop()
    healthy = float(np.median([r["ticks_per_s"] for r in per_rep["healthy"]]))
    failing = float(np.median([r["ticks_per_s"] for r in per_rep["failing"]]))
    return {"ticks_per_s_healthy": round(healthy, 1), "ticks_per_s_failing": round(failing, 1),
            "failing_vs_healthy_ticks": round(failing / healthy, 3),
            "failures": failures, "ticks_per_repetition": ticks,
            "per_repetition": {way: [round(r["ticks_per_s"], 1) for r in reps]
                               for way, reps in per_rep.items()}}


def measure_scrape_vs_status(*, chains: int = SCRAPE_CHAINS, requests: int = 200,
                             executions: int = 200) -> dict[str, Any]:
    """Time ``GET /metrics`` against ``GET /api/status`` with ``chains`` chains registered.

    Each chain (four steps, one failing on 1 in 50 inputs) runs ``executions`` times first; a
    monitor polls in its thread and the dashboard serves from its own, as in the node. After
    one untimed request of each, ``requests`` of each are timed alternately, the body read.
    """
    from flowchain.chain import ChainBuilder
    from flowchain.components import ComponentRegistry
    from flowchain.errors import ChainStepError
    from flowchain.observe.metrics import FlowChainCollector
    from flowchain.observe.monitor import Monitor
    from flowchain.observe.web import DashboardServer, DashboardState
    from flowchain.observe.web.background import DashboardThread
    from flowchain.registry import ChainRegistry

    def check(x: int) -> int:
        if x % 50 == 49:
            raise ValueError(f"input {x} refused")
        return x

    components = ComponentRegistry()
    components.register("Pass", lambda x: x)
    components.register("Check", check)
    registry = ChainRegistry(components, ring_capacity=256)
    for k in range(chains):
        chain_id = registry.register_chain(
            ChainBuilder(f"chain_{k:03d}").step("features", "Pass", "t", "f", 1)
            .step("agents", "Pass", "f", "s", 1).step("consensus", "Check", "s", "d", 1)
            .step("execution", "Pass", "d", "r", 1).build())
        runner = registry.runner(chain_id)
        for x in range(executions):
            try:
                runner.run(x)
            except ChainStepError:
                pass
    monitor = Monitor(registry).start()
    server = DashboardServer(DashboardState(registry, monitor),
                             collector=FlowChainCollector(registry, monitors=monitor))
    hosted = DashboardThread(server)
    hosted.start()
    times: dict[str, list[int]] = {"metrics": [], "status": []}
    sizes: dict[str, int] = {}
    try:
        urls = {"metrics": hosted.url + "/metrics", "status": hosted.url + "/api/status"}
        for way, url in urls.items():
            with urllib.request.urlopen(url, timeout=60) as r:
                sizes[way] = len(r.read())
        for _ in range(requests):
            for way, url in urls.items():
                begun = time.perf_counter_ns()
                with urllib.request.urlopen(url, timeout=60) as r:
                    r.read()
                times[way].append(time.perf_counter_ns() - begun)
    finally:
        hosted.close()
        monitor.stop()
    scrape, status = summarize_ns(np.array(times["metrics"])), \
        summarize_ns(np.array(times["status"]))
    return {"metrics_scrape_p50_ns": scrape["p50_ns"], "metrics_scrape_p99_ns": scrape["p99_ns"],
            "status_call_p50_ns": status["p50_ns"], "status_call_p99_ns": status["p99_ns"],
            "scrape_vs_status_p99": round(scrape["p99_ns"] / max(1, status["p99_ns"]), 3),
            "chains": chains, "requests": requests, "metrics_bytes": sizes["metrics"],
            "status_bytes": sizes["status"],
            "exposition": dict(server.exposition.counters)}


def run(*, repetitions: int = 5, ticks: int = 300_000, seed: int = 7,
        failing_ticks: int = 20_000, scrape_requests: int = 200) -> dict[str, Any]:
    """Measure quiet and observed decision latency, failing vs healthy ticks per second and
    scrape vs status call latency; return the figures (``within_budget``: all three hold).

    Raises
    ------
    ValueError
        When ``repetitions`` is below 5, or ``ticks``, ``failing_ticks`` or
        ``scrape_requests`` is not positive.
    """
    from flowchain.bench.node import SYMBOLS, NodePath, check_counts, decision_repetition

    check_counts(ticks=ticks, repetitions=repetitions)
    check_counts(ticks=min(failing_ticks, scrape_requests), repetitions=repetitions)
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
            failing = measure_failing_throughput(path, ticks=failing_ticks,
                                                 repetitions=repetitions,
                                                 history_db=str(Path(tmp) / "failing.db"))
        finally:
            path.close()
    scrapes = measure_scrape_vs_status(requests=scrape_requests)
    medians = {way: median_summary(reps) for way, reps in per_rep.items()}
    ratio = medians["observed"]["p99_ns"] / max(1, medians["quiet"]["p99_ns"])
    checks = {
        "observed_vs_quiet_p99": ratio <= BUDGET_RATIO,
        "failing_vs_healthy_ticks": failing["failing_vs_healthy_ticks"]
        >= BUDGET_FAILING_VS_HEALTHY,
        "scrape_vs_status_p99": scrapes["scrape_vs_status_p99"] <= BUDGET_SCRAPE_VS_STATUS,
    }
    return {
        "decision_p99_ns_quiet": medians["quiet"]["p99_ns"],
        "decision_p99_ns_observed": medians["observed"]["p99_ns"],
        "observed_vs_quiet_p99": round(ratio, 3),
        "budget_ratio": BUDGET_RATIO,
        "ticks_per_s_healthy": failing["ticks_per_s_healthy"],
        "ticks_per_s_failing": failing["ticks_per_s_failing"],
        "failing_vs_healthy_ticks": failing["failing_vs_healthy_ticks"],
        "budget_failing_vs_healthy": BUDGET_FAILING_VS_HEALTHY,
        "metrics_scrape_p99_ns": scrapes["metrics_scrape_p99_ns"],
        "status_call_p99_ns": scrapes["status_call_p99_ns"],
        "scrape_vs_status_p99": scrapes["scrape_vs_status_p99"],
        "budget_scrape_vs_status": BUDGET_SCRAPE_VS_STATUS,
        "checks": checks,
        "within_budget": all(checks.values()),
        "failing": failing,
        "scrapes": scrapes,
        "quiet": medians["quiet"],
        "observed": medians["observed"],
        "samples_per_way": ticks * repetitions,
        "repetitions": repetitions,
        "observers": totals,
        "measured_on": "the node's decision chain (flowchain.bench.node path)",
        "versions": versions(),
        "cpu": cpu(),
    }

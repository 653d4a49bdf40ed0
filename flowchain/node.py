"""The trading node: the process ``flowchain node`` runs, on uvloop.

One :class:`TradingNode` owns a feed (simulator, replay file or the bridge's ZeroMQ ticks), a
:class:`~flowchain.registry.ChainRegistry` built from ``trading_node.yaml`` over components
configured for this node, and the runners of its two chains:

* **Per tick** (the hot path, on the event loop): the feed calls :meth:`TradingNode.on_tick`
  right after the tick landed in its ring; the node points the symbol's preallocated
  :class:`~flowchain.trading.context.DecisionContext` at it and runs the AI decision chain
  (``runner.run(ctx)``: features, agents, consensus, trading execution, every step timed).
* **Per batch** (the cold path): every ``batch_interval`` a :class:`~flowchain.feeds.TickBatcher`
  copies what each ring received since the last batch, and the MT5 -> database chain runs on it
  in a one-thread executor, so SQLite never blocks the tick path.

* **Watching** (the cold path, off the loop): :class:`NodeObservers` runs
  the monitor (slow-step warnings, error-rate escalations, recoveries: logged, counted in
  the status line, shown on the dashboard, optionally POSTed to a webhook; a step escalated
  now is named in every status line until it recovers), the history writer (interval
  histograms, failed/sampled executions and every alert with its span in SQLite), the
  dashboard with
  ``/metrics`` and ``/api/status`` on a loop of its own, and, when configured, the
  OpenTelemetry trace export and the hub shipper (a process of its own sending the history to
  ``flowchain hub``). Each only reads what the engine recorded.

A status line goes out every ``status_interval`` seconds; :meth:`TradingNode.run` returns a
summary. SIGINT/SIGTERM (or ``duration``, or the end of a replay file) stop the feed, then the
last batch is stored, the observers write their last interval and every component is closed
before the node returns.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from flowchain.chains import AI_DECISION_CHAIN, MT5_TO_DATABASE_CHAIN
from flowchain.config import OTLP_EXPORTER_MODULE, NodeConfig
from flowchain.errors import ChainStepError, FlowChainError
from flowchain.feeds.base import Feed
from flowchain.feeds.batches import TickBatcher
from flowchain.feeds.ring import TickRing
from flowchain.node_parts import (
    NodeParts,
    NodeStartError,
    build_parts,
    build_registry,
    preflight,
)
from flowchain.registry import ChainRegistry
from flowchain.trading.context import DEFAULT_HISTORY, DecisionContext

log = logging.getLogger(__name__)
COMPILING_NOTICE_S = 1.0
"""Building the node's parts for longer than this means the numeric kernels are compiling."""
COMPILING_NOTICE = ("[node] compiling the numeric kernels (first run only; about 30 s, then "
                    "cached) ...")


@dataclass
class NodeCounters:
    """What the node did, counted on the event loop (no lock: one writer)."""

    decisions: int = 0
    """AI decision chain executions that returned a trade result."""
    decision_failures: Counter = field(default_factory=Counter)
    """Failed decision executions by failing step."""
    results: Counter = field(default_factory=Counter)
    """Trade results by status (hold, rejected, filled, pending, failed)."""
    batches: int = 0
    """MT5 -> database chain executions that stored a batch."""
    batch_failures: Counter = field(default_factory=Counter)
    """Failed batch executions by failing step."""
    batch_ticks_lost: int = 0
    """Ticks overwritten in a ring before a batch could copy them (counted, never hidden)."""
    rows: Counter = field(default_factory=Counter)
    """Rows the database gained, by table."""
    first_decision_ns: int = 0
    """Duration of the very first decision (numba warm-up must not show here)."""

    @property
    def orders(self) -> int:
        """Orders that went out to the broker (filled, pending or refused by it)."""
        r = self.results
        return r["filled"] + r["pending"] + r["failed"]


def _format_ns(ns: float) -> str:
    if ns >= 1_000_000:
        return f"{ns / 1e6:.2f}ms"
    if ns >= 1_000:
        return f"{ns / 1e3:.1f}us"
    return f"{ns:.0f}ns"


def copy_counts(counter: Mapping[str, int], attempts: int = 5) -> dict[str, int]:
    """Copy a counter another thread may be adding keys to (a copy that raced is retried).

    Raises
    ------
    RuntimeError
        When every attempt raced with a writer (the caller's provider error counter counts it).
    """
    for _ in range(attempts - 1):
        try:
            return dict(counter)
        except RuntimeError:  # "dictionary changed size during iteration"
            continue
    return dict(counter)


class NodeObservers:
    """The node's cold path: monitor and alert sinks, history writer, dashboard, trace export.

    Everything here runs in threads of its own (the monitor's and the history writer's, the
    dashboard's event loop, the trace exporter's) and only reads what the engine recorded, so
    the tick path on the node's loop never waits for it.

    Parameters
    ----------
    config : NodeConfig
    registry : ChainRegistry
        The node's registry (its runners are built).
    feed : Feed
        Shown on the dashboard and in ``/metrics``.
    order_counts : callable
        Returns ``{status: orders}`` for the ``flowchain_orders`` counter.
    out : text stream
        Where the dashboard's address is announced.

    Attributes
    ----------
    alerts : Counter
        Monitor events by kind (``slow_step``, ``escalation``, ``recovery``).
    url : str
        The dashboard's base URL once serving, else ``""``.
    tenants : TenantManager or None
        The tenants the node hosts (``[tenants.*]``), None when it hosts none: embedders
        register and execute tenants' chains through it (the node's own chains are not a
        tenant's). Usage and per-user history go to the history database, upgrade triggers to
        the alert sinks, the tenants to the dashboard and ``/metrics``.
    """

    def __init__(self, config: NodeConfig, registry: ChainRegistry, feed: Feed,
                 order_counts: Callable[[], Mapping[str, int]], out: TextIO,
                 node_id: str = "") -> None:
        from flowchain.observe.alerts import EVENT_KINDS

        self.config = config
        self.registry = registry
        self.feed = feed
        self.order_counts = order_counts
        self.out = out
        self.alerts: Counter = Counter({kind: 0 for kind in EVENT_KINDS})
        self.url = ""
        self.monitor: Any = None
        self.history: Any = None
        self.dashboard: Any = None
        self.traces: Any = None
        self.tenants: Any = None
        self.tenant_history: Any = None
        self.shipper: Any = None
        self.node_id = node_id
        self._webhook: Any = None
        self._tracer_provider: Any = None
        self._closers: list[tuple[str, Callable[[], Any]]] = []

    def start(self) -> None:
        """Start the monitor, the history writer, the trace export and the dashboard.

        Raises
        ------
        NodeStartError
            When the webhook URL is refused, the history database cannot be opened, the OTLP
            exporter cannot be built or the dashboard's address cannot be bound.
        """
        from flowchain.observe.alerts import CallbackSink, LogSink, WebhookSink
        from flowchain.observe.monitor import Monitor

        config = self.config
        sinks: list[Any] = [LogSink(), CallbackSink(self._count)]
        if config.alerts.webhook:
            try:
                self._webhook = WebhookSink(config.alerts.webhook)
            except ValueError as exc:
                raise NodeStartError(f"[alerts] webhook (from {config.source}): {exc}") from exc
            self._closers.append(("webhook", self._webhook.close))
            sinks.append(self._webhook)
        if config.hub.url:  # before the history: closed after it, it ships the last interval
            self._start_shipper()
        if config.history.enabled:  # before the monitor: it stores the monitor's events
            self._start_history()
            sinks.append(self.history)
        m = config.monitor
        self.monitor = Monitor(self.registry, sinks, interval_s=m.interval_s,
                               warning_interval_s=m.warning_interval_s, window_s=m.window_s,
                               error_threshold=m.error_threshold, min_attempts=m.min_attempts,
                               repeat_interval_s=m.repeat_interval_s)
        self.monitor.start()
        self._closers.append(("monitor", self.monitor.stop))  # closed before the history
        if config.tenants:
            self._start_tenants(sinks)
        if config.otel.endpoint:
            self._start_traces()
        if config.dashboard.enabled:
            self._start_dashboard()

    def _count(self, event: Any) -> None:
        self.alerts[event.kind] += 1

    def _start_history(self) -> None:
        import sqlite3

        from flowchain.observe.history import HistoryWriter
        from flowchain.store import StoreError

        h = self.config.history
        try:
            self.history = HistoryWriter(self.registry, self.config.history_db,
                                         interval_s=h.interval_s, sample_rate=h.sample_rate)
            if h.profile_rate:  # profiles are stored by the history writer
                self.registry.set_profiling(h.profile_rate, record_inputs=h.record_inputs)
        except (StoreError, sqlite3.Error, OSError) as exc:
            raise NodeStartError(f"history database {self.config.history_db!r} (from "
                                 f"{self.config.source}): {exc}; fix [history] db or set "
                                 "[history] enabled = false") from exc
        self.history.start()
        self._closers.append(("history", self.history.close))

    def _start_shipper(self) -> None:
        """Ship the history database's new rows to ``[hub] url`` from a process of its own
        (it never holds this process's GIL)."""
        import sqlite3

        from flowchain.hub.shipper_process import ShipperProcess
        from flowchain.store import StoreError

        h = self.config.hub
        try:
            self.shipper = ShipperProcess(h.url, h.token_file, self.config.history_db,
                                          self.node_id, interval_s=h.interval_s,
                                          batch_rows=h.batch_rows,
                                          max_backoff_s=h.max_backoff_s).start()
        except (ValueError, StoreError, sqlite3.Error, OSError) as exc:
            raise NodeStartError(f"[hub] (from {self.config.source}): {exc}") from exc
        self._closers.append(("hub shipper", self.shipper.close))
        print(f"[node] shipping to hub {h.url} as node {self.node_id}", file=self.out,
              flush=True)

    def _start_tenants(self, sinks: list[Any]) -> None:
        """Host ``[tenants.*]``: a manager whose usage lives in the history database."""
        import sqlite3

        from flowchain.store import StoreError
        from flowchain.tenancy import TenancyError, TenantManager
        from flowchain.tenancy.tenant_history import TenantHistoryWriter

        config = self.config
        try:
            manager = TenantManager(config.tier_set(), db=config.history_db, sinks=sinks,
                                    sample_rate=config.tenancy.resource_sample_rate)
        except (StoreError, sqlite3.Error, OSError) as exc:
            raise NodeStartError(f"tenant usage database {config.history_db!r} (from "
                                 f"{config.source}): {exc}; fix [history] db") from exc
        self._closers.append(("tenants", manager.close))
        try:
            for tenant_id, section in config.tenants.items():
                manager.add_tenant(tenant_id, section.tier)
        except TenancyError as exc:
            raise NodeStartError(f"[tenants] (from {config.source}): {exc}") from exc
        manager.start()
        self.tenants = manager
        if config.history.enabled:
            self.tenant_history = TenantHistoryWriter(manager, config.history_db,
                                                      interval_s=config.history.interval_s)
            self.tenant_history.start()
            self._closers.append(("tenant history", self.tenant_history.close))

    def _start_traces(self) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from flowchain.observe.otel import TraceExporter

        o = self.config.otel
        try:
            exporter = importlib.import_module(OTLP_EXPORTER_MODULE).OTLPSpanExporter(
                endpoint=o.endpoint)
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            raise NodeStartError(f"[otel] endpoint {o.endpoint!r}: the OTLP exporter could not "
                                 f"be built: {exc}; install the 'otel' extra "
                                 "(opentelemetry-exporter-otlp-proto-http)") from exc
        provider = TracerProvider(resource=Resource.create({"service.name": "flowchain-node"}))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer_provider = provider
        self._closers.append(("trace provider", provider.shutdown))
        self.traces = TraceExporter(self.registry, provider, sample_rate=o.sample_rate).start()
        self._closers.append(("trace export", self.traces.stop))

    def _start_dashboard(self) -> None:
        from flowchain.observe.metrics import FlowChainCollector, counter_metrics, feed_metrics
        from flowchain.observe.web import DashboardServer, DashboardState, DashboardThread

        d = self.config.dashboard
        feeds = {"feed": self.feed}
        collector = FlowChainCollector(self.registry, [
            feed_metrics(feeds),
            counter_metrics("flowchain_orders", "Orders by result: filled, pending, failed (by "
                            "the broker), rejected (by a risk check).", "status",
                            self.order_counts)], monitors=self.monitor)
        if self.tenants is not None:
            from flowchain.tenancy.gauges import tenant_metrics

            collector.add_provider(tenant_metrics(self.tenants))
        state = DashboardState(self.registry, self.monitor, feeds, tenants=self.tenants,
                               optimizer=self._optimizer_rows())
        if self.shipper is not None:
            state.shipping = self.shipper.status
        server = DashboardServer(state, d.host,
                                 d.port, interval_s=d.interval_s, collector=collector)
        thread = DashboardThread(server)
        try:
            thread.start()
        except (OSError, TimeoutError) as exc:
            raise NodeStartError(
                f"the dashboard could not listen on {d.host}:{d.port} (from "
                f"{self.config.source}): {exc}; pick another address with --dashboard "
                "HOST:PORT (port 0 picks a free one) or run with --no-dashboard") from exc
        self.dashboard = thread
        self._closers.append(("dashboard", thread.close))
        self.url = thread.url
        if d.url_file:
            self._write_url(Path(d.url_file))
        print(f"[node] dashboard {self.url}/  metrics {self.url}/metrics  status "
              f"{self.url}/api/status", file=self.out, flush=True)

    def _write_url(self, path: Path) -> None:
        """Write the URL atomically (a reader never sees half of it)."""
        partial = path.with_name(path.name + ".partial")
        try:
            partial.write_text(self.url + "\n", encoding="utf-8")
            os.replace(partial, path)
        except OSError as exc:
            raise NodeStartError(f"[dashboard] url_file {str(path)!r}: cannot write the "
                                 f"dashboard URL there: {exc.strerror}") from exc

    def close(self) -> None:
        """Stop everything started, newest first: the monitor polls and the history writer
        flushes one last time. Each is closed once; a failure is logged and the rest still
        close."""
        while self._closers:
            name, close = self._closers.pop()
            try:
                close()
            except Exception:
                log.exception("closing the node's %s failed", name)

    def escalated_text(self) -> str:
        """The status line's part naming every step escalated now ("" when none)."""
        if self.monitor is None:
            return ""
        now = time.time_ns()
        held = [f"{e.chain}/{e.step} {e.error_rate:.0%} for {(now - e.since_ns) / 1e9:.0f}s"
                for e in self.monitor.escalations()]
        return f" ESCALATED: {', '.join(held)}" if held else ""

    def shipping_text(self) -> str:
        """The status line's part saying the hub does not take the rows ("" when it does)."""
        if self.shipper is None:
            return ""
        status = self.shipper.status()
        if status["state"] not in ("retrying", "stopped"):
            return ""
        return f" hub={status['state'].upper()} ({status['last_error'][:80]}; rows kept locally)"

    def summary(self) -> dict[str, Any]:
        """Return the observers' figures for the node's exit summary."""
        return {
            "alerts": dict(self.alerts),
            "escalated": [e.to_dict() for e in self.monitor.escalations()]
            if self.monitor is not None else [],
            "dashboard": self.url,
            "monitor": dict(self.monitor.counters) if self.monitor is not None else {},
            "history": dict(self.history.counters) if self.history is not None else {},
            "traces": dict(self.traces.counters) if self.traces is not None else {},
            "webhook": dict(self._webhook.counters) if self._webhook is not None else {},
            **({"hub": self.shipper.status()} if self.shipper is not None else {}),
            **({"tenants": [self.tenants.usage(t).to_dict() for t in self.tenants.tenants()]}
               if self.tenants is not None else {}),
            **({"optimizer": self.optimizer_findings()}
               if self.history is not None and self.registry.profile_rate > 0 else {}),
        }

    def _optimizer_rows(self) -> Any:
        """The dashboard's source of optimizer findings (None unless the node profiles)."""
        if self.history is None or self.registry.profile_rate <= 0:
            return None
        from flowchain.optimizer.findings import chain_findings, finding_rows

        path, registry = self.history.path, self.registry
        return lambda: finding_rows(chain_findings(path, registry))

    def optimizer_findings(self) -> list[str]:
        """Each profiled chain's bottleneck and suggested remedy, from the history database
        (one line each; none when no chain has a bottleneck)."""
        from flowchain.optimizer.findings import chain_findings

        assert self.history is not None
        lines = []
        for result in chain_findings(self.history.path, self.registry):
            lines.extend(line for line in result.headline().splitlines() if line)
        return lines


class TradingNode:
    """The trading-node process: a feed, the two chains, a broker, status and shutdown.

    Parameters
    ----------
    config : NodeConfig
        The validated configuration (see :func:`flowchain.config.load_config`).
    out : text stream, optional
        Where status lines go (stderr by default; stdout stays free for ``--json``).

    Notes
    -----
    Build the node, then ``await node.run()`` on a running loop (uvloop in ``flowchain node``).
    ``node.request_stop()`` (what SIGINT/SIGTERM call) ends it gracefully.
    """

    def __init__(self, config: NodeConfig, out: TextIO | None = None) -> None:
        self.config = config
        self.out = out if out is not None else sys.stderr
        self.counters = NodeCounters()
        self.registry: ChainRegistry | None = None
        self.feed: Feed | None = None
        self.parts: NodeParts | None = None
        self.observers: NodeObservers | None = None
        self._contexts: list[DecisionContext] = []
        self._decide: Callable[[Any], Any] | None = None
        self._store_runner: Any = None
        self._batcher: TickBatcher | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._stop: asyncio.Event | None = None
        self._storing: set[asyncio.Future] = set()
        """Stores running in the executor (awaited at shutdown before the summary)."""
        self._stop_reason = ""
        self.start_s = 0.0
        """Seconds from :meth:`start` being called to the node being ready for its first tick."""
        self._started_ns = 0
        self._ticks_at_status = 0
        self._status_ns = 0

    @property
    def tenants(self) -> Any:
        """The node's TenantManager (``[tenants.*]``) once started, else None."""
        return self.observers.tenants if self.observers is not None else None

    # ------------------------------------------------------------------ building

    async def start(self) -> None:
        """Build the chains, components and feed; start the feed; check the bridge is there.

        Raises
        ------
        NodeStartError
            When the chains file does not register, the database or replay file cannot be
            opened, or the bridge sends no heartbeat within ``bridge.connect_timeout``.
        """
        begun = time.perf_counter()
        config = self.config
        preflight(config)  # the port and the databases, before the slow first compilation
        compiling = threading.Timer(COMPILING_NOTICE_S, print, (COMPILING_NOTICE,),
                                    {"file": self.out, "flush": True})
        compiling.daemon = True
        compiling.start()  # said only when building takes long: the kernels' first compilation
        try:
            self.parts = build_parts(config)  # settles what an earlier run left in flight
        finally:
            compiling.cancel()
        recovered = self.parts.trading.recovered
        if recovered:
            print(f"[node] orders of node {self.parts.trading.journal.node_id} an earlier run left "
                  f"unsettled: " + ", ".join(f"{k} {v}" for k, v in sorted(recovered.items())),
                  file=self.out, flush=True)
        registry = build_registry(config, self.parts.components)
        try:
            self._decide = registry.runner(AI_DECISION_CHAIN).run
            self._store_runner = registry.runner(MT5_TO_DATABASE_CHAIN)
        except FlowChainError as exc:
            raise NodeStartError(f"building the node's chains: {exc}") from exc
        except Exception as exc:  # a component class of the author's may raise while built
            raise NodeStartError(f"building the node's chains: {type(exc).__name__}: "
                                 f"{exc}") from exc
        self.registry = registry
        self.feed = feed = self.parts.feed
        history = max(DEFAULT_HISTORY, self.parts.min_history)
        self._contexts = [DecisionContext(s, history=history) for s in feed.symbols]
        self._batcher = TickBatcher(feed, from_start=True)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="flowchain-store")
        self._stop = asyncio.Event()
        self.observers = NodeObservers(config, registry, feed, self._order_counts, self.out,
                                       node_id=self.parts.trading.journal.node_id)
        self.observers.start()
        feed.on_tick(self._on_first_tick)
        await feed.start()
        if config.feed_kind == "tcp":
            await self._await_bridge()
        gc.collect()
        gc.freeze()  # what start built lives as long as the node: keep it out of collections
        self.start_s = time.perf_counter() - begun

    async def _await_bridge(self) -> None:
        assert self.feed is not None
        timeout = self.config.bridge.connect_timeout
        deadline = time.monotonic() + timeout
        while self.feed.state.last_heartbeat_ns == 0 and self.feed.stats.received == 0:
            if time.monotonic() >= deadline:
                await self.feed.stop()
                raise NodeStartError(
                    f"the bridge at {self.config.node.feed} is unreachable: no heartbeat or tick "
                    f"within {timeout:g} s. Start `flowchain bridge` there, check the address "
                    "and the CurveZMQ keys, or raise [bridge] connect_timeout")
            await asyncio.sleep(0.02)

    # ------------------------------------------------------------------ hot path

    def _on_first_tick(self, ring: TickRing, index: int) -> None:
        """Time the very first decision (it must not pay for compilation), then go direct."""
        assert self.feed is not None
        self.feed.on_tick(self.on_tick)
        begun = time.perf_counter_ns()
        self.on_tick(ring, index)
        self.counters.first_decision_ns = time.perf_counter_ns() - begun

    def on_tick(self, ring: TickRing, index: int) -> None:
        """Run the AI decision chain on the tick at ``ring.ticks[index]`` (the feed calls this)."""
        ctx = self._contexts[ring.symbol_id]
        ctx.point_at(ring.ticks, index)
        counters = self.counters
        try:
            result = self._decide(ctx)  # type: ignore[misc]
        except ChainStepError as exc:
            counters.decision_failures[exc.step] += 1
            return
        counters.results[result.status] += 1
        counters.decisions += 1

    # ------------------------------------------------------------------ cold path

    def _store_batches(self, batches: list) -> tuple[int, Counter, Counter, int]:
        """Run the MT5 -> database chain on each batch (in the executor thread)."""
        from flowchain.ingest.batch import RawTickBatch

        stored = 0
        rows: Counter = Counter()
        failures: Counter = Counter()
        lost = 0
        run = self._store_runner.run
        for batch in batches:
            lost += batch.lost
            if len(batch.ticks) == 0:
                continue
            raw = RawTickBatch(batch.symbol, int(batch.seqs[0]), batch.ticks,
                               batch.seqs.astype("int64", copy=False))
            try:
                confirmation = run(raw)
            except ChainStepError as exc:
                failures[exc.step] += 1
                continue
            stored += 1
            rows.update(confirmation.inserted)
        return stored, rows, failures, lost

    async def _flush_batches(self) -> None:
        """Store what the rings received since the last batch, and count what was stored.

        The counting belongs to the store itself, not to this coroutine: when shutdown cancels
        the batch loop while a store is running in the executor, the store still completes
        (its rows are in the database) and is counted (:meth:`_drain` waits for it), so the
        exit summary counts every stored row.
        """
        assert self._batcher is not None
        batches = self._batcher.drain()
        if not batches:
            return
        loop = asyncio.get_running_loop()
        storing = loop.run_in_executor(self._executor, self._store_batches, batches)
        storing.add_done_callback(self._count_stored)
        self._storing.add(storing)
        await asyncio.shield(storing)

    def _count_stored(self, storing: asyncio.Future) -> None:
        """Count one store's outcome (on the loop, once it completed, awaited or not)."""
        self._storing.discard(storing)
        if storing.cancelled() or storing.exception() is not None:
            return  # the awaiting side logs it
        stored, rows, failures, lost = storing.result()
        c = self.counters
        c.batches += stored
        c.rows.update(rows)
        c.batch_failures.update(failures)
        c.batch_ticks_lost += lost

    async def _batch_loop(self) -> None:
        interval = self.config.node.batch_interval
        while True:
            await asyncio.sleep(interval)
            await self._flush_batches()

    async def _status_loop(self) -> None:
        interval = self.config.node.status_interval
        while True:
            await asyncio.sleep(interval)
            print(self.status_line(), file=self.out, flush=True)

    # ------------------------------------------------------------------ reporting

    def _order_counts(self) -> dict[str, int]:
        """Orders by result (holds are no orders), for ``/metrics`` (read off the loop)."""
        counts = copy_counts(self.counters.results)
        counts.pop("hold", None)
        return counts

    def chain_latency(self, chain: str) -> dict[str, Any]:
        """Return a chain's whole-execution latency summary (ns) from the engine's histograms."""
        assert self.registry is not None
        return self.registry.histogram(chain).summary()

    def status_line(self) -> str:
        """One line: uptime, ticks/s since the last line, decisions, orders, positions, p50/p99."""
        assert self.feed is not None
        now = time.monotonic_ns()
        received = self.feed.stats.received
        since = max(1, now - (self._status_ns or self._started_ns))
        rate = (received - self._ticks_at_status) * 1e9 / since
        self._ticks_at_status, self._status_ns = received, now
        c = self.counters
        decide = self.chain_latency(AI_DECISION_CHAIN)
        store = self.chain_latency(MT5_TO_DATABASE_CHAIN)
        assert self.parts is not None
        positions = self.parts.positions()
        shown = " ".join(f"{s}:{v:+g}" for s, v in positions.items() if v) or "flat"
        return (f"[node {(now - self._started_ns) / 1e9:7.1f}s] ticks/s={rate:,.0f} "
                f"decisions={c.decisions} orders={c.orders} positions={shown} "
                f"decision p50={_format_ns(decide['p50_ns'])} p99={_format_ns(decide['p99_ns'])} "
                f"store p50={_format_ns(store['p50_ns'])} p99={_format_ns(store['p99_ns'])} "
                f"batches={c.batches}{self._alert_text()}{self._feed_text()}")

    def _feed_text(self) -> str:
        """`` feed=STALE (...)`` while new orders are blocked for the feed's sake, else nothing."""
        assert self.feed is not None
        state = self.feed.state
        if not state.stale:
            return ""
        why = [w for w, on in (("silent", state.silent), (f"terminal {state.terminal}",
                                                         state.terminal != "connected"),
                               ("trading disabled", state.terminal == "connected"
                                and not state.trade_allowed)) if on]
        return f" feed=STALE ({', '.join(why)}: orders blocked)"

    def _alert_text(self) -> str:
        if self.observers is None:
            return ""
        a = self.observers.alerts
        return (f" warnings={a['slow_step']} escalations={a['escalation']} "
                f"recoveries={a['recovery']}{self.observers.escalated_text()}"
                f"{self.observers.shipping_text()}")

    def summary(self) -> dict[str, Any]:
        """Return what the node did, as plain data (the ``--json`` output of ``flowchain node``)."""
        assert self.feed is not None and self.registry is not None and self.parts is not None
        c = self.counters
        elapsed = (time.monotonic_ns() - self._started_ns) / 1e9 if self._started_ns else 0.0
        chains = {}
        for name in (AI_DECISION_CHAIN, MT5_TO_DATABASE_CHAIN):
            stats = self.registry.stats(name)
            chains[name] = {
                "executions": stats.executions, "failures": stats.failures,
                "latency": stats.latency.to_dict(),
                "steps": {s.name: {"p50_ns": s.latency.p50_ns, "p99_ns": s.latency.p99_ns,
                                   "errors": s.errors}
                          for s in stats.steps},
            }
        return {
            "stopped_by": self._stop_reason,
            "feed": self.config.node.feed,
            "broker": self.config.node.broker,
            "db": self.config.node.db,
            "start_s": round(self.start_s, 4),
            "run_s": round(elapsed, 3),
            "ticks": self.feed.stats.received,
            "ticks_per_s": round(self.feed.stats.received / elapsed, 1) if elapsed else 0.0,
            "decisions": c.decisions,
            "decision_failures": dict(c.decision_failures),
            "first_decision_ns": c.first_decision_ns,
            "results": {**c.results, **self.parts.trading.outcomes},  # pending ones as settled since
            "orders": c.orders,
            "positions": self.parts.positions(),
            "pnl": round(self.parts.pnl(), 2),
            "account_currency": self.parts.account_currency,
            "exposure": {s: round(v, 2) for s, v in self.parts.exposure().items()},
            "trading": self.parts.orders_summary(),
            "batches": c.batches,
            "batch_failures": dict(c.batch_failures),
            "batch_ticks_lost": c.batch_ticks_lost,
            "rows": dict(c.rows),
            "feed_stats": self.feed.stats.as_dict(),
            "refused_quotes": dict(getattr(self.parts.components.get("FeatureEngine"),
                                           "refused", {})),
            "quarantined": {r: n for r, n in getattr(self.parts.components.get("DataValidator"),
                                                     "rejected_by_reason", {}).items() if n},
            "feed_state": self.feed.state.as_dict(),
            "chains": chains,
            **(self.observers.summary() if self.observers is not None else {}),
        }

    # ------------------------------------------------------------------ lifecycle

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask the node to drain, flush and return (safe from a signal handler, twice too)."""
        if self._stop is not None and not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    async def _watch_feed(self) -> None:
        assert self.feed is not None
        await self.feed.wait_finished()
        self.request_stop("feed finished")

    async def run(self, install_signals: bool = True) -> dict[str, Any]:
        """Start, run until stopped (signal, duration, end of feed), drain, flush, summarize.

        Parameters
        ----------
        install_signals : bool
            Handle SIGINT and SIGTERM by stopping gracefully (main thread only).

        Returns
        -------
        dict
            :meth:`summary`.

        Raises
        ------
        NodeStartError
            When the node cannot start (see :meth:`start`).
        """
        loop = asyncio.get_running_loop()
        try:
            await self.start()
        except BaseException:
            await self._close()
            raise
        assert self._stop is not None
        self._started_ns = time.monotonic_ns()
        installed: list[int] = []
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)
                    installed.append(sig)
            if self.parts is not None and hasattr(signal, "SIGUSR1"):
                with contextlib.suppress(ValueError):  # main thread only
                    self.parts.trading.risk.install_kill_signal(signal.SIGUSR1)
        tasks = [loop.create_task(self._batch_loop()), loop.create_task(self._watch_feed())]
        if self.config.node.status_interval:
            tasks.append(loop.create_task(self._status_loop()))
        try:
            duration = self.config.duration
            try:
                await asyncio.wait_for(self._stop.wait(), duration)
            except asyncio.TimeoutError:
                self.request_stop("duration")
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._drain()
        return self.summary()

    async def _drain(self) -> None:
        """Stop the feed, store the last batch, close the broker and the database."""
        if self.feed is not None:
            await self.feed.stop()
        if self._storing:  # a store the cancelled batch loop left running: let it be counted
            await asyncio.gather(*self._storing, return_exceptions=True)
        if self._batcher is not None:
            try:
                await self._flush_batches()
            except Exception:  # the summary still reports what was stored before
                log.exception("the last batch could not be stored")
        await self._close()

    async def _close(self) -> None:
        gc.unfreeze()
        if self.observers is not None:  # after the last batch: its executions are recorded
            await asyncio.get_running_loop().run_in_executor(None, self.observers.close)
        if self.parts is not None:
            await self.parts.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

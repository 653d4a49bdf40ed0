"""Prometheus exposition: the engine's HDR counts become Prometheus histograms at scrape time.

Nothing here runs on the hot path. :class:`FlowChainCollector` is a ``prometheus_client``
custom collector: on every rendering it reads each runner's counters and the used part of its
native HDR counts as one consistent snapshot (:func:`read_figures`: a chain's counters agree
within one scrape), folds the counts into the fixed buckets of :data:`BUCKETS_S` (1 us to
10 s) and yields

``flowchain_chain_execution_seconds``   histogram, labels chain, tenant (successful executions)
``flowchain_step_execution_seconds``    histogram, labels chain, step, tenant
``flowchain_chain_failure_seconds``     histogram, labels chain, tenant (failed executions,
                                        start to failure: their own series, never mixed)
``flowchain_step_failure_seconds``      histogram, labels chain, step, tenant (until it raised)
``flowchain_chains_executed_total``     counter, labels chain, tenant
``flowchain_chain_failures_total``      counter, labels chain, tenant
``flowchain_step_failures_total``       counter, labels chain, step, tenant
``flowchain_chain_success_ratio``       gauge, labels chain, tenant
``flowchain_chain_executions_running``  gauge, labels chain, tenant
``flowchain_step_escalated``            gauge, labels chain, step, tenant (1 while escalated)

plus whatever its *providers* yield (feed counters: :func:`feed_metrics`; order counters:
:func:`counter_metrics`). A bucket holds every recorded value whose HDR bucket starts at or
below its bound, exact to the histogram's 0.1% precision.

Registries are per tenant: pass ``{tenant: registry}`` to label each registry's chains.
:class:`ExpositionCache` renders the exposition off the request path, so a scrape costs about
what serving its bytes costs, whatever the number of chains.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from flowchain.observe._reader import bucket_values, built_runners
from flowchain.periodic import PeriodicThread

log = logging.getLogger("flowchain.metrics")

BUCKETS_S = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
             1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Histogram bucket bounds in seconds: microseconds to seconds, 1-2.5-5 per decade."""

Provider = Callable[[], Iterable[Metric]]


class HdrToBuckets:
    """Fold HDR counts rows into cumulative Prometheus buckets for one counts layout."""

    def __init__(self, layout: Mapping[str, int], bounds_s: Iterable[float] = BUCKETS_S) -> None:
        self.bounds_s = tuple(bounds_s)
        lowest, self._median = bucket_values(layout)
        bounds_ns = np.array([round(b * 1e9) for b in self.bounds_s], dtype=np.int64)
        self._cut = np.searchsorted(lowest, bounds_ns, side="right")
        self._labels = [_le(b) for b in self.bounds_s]

    def convert(self, counts: np.ndarray) -> tuple[list[tuple[str, float]], float, int]:
        """Return (cumulative buckets with ``+Inf``, sum in seconds, count) of a counts row.

        The row may be cut short after its last used bucket (the rest counts as zeros).
        """
        cumulative = np.concatenate(([0], np.cumsum(counts, dtype=np.int64)))
        total = int(cumulative[-1])
        cuts = np.minimum(self._cut, len(counts))
        buckets = [(label, float(cumulative[cut])) for label, cut in zip(self._labels, cuts, strict=False)]
        buckets.append(("+Inf", float(total)))
        total_ns = float(np.dot(counts.astype(np.float64), self._median[: len(counts)]))
        return buckets, total_ns / 1e9, total


def _le(bound: float) -> str:
    return repr(float(bound))


@dataclass(frozen=True, slots=True)
class ChainFigures:
    """One runner's figures, read together: counters and HDR counts that agree.

    ``counts`` holds rows ``0..n-1`` (steps) and ``n`` (the whole chain), cut after the highest
    bucket any row has used; ``failure_counts`` the same for failed executions (a step's time
    until it raised, the chain's time until the failure). ``completed`` is ``counts`` total of the chain row plus
    ``failures``; ``running`` the executions started and not yet completed when read.
    """

    tenant: str
    definition: Any
    counts: np.ndarray
    failure_counts: np.ndarray
    step_errors: np.ndarray
    completed: int
    failures: int
    running: int
    escalated: tuple[bool, ...]


def read_figures(tenant: str, definition: Any, runner: Any, escalated: tuple[bool, ...],
                 attempts: int = 8) -> tuple[ChainFigures, bool]:
    """Read one runner's counters and HDR counts as one consistent snapshot.

    The runner keeps recording on its own thread while this reads. The cheap read copies only
    the used part of the counts (up to the highest recorded value's bucket) and is repeated
    until nothing changed between its first and its last look (each record bumps a row's
    count in ``stats``; each start and failure the runner's counters). A numpy copy may
    release the GIL, so under a busy writer every cheap read can race; after ``attempts`` of
    them the runner's own :meth:`~flowchain.ChainRunner.snapshot` copies every row in one step
    with no thread switch. Either way a chain's figures agree within one scrape:
    ``completed == chain count + failures``, ``failures == sum(step errors)``. Returns the
    figures and whether the cheap read sufficed (False: the whole-row snapshot was taken).
    """
    hist, fail_hist = runner.histograms, runner.failure_histograms
    n = len(definition.steps)

    def used_part(h: Any, stats: np.ndarray) -> np.ndarray:
        used = int(h.index_of(int(stats[:, 2].max()))) + 1 if stats[:, 0].any() else 1
        return np.array(h.counts[: n + 1, :used])

    for _ in range(attempts):
        started, failed = int(runner.executions), int(runner.failures)
        stats = np.array(hist.stats[: n + 1])
        fail_stats = np.array(fail_hist.stats[: n + 1])
        counts = used_part(hist, stats)
        failure_counts = used_part(fail_hist, fail_stats)
        errors = np.array(runner.step_errors[:n], dtype=np.int64)
        if (int(runner.executions) == started and int(runner.failures) == failed
                and np.array_equal(hist.stats[: n + 1], stats)
                and np.array_equal(fail_hist.stats[: n + 1], fail_stats)):
            cheap = True
            break
    else:
        snap = runner.snapshot()
        started, failed = int(snap.executions), int(snap.failures)
        stats = snap.stats[: n + 1]
        counts, failure_counts = snap.counts[: n + 1], snap.failure_counts[: n + 1]
        errors = snap.step_errors[:n]
        cheap = False
    ok = int(stats[n, 0])
    completed = ok + failed
    return ChainFigures(tenant, definition, counts, failure_counts, errors, completed, failed,
                        max(0, started - completed), escalated), cheap


class FlowChainCollector:
    """A ``prometheus_client`` collector over one or several (per-tenant) chain registries.

    Parameters
    ----------
    registries : ChainRegistry or mapping of tenant -> ChainRegistry
        A single registry is labelled ``tenant="default"``.
    providers : iterable of callables
        Each returns Prometheus metric families at scrape time (feed, order counters).
    monitors : Monitor or mapping of tenant -> Monitor, optional
        Source of ``flowchain_step_escalated`` (1 while a step is escalated, else 0).

    Attributes
    ----------
    counters : dict
        ``scrapes``, ``whole_snapshots`` (a runner's figures whose cheap reads all raced with
        its writer, read with the runner's whole-row snapshot instead).

    Examples
    --------
    >>> prom = CollectorRegistry()
    >>> prom.register(FlowChainCollector(registry, [feed_metrics({"sim": feed})]))
    """

    def __init__(self, registries: Any | Mapping[str, Any],
                 providers: Iterable[Provider] = (), monitors: Any = None) -> None:
        if isinstance(registries, Mapping):
            self.registries = dict(registries)
        else:
            self.registries = {"default": registries}
        if monitors is None or isinstance(monitors, Mapping):
            self.monitors = dict(monitors or {})
        else:
            self.monitors = {next(iter(self.registries)): monitors}
        self.providers: list[Provider] = list(providers)
        self.provider_errors = 0
        self.counters = {"scrapes": 0, "whole_snapshots": 0}
        self._converters: dict[tuple, HdrToBuckets] = {}

    def add_provider(self, provider: Provider) -> None:
        """Add a callable yielding extra metric families on every scrape."""
        self.providers.append(provider)

    def describe(self) -> list[Metric]:
        return []

    def _converter(self, registry: Any) -> HdrToBuckets:
        layout = registry.histogram_settings.layout()
        key = tuple(sorted(layout.items()))
        conv = self._converters.get(key)
        if conv is None:
            conv = self._converters[key] = HdrToBuckets(layout)
        return conv

    def snapshot(self) -> list[tuple[HdrToBuckets, ChainFigures]]:
        """Read every tenant's latest runners (one :class:`ChainFigures` each, consistent)."""
        out = []
        for tenant, registry in self.registries.items():
            conv = self._converter(registry)
            monitor = self.monitors.get(tenant)
            for definition, runner in self._latest_runners(registry):
                escalated = tuple(monitor is not None and monitor.is_escalated(
                    definition.chain_id, i) for i in range(len(definition.steps)))
                figures, cheap = read_figures(tenant, definition, runner, escalated)
                if not cheap:
                    self.counters["whole_snapshots"] += 1
                out.append((conv, figures))
        return out

    def collect(self) -> Iterable[Metric]:
        self.counters["scrapes"] += 1
        chain_hist = HistogramMetricFamily(
            "flowchain_chain_execution_seconds",
            "Duration of successful chain executions, from the engine's HDR counts.",
            labels=["chain", "tenant"])
        step_hist = HistogramMetricFamily(
            "flowchain_step_execution_seconds",
            "Duration of successful step executions, from the engine's HDR counts.",
            labels=["chain", "step", "tenant"])
        chain_fail_hist = HistogramMetricFamily(
            "flowchain_chain_failure_seconds",
            "Duration of failed chain executions (start to failure), from the engine's HDR "
            "counts.", labels=["chain", "tenant"])
        step_fail_hist = HistogramMetricFamily(
            "flowchain_step_failure_seconds",
            "Duration of step executions that raised (until they raised).",
            labels=["chain", "step", "tenant"])
        executed = CounterMetricFamily("flowchain_chains_executed",
                                       "Chain executions completed (succeeded or failed).",
                                       labels=["chain", "tenant"])
        failures = CounterMetricFamily("flowchain_chain_failures",
                                       "Chain executions that failed.", labels=["chain", "tenant"])
        step_failures = CounterMetricFamily("flowchain_step_failures",
                                            "Step executions that raised.",
                                            labels=["chain", "step", "tenant"])
        ratio = GaugeMetricFamily("flowchain_chain_success_ratio",
                                  "Successful executions / completed executions since start.",
                                  labels=["chain", "tenant"])
        running = GaugeMetricFamily("flowchain_chain_executions_running",
                                    "Executions started and not yet completed.",
                                    labels=["chain", "tenant"])
        escalated = GaugeMetricFamily("flowchain_step_escalated",
                                      "1 while the step's error rate is escalated, else 0.",
                                      labels=["chain", "step", "tenant"])
        for conv, f in self.snapshot():
            chain, tenant = f.definition.name, f.tenant
            n = len(f.definition.steps)
            for i, step in enumerate(f.definition.steps):
                buckets, total_s, _ = conv.convert(f.counts[i])
                step_hist.add_metric([chain, step.name, tenant], buckets, total_s)
                buckets, total_s, _ = conv.convert(f.failure_counts[i])
                step_fail_hist.add_metric([chain, step.name, tenant], buckets, total_s)
                step_failures.add_metric([chain, step.name, tenant], float(f.step_errors[i]))
                escalated.add_metric([chain, step.name, tenant], 1.0 if f.escalated[i] else 0.0)
            buckets, total_s, _ = conv.convert(f.counts[n])
            chain_hist.add_metric([chain, tenant], buckets, total_s)
            buckets, total_s, _ = conv.convert(f.failure_counts[n])
            chain_fail_hist.add_metric([chain, tenant], buckets, total_s)
            executed.add_metric([chain, tenant], float(f.completed))
            failures.add_metric([chain, tenant], float(f.failures))
            running.add_metric([chain, tenant], float(f.running))
            if f.completed:
                ratio.add_metric([chain, tenant], (f.completed - f.failures) / f.completed)
        yield from (chain_hist, step_hist, chain_fail_hist, step_fail_hist, executed, failures,
                    step_failures, ratio, running, escalated)
        for provider in self.providers:
            try:
                yield from provider()
            except Exception:  # a broken provider must not break the whole scrape
                self.provider_errors += 1
                log.exception("metrics provider %r failed", provider)

    @staticmethod
    def _latest_runners(registry: Any) -> list[tuple[Any, Any]]:
        """One runner per chain name: the latest version that has run."""
        by_name: dict[str, tuple[int, Any, Any]] = {}
        for definition, runner in built_runners(registry):
            version = registry.version_of(definition.chain_id).version
            held = by_name.get(definition.name)
            if held is None or version > held[0]:
                by_name[definition.name] = (version, definition, runner)
        return [(d, r) for _, d, r in sorted(by_name.values(), key=lambda v: v[1].name)]


def feed_metrics(feeds: Mapping[str, Any]) -> Provider:
    """Return a provider of feed counters and state for ``{feed name: feed}``.

    Families: ``flowchain_feed_ticks_received_total``, ``flowchain_feed_rejects_total``
    (reason), ``flowchain_feed_drops_total`` (reason), ``flowchain_feed_gaps_total``,
    ``flowchain_feed_backfilled_total``, ``flowchain_feed_restarts_total``,
    ``flowchain_feed_handler_errors_total`` and the gauges ``flowchain_feed_connected``,
    ``flowchain_feed_stale``; label ``feed``.
    """
    def provide() -> Iterable[Metric]:
        simple = {
            "received": ("flowchain_feed_ticks_received", "Ticks written into a ring."),
            "gaps": ("flowchain_feed_gaps", "Sequence gaps detected."),
            "backfilled": ("flowchain_feed_backfilled", "Ticks recovered by backfill."),
            "restarts": ("flowchain_feed_restarts", "Source restarts detected."),
            "handler_errors": ("flowchain_feed_handler_errors",
                               "Exceptions raised by the per-tick handler."),
        }
        families = {attr: CounterMetricFamily(name, doc, labels=["feed"])
                    for attr, (name, doc) in simple.items()}
        rejects = CounterMetricFamily("flowchain_feed_rejects", "Malformed input, by reason.",
                                      labels=["feed", "reason"])
        drops = CounterMetricFamily("flowchain_feed_drops", "Input not delivered, by reason.",
                                    labels=["feed", "reason"])
        connected = GaugeMetricFamily("flowchain_feed_connected", "1 while the source is up.",
                                      labels=["feed"])
        stale = GaugeMetricFamily("flowchain_feed_stale",
                                  "1 while new orders are blocked for the feed (silent, "
                                  "terminal down).",
                                  labels=["feed"])
        for name, feed in feeds.items():
            stats, state = feed.stats, feed.state
            for attr, family in families.items():
                family.add_metric([name], float(getattr(stats, attr)))
            for reason, n in sorted(stats.rejects.items()):
                rejects.add_metric([name, reason], float(n))
            for reason, n in sorted(stats.drops.items()):
                drops.add_metric([name, reason], float(n))
            connected.add_metric([name], 1.0 if state.connected else 0.0)
            stale.add_metric([name], 1.0 if state.stale else 0.0)
        yield from families.values()
        yield from (rejects, drops, connected, stale)

    return provide


def counter_metrics(name: str, documentation: str, label: str,
                    read: Callable[[], Mapping[str, float]]) -> Provider:
    """Return a provider of one counter family from ``read()`` -> ``{label value: count}``.

    For the order counters, e.g.
    ``counter_metrics("flowchain_orders", "Orders by outcome.", "status", broker.counts)``.

    Raises
    ------
    ValueError
        When ``name`` ends in ``_total`` (the exposition adds it).
    """
    if name.endswith("_total"):
        raise ValueError(f"counter name {name!r} must not end in _total; the exposition adds it")

    def provide() -> Iterable[Metric]:
        family = CounterMetricFamily(name, documentation, labels=[label])
        for value, n in sorted(read().items()):
            family.add_metric([str(value)], float(n))
        yield family

    return provide


def exposition_registry(collector: FlowChainCollector) -> CollectorRegistry:
    """Return a fresh Prometheus registry holding only ``collector``."""
    prom = CollectorRegistry(auto_describe=False)
    prom.register(collector)
    return prom


def render(prom: CollectorRegistry) -> bytes:
    """Return the text exposition of ``prom`` (what ``/metrics`` serves)."""
    return generate_latest(prom)


class ExpositionCache:
    """The text exposition of a Prometheus registry, rendered off the request path.

    Rendering every chain's histograms costs far more than serving bytes (tens of ms with a
    hundred chains), so a daemon thread (:meth:`start`) renders a fresh exposition every
    ``refresh_s`` while someone scraped in the last ``idle_s`` seconds (nobody scraping: no
    rendering at all), and a scrape serves its latest rendering. A scrape renders inline only
    when there is none yet, or when the refresher is not running or went idle and the latest
    rendering is older than ``max_age_s``. Each rendering is one consistent snapshot of every
    chain (see :func:`read_figures`).

    Parameters
    ----------
    prom : CollectorRegistry
    refresh_s : float
        Seconds between background renderings; a scrape may see figures up to
        ``max_age_s = 2 * refresh_s`` old.
    idle_s : float
        Stop rendering when no scrape came for this long.

    Attributes
    ----------
    counters : dict
        ``renders`` (in the background), ``inline_renders`` (a scrape waited for one),
        ``served``, ``render_errors``.

    Raises
    ------
    ValueError
        When ``refresh_s`` or ``idle_s`` is not positive.
    """

    def __init__(self, prom: CollectorRegistry, *, refresh_s: float = 1.0,
                 idle_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not refresh_s > 0 or not idle_s > 0:
            raise ValueError(f"refresh_s and idle_s must be positive, got {refresh_s}, {idle_s}")
        self.prom = prom
        self.refresh_s = refresh_s
        self.max_age_s = 2 * refresh_s
        self.idle_s = idle_s
        self.clock = clock
        self.counters = {"renders": 0, "inline_renders": 0, "served": 0, "render_errors": 0}
        self._body: bytes | None = None
        self._rendered_at = 0.0
        self._requested_at: float | None = None
        self._lock = threading.Lock()
        self._closing = False
        self._periodic = PeriodicThread(self._refresh, refresh_s, "flowchain-metrics")

    def get(self) -> bytes:
        """Return the exposition: the cached rendering, or a fresh one when it is too old.

        Raises
        ------
        Exception
            Whatever the collectors raised when an inline rendering was needed.
        """
        now = self.clock()
        previous, self._requested_at = self._requested_at, now
        body = self._body
        # while scrapes keep coming the refresher keeps rendering: serve what it last made,
        # even a little late (a rendering can outlast refresh_s on a busy machine); render
        # here only when there is none, or when it went idle and its latest is too old
        refreshing = (self._periodic.running and previous is not None
                      and now - previous <= self.idle_s)
        if body is None or (not refreshing and now - self._rendered_at > self.max_age_s):
            with self._lock:
                if self._body is None or (not refreshing
                                          and self.clock() - self._rendered_at > self.max_age_s):
                    self.counters["inline_renders"] += 1
                    self._render()
                body = self._body
        self.counters["served"] += 1
        assert body is not None
        return body

    def _render(self) -> None:
        at = self.clock()
        self._body = generate_latest(self.prom)
        self._rendered_at = at

    def _refresh(self) -> None:
        requested = self._requested_at
        if self._closing or requested is None or self.clock() - requested > self.idle_s:
            return
        try:
            with self._lock:
                self._render()
                self.counters["renders"] += 1
        except Exception:  # a broken collector must not end the refresher; the scrape shows it
            self.counters["render_errors"] += 1
            log.exception("rendering the metrics exposition failed")

    def start(self) -> ExpositionCache:
        """Render in the background every ``refresh_s`` until :meth:`close`."""
        self._closing = False
        self._periodic.start()
        return self

    def close(self) -> None:
        """Stop the background rendering."""
        self._closing = True
        self._periodic.stop()


class MetricsServer:
    """Serve ``/metrics`` for a collector from prometheus_client's own HTTP server thread.

    Parameters
    ----------
    collector : FlowChainCollector
    host : str
        Listen address; loopback by default.
    port : int
        0 picks a free port (read it back from :attr:`port`).
    """

    def __init__(self, collector: FlowChainCollector, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.registry = exposition_registry(collector)
        self.host = host
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = int(self._server.server_address[1])
        self._closed = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving."""
        if not self._closed.is_set():
            self._closed.set()
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object | None) -> None:
        self.close()

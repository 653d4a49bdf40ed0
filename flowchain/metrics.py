"""Prometheus exposition: the engine's HDR counts become Prometheus histograms at scrape time.

Nothing here runs on the hot path. :class:`FlowChainCollector` is a ``prometheus_client``
custom collector: on every scrape it copies each runner's native HDR counts, folds them into
the fixed buckets of :data:`BUCKETS_S` (1 us to 10 s) and yields

``flowchain_chain_execution_seconds``   histogram, labels chain, tenant (successful executions)
``flowchain_step_execution_seconds``    histogram, labels chain, step, tenant
``flowchain_chains_executed_total``     counter, labels chain, tenant
``flowchain_chain_failures_total``      counter, labels chain, tenant
``flowchain_step_failures_total``       counter, labels chain, step, tenant
``flowchain_chain_success_ratio``       gauge, labels chain, tenant

plus whatever its *providers* yield (feed counters: :func:`feed_metrics`; order counters:
:func:`counter_metrics`). A bucket holds every recorded value whose HDR bucket starts at or
below its bound, exact to the histogram's 0.1% precision.

Registries are per tenant: pass ``{tenant: registry}`` to label each registry's chains.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable, Mapping, Optional, Union

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, Metric)

from flowchain.monitor import built_runners

log = logging.getLogger("flowchain.metrics")

BUCKETS_S = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
             1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Histogram bucket bounds in seconds: microseconds to seconds, 1-2.5-5 per decade."""

Provider = Callable[[], Iterable[Metric]]


def bucket_values(layout: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Return the lowest and the median equivalent value (ns) of every counts index.

    The same bucket arithmetic as HdrHistogram's ``get_value_from_index``, vectorized.
    """
    n = int(layout["counts_len"])
    shm = int(layout["sub_bucket_half_count_magnitude"])
    half = int(layout["sub_bucket_half_count"])
    unit = int(layout["unit_magnitude"])
    index = np.arange(n, dtype=np.int64)
    bucket = (index >> shm) - 1
    sub = (index & (half - 1)) + half
    low = bucket < 0
    sub[low] -= half
    bucket[low] = 0
    lowest = sub << (bucket + unit)
    width = np.left_shift(np.int64(1), bucket + unit)
    return lowest, lowest + (width >> 1)


class HdrToBuckets:
    """Fold HDR counts rows into cumulative Prometheus buckets for one counts layout."""

    def __init__(self, layout: Mapping[str, int], bounds_s: Iterable[float] = BUCKETS_S) -> None:
        self.bounds_s = tuple(bounds_s)
        lowest, self._median = bucket_values(layout)
        bounds_ns = np.array([round(b * 1e9) for b in self.bounds_s], dtype=np.int64)
        self._cut = np.searchsorted(lowest, bounds_ns, side="right")
        self._labels = [_le(b) for b in self.bounds_s]

    def convert(self, counts: np.ndarray) -> tuple[list[tuple[str, float]], float, int]:
        """Return (cumulative buckets with ``+Inf``, sum in seconds, count) of a counts row."""
        cumulative = np.concatenate(([0], np.cumsum(counts, dtype=np.int64)))
        total = int(cumulative[-1])
        buckets = [(label, float(cumulative[cut])) for label, cut in zip(self._labels, self._cut)]
        buckets.append(("+Inf", float(total)))
        total_ns = float(np.dot(counts.astype(np.float64), self._median))
        return buckets, total_ns / 1e9, total


def _le(bound: float) -> str:
    return repr(float(bound))


class FlowChainCollector:
    """A ``prometheus_client`` collector over one or several (per-tenant) chain registries.

    Parameters
    ----------
    registries : ChainRegistry or mapping of tenant -> ChainRegistry
        A single registry is labelled ``tenant="default"``.
    providers : iterable of callables
        Each returns Prometheus metric families at scrape time (feed, order counters).

    Examples
    --------
    >>> prom = CollectorRegistry()
    >>> prom.register(FlowChainCollector(registry, [feed_metrics({"sim": feed})]))
    """

    def __init__(self, registries: Union[Any, Mapping[str, Any]],
                 providers: Iterable[Provider] = ()) -> None:
        if isinstance(registries, Mapping):
            self.registries = dict(registries)
        else:
            self.registries = {"default": registries}
        self.providers: list[Provider] = list(providers)
        self.provider_errors = 0
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

    def collect(self) -> Iterable[Metric]:
        chain_hist = HistogramMetricFamily(
            "flowchain_chain_execution_seconds",
            "Duration of successful chain executions, from the engine's HDR counts.",
            labels=["chain", "tenant"])
        step_hist = HistogramMetricFamily(
            "flowchain_step_execution_seconds",
            "Duration of successful step executions, from the engine's HDR counts.",
            labels=["chain", "step", "tenant"])
        executed = CounterMetricFamily("flowchain_chains_executed",
                                       "Chain executions started.", labels=["chain", "tenant"])
        failures = CounterMetricFamily("flowchain_chain_failures",
                                       "Chain executions that failed.", labels=["chain", "tenant"])
        step_failures = CounterMetricFamily("flowchain_step_failures",
                                            "Step executions that raised.",
                                            labels=["chain", "step", "tenant"])
        ratio = GaugeMetricFamily("flowchain_chain_success_ratio",
                                  "Successful executions / executions since start.",
                                  labels=["chain", "tenant"])
        for tenant, registry in self.registries.items():
            conv = self._converter(registry)
            for definition, runner in self._latest_runners(registry):
                chain = definition.name
                n = len(definition.steps)
                counts = np.array(runner.histograms.counts)     # one copy per scrape
                errors = np.array(runner.step_errors)
                for i, step in enumerate(definition.steps):
                    buckets, total_s, _ = conv.convert(counts[i])
                    step_hist.add_metric([chain, step.name, tenant], buckets, total_s)
                    step_failures.add_metric([chain, step.name, tenant], float(errors[i]))
                buckets, total_s, _ = conv.convert(counts[n])
                chain_hist.add_metric([chain, tenant], buckets, total_s)
                runs, failed = int(runner.executions), int(runner.failures)
                executed.add_metric([chain, tenant], float(runs))
                failures.add_metric([chain, tenant], float(failed))
                if runs:
                    ratio.add_metric([chain, tenant], (runs - failed) / runs)
        yield from (chain_hist, step_hist, executed, failures, step_failures, ratio)
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
        stale = GaugeMetricFamily("flowchain_feed_stale", "1 while new orders are blocked for the feed (silent, terminal down).",
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

    def __enter__(self) -> "MetricsServer":
        return self

    def __exit__(self, *exc: Optional[object]) -> None:
        self.close()

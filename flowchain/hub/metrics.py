"""``GET /metrics`` of a hub: Prometheus exposition aggregated per tenant, chain and step.

A custom collector reads the store at each scrape (the hub keeps no state, so every hub on one
PostgreSQL exposes the same figures; scrape one of them, or each behind a load balancer):

* ``flowchain_hub_executions_total{tenant,chain,step}``: executions in every stored interval
  (``step=""``: the whole chain), summed over nodes;
* ``flowchain_hub_errors_total{tenant,chain,step}``: failed ones;
* ``flowchain_hub_latency_seconds{tenant,chain,step,quantile}``: p50, p90, p99 and p999 of the
  exact HDR merge of all nodes' interval histograms over the last ``window_s`` (5 minutes);
* ``flowchain_hub_node_last_contact_seconds{node}``: Unix time of each node's last shipment;
* ``flowchain_hub_ingest_total{outcome}``: batches taken and refused by this hub process.

Every tenant's figures are here, so a hub given viewer tokens answers only a viewer's Bearer
token (:mod:`flowchain.hub.viewer_access`).
"""
from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from flowchain.hub.ingest_api import COUNTERS_KEY, STORE_KEY
from flowchain.hub.viewer_access import viewer_only

QUANTILES = (0.5, 0.9, 0.99, 0.999)
DEFAULT_WINDOW_S = 300.0
REGISTRY_KEY: web.AppKey[Any] = web.AppKey("metrics_registry", object)


class HubCollector:
    """Collect the hub's figures from its store at each scrape.

    Parameters
    ----------
    store : HubStore
    counters : mapping
        This process's ingest counters (``batches``, ``refused_*``, ``store_errors``).
    window_s : float
        The latency quantiles' window, in seconds back from the scrape.
    """

    def __init__(self, store: Any, counters: Mapping[str, int],
                 window_s: float = DEFAULT_WINDOW_S) -> None:
        self.store = store
        self.counters = counters
        self.window_s = window_s

    def collect(self) -> Iterator[Any]:
        labels = ["tenant", "chain", "step"]
        executions = CounterMetricFamily("flowchain_hub_executions", "Executions in the stored "
                                         "intervals of every node (step '': whole chain).",
                                         labels=labels)
        errors = CounterMetricFamily("flowchain_hub_errors", "Failed executions in the stored "
                                     "intervals of every node.", labels=labels)
        sums: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        for t in self.store.interval_totals():
            s = sums[(t.tenant, t.chain, t.step)]
            s[0] += t.count
            s[1] += t.errors
        for key, (count, failed) in sorted(sums.items()):
            executions.add_metric(list(key), count)
            errors.add_metric(list(key), failed)
        yield executions
        yield errors
        latency = GaugeMetricFamily(
            "flowchain_hub_latency_seconds", f"Latency quantiles of the exact merge of every "
            f"node's interval histograms over the last {self.window_s:g} s.",
            labels=[*labels, "quantile"])
        now = time.time_ns()
        start = now - int(self.window_s * 1e9)
        recent = {(t.tenant, t.chain, t.step) for t in self.store.interval_totals(
            start_ns=start, end_ns=now + 1)}
        for tenant, chain, step in sorted(recent):
            hist = self.store.merged_histogram(chain, step, start_ns=start, end_ns=now + 1,
                                               tenant=tenant)
            if not hist.count:
                continue
            for q in QUANTILES:
                latency.add_metric([tenant, chain, step, f"{q:g}"],
                                   hist.percentile(q * 100.0) / 1e9)
        yield latency
        contact = GaugeMetricFamily("flowchain_hub_node_last_contact_seconds",
                                    "Unix time of each node's last shipment.", labels=["node"])
        for record in self.store.nodes():
            contact.add_metric([record.node_id], record.last_contact_ns / 1e9)
        yield contact
        ingest = CounterMetricFamily("flowchain_hub_ingest", "Batches this hub process took "
                                     "(ok) or refused, by outcome.", labels=["outcome"])
        for key, value in sorted(dict(self.counters).items()):
            ingest.add_metric(["ok" if key == "batches" else key], value)
        yield ingest


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: the exposition, rendered off the event loop."""
    registry = request.app[REGISTRY_KEY]
    loop = asyncio.get_running_loop()
    try:
        body = await loop.run_in_executor(None, generate_latest, registry)
    except Exception as exc:  # the database is down: a failed scrape, which Prometheus records
        return web.Response(status=503, text=f"the hub's store is unavailable "
                                             f"({type(exc).__name__}: {exc})\n")
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application, *, window_s: float = DEFAULT_WINDOW_S) -> None:
    """Add ``/metrics`` to ``app`` (its store and counters must be set)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(app[STORE_KEY], app[COUNTERS_KEY], window_s))
    app[REGISTRY_KEY] = registry
    app.router.add_get("/metrics", viewer_only(metrics_handler))

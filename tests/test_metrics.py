"""Prometheus exposition: HDR counts folded into buckets at scrape time, parsed back."""
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ComponentRegistry
from flowchain.feeds.base import FeedState, FeedStats
from flowchain.histograms import DEFAULT_SETTINGS, LatencyHistogram
from flowchain.metrics import (BUCKETS_S, FlowChainCollector, HdrToBuckets, MetricsServer,
                               counter_metrics, exposition_registry, feed_metrics, render)


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(family, name, **labels):
    return [s for s in family.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def make_registry():
    components = ComponentRegistry()
    components.register("Double", lambda x: 2 * x)

    def check(x):
        if x >= 1000:
            raise ValueError(f"value {x} out of range")
        return x

    components.register("Check", check)
    reg = ChainRegistry(components, ring_capacity=64)
    cid = reg.register_chain(ChainBuilder("pricing").step("double", "Double", "a", "b", 1)
                             .step("check", "Check", "b", "c", 1).build())
    return reg, cid


def test_buckets_match_exact_counts_of_recorded_values():
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.integers(1, 2000, 500), rng.integers(900, 30_000_000, 500),
                             [1000, 2500, 10_000_000_000]])
    hist = LatencyHistogram.from_values(values.tolist())
    counts = np.frombuffer(hist.hdr.counts, dtype=np.int64)
    conv = HdrToBuckets(DEFAULT_SETTINGS.layout())
    buckets, total_s, total = conv.convert(counts)
    assert total == len(values) and buckets[-1] == ("+Inf", float(len(values)))
    for (label, cum), bound in zip(buckets, BUCKETS_S):
        exact = np.count_nonzero(values <= round(bound * 1e9))
        # HDR precision: 0.1% of a value around the bound may land either side
        near = np.count_nonzero(np.abs(values - bound * 1e9) <= bound * 1e9 * 1e-3)
        assert abs(cum - exact) <= near, (label, cum, exact)
    assert total_s == pytest.approx(values.sum() / 1e9, rel=1e-3)


def test_scrape_exposes_chain_and_step_histograms_counters_and_ratio():
    reg, cid = make_registry()
    runner = reg.runner(cid)
    for x in range(60):
        runner.run(x)
    for x in (500, 600):
        with pytest.raises(ChainStepError):
            runner.run(x)
    text = render(exposition_registry(FlowChainCollector(reg))).decode()
    fams = families(text)
    chain_count = samples(fams["flowchain_chain_execution_seconds"],
                          "flowchain_chain_execution_seconds_count", chain="pricing",
                          tenant="default")
    assert chain_count[0].value == 60
    step_buckets = samples(fams["flowchain_step_execution_seconds"],
                           "flowchain_step_execution_seconds_bucket", step="double")
    assert [s.labels["le"] for s in step_buckets][-1] == "+Inf"
    assert step_buckets[-1].value == 62           # the double step succeeded every time
    values = [s.value for s in step_buckets]
    assert values == sorted(values)               # cumulative
    assert samples(fams["flowchain_chains_executed"], "flowchain_chains_executed_total",
                   chain="pricing")[0].value == 62
    assert samples(fams["flowchain_chain_failures"], "flowchain_chain_failures_total",
                   chain="pricing")[0].value == 2
    assert samples(fams["flowchain_step_failures"], "flowchain_step_failures_total",
                   step="check")[0].value == 2
    assert samples(fams["flowchain_chain_success_ratio"], "flowchain_chain_success_ratio",
                   chain="pricing")[0].value == pytest.approx(60 / 62)


def test_tenant_label_per_registry_and_unrun_chains_absent():
    reg_a, cid_a = make_registry()
    reg_b, _ = make_registry()
    reg_a.runner(cid_a).run(1)
    text = render(exposition_registry(FlowChainCollector({"desk_a": reg_a, "desk_b": reg_b})))
    fams = families(text.decode())
    tenants = {s.labels["tenant"] for s in fams["flowchain_chains_executed"].samples}
    assert tenants == {"desk_a"}


class FakeFeed:
    def __init__(self):
        self.stats = FeedStats()
        self.state = FeedState()


def test_feed_and_order_providers_and_a_broken_provider_is_counted():
    feed = FakeFeed()
    feed.stats.received = 42
    feed.stats.reject("short")
    feed.stats.drop("duplicate", 3)
    feed.state.update(connected=True, stale=True)
    orders = {"filled": 5, "rejected": 1}
    reg, _ = make_registry()

    def broken():
        raise RuntimeError("provider bug")

    collector = FlowChainCollector(reg, [feed_metrics({"sim": feed}), broken,
                                         counter_metrics("flowchain_orders", "Orders.", "status",
                                                         lambda: orders)])
    fams = families(render(exposition_registry(collector)).decode())
    assert fams["flowchain_feed_ticks_received"].samples[0].value == 42
    assert samples(fams["flowchain_feed_rejects"], "flowchain_feed_rejects_total",
                   reason="short")[0].value == 1
    assert samples(fams["flowchain_feed_drops"], "flowchain_feed_drops_total",
                   reason="duplicate")[0].value == 3
    assert fams["flowchain_feed_stale"].samples[0].value == 1
    assert samples(fams["flowchain_orders"], "flowchain_orders_total",
                   status="filled")[0].value == 5
    assert collector.provider_errors == 1
    with pytest.raises(ValueError, match="_total"):
        counter_metrics("x_total", "", "l", dict)


def test_metrics_server_serves_over_http():
    reg, cid = make_registry()
    reg.runner(cid).run(3)
    with MetricsServer(FlowChainCollector(reg)) as server:
        with urllib.request.urlopen(server.url, timeout=10) as response:
            text = response.read().decode()
    assert samples(families(text)["flowchain_chains_executed"],
                   "flowchain_chains_executed_total")[0].value == 1


def test_failed_executions_have_their_own_latency_series():
    reg, cid = make_registry()
    runner = reg.runner(cid)
    for x in range(10):
        runner.run(x)
    for x in (1000, 2000, 3000):
        with pytest.raises(ChainStepError):
            runner.run(x)
    fams = families(render(exposition_registry(FlowChainCollector(reg))).decode())
    ok = samples(fams["flowchain_chain_execution_seconds"],
                 "flowchain_chain_execution_seconds_count", chain="pricing")
    failed = samples(fams["flowchain_chain_failure_seconds"],
                     "flowchain_chain_failure_seconds_count", chain="pricing")
    assert ok[0].value == 10 and failed[0].value == 3   # never mixed
    assert samples(fams["flowchain_chain_failure_seconds"],
                   "flowchain_chain_failure_seconds_sum", chain="pricing")[0].value > 0
    by_step = {s.labels["step"]: s.value for s in samples(
        fams["flowchain_step_failure_seconds"], "flowchain_step_failure_seconds_count")}
    assert by_step == {"double": 0.0, "check": 3.0}
    # the failing step's successes stay in the success series
    assert samples(fams["flowchain_step_execution_seconds"],
                   "flowchain_step_execution_seconds_count", step="check")[0].value == 10

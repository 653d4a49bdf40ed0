"""Prometheus exposition: HDR counts folded into buckets at scrape time, parsed back."""
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ComponentRegistry
from flowchain.feeds.base import FeedState, FeedStats
from flowchain.histograms import DEFAULT_SETTINGS, LatencyHistogram
from flowchain.observe.metrics import (
    BUCKETS_S,
    FlowChainCollector,
    HdrToBuckets,
    MetricsServer,
    counter_metrics,
    exposition_registry,
    feed_metrics,
    render,
)


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
    for (label, cum), bound in zip(buckets, BUCKETS_S, strict=False):
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


def chain_figures(text, chain="pricing"):
    """One scrape's figures of a chain: completed, failures, running, counts, step errors."""
    fams = families(text)

    def one(family, name, **labels):
        found = samples(fams[family], name, chain=chain, **labels)
        assert len(found) == 1, (name, labels, found)
        return found[0].value

    return {
        "completed": one("flowchain_chains_executed", "flowchain_chains_executed_total"),
        "failures": one("flowchain_chain_failures", "flowchain_chain_failures_total"),
        "running": one("flowchain_chain_executions_running", "flowchain_chain_executions_running"),
        "ok": one("flowchain_chain_execution_seconds", "flowchain_chain_execution_seconds_count"),
        "ok_inf": one("flowchain_chain_execution_seconds",
                      "flowchain_chain_execution_seconds_bucket", le="+Inf"),
        "step_ok": [one("flowchain_step_execution_seconds",
                        "flowchain_step_execution_seconds_count", step=s)
                    for s in ("double", "check")],
        "step_errors": [one("flowchain_step_failures", "flowchain_step_failures_total", step=s)
                        for s in ("double", "check")],
    }


def test_one_scrapes_counters_agree_while_the_chain_runs_in_another_thread():
    import threading

    reg, cid = make_registry()
    runner = reg.runner(cid)
    stop = threading.Event()

    def run_forever():
        x = 0
        while not stop.is_set():
            x += 1
            try:
                runner.run(x % 1100)           # 100 of every 1100 fail in the check step
            except ChainStepError:
                pass

    collector = FlowChainCollector(reg)
    prom = exposition_registry(collector)
    worker = threading.Thread(target=run_forever, daemon=True)
    worker.start()
    try:
        seen = []
        while len(seen) < 40 or seen[-1]["failures"] == 0:
            f = chain_figures(render(prom).decode())
            assert f["completed"] == f["ok"] + f["failures"], f
            assert f["ok"] == f["ok_inf"], f
            assert f["failures"] == sum(f["step_errors"]), f
            assert f["running"] in (0, 1), f
            # the first step ran in every completed execution (and maybe in the running one)
            reached = f["step_ok"][0] + f["step_errors"][0]
            assert f["completed"] <= reached <= f["completed"] + f["running"], f
            assert f["step_ok"][1] == f["ok"], f        # the last step's successes are the chain's
            seen.append(f)
    finally:
        stop.set()
        worker.join(10)
    assert seen[-1]["completed"] > seen[0]["completed"]  # it was really running meanwhile
    assert collector.counters["scrapes"] >= 40   # (whole_snapshots: how many cheap reads raced)


def test_escalated_gauge_per_step_follows_the_monitor():
    from flowchain.observe.monitor import Monitor

    reg, cid = make_registry()
    runner = reg.runner(cid)
    monitor = Monitor(reg, warning_interval_s=1e9, min_attempts=5, window_s=60)
    prom = exposition_registry(FlowChainCollector(reg, monitors=monitor))

    def escalated():
        fams = families(render(prom).decode())
        return {s.labels["step"]: s.value for s in fams["flowchain_step_escalated"].samples}

    runner.run(1)
    monitor.poll()
    assert escalated() == {"double": 0.0, "check": 0.0}
    for x in range(1000, 1010):
        with pytest.raises(ChainStepError):
            runner.run(x)
    monitor.poll()
    assert escalated() == {"double": 0.0, "check": 1.0}


def test_exposition_cache_serves_the_latest_rendering_and_refreshes_while_scraped(eventually):
    from flowchain.observe.metrics import ExpositionCache

    class Clock:
        now = 100.0

        def __call__(self):
            return self.now

    reg, cid = make_registry()
    runner = reg.runner(cid)
    runner.run(1)
    clock = Clock()
    cache = ExpositionCache(exposition_registry(FlowChainCollector(reg)), refresh_s=1.0,
                            idle_s=10.0, clock=clock)
    completed = lambda body: chain_figures(body.decode())["completed"]  # noqa: E731
    assert completed(cache.get()) == 1 and cache.counters["inline_renders"] == 1
    runner.run(2)
    clock.now += 1.5                            # within max_age (2 s): the cached rendering
    assert completed(cache.get()) == 1 and cache.counters["inline_renders"] == 1
    cache._refresh()                            # what the refresher thread does every 1 s
    assert completed(cache.get()) == 2 and cache.counters["renders"] == 1
    clock.now += 2.5                            # too old and no refresh: rendered inline
    runner.run(3)
    assert completed(cache.get()) == 3 and cache.counters["inline_renders"] == 2
    clock.now += 11                             # nobody scraped for idle_s: nothing rendered
    cache._refresh()
    assert cache.counters["renders"] == 1
    with pytest.raises(ValueError, match="refresh_s"):
        ExpositionCache(exposition_registry(FlowChainCollector(reg)), refresh_s=0)
    # while its refresher runs and scrapes keep coming, a late rendering is served, not redone
    busy = ExpositionCache(exposition_registry(FlowChainCollector(reg)), refresh_s=3600,
                           idle_s=1e6, clock=clock).start()
    try:
        assert completed(busy.get()) == 3
        runner.run(5)
        clock.now += 7300                       # older than max_age (7200 s), still scraped
        assert completed(busy.get()) == 3 and busy.counters["inline_renders"] == 1
    finally:
        busy.close()
    assert completed(busy.get()) == 4           # refresher stopped: too old, rendered inline
    live = ExpositionCache(exposition_registry(FlowChainCollector(reg)), refresh_s=0.02).start()
    try:
        live.get()
        runner.run(6)
        eventually(lambda: completed(live.get()) == 5, timeout=10, message="refreshed")
        assert live.counters["renders"] >= 1 and live.counters["inline_renders"] == 1
    finally:
        live.close()


def test_the_whole_row_snapshot_reads_the_same_figures_as_the_cheap_read():
    from flowchain.observe.metrics import read_figures

    reg, cid = make_registry()
    runner = reg.runner(cid)
    for x in list(range(50)) + [1000, 1001]:
        try:
            runner.run(x)
        except ChainStepError:
            pass
    definition = reg.get_chain(cid)
    cheap, used_cheap = read_figures("default", definition, runner, (False, False))
    whole, used_cheap_too = read_figures("default", definition, runner, (False, False),
                                         attempts=0)   # no cheap read: the runner's snapshot
    assert used_cheap and not used_cheap_too
    assert (whole.completed, whole.failures, whole.running) == (52, 2, 0)
    assert (cheap.completed, cheap.failures, cheap.running) == (52, 2, 0)
    assert whole.step_errors.tolist() == cheap.step_errors.tolist() == [0, 2]
    used = cheap.counts.shape[1]
    assert np.array_equal(whole.counts[:, :used], cheap.counts)
    assert not whole.counts[:, used:].any()          # the cheap read cut only empty buckets
    assert whole.failure_counts.sum() == cheap.failure_counts.sum() == 4  # step row + chain row

"""Resource use per chain and step, measured on sampled executions only."""
import json
import tracemalloc

import pytest
from tenancy_parts import ALLOC_BYTES, chain
from typer.testing import CliRunner

from flowchain import ChainDefinition, ChainStats, ChainStep
from flowchain._native import engine
from flowchain.cli import app
from flowchain.errors import ChainStepError
from flowchain.tenancy import TenantManager
from flowchain.tenancy.analytics import analyze
from flowchain.tenancy.report_section import tenancy_section
from flowchain.tenancy.resources import sample_every
from flowchain.tenancy.tenant_history import TenantHistoryWriter


def mix(name: str = "mix") -> ChainDefinition:
    return ChainDefinition(name, (ChainStep("light", "Inc", "int", "int", 1.0),
                                  ChainStep("alloc", "Alloc", "int", "int", 1.0),
                                  ChainStep("spin", "Spin", "int", "int", 1.0)))


def by_step(resources: list, chain_name: str) -> dict:
    [entry] = [r for r in resources if r["chain"] == chain_name]
    return {s["step"]: s for s in entry["steps"]}


@pytest.mark.parametrize("tier", ["free", "pro", "enterprise"])
def test_sampled_executions_measure_cpu_and_memory_per_step(components, tiers, tier):
    with TenantManager(tiers, components=components, sample_rate=0.25) as m:
        m.add_tenant("acme", tier)
        m.register_chain("acme", mix())
        handle = m.runner("acme", "mix", "ana")
        for i in range(8):  # within the free tier's daily 10
            assert handle.run(i) == i + 3
        assert handle.sampled == 2
        steps = by_step(m.resources("acme"), "mix")
        # every execution counted once, sampled or not (same runner, same records)
        stats = m.stats("acme", "mix")
        assert stats.executions == 8
        # typed the same in every tier, from the tenant's own executions only
        assert isinstance(stats, ChainStats) and (stats.succeeded, stats.failures) == (8, 0)
        assert stats.running == 0 and stats.latency.count == 8
        assert [(s.name, s.latency.count, s.errors) for s in stats.steps] == \
            [("light", 8, 0), ("alloc", 8, 0), ("spin", 8, 0)]
        assert {s: steps[s]["samples"] for s in steps} == \
            {"light": 2, "alloc": 2, "spin": 2, "": 2}
        # the spinning step burns ~2 ms of its thread's CPU; the light one far less
        assert steps["spin"]["cpu_ns_mean"] >= 1.5e6
        assert steps["light"]["cpu_ns_mean"] < steps["spin"]["cpu_ns_mean"] / 10
        # the allocating step's peak holds its block; the light step's does not
        assert steps["alloc"]["alloc_bytes_mean"] >= ALLOC_BYTES
        assert steps["light"]["alloc_bytes_mean"] < ALLOC_BYTES / 8
        whole = steps[""]
        assert whole["cpu_ns_mean"] >= steps["spin"]["cpu_ns_mean"]
        assert whole["alloc_bytes_mean"] >= steps["alloc"]["alloc_bytes_mean"]
    assert not tracemalloc.is_tracing()  # the engine's allocation counter measures, not tracemalloc


def test_sampling_off_measures_nothing_and_can_be_switched(manager):
    manager.add_tenant("acme", "pro")
    manager.register_chain("acme", mix())
    handle = manager.runner("acme", "mix")
    for i in range(20):
        handle.run(i)
    assert handle.sampled == 0 and handle.sample_every == 0
    assert manager.resources("acme") == []
    manager.set_sampling(0.1)
    assert manager.sample_rate == pytest.approx(0.1)
    for i in range(20):
        handle.run(i)
    assert handle.sampled == 2
    manager.set_sampling(0)
    for i in range(20):
        handle.run(i)
    assert handle.sampled == 2
    assert manager.stats("acme", "mix").executions == 60


def test_the_sampled_path_keeps_records_and_failures_exact(manager):
    manager.add_tenant("acme", "pro")
    manager.register_chain("acme", chain("fail", 2, last="Boom"))
    manager.set_sampling(1.0)
    handle = manager.runner("acme", "fail")
    with pytest.raises(ChainStepError) as info:
        handle.run(1)
    assert info.value.execution.failure.step == "step_1"
    stats = manager.stats("acme", "fail")
    assert (stats.executions, stats.failures) == (1, 1)
    assert stats.succeeded == 0 and stats.failure_latency.count == 1
    assert [s.errors for s in stats.steps] == [0, 1]
    [entry] = manager.resources("acme")
    assert entry["failed_samples"] == 1
    assert [s["step"] for s in entry["steps"]] == ["step_0"]  # the completed step only
    assert engine.alloc_window_depth() == 0  # the failed step's allocation window was closed
    manager.register_chain("acme", chain("ok", 3))
    record = manager.execute_user_chain("ok", manager._context(manager._tenants["acme"],
                                                              "ana"), 1)
    assert record.is_successful() and len(record.steps) == 3
    assert record.total_duration == sum(s.duration_ns for s in record.steps)


def test_a_tenant_reads_only_its_own_resources(manager):
    manager.set_sampling(1.0)
    for tid in ("acme", "rival"):
        manager.add_tenant(tid, "pro")
        manager.register_chain(tid, chain("inc" if tid == "acme" else "secret"))
    manager.execute("acme", "inc", 1)
    manager.execute("rival", "secret", 1)
    assert {r["chain"] for r in manager.resources("acme")} == {"inc"}
    assert {r["chain"] for r in manager.resources("rival")} == {"secret"}


@pytest.mark.parametrize("rate", [-0.1, 1.5, "1%", None, True])
def test_bad_sampling_rates_are_refused(components, tiers, rate):
    with pytest.raises(ValueError, match="sampling rate"):
        TenantManager(tiers, components=components, sample_rate=rate)
    assert sample_every(0.01) == 100 and sample_every(0) == 0 and sample_every(1) == 1


def test_resources_are_stored_and_analyzed_by_chain_step_and_tier(manager, tmp_path):
    db = tmp_path / "node.db"
    writer = TenantHistoryWriter(manager, db, interval_s=60)
    manager.set_sampling(0.5)
    manager.add_tenant("acme", "pro")
    manager.add_tenant("bob", "enterprise")
    for tid in ("acme", "bob"):
        manager.register_chain(tid, mix())
        manager.register_chain(tid, chain("light", 2))
    for i in range(10):
        manager.execute("acme", "mix", i)
        manager.execute("bob", "mix", i)
        manager.execute("acme", "light", i)
    writer.flush()
    for i in range(6):
        manager.execute("acme", "mix", i)
    writer.flush()
    assert writer.flush() == 0 and writer.counters["resource_rows"] > 0
    writer.close()
    result = analyze(db)
    chains = {(r["chain"], r["tier"]): r for r in result["resources"]["by_chain"]}
    assert chains[("mix", "pro")]["samples"] == 8  # 5 + 3: two intervals merged exactly
    assert chains[("mix", "enterprise")]["samples"] == 5
    assert chains[("light", "pro")]["samples"] == 5
    # the chain that spins consumes most, and its CPU is at least the spinning step's 2 ms
    assert result["resources"]["by_chain"][0]["chain"] == "mix"
    assert chains[("mix", "pro")]["cpu_ms"]["p50"] >= 1.5
    steps = {(r["chain"], r["step"], r["tier"]): r for r in result["resources"]["by_step"]}
    assert steps[("mix", "alloc", "pro")]["alloc_kib"]["mean"] >= ALLOC_BYTES / 1024
    assert steps[("mix", "spin", "pro")]["cpu_ms"]["mean"] > \
        steps[("mix", "light", "pro")]["cpu_ms"]["mean"]
    only_bob = analyze(db, tenant="bob")["resources"]["by_chain"]
    assert {(r["chain"], r["tier"]) for r in only_bob} == {("mix", "enterprise")}
    html = tenancy_section(db)
    assert 'id="resources-by-chain"' in html and "(whole chain)" in html
    out = CliRunner().invoke(app, ["analytics", "--db", str(db)])
    assert out.exit_code == 0, out.output
    assert "resource use per call" in out.output
    as_json = json.loads(CliRunner().invoke(app, ["analytics", "--db", str(db),
                                                  "--json"]).output)
    assert as_json["resources"]["by_chain"][0]["chain"] == "mix"

"""Usage survives restarts (a clean close, and a process killed without one), and upgrade
triggers fire once per (tenant, limit, threshold, period) through the alert sinks."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tenancy_parts import chain

from flowchain.observe.alerts import CallbackSink, MemorySink
from flowchain.tenancy import UPGRADE_TRIGGER, QuotaExceeded, TenantManager
from flowchain.tenancy.usage import LIFETIME, UsageStore

HERE = Path(__file__).parent


def test_a_restart_never_resets_the_day(components, tiers, tmp_path):
    db = tmp_path / "node.db"
    m = TenantManager(tiers, components=components, db=db)
    m.add_tenant("acme", "free")  # 10 a day
    m.register_chain("acme", chain("inc"))
    for i in range(7):
        m.execute("acme", "inc", i)
    m.close()
    again = TenantManager(tiers, components=components, db=db)
    assert again.load_tenants() == ["acme"]
    again.register_chain("acme", chain("inc"))
    assert again.usage("acme").executions_today == 7
    for i in range(3):
        again.execute("acme", "inc", i)
    with pytest.raises(QuotaExceeded) as info:
        again.execute("acme", "inc", 0)
    assert info.value.usage == 10
    again.close()
    day = UsageStore(db).history("acme")[0]
    assert (day.used, day.reserved, day.refused) == (10, 10, 1)


def test_a_killed_process_comes_back_with_its_claim_never_less(tmp_path):
    db = tmp_path / "node.db"
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(HERE)!r})
        from flowchain.tenancy import TenantManager, tiers_from_toml
        from tenancy_parts import make_components, chain
        tiers = tiers_from_toml('[tiers.t]\\nexecutions_per_day = 1000\\n')
        m = TenantManager(tiers, components=make_components(), db={str(db)!r},
                          reserve_fraction=0.05)
        m.add_tenant("acme", "t")
        m.register_chain("acme", chain("inc"))
        for i in range(123):
            m.execute("acme", "inc", i)
        os._exit(0)  # no close, no flush: as if killed
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    store = UsageStore(db)
    day = store.history("acme")[0]
    assert day.used == 0 and day.reserved >= 123  # claimed before admitting
    assert day.counted - 123 <= 50  # over-counted by at most one block (5% of 1000)
    store.close()


def test_triggers_fire_once_per_threshold_and_period_across_restarts(components, tiers,
                                                                     tmp_path):
    db = tmp_path / "node.db"
    events = []
    m = TenantManager(tiers, components=components, db=db, sinks=[CallbackSink(events.append)])
    m.add_tenant("acme", "free")
    m.register_chain("acme", chain("inc"))
    for i in range(8):
        m.execute("acme", "inc", i)
    m.check_usage()
    m.check_usage()
    daily = [e for e in events if e.fields["limit"] == "executions_per_day"]
    assert [e.fields["threshold"] for e in daily] == [0.8]
    event = daily[0]
    assert event.kind == UPGRADE_TRIGGER and event.fields["usage"] == 8
    assert event.fields["limit_value"] == 10 and event.fields["next_tier"] == "pro"
    assert event.fields["unlocks"]["executions_per_day"] == 100000
    assert event.fields["unlocks"]["isolation"] == "dedicated"
    assert "advanced" in event.fields["unlocks"]["features"]
    assert "80%" in event.message and "'acme'" in event.message
    for i in range(2):
        m.execute("acme", "inc", i)
    with pytest.raises(QuotaExceeded):  # 100% fires on the refusal itself
        m.execute("acme", "inc", 0)
    daily = [e for e in events if e.fields["limit"] == "executions_per_day"]
    assert [e.fields["threshold"] for e in daily] == [0.8, 1.0]
    m.check_usage()
    m.close()
    again = TenantManager(tiers, components=components, db=db,
                          sinks=[CallbackSink(events.append)])
    again.load_tenants()
    again.check_usage()
    assert len([e for e in events if e.fields["limit"] == "executions_per_day"]) == 2
    fired = UsageStore(db).triggers("acme")
    assert {(f["limit"], f["threshold"]) for f in fired} >= {("executions_per_day", 0.8),
                                                              ("executions_per_day", 1.0)}
    again.close()


def test_chain_limit_refuses_at_registration_and_triggers(components, tiers):
    sink = MemorySink()
    m = TenantManager(tiers, components=components, sinks=[sink])
    m.add_tenant("acme", "free")  # 5 chains
    for i in range(5):
        m.register_chain("acme", chain(f"c{i}"))
    m.register_chain("acme", chain("c0", 3))  # a new version of a known chain is no new chain
    with pytest.raises(QuotaExceeded) as info:
        m.register_chain("acme", chain("c5"))
    assert info.value.limit == "chains" and info.value.usage == 5
    assert info.value.next_tier == "pro"
    chains = [e.fields for e in sink.latest() if e.fields["limit"] == "chains"]
    assert sorted(f["threshold"] for f in chains) == [0.8, 1.0]
    assert all(f["period"] == LIFETIME for f in chains)
    assert m.usage("acme").refused["chains"] == 1


def test_gating_refuses_at_registration_naming_the_tier_that_allows_it(manager):
    from flowchain.tenancy import FeatureGatedError

    manager.add_tenant("acme", "free")
    with pytest.raises(FeatureGatedError) as info:
        manager.register_chain("acme", chain("adv", 2, last="Advanced"))
    assert info.value.feature == "advanced" and info.value.allowed_in == "pro"
    assert "tier 'pro' allows it" in str(info.value)
    with pytest.raises(FeatureGatedError, match="5 steps; tier 'free' allows 4.*'pro'"):
        manager.register_chain("acme", chain("long", 5))
    assert manager.list_chains("acme") == []
    # a batch is all or none
    with pytest.raises(FeatureGatedError):
        manager.register_chains("acme", [chain("ok"), chain("adv", 2, last="Advanced")])
    assert manager.list_chains("acme") == []
    manager.set_tier("acme", "pro")
    manager.register_chain("acme", chain("adv", 2, last="Advanced"))
    with pytest.raises(FeatureGatedError, match="needs|uses component 'Advanced'"):
        manager.set_tier("acme", "free")  # a downgrade that would strand a chain: refused
    assert manager.tier_of("acme").name == "pro"


def test_usage_gauges_per_tenant_and_limit(manager):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from flowchain.observe.metrics import FlowChainCollector
    from flowchain.tenancy.gauges import tenant_metrics

    manager.add_tenant("acme", "free")
    manager.register_chain("acme", chain("inc"))
    for i in range(4):
        manager.execute("acme", "inc", i)
    collector = FlowChainCollector(manager.registries(), [tenant_metrics(manager)])
    prom = CollectorRegistry(auto_describe=False)
    prom.register(collector)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(generate_latest(prom).decode())
               for s in f.samples}
    key = ("flowchain_tenant_usage_ratio",
           (("limit", "executions_per_day"), ("tenant", "acme"), ("tier", "free")))
    assert samples[key] == pytest.approx(0.4)
    assert samples[("flowchain_tenant_executions_today",
                    (("tenant", "acme"), ("tier", "free")))] == 4


def test_a_failing_usage_store_never_fails_an_admission(components, tiers, tmp_path, caplog):
    m = TenantManager(tiers, components=components, db=tmp_path / "node.db")
    m.add_tenant("acme", "pro")
    m.register_chain("acme", chain("inc"))
    m.execute("acme", "inc", 1)
    m.store.conn.close()  # the database goes away under the node
    for i in range(2000):  # several reservation blocks (1% of 100,000)
        assert m.execute("acme", "inc", i) == i + 4
    assert m.usage_write_errors >= 1
    m.check_usage()  # logged and counted, not raised
    assert m.usage("acme").executions_today == 2001
    assert "could not be written" in caplog.text or "could not be persisted" in caplog.text


def test_the_previous_day_is_kept_exactly_when_the_day_rolls(components, tiers, tmp_path,
                                                             eventually):
    import datetime as dt

    now = [dt.datetime(2026, 3, 1, 23, 59, 59, 900_000, tzinfo=dt.timezone.utc).timestamp()]
    db = tmp_path / "node.db"
    m = TenantManager(tiers, components=components, db=db, wall_clock=lambda: now[0])
    m.add_tenant("acme", "free")
    m.register_chain("acme", chain("inc"))
    for i in range(6):
        m.execute("acme", "inc", i)
    now[0] += 1.0
    eventually(lambda: m.check_usage() >= 0 and m.usage("acme").period == "2026-03-02",
               timeout=5)
    m.execute("acme", "inc", 0)
    m.close()
    days = {d.period: d for d in UsageStore(db).history("acme")}
    assert (days["2026-03-01"].used, days["2026-03-01"].reserved) == (6, 6)
    assert days["2026-03-02"].counted == 1

"""Admission: rate (GCRA token bucket), concurrency and daily quota, refused before anything
runs, with the limit, the usage and the reset time; a running execution is never interrupted."""
import asyncio
import datetime as dt

import pytest
from tenancy_parts import INFLIGHT, chain

from flowchain._native import engine
from flowchain.tenancy import QuotaExceeded, TenantManager, tiers_from_toml

RATE_TIERS = """
[tiers.metered]
executions_per_second = 1.0
burst = 3
concurrent = 2
executions_per_day = 1000
"""


def test_rate_bucket_admits_the_burst_then_refuses_with_when_it_resets(components):
    calls = []
    components.register("Spy", lambda x: calls.append(x) or x)
    m = TenantManager(tiers_from_toml(RATE_TIERS), components=components)
    m.add_tenant("acme", "metered")
    m.register_chain("acme", chain("spy", 1, "Spy"))
    for i in range(3):
        assert m.execute("acme", "spy", i) == i
    with pytest.raises(QuotaExceeded) as info:
        m.execute("acme", "spy", 99)
    err = info.value
    assert err.limit == "executions_per_second" and err.limit_value == 1.0
    assert err.usage == 3  # the whole burst in use
    assert 0 < err.resets_in_s <= 1.0 and err.resets_at is not None
    assert "acme" in str(err) and "executions_per_second" in str(err)
    assert calls == [0, 1, 2]  # the refused execution never ran
    u = m.usage("acme")
    assert u.refused["executions_per_second"] == 1 and u.admitted == 3
    assert u.executions_today == 3  # a refusal consumes no quota
    assert u.ratios["executions_per_second"] == 1.0


def test_concurrency_gate_refuses_beyond_the_limit_and_frees_on_release():
    gate = engine.TenantGate()
    gate.max_running = 2
    gate.on_refuse = lambda g, code, wait: RuntimeError(f"refused {code}")
    gate.try_admit()
    gate.try_admit()
    with pytest.raises(RuntimeError, match=f"refused {engine.ADMIT_CONCURRENT}"):
        gate.try_admit()
    assert gate.refused_concurrent == 1 and gate.running == 2 and gate.peak_running == 2
    gate.release()
    gate.try_admit()
    assert gate.admitted == 3


def test_daily_quota_refuses_until_the_next_utc_midnight(manager):
    manager.add_tenant("acme", "free")
    manager.register_chain("acme", chain("inc"))
    for i in range(10):
        manager.execute("acme", "inc", i)
    with pytest.raises(QuotaExceeded) as info:
        manager.execute("acme", "inc", 0)
    err = info.value
    assert err.limit == "executions_per_day" and err.usage == 10 and err.limit_value == 10
    midnight = dt.datetime.combine(dt.datetime.now(dt.timezone.utc).date()
                                   + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    assert abs(err.resets_at - midnight.timestamp()) < 5
    assert err.next_tier == "pro" and "upgrade to tier 'pro'" in str(err)


def test_the_day_rolls_over_at_utc_midnight(components, tiers, eventually):
    now = [dt.datetime(2026, 3, 1, 23, 59, 59, 900_000, tzinfo=dt.timezone.utc).timestamp()]
    m = TenantManager(tiers, components=components, wall_clock=lambda: now[0])
    m.add_tenant("acme", "free")
    m.register_chain("acme", chain("inc"))
    for i in range(10):
        m.execute("acme", "inc", i)
    with pytest.raises(QuotaExceeded):
        m.execute("acme", "inc", 0)
    assert m.usage("acme").period == "2026-03-01"
    now[0] += 1.0  # the wall clock passes midnight; the engine's period ends ~0.1 s later

    def admitted():
        try:
            return m.execute("acme", "inc", 1) == 5
        except QuotaExceeded:
            return False

    eventually(admitted, timeout=5)
    u = m.usage("acme")
    assert u.period == "2026-03-02" and u.executions_today == 1


def test_a_running_execution_is_never_interrupted_by_the_quota(components, tiers):
    m = TenantManager(tiers, components=components)
    inner = []

    def reenter(x):
        try:  # the quota runs out while this execution is running
            m.execute("acme", "inc", x)
        except QuotaExceeded as exc:
            inner.append(exc.limit)
        return x * 2

    components.register("Reenter", reenter)
    m.add_tenant("acme", "free")
    m.register_chain("acme", chain("inc"))
    m.register_chain("acme", chain("outer", 1, "Reenter"))
    for i in range(9):
        m.execute("acme", "inc", i)
    assert m.execute("acme", "outer", 21) == 42  # the 10th: admitted, then completes
    assert inner == ["executions_per_day"]
    assert m.last_execution("acme", "outer").is_successful()


def test_downgrading_a_tier_leaves_running_executions_alone(components, tiers):
    m = TenantManager(tiers, components=components)
    seen = []

    def downgrade(x):
        m.set_tier("acme", "free")  # dedicated -> shared while this execution runs
        seen.append(m.tier_of("acme").name)
        return x + 100

    components.register("Downgrade", downgrade)
    m.add_tenant("acme", "pro")
    m.register_chain("acme", chain("down", 1, "Downgrade"))
    assert m.execute("acme", "down", 1) == 101
    assert seen == ["free"]
    assert m.usage("acme").isolation == "shared"


async def test_1000_concurrent_async_executions_with_a_limit_of_10(manager):
    manager.add_tenant("acme", "pro")  # concurrent = 10
    manager.register_chain("acme", chain("slow", 2, "SlowAsync"))
    results = await asyncio.gather(*(manager.execute_async("acme", "slow", i)
                                     for i in range(1000)), return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(ok) + len(refused) == 1000  # none lost, nothing else raised
    assert all(r.limit == "concurrent" and r.usage == 10 and r.resets_in_s is None
               for r in refused)
    assert INFLIGHT.peak <= 10 and len(ok) >= 10
    u = manager.usage("acme")
    assert u.refused["concurrent"] == len(refused) and u.admitted == len(ok)
    assert u.peak_running == 10 and u.running == 0

    # now every caller retries until admitted: all 1000 complete, never more than 10 at once
    INFLIGHT.__init__()
    retries = 0

    async def until_admitted(i):
        nonlocal retries
        while True:
            try:
                return await manager.execute_async("acme", "slow", i)
            except QuotaExceeded:
                retries += 1
                await asyncio.sleep(0)

    before = manager.usage("acme").refused["concurrent"]
    done = await asyncio.gather(*(until_admitted(i) for i in range(1000)))
    assert sorted(done) == [i + 2 for i in range(1000)]
    assert INFLIGHT.peak <= 10 and INFLIGHT.done == 2000
    assert manager.usage("acme").refused["concurrent"] - before == retries


def test_components_of_dedicated_tenants_are_their_own_instances(components, tiers):
    m = TenantManager(tiers, components=components)
    for tenant in ("a", "b"):
        m.add_tenant(tenant, "pro")
        m.register_chain(tenant, chain("count", 1, "Counter"))
    assert [m.execute("a", "count", 0) for _ in range(3)] == [1, 2, 3]
    assert m.execute("b", "count", 0) == 1  # b's Counter never saw a's calls

"""Adversarial isolation: every public read and execute path, called by one tenant with
another tenant's chain names, ids and sequence numbers, is refused; and tenant ids that would
break a label, a path or SQL are carried as data."""
import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tenancy_parts import chain

from flowchain import UserContext
from flowchain.errors import ChainStepError, UnknownChainError
from flowchain.tenancy import TenantManager, UnknownTenantError
from flowchain.tenancy.gauges import tenant_metrics
from flowchain.tenancy.tenant_id import tenant_file_name

TIERS = {"shared_a": "free", "shared_b": "free", "dedicated_c": "pro", "process_d": "enterprise"}


@pytest.fixture
def tenants(manager):
    manager.set_sampling(0.5)  # half the executions take the measuring path: same isolation
    for tenant, tier in TIERS.items():
        manager.add_tenant(tenant, tier)
        manager.register_chain(tenant, chain(f"secret_{tenant}", 2))
        manager.register_chain(tenant, chain("common", 2))  # the same definition everywhere
        manager.register_chain(tenant, chain("failing", 2, last="Boom"))
        for i in range(3):
            manager.execute(tenant, f"secret_{tenant}", i, user_id=f"user_of_{tenant}")
            manager.execute(tenant, "common", i, user_id=f"user_of_{tenant}")
            with pytest.raises(ChainStepError):
                manager.execute(tenant, "failing", 1000 + i, user_id=f"user_of_{tenant}")
    return manager


def _reads(m: TenantManager, tenant: str, ref: str):
    """Every public path that takes a chain: each must refuse another tenant's chain."""
    return {
        "runner": lambda: m.runner(tenant, ref),
        "execute": lambda: m.execute(tenant, ref, 1),
        "execute_async": lambda: asyncio.run(m.execute_async(tenant, ref, 1)),
        "execute_user_chain": lambda: m.execute_user_chain(ref, UserContext(tenant, "u"), 1),
        "execute_user_chain_async": lambda: asyncio.run(
            m.execute_user_chain_async(ref, UserContext(tenant, "u"), 1)),
        "get_chain": lambda: m.get_chain(tenant, ref),
        "versions": lambda: m.versions(tenant, ref),
        "execution": lambda: m.execution(tenant, ref, 0),
        "recent_executions": lambda: m.recent_executions(tenant, ref),
        "last_execution": lambda: m.last_execution(tenant, ref),
        "failures": lambda: m.failures(tenant, ref),
        "histogram": lambda: m.histogram(tenant, ref),
        "stats": lambda: m.stats(tenant, ref),
    }


def test_every_path_refuses_another_tenants_chain_by_name_and_id(tenants):
    m = tenants
    attempts = 0
    for attacker in TIERS:
        for victim in TIERS:
            if victim == attacker:
                continue
            name = f"secret_{victim}"
            chain_id = m.get_chain(victim, name).chain_id
            for ref in (name, chain_id):
                for path, call in _reads(m, attacker, ref).items():
                    with pytest.raises(UnknownChainError) as info:
                        call()
                    attempts += 1
                    # the refusal lists only the attacker's own chains
                    assert f"secret_{victim}" not in str(info.value).split("registered:")[-1], \
                        (attacker, victim, path)
    assert attempts == 4 * 3 * 2 * 13
    for tenant in TIERS:  # nothing ran for the attacker
        assert m.usage(tenant).executions_today == 9


def test_shared_runners_never_hand_one_tenant_anothers_records(tenants):
    m = tenants
    a, b = "shared_a", "shared_b"
    # both run "common" on the same shared runner; a sees only its own records
    mine = m.recent_executions(a, "common", 100)
    assert len(mine) == 3 and {r.user_context.tenant_id for r in mine} == {a}
    theirs = m.recent_executions(b, "common", 100)
    seqs_of_b = {r.seq for r in theirs}
    assert seqs_of_b and not seqs_of_b & {r.seq for r in mine}
    for seq in seqs_of_b:
        assert m.execution(a, "common", seq) is None  # b's execution by its seq: refused
    assert m.last_execution(a, "common").user_context.tenant_id == a
    assert {r.user_context.tenant_id for r in m.failures(a, "failing")} == {a}
    assert len(m.failures(a, "failing")) == 3
    assert m.histogram(a, "common").count == 3
    assert m.stats(a, "common").executions == 3
    assert all(r.user_context.tenant_id == a for r in m.active_executions(a))


def test_per_user_reads_and_usage_are_scoped_to_the_tenant(tenants):
    m = tenants
    for attacker in TIERS:
        for victim in TIERS:
            if victim == attacker:
                continue
            perf = m.user_performance(attacker, f"user_of_{victim}")
            assert perf.executions == 0 and perf.by_chain == {}
            assert all(ctx.tenant_id == attacker for ctx, *_ in m.meters(attacker))
            assert {r["tenant"] for r in m.resources(attacker)} <= {attacker}
            assert f"secret_{victim}" not in {r["chain"] for r in m.resources(attacker)}
    perf = m.user_performance("dedicated_c", "user_of_dedicated_c")
    assert perf.executions == 9 and perf.failures == 3 and perf.histogram.count == 6


@pytest.mark.parametrize("path", ["list_chains", "usage", "active_executions", "tier_of",
                                  "meters", "resources"])
def test_unknown_tenants_are_refused_everywhere(tenants, path):
    with pytest.raises(UnknownTenantError, match="unknown tenant 'nobody'"):
        getattr(tenants, path)("nobody")


def test_unknown_tenant_on_the_chain_paths(tenants):
    for path, call in _reads(tenants, "nobody", "common").items():
        with pytest.raises(UnknownTenantError):
            call()
        assert path


HOSTILE = [
    "x'); DROP TABLE tenants;--",
    "../../etc/passwd",
    'a"b\\c{tenant="evil"}',
    "spaces and ünïcødé 租户",
    "a/b",
    "a_b",
]


def test_hostile_tenant_ids_are_carried_as_data(components, tiers, tmp_path):
    m = TenantManager(tiers, components=components, db=tmp_path / "node.db")
    for tenant in HOSTILE:
        m.add_tenant(tenant, "pro")
        m.register_chain(tenant, chain("inc"))
        assert m.execute(tenant, "inc", 1) == 5
    m.check_usage()
    assert [row["tenant"] for row in m.store.tenants()] == sorted(HOSTILE)
    text = "\n".join(_exposition(m))
    labels = {s.labels["tenant"] for f in text_string_to_metric_families(text)
              for s in f.samples if "tenant" in s.labels}
    assert labels == set(HOSTILE)
    names = {tenant_file_name(t) for t in HOSTILE}
    assert len(names) == len(HOSTILE)
    assert all("/" not in n and not n.startswith(".") for n in names)
    m.close()
    again = TenantManager(tiers, components=components, db=tmp_path / "node.db")
    assert sorted(again.load_tenants()) == sorted(HOSTILE)
    assert again.usage(HOSTILE[0]).executions_today == 1
    again.close()


def _exposition(m):
    from prometheus_client import CollectorRegistry, generate_latest

    class _Provider:
        def __init__(self, provide):
            self.provide = provide

        def collect(self):
            return self.provide()

    prom = CollectorRegistry(auto_describe=False)
    prom.register(_Provider(tenant_metrics(m)))
    return [generate_latest(prom).decode()]


@pytest.mark.parametrize("bad, words", [
    ("", "empty"), ("   ", "blank"), ("a\nb", "control character"), ("a\x00", "control"),
    (42, "is a string"), ("x" * 200, "at most 128"),
])
def test_unusable_tenant_ids_are_refused_with_the_reason(manager, bad, words):
    with pytest.raises(UnknownTenantError, match=words):
        manager.add_tenant(bad, "free")
    with pytest.raises(UnknownTenantError):
        manager.usage(bad)

"""Per-user history from exact merges of interval histograms, and the analytics over it."""
import numpy as np
import pytest
from tenancy_parts import chain

from flowchain.errors import ChainStepError
from flowchain.histograms import LatencyHistogram
from flowchain.store import open_database
from flowchain.tenancy.analytics import analyze, synthetic_history
from flowchain.tenancy.tenant_history import (
    TenantHistoryWriter,
    encode_buckets,
    histogram_of,
    merge_buckets,
    percentiles_of,
    user_history,
)


def test_sparse_buckets_merge_exactly_and_refuse_corrupt_rows():
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(5):
        c = np.zeros(33792, dtype=np.int64)
        c[rng.integers(0, 33792, 30)] += rng.integers(1, 9, 30)
        rows.append(c)
    merged = merge_buckets([encode_buckets(r) for r in rows], 33792)
    assert (merged == sum(rows)).all()
    with pytest.raises(ValueError, match="not whole"):
        merge_buckets([b"\x00" * 15], 33792)
    bad = np.zeros(1, dtype=[("index", "<i4"), ("pad", "<i4"), ("count", "<i8")])
    bad["index"] = 40000
    with pytest.raises(ValueError, match="outside the layout"):
        merge_buckets([bad.tobytes()], 33792)


def test_vectorized_percentiles_equal_hdrhistograms():
    rng = np.random.default_rng(7)
    for _ in range(20):
        c = np.zeros(33792, dtype=np.int64)
        idx = rng.integers(0, 33792, rng.integers(1, 60))
        c[idx] += rng.integers(1, 100, len(idx))
        ps = (0.0, 50.0, 90.0, 99.0, 99.9, 100.0)
        assert percentiles_of(c, ps) == histogram_of(c).percentiles(ps)


def test_user_history_is_the_exact_merge_of_the_meters(manager, tmp_path):
    db = tmp_path / "node.db"
    writer = TenantHistoryWriter(manager, db, interval_s=60)
    manager.add_tenant("acme", "pro")
    manager.add_tenant("rival", "pro")
    manager.register_chain("acme", chain("inc"))
    manager.register_chain("acme", chain("fail", 2, last="Boom"))
    manager.register_chain("rival", chain("inc"))
    for i in range(40):
        manager.execute("acme", "inc", i, user_id="ana")
    assert writer.flush() == 1
    assert writer.flush() == 0  # nothing ran since
    for i in range(25):
        manager.execute("acme", "inc", i, user_id="ana")
        manager.execute("rival", "inc", i, user_id="ana")
    for i in range(5):
        with pytest.raises(ChainStepError):
            manager.execute("acme", "fail", i, user_id="ana")
    assert writer.flush() == 3
    conn = open_database(db)
    history = user_history(conn, "acme", "ana")
    assert history.executions == 70 and history.failures == 5
    assert history.by_chain == {"inc": 65, "fail": 5}
    live = manager.user_performance("acme", "ana")
    assert history.histogram.count == live.histogram.count == 65
    assert history.histogram.percentiles((50.0, 99.0)) == live.histogram.percentiles((50.0, 99.0))
    assert history.tiers == ("pro",)
    assert user_history(conn, "rival", "ana").executions == 25  # same user id, other tenant
    assert user_history(conn, "acme", "nobody").executions == 0
    conn.close()
    writer.close()


def test_rows_past_the_tiers_retention_are_pruned(manager, tmp_path):
    now = [1_800_000_000 * 10**9]
    writer = TenantHistoryWriter(manager, tmp_path / "node.db", clock=lambda: now[0])
    manager.add_tenant("acme", "free")  # 7 days of history in the test tiers
    manager.register_chain("acme", chain("inc"))
    manager.execute("acme", "inc", 1)
    writer.flush()
    now[0] += 8 * 86400 * 10**9
    manager.execute("acme", "inc", 1)
    writer.flush()
    assert writer.counters["pruned"] == 1
    writer.close()


def test_analytics_finds_usage_trends_regressions_and_error_patterns(tmp_path):
    db = tmp_path / "history.db"
    rows = synthetic_history(db, tenants=30, days=2)
    assert rows == 30 * 2 * 48
    result = analyze(db)
    assert result["tenants"] == 30
    assert {u["tier"] for u in result["usage_by_tier"]} == {"free", "pro", "enterprise"}
    assert sum(u["tenants"] for u in result["usage_by_tier"]) == 30
    assert len(result["most_used"]["by_tenant"]) == 10
    slow = next(t for t in result["trends"] if t["chain"] == "chain_1")
    assert slow["direction"] == "slower" and slow["p50_change"] > 0.2
    assert next(t for t in result["trends"] if t["chain"] == "chain_0")["direction"] == "steady"
    (regression,) = result["regressions"]
    assert regression["chain_id"] == "chain_1@v2"
    assert regression["previous_chain_id"] == "chain_1@v1" and regression["ratio"] >= 1.2
    one = analyze(db, tenant="tenant-00003")
    assert one["tenants"] == 1 and all(u["tenant"] == "tenant-00003"
                                       for u in one["most_used"]["by_tenant"])
    late = analyze(db, since_ns=regression["since_ns"] + 1)
    assert late["regressions"] == []  # only the new version remains in range
    total = sum(u["executions"] for u in result["usage_by_tier"])
    conn = open_database(db)
    assert total == conn.execute("SELECT SUM(count + errors) FROM tenant_intervals").fetchone()[0]
    conn.close()


def test_analytics_error_patterns_from_stored_failures(manager, tmp_path):
    from flowchain.observe.history import HistoryWriter

    db = tmp_path / "node.db"
    history = HistoryWriter(manager.registries(), db, interval_s=60, sample_rate=0)
    meters = TenantHistoryWriter(manager, db, interval_s=60)
    manager.add_tenant("acme", "free")
    manager.register_chain("acme", chain("fail", 2, last="Boom"))
    for x in (1, 1, 1, 2):
        with pytest.raises(ChainStepError):
            manager.execute("acme", "fail", x)
    history.flush()
    meters.flush()
    result = analyze(db)
    (by_step,) = result["errors"]["by_step_tier"]
    assert by_step == {"chain": "fail", "step": "step_1", "tier": "free", "failures": 4}
    (inputs,) = result["errors"]["failing_inputs"]
    assert inputs["input"] == "2" and inputs["failures"] == 3 and inputs["share"] == 0.75
    assert result["errors"]["by_chain_tier"][0]["error_rate"] == 1.0
    history.close()
    meters.close()


def test_analytics_on_missing_or_empty_databases(tmp_path):
    with pytest.raises(FileNotFoundError, match="no database"):
        analyze(tmp_path / "absent.db")
    conn = open_database(tmp_path / "empty.db")
    conn.close()
    assert "no per-user history" in analyze(tmp_path / "empty.db")["note"]
    with pytest.raises(ValueError, match="hour' or 'day"):
        analyze(tmp_path / "empty.db", bucket="week")


def test_histogram_of_keeps_min_and_max():
    c = np.zeros(33792, dtype=np.int64)
    c[100] = 2
    c[5000] = 1
    hist = histogram_of(c)
    assert isinstance(hist, LatencyHistogram) and hist.count == 3

"""The hub's store on a real SQLite file and a real PostgreSQL server: each row once, exact merges,
tenant views, and PostgreSQL outages."""
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hub_rows import INTERVAL_NS, T0, alert, execution, full_batch, interval, recorded, usage

from flowchain.histograms import LatencyHistogram
from flowchain.hub.rows import Batch
from flowchain.hub.store import HubStoreUnavailable, open_store

HERE = Path(__file__).parent


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "hub.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def _counts(hist):
    return np.frombuffer(hist.hdr.counts, dtype=np.int64)


def assert_same_histogram(got, want):
    assert got.count == want.count
    assert np.array_equal(_counts(got), _counts(want))
    assert (got.min, got.max) == (want.min, want.max)
    assert got.percentiles((50.0, 99.0, 99.9)) == want.percentiles((50.0, 99.0, 99.9))


def test_same_batch_twice_is_stored_once(store):
    batch = full_batch("node-a")
    first = store.ingest(batch)
    assert first.stored == {"intervals": 4, "executions": 4, "alerts": 4, "usage": 1}
    assert set(first.duplicates.values()) == {0}
    again = store.ingest(Batch.from_json(batch.to_json()))
    assert set(again.stored.values()) == {0}
    assert again.duplicates == first.stored
    assert len(store.executions()) == 4 and len(store.alerts()) == 4
    assert store.shipped_up_to("node-a") == {"intervals": 4, "executions": 4, "alerts": 4}
    assert store.shipped_up_to("never-seen") == {"intervals": 0, "executions": 0, "alerts": 0}


def test_batches_recut_after_a_restart_store_each_row_once(store):
    cuts = [(1, 4), (3, 5), (5, 6), (1, 10)]  # overlapping re-cuts, one resend of everything
    stored = 0
    for first, n in cuts:
        batch = full_batch("node-a", first=first, n=n)
        stored += store.ingest(batch).stored["intervals"]
    assert stored == 10
    totals = store.interval_totals()
    assert [t.count for t in totals] == [sum(recorded(i).count for i in range(1, 11))]
    assert store.shipped_up_to("node-a")["executions"] == 10
    # rows repeated inside one batch are one row too
    dup = Batch("node-b", intervals=(interval("node-b", 1), interval("node-b", 1)))
    result = store.ingest(dup)
    assert (result.stored["intervals"], result.duplicates["intervals"]) == (1, 1)


def test_concurrent_ingest_from_two_threads(store):
    batches = [full_batch("node-a", first=f, n=6) for f in range(1, 40, 3)]
    stored = []
    errors = []

    def ship(order):
        try:
            for b in order:
                stored.append(store.ingest(b).stored["intervals"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ship, args=(o,)) for o in (batches, batches[::-1])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sum(stored) == 42  # ids 1..42, each once
    assert store.shipped_up_to("node-a")["intervals"] == 42
    assert sum(t.count for t in store.interval_totals()) == \
        sum(recorded(i).count for i in range(1, 43))


SHIP = """
import sys
from flowchain.hub.rows import Batch
from flowchain.hub.store import open_store
store = open_store(sys.argv[1])
total = 0
for line in sys.stdin.buffer:
    total += store.ingest(Batch.from_json(line)).stored["intervals"]
store.close()
print(total)
"""


def test_concurrent_ingest_from_two_processes(store_url):
    open_store(store_url).close()  # tables first: the processes race on rows, not on set-up
    batches = [full_batch("node-a", first=f, n=5).to_json() for f in range(1, 60, 4)]
    procs = []
    for order in (batches, batches[::-1]):
        p = subprocess.Popen([sys.executable, "-c", SHIP, store_url], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=HERE)
        p.stdin.write(b"\n".join(order) + b"\n")
        p.stdin.close()
        procs.append(p)
    totals = []
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read().decode()
        totals.append(int(p.stdout.read()))
    assert sum(totals) == 61
    with open_store(store_url) as s:
        assert s.shipped_up_to("node-a")["intervals"] == 61
        assert len(s.executions(limit=1000)) == 61


def test_merged_histogram_is_the_exact_hdr_merge_across_nodes(store):
    nodes = ("node-a", "node-b", "node-c")
    mine = {n: [] for n in nodes}
    for k, node in enumerate(nodes):
        rows = []
        for slot in range(6):
            seed = 100 * k + slot
            rows.append(interval(node, slot + 1, slot=slot, seed=seed))
            rows.append(interval(node, 100 + slot, slot=slot, seed=seed + 7, step="score"))
            mine[node].append(recorded(seed))
        store.ingest(Batch(node, intervals=tuple(rows)))
    want = LatencyHistogram()
    for hists in mine.values():
        for h in hists:
            want.merge(h)
    got = store.merged_histogram("decide", start_ns=T0, end_ns=T0 + 6 * INTERVAL_NS)
    assert_same_histogram(got, want)
    # a window of slots 2..3 only, and two nodes only
    part = LatencyHistogram()
    for node in ("node-a", "node-c"):
        for h in mine[node][2:4]:
            part.merge(h)
    got = store.merged_histogram("decide", "", start_ns=T0 + 2 * INTERVAL_NS,
                                 end_ns=T0 + 4 * INTERVAL_NS, node_ids=["node-a", "node-c"])
    assert_same_histogram(got, part)
    assert store.merged_histogram("decide", "score", start_ns=T0, end_ns=T0 + 6 * INTERVAL_NS,
                                  ).count == 18 * 200
    assert store.merged_histogram("other", start_ns=T0, end_ns=T0 + INTERVAL_NS).count == 0
    assert store.merged_histogram("decide", start_ns=T0, end_ns=T0 + INTERVAL_NS,
                                  node_ids=[]).count == 0


def test_a_stored_histogram_that_is_not_hdr_fails_the_merge_clearly(store):
    bad = interval("node-a", 1)
    import msgspec
    bad = msgspec.structs.replace(bad, histogram="HISTFAAAAAAA")  # the cookie, then nothing
    store.ingest(Batch.from_json(Batch("node-a", intervals=(bad,)).to_json()))
    with pytest.raises(ValueError, match="'decide' step '' .*HdrHistogram"):
        store.merged_histogram("decide", start_ns=T0, end_ns=T0 + INTERVAL_NS)


def test_usage_is_an_upsert_where_the_newest_wins(store):
    store.ingest(Batch("node-a", usage=(usage("node-a", used=5, updated_ns=T0 + 10),)))
    r = store.ingest(Batch("node-a", usage=(usage("node-a", used=9, updated_ns=T0 + 20),)))
    assert r.stored["usage"] == 1
    stale = store.ingest(Batch("node-a", usage=(usage("node-a", used=7, updated_ns=T0 + 15),)))
    assert (stale.stored["usage"], stale.duplicates["usage"]) == (0, 1)
    store.ingest(Batch("node-b", usage=(usage("node-b", used=3),)))
    assert [(u.node_id, u.used) for u in store.usage()] == [("node-a", 9), ("node-b", 3)]


def test_an_alert_moves_forward_only(store):
    store.ingest(Batch("node-a", alerts=(alert("node-a", 1, alerts=1),)))
    more = store.ingest(Batch("node-a", alerts=(alert("node-a", 1, alerts=3),)))
    assert more.stored["alerts"] == 1
    closed = store.ingest(Batch("node-a", alerts=(alert("node-a", 1, alerts=3, end_ns=T0 + 5),)))
    assert closed.stored["alerts"] == 1
    old = store.ingest(Batch("node-a", alerts=(alert("node-a", 1, alerts=2),)))
    assert old.duplicates["alerts"] == 1
    [row] = store.alerts()
    assert (row.alerts, row.end_ns) == (3, T0 + 5)


def test_nodes_first_and_last_contact(store):
    store.touch_node("node-a", T0 + 50, {"version": "1"})
    store.touch_node("node-a", T0 + 20, {"version": "2"})
    store.touch_node("node-b", T0, {})
    nodes = store.nodes()
    assert [(n.node_id, n.first_seen_ns, n.last_contact_ns, n.info) for n in nodes] == [
        ("node-a", T0 + 20, T0 + 50, {"version": "2"}), ("node-b", T0, T0, {})]
    with pytest.raises(ValueError, match="JSON"):
        store.touch_node("node-a", T0, {"x": object()})


def test_tenant_views_see_only_their_tenant(store):
    store.ingest(full_batch("node-a", tenant="acme"))
    store.ingest(full_batch("node-b", tenant="globex"))
    store.ingest(Batch("node-a", executions=(execution("node-a", 50, tenant="globex"),)))
    for name in ("node-a", "node-b"):
        store.touch_node(name, T0, {})
    acme = store.for_tenant("acme")
    assert {e.tenant for e in acme.executions()} == {"acme"} and len(acme.executions()) == 4
    assert {a.tenant for a in acme.alerts()} == {"acme"}
    assert [u.tenant for u in acme.usage()] == ["acme"]
    assert {t.tenant for t in acme.interval_totals()} == {"acme"}
    assert [n.node_id for n in acme.nodes()] == ["node-a"]
    assert acme.executions(tenant="globex") == []
    assert acme.merged_histogram("decide", start_ns=T0, end_ns=T0 + 10 * INTERVAL_NS).count \
        == 4 * 200
    assert acme.merged_histogram("decide", start_ns=T0, end_ns=T0 + 10 * INTERVAL_NS,
                                 node_ids=["node-b"]).count == 0
    assert acme.shipped_up_to("node-a")["executions"] == 4  # globex's 50 is not acme's
    assert len(store.executions(limit=100)) == 9
    assert [e.tenant for e in store.executions(tenant="globex")] == ["globex"] * 5
    with pytest.raises(PermissionError, match="read-only"):
        acme.ingest(full_batch("node-a"))
    with pytest.raises(PermissionError, match="read-only"):
        acme.touch_node("node-a", T0, {})
    with pytest.raises(PermissionError, match="globex"):
        acme.for_tenant("globex")
    acme.close()  # a view's close leaves the store open
    assert len(store.executions(limit=1)) == 1


def test_executions_filters_and_limit(store):
    store.ingest(Batch("node-a", executions=(
        execution("node-a", 1, start=1), execution("node-a", 2, status="succeeded", start=2),
        execution("node-a", 3, start=3))))
    assert [e.local_id for e in store.executions()] == [3, 2, 1]
    assert [e.local_id for e in store.executions(status="failed", limit=1)] == [3]
    assert store.executions(status="succeeded")[0].sampled is True
    assert store.executions(chain="other") == []
    with pytest.raises(ValueError, match="limit"):
        store.executions(limit=-1)


def test_ingest_takes_a_batch_only(store):
    with pytest.raises(TypeError, match="Batch"):
        store.ingest(json.loads(full_batch("node-a").to_json()))


def test_postgres_outage_fails_clearly_then_recovers(postgres_server, postgres_url):
    store = open_store(postgres_url, timeout_s=2)
    try:
        store.ingest(full_batch("node-a", n=2))
        postgres_server.stop()
        with pytest.raises(HubStoreUnavailable):
            store.ingest(full_batch("node-a", first=3, n=2))
        with pytest.raises(HubStoreUnavailable):
            store.executions()
        postgres_server.start()
        store.ingest(full_batch("node-a", first=3, n=2))
        assert store.shipped_up_to("node-a")["intervals"] == 4
    finally:
        postgres_server.start()
        store.close()


def test_several_hubs_set_up_one_postgres_together(postgres_url):
    stores, errors = [], []

    def open_one():
        try:
            stores.append(open_store(postgres_url))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(stores) == 4
    stores[0].ingest(full_batch("node-a"))
    assert stores[3].shipped_up_to("node-a")["intervals"] == 4  # nothing cached per hub
    views = [s.for_tenant("acme") for s in stores]
    assert all(len(v.executions()) == 4 for v in views)
    for s in stores:
        s.close()


def test_unreachable_postgres_is_unavailable():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HubStoreUnavailable, match="cannot reach"):
        open_store(f"postgresql://nobody@127.0.0.1:{port}/none", timeout_s=1)


HOUR_SLOTS = 360


def test_hours_merged_once_are_reused_and_redone_when_intervals_arrive_late(store):
    # three hours of node-a and node-b, one interval a minute; node-b in another tenant
    hists = {}
    for node, tenant in (("node-a", "acme"), ("node-b", "globex")):
        rows = []
        for slot in range(0, 3 * HOUR_SLOTS, 6):
            seed = slot + (7 if node == "node-b" else 0)
            rows.append(interval(node, slot + 1, tenant=tenant, slot=slot, seed=seed))
            hists[(node, slot)] = recorded(seed)
        store.ingest(Batch(node, intervals=tuple(rows)))

    def want(slots, nodes=("node-a", "node-b")):
        out = LatencyHistogram()
        for (node, slot), h in hists.items():
            if node in nodes and slot in slots:
                out.merge(h)
        return out

    # from the middle of hour 0 to the middle of hour 2: hour 1 whole, the edges from intervals
    lo, hi = T0 + 1800 * 10**9, T0 + 9000 * 10**9
    slots = range(180, 900)
    for _ in range(2):  # the second time hour 1 comes from its stored merge
        assert_same_histogram(store.merged_histogram("decide", start_ns=lo, end_ns=hi),
                              want(slots))
    stored = store._read("SELECT node_id, hour_ns, intervals FROM hub_rollups", [])
    assert sorted(stored) == [("node-a", T0 + 3600 * 10**9, 60), ("node-b", T0 + 3600 * 10**9, 60)]
    # a late interval inside hour 1 (a node catching up): the stored merge is redone
    late = interval("node-a", 5000, tenant="acme", slot=HOUR_SLOTS + 1, seed=999)
    store.ingest(Batch("node-a", intervals=(late,)))
    hists[("node-a", HOUR_SLOTS + 1)] = recorded(999)
    assert_same_histogram(store.merged_histogram("decide", start_ns=lo, end_ns=hi), want(slots))
    assert ("node-a", T0 + 3600 * 10**9, 61) in store._read(
        "SELECT node_id, hour_ns, intervals FROM hub_rollups", [])
    # the whole range, per node and per tenant view
    every = range(0, 3 * HOUR_SLOTS)
    end = T0 + 3 * 3600 * 10**9
    assert_same_histogram(store.merged_histogram("decide", start_ns=T0 - 1, end_ns=end),
                          want(every))
    assert_same_histogram(store.merged_histogram("decide", start_ns=T0 - 1, end_ns=end,
                                                 node_ids=["node-b"]), want(every, ("node-b",)))
    acme = store.for_tenant("acme")
    assert_same_histogram(acme.merged_histogram("decide", start_ns=T0 - 1, end_ns=end),
                          want(every, ("node-a",)))
    assert_same_histogram(store.merged_histogram("decide", start_ns=T0 - 1, end_ns=end,
                                                 tenant="globex"), want(every, ("node-b",)))


def test_an_unopenable_sqlite_file_is_unavailable(tmp_path):
    with pytest.raises(HubStoreUnavailable, match="cannot open"):
        open_store(tmp_path / "missing-dir" / "hub.db")
    s = open_store(tmp_path / "hub.db")
    s.close()
    with pytest.raises(HubStoreUnavailable, match="closed"):
        s.executions()


def test_the_store_benchmark_measures_against_its_baselines(postgres_url):
    from flowchain.bench.hub_store import measure_ingest, measure_merged_query

    ingest = measure_ingest(postgres_url, rows=600, batch_rows=200, repetitions=2)
    assert ingest["rows"] == 600 and ingest["ingest_rows_per_s"] > 0
    assert ingest["bare_rows_per_s"] > 0 and ingest["ingest_vs_bare"] > 0
    query = measure_merged_query(postgres_url, nodes=2, days=0.1, repetitions=1)
    assert query["rows"] == 2 * 864 and query["merged_exact"] is True
    assert query["merged_query_s"] > 0 and query["scan_s"] > 0 and query["p99_ns"] > 0

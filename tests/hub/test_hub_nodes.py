"""Three trading nodes shipping to one hub: exact merged percentiles, and nothing lost or doubled
when the hub is killed mid-run and restarted (SQLite hub; PostgreSQL in test_hub_postgres)."""
from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from pathlib import Path

from hub_running import CHAINS, hub_counts, local_counts, local_executions, node_config, node_token, start_hub, stop_hub

from flowchain.chains import AI_DECISION_CHAIN
from flowchain.config import load_config
from flowchain.histograms import LatencyHistogram
from flowchain.hub.store import open_store
from flowchain.node import TradingNode
from flowchain.observe.history import open_history

NODES = ("desk_a", "desk_b", "desk_c")
EVER = (0, 1 << 62)


def local_merge(dbs: list[Path], chain: str, step: str) -> LatencyHistogram:
    """The HDR merge of every interval histogram the nodes stored themselves."""
    merged = LatencyHistogram()
    for db in dbs:
        conn = open_history(db, readonly=True)
        try:
            for (encoded,) in conn.execute("SELECT histogram FROM latency_intervals WHERE "
                                           "chain = ? AND step = ?", (chain, step)):
                merged.merge(LatencyHistogram.decode(encoded))
        finally:
            conn.close()
    return merged


def steps_of(db: Path) -> set[tuple[str, str]]:
    conn = open_history(db, readonly=True)
    try:
        return set(conn.execute("SELECT DISTINCT chain, step FROM latency_intervals"))
    finally:
        conn.close()


def build_nodes(tmp: Path, url: str, tokens: Path) -> list[TradingNode]:
    nodes = []
    for i, node_id in enumerate(NODES):
        token = node_token(tmp, tokens, node_id)
        config = load_config(node_config(tmp, node_id, url, token, seed=i, dashboard=i == 0))
        nodes.append(TradingNode(config))
    return nodes


def api_status(node: TradingNode) -> dict:
    assert node.observers is not None and node.observers.url
    with urllib.request.urlopen(node.observers.url + "/api/status", timeout=30) as r:
        return json.load(r)


def shipper(node: TradingNode):
    assert node.observers is not None and node.observers.shipper is not None
    return node.observers.shipper


async def stop_all(nodes: list[TradingNode], tasks: list[asyncio.Future]) -> list[dict]:
    for node in nodes:
        node.request_stop("test")
    return list(await asyncio.wait_for(asyncio.gather(*tasks), 90))


async def test_three_nodes_the_hub_merges_their_histograms_exactly(
        tmp_path: Path, eventually_async) -> None:
    tokens = tmp_path / "tokens"
    tokens.touch()
    hub_db = tmp_path / "hub.db"
    hub, url = start_hub(tmp_path, str(hub_db), tokens)
    try:
        nodes = build_nodes(tmp_path, url, tokens)
        tasks = [asyncio.ensure_future(n.run(install_signals=False)) for n in nodes]
        await eventually_async(lambda: all(n.observers is not None and n.observers.shipper
                                           and shipper(n).status()["shipped"]["intervals"] > 8
                                           for n in nodes), timeout=60)
        summaries = await stop_all(nodes, tasks)
        for node_id, summary in zip(NODES, summaries, strict=False):
            assert summary["hub"]["state"] == "ok", summary["hub"]
            assert summary["hub"]["node_id"] == node_id
        dbs = [tmp_path / f"{n}.db" for n in NODES]
        store = open_store(hub_db)
        try:
            for node_id, db in zip(NODES, dbs, strict=False):  # every row once: nothing lost, nothing doubled
                assert hub_counts(str(hub_db), node_id) == local_counts(db)
            pairs = set().union(*(steps_of(db) for db in dbs))
            assert {c for c, _ in pairs} == set(CHAINS) and len(pairs) > 4
            for chain, step in sorted(pairs):
                ours = local_merge(dbs, chain, step)
                theirs = store.merged_histogram(chain, step, start_ns=EVER[0], end_ns=EVER[1])
                assert theirs.count == ours.count > 0
                for p in (50.0, 99.0, 99.9, 100.0):
                    assert theirs.percentile(p) == ours.percentile(p), (chain, step, p)
            with urllib.request.urlopen(url + "/api/v1/overview?window_s=0", timeout=30) as r:
                overview = json.load(r)
        finally:
            store.close()
        chains = {c["chain"]: c for c in overview["chains"]}
        for chain in CHAINS:
            expected = sum(local_executions(db, chain) for db in dbs)
            assert chains[chain]["executions"] == expected > 0
            assert chains[chain]["p99_ns"] == local_merge(dbs, chain, "").percentile(99.0)
            for s in chains[chain]["steps"]:
                assert s["p99_ns"] == local_merge(dbs, chain, s["step"]).percentile(99.0)
                assert s["count"] == sum(local_executions(db, chain, s["step"]) for db in dbs)
        assert {n["node_id"] for n in overview["nodes"]} == set(NODES)
        # the decision chain's executions the engine counted are those the hub counts
        decided = sum(s["chains"][AI_DECISION_CHAIN]["executions"] for s in summaries)
        assert chains[AI_DECISION_CHAIN]["executions"] == decided
    finally:
        stop_hub(hub)


async def test_hub_killed_then_restarted_nodes_trade_on_and_catch_up(
        tmp_path: Path, eventually_async) -> None:
    tokens = tmp_path / "tokens"
    tokens.touch()
    hub_db = tmp_path / "hub.db"
    hub, url = start_hub(tmp_path, str(hub_db), tokens)
    port = int(url.rsplit(":", 1)[1])
    try:
        nodes = build_nodes(tmp_path, url, tokens)
        tasks = [asyncio.ensure_future(n.run(install_signals=False)) for n in nodes]
        await eventually_async(lambda: all(n.observers is not None and n.observers.shipper
                                           and shipper(n).status()["state"] == "ok" for n in nodes),
                               timeout=60)
        hub.send_signal(signal.SIGKILL)
        hub.wait(10)
        await eventually_async(lambda: all(shipper(n).status()["state"] == "retrying" for n in nodes),
                               timeout=30)
        status = await asyncio.get_running_loop().run_in_executor(None, api_status, nodes[0])
        assert status["hub"]["state"] == "retrying" and status["hub"]["last_error"]
        assert "hub=RETRYING" in nodes[0].status_line()
        during = [n.counters.decisions for n in nodes]
        backlog = [shipper(n).status()["shipped"]["intervals"] for n in nodes]
        await eventually_async(lambda: all(n.counters.decisions > d + 200
                                           for n, d in zip(nodes, during, strict=False)), timeout=30)
        assert all(not t.done() for t in tasks)  # the nodes trade on without their hub
        assert [shipper(n).status()["shipped"]["intervals"] for n in nodes] == backlog
        hub, url = start_hub(tmp_path, str(hub_db), tokens, port=port, name="hub2")
        await eventually_async(lambda: all(shipper(n).status()["state"] == "ok" for n in nodes), timeout=30)
        assert "hub=" not in nodes[0].status_line()
        summaries = await stop_all(nodes, tasks)
        assert all(s["hub"]["failures"] > 0 for s in summaries)
        for node_id in NODES:
            db = tmp_path / f"{node_id}.db"
            assert hub_counts(str(hub_db), node_id) == local_counts(db)
        store = open_store(hub_db)
        try:
            totals = store.interval_totals()
        finally:
            store.close()
        for chain in CHAINS:
            hub_total = sum(t.count for t in totals if t.chain == chain and t.step == "")
            assert hub_total == sum(local_executions(tmp_path / f"{n}.db", chain) for n in NODES)
    finally:
        stop_hub(hub)

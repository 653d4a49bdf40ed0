"""Hubs on a real PostgreSQL: the database stopped mid-run and restarted loses and doubles
nothing; two hubs on one database answer the same (they hold no state of their own)."""
from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

from hub_running import CHAINS, hub_counts, local_counts, local_executions, node_config, node_token, start_hub, stop_hub

from flowchain.config import load_config
from flowchain.node import TradingNode

NODES = ("pg_a", "pg_b", "pg_c")


def overview(url: str) -> dict:
    with urllib.request.urlopen(url + "/api/v1/overview?window_s=0", timeout=30) as r:
        return json.load(r)


def shipper(node: TradingNode):
    assert node.observers is not None and node.observers.shipper is not None
    return node.observers.shipper


def ready(node: TradingNode) -> bool:
    return node.observers is not None and node.observers.shipper is not None


async def test_postgres_stopped_mid_run_then_restarted_nothing_lost_nothing_doubled(
        tmp_path: Path, postgres_server, postgres_url: str, eventually_async) -> None:
    tokens = tmp_path / "tokens"
    tokens.touch()
    hub, url = start_hub(tmp_path, postgres_url, tokens)
    try:
        nodes = []
        for i, node_id in enumerate(NODES):
            token = node_token(tmp_path, tokens, node_id)
            nodes.append(TradingNode(load_config(node_config(tmp_path, node_id, url, token,
                                                             seed=i))))
        tasks = [asyncio.ensure_future(n.run(install_signals=False)) for n in nodes]
        await eventually_async(lambda: all(ready(n) and shipper(n).status()["state"] == "ok"
                                           and shipper(n).status()["shipped"]["intervals"] > 0
                                           for n in nodes), timeout=60)
        postgres_server.stop()
        try:
            await eventually_async(lambda: all(shipper(n).status()["state"] == "retrying" for n in nodes),
                                   timeout=30)
            during = [n.counters.decisions for n in nodes]
            await eventually_async(lambda: all(n.counters.decisions > d + 200
                                               for n, d in zip(nodes, during, strict=False)), timeout=30)
            assert all(not t.done() for t in tasks)  # trading goes on without the database
        finally:
            postgres_server.start()
        await eventually_async(lambda: all(shipper(n).status()["state"] == "ok" for n in nodes), timeout=60)
        for node in nodes:
            node.request_stop("test")
        summaries = await asyncio.wait_for(asyncio.gather(*tasks), 90)
        assert all(s["hub"]["failures"] > 0 and s["hub"]["state"] == "ok" for s in summaries)
        for node_id in NODES:
            assert hub_counts(postgres_url, node_id) == local_counts(tmp_path / f"{node_id}.db")
        with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
            metrics = r.read().decode()
        refused = [line for line in metrics.splitlines()
                   if line.startswith('flowchain_hub_ingest_total{outcome="store_errors"}')]
        assert refused and float(refused[0].split()[-1]) > 0, metrics  # the hub answered 503
        chains = {c["chain"]: c for c in overview(url)["chains"]}
        for chain in CHAINS:
            assert chains[chain]["executions"] == sum(
                local_executions(tmp_path / f"{n}.db", chain) for n in NODES)
    finally:
        stop_hub(hub)


async def test_two_hubs_on_one_database_answer_the_same(
        tmp_path: Path, postgres_url: str, eventually_async) -> None:
    tokens = tmp_path / "tokens"
    tokens.touch()
    hub1, url1 = start_hub(tmp_path, postgres_url, tokens, name="hub1")
    hub2, url2 = start_hub(tmp_path, postgres_url, tokens, name="hub2")
    try:
        nodes = []
        for i, (node_id, url) in enumerate((("two_a", url1), ("two_b", url2))):
            token = node_token(tmp_path, tokens, node_id)
            nodes.append(TradingNode(load_config(node_config(tmp_path, node_id, url, token,
                                                             seed=i))))
        tasks = [asyncio.ensure_future(n.run(install_signals=False)) for n in nodes]
        await eventually_async(lambda: all(ready(n) and shipper(n).status()["shipped"]["intervals"]
                                           > 2 for n in nodes), timeout=60)
        for node in nodes:
            node.request_stop("test")
        await asyncio.wait_for(asyncio.gather(*tasks), 90)
        first, second = overview(url1), overview(url2)
        for data in (first, second):
            data.pop("time_ns"), data.pop("start_ns")
            for node in data["nodes"]:
                node.pop("last_contact_age_s")
                node.pop("health")
        assert first == second
        assert {n["node_id"] for n in first["nodes"]} == {"two_a", "two_b"}
    finally:
        stop_hub(hub1)
        stop_hub(hub2)

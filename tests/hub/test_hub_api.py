"""The hub's HTTP API on loopback: node tokens, ingest answers, overview and /metrics."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from hub_running import LAUNCH

from flowchain.histograms import LatencyHistogram
from flowchain.hub.app import HubStartError, build_app, serve
from flowchain.hub.auth import NodeTokens, TokenFileError, add_token, revoke_token, token_hash
from flowchain.hub.rows import Batch, IntervalRow
from flowchain.hub.store import open_store

NOW = 1_700_000_000_000_000_000


def interval(node: str, local_id: int, values: list[int], *, step: str = "",
             tenant: str = "default", start: int = NOW) -> IntervalRow:
    hist = LatencyHistogram.from_values(values)
    return IntervalRow(node, local_id, "run1", tenant, "chain_a", "chain_a:1", step,
                       -1 if step == "" else 0, start, start + 10**10, hist.count, 0, None,
                       hist.encode(), None)


@pytest.fixture
async def hub(tmp_path: Path):
    tokens = tmp_path / "tokens"
    secrets = {n: add_token(tokens, n) for n in ("n1", "n2")}
    store = open_store(tmp_path / "hub.db")
    app = build_app(store, NodeTokens(tokens), max_body=64 << 10)
    running = await serve(app, "127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        yield running.url, secrets, session, store
    await running.stop()
    store.close()


async def post(session: aiohttp.ClientSession, url: str, body: bytes, token: str = ""):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.post(url + "/api/v1/ingest", data=body, headers=headers) as r:
        return r.status, await r.json()


async def test_a_node_ships_with_its_token_and_a_batch_sent_twice_is_stored_once(hub) -> None:
    url, secrets, session, store = hub
    batch = Batch("n1", intervals=(interval("n1", 1, [1000, 2000]),
                                   interval("n1", 2, [3000], step="s1")))
    status, body = await post(session, url, batch.to_json(), secrets["n1"])
    assert status == 200, body
    assert body["stored"]["intervals"] == 2
    status, body = await post(session, url, batch.to_json(), secrets["n1"])
    assert status == 200 and body["stored"]["intervals"] == 0
    assert body["duplicates"]["intervals"] == 2
    assert store.shipped_up_to("n1")["intervals"] == 2
    assert [n.node_id for n in store.nodes()] == ["n1"]  # the contact was recorded


async def test_missing_and_unknown_tokens_are_401(hub) -> None:
    url, secrets, session, store = hub
    body = Batch("n1").to_json()
    status, answer = await post(session, url, body)
    assert status == 401 and "Authorization: Bearer" in answer["error"]
    status, answer = await post(session, url, body, "not-a-token")
    assert status == 401 and "unknown node token" in answer["error"]
    async with session.post(url + "/api/v1/ingest", data=body,
                            headers={"Authorization": f"Basic {secrets['n1']}"}) as r:
        assert r.status == 401
    assert store.nodes() == []


async def test_a_node_cannot_ship_another_nodes_rows(hub) -> None:
    url, secrets, session, store = hub
    theirs = Batch("n2", intervals=(interval("n2", 1, [1000]),))
    status, answer = await post(session, url, theirs.to_json(), secrets["n1"])
    assert status == 403
    assert "node 'n1'" in answer["error"] and "'n2'" in answer["error"]
    # a batch of its own naming another node in one row: refused whole, nothing stored
    mixed = json.loads(Batch("n1", intervals=(interval("n1", 1, [1000]),)).to_json())
    mixed["intervals"].append(dict(mixed["intervals"][0], node_id="n2", local_id=2))
    status, answer = await post(session, url, json.dumps(mixed).encode(), secrets["n1"])
    assert status in (400, 403), answer
    assert "n2" in answer["error"]
    assert store.interval_totals() == []


@pytest.mark.parametrize("body, named", [
    (b"{not json", "not JSON"),
    (b'{"node_id": "n1", "intervals": [{"node_id": "n1"}]}', "intervals[0]"),
    (b'{"node_id": "n1", "executions": "many"}', "executions"),
    (b'{"node_id": "n1", "surprise": 1}', "surprise"),
])
async def test_malformed_bodies_are_400_naming_the_field(hub, body: bytes, named: str) -> None:
    url, secrets, session, store = hub
    status, answer = await post(session, url, body, secrets["n1"])
    assert status == 400
    assert named in answer["error"], answer


async def test_a_body_over_the_limit_is_413(hub) -> None:
    url, secrets, session, store = hub
    status, answer = await post(session, url, b"x" * (65 << 10), secrets["n1"])
    assert status == 413 and "batch_rows" in answer["error"]


async def test_overview_merges_histograms_exactly_and_metrics_aggregate(hub) -> None:
    url, secrets, session, store = hub
    a, b = [1000] * 98 + [5000, 900_000], [2000] * 50 + [7_000_000] * 3
    for node, values in (("n1", a), ("n2", b)):
        batch = Batch(node, intervals=(interval(node, 1, values, start=NOW),))
        status, _ = await post(session, url, batch.to_json(), secrets[node])
        assert status == 200
    async with session.get(url + "/api/v1/overview?window_s=0") as r:
        assert r.status == 200
        data = await r.json()
    merged = LatencyHistogram.from_values(a) + LatencyHistogram.from_values(b)
    (chain,) = data["chains"]
    assert chain["executions"] == len(a) + len(b)
    assert chain["p99_ns"] == merged.percentile(99.0)
    assert chain["p50_ns"] == merged.percentile(50.0)
    assert sorted(chain["nodes"]) == ["n1", "n2"]
    assert {n["node_id"]: n["health"] for n in data["nodes"]} == {"n1": "up", "n2": "up"}
    assert data["tenants"][0]["executions"] == len(a) + len(b)
    async with session.get(url + "/api/v1/overview?window_s=-1") as r:
        assert r.status == 400
    async with session.get(url + "/metrics") as r:
        text = await r.text()
    assert ('flowchain_hub_executions_total{chain="chain_a",step="",tenant="default"} 153.0'
            in text), text
    assert 'flowchain_hub_node_last_contact_seconds{node="n2"}' in text
    assert 'flowchain_hub_ingest_total{outcome="ok"} 2.0' in text


async def test_the_tokens_file_keeps_hashes_only_and_is_reread(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    first = add_token(tokens, "n1")
    text = tokens.read_text()
    assert first not in text and token_hash(first) in text
    assert stat.S_IMODE(os.stat(tokens).st_mode) == 0o600
    held = NodeTokens(tokens)
    assert held.node_of(first) == "n1" and held.node_of(first + "x") is None
    with pytest.raises(ValueError, match="already has a token"):
        add_token(tokens, "n1")
    second = add_token(tokens, "n1", replace=True)
    os.utime(tokens, ns=(1, 1))  # a rewrite within one mtime tick is still noticed by size/mtime
    assert held.node_of(second) == "n1" and held.node_of(first) is None
    assert revoke_token(tokens, "n1")
    assert held.node_of(second) is None
    tokens.write_text("n1 sha256:abc\n")
    with pytest.raises(TokenFileError, match=r"tokens:1: expected 'NODE_ID sha256"):
        NodeTokens(tokens)
    with pytest.raises(TokenFileError, match="flowchain hub token add"):
        NodeTokens(tmp_path / "absent")


async def test_a_remote_address_needs_tls_or_the_explicit_flag(tmp_path: Path) -> None:
    store = open_store(tmp_path / "hub.db")
    tokens = tmp_path / "tokens"
    add_token(tokens, "n1")
    try:
        with pytest.raises(HubStartError, match="--allow-insecure-remote"):
            await serve(build_app(store, NodeTokens(tokens)), "0.0.0.0", 0)
    finally:
        store.close()
    proc = subprocess.run([sys.executable, "-c", LAUNCH, "hub", "--db", str(tmp_path / "x.db"),
                           "--tokens", str(tokens), "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "--tls-cert" in proc.stderr and not (tmp_path / "x.db").exists()


def test_token_add_prints_once_and_the_cli_refuses_a_bad_node_id(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    run = [sys.executable, "-c", LAUNCH, "hub", "token"]
    made = subprocess.run([*run, "add", "desk_1", "--tokens", str(tokens)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert NodeTokens(tokens).node_of(made.stdout.strip()) == "desk_1"
    bad = subprocess.run([*run, "add", "no/such id", "--tokens", str(tokens)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "node id" in bad.stderr

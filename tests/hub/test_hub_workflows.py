"""Business workflows on the hub: a real aiohttp server on loopback over a real SQLite file
(and PostgreSQL): registration gated by tier, admission refusals, following a running
execution, process isolation, history and analytics, and tenant tokens tested adversarially."""
from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path

import aiohttp
import pytest
from typer.testing import CliRunner

from flowchain.cli import app as cli_app
from flowchain.components import ComponentRegistry
from flowchain.context import UserContext
from flowchain.hub.app import build_app, serve
from flowchain.hub.auth import NodeTokens, add_token
from flowchain.hub.store import open_store
from flowchain.hub.workflow_store import WorkflowStore
from flowchain.hub.workflows import WorkflowService
from flowchain.tenancy import FeatureGatedError, tiers_from_toml

TIERS = """
[features]
advanced = ["Advanced"]

[tiers.free]
isolation = "shared"
chains = 2
steps_per_chain = 3
executions_per_day = 3
features = []

[tiers.starter]
isolation = "shared"
executions_per_second = 0.001
burst = 1
features = []

[tiers.pro]
isolation = "dedicated"
concurrent = 1
features = ["advanced"]

[tiers.enterprise]
isolation = "process"
features = ["advanced"]
execution_timeout_s = 20.0
"""

RELEASE = threading.Event()
ENTERED = threading.Event()


def inc(x):
    return x + 1


def held(x):
    ENTERED.set()
    if not RELEASE.wait(30):
        raise TimeoutError("the test never released the step")
    return x + 1


def boom(x):
    raise ValueError(f"bad input {x!r}")


def pid(x):
    return os.getpid()


def crash(x):
    os._exit(3)


def components() -> ComponentRegistry:
    reg = ComponentRegistry()
    for name, fn in (("Inc", inc), ("Held", held), ("Boom", boom), ("Pid", pid), ("Crash", crash),
                     ("Advanced", inc)):
        reg.register(name, fn)
    return reg


def chain_yaml(name: str, *components: str) -> str:
    steps = "".join(f"""
    - name: s{i}_{c.lower()}
      component: {c}
      input: int
      output: int
      expected_duration: 5""" for i, c in enumerate(components))
    return f"{name}:\n  steps:{steps}\n"


class Hub:
    """A hub on loopback with its service, tenants' tokens and an HTTP session."""

    def __init__(self, url: str, session: aiohttp.ClientSession, service: WorkflowService,
                 tokens: dict[str, str], node_token: str) -> None:
        self.url, self.session, self.service = url, session, service
        self.tokens, self.node_token = tokens, node_token

    async def call(self, method: str, path: str, *, tenant: str | None = None,
                   token: str | None = None, json=None, data=None,
                   content_type: str | None = None):
        token = token if token is not None else self.tokens.get(tenant or "", "")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if content_type:
            headers["Content-Type"] = content_type
        async with self.session.request(method, self.url + path, json=json, data=data,
                                        headers=headers) as r:
            return r.status, await r.json(), r.headers

    async def register(self, tenant: str, text: str):
        return await self.call("POST", f"/api/v1/tenants/{tenant}/chains", tenant=tenant,
                               data=text, content_type="text/yaml")

    async def run(self, tenant: str, workflow: str, user: str, value, **extra):
        return await self.call("POST", f"/api/v1/tenants/{tenant}/workflows/{workflow}/"
                               "executions", tenant=tenant,
                               json={"user": user, "input": value, **extra})


async def start_hub(tmp_path: Path, store, tenants: dict[str, str]):
    node_tokens = tmp_path / "node-tokens"
    node_token = add_token(node_tokens, "node1")
    service = WorkflowService(store, tiers=tiers_from_toml(TIERS), components=components(),
                              threads=4)
    tokens = {t: service.workflows.add_tenant(t, tier) for t, tier in tenants.items()}
    app = build_app(store, NodeTokens(node_tokens), workflows=service)
    running = await serve(app, "127.0.0.1", 0)
    return running, service, tokens, node_token


@pytest.fixture
async def hub(tmp_path: Path):
    RELEASE.clear()
    ENTERED.clear()
    store = open_store(tmp_path / "hub.db")
    running, service, tokens, node_token = await start_hub(
        tmp_path, store, {"acme": "pro", "o'brien & co": "free", "slow": "starter",
                          "big": "enterprise"})
    async with aiohttp.ClientSession() as session:
        yield Hub(running.url, session, service, tokens, node_token)
    RELEASE.set()
    await running.stop()
    service.close()
    store.close()


async def wait_for(predicate, what: str, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_register_execute_history_and_analytics(hub: Hub):
    status, body, _ = await hub.register("acme", chain_yaml("Score", "Inc", "Inc", "Advanced")
                                         + chain_yaml("Broken", "Inc", "Boom"))
    assert status == 201, body
    assert [c["name"] for c in body["registered"]] == ["Score", "Broken"]
    # JSON registration: the chains object itself
    status, body, _ = await hub.call("POST", "/api/v1/tenants/acme/chains", tenant="acme", json={
        "Double": {"steps": [{"name": "a", "component": "Inc", "input": "int",
                              "output": "int", "expected_duration": 1}] * 1}})
    assert status == 201, body
    status, body, _ = await hub.call("GET", "/api/v1/tenants/acme/chains", tenant="acme")
    assert status == 200
    assert {c["name"] for c in body["chains"]} == {"Score", "Broken", "Double"}
    assert [s["component"] for s in next(c for c in body["chains"]
                                         if c["name"] == "Score")["steps"]] == \
        ["Inc", "Inc", "Advanced"]

    status, done, _ = await hub.run("acme", "Score", "ana", 1)
    assert status == 200, done
    assert done["status"] == "succeeded" and done["output"] == 4
    assert done["completed_steps"] == ["s0_inc", "s1_inc", "s2_advanced"]
    assert done["progress"] == 100.0 and done["user"] == "ana"
    status, failed, _ = await hub.run("acme", "Broken", "ana", 7)
    assert status == 200 and failed["status"] == "failed"
    assert failed["failed_step"] == "s1_boom" and "bad input 8" in failed["failure"]["message"]
    assert (await hub.run("acme", "Score", "bo", 10))[1]["output"] == 13

    # an ended execution is read back from the store
    status, again, _ = await hub.call("GET", f"/api/v1/tenants/acme/executions/"
                                      f"{done['execution_id']}", tenant="acme")
    assert status == 200 and again["status"] == "succeeded" and again["output"] == 4

    status, history, _ = await hub.call("GET", "/api/v1/tenants/acme/users/ana/history",
                                        tenant="acme")
    assert status == 200
    perf = history["performance"]
    assert (perf["executions"], perf["failures"], perf["success_rate"]) == (2, 1, 0.5)
    assert perf["latency"]["count"] == 1
    assert [e["workflow"] for e in history["executions"]] == ["Broken", "Score"]  # newest first

    status, analytics, _ = await hub.call("GET", "/api/v1/tenants/acme/analytics",
                                          tenant="acme")
    assert status == 200 and analytics["executions"] == 3
    score = next(w for w in analytics["workflows"] if w["workflow"] == "Score")
    assert score["executions"] == 2 and score["error_rate"] == 0.0
    assert [u["user"] for u in score["users"]] == ["ana", "bo"]
    broken = next(w for w in analytics["workflows"] if w["workflow"] == "Broken")
    assert broken["failures_by_step"] == [{"step": "s1_boom", "failures": 1}]
    assert analytics["usage_on_this_hub"]["executions_today"] == 3

    status, body, _ = await hub.run("acme", "Nope", "ana", 1)
    assert status == 404 and "Nope" in body["error"]
    for bad, field in (({"input": 1}, "user"), ({"user": "ana", "wait_s": -1}, "wait_s"),
                       ({"user": "ana", "inptu": 1}, "inptu")):
        status, body, _ = await hub.call("POST", "/api/v1/tenants/acme/workflows/Score/"
                                         "executions", tenant="acme", json=bad)
        assert status == 400 and field in body["error"], body


async def test_registration_is_gated_by_tier(hub: Hub):
    t = "o'brien & co"
    status, body, _ = await hub.register(t, chain_yaml("Adv", "Inc", "Advanced"))
    assert status == 403, body
    assert "'Advanced'" in body["error"] and "feature 'advanced'" in body["error"]
    assert body["allowed_in"] == "pro" and body["tier"] == "free"
    status, body, _ = await hub.register(t, chain_yaml("Long", "Inc", "Inc", "Inc", "Inc"))
    assert status == 403 and "4 steps" in body["error"] and body["allowed_in"] == "starter"
    status, body, _ = await hub.register(t, chain_yaml("Unknown", "Nonexistent"))
    assert status == 400 and "Nonexistent" in body["error"]
    status, body, _ = await hub.register(t, "A:\n  steps: [\n")
    assert status == 400 and body["error"].endswith(":3: malformed YAML: did not find expected node content")
    assert (await hub.register(t, chain_yaml("One", "Inc")))[0] == 201
    assert (await hub.register(t, chain_yaml("Two", "Inc")))[0] == 201
    status, body, _ = await hub.register(t, chain_yaml("Three", "Inc"))
    assert status == 429 and body["limit"] == "chains" and body["limit_value"] == 2
    status, body, _ = await hub.call("GET", f"/api/v1/tenants/{t}/chains", tenant=t)
    assert sorted(c["name"] for c in body["chains"]) == ["One", "Two"]  # nothing refused stuck


async def test_admission_refusals_name_the_limit(hub: Hub):
    t = "o'brien & co"
    await hub.register(t, chain_yaml("One", "Inc"))
    for i in range(3):
        assert (await hub.run(t, "One", "ana", i))[0] == 200
    status, body, headers = await hub.run(t, "One", "ana", 9)
    assert status == 429 and body["limit"] == "executions_per_day", body
    assert body["limit_value"] == 3 and "executions_per_day" in body["error"]
    assert int(headers["Retry-After"]) >= 1 and body["next_tier"] is not None

    await hub.register("slow", chain_yaml("One", "Inc"))
    assert (await hub.run("slow", "One", "ana", 1))[0] == 200
    status, body, headers = await hub.run("slow", "One", "ana", 2)
    assert status == 429 and body["limit"] == "executions_per_second", body
    assert int(headers["Retry-After"]) > 100  # one token per 1000 s

    # submitted without waiting: the refusal is stored, so following it says which limit
    status, body, _ = await hub.run("slow", "One", "ana", 3, wait_s=0)
    if status == 202:
        async def refused():
            _, view, _ = await hub.call("GET", body["follow"], tenant="slow")
            return view if view["status"] != "queued" else None

        body = await wait_for(refused, "the refusal to be stored")
        assert body["status"] == "refused"
    assert body["limit"] == "executions_per_second", body

    status, history, _ = await hub.call("GET", f"/api/v1/tenants/{t}/users/ana/history",
                                        tenant=t)
    assert history["performance"]["executions"] == 3
    assert history["performance"]["refused"] == 1
    assert history["executions"][0]["status"] == "refused"


async def test_follow_a_running_execution_and_concurrency(hub: Hub):
    await hub.register("acme", chain_yaml("Held", "Inc", "Held", "Inc"))
    status, body, _ = await hub.run("acme", "Held", "ana", 1, wait_s=0)
    assert status == 202, body
    path = body["follow"]
    assert path == f"/api/v1/tenants/acme/executions/{body['execution_id']}"

    async def at_held_step():
        status, view, _ = await hub.call("GET", path, tenant="acme")
        assert status == 200, view
        return view if view["current_step"] == "s1_held" else None

    view = await wait_for(at_held_step, "the execution to reach its held step")
    assert view["status"] == "running" and view["completed_steps"] == ["s0_inc"]
    assert view["progress"] == pytest.approx(33.3) and view["steps_total"] == 3
    assert isinstance(view["eta_ns"], int) and view["eta_ns"] >= 0

    # the pro tier runs one execution at a time: one of another chain is refused, named
    await hub.register("acme", chain_yaml("Other", "Inc"))
    status, refused, headers = await hub.run("acme", "Other", "bo", 5)
    assert status == 429 and refused["limit"] == "concurrent", refused
    assert refused["limit_value"] == 1 and "Retry-After" not in headers
    # one of the same chain waits for the chain's runner (not re-entrant), then is admitted
    status, queued, _ = await hub.run("acme", "Held", "bo", 10, wait_s=0)
    assert status == 202
    status, view, _ = await hub.call("GET", queued["follow"], tenant="acme")
    assert status == 200 and view["status"] == "queued" and view["current_step"] is None

    RELEASE.set()

    async def ended():
        _, view, _ = await hub.call("GET", path, tenant="acme")
        return view if view["status"] != "running" else None

    view = await wait_for(ended, "the execution to end")
    assert view["status"] == "succeeded" and view["output"] == 4
    assert view["completed_steps"] == ["s0_inc", "s1_held", "s2_inc"]

    async def queued_ended():
        _, view, _ = await hub.call("GET", queued["follow"], tenant="acme")
        return view if view["status"] not in ("queued", "running") else None

    view = await wait_for(queued_ended, "the queued execution to end")
    assert view["status"] == "succeeded" and view["output"] == 13 and view["user"] == "bo"


async def test_process_tier_runs_in_its_worker_process(hub: Hub):
    assert (await hub.register("big", chain_yaml("Where", "Inc", "Pid")))[0] == 201
    status, body, _ = await hub.run("big", "Where", "ana", 1)
    assert status == 200 and body["status"] == "succeeded", body
    assert isinstance(body["output"], int) and body["output"] != os.getpid()
    status, body, _ = await hub.run("acme", "Where", "ana", 1)
    assert status == 404  # another tenant's chain name is unknown here
    # a step that kills its interpreter takes down only the tenant's worker
    assert (await hub.register("big", chain_yaml("Dies", "Inc", "Crash")))[0] == 201
    status, body, _ = await hub.run("big", "Dies", "ana", 1)
    assert status == 200 and body["status"] == "failed" and "crashed" in body["error"], body
    status, body, _ = await hub.run("big", "Where", "ana", 1)
    assert status == 200 and body["status"] == "succeeded" and body["output"] != os.getpid()


async def test_suggestions_say_when_the_optimizer_is_not_available(hub: Hub, monkeypatch):
    await hub.register("acme", chain_yaml("Score", "Inc"))
    monkeypatch.setitem(sys.modules, "flowchain.optimizer", None)  # not importable
    status, body, _ = await hub.call("GET", "/api/v1/tenants/acme/chains/Score/suggestions",
                                     tenant="acme")
    assert status == 501 and body["error"].startswith("optimizer not available"), body
    status, body, _ = await hub.call("GET", "/api/v1/tenants/acme/chains/Nope/suggestions",
                                     tenant="acme")
    assert status == 404 and "Nope" in body["error"]


async def test_tenant_tokens_reach_only_their_tenant(hub: Hub):
    await hub.register("acme", chain_yaml("Score", "Inc"))
    t2 = "o'brien & co"
    await hub.register(t2, chain_yaml("Theirs", "Inc"))
    _, theirs, _ = await hub.run(t2, "Theirs", "zoe", 1)
    routes = [("GET", "chains"), ("POST", "chains"),
              ("POST", "workflows/Theirs/executions"),
              ("GET", f"executions/{theirs['execution_id']}"), ("GET", "users/zoe/history"),
              ("GET", "analytics"), ("GET", "chains/Theirs/suggestions")]
    acme = hub.tokens["acme"]
    for method, route in routes:
        # another tenant's id in the path (and one that does not exist): the same 403
        for other in (t2, "ghost"):
            status, body, _ = await hub.call(method, f"/api/v1/tenants/{other}/{route}",
                                             token=acme, json={"user": "x", "input": 1})
            assert status == 403, (method, route, body)
            assert body["error"] == "the token is tenant 'acme''s: it reaches only that " \
                                    "tenant's data"
        # no token, an unknown one, a node token
        status, body, _ = await hub.call(method, f"/api/v1/tenants/acme/{route}", token="")
        assert status == 401 and body["error"].startswith("no tenant token")
        status, body, _ = await hub.call(method, f"/api/v1/tenants/acme/{route}",
                                         token=acme[:-2] + "xx")
        assert status == 401 and body["error"].startswith("unknown tenant token")
        status, body, _ = await hub.call(method, f"/api/v1/tenants/acme/{route}",
                                         token=hub.node_token)
        assert status == 403 and body["error"].startswith("this is a node token")

    # guessed execution ids, and the other tenant's real one, on the caller's own path
    for guess in (theirs["execution_id"], "0", "x" * 22, "' OR '1'='1"):
        status, body, _ = await hub.call("GET", f"/api/v1/tenants/acme/executions/{guess}",
                                         tenant="acme")
        assert status == 404 and body["error"] == f"tenant 'acme' has no execution {guess!r}"
    # the other tenant's chains, users and figures are not in the caller's answers
    _, chains, _ = await hub.call("GET", "/api/v1/tenants/acme/chains", tenant="acme")
    assert [c["name"] for c in chains["chains"]] == ["Score"]
    _, history, _ = await hub.call("GET", "/api/v1/tenants/acme/users/zoe/history",
                                   tenant="acme")
    assert history["executions"] == [] and history["performance"]["executions"] == 0
    _, analytics, _ = await hub.call("GET", "/api/v1/tenants/acme/analytics", tenant="acme")
    assert analytics["executions"] == 0
    status, body, _ = await hub.run("acme", "Theirs", "zoe", 1)
    assert status == 404 and "Theirs" in body["error"] and "Score" in body["error"]

    # a deleted tenant's token stops working at once
    assert hub.service.workflows.delete_tenant(t2)
    status, body, _ = await hub.call("GET", f"/api/v1/tenants/{t2}/chains", tenant=t2)
    assert status == 401 and body["error"] == \
        "tenant \"o'brien & co\" was deleted: its token no longer works"
    # the token is stored hashed: the plain token is nowhere in the database
    rows = hub.service.workflows._sql.run("SELECT token_hash FROM hub_workflow_tenants")
    assert all(r[0].startswith("sha256:") and acme not in r[0] for r in rows)

    # the store gone: 503 with the reason, never a crash
    hub.service.workflows.store.close()
    status, body, _ = await hub.call("GET", "/api/v1/tenants/acme/chains", tenant="acme")
    assert status == 503 and "store is unavailable" in body["error"]


async def test_two_hubs_on_one_store_share_chains_and_executions(tmp_path: Path):
    store1, store2 = open_store(tmp_path / "hub.db"), open_store(tmp_path / "hub.db")
    running1, service1, tokens, _ = await start_hub(tmp_path, store1, {"acme": "pro"})
    service2 = WorkflowService(store2, tiers=tiers_from_toml(TIERS), components=components())
    try:
        service1.register_business_chain(chain_yaml("Score", "Inc", "Inc"),
                                         UserContext("acme", "api"))
        done = service2.execute_business_workflow("Score", UserContext("acme", "ana"), 1)
        assert done.status == "succeeded" and done.record["output"] == 3
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{running1.url}/api/v1/tenants/acme/executions/"
                                   f"{done.execution_id}",
                                   headers={"Authorization": f"Bearer {tokens['acme']}"}) as r:
                assert r.status == 200
                assert (await r.json())["hub"] == service2.hub_id
        # another hub's tier change reaches this one on the tenant's next request
        assert WorkflowStore(store1).set_tier("acme", "free")
        with pytest.raises(FeatureGatedError, match="tier 'free' does not include"):
            service2.register_business_chain(chain_yaml("Adv", "Advanced"),
                                             UserContext("acme", "api"))
    finally:
        await running1.stop()
        service1.close()
        service2.close()
        store1.close()
        store2.close()


def test_cli_tenant_token_add_list_delete(tmp_path: Path):
    runner = CliRunner()
    db = str(tmp_path / "hub.db")
    added = runner.invoke(cli_app, ["hub", "tenant-token", "add", "acme", "--tier", "pro",
                                    "--db", db])
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    store = open_store(db)
    try:
        record = WorkflowStore(store).tenant_of_token(token)
        assert record is not None and (record.tenant, record.tier) == ("acme", "pro")
    finally:
        store.close()
    again = runner.invoke(cli_app, ["hub", "tenant-token", "add", "acme", "--db", db])
    assert again.exit_code == 2 and "--replace" in again.output
    bad_tier = runner.invoke(cli_app, ["hub", "tenant-token", "add", "x", "--tier", "gold",
                                       "--db", db])
    assert bad_tier.exit_code == 2 and "gold" in bad_tier.output
    listed = runner.invoke(cli_app, ["hub", "tenant-token", "list", "--db", db])
    assert listed.stdout.split() == ["acme", "pro", "active"]
    assert runner.invoke(cli_app, ["hub", "tenant-token", "delete", "acme", "--db",
                                   db]).exit_code == 0
    missing = runner.invoke(cli_app, ["hub", "tenant-token", "delete", "acme", "--db", db])
    assert missing.exit_code == 1 and "not a tenant" in missing.output


async def test_workflows_on_postgresql_under_row_level_security(postgres_url, tmp_path: Path):
    import psycopg

    from flowchain.hub.store_pg import tenant_role

    store = open_store(postgres_url)
    running, service, tokens, _ = await start_hub(tmp_path, store,
                                                  {"acme": "pro", "rival": "pro"})
    try:
        async with aiohttp.ClientSession() as session:
            hub = Hub(running.url, session, service, tokens, "")
            assert (await hub.register("acme", chain_yaml("Score", "Inc")))[0] == 201
            assert (await hub.register("rival", chain_yaml("Secret", "Inc")))[0] == 201
            status, done, _ = await hub.run("acme", "Score", "ana", 1)
            assert status == 200 and done["output"] == 2
            assert (await hub.run("rival", "Secret", "zed", 1))[0] == 200
            status, again, _ = await hub.call(
                "GET", f"/api/v1/tenants/acme/executions/{done['execution_id']}",
                tenant="acme")
            assert status == 200 and again["status"] == "succeeded"
        # a second hub on the database finds the tables made, and the chains registered
        other = WorkflowService(open_store(postgres_url), tiers=tiers_from_toml(TIERS),
                                components=components())
        try:
            assert other.execute_business_workflow("Score", UserContext("acme", "bo"),
                                                   5).record["output"] == 6
        finally:
            other.close()
            other.workflows.store.close()
        # the second wall: as acme's role, SQL without a tenant filter sees acme's rows only,
        # and cannot write a row of another tenant
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            with conn.transaction():
                conn.execute(f'SET LOCAL ROLE "{tenant_role("acme")}"')
                seen = conn.execute("SELECT DISTINCT tenant FROM hub_workflow_executions "
                                    "UNION SELECT DISTINCT tenant FROM hub_workflow_chains"
                                    ).fetchall()
                assert seen == [("acme",)]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                with conn.transaction():
                    conn.execute(f'SET LOCAL ROLE "{tenant_role("acme")}"')
                    conn.execute("INSERT INTO hub_workflow_chains VALUES "
                                 "('rival', 'x', 'x', '1', 'x', 0)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                with conn.transaction():
                    conn.execute(f'SET LOCAL ROLE "{tenant_role("acme")}"')
                    conn.execute("SELECT * FROM hub_workflow_tenants")
    finally:
        await running.stop()
        service.close()
        store.close()


def test_the_hub_command_serves_tenants_chains_with_imported_components(tmp_path: Path):
    import json as jsonlib
    import subprocess
    import urllib.error
    import urllib.request

    from hub_running import LAUNCH

    (tmp_path / "greetings.py").write_text(
        "import flowchain\n\n@flowchain.component('Upper')\ndef upper(text):\n"
        "    return text.upper()\n")
    (tmp_path / "tiers.toml").write_text(TIERS)
    db = str(tmp_path / "hub.db")
    added = CliRunner().invoke(cli_app, ["hub", "tenant-token", "add", "acme", "--tier", "pro",
                                         "--tiers", str(tmp_path / "tiers.toml"), "--db", db])
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    (tmp_path / "nodes").write_text("")
    url_file = tmp_path / "url"
    with open(tmp_path / "hub.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, "hub", "--db", db, "--port", "0", "--tokens",
             str(tmp_path / "nodes"), "--url-file", str(url_file), "--import", "greetings",
             "--tiers", str(tmp_path / "tiers.toml")], cwd=tmp_path, stdout=log,
            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not url_file.exists():
            assert proc.poll() is None, (tmp_path / "hub.log").read_text()
            assert time.monotonic() < deadline, "the hub did not serve within 60 s"
            time.sleep(0.05)
        base = url_file.read_text().strip() + "/api/v1/tenants/acme"

        def call(path, body=None, content_type="application/json"):
            request = urllib.request.Request(
                base + path, data=body, method="POST" if body is not None else "GET",
                headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
            try:
                with urllib.request.urlopen(request, timeout=30) as r:
                    return r.status, jsonlib.loads(r.read())
            except urllib.error.HTTPError as exc:
                return exc.code, jsonlib.loads(exc.read())

        status, body = call("/chains", chain_yaml("Greeting", "Upper").encode(), "text/yaml")
        assert status == 201, body
        status, body = call("/workflows/Greeting/executions",
                            jsonlib.dumps({"user": "ana", "input": "buy"}).encode())
        assert status == 200 and body["output"] == "BUY", body
    finally:
        proc.terminate()
        proc.wait(20)

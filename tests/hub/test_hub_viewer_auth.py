"""Viewer tokens on a real hub on loopback: the cross-tenant views (the overview, /metrics)
answer a viewer only; node and tenant tokens are refused with 403, none or a wrong one with 401;
a tenant token keeps reaching its own tenant's routes; the CLI issues, revokes and requires
them; the page logs in with a token given once in its address."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from chromium import CHROMIUM, DevTools
from hub_running import LAUNCH, node_token, start_hub, stop_hub

from flowchain.histograms import LatencyHistogram
from flowchain.hub.app import HubStartError, build_app, serve
from flowchain.hub.auth import NodeTokens, TokenFileError, ViewerTokens, add_token, add_viewer_token, revoke_token
from flowchain.hub.rows import Batch, IntervalRow
from flowchain.hub.store import open_store
from flowchain.hub.workflows import WorkflowService

NOW = 1_700_000_000_000_000_000
VIEWS = ("/api/v1/overview?window_s=0", "/metrics")


def interval(node: str, local_id: int, tenant: str) -> IntervalRow:
    hist = LatencyHistogram.from_values([1_000] * 10)
    return IntervalRow(node, local_id, "run1", tenant, "pricing", "pricing:1", "", -1, NOW,
                       NOW + 10**10, hist.count, 0, None, hist.encode(), None)


@pytest.fixture
async def hub(tmp_path: Path):
    node_tokens, viewer_tokens = tmp_path / "tokens", tmp_path / "viewers"
    secrets = {"node": add_token(node_tokens, "n1"),
               "viewer": add_viewer_token(viewer_tokens, "ops")}
    store = open_store(tmp_path / "hub.db")
    service = WorkflowService(store)
    secrets["tenant"] = service.workflows.add_tenant("acme", "free")
    app = build_app(store, NodeTokens(node_tokens), workflows=service,
                    viewers=ViewerTokens(viewer_tokens))
    running = await serve(app, "127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        async with session.post(running.url + "/api/v1/ingest",
                                data=Batch("n1", intervals=(interval("n1", 1, "acme"),
                                                            interval("n1", 2, "globex"))
                                           ).to_json(),
                                headers={"Authorization": f"Bearer {secrets['node']}"}) as r:
            assert r.status == 200
        yield running.url, secrets, session, viewer_tokens
    await running.stop()
    service.close()
    store.close()


async def get(session: aiohttp.ClientSession, url: str, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with session.get(url, headers=headers) as r:
        return r.status, await r.text(), r.headers


@pytest.mark.parametrize("view", VIEWS)
async def test_each_view_answers_a_viewer_only(hub, view: str) -> None:
    url, secrets, session, _ = hub
    status, body, headers = await get(session, url + view, None)
    assert status == 401 and "no viewer token" in body and "acme" not in body
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = await get(session, url + view, "not-a-token")
    assert status == 401 and "unknown viewer token" in body and "acme" not in body
    status, body, _ = await get(session, url + view, secrets["node"])
    assert status == 403 and "node token" in body and "acme" not in body
    status, body, _ = await get(session, url + view, secrets["tenant"])
    assert status == 403 and "tenant token" in body and "globex" not in body
    status, body, _ = await get(session, url + view, secrets["viewer"])
    assert status == 200 and "acme" in body and "globex" in body
    async with session.get(url + view, headers={"Authorization": "Basic b3BzOng="}) as r:
        assert r.status == 401


async def test_the_tenant_token_keeps_its_own_routes_and_the_viewer_token_opens_none(
        hub) -> None:
    url, secrets, session, _ = hub
    status, body, _ = await get(session, url + "/api/v1/tenants/acme/chains", secrets["tenant"])
    assert status == 200 and json.loads(body)["tenant"] == "acme"
    status, _, _ = await get(session, url + "/api/v1/tenants/acme/chains", secrets["viewer"])
    assert status == 401  # a viewer reads figures, not a tenant's workflows
    async with session.post(url + "/api/v1/ingest", data=Batch("n1").to_json(),
                            headers={"Authorization": f"Bearer {secrets['viewer']}"}) as r:
        assert r.status == 401  # nor ships rows as a node


async def test_the_page_loads_without_figures_and_revoking_a_viewer_takes_effect(hub) -> None:
    url, secrets, session, viewer_tokens = hub
    status, body, _ = await get(session, url + "/", None)
    assert status == 200 and 'id="login"' in body and "acme" not in body
    status, _, _ = await get(session, url + "/static/app.js", None)
    assert status == 200
    status, _, _ = await get(session, url + "/healthz", None)
    assert status == 200
    add_viewer_token(viewer_tokens, "second")
    assert revoke_token(viewer_tokens, "ops")
    assert viewer_tokens.read_text().startswith("# flowchain hub viewer tokens")
    status, _, _ = await get(session, url + "/metrics", secrets["viewer"])
    assert status == 401  # re-read on change: no restart


async def test_without_viewer_tokens_only_loopback_is_served(tmp_path: Path) -> None:
    store = open_store(tmp_path / "hub.db")
    tokens = tmp_path / "tokens"
    tokens.touch()
    try:
        with pytest.raises(HubStartError, match="viewer tokens"):
            await serve(build_app(store, NodeTokens(tokens)), "0.0.0.0", 0,
                        allow_insecure_remote=True)
        running = await serve(build_app(store, NodeTokens(tokens)), "127.0.0.1", 0)
        async with aiohttp.ClientSession() as session:
            status, _, _ = await get(session, running.url + "/metrics", None)
        await running.stop()
        assert status == 200  # loopback without the flag: open, as before
    finally:
        store.close()
    with pytest.raises(TokenFileError, match="add-viewer"):
        ViewerTokens(tmp_path / "absent")
    (tmp_path / "bad").write_text("ops sha256:nothex\n")
    with pytest.raises(TokenFileError, match="bad:1"):
        ViewerTokens(tmp_path / "bad")
    with pytest.raises(ValueError, match="already has a token"):
        add_viewer_token(tmp_path / "v", "ops")
        add_viewer_token(tmp_path / "v", "ops")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LAUNCH, "hub", *args], capture_output=True,
                          text=True, timeout=60)


def fetch(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_cli_issues_viewer_tokens_and_the_hub_requires_them(tmp_path: Path) -> None:
    viewers, out = tmp_path / "viewers", tmp_path / "ops.token"
    made = cli("token", "add-viewer", "ops", "--viewer-tokens", str(viewers), "--out", str(out))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(os.stat(viewers).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    token = out.read_text().strip()
    assert token not in viewers.read_text()
    again = cli("token", "add-viewer", "ops", "--viewer-tokens", str(viewers))
    assert again.returncode == 2 and "--replace" in again.stderr
    printed = cli("token", "add-viewer", "audit", "--viewer-tokens", str(viewers))
    assert printed.returncode == 0 and len(printed.stdout.strip()) >= 32
    listed = cli("token", "list-viewers", "--viewer-tokens", str(viewers))
    assert listed.stdout.split() == ["audit", "ops"]
    assert cli("token", "revoke-viewer", "audit", "--viewer-tokens", str(viewers)).returncode == 0
    assert cli("token", "revoke-viewer", "audit", "--viewer-tokens",
               str(viewers)).returncode == 1
    tokens = tmp_path / "tokens"
    tokens.touch()
    missing = cli("--db", str(tmp_path / "x.db"), "--tokens", str(tokens), "--port", "0",
                  "--require-viewer-token", "--viewer-tokens", str(tmp_path / "none"))
    assert missing.returncode == 3 and "add-viewer" in missing.stderr
    remote = cli("--db", str(tmp_path / "y.db"), "--tokens", str(tokens), "--port", "0",
                 "--host", "0.0.0.0", "--allow-insecure-remote",
                 "--viewer-tokens", str(tmp_path / "none"))
    assert remote.returncode == 3 and "add-viewer" in remote.stderr  # beyond loopback: always
    assert not (tmp_path / "y.db").exists()
    node = node_token(tmp_path, tokens, "n1")
    hub, url = start_hub(tmp_path, str(tmp_path / "hub.db"), tokens,
                         extra=("--require-viewer-token", "--viewer-tokens", str(viewers)))
    try:
        assert fetch(url + "/metrics") == 401
        assert fetch(url + "/metrics", node.read_text().strip()) == 403
        assert fetch(url + "/metrics", token) == 200
        assert fetch(url + "/api/v1/overview", token) == 200
    finally:
        stop_hub(hub)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium absent (apt-get install chromium)")
def test_the_page_asks_for_a_token_then_shows_the_figures(tmp_path: Path, eventually) -> None:
    viewers, tokens = tmp_path / "viewers", tmp_path / "tokens"
    token = add_viewer_token(viewers, "ops")
    node = add_token(tokens, "n1")
    hub, url = start_hub(tmp_path, str(tmp_path / "hub.db"), tokens,
                         extra=("--require-viewer-token", "--viewer-tokens", str(viewers)))
    browser = DevTools(CHROMIUM, tmp_path / "profile")

    def text(session: str, expression: str) -> str:
        return browser.evaluate(session, expression) or ""

    try:
        batch = Batch("n1", intervals=(interval("n1", 1, "acme"),))
        request = urllib.request.Request(url + "/api/v1/ingest", data=batch.to_json(),
                                         method="POST",
                                         headers={"Authorization": f"Bearer {node}"})
        with urllib.request.urlopen(request, timeout=30) as r:
            assert r.status == 200
        bare = browser.open(url + "/")
        eventually(lambda: text(bare, "document.getElementById('status').textContent")
                   .startswith("viewer token needed"), timeout=30)
        assert text(bare, "String(document.getElementById('login').hidden)") == "false"
        session = browser.open(url + "/#token=" + token)
        eventually(lambda: text(session, "document.querySelector('#nodes tbody').textContent")
                   .startswith("n1"), timeout=30)
        assert text(session, "location.hash") == ""  # the token left the address
        assert text(session, "String(document.getElementById('login').hidden)") == "true"
    finally:
        browser.close()
        stop_hub(hub)

"""The central dashboard in headless Chromium: nodes, tenants and merged figures appear and
change as nodes ship (a real hub process, real HTTP, Debian's chromium over DevTools)."""
from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from chromium import CHROMIUM, DevTools
from hub_running import node_token, start_hub, stop_hub

from flowchain.histograms import LatencyHistogram
from flowchain.hub.rows import Batch, IntervalRow

NOW = time.time_ns() - 20 * 10**9
"""Intervals of the last minute: inside the page's default window (the last hour)."""


def ship(url: str, token_file: Path, node: str, local_id: int, tenant: str,
         values: list[int]) -> None:
    hist = LatencyHistogram.from_values(values)
    rows = (IntervalRow(node, local_id, "run", tenant, "pricing", "pricing@1", "", -1, NOW,
                        NOW + 10**10, hist.count, 1, None, hist.encode(), None),
            IntervalRow(node, local_id + 1, "run", tenant, "pricing", "pricing@1", "quote", 0,
                        NOW, NOW + 10**10, hist.count, 1, None, hist.encode(), None))
    request = urllib.request.Request(
        url + "/api/v1/ingest", data=Batch(node, intervals=rows).to_json(), method="POST",
        headers={"Authorization": f"Bearer {token_file.read_text().strip()}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 200


def table(browser: DevTools, session: str, name: str) -> list[list[str]]:
    text = browser.evaluate(session, f"""JSON.stringify([...document.querySelectorAll(
        '#{name} tbody tr')].map(tr => [...tr.children].map(td => td.textContent)))""")
    return json.loads(text or "[]")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium absent (apt-get install chromium)")
def test_the_page_shows_nodes_tenants_and_merged_figures_that_change(
        tmp_path: Path, eventually) -> None:
    tokens = tmp_path / "tokens"
    tokens.touch()
    n1, n2 = node_token(tmp_path, tokens, "n1"), node_token(tmp_path, tokens, "n2")
    hub, url = start_hub(tmp_path, str(tmp_path / "hub.db"), tokens)
    browser = DevTools(CHROMIUM, tmp_path / "profile")
    try:
        first = [2_000] * 99 + [40_000]
        ship(url, n1, "n1", 1, "acme", first)
        session = browser.open(url + "/")
        eventually(lambda: [r[0] for r in table(browser, session, "nodes")] == ["n1"],
                   timeout=30)
        chains = table(browser, session, "chains")
        whole = next(r for r in chains if r[2] == "whole chain")
        assert whole[:5] == ["acme", "pricing", "whole chain", "100", "1"]
        p99 = LatencyHistogram.from_values(first).percentile(99.0)
        assert whole[6] == f"{p99 / 1e3:.1f} µs"
        second = [9_000_000] * 50
        ship(url, n2, "n2", 1, "acme", second)
        ship(url, n2, "n2", 3, "globex", [1_000] * 10)

        def changed() -> bool:
            nodes = table(browser, session, "nodes")
            tenants = table(browser, session, "tenants")
            return ([r[0] for r in nodes] == ["n1", "n2"]
                    and [r[0] for r in tenants] == ["acme", "globex"])

        eventually(changed, timeout=30)
        merged = LatencyHistogram.from_values(first + second)
        rows = table(browser, session, "chains")
        acme = next(r for r in rows if r[0] == "acme" and r[2] == "whole chain")
        assert acme[3] == "150" and acme[7] == "2"
        assert acme[6] == f"{merged.percentile(99.0) / 1e6:.2f} ms"
        assert table(browser, session, "nodes")[0][1] == "up"
        status = browser.evaluate(session, "document.getElementById('status').textContent")
        assert status.startswith("updated")
        stop_hub(hub)  # the hub gone, the page says so rather than pass old figures as current
        eventually(lambda: browser.evaluate(
            session, "document.getElementById('status').textContent").startswith(
                "hub unavailable"), timeout=30)
    finally:
        browser.close()
        stop_hub(hub)

"""`flowchain node` hosts tenants: [tenants.*] in its TOML, a manager on its database, the
tenants on its dashboard, /api/status and /metrics, upgrade triggers through its sinks."""
import asyncio
import json
import sqlite3
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tenancy_parts import chain, inc
from typer.testing import CliRunner

from flowchain.cli import app
from flowchain.components import default_components
from flowchain.config import ConfigError, load_config
from flowchain.node import TradingNode
from flowchain.tenancy import QuotaExceeded

NODE_TOML = """
[features]
advanced = ["NodeTenantAdvanced"]

[tiers.free]
isolation = "shared"
executions_per_day = 10
features = []

[tiers.pro]
isolation = "dedicated"
executions_per_day = 100000
features = ["advanced"]

[tenants.acme]
tier = "pro"

[tenants."o'brien & co"]
tier = "free"

[tenancy]
resource_sample_rate = 0.5

[history]
interval_s = 0.2
"""


def _components() -> None:
    # tenants' chains resolve in the process-wide registry (what `[components] import`
    # modules fill), never the node's own trading instances
    for name in ("Inc", "NodeTenantAdvanced"):
        if name not in default_components:
            default_components.register(name, inc)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


async def test_a_node_hosts_two_tenants_on_its_dashboard_metrics_and_sinks(
        tmp_path: Path, eventually_async) -> None:
    _components()
    toml = tmp_path / "node.toml"
    toml.write_text(NODE_TOML, encoding="utf-8")
    db = tmp_path / "node.db"
    config = load_config(toml, {"db": str(db), "duration": 120, "status_interval": 0,
                                "dashboard": "127.0.0.1:0"})
    node = TradingNode(config)
    task = asyncio.ensure_future(node.run(install_signals=False))
    free = "o'brien & co"
    try:
        await eventually_async(lambda: task.done() or (
            node.tenants is not None and node.observers.url), timeout=60,
            message="the node hosting its tenants")
        assert not task.done()
        manager = node.tenants
        assert manager.tenants() == sorted(["acme", free])
        assert manager.registries()[""] is not node.registry  # the node's chains stay its own
        manager.register_chain("acme", chain("score"))
        manager.register_chain(free, chain("score"))
        for i in range(20):
            assert manager.execute("acme", "score", i, user_id="ana") == i + 4
        for i in range(10):
            manager.execute(free, "score", i, user_id="bo")
        with pytest.raises(QuotaExceeded) as refused:
            manager.execute(free, "score", 0, user_id="bo")
        assert refused.value.limit == "executions_per_day" and refused.value.next_tier == "pro"
        url = node.observers.url

        status = json.loads(await asyncio.to_thread(_get, url + "/api/status"))
        tenants = {t["tenant"]: t for t in status["tenants"]}
        assert (tenants["acme"]["tier"], tenants["acme"]["executions_today"]) == ("pro", 20)
        assert (tenants[free]["tier"], tenants[free]["executions_today"]) == ("free", 10)
        assert tenants[free]["refused"]["executions_per_day"] == 1
        assert any(e["kind"] == "upgrade_trigger" and e["tenant"] == free
                   for e in status["upgrade_triggers"])
        # the node's own chains are still on the same dashboard
        assert {"AI_Decision_Chain", "MT5_To_Database_Chain"} <= \
            {c["chain"] for c in status["chains"]}

        listed = await asyncio.to_thread(
            CliRunner().invoke, app, ["tenants", "list", "--url", url, "--json"])
        assert listed.exit_code == 0, listed.output
        rows = {r["tenant"]: r for r in json.loads(listed.output)["tenants"]}
        assert rows[free]["executions_today"] == 10 and rows[free]["executions_per_day"] == 10
        assert rows["acme"]["tier"] == "pro" and rows[free]["refused_today"] == 1

        metrics = await asyncio.to_thread(_get, url + "/metrics")
        ratio = {tuple(sorted(s.labels.items())): s.value
                 for f in text_string_to_metric_families(metrics)
                 if f.name == "flowchain_tenant_usage_ratio" for s in f.samples}
        assert ratio[(("limit", "executions_per_day"), ("tenant", free),
                      ("tier", "free"))] == 1.0

        # resources of sampled executions and per-user history reach the node's database
        def stored() -> bool:
            with sqlite3.connect(db) as conn:
                return conn.execute("SELECT COUNT(*) FROM tenant_resources WHERE tenant = ?",
                                    ("acme",)).fetchone()[0] > 0 and conn.execute(
                    "SELECT COUNT(*) FROM tenant_intervals").fetchone()[0] > 0
        await eventually_async(stored, timeout=30, message="tenant rows in the node's db")
    finally:
        node.request_stop("test")
        summary = await asyncio.wait_for(task, 60)
    assert summary["alerts"].get("upgrade_trigger", 0) >= 1  # through the node's sinks
    assert summary["history"]["flush_errors"] == 0
    with sqlite3.connect(db) as conn:  # the history sink stored the triggers as events
        assert conn.execute(
            "SELECT COUNT(*) FROM alert_events WHERE kind = 'upgrade_trigger' AND tenant = ?",
            (free,)).fetchone()[0] >= 1
    assert {t["tenant"]: t["executions_today"] for t in summary["tenants"]} == \
        {"acme": 20, free: 10}
    # usage survives: the day's count is in the node's database
    listed = CliRunner().invoke(app, ["tenants", "list", "--db", str(db), "--json"])
    assert listed.exit_code == 0, listed.output
    assert {r["tenant"]: r["executions_today"]
            for r in json.loads(listed.output)["tenants"]} == \
        {"acme": 20, free: 10}


@pytest.mark.parametrize("text, message", [
    ('[tenants.acme]\ntier = "gold"\n',
     "key 'tenants.acme.tier': unknown tier 'gold'; the tiers are free, pro, enterprise"),
    ('[tenants.acme]\ntierz = "pro"\n', "unknown key 'tenants.acme.tierz'"),
    ("[tenants.acme]\n", "key 'tenants.acme': object missing required field `tier`"),
    ('[tenants.acme]\ntier = 3\n', "key 'tenants.acme.tier': expected `str`"),
    ('[tiers.free]\nconcurrent = 0\n[tenants.a]\ntier = "free"\n',
     "key 'tiers.free.concurrent': must be > 0"),
    ('[tenants."a\\u0001b"]\ntier = "free"\n', "key 'tenants.a\\x01b'"),
    ("[tenancy]\nresource_sample_rate = 2\n", "key 'tenancy.resource_sample_rate'"),
])
def test_bad_tenants_config_names_file_and_key(tmp_path: Path, text: str,
                                               message: str) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(toml)
    assert str(info.value).startswith(f"{toml}: ")
    assert message in str(info.value)


def test_the_node_command_exits_2_on_a_bad_tenant(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text('[tenants.acme]\ntier = "gold"\n', encoding="utf-8")
    import flowchain.cli.node  # noqa: F401  (registers the command)

    result = CliRunner().invoke(app, ["node", "--config", str(toml), "--duration", "1"])
    assert result.exit_code == 2
    assert "tenants.acme.tier" in result.output and "Traceback" not in result.output

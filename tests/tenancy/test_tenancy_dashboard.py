"""The dashboard shows tenants' usage and upgrade triggers when it is given the manager."""
import json
import urllib.request

import pytest
from tenancy_parts import chain

from flowchain.observe.web import DashboardServer, DashboardState, DashboardThread
from flowchain.tenancy import QuotaExceeded


def test_status_carries_tenants_and_triggers(manager):
    manager.add_tenant("acme", "free")
    manager.add_tenant("<b>evil</b>", "pro")
    for tenant in manager.tenants():
        manager.register_chain(tenant, chain("inc"))
    for i in range(10):
        manager.execute("acme", "inc", i)
    with pytest.raises(QuotaExceeded):
        manager.execute("acme", "inc", 0)
    hosted = DashboardThread(DashboardServer(DashboardState(manager.registries(),
                                                            tenants=manager), port=0))
    hosted.start()
    try:
        with urllib.request.urlopen(hosted.url + "/api/status", timeout=10) as r:
            snap = json.loads(r.read())
        with urllib.request.urlopen(hosted.url + "/", timeout=10) as r:
            page = r.read().decode()
    finally:
        hosted.close()
    tenants = {t["tenant"]: t for t in snap["tenants"]}
    assert tenants["acme"]["executions_today"] == 10
    assert tenants["acme"]["refused"]["executions_per_day"] == 1
    assert tenants["acme"]["ratios"]["executions_per_day"] == 1.0
    assert "<b>evil</b>" in tenants  # data in JSON; the page sets textContent, never HTML
    trigger = snap["upgrade_triggers"][0]
    assert trigger["kind"] == "upgrade_trigger" and trigger["threshold"] == 1.0
    assert 'id="tenants"' in page and 'id="triggers"' in page


def test_status_without_a_manager_has_no_tenant_keys(manager):
    snap = DashboardState(manager.registries()).snapshot()
    assert "tenants" not in snap and "upgrade_triggers" not in snap


def test_tenants_list_asks_a_running_node(manager):
    from typer.testing import CliRunner

    from flowchain.cli import app

    manager.add_tenant("acme", "free")
    manager.register_chain("acme", chain("inc"))
    for i in range(4):
        manager.execute("acme", "inc", i)
    hosted = DashboardThread(DashboardServer(DashboardState(manager.registries(),
                                                            tenants=manager), port=0))
    plain = DashboardThread(DashboardServer(DashboardState(manager.registries()), port=0))
    hosted.start()
    plain.start()
    try:
        result = CliRunner().invoke(app, ["tenants", "list", "--url", hosted.url, "--json"])
        assert result.exit_code == 0, result.output
        (row,) = json.loads(result.output)["tenants"]
        assert row["executions_today"] == 4 and row["executions_per_day"] == 10
        result = CliRunner().invoke(app, ["tenants", "list", "--url", plain.url])
        assert result.exit_code == 2 and "hosts no tenants" in result.output
    finally:
        hosted.close()
        plain.close()
    result = CliRunner().invoke(app, ["tenants", "list"])
    assert result.exit_code == 2 and "exactly one of --db" in result.output

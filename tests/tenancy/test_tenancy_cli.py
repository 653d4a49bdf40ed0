"""``flowchain tenants list|show|usage`` and ``flowchain analytics`` over a real node database;
bad input exits 2 with the file and key named, never a traceback."""
import json

import pytest
from tenancy_parts import TEST_TIERS, chain
from typer.testing import CliRunner

from flowchain.cli import app
from flowchain.observe.alerts import MemorySink
from flowchain.tenancy import QuotaExceeded, TenantManager
from flowchain.tenancy.analytics import synthetic_history
from flowchain.tenancy.tenant_history import TenantHistoryWriter

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def node_db(components, tiers, tmp_path):
    db = tmp_path / "node.db"
    (tmp_path / "tiers.toml").write_text(TEST_TIERS)
    m = TenantManager(tiers, components=components, db=db, sinks=[MemorySink()])
    writer = TenantHistoryWriter(m, db)
    m.add_tenant("acme", "free")
    m.add_tenant("x'); DROP TABLE tenants;--", "pro")
    for tenant in m.tenants():
        m.register_chain(tenant, chain("inc"))
    for i in range(12):
        try:
            m.execute("acme", "inc", i, user_id="ana")
        except QuotaExceeded:
            pass
    m.execute("x'); DROP TABLE tenants;--", "inc", 1)
    m.check_usage()
    writer.flush()
    writer.close()
    m.close()
    return db


def test_tenants_list_show_usage(node_db, tmp_path):
    result = invoke("tenants", "list", "--db", node_db, "--tiers", tmp_path / "tiers.toml",
                    "--json")
    assert result.exit_code == 0, result.output
    rows = {r["tenant"]: r for r in json.loads(result.output)["tenants"]}
    assert rows["acme"]["executions_today"] == 10 and rows["acme"]["refused_today"] == 2
    assert rows["acme"]["executions_per_day"] == 10
    assert rows["x'); DROP TABLE tenants;--"]["tier"] == "pro"
    result = invoke("tenants", "show", "acme", "--db", node_db, "--tiers",
                    tmp_path / "tiers.toml", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["tier"]["isolation"] == "shared"
    assert {(t["limit"], t["threshold"]) for t in shown["triggers"]} >= {
        ("executions_per_day", 0.8), ("executions_per_day", 1.0)}
    result = invoke("tenants", "show", "acme", "--db", node_db, "--tiers",
                    tmp_path / "tiers.toml")
    assert result.exit_code == 0 and "upgrade triggers fired" in result.output
    result = invoke("tenants", "usage", "acme", "--db", node_db, "--json")
    (day,) = json.loads(result.output)["usage"]
    assert day["executions"] == 10 and day["refused"] == 2 and day["exact"]
    assert invoke("tenants", "list", "--db", node_db).exit_code == 0


def test_tenants_bad_input_exits_2(node_db, tmp_path):
    result = invoke("tenants", "show", "nobody", "--db", node_db)
    assert result.exit_code == 2 and "unknown tenant 'nobody'" in result.output
    assert "Traceback" not in result.output
    result = invoke("tenants", "list", "--db", tmp_path / "absent.db")
    assert result.exit_code == 2 and "no database" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[tiers.free]\nconcurrent = 0\n")
    result = invoke("tenants", "list", "--db", node_db, "--tiers", bad)
    assert result.exit_code == 2
    assert f"{bad}: key 'tiers.free.concurrent'" in result.output.replace("\n", "")
    result = invoke("tenants", "show", "acme", "--db", node_db)
    assert result.exit_code == 0  # the shipped tiers have free, pro and enterprise too


def test_analytics_command(node_db, tmp_path):
    result = invoke("analytics", "--db", node_db, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["tenants"] == 2
    assert {r["tenant"] for r in data["most_used"]["by_tenant"]} == {
        "acme", "x'); DROP TABLE tenants;--"}
    result = invoke("analytics", "--db", node_db, "--tenant", "acme", "--json")
    assert json.loads(result.output)["tenants"] == 1
    synthetic = tmp_path / "synthetic.db"
    synthetic_history(synthetic, tenants=9, days=2)
    result = invoke("analytics", "--db", synthetic)
    assert result.exit_code == 0 and "regression" in result.output
    assert invoke("analytics", "--db", tmp_path / "absent.db").exit_code == 2
    result = invoke("analytics", "--db", node_db, "--since", "yesterday-ish")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_report_has_a_tenancy_section(node_db, tmp_path):
    out = tmp_path / "report.html"
    result = invoke("report", "--db", node_db, "--out", out)
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert '<section class="tenancy">' in text and 'id="usage-by-tier"' in text
    assert "x&#x27;); DROP TABLE tenants;--" in text  # the hostile id, escaped
    assert "x'); DROP TABLE tenants;--" not in text


def test_report_without_tenants_has_no_tenancy_section(tmp_path):
    from flowchain.store import open_database
    from flowchain.tenancy.report_section import tenancy_section

    open_database(tmp_path / "plain.db").close()
    assert tenancy_section(tmp_path / "plain.db") == ""

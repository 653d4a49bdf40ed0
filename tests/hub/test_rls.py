"""PostgreSQL row-level security per tenant, the second wall, tested with hand-written SQL.

The hub logs in as an ordinary role (not a superuser: superusers bypass row-level security)
that owns the tables; its tenant views run as tenant roles. Here SQL is typed straight at the
server in those roles, as a bug in a query or a tenant's own reporting login would.
"""
import psycopg
import pytest
from hub_rows import T0, execution, full_batch, interval
from psycopg import sql

from flowchain.hub.rows import Batch
from flowchain.hub.store import TENANT_TABLES, open_store
from flowchain.hub.store_pg import tenant_role

TABLES = (*TENANT_TABLES, "hub_nodes", "hub_tenant_roles")


@pytest.fixture
def hub(postgres_server):
    """A database owned by a non-superuser hub login with CREATEROLE, holding two tenants."""
    postgres_server.start()
    owner = "hub_owner_rls"
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone() is None:
            admin.execute(f"CREATE ROLE {owner} LOGIN CREATEROLE")
        url = postgres_server.new_database()
        db = url.rsplit("/", 1)[1]
        admin.execute(f'ALTER DATABASE "{db}" OWNER TO {owner}')
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER SCHEMA public OWNER TO {owner}")
    hub_url = url.replace("flowchain@", f"{owner}@")
    store = open_store(hub_url)
    store.ingest(full_batch("node-a", tenant="acme"))
    store.ingest(full_batch("node-b", tenant="globex"))
    store.ingest(Batch("node-a", executions=(execution("node-a", 50, tenant="globex"),)))
    hour = 360  # ten-second slots: intervals in the second hour, merged and stored per hour
    for node, tenant in (("node-a", "acme"), ("node-b", "globex")):
        store.ingest(Batch(node, intervals=tuple(
            interval(node, 1000 + k, tenant=tenant, slot=hour + k, seed=k) for k in range(3))))
    store.merged_histogram("decide", start_ns=T0, end_ns=T0 + 3 * 3_600_000_000_000)
    store.touch_node("node-a", 1, {})
    store.touch_node("node-b", 1, {})
    store.for_tenant("acme")
    store.for_tenant("globex")
    yield hub_url
    store.close()


def _as(conn, tenant):
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(tenant_role(tenant))))


def test_the_owner_sees_every_tenant(hub):
    with psycopg.connect(hub, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM hub_executions").fetchone()[0] == 9
        assert {r[0] for r in conn.execute("SELECT DISTINCT tenant FROM hub_intervals")} == \
            {"acme", "globex"}
        # row security is on for every table (the owner writes, tenant roles read)
        secured = conn.execute("SELECT relname FROM pg_class WHERE relrowsecurity AND "
                               "relname LIKE 'hub_%'").fetchall()
        assert {r[0] for r in secured} == set(TABLES)
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                            ).fetchone() == (False,)


def test_a_tenant_role_selects_only_its_rows_even_unfiltered(hub):
    with psycopg.connect(hub, autocommit=True) as conn:
        _as(conn, "acme")
        for table in TENANT_TABLES:
            tenants = {r[0] for r in conn.execute(f"SELECT DISTINCT tenant FROM {table}")}
            assert tenants == {"acme"}, table
            assert conn.execute(f"SELECT count(*) FROM {table} WHERE tenant = 'globex'"
                                ).fetchone()[0] == 0
            assert conn.execute(f"SELECT count(*) FROM {table} WHERE tenant <> 'acme' "
                                "OR true").fetchone()[0] == \
                conn.execute(f"SELECT count(*) FROM {table} WHERE tenant = 'acme'").fetchone()[0]
        assert [r[0] for r in conn.execute("SELECT node_id FROM hub_nodes")] == ["node-a"]
        assert conn.execute("SELECT tenant FROM hub_tenant_roles").fetchall() == [("acme",)]
        # a node's rows of another tenant stay hidden even when asked for by key
        assert conn.execute("SELECT * FROM hub_executions WHERE node_id = 'node-a' AND "
                            "local_id = 50").fetchall() == []


def test_a_tenant_role_cannot_write_and_even_with_grants_cannot_touch_others(hub):
    with psycopg.connect(hub, autocommit=True) as conn:
        _as(conn, "acme")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM hub_executions WHERE tenant = 'globex'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE hub_usage SET used = 0")
        conn.execute("RESET ROLE")
        # an operator widens the grants by mistake: row-level security still holds
        role = sql.Identifier(tenant_role("acme"))
        conn.execute(sql.SQL("GRANT INSERT, UPDATE, DELETE ON {} TO {}").format(
            sql.SQL(", ").join(map(sql.Identifier, TENANT_TABLES)), role))
        _as(conn, "acme")
        assert conn.execute("UPDATE hub_executions SET status = 'tampered' WHERE tenant = "
                            "'globex'").rowcount == 0
        assert conn.execute("UPDATE hub_usage SET used = 0").rowcount == 1  # its own row
        assert conn.execute("DELETE FROM hub_intervals WHERE tenant = 'globex'").rowcount == 0
        assert conn.execute("DELETE FROM hub_alerts WHERE node_id = 'node-b'").rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("UPDATE hub_alerts SET tenant = 'globex'")  # moving rows out: refused
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("INSERT INTO hub_node_tenants (node_id, tenant) VALUES ('x', 'globex')")
        conn.execute("RESET ROLE")
        assert conn.execute("SELECT count(*) FROM hub_executions WHERE status = 'tampered'"
                            ).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM hub_intervals WHERE tenant = 'globex'"
                            ).fetchone()[0] == 7
        assert conn.execute("SELECT used FROM hub_usage WHERE tenant = 'globex'"
                            ).fetchone()[0] > 0


def test_a_tenant_login_cannot_escape_its_role(hub, postgres_server):
    role = tenant_role("globex")
    with psycopg.connect(hub, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(role)))
    tenant_url = hub.replace("hub_owner_rls@", f"{role}@")
    with psycopg.connect(tenant_url, autocommit=True) as conn:
        assert {r[0] for r in conn.execute("SELECT tenant FROM hub_executions")} == {"globex"}
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET ROLE hub_owner_rls")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(tenant_role("acme"))))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER TABLE hub_executions NO FORCE ROW LEVEL SECURITY")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO hub_tenant_roles VALUES (current_user, 'acme')")
    with psycopg.connect(hub, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))


def test_an_unmapped_tenant_role_sees_nothing(hub):
    rogue = "flowchain_tenant_unmapped"
    with psycopg.connect(hub, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (rogue,)).fetchone() is None:
            conn.execute(f"CREATE ROLE {rogue} NOLOGIN")
        conn.execute(f"GRANT SELECT ON hub_executions, hub_tenant_roles TO {rogue}")
        conn.execute(f"GRANT {rogue} TO CURRENT_USER")
        conn.execute(f"SET ROLE {rogue}")
        assert conn.execute("SELECT count(*) FROM hub_executions").fetchone()[0] == 0


def test_the_tenant_view_runs_as_the_tenant_role(hub):
    with open_store(hub) as store:
        view = store.for_tenant("acme")
        assert view._read("SELECT current_user, count(*) FROM hub_executions", []) == \
            [(tenant_role("acme"), 4)]
        assert store._read("SELECT count(*) FROM hub_executions", []) == [(9,)]

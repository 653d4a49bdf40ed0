"""The throwaway PostgreSQL server: started, used, stopped, restarted, removed."""
from __future__ import annotations

import pytest

from flowchain.hub.local_postgres import LocalPostgres, PostgresNotInstalled, server_binaries

psycopg = pytest.importorskip("psycopg")


def test_a_missing_installation_is_named_with_what_to_do(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FLOWCHAIN_PG_BINDIR", str(tmp_path))
    assert server_binaries() is None
    with pytest.raises(PostgresNotInstalled, match="install Debian's postgresql package or "
                                                   "pass --pg URL") as caught:
        LocalPostgres()
    assert str(tmp_path) in str(caught.value)
    with pytest.raises(PostgresNotInstalled, match="initdb and pg_ctl"):
        LocalPostgres(tmp_path)


def test_the_server_serves_on_loopback_survives_a_restart_and_is_removed() -> None:
    if server_binaries() is None:
        pytest.skip("PostgreSQL server binaries not found: install Debian's postgresql package")
    with LocalPostgres(start=False) as pg:
        root = pg.root
        assert pg.url.startswith("postgresql://flowchain@127.0.0.1:") and pg.running
        url = pg.new_database()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        pg.stop()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=5)
        pg.start()
        with psycopg.connect(pg.url_of(url.rsplit("/", 1)[1])) as conn:
            assert conn.execute("SELECT x FROM kept").fetchall() == [(7,)]
    assert not pg.running and not root.exists()
    pg.close()  # idempotent


def test_the_module_serves_until_terminated_then_removes_its_server() -> None:
    import signal
    import subprocess
    import sys

    if server_binaries() is None:
        pytest.skip("PostgreSQL server binaries not found: install Debian's postgresql package")
    proc = subprocess.Popen([sys.executable, "-m", "flowchain.hub.local_postgres"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("postgresql://flowchain@127.0.0.1:"), proc.stderr.read()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

"""A real PostgreSQL server for the hub's tests: :class:`flowchain.hub.local_postgres.LocalPostgres`
(Debian's ``postgresql`` binaries, 127.0.0.1 at a free port, an unprivileged user under root).
Tests skip only when the binaries are absent.

Fixtures: ``postgres_server`` (one server per test session: ``url``, ``stop()``, ``start()``,
``new_database()``) and ``postgres_url`` (a fresh database on it for one test, the server
started again first if an earlier test left it stopped).
"""
import pytest

from flowchain.hub.local_postgres import LocalPostgres, PostgresNotInstalled


@pytest.fixture(scope="session")
def postgres_server():
    try:
        server = LocalPostgres()
    except PostgresNotInstalled as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url(postgres_server):
    postgres_server.start()
    return postgres_server.new_database()

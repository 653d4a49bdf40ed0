"""A real PostgreSQL server for the hub's tests, from Debian's ``postgresql`` binaries.

``initdb`` and ``postgres`` refuse to run as root, so under root the server runs as the
``postgres`` system user (Debian's package creates it) or ``nobody``, in a temporary data
directory owned by that user; it listens on 127.0.0.1 at a free port and on a unix socket in
its data directory, with ``trust`` authentication (loopback only). Tests skip only when the
binaries are absent.

Fixtures: ``postgres_server`` (one server per test session: ``url``, ``stop()``, ``start()``,
``new_database()``) and ``postgres_url`` (a fresh database on it for one test, the server
started again first if an earlier test left it stopped).
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

SUPERUSER = "flowchain"


def server_binaries():
    """Return the bin directory of the newest installed PostgreSQL server, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as():
    """The unprivileged user to run the server as under root (None: we are not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists "
                       "to run PostgreSQL as (initdb refuses root)")


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, started and stopped on demand."""

    def __init__(self, bindir):
        self.bindir = Path(bindir)
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="flowchain-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self._run([self.bindir / "initdb", "-D", self.data, "-U", SUPERUSER,
                   "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.data}'\n"
                       "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n"
                       "max_connections = 200\n")
        self.running = False

    def _run(self, argv, check=True):
        kwargs = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        proc = subprocess.run([str(a) for a in argv], cwd=self.root, capture_output=True,
                              text=True, timeout=120, **kwargs)
        if check and proc.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{Path(str(argv[0])).name} failed ({proc.returncode}): "
                               f"{proc.stdout}{proc.stderr}{log[-2000:]}")
        return proc

    @property
    def url(self):
        """The superuser's URL of the ``postgres`` database over TCP."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def url_of(self, database):
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self):
        """Start the server (on the same port and data) and wait until it accepts connections."""
        if self.running:
            return
        for attempt in range(3):
            proc = self._run([self.bindir / "pg_ctl", "-D", self.data, "-l", self.log, "-w",
                              "-t", "60", "-o", f"-p {self.port}", "start"], check=False)
            if proc.returncode == 0:
                self.running = True
                return
            if attempt < 2 and "could not bind" in (self.log.read_text()
                                                    if self.log.exists() else ""):
                self.port = _free_port()  # someone took the port while we were stopped
                continue
            break
        raise RuntimeError(f"PostgreSQL did not start: {proc.stdout}{proc.stderr}"
                           f"{self.log.read_text()[-2000:] if self.log.exists() else ''}")

    def stop(self):
        """Stop the server now (fast shutdown: connections are cut, as in an outage)."""
        if not self.running:
            return
        self._run([self.bindir / "pg_ctl", "-D", self.data, "-w", "-t", "60", "-m", "fast",
                   "stop"])
        self.running = False

    def new_database(self):
        """Create an empty database and return its URL."""
        import psycopg

        name = f"hub_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def destroy(self):
        try:
            if self.running:
                self._run([self.bindir / "pg_ctl", "-D", self.data, "-w", "-t", "60", "-m",
                           "immediate", "stop"], check=False)
                self.running = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    bindir = server_binaries()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): "
                    "install Debian's postgresql package")
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def postgres_url(postgres_server):
    postgres_server.start()
    return postgres_server.new_database()

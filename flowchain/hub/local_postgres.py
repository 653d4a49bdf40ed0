"""A throwaway PostgreSQL server on loopback, for benchmarks, tests and a developer's try-out.

:class:`LocalPostgres` creates a cluster in a temporary directory with the installed server
binaries (``$FLOWCHAIN_PG_BINDIR``, else Debian's ``postgresql`` package:
``/usr/lib/postgresql/<version>/bin``, else ``initdb`` on ``PATH``), starts it on
``127.0.0.1`` at a free port (and a unix socket in its data directory) with ``trust``
authentication, and removes everything when closed. ``initdb``
and ``postgres`` refuse to run as root, so under root the server runs as the ``postgres``
system user (Debian's package creates it) or ``nobody``, in a directory owned by that user.
Durability is off (``fsync``, ``full_page_writes``, ``synchronous_commit``): the data is
thrown away.

    with LocalPostgres() as pg:          # started; stopped and removed on exit
        store = connect(pg.url)          # the superuser's ``postgres`` database over TCP
        other = pg.new_database()        # an empty database of its own

``flowchain bench hub`` starts one when no ``--pg`` is given; the hub's tests start one per
session; ``python -m flowchain.hub.local_postgres`` starts one, prints its URL (for ``flowchain
hub --pg URL``) and removes it on Ctrl-C or SIGTERM. Without the binaries
:class:`PostgresNotInstalled` says what to install.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SUPERUSER = "flowchain"
"""The cluster's superuser (no password: ``trust`` on loopback)."""



_NOT_FOR_THE_SERVER = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONMALLOC")


def _server_env() -> dict[str, str]:
    """The caller's environment without preloaded libraries and Python's allocator settings:
    PostgreSQL is a program of its own (a sanitized test run preloads its runtime, which the
    server's binaries are not built for)."""
    return {k: v for k, v in os.environ.items() if k not in _NOT_FOR_THE_SERVER}

class PostgresNotInstalled(RuntimeError):
    """The PostgreSQL server binaries (``initdb``, ``pg_ctl``) are not installed."""


BINDIR_ENV = "FLOWCHAIN_PG_BINDIR"
"""Names the server's bin directory where it is not Debian's (``initdb`` and ``pg_ctl``)."""


def server_binaries() -> Path | None:
    """Return the bin directory of the PostgreSQL server to use, or None: ``$FLOWCHAIN_PG_BINDIR``
    when set (None when it holds no ``initdb``), else the newest of Debian's, else ``initdb`` on
    ``PATH``."""
    named = os.environ.get(BINDIR_ENV)
    if named:
        return Path(named) if (Path(named) / "initdb").exists() else None
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> pwd.struct_passwd | None:
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


class LocalPostgres:
    """One PostgreSQL cluster in a temporary directory, started and stopped on demand.

    Parameters
    ----------
    bindir : path, optional
        The server's bin directory (default: :func:`server_binaries`).
    start : bool
        Start the server at once (default True); :meth:`start` starts it later.

    Raises
    ------
    PostgresNotInstalled
        When no server binaries are found.
    RuntimeError
        When ``initdb`` or the server fails (its output and the server's log are in the
        message).
    """

    def __init__(self, bindir: Path | str | None = None, *, start: bool = True) -> None:
        found = Path(bindir) if bindir is not None else server_binaries()
        if found is None or not (found / "initdb").exists() or not (found / "pg_ctl").exists():
            raise PostgresNotInstalled(
                "PostgreSQL server binaries not found (looked for initdb and pg_ctl in "
                f"{found or os.environ.get(BINDIR_ENV) or '/usr/lib/postgresql/*/bin, PATH'}): "
                "install Debian's postgresql package or pass --pg URL")
        self.bindir = found
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="flowchain-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.running = False
        try:
            if self.user is not None:
                os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
            self._run([self.bindir / "initdb", "-D", self.data, "-U", SUPERUSER,
                       "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write("\nlisten_addresses = '127.0.0.1'\n"
                           f"unix_socket_directories = '{self.data}'\n"
                           "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n"
                           "max_connections = 200\n")
            if start:
                self.start()
        except BaseException:
            self.close()
            raise

    def _run(self, argv: Sequence[Any], check: bool = True) -> subprocess.CompletedProcess:
        kwargs: dict[str, Any] = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        proc = subprocess.run([str(a) for a in argv], cwd=self.root, capture_output=True,
                              text=True, timeout=120, env=_server_env(), **kwargs)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{Path(str(argv[0])).name} failed ({proc.returncode}): "
                               f"{proc.stdout}{proc.stderr}{self._log_tail()}")
        return proc

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    @property
    def url(self) -> str:
        """The superuser's URL of the ``postgres`` database over TCP (it may create
        databases)."""
        return self.url_of("postgres")

    def url_of(self, database: str) -> str:
        """The superuser's URL of ``database`` over TCP."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> LocalPostgres:
        """Start the server (same data; a new port if its old one was taken meanwhile) and wait
        until it accepts connections."""
        if self.running:
            return self
        for attempt in range(3):
            proc = self._run([self.bindir / "pg_ctl", "-D", self.data, "-l", self.log, "-w",
                              "-t", "60", "-o", f"-p {self.port}", "start"], check=False)
            if proc.returncode == 0:
                self.running = True
                return self
            if attempt < 2 and "could not bind" in self._log_tail():
                self.port = _free_port()  # someone took the port while we were stopped
                continue
            break
        raise RuntimeError(f"PostgreSQL did not start: {proc.stdout}{proc.stderr}"
                           f"{self._log_tail()}")

    def stop(self) -> None:
        """Stop the server now (fast shutdown: connections are cut, as in an outage); the data
        stays for :meth:`start`."""
        if not self.running:
            return
        self._run([self.bindir / "pg_ctl", "-D", self.data, "-w", "-t", "60", "-m", "fast",
                   "stop"])
        self.running = False

    def new_database(self) -> str:
        """Create an empty database and return its URL (needs ``psycopg``: the ``hub``
        extra)."""
        import psycopg

        name = f"hub_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def close(self) -> None:
        """Stop the server at once and remove its directory (idempotent)."""
        try:
            if self.running:
                self._run([self.bindir / "pg_ctl", "-D", self.data, "-w", "-t", "60", "-m",
                           "immediate", "stop"], check=False)
                self.running = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def main() -> int:
    """Start a throwaway server, print its URL, keep it until Ctrl-C or SIGTERM; remove it."""
    try:
        server = LocalPostgres()
    except PostgresNotInstalled as exc:
        print(exc, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        print(server.url, flush=True)
        print(f"throwaway PostgreSQL in {server.root}; Ctrl-C stops and removes it",
              file=sys.stderr, flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

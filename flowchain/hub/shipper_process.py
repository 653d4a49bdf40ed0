"""The node's shipper in a process of its own, so shipping never holds the node's GIL.

:class:`ShipperProcess` is what the node starts for ``[hub] url``: a child Python process
running a :class:`~flowchain.hub.shipper.HubShipper` loop over the node's database. The node
only reads the child's status (``hub_outbox_status``, written by the child after every attempt)
and stops it: SIGTERM makes the child send once more and exit. The child also exits when the
node is gone (its parent process changes). The token travels as a file path, never on the
command line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from flowchain.hub.shipper import KINDS, OUTBOX_SCHEMA, read_token

log = logging.getLogger("flowchain.hub.shipper")

_LAUNCH = ("import sys; sys.path.pop(0); "
           "from flowchain.hub.shipper_process import main; sys.exit(main())")
"""The child's program (the current directory taken off ``sys.path`` first)."""


class ShipperProcess:
    """Run the node's shipper in a child process; read its status; stop it.

    Parameters are those of :class:`~flowchain.hub.shipper.HubShipper`, with the token's
    file instead of the token.

    Raises
    ------
    ValueError
        From the constructor, when the token file cannot be read or is empty.
    flowchain.store.StoreError
        When the node's database cannot be opened.
    """

    def __init__(self, url: str, token_file: str | Path, db: str | Path,
                 node_id: str, *, interval_s: float = 5.0, batch_rows: int = 500,
                 max_backoff_s: float = 60.0, timeout_s: float = 10.0) -> None:
        from flowchain.store import ensure_schema, open_database

        read_token(token_file)  # a missing or empty file fails the node's start, named
        self.url = url.rstrip("/")
        self.node_id = node_id
        self.timeout_s = timeout_s
        self._argv = [sys.executable, "-c", _LAUNCH, "--url", url, "--token-file",
                      os.fspath(token_file), "--db", os.fspath(db), "--node-id", node_id,
                      "--interval-s", repr(interval_s), "--batch-rows", str(batch_rows),
                      "--max-backoff-s", repr(max_backoff_s), "--timeout-s", repr(timeout_s)]
        self._conn = open_database(db)
        ensure_schema(self._conn, OUTBOX_SCHEMA)
        self._conn.execute("DELETE FROM hub_outbox_status")  # an earlier run's is not ours
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._closed = False
        self._held: dict[str, Any] | None = None

    def start(self) -> ShipperProcess:
        """Start the child; return self."""
        self._proc = subprocess.Popen(self._argv, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL)
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def status(self) -> dict[str, Any]:
        """Return the child's last published status (see :meth:`HubShipper.status`); while it
        has published none, ``state`` is ``starting``; once it exited unasked, ``stopped``."""
        with self._lock:
            try:
                row = None if self._closed else self._conn.execute(
                    "SELECT status FROM hub_outbox_status WHERE id = 1").fetchone()
            except sqlite3.Error:
                row = None
            held = self._held
            if row is not None:
                held = self._held = json.loads(row[0])
        status = dict(held) if held else {
            "url": self.url, "node_id": self.node_id, "state": "starting", "last_ok_ns": 0,
            "last_error": "", "shipped": {kind: 0 for kind in KINDS}, "refused": {},
            "posts": 0, "failures": 0}
        code = self._proc.poll() if self._proc is not None else None
        if code is not None and not self._closed:
            status.update(state="stopped", last_error=f"the shipper process exited with code "
                                                      f"{code}; rows stay in the database")
        status["pid"] = self.pid
        return status

    def close(self) -> None:
        """Ask the child to send once more and exit (SIGTERM); kill it when it does not exit
        within ``timeout_s`` + 5 s. The last status stays readable."""
        if self._closed:
            return
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.timeout_s + 5.0)
            except subprocess.TimeoutExpired:
                log.warning("the hub shipper process %d did not exit; killed", proc.pid)
                proc.kill()
                proc.wait(5)
        self.status()  # keep the child's last word
        with self._lock:
            self._closed = True
            self._conn.close()


def main(argv: list[str] | None = None) -> int:
    """The shipper process: ship until SIGTERM or until the parent is gone."""
    from flowchain.hub.shipper import HubShipper

    parser = argparse.ArgumentParser(prog="flowchain-hub-shipper")
    for name in ("--url", "--token-file", "--db", "--node-id"):
        parser.add_argument(name, required=True)
    parser.add_argument("--interval-s", type=float, default=5.0)
    parser.add_argument("--batch-rows", type=int, default=500)
    parser.add_argument("--max-backoff-s", type=float, default=60.0)
    parser.add_argument("--timeout-s", type=float, default=10.0)
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[node {args.node_id}] %(levelname)s %(message)s"))
    logger = logging.getLogger("flowchain")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node's Ctrl-C: the node stops us
    parent = os.getppid()
    try:
        shipper = HubShipper(args.url, read_token(args.token_file), args.db, args.node_id,
                             interval_s=args.interval_s, batch_rows=args.batch_rows,
                             max_backoff_s=args.max_backoff_s, timeout_s=args.timeout_s,
                             publish_status=True)
    except Exception as exc:  # the node shows "stopped" with this exit code
        logger.error("the hub shipper could not start: %s", exc)
        return 3
    shipper.run(stop, alive=lambda: os.getppid() == parent)
    return 0

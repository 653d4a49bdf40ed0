"""Running hubs and nodes for the hub service tests: real processes, sockets and SQLite files."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from flowchain.chains import AI_DECISION_CHAIN, MT5_TO_DATABASE_CHAIN
from flowchain.hub.auth import add_token

LAUNCH = "from flowchain.cli import main; main()"
CHAINS = (AI_DECISION_CHAIN, MT5_TO_DATABASE_CHAIN)


def start_hub(tmp: Path, store: str, tokens: Path, *, port: int = 0,
              name: str = "hub", extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """Start ``flowchain hub`` on loopback (``extra``: more options); return the process and
    its URL once it serves."""
    url_file = tmp / f"{name}.url"
    url_file.unlink(missing_ok=True)
    option = ["--pg", store] if store.startswith("postgresql://") else ["--db", store]
    log = open(tmp / f"{name}.log", "a")
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "hub", *option, "--port", str(port), "--tokens",
         str(tokens), "--url-file", str(url_file), "--stale-after-s", "60", *extra],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    log.close()
    deadline = time.monotonic() + 60
    while not url_file.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the hub exited with {proc.returncode}:\n"
                                 + (tmp / f"{name}.log").read_text())
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the hub did not serve within 60 s")
        time.sleep(0.05)
    return proc, url_file.read_text().strip()


def stop_hub(proc: subprocess.Popen) -> None:
    """SIGTERM the hub and wait for it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def node_token(tmp: Path, tokens: Path, node_id: str) -> Path:
    """Create ``node_id``'s token in the hub's tokens file; return the node's token file."""
    path = tmp / f"{node_id}.token"
    path.write_text(add_token(tokens, node_id) + "\n")
    return path


def node_config(tmp: Path, node_id: str, hub_url: str, token_file: Path, *,
                rate: float = 400.0, seed: int = 0, dashboard: bool = False) -> Path:
    """Write a node's TOML: simulated feed, fast history intervals, shipping every 0.2 s."""
    path = tmp / f"{node_id}.toml"
    path.write_text(f"""
[node]
id = "{node_id}"
db = "{tmp / (node_id + '.db')}"
status_interval = 0
[simulator]
rate = {rate}
seed = {seed}
[dashboard]
enabled = {"true" if dashboard else "false"}
port = 0
[history]
interval_s = 0.25
sample_rate = 0.01
[monitor]
interval_s = 0.1
[hub]
url = "{hub_url}"
token_file = "{token_file}"
interval_s = 0.2
batch_rows = 50
max_backoff_s = 0.5
""")
    return path


def local_counts(db: Path) -> dict[str, int]:
    """Rows of each shipped kind in a node's own database."""
    conn = sqlite3.connect(db)
    try:
        return {kind: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for kind, table in (("intervals", "latency_intervals"),
                                    ("executions", "execution_records"),
                                    ("alerts", "alert_events"))}
    finally:
        conn.close()


def local_executions(db: Path, chain: str, step: str = "") -> int:
    """Executions a node's own interval rows count for ``chain`` (``step``)."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COALESCE(SUM(count), 0) FROM latency_intervals WHERE "
                            "chain = ? AND step = ?", (chain, step)).fetchone()[0]
    finally:
        conn.close()


def hub_counts(store: str, node_id: str | None = None) -> dict[str, int]:
    """Rows of each kind the hub's database holds (of one node, or all), read with plain SQL."""
    from flowchain.hub.store import TABLES

    where = " WHERE node_id = %s" if node_id else ""
    args = (node_id,) if node_id else ()
    if store.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(store) as conn:
            return {kind: conn.execute(f"SELECT COUNT(*) FROM {TABLES[kind]}{where}",
                                       args).fetchone()[0]
                    for kind in ("intervals", "executions", "alerts")}
    conn = sqlite3.connect(store)
    try:
        return {kind: conn.execute(f"SELECT COUNT(*) FROM {TABLES[kind]}"
                                   f"{where.replace('%s', '?')}", args).fetchone()[0]
                for kind in ("intervals", "executions", "alerts")}
    finally:
        conn.close()

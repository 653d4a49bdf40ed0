"""The node's shipper: new history rows from the node's SQLite to a ``flowchain hub``.

A :class:`HubShipper` runs on the cold path — in the node's shipper process
(:mod:`flowchain.hub.shipper_process`, what ``flowchain node`` starts) or in a thread of an
embedding program (:meth:`HubShipper.start`) — and only reads the node's
database (WAL: the history writer keeps writing while it reads). Every ``interval_s`` it reads,
per kind, the rows after its **outbox cursor** (table ``hub_outbox`` in the node's database: the
last local id the hub acknowledged, per kind), posts them as one :class:`~flowchain.hub.rows.Batch`
to ``POST /api/v1/ingest`` and advances the cursors only when the hub answers 2xx. A batch the
hub stored but whose answer was lost is sent again and stored once (the hub keys every row by
node, kind and local id), so nothing is lost and nothing is doubled.

Kinds and what "new" means:

* ``intervals``: ``latency_intervals`` rows (epoch ``start_ns``/``end_ns``: the history writer
  stamps them with ``time.time_ns()``, so the hub can align several nodes' intervals);
* ``executions``: ``execution_records`` (failed ones, and the sampled successful ones);
* ``alerts``: ``alert_events`` rows; one shipped while open (an escalation not yet recovered,
  whose row the node updates in place) is sent again with every shipment until the hub has
  it closed (``hub_outbox_open_alerts``);
* ``usage``: ``tenant_usage`` rows whose ``updated_ns`` is past the cursor (the hub keeps the
  latest value per node, tenant and period).

The hub or its database down: the shipment fails, the cursors stay, the next attempt waits
twice as long (up to ``max_backoff_s``); the change of state is logged once each way. Nothing
here touches the tick path: the node trades on whatever the hub does.
"""
from __future__ import annotations

import http.client
import logging
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from flowchain.periodic import PeriodicThread

log = logging.getLogger("flowchain.hub.shipper")

OUTBOX_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS hub_outbox (
        kind       TEXT    PRIMARY KEY,
        last_id    INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS hub_outbox_open_alerts (
        local_id INTEGER PRIMARY KEY
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS hub_outbox_status (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        status     TEXT    NOT NULL,
        updated_ns INTEGER NOT NULL
    )
    """,
)
"""The outbox cursor: per kind, the last local id (``usage``: ``updated_ns``) the hub took;
the alerts shipped while still open (sent again each time until they close); and the
shipper's last status (:meth:`HubShipper.status`, for the node when the shipper runs in a
process of its own)."""

KINDS = ("intervals", "executions", "alerts", "usage")
INGEST_PATH = "/api/v1/ingest"

_QUERIES = {
    "intervals": ("latency_intervals",
                  "SELECT id, run_id, tenant, chain, chain_id, step, step_index, start_ns, "
                  "end_ns, count, errors, expected_ns, histogram, failure_histogram "
                  "FROM latency_intervals WHERE id > ? ORDER BY id LIMIT ?"),
    "executions": ("execution_records",
                   "SELECT id, run_id, execution_id, tenant, chain, chain_id, status, sampled, "
                   "start_epoch_ns, duration_ns, failed_step, record FROM execution_records "
                   "WHERE id > ? ORDER BY id LIMIT ?"),
    "alerts": ("alert_events",
               "SELECT id, run_id, kind, tenant, chain, chain_id, step, start_ns, end_ns, alerts, "
               "message, fields FROM alert_events WHERE id > ? ORDER BY id LIMIT ?"),
    "usage": ("tenant_usage",
              "SELECT updated_ns, tenant, period, used, reserved, refused FROM tenant_usage "
              "WHERE updated_ns > ? ORDER BY updated_ns LIMIT ?"),
}


class HubRefused(Exception):
    """The hub answered, but not 2xx (the message holds its status and its reason)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status


def read_token(path: str | Path) -> str:
    """Return the token in ``path`` (its first non-empty line).

    Raises
    ------
    ValueError
        When the file cannot be read or holds no token.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"hub token file {str(path)!r}: {exc.strerror or exc}") from None
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    raise ValueError(f"hub token file {str(path)!r} holds no token; write the one "
                     "`flowchain hub token add NODE` printed into it")


class HubShipper:
    """Ship the node's new history rows to a hub, in batches, from a thread of its own.

    Parameters
    ----------
    url : str
        The hub's base URL (``http://127.0.0.1:8760``).
    token : str
        This node's hub token.
    db : str or Path
        The node's history database (the one its history writer and tenant usage write).
    node_id : str
        This node's id (the hub accepts rows of the token's node only).
    interval_s : float
        Seconds between shipments when the hub answers.
    batch_rows : int
        Rows of each kind in one POST; a backlog goes out in back-to-back POSTs.
    max_backoff_s : float
        The longest wait between attempts while the hub does not answer 2xx.
    timeout_s : float
        Seconds one POST may take.
    publish_status : bool
        Write :meth:`status` into ``hub_outbox_status`` after every attempt (for a node that
        runs the shipper in a process of its own: :mod:`flowchain.hub.shipper_process`).

    Attributes
    ----------
    counters : Counter
        ``shipped_<kind>`` rows acknowledged, ``posts``, ``failures``.
    """

    def __init__(self, url: str, token: str, db: str | Path, node_id: str, *,
                 interval_s: float = 5.0, batch_rows: int = 500, max_backoff_s: float = 60.0,
                 timeout_s: float = 10.0, publish_status: bool = False) -> None:
        from flowchain.store import ensure_schema, open_database

        self.url = url.rstrip("/")
        self.node_id = node_id
        self.interval_s = interval_s
        self.batch_rows = batch_rows
        self.max_backoff_s = max(max_backoff_s, interval_s)
        self.timeout_s = timeout_s
        self._token = token
        self.conn = open_database(db)
        ensure_schema(self.conn, OUTBOX_SCHEMA)
        self.counters: Counter = Counter()
        self.state = "starting"
        """``starting``, ``ok`` (the last shipment was taken), ``retrying`` (it was not)."""
        self.last_error = ""
        self.last_ok_ns = 0
        self._next_attempt = 0.0
        self._backoff_s = interval_s
        self._lock = threading.Lock()
        self._http: http.client.HTTPConnection | None = None
        self._path = INGEST_PATH
        self._thread = PeriodicThread(self._tick, min(interval_s, 0.5), "flowchain-hub-shipper")
        self._closed = False
        self.publish_status = publish_status

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> HubShipper:
        """Start shipping in the background; return self."""
        self._thread.start()
        return self

    def close(self, final_attempt: bool = True) -> None:
        """Stop the thread; with ``final_attempt``, try once more to ship what is left (what
        the hub does not take stays in the database for the next run)."""
        if self._closed:
            return
        if final_attempt:
            self._next_attempt = 0.0
        else:
            self._next_attempt = float("inf")
        if not self._thread.stop(timeout=self.timeout_s + 2.0) and final_attempt:
            self._tick()  # no thread ran (the process loop): the last attempt here
        with self._lock:
            self._closed = True
            self.conn.close()
            if self._http is not None:
                self._http.close()

    # ------------------------------------------------------------------ shipping

    def cursors(self) -> dict[str, int]:
        """Return the outbox cursor per kind (0: nothing acknowledged yet)."""
        with self._lock:
            return self._cursors()

    def _cursors(self) -> dict[str, int]:
        got = dict(self.conn.execute("SELECT kind, last_id FROM hub_outbox").fetchall())
        return {kind: int(got.get(kind, 0)) for kind in KINDS}

    def _tick(self) -> None:
        if time.monotonic() < self._next_attempt:
            return
        with self._lock:
            if self._closed:
                return
            self.ship_once()
            if self.publish_status:
                self._publish()

    def _publish(self) -> None:
        import json

        try:
            self.conn.execute(
                "INSERT INTO hub_outbox_status (id, status, updated_ns) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
                "updated_ns = excluded.updated_ns", (json.dumps(self.status()), time.time_ns()))
        except sqlite3.Error as exc:  # a locked database: the next attempt publishes again
            log.debug("publishing the shipping status failed: %s", exc)

    def run(self, stop: threading.Event, *, poll_s: float = 0.05,
            alive: Any | None = None) -> None:
        """Ship in the calling thread until ``stop`` is set (or ``alive()`` turns false), then
        make one last attempt and close (the loop of a shipper process)."""
        while not stop.wait(min(poll_s, self.interval_s)):
            if alive is not None and not alive():
                break
            self._tick()
        self.close(final_attempt=True)

    def ship_once(self) -> int:
        """Ship everything new now, batch after batch, until the hub has it all or refuses.

        Returns the rows acknowledged. Failures are recorded (state, back-off), not raised.
        """
        total = 0
        while True:
            try:
                batch, ends = self._read_batch()
                try:
                    self._post(batch)
                except HubRefused as exc:
                    if exc.status != 400 or len(batch) <= 1:
                        raise
                    self._post_one_by_one(batch)  # find the row the hub refuses
            except (OSError, HubRefused, sqlite3.Error, ValueError) as exc:
                self._failed(exc)
                return total
            rows = self._advance(ends, batch)
            total += rows
            self._succeeded()
            if not any(n >= self.batch_rows for _, n in ends.values()):
                return total

    def _read_batch(self) -> tuple[Any, dict[str, tuple[int, int]]]:
        """Read up to ``batch_rows`` rows per kind past the cursors; return the batch and,
        per kind, (new cursor, rows)."""
        from flowchain.hub.rows import AlertRow, Batch, ExecutionRow, IntervalRow, UsageRow

        cursors = self._cursors()
        tables = {r[0] for r in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        node = self.node_id
        rows: dict[str, list] = {kind: [] for kind in KINDS}
        ends: dict[str, tuple[int, int]] = {}
        for kind in KINDS:
            table, sql = _QUERIES[kind]
            if table not in tables:
                continue
            fetched = self.conn.execute(sql, (cursors[kind], self.batch_rows)).fetchall()
            if not fetched:
                if kind == "alerts":
                    rows[kind].extend(AlertRow(node, *r) for r in self._open_alerts([]))
                continue
            ends[kind] = (int(fetched[-1][0]), len(fetched))
            if kind == "alerts":
                fetched = self._open_alerts(fetched) + fetched
            out = rows[kind]
            for r in fetched:
                if kind == "intervals":
                    out.append(IntervalRow(node, *r))
                elif kind == "executions":
                    out.append(ExecutionRow(node, r[0], r[1], r[2], r[3], r[4], r[5], r[6],
                                            bool(r[7]), r[8], r[9], r[10], r[11]))
                elif kind == "alerts":
                    out.append(AlertRow(node, *r))
                else:
                    updated, tenant, period, used, reserved, refused = r
                    out.append(UsageRow(node, tenant, period, used, reserved, refused, updated))
        batch = Batch(node_id=node, intervals=tuple(rows["intervals"]),
                      executions=tuple(rows["executions"]), alerts=tuple(rows["alerts"]),
                      usage=tuple(rows["usage"]))
        return batch, ends

    def _open_alerts(self, after: list) -> list:
        """Return the alert rows shipped while open (as they are now), none of ``after``."""
        sql = _QUERIES["alerts"][1].split(" WHERE ")[0]
        rows = self.conn.execute(
            f"{sql} WHERE id IN (SELECT local_id FROM hub_outbox_open_alerts) ORDER BY id"
        ).fetchall()
        first = after[0][0] if after else None
        return [r for r in rows if first is None or r[0] < first]

    def _connection(self) -> http.client.HTTPConnection:
        """The kept-alive connection to the hub (a new one after any failure)."""
        if self._http is None:
            from urllib.parse import urlsplit

            parts = urlsplit(self.url)
            kind = http.client.HTTPSConnection if parts.scheme == "https" \
                else http.client.HTTPConnection
            self._http = kind(parts.hostname or "", parts.port, timeout=self.timeout_s)
            self._path = (parts.path.rstrip("/") or "") + INGEST_PATH
        return self._http

    def _post(self, batch: Any) -> None:
        """POST the batch; a kept-alive connection the hub closed meanwhile is retried once on
        a fresh one (the ingest is idempotent)."""
        body = batch.to_json()
        for attempt in (0, 1):
            fresh = self._http is None
            connection = self._connection()
            try:
                connection.request("POST", self._path, body=body, headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {self._token}"})
                response = connection.getresponse()
                answer = response.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                self._http = None
                if not fresh and attempt == 0:
                    continue
                if isinstance(exc, OSError):
                    raise
                raise OSError(f"{type(exc).__name__}: {exc}") from None
        if not 200 <= response.status < 300:
            reason = answer[:2000].decode("utf-8", "replace").strip() or response.reason
            raise HubRefused(response.status, reason)
        self.counters["posts"] += 1

    def _post_one_by_one(self, batch: Any) -> None:
        """Post each row of a batch the hub refused as malformed on its own; a row refused
        again (400) is logged, counted in ``refused_<kind>`` and passed over, so one row the
        hub cannot take (a record over its size limits) never blocks the rest. Any other
        failure raises, and the batch is sent again later."""
        from flowchain.hub.rows import KINDS as ROW_KINDS
        from flowchain.hub.rows import Batch

        for kind in ROW_KINDS:
            for row in getattr(batch, kind):
                try:
                    self._post(Batch(node_id=self.node_id, **{kind: (row,)}))
                except HubRefused as exc:
                    if exc.status != 400:
                        raise
                    self.counters[f"refused_{kind}"] += 1
                    log.error("hub %s refuses %s row %s of node %s (%s); it stays in the "
                              "node's database and is not sent again", self.url, kind,
                              getattr(row, "local_id", getattr(row, "period", "?")),
                              self.node_id, exc)

    def _advance(self, ends: dict[str, tuple[int, int]], batch: Any) -> int:
        from flowchain.store import transaction

        now = time.time_ns()
        with transaction(self.conn):
            for alert in batch.alerts:
                if alert.end_ns is None:
                    self.conn.execute("INSERT OR IGNORE INTO hub_outbox_open_alerts (local_id) "
                                      "VALUES (?)", (alert.local_id,))
                else:
                    self.conn.execute("DELETE FROM hub_outbox_open_alerts WHERE local_id = ?",
                                      (alert.local_id,))
            self.conn.executemany(
                "INSERT INTO hub_outbox (kind, last_id, updated_ns) VALUES (?, ?, ?) "
                "ON CONFLICT (kind) DO UPDATE SET last_id = excluded.last_id, "
                "updated_ns = excluded.updated_ns",
                [(kind, end, now) for kind, (end, _) in ends.items()])
        total = 0
        for kind, (_, n) in ends.items():
            self.counters[f"shipped_{kind}"] += n
            total += n
        return total

    def _succeeded(self) -> None:
        if self.state != "ok":
            if self.state == "retrying":
                log.warning("hub %s takes the node's rows again; catching up", self.url)
            self.state = "ok"
            self.last_error = ""
        self.last_ok_ns = time.time_ns()
        self._backoff_s = self.interval_s
        self._next_attempt = time.monotonic() + self.interval_s

    def _failed(self, exc: BaseException) -> None:
        self.counters["failures"] += 1
        text = str(exc) or type(exc).__name__
        self.last_error = text  # before the state: a reader seeing "retrying" sees why
        if self.state != "retrying":
            log.warning("hub %s does not take the node's rows (%s); they stay in the node's "
                        "database and are sent when it does", self.url, text)
            self.state = "retrying"
        self._next_attempt = time.monotonic() + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, self.max_backoff_s)

    # ------------------------------------------------------------------ reporting

    def status(self) -> dict[str, Any]:
        """Return the shipping state as plain data (the node's status and ``/api/status``)."""
        return {"url": self.url, "node_id": self.node_id, "state": self.state,
                "last_ok_ns": self.last_ok_ns, "last_error": self.last_error,
                "shipped": {kind: self.counters[f"shipped_{kind}"] for kind in KINDS},
                "refused": {kind: self.counters[f"refused_{kind}"] for kind in KINDS
                            if self.counters[f"refused_{kind}"]},
                "posts": self.counters["posts"], "failures": self.counters["failures"]}


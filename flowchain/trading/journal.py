"""The order journal: every order and state change committed to SQLite (WAL) before it happens.

Client order ids are ``<node_id>-<sequence>`` with the sequence recovered from the journal on
open, so a restarted node never reuses one. The node id is the database's own (created with it,
``n`` + 8 random hex digits) unless configured, and each node id has a random namespace stored
in the database (:func:`flowchain.store.node_identity`): an order's wire req_id is
``namespace << 32 | sequence``, so no other node, database or restart makes the same one.
After a crash, orders not settled (``sending``, ``pending`` or ``unknown``) are reconciled
against the broker with :meth:`OrderJournal.reconcile`: what the broker has is recorded, what
it never received becomes ``not_sent``; nothing is resent.
"""
from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from flowchain.store import NodeIdentity, check_node_id, node_identity
from flowchain.trading.orders import (
    NOT_SENT,
    OPEN_STATES,
    SENDING,
    UNKNOWN,
    BrokerReport,
    OrderRequest,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    side INTEGER NOT NULL,
    volume REAL NOT NULL,
    price REAL NOT NULL,
    time_msc INTEGER NOT NULL,
    state TEXT NOT NULL,
    fill_price REAL,
    fill_volume REAL,
    retcode INTEGER,
    comment TEXT,
    reason TEXT,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    UNIQUE (node_id, seq)
);
CREATE TABLE IF NOT EXISTS order_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_order_id TEXT NOT NULL REFERENCES orders(client_order_id),
    state TEXT NOT NULL,
    at_ns INTEGER NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS orders_state ON orders(state);
"""
_ADDED_COLUMNS = (("req_id", "INTEGER"), ("deal", "INTEGER"), ("mt5_order", "INTEGER"))
"""Columns later versions added to ``orders`` (added to an older journal on open): the wire
req_id, and the terminal's deal and order tickets of a fill."""

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


def _stored_u64(value: int) -> int:
    """A u64 as SQLite's signed 64-bit INTEGER (two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _loaded_u64(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


class DuplicateOrderError(RuntimeError):
    """An order with this client order id is already in the journal (it is never sent twice)."""


class OrderJournal:
    """The SQLite order journal of one node.

    Parameters
    ----------
    path : str or Path
        The database file (``":memory:"`` keeps it in memory: no durability, for tests).
    node_id : str, optional
        This node's id: the prefix of its client order ids; by default the database's own
        (created with it and stored in it).
    synchronous : str, optional
        SQLite ``synchronous`` mode. ``NORMAL`` (default) survives a killed process; ``FULL``
        also survives power loss, at an fsync per commit.

    Raises
    ------
    ValueError
        If ``node_id`` is not 1..32 letters, digits or ``_``, or ``synchronous`` is unknown.
    sqlite3.Error
        If the database cannot be opened.
    """

    def __init__(self, path: str | Path, node_id: str | None = None,
                 synchronous: str = "NORMAL") -> None:
        if node_id is not None:
            try:
                check_node_id(node_id)
            except ValueError as exc:
                raise ValueError(f"OrderJournal: node_id: {exc}") from None
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ValueError(f"OrderJournal: synchronous must be one of {SYNCHRONOUS_MODES}, "
                             f"got {synchronous!r}")
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        have = {r[1] for r in self._db.execute("PRAGMA table_info(orders)")}
        for column, kind in _ADDED_COLUMNS:
            if column not in have:
                self._db.execute(f"ALTER TABLE orders ADD COLUMN {column} {kind}")
        self.identity: NodeIdentity = node_identity(self._db, node_id)
        """This node's id and order namespace in this database."""
        self.node_id = self.identity.node_id
        row = self._db.execute("SELECT MAX(seq) FROM orders WHERE node_id = ?",
                               (self.node_id,)).fetchone()
        self._seq = int(row[0]) if row[0] is not None else 0
        self.reconciled: Counter = Counter()
        """Orders settled by :meth:`reconcile`, by outcome."""
        self._closed_counts: dict[str, int] | None = None

    def next_client_order_id(self) -> str:
        """Return the next client order id (``<node_id>-<seq>``), never one used before."""
        self._seq += 1
        return f"{self.node_id}-{self._seq}"

    def next_order_ids(self) -> tuple[str, int]:
        """Return the next client order id and its req_id (see :meth:`req_id_of`)."""
        self._seq += 1
        return f"{self.node_id}-{self._seq}", self.identity.req_id(self._seq)

    def req_id_of(self, client_order_id: str) -> int:
        """The wire req_id of one of this node's client order ids: ``namespace << 32 | seq``.

        Raises
        ------
        ValueError
            If the id is not ``<node_id>-<n>`` of this node.
        """
        return self.identity.req_id(self._seq_of(client_order_id))

    def _seq_of(self, client_order_id: str) -> int:
        prefix, _, seq = client_order_id.rpartition("-")
        if prefix != self.node_id or not seq.isdigit():
            raise ValueError(f"OrderJournal: client order id {client_order_id!r} is not "
                             f"'{self.node_id}-<n>'; take it from next_client_order_id()")
        return int(seq)

    def _commit(self, statements: list[tuple[str, tuple]]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                db.execute(sql, args)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def record_sending(self, order: OrderRequest, reason: str = "") -> None:
        """Journal ``order`` in state ``sending`` and commit; call before sending it.

        Raises
        ------
        DuplicateOrderError
            If its client order id is already journaled (the caller must not send it).
        ValueError
            If its client order id is not ``<node_id>-<integer>`` of this node.
        """
        seq = self._seq_of(order.client_order_id)
        req_id = self.identity.req_id(seq)
        if order.req_id and order.req_id != req_id:
            raise ValueError(f"OrderJournal: order {order.client_order_id} carries req_id "
                             f"{order.req_id:#x}, its journal's is {req_id:#x}")
        now = time.time_ns()
        try:
            self._commit([
                ("INSERT INTO orders (client_order_id, node_id, seq, symbol, side, volume, price, "
                 "time_msc, state, reason, created_ns, updated_ns, req_id) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (order.client_order_id, self.node_id, seq, order.symbol, order.side,
                  order.volume, order.price, order.time_msc, SENDING, reason, now, now,
                  _stored_u64(req_id))),
                ("INSERT INTO order_events (client_order_id, state, at_ns, detail) "
                 "VALUES (?, ?, ?, ?)", (order.client_order_id, SENDING, now, None)),
            ])
        except sqlite3.IntegrityError as exc:
            raise DuplicateOrderError(
                f"order {order.client_order_id} is already in the journal {self.path}; it was "
                "not sent again") from exc

    def record_state(self, client_order_id: str, state: str,
                     report: BrokerReport | None = None, detail: str = "") -> None:
        """Journal a state change of a journaled order (with the broker's report) and commit.

        Raises
        ------
        KeyError
            If the order is not in the journal.
        """
        now = time.time_ns()
        if report is not None:
            update = ("UPDATE orders SET state = ?, fill_price = ?, fill_volume = ?, retcode = ?, "
                      "comment = ?, updated_ns = ?, deal = ?, mt5_order = ? "
                      "WHERE client_order_id = ?",
                      (state, report.price, report.volume, report.retcode, report.comment, now,
                       _stored_u64(report.deal) or None, _stored_u64(report.order) or None,
                       client_order_id))
        else:
            update = ("UPDATE orders SET state = ?, comment = ?, updated_ns = ? "
                      "WHERE client_order_id = ?", (state, detail, now, client_order_id))
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute(*update).rowcount != 1:
                raise KeyError(f"order {client_order_id} is not in the journal {self.path}")
            db.execute("INSERT INTO order_events (client_order_id, state, at_ns, detail) "
                       "VALUES (?, ?, ?, ?)",
                       (client_order_id, state, now, detail or (report and report.comment)))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def unresolved(self) -> list[str]:
        """Return the ids of this node's orders not settled (``sending``, ``pending`` or
        ``unknown``), oldest first."""
        rows = self._db.execute(
            f"SELECT client_order_id FROM orders WHERE node_id = ? AND state IN "
            f"({', '.join('?' * len(OPEN_STATES))}) ORDER BY seq",
            (self.node_id, *OPEN_STATES)).fetchall()
        return [r[0] for r in rows]

    def request(self, client_order_id: str) -> OrderRequest | None:
        """Return a journaled order as the :class:`OrderRequest` it was sent as (with its
        req_id, 0 for an order journaled before req_ids were; ``bid``/``ask`` both hold its
        reference price), or None."""
        row = self._db.execute(
            "SELECT client_order_id, symbol, side, volume, price, time_msc, seq, req_id "
            "FROM orders WHERE client_order_id = ? AND node_id = ?",
            (client_order_id, self.node_id)).fetchone()
        if row is None:
            return None
        cid, symbol, side, volume, price, time_msc, seq, req_id = row
        return OrderRequest(cid, symbol, int(side), float(volume), float(price), float(price),
                            int(time_msc), _loaded_u64(req_id) if req_id is not None else 0)

    def open_orders(self) -> list[OrderRequest]:
        """Return this node's unsettled orders (see :meth:`unresolved`) as requests."""
        found = (self.request(cid) for cid in self.unresolved())
        return [order for order in found if order is not None]

    def state_counts(self) -> dict[str, int]:
        """Return ``{state: orders}`` of this node's journaled orders (as at :meth:`close`, once
        closed)."""
        if self._closed_counts is not None:
            return dict(self._closed_counts)
        return dict(self._db.execute("SELECT state, COUNT(*) FROM orders WHERE node_id = ? "
                                     "GROUP BY state ORDER BY state", (self.node_id,)))

    def reconcile(self, lookup: Callable[[str], BrokerReport | None]) -> Counter:
        """Settle unresolved orders by asking the broker; never resend one.

        Parameters
        ----------
        lookup : callable
            ``lookup(client_order_id)`` returns the broker's report, or None when the broker
            never received the order; it raises when it cannot tell (the order stays unresolved,
            marked ``unknown``, for the next reconciliation or the operator).

        Returns
        -------
        collections.Counter
            Outcomes of this call: broker states, ``not_sent`` and ``still_unknown``.
        """
        outcome: Counter = Counter()
        for cid in self.unresolved():
            try:
                report = lookup(cid)
            except Exception as exc:  # the broker cannot tell: keep it unresolved, say why
                self.record_state(cid, UNKNOWN, detail=f"reconcile failed: {exc!r}")
                outcome["still_unknown"] += 1
                continue
            if report is None:
                self.record_state(cid, NOT_SENT, detail="reconciled: the broker never received it")
                outcome[NOT_SENT] += 1
            else:
                self.record_state(cid, report.state, report, detail="reconciled")
                outcome[report.state] += 1
        self.reconciled.update(outcome)
        return outcome

    def order(self, client_order_id: str) -> dict | None:
        """Return one journaled order as a dict, or None."""
        cur = self._db.execute("SELECT * FROM orders WHERE client_order_id = ?",
                               (client_order_id,))
        row = cur.fetchone()
        return dict(zip([c[0] for c in cur.description], row, strict=True)) if row else None

    def states(self) -> dict[str, str]:
        """Return ``{client_order_id: state}`` for every journaled order."""
        return dict(self._db.execute("SELECT client_order_id, state FROM orders ORDER BY seq"))

    def events(self, client_order_id: str) -> list[str]:
        """Return the states ``client_order_id`` went through, in order."""
        return [r[0] for r in self._db.execute(
            "SELECT state FROM order_events WHERE client_order_id = ? ORDER BY id",
            (client_order_id,))]

    def close(self) -> None:
        """Close the database (keeping :meth:`state_counts` for a summary written after)."""
        if self._closed_counts is None:
            self._closed_counts = self.state_counts()
        self._db.close()

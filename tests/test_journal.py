"""OrderJournal: journal before send, idempotent ids, and recovery after SIGKILL mid-run."""
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from flowchain.trading.journal import DuplicateOrderError, OrderJournal
from flowchain.trading.orders import (
    FILLED,
    NOT_SENT,
    SENDING,
    UNKNOWN,
    BrokerReport,
    OrderRequest,
)


def order(journal, side=1):
    return OrderRequest(journal.next_client_order_id(), "EURUSD", side, 0.1, 1.1, 1.1002, 1000)


def test_states_and_events_are_committed_in_order(tmp_path):
    j = OrderJournal(tmp_path / "j.db", "n1")
    o = order(j)
    j.record_sending(o, reason='{"action": "buy"}')
    # another connection (another process would be the same) sees it before the send
    other = sqlite3.connect(tmp_path / "j.db")
    assert other.execute("SELECT state, reason FROM orders").fetchall() == [
        (SENDING, '{"action": "buy"}')]
    j.record_state(o.client_order_id, FILLED, BrokerReport(o.client_order_id, FILLED, 1.1002,
                                                            0.1, 10009, "done"))
    assert j.events(o.client_order_id) == [SENDING, FILLED]
    row = j.order(o.client_order_id)
    assert row["fill_price"] == 1.1002 and row["retcode"] == 10009 and row["side"] == 1
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(KeyError, match="n1-999"):
        j.record_state("n1-999", FILLED)


def test_ids_continue_after_reopen_and_duplicates_are_refused(tmp_path):
    j = OrderJournal(tmp_path / "j.db", "n1")
    ids = []
    for _ in range(3):
        o = order(j)
        j.record_sending(o)
        ids.append(o.client_order_id)
    j.close()
    j = OrderJournal(tmp_path / "j.db", "n1")
    assert ids == ["n1-1", "n1-2", "n1-3"] and j.next_client_order_id() == "n1-4"
    with pytest.raises(DuplicateOrderError, match="n1-2"):
        j.record_sending(OrderRequest("n1-2", "EURUSD", 1, 0.1, 1.0, 1.0, 0))
    with pytest.raises(ValueError, match="n1-<n>"):
        j.record_sending(OrderRequest("other-5", "EURUSD", 1, 0.1, 1.0, 1.0, 0))
    assert OrderJournal(tmp_path / "j.db", "n2").next_client_order_id() == "n2-1"
    with pytest.raises(ValueError, match="node_id"):
        OrderJournal(tmp_path / "j.db", "a-b")


def test_reconcile_settles_without_resending(tmp_path):
    j = OrderJournal(tmp_path / "j.db", "n1")
    a, b, c = order(j), order(j), order(j)
    for o in (a, b, c):
        j.record_sending(o)
    j.record_state(c.client_order_id, UNKNOWN, detail="timeout")
    broker = {a.client_order_id: BrokerReport(a.client_order_id, FILLED, 1.1, 0.1, 10009, "ok")}

    def lookup(cid):
        if cid == c.client_order_id:
            raise TimeoutError("bridge down")
        return broker.get(cid)

    outcome = j.reconcile(lookup)
    assert outcome == {FILLED: 1, NOT_SENT: 1, "still_unknown": 1}
    assert j.states() == {a.client_order_id: FILLED, b.client_order_id: NOT_SENT,
                          c.client_order_id: UNKNOWN}
    assert j.unresolved() == [c.client_order_id]
    assert j.reconcile(lambda cid: None) == {NOT_SENT: 1} and j.unresolved() == []


CHILD = textwrap.dedent("""
    import os, sys
    from flowchain.trading.journal import OrderJournal
    from flowchain.trading.orders import FILLED, BrokerReport, OrderRequest
    db, exchange = sys.argv[1], sys.argv[2]

    def sent():
        with open(exchange) as f:
            return set(f.read().split())

    journal = OrderJournal(db, "node7")
    seen = sent()
    journal.reconcile(lambda cid: BrokerReport(cid, FILLED) if cid in seen else None)
    fd = os.open(exchange, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    for _ in range(200_000):
        cid = journal.next_client_order_id()
        journal.record_sending(OrderRequest(cid, "EURUSD", 1, 0.1, 1.1, 1.1002, 0))
        os.write(fd, (cid + "\\n").encode())          # the "broker" receives it
        journal.record_state(cid, FILLED, BrokerReport(cid, FILLED, 1.1002, 0.1, 10009, "ok"))
""")


def run_and_kill(tmp_path, eventually, at_least):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    exchange = tmp_path / "exchange.txt"
    exchange.touch()
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "j.db"), str(exchange)],
                            stderr=subprocess.PIPE)
    try:
        eventually(lambda: len(exchange.read_text().split()) >= at_least or proc.poll() is not None,
                   timeout=30)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def test_recovery_after_sigkill_mid_run(tmp_path, eventually):
    exchange = tmp_path / "exchange.txt"
    run_and_kill(tmp_path, eventually, 150)
    run_and_kill(tmp_path, eventually, 300)  # the second run reconciled the first's leftovers
    sent = exchange.read_text().split()
    assert len(sent) == len(set(sent)), "an order went to the broker twice"
    j = OrderJournal(tmp_path / "j.db", "node7")
    received = set(sent)
    j.reconcile(lambda cid: BrokerReport(cid, FILLED) if cid in received else None)
    states = j.states()
    missing = received - set(states)
    assert not missing, f"orders sent but never journaled: {sorted(missing)[:5]}"
    assert j.unresolved() == []
    for cid, state in states.items():
        assert state == (FILLED if cid in received else NOT_SENT), (cid, state)
    seqs = sorted(int(cid.split("-")[1]) for cid in states)
    assert seqs == list(range(1, len(seqs) + 1)), "a client order id was skipped or reused"
    assert j.next_client_order_id() == f"node7-{seqs[-1] + 1}"
    for cid in states:  # every order's history starts with the journal entry made before sending
        assert j.events(cid)[0] == SENDING


def test_default_node_id_is_the_databases_own_and_req_ids_carry_its_namespace(tmp_path):
    j = OrderJournal(tmp_path / "j.db")
    cid, req_id = j.next_order_ids()
    assert cid == f"{j.node_id}-1" and req_id == j.identity.namespace << 32 | 1 == j.req_id_of(cid)
    j.record_sending(OrderRequest(cid, "EURUSD", 1, 0.1, 1.1, 1.1002, 1000, req_id))
    j.close()
    again = OrderJournal(tmp_path / "j.db")  # restarted on the same database: same id, next number
    assert again.identity == j.identity and again.next_order_ids() == (f"{j.node_id}-2", req_id + 1)
    fresh = OrderJournal(tmp_path / "fresh.db")  # a fresh database never reuses a req_id
    assert fresh.node_id != j.node_id and fresh.next_order_ids()[1] != req_id


def test_an_order_with_another_req_id_is_refused(tmp_path):
    j = OrderJournal(tmp_path / "j.db", "n1")
    cid, req_id = j.next_order_ids()
    with pytest.raises(ValueError, match="req_id"):
        j.record_sending(OrderRequest(cid, "EURUSD", 1, 0.1, 1.1, 1.1002, 1000, req_id + 1))
    assert j.states() == {}


def test_pending_orders_are_unresolved_and_come_back_as_sent(tmp_path):
    j = OrderJournal(tmp_path / "j.db", "n1")
    cid, req_id = j.next_order_ids()
    j.record_sending(OrderRequest(cid, "USDJPY", -1, 0.25, 150.01, 150.03, 1000, req_id))
    j.record_state(cid, "pending", BrokerReport(cid, "pending", 0.0, 0.25, 0, "sent"))
    assert j.unresolved() == [cid]
    (again,) = j.open_orders()
    assert (again.client_order_id, again.symbol, again.side, again.volume, again.price, again.req_id) \
        == (cid, "USDJPY", -1, 0.25, 150.01, req_id)
    j.record_state(cid, FILLED, BrokerReport(cid, FILLED, 150.01, 0.25, 10009, "done", deal=2**63 + 5,
                                             order=11))
    row = j.order(cid)
    assert j.unresolved() == [] and row["mt5_order"] == 11 and j.state_counts() == {FILLED: 1}
    j.close()
    assert j.state_counts() == {FILLED: 1}  # kept for a summary written after close


def test_an_older_journal_gains_the_new_columns(tmp_path):
    old = sqlite3.connect(tmp_path / "old.db")
    old.executescript("""CREATE TABLE orders (client_order_id TEXT PRIMARY KEY, node_id TEXT NOT NULL,
        seq INTEGER NOT NULL, symbol TEXT NOT NULL, side INTEGER NOT NULL, volume REAL NOT NULL,
        price REAL NOT NULL, time_msc INTEGER NOT NULL, state TEXT NOT NULL, fill_price REAL,
        fill_volume REAL, retcode INTEGER, comment TEXT, reason TEXT, created_ns INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL, UNIQUE (node_id, seq));
        INSERT INTO orders VALUES ('node-4', 'node', 4, 'EURUSD', 1, 0.1, 1.1, 1, 'sending', NULL,
        NULL, NULL, NULL, '', 1, 1);""")
    old.close()
    j = OrderJournal(tmp_path / "old.db", "node")
    assert j.next_client_order_id() == "node-5"
    assert j.open_orders()[0].req_id == 0  # its req_id was never journaled: it cannot be derived
    def settle(cid):  # what the bridge broker does for an order without a req_id
        raise LookupError(f"order {cid} has no req_id")

    outcome = j.reconcile(settle)
    assert outcome == {"still_unknown": 1} and j.states() == {"node-4": UNKNOWN}

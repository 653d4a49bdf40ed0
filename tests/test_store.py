"""The SQLite store: WAL settings, idempotent writes, bar merging, quarantine, concurrent readers."""
import math
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from flowchain_bridge.ticks import TICK_DTYPE

from flowchain.ingest.processing import compute_bars
from flowchain.ingest.synthetic import synthetic_ticks
from flowchain.store import (
    MARKET_DATA_SCHEMA,
    StoreError,
    ensure_schema,
    insert_quarantine,
    insert_ticks,
    node_identity,
    open_database,
    transaction,
    upsert_bars,
)


@pytest.fixture
def db(tmp_path):
    conn = open_database(tmp_path / "node.db")
    ensure_schema(conn)
    yield conn
    conn.close()


def count(conn, table):
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_open_database_sets_wal_normal_and_busy_timeout(tmp_path):
    conn = open_database(tmp_path / "a.db", busy_timeout_ms=1234)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1234
    assert conn.isolation_level is None


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_database(tmp_path / "nowhere" / "a.db")


def test_schema_is_idempotent_and_other_modules_add_tables(db):
    ensure_schema(db)
    ensure_schema(db, ["CREATE TABLE IF NOT EXISTS order_journal (req_id INTEGER PRIMARY KEY)"])
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"ticks", "bars", "quarantine", "order_journal"} <= tables
    assert len(MARKET_DATA_SCHEMA) >= 3


def test_ticks_round_trip_and_replay_adds_nothing(db):
    ticks = synthetic_ticks(200, seed=1)
    seqs = np.arange(10, 210)
    with transaction(db):
        first = insert_ticks(db, "EURUSD", ticks, seqs)
    with transaction(db):
        again = insert_ticks(db, "EURUSD", ticks, seqs)  # a replay: the same ticks, same seqs
    assert (first.inserted, first.ignored) == (200, 0)
    assert (again.inserted, again.ignored) == (0, 200)
    assert count(db, "ticks") == 200
    rows = db.execute("SELECT time, bid, ask, last, volume, time_msc, flags, volume_real "
                      "FROM ticks WHERE symbol = 'EURUSD' ORDER BY time_msc, seq").fetchall()
    stored = np.array([tuple(r) for r in rows], dtype=TICK_DTYPE)
    assert stored.tobytes() == ticks.tobytes()
    with transaction(db):
        other = insert_ticks(db, "GBPUSD", ticks, seqs)
    assert other.inserted == 200  # the key includes the symbol


def test_a_quote_repeated_under_a_new_seq_is_a_new_tick(db):
    ticks = synthetic_ticks(3, seed=1)
    ticks["time_msc"] = ticks["time_msc"][0]
    ticks["time"] = ticks["time"][0]
    ticks[2] = ticks[0]  # A -> B -> A within one millisecond
    with transaction(db):
        assert insert_ticks(db, "EURUSD", ticks, np.arange(5, 8)).inserted == 3
    with transaction(db):
        assert insert_ticks(db, "EURUSD", ticks, np.arange(5, 8)).ignored == 3
    rows = db.execute("SELECT bid, ask FROM ticks ORDER BY time_msc, seq").fetchall()
    assert rows == [(float(t["bid"]), float(t["ask"])) for t in ticks]
    final = db.execute("SELECT bid FROM ticks ORDER BY time_msc DESC, seq DESC LIMIT 1")
    assert final.fetchone()[0] == float(ticks["bid"][0])


def test_a_database_keyed_by_tick_content_moves_to_the_seq_key(tmp_path):
    path = tmp_path / "old.db"
    conn = open_database(path)
    old_schema = MARKET_DATA_SCHEMA[0].replace(
        "PRIMARY KEY (symbol, time_msc, seq)",
        "PRIMARY KEY (symbol, time_msc, time, bid, ask, last, volume, flags, volume_real)")
    conn.execute(old_schema)
    ticks = synthetic_ticks(50, seed=2)
    with transaction(conn):
        insert_ticks(conn, "EURUSD", ticks, np.arange(50))
    conn.close()
    conn = open_database(path)
    ensure_schema(conn)
    key = [r[1] for r in sorted(conn.execute("PRAGMA table_info(ticks)"), key=lambda r: r[5])
           if r[5]]
    assert key == ["symbol", "time_msc", "seq"]
    assert count(conn, "ticks") == 50
    assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master")} >= {"ticks", "bars"}
    assert "ticks_keyed_by_content" not in {
        r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    ensure_schema(conn)  # a second open changes nothing
    assert count(conn, "ticks") == 50
    conn.close()


def test_ticks_differing_in_one_field_are_both_kept(db):
    ticks = synthetic_ticks(2, seed=1)
    ticks[1] = ticks[0]
    ticks["flags"][1] |= 0x80  # unknown flag bits are data too
    with transaction(db):
        assert insert_ticks(db, "EURUSD", ticks, np.arange(2)).inserted == 2


def test_transaction_rolls_back_everything_on_error(db):
    ticks = synthetic_ticks(5, seed=1)
    with pytest.raises(ValueError, match="5 ticks but 4 sequence numbers"):
        with transaction(db):
            insert_ticks(db, "EURUSD", ticks[:3], np.arange(3))
            insert_ticks(db, "EURUSD", ticks, np.arange(4))
    assert count(db, "ticks") == 0


def bar(times, prices):
    return compute_bars(np.array(times, dtype=np.int64), np.array(prices, dtype=np.float64),
                        np.ones(len(times)), 1000)


def stored_bar(db):
    return db.execute("SELECT open, high, low, close, tick_count, volume, first_msc, last_msc "
                      "FROM bars WHERE symbol = 'EURUSD' AND timeframe = '1s'").fetchall()


def test_bar_upserts_merge_and_are_idempotent(db):
    partial = bar([1000, 1100], [2.0, 3.0])
    whole = bar([1000, 1100, 1500], [2.0, 3.0, 1.0])
    with transaction(db):
        upsert_bars(db, "EURUSD", "1s", partial)
    with transaction(db):
        upsert_bars(db, "EURUSD", "1s", whole)
    assert stored_bar(db) == [(2.0, 3.0, 1.0, 1.0, 3, 3.0, 1000, 1500)]
    with transaction(db):  # an older, partial emission written again changes nothing
        upsert_bars(db, "EURUSD", "1s", partial)
        upsert_bars(db, "EURUSD", "1s", whole)
    assert stored_bar(db) == [(2.0, 3.0, 1.0, 1.0, 3, 3.0, 1000, 1500)]
    assert count(db, "bars") == 1


def test_unknown_timeframe_is_refused(db):
    with pytest.raises(ValueError, match="unknown bar timeframe '5m'"):
        upsert_bars(db, "EURUSD", "5m", bar([1000], [1.0]))


def test_quarantine_keeps_the_exact_record_and_ignores_replays(db):
    ticks = synthetic_ticks(3, seed=1)
    ticks["bid"][0] = math.nan
    ticks["volume"][1] = 2**64 - 1
    ticks[2] = ticks[1]
    reasons = ["non_finite", "volume_out_of_range", "volume_out_of_range"]
    with transaction(db):
        first = insert_quarantine(db, "EURUSD", ticks, np.array([5, 6, 7]), reasons)
    with transaction(db):
        again = insert_quarantine(db, "EURUSD", ticks, np.array([5, 6, 7]), reasons)
    assert (first.inserted, again.inserted, again.ignored) == (3, 0, 3)
    rows = db.execute("SELECT seq, reason, bid, record FROM quarantine ORDER BY seq").fetchall()
    assert [r[:2] for r in rows] == list(zip([5, 6, 7], reasons, strict=False))
    assert rows[0][2] is None  # NaN is stored as NULL; the record keeps the exact bytes
    restored = np.frombuffer(b"".join(r[3] for r in rows), dtype=TICK_DTYPE)
    assert restored.tobytes() == ticks.tobytes()


def test_readonly_connection_reads_but_cannot_write(tmp_path, db):
    with transaction(db):
        insert_ticks(db, "EURUSD", synthetic_ticks(3, seed=1), np.arange(3))
    reader = open_database(tmp_path / "node.db", readonly=True)
    assert count(reader, "ticks") == 3
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.execute("DELETE FROM ticks")
    reader.close()


READ_COUNT = textwrap.dedent("""
    import sys
    from flowchain.store import open_database
    conn = open_database(sys.argv[1], readonly=True, busy_timeout_ms=200)
    print(conn.execute("SELECT count(*) FROM ticks").fetchone()[0])
""")


def read_in_other_process(path):
    done = subprocess.run([sys.executable, "-c", READ_COUNT, str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_other_process_reads_while_a_write_transaction_is_open(tmp_path, db):
    ticks = synthetic_ticks(100, seed=1)
    with transaction(db):
        insert_ticks(db, "EURUSD", ticks[:60], np.arange(60))
    with transaction(db):
        insert_ticks(db, "EURUSD", ticks[60:], np.arange(60, 100))
        # The writer holds the write lock; the reader is neither blocked nor sees the change.
        assert read_in_other_process(tmp_path / "node.db") == 60
    assert read_in_other_process(tmp_path / "node.db") == 100


WRITE_BATCHES = textwrap.dedent("""
    import os, sys
    from flowchain.ingest import DataBridge, DataProcessor, DataValidator, DatabaseService
    from flowchain.ingest import RawTickBatch
    from flowchain.ingest.synthetic import synthetic_ticks
    path, stop = sys.argv[1], sys.argv[2]
    steps = [DataBridge(), DataValidator(), DataProcessor(), DatabaseService(path)]
    ticks = synthetic_ticks(200 * 500, seed=3)
    for i in range(500):
        if os.path.exists(stop):
            break
        data = RawTickBatch("EURUSD", i * 200, ticks[i * 200:(i + 1) * 200].tobytes())
        for step in steps:
            data = step(data)
""")


def test_other_process_reads_while_the_chain_writes(tmp_path, eventually):
    path, stop = tmp_path / "live.db", tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITE_BATCHES, str(path), str(stop)],
                              stderr=subprocess.PIPE, text=True)
    try:
        eventually(lambda: path.exists() and _has_ticks(path), timeout=60,
                   message="the writer process stored its first batch")
        reader = open_database(path, readonly=True)
        seen = [count(reader, "ticks")]
        eventually(lambda: seen.append(count(reader, "ticks")) or seen[-1] > seen[0] + 400,
                   timeout=60, message="the reader saw the writer's later batches")
        assert writer.poll() is None, "the writer finished before the reader saw it write"
        assert seen == sorted(seen) and all(n % 200 == 0 for n in seen)  # whole batches only
        assert count(reader, "bars") > 0
        reader.close()
    finally:
        stop.touch()
        _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err


def _has_ticks(path):
    try:
        conn = open_database(path, readonly=True)
    except StoreError:
        return False
    try:
        return count(conn, "ticks") > 0
    except sqlite3.OperationalError:  # the schema is not created yet
        return False
    finally:
        conn.close()


def test_node_identity_is_created_with_the_database_and_kept(tmp_path):
    first = open_database(tmp_path / "a.db")
    identity = node_identity(first)
    assert identity.node_id.startswith("n") and len(identity.node_id) == 9
    assert 0 < identity.namespace < 2**32
    first.close()
    again = open_database(tmp_path / "a.db")
    assert node_identity(again) == identity  # stored in it: the same after a restart
    named = node_identity(again, "alpha")
    assert named.node_id == "alpha" and named.namespace != identity.namespace
    assert node_identity(again, "alpha") == named
    other = node_identity(open_database(tmp_path / "b.db"))  # a fresh database: a new identity
    assert other.namespace != identity.namespace and other.node_id != identity.node_id


def test_req_ids_of_two_databases_never_meet(tmp_path):
    a = node_identity(open_database(tmp_path / "a.db"), "node")
    b = node_identity(open_database(tmp_path / "b.db"), "node")  # the same configured id
    assert {a.req_id(n) for n in range(1, 1000)}.isdisjoint(b.req_id(n) for n in range(1, 1000))
    assert a.comment(a.req_id(3)).startswith(a.comment_prefix)
    assert not a.comment(a.req_id(3)).startswith(b.comment_prefix)


@pytest.mark.parametrize("bad", ["", "a-b", "x" * 33, "nœud", "a b"])
def test_bad_node_ids_are_refused_by_name(db, bad):
    with pytest.raises(ValueError, match="node id"):
        node_identity(db, bad)

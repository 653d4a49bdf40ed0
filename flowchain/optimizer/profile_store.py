"""Step profiles in the history SQLite file: the ``step_profiles`` table, its writer and reader.

One row per step of a sampled execution (:mod:`flowchain.optimizer.profiling`): wall time,
thread CPU time, bytes allocated, the stable hash of the step's input and its item count.
"""
from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

PROFILE_SCHEMA = """
CREATE TABLE IF NOT EXISTS step_profiles (
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, chain TEXT NOT NULL, chain_id TEXT NOT NULL,
    execution_seq INTEGER NOT NULL, step TEXT NOT NULL, step_index INTEGER NOT NULL,
    start_epoch_ns INTEGER NOT NULL, wall_ns INTEGER NOT NULL, cpu_ns INTEGER NOT NULL,
    alloc_bytes INTEGER NOT NULL, input_hash TEXT NOT NULL, items INTEGER)
"""
"""The table (created by :func:`write_profiles` when missing)."""

PROFILE_INDEX = ("CREATE INDEX IF NOT EXISTS step_profiles_by_chain "
                 "ON step_profiles (chain, chain_id, execution_seq)")

_COLUMNS = ("run_id", "chain", "chain_id", "execution_seq", "step", "step_index",
            "start_epoch_ns", "wall_ns", "cpu_ns", "alloc_bytes", "input_hash", "items")


@dataclass(frozen=True, slots=True)
class StepProfile:
    """One step of one sampled execution.

    ``cpu_ns`` is the thread's CPU time during the step (the clock's own reading cost taken
    off); ``alloc_bytes`` the bytes the step's thread requested from CPython's allocators (the
    engine's allocation counter: a volume, frees not subtracted);
    ``input_hash`` 16 hex digits (:func:`flowchain.optimizer.input_hash.input_hash`, a ``?``
    token for inputs it cannot read); ``items`` the input's length when it is a sequence, else
    None. ``run_id`` names the run that wrote the row ("" before it is written).
    """

    chain: str
    chain_id: str
    execution_seq: int
    step: str
    step_index: int
    start_epoch_ns: int
    wall_ns: int
    cpu_ns: int
    alloc_bytes: int
    input_hash: str
    items: int | None
    run_id: str = ""


def create_profile_table(conn: sqlite3.Connection) -> None:
    """Create ``step_profiles`` and its index when missing."""
    conn.execute(PROFILE_SCHEMA)
    conn.execute(PROFILE_INDEX)


def insert_profiles(conn: sqlite3.Connection, run_id: str,
                    profiles: Iterable[StepProfile]) -> int:
    """Insert ``profiles`` under ``run_id`` in the caller's transaction (the table must
    exist: :func:`create_profile_table`); return the rows written."""
    rows = [(run_id, p.chain, p.chain_id, p.execution_seq, p.step, p.step_index,
             p.start_epoch_ns, p.wall_ns, p.cpu_ns, p.alloc_bytes, p.input_hash, p.items)
            for p in profiles]
    conn.executemany(
        f"INSERT INTO step_profiles ({', '.join(_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(_COLUMNS))})", rows)
    return len(rows)


def write_profiles(conn: sqlite3.Connection, run_id: str,
                   profiles: Iterable[StepProfile]) -> int:
    """Create the table when missing and insert ``profiles`` under ``run_id``, in one
    transaction (the caller's, when one is open); return the rows written.

    Raises
    ------
    sqlite3.Error
        When the database rejects the write; nothing of it is kept then.
    """
    if conn.in_transaction:
        create_profile_table(conn)
        return insert_profiles(conn, run_id, profiles)
    conn.execute("BEGIN IMMEDIATE")
    try:
        create_profile_table(conn)
        written = insert_profiles(conn, run_id, profiles)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return written


def load_profiles(db_path: str | os.PathLike, chain: str) -> list[StepProfile]:
    """Return the stored profiles of a chain (a name: every version; an id: that version),
    ordered by run, execution and step.

    Raises
    ------
    FileNotFoundError
        When ``db_path`` does not exist (SQLite would create an empty file).
    """
    if not os.path.exists(db_path):
        raise FileNotFoundError(f"no history database at {os.fspath(db_path)!r}")
    conn = sqlite3.connect(f"file:{os.fspath(db_path)}?mode=ro", uri=True)
    try:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                              "name = 'step_profiles'").fetchone()
        if not exists:
            return []
        rows = conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM step_profiles WHERE chain = ? OR chain_id = ? "
            "ORDER BY id", (chain, chain)).fetchall()
    finally:
        conn.close()
    return [StepProfile(*row[1:], run_id=row[0]) for row in rows]

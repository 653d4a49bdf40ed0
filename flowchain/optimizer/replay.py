"""Replay a recorded execution: its recorded input, on the chain version it ran on (or the
current one), and compare what happens with what was recorded.

Execution ids (``<chain_id>#<seq>``) number a runner's executions from 0 in each process, so
the same id recurs in every run recorded into one database; a recorded input is named uniquely
by its *replay id*, ``<chain_id>#<seq>@<run_id>`` (any unique prefix of the run id will do).
:func:`find_recorded` accepts either and refuses an ambiguous one, listing the candidates.

The version: a chain's id is the hash of its content, so the recorded ``chain_id`` names
exactly the steps the input ran through. :func:`version_to_run` takes that version from a
chains file when the file has it, else from the copy history keeps (``chain_definitions``),
else says which version is needed. With ``current=True`` it takes the file's version of the
chain's name instead, to see whether a change fixed the failure.

An input recorded at step ``k > 0`` (the node records the failing step's input: the engine
keeps that one, not the chain's) is replayed from that step on: the chain's steps ``k..``.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flowchain.chain import ChainDefinition, load_chains
from flowchain.errors import ChainStepError, FlowChainError
from flowchain.optimizer.recorded_inputs import (
    _COLUMNS,
    RecordedInput,
    has_recorded_inputs,
    open_for_reading,
    recorded_from_row,
)

DatabasePath = str | Path

REPRODUCED, DIFFERS = 0, 1
"""Exit codes of ``flowchain replay``: as asked (the failure reproduced; with ``--current``:
fixed), not as asked; 2 is bad input (:class:`ReplayError`)."""


class ReplayError(FlowChainError):
    """The replay cannot start: unknown or ambiguous id, no recorded input, no such version."""


@dataclass(frozen=True)
class Outcome:
    """What an execution did: succeeded, or failed at ``step`` with an exception."""

    succeeded: bool
    step: str | None = None
    exception_type: str | None = None
    message: str | None = None
    traceback: str | None = None

    def same_as(self, other: Outcome) -> bool:
        """The same result: both succeeded, or both failed at the same step with the same
        exception type and message."""
        return (self.succeeded, self.step, self.exception_type, self.message) == \
            (other.succeeded, other.step, other.exception_type, other.message)

    def describe(self) -> str:
        if self.succeeded:
            return "succeeded"
        return f"failed at step {self.step!r}: {self.exception_type}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"succeeded": self.succeeded, "step": self.step,
                "exception_type": self.exception_type, "message": self.message}


def parse_replay_id(text: str) -> tuple[str, str | None]:
    """Split ``<chain_id>#<seq>[@<run_id prefix>]`` into the execution id and the run prefix.

    Raises
    ------
    ReplayError
        When ``text`` is not of that form.
    """
    head, sep, tail = text.strip().rpartition("#")
    seq, _, run = tail.partition("@")
    if not sep or not head or not seq.isdigit():
        raise ReplayError(f"{text!r} is not an execution id: give <chain_id>#<seq> or "
                          "<chain_id>#<seq>@<run_id> as flowchain run or flowchain report "
                          "printed it")
    return f"{head}#{int(seq)}", run or None


def find_recorded(db_path: DatabasePath, ref: str) -> tuple[RecordedInput, Outcome | None]:
    """Return the recorded input named by ``ref`` and the recorded outcome of its execution
    (None when history has no execution record for it).

    Raises
    ------
    ReplayError
        A missing file, a database without recorded inputs, an unknown or ambiguous id, an
        input recorded as unserializable or one that cannot be rebuilt here.
    """
    from flowchain.optimizer.recorded_inputs import InputNotDecodable
    from flowchain.store import StoreError

    execution_id, run = parse_replay_id(ref)
    try:
        conn = open_for_reading(db_path)
    except (FileNotFoundError, StoreError) as exc:
        raise ReplayError(str(exc)) from None
    try:
        if not has_recorded_inputs(conn):
            raise ReplayError(
                f"{str(db_path)!r} has no recorded inputs (no recorded_inputs table): record "
                "some with flowchain run FILE CHAIN --inputs FILE.jsonl --db PATH, or run the "
                "node with [history] enabled")
        rows = conn.execute(f"SELECT {_COLUMNS} FROM recorded_inputs WHERE execution_id = ? "
                            "AND run_id LIKE ? ORDER BY start_epoch_ns, id",
                            (execution_id, _like_prefix(run))).fetchall()
        if not rows:
            raise ReplayError(_not_found(conn, execution_id, run, db_path))
        if len(rows) > 1:
            listed = "\n".join(f"  {r[1]}@{r[0]}  ({r[4]}, tenant {r[7]})" for r in rows[:10])
            raise ReplayError(
                f"{ref} was recorded in {len(rows)} runs (execution ids restart in every "
                f"process); name one with its run id:\n{listed}")
        row = rows[0]
        if row[10] is not None:
            raise ReplayError(f"the input of {row[1]}@{row[0]} has no recorded form, so it "
                              f"cannot be replayed: {row[10]}")
        try:
            recorded = recorded_from_row(row)
        except InputNotDecodable as exc:
            raise ReplayError(str(exc)) from None
        outcome = _recorded_outcome(conn, recorded)
    except sqlite3.Error as exc:
        raise ReplayError(f"cannot read {str(db_path)!r}: {exc}") from None
    finally:
        conn.close()
    return recorded, outcome


def _like_prefix(run: str | None) -> str:
    if run is None:
        return "%"
    if not run.isalnum():
        raise ReplayError(f"run id {run!r} must be letters and digits (a run id or its prefix)")
    return run + "%"


def _not_found(conn: sqlite3.Connection, execution_id: str, run: str | None,
               db_path: DatabasePath) -> str:
    where = f" of run {run}" if run else ""
    known = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'execution_records'")
    if known.fetchone() and conn.execute(
            "SELECT 1 FROM execution_records WHERE execution_id = ? AND run_id LIKE ?",
            (execution_id, _like_prefix(run))).fetchone():
        return (f"execution {execution_id}{where} is in the history of {str(db_path)!r}, but "
                "its input was not recorded (a sampled success without --record-inputs, or a "
                "run from before inputs were recorded)")
    recent = conn.execute("SELECT execution_id, run_id FROM recorded_inputs "
                          "ORDER BY start_epoch_ns DESC, id DESC LIMIT 5").fetchall()
    listed = "".join(f"\n  {e}@{r}" for e, r in recent)
    return (f"no recorded input for execution {execution_id}{where} in {str(db_path)!r}"
            + (f"; the latest recorded are:{listed}" if recent else "; it has none"))


def _recorded_outcome(conn: sqlite3.Connection, recorded: RecordedInput) -> Outcome | None:
    if recorded.status == "sampled":
        return Outcome(True)
    row = conn.execute("SELECT record FROM execution_records WHERE run_id = ? AND "
                       "execution_id = ? AND tenant = ?",
                       (recorded.run_id, recorded.execution_id, recorded.tenant)).fetchone()
    if row is None:
        return None
    failure = json.loads(row[0]).get("failure") or {}
    return Outcome(False, failure.get("step"), failure.get("exception_type"),
                   failure.get("message"), failure.get("traceback"))


def recorded_definition(db_path: DatabasePath, chain_id: str) -> ChainDefinition | None:
    """The chain version history keeps for ``chain_id`` (None when it has none)."""
    conn = open_for_reading(db_path)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'chain_definitions'"
                            ).fetchone():
            return None
        row = conn.execute("SELECT definition FROM chain_definitions WHERE chain_id = ?",
                           (chain_id,)).fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    for definition in load_chains(row[0], source=f"{db_path} (chain_definitions)"):
        if definition.chain_id == chain_id:
            return definition
    return None


def version_to_run(recorded: RecordedInput, db_path: DatabasePath,
                   file_chains: list[ChainDefinition] | None, file_label: str, *,
                   current: bool) -> tuple[ChainDefinition, str]:
    """Return the chain version to replay on and where it came from.

    Raises
    ------
    ReplayError
        When the needed version is in neither the file nor history (the message names it),
        or ``current`` is asked without a file that has the chain.
    """
    by_name = [d for d in file_chains or () if d.name == recorded.chain]
    if current:
        if not by_name:
            what = f"{file_label} has no chain {recorded.chain!r}" if file_chains is not None \
                else "--current needs the chains file with the current version: --chains FILE"
            raise ReplayError(what)
        return by_name[0], file_label
    for d in file_chains or ():
        if d.chain_id == recorded.chain_id:
            return d, file_label
    kept = recorded_definition(db_path, recorded.chain_id)
    if kept is not None:
        return kept, "the history database"
    have = f"; {file_label} has {by_name[0].chain_id}" if by_name else ""
    raise ReplayError(
        f"execution {recorded.execution_id} ran on version {recorded.chain_id}, which the "
        f"history database does not keep{have}: pass --chains with the file of that version "
        "(its content hash must be the same), or --current to run the current version")


def steps_from(definition: ChainDefinition, recorded: RecordedInput,
               recorded_version: ChainDefinition | None) -> ChainDefinition:
    """The part of ``definition`` the recorded input enters: all of it for a chain input, else
    from the step the input was recorded at (by its name in the recorded version).

    Raises
    ------
    ReplayError
        When ``definition`` has no step of that name.
    """
    if recorded.step_index == 0:
        return definition
    names = recorded_version.step_names if recorded_version is not None else None
    if names is None or recorded.step_index >= len(names):
        raise ReplayError(f"the input of {recorded.execution_id} is step "
                          f"{recorded.step_index}'s, and the recorded version "
                          f"{recorded.chain_id} is not available to name that step")
    name = names[recorded.step_index]
    if name not in definition.step_names:
        raise ReplayError(f"the recorded input is the input of step {name!r}, which "
                          f"{definition.chain_id} does not have; it cannot run there")
    index = definition.step_names.index(name)
    return replace(definition, steps=definition.steps[index:])


def run_once(registry: Any, definition: ChainDefinition, value: Any,
             tenant: str = "default") -> Outcome:
    """Execute ``definition`` (registered in ``registry``) once on ``value``."""
    from flowchain.context import UserContext

    chain_id = registry.register_chain(definition)
    runner = registry.runner(chain_id)
    context = UserContext(tenant_id=tenant) if tenant != "default" else None
    try:
        if runner.has_async:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(runner.run_async(value, context))
            finally:
                loop.close()
        else:
            runner.run(value, context)
    except ChainStepError as exc:
        failure = exc.execution.failure
        assert failure is not None
        return Outcome(False, failure.step, failure.exception_type, failure.message,
                       failure.traceback)
    return Outcome(True)

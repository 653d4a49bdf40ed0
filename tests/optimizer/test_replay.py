"""``flowchain replay``: a recorded failure runs again on the version it ran on and fails the
same way, or the current version fixes it; bad ids, databases and inputs are refused (exit 2)."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from replay_fixtures import invoke, record, write_workdir

from flowchain.chain import load_chains_file
from flowchain.errors import ChainStepError
from flowchain.observe.history import HistoryWriter
from flowchain.optimizer.recorded_inputs import ensure_recorded_inputs_schema, input_row, insert_rows
from flowchain.optimizer.replay import ReplayError, parse_replay_id
from flowchain.registry import ChainRegistry
from flowchain.store import open_database


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    return write_workdir(tmp_path, monkeypatch)


def replay(*args: str) -> tuple[int, dict]:
    result = invoke("replay", *args, "--import", "replay_test_components", "--json")
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def refused(*args: str) -> str:
    result = invoke("replay", *args, "--import", "replay_test_components")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return " ".join(result.stderr.split())


def test_a_recorded_failure_is_reproduced_on_its_version(workdir) -> None:
    db = workdir / "h.db"
    s = record(db)
    first = s["failed_executions"][0]  # [1, -5]: ValueError at check
    code, r = replay(first, "--db", str(db))
    assert code == 0 and r["verdict"] == "reproduced: the same failure"
    assert r["recorded"] == r["replayed"] == {
        "succeeded": False, "step": "check", "exception_type": "ValueError",
        "message": "negative total -4"}
    assert r["ran_on"] == s["chain_id"] and r["source"] == "the history database"
    # the text form says the same
    text = invoke("replay", first, "--db", str(db), "--import", "replay_test_components")
    assert text.exit_code == 0
    flat = " ".join(text.stdout.split())
    assert "replayed: failed at step 'check': ValueError: negative total -4" in flat
    assert "input: [1, -5]" in flat and "reproduced" in flat


def test_current_version_fixes_it_or_still_fails(workdir) -> None:
    db = workdir / "h.db"
    failed = record(db)["failed_executions"]
    code, r = replay(failed[0], "--db", str(db), "--chains", "v2.yaml", "--current")
    assert code == 0 and r["replayed"]["succeeded"] and r["verdict"].startswith("fixed")
    assert r["ran_on"] != r["chain_id"] and r["source"] == "v2.yaml"
    code, r = replay(failed[0], "--db", str(db), "--chains", "v1.yaml", "--current")
    assert code == 1 and r["verdict"] == "still fails the same way"
    # the TypeError at the first step is not fixed by v2 either
    code, r = replay(failed[1], "--db", str(db), "--chains", "v2.yaml", "--current")
    assert code == 1 and r["replayed"]["exception_type"] == "TypeError"
    assert "--chains FILE" in refused(failed[0], "--db", str(db), "--current")


def test_an_outcome_that_changed_is_not_reproduced(workdir) -> None:
    import replay_test_components

    db = workdir / "h.db"
    failed = record(db)["failed_executions"]
    replay_test_components.FAIL_ON_NEGATIVE = False
    try:
        code, r = replay(failed[0], "--db", str(db))
    finally:
        replay_test_components.FAIL_ON_NEGATIVE = True
    assert code == 1 and r["replayed"]["succeeded"] and r["verdict"].startswith("not reproduced")


def test_a_sampled_success_replays_as_a_success(workdir) -> None:
    db = workdir / "h.db"
    record(db, "--record-inputs", "1.0")
    conn = sqlite3.connect(db)
    execution, run = conn.execute("SELECT execution_id, run_id FROM recorded_inputs "
                                  "WHERE status = 'sampled' ORDER BY id").fetchone()
    conn.close()
    code, r = replay(f"{execution}@{run[:8]}", "--db", str(db))
    assert code == 0 and r["status"] == "sampled" and r["verdict"] == "reproduced"


def test_the_version_it_ran_on_comes_from_the_file_or_history_or_is_named(workdir) -> None:
    db = workdir / "h.db"
    s = record(db)
    failed = s["failed_executions"][0]
    code, r = replay(failed, "--db", str(db), "--chains", "v1.yaml")
    assert code == 0 and r["source"] == "v1.yaml"
    code, r = replay(failed, "--db", str(db), "--chains", "v2.yaml")  # not that version: history
    assert code == 0 and r["source"] == "the history database" and r["ran_on"] == s["chain_id"]
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM chain_definitions")
    conn.commit()
    conn.close()
    v2 = load_chains_file(workdir / "v2.yaml")[0].chain_id
    message = refused(failed, "--db", str(db), "--chains", "v2.yaml")
    assert f"ran on version {s['chain_id']}" in message and f"v2.yaml has {v2}" in message
    code, r = replay(failed, "--db", str(db), "--chains", "v1.yaml")
    assert code == 0


def test_execution_ids_repeat_across_processes_and_replay_ids_do_not(workdir) -> None:
    db = workdir / "h.db"
    env = {**os.environ, "PYTHONPATH": str(workdir)}
    runs = []
    for _ in range(2):  # two processes recording into one file, as two real runs would
        proc = subprocess.run(
            [sys.executable, "-m", "flowchain.cli", "run", "v1.yaml", "Totals", "--import",
             "replay_test_components", "--inputs", "inputs.jsonl", "--db", str(db), "--json"],
            cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc.stderr
        runs.append(json.loads(proc.stdout))
    bare = [[x.rsplit("@", 1)[0] for x in r["failed_executions"]] for r in runs]
    assert bare[0] == bare[1]  # each process numbers its executions from 0
    assert set(runs[0]["failed_executions"]).isdisjoint(runs[1]["failed_executions"])
    message = refused(bare[0][0], "--db", str(db))
    assert "was recorded in 2 runs" in message
    assert all(r["failed_executions"][0] in message for r in runs)
    code, r = replay(runs[1]["failed_executions"][0], "--db", str(db))
    assert code == 0 and r["execution"] == runs[1]["failed_executions"][0]
    code, _ = replay(f"{bare[0][0]}@{runs[0]['run_id'][:10]}", "--db", str(db))
    assert code == 0
    # another process without the components: the version cannot be built there, said so
    proc = subprocess.run([sys.executable, "-m", "flowchain.cli", "replay",
                           runs[0]["failed_executions"][0], "--db", str(db)],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
    message = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "unknown component 'replay_test.Strict'" in message
    assert "--import MODULE" in message and "Traceback" not in message


def test_bad_ids_databases_and_inputs_are_refused(workdir) -> None:
    db = workdir / "h.db"
    s = record(db)
    chain_id = s["chain_id"]
    assert "no recorded input for execution" in refused(f"{chain_id}#999", "--db", str(db))
    assert "is not an execution id" in refused("nonsense", "--db", str(db))
    assert "no history database" in refused(f"{chain_id}#1", "--db", "missing.db")
    empty = workdir / "empty.db"
    sqlite3.connect(empty).execute("CREATE TABLE t (x)").connection.close()
    assert "has no recorded inputs" in refused(f"{chain_id}#1", "--db", str(empty))
    (workdir / "text.db").write_text("this is not a database at all " * 50)
    assert "not a readable SQLite database" in refused(f"{chain_id}#1", "--db", "text.db")
    # a failure in history whose input was not recorded (a database from before inputs were)
    gone = s["failed_executions"][0]
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM recorded_inputs WHERE execution_id = ?", (gone.rsplit("@", 1)[0],))
    conn.commit()
    conn.close()
    assert "input was not recorded" in refused(gone, "--db", str(db))
    assert "letters and digits" in refused(f"{chain_id}#1@%", "--db", str(db))

    conn = open_database(db)
    ensure_recorded_inputs_schema(conn)
    insert_rows(conn, [
        input_row(run_id="r9", execution_id=f"{chain_id}#50", chain="Totals",
                  chain_id=chain_id, status="failed", start_epoch_ns=1, value=object()),
        input_row(run_id="r9", execution_id=f"{chain_id}#51", chain="Totals",
                  chain_id=chain_id, status="failed", start_epoch_ns=2, value=[1])])
    conn.execute("UPDATE recorded_inputs SET payload = ? WHERE execution_id = ?",
                 (b'{"$t":"dataclass","cls":"not_imported_mod:X","fields":{}}',
                  f"{chain_id}#51"))
    conn.close()
    message = refused(f"{chain_id}#50", "--db", str(db))
    assert "has no recorded form" in message and "builtins.object" in message
    assert "--import not_imported_mod" in refused(f"{chain_id}#51", "--db", str(db))


def test_a_node_failure_replays_from_the_failing_step(workdir) -> None:
    """The node's history writer records the failing step's input (the engine keeps that one)
    and the chain version; replay runs the chain from that step, with no chains file."""
    import replay_test_components  # noqa: F401

    definition = load_chains_file(workdir / "v1.yaml")[0]
    registry = ChainRegistry()
    registry.register_chain(definition)
    db = workdir / "node.db"
    writer = HistoryWriter(registry, db)
    runner = registry.runner(definition.chain_id)
    runner.run([1, 2])
    with pytest.raises(ChainStepError):
        runner.run([2, -9])
    writer.close()
    assert writer.counters["inputs"] == 1 and writer.counters["unserializable_inputs"] == 0
    conn = sqlite3.connect(db)
    execution, run, step_index = conn.execute(
        "SELECT execution_id, run_id, step_index FROM recorded_inputs").fetchone()
    conn.close()
    assert (execution, step_index) == (f"{definition.chain_id}#1", 1)
    code, r = replay(f"{execution}@{run}", "--db", str(db))
    assert code == 0 and r["step_index"] == 1
    assert r["replayed"]["message"] == "negative total -7"
    code, r = replay(execution, "--db", str(db), "--chains", "v2.yaml", "--current")
    assert code == 0 and r["verdict"].startswith("fixed")


def test_parse_replay_id() -> None:
    assert parse_replay_id("a@1f#3") == ("a@1f#3", None)
    assert parse_replay_id(" a@1f#03@abc ") == ("a@1f#3", "abc")
    for bad in ("a@1f", "#3", "a#x", "a#3@"):
        if bad == "a#3@":
            assert parse_replay_id(bad) == ("a#3", None)
            continue
        with pytest.raises(ReplayError):
            parse_replay_id(bad)


def test_the_engine_chains_inputs_record_and_replay(workdir, monkeypatch) -> None:
    """The MT5 -> database chain's RawTickBatch (a structured tick array) and the decision
    chain's DecisionContext (its feature state) are recorded and replayed as they ran."""
    from flowchain.chains import TRADING_NODE_YAML

    monkeypatch.setenv("FLOWCHAIN_DB", str(workdir / "ticks.db"))
    ticks = [{"time_msc": 1_767_225_600_000 + 250 * i, "bid": 1.085 + 1e-5 * i,
              "ask": 1.08508 + 1e-5 * i} for i in range(12)]
    (workdir / "ticks.jsonl").write_text(json.dumps({"symbol": "EURUSD", "ticks": ticks}) + "\n")
    db = workdir / "engine.db"
    for chain, rate in (("MT5_To_Database_Chain", "1.0"), ("AI_Decision_Chain", "0.25")):
        result = invoke("run", str(TRADING_NODE_YAML), chain, "--inputs", "ticks.jsonl",
                        "--db", str(db), "--record-inputs", rate, "--json")
        assert result.exit_code == 0, result.output
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT chain, execution_id, run_id FROM recorded_inputs "
                        "WHERE unserializable IS NULL ORDER BY id").fetchall()
    conn.close()
    assert [r[0] for r in rows] == ["MT5_To_Database_Chain"] + ["AI_Decision_Chain"] * 3
    for _, execution, run in rows[:2]:
        code, r = replay(f"{execution}@{run}", "--db", str(db))
        assert code == 0 and r["replayed"]["succeeded"], r


def test_a_step_failing_on_every_execution_records_a_bounded_number_of_inputs(workdir) -> None:
    import replay_test_components  # noqa: F401

    definition = load_chains_file(workdir / "v1.yaml")[0]
    registry = ChainRegistry()
    registry.register_chain(definition)
    writer = HistoryWriter(registry, workdir / "many.db", failed_inputs_per_interval=3)
    runner = registry.runner(definition.chain_id)
    for i in range(10):
        with pytest.raises(ChainStepError):
            runner.run([-1 - i])
    writer.close()
    assert writer.counters["inputs"] == 10 and writer.counters["unserializable_inputs"] == 7
    conn = sqlite3.connect(workdir / "many.db")
    kept = conn.execute("SELECT count(*) FROM recorded_inputs WHERE payload IS NOT NULL")
    reasons = {r[0] for r in conn.execute("SELECT unserializable FROM recorded_inputs "
                                          "WHERE payload IS NULL")}
    assert kept.fetchone()[0] == 3
    assert reasons == {"not recorded: the first 3 failed inputs of this chain in this history "
                       "interval were"}
    conn.close()


def test_a_coroutine_chain_records_and_replays(workdir) -> None:
    (workdir / "halves.jsonl").write_text("[2, 2]\n[1, -1]\n[8]\n")
    result = invoke("run", "async.yaml", "Halves", "--import", "replay_test_components",
                    "--inputs", "halves.jsonl", "--db", "a.db", "--json")
    assert result.exit_code == 1, result.output
    s = json.loads(result.stdout)
    assert (s["succeeded"], s["failed"]) == (2, 1)
    code, r = replay(s["failed_executions"][0], "--db", "a.db")
    assert code == 0 and r["replayed"]["exception_type"] == "ZeroDivisionError"
    assert r["replayed"]["step"] == "half"

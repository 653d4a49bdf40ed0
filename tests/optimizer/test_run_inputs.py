"""``flowchain run FILE CHAIN --inputs FILE.jsonl --db PATH``: every line runs, history is
recorded into a real SQLite file, and the summary's figures are what the file holds."""
from __future__ import annotations

import json
import sqlite3

import pytest
from replay_fixtures import LINES, invoke, record, write_workdir

from flowchain.chain import load_chains_file
from flowchain.observe.history import HistoryReader, HistoryWriter
from flowchain.optimizer.input_recording import RecordingRun
from flowchain.optimizer.recorded_inputs import load_inputs
from flowchain.registry import ChainRegistry


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    return write_workdir(tmp_path, monkeypatch)


def test_the_summary_equals_what_is_stored(workdir) -> None:
    db = workdir / "history.db"
    s = record(db, "--record-inputs", "1.0")
    assert (s["lines"], s["executions"], s["succeeded"], s["failed"]) == (6, 6, 3, 3)
    assert s["failures"] == [{"step": "check", "exception_type": "ValueError", "count": 2},
                             {"step": "total", "exception_type": "TypeError", "count": 1}]
    conn = sqlite3.connect(db)
    chain_row = conn.execute(
        "SELECT sum(count), sum(errors) FROM latency_intervals WHERE step = '' AND run_id = ?",
        (s["run_id"],)).fetchone()
    assert chain_row == (s["succeeded"], s["failed"])
    by_status = dict(conn.execute("SELECT status, count(*) FROM execution_records "
                                  "WHERE run_id = ? GROUP BY status", (s["run_id"],)))
    assert by_status == {"failed": s["failed"], "succeeded": s["succeeded"]}
    recorded = dict(conn.execute("SELECT status, count(*) FROM recorded_inputs WHERE run_id = ? "
                                 "GROUP BY status", (s["run_id"],)))
    assert recorded == {"failed": s["recorded_inputs"]["failed"],
                        "sampled": s["recorded_inputs"]["sampled"]} == {"failed": 3, "sampled": 3}
    defined = conn.execute("SELECT chain_id FROM chain_definitions").fetchall()
    assert defined == [(s["chain_id"],)]
    conn.close()
    with HistoryReader(db) as reader:
        whole = reader.histogram("Totals")
    assert (whole.percentile(50.0), whole.percentile(99.0)) == (s["p50_ns"], s["p99_ns"])

    inputs = load_inputs(db, "Totals")
    assert [r.value for r in inputs] == LINES  # every line, as it was, in order
    failed = load_inputs(db, s["chain_id"], status="failed")
    assert [r.replay_id for r in failed] == s["failed_executions"]
    assert [r.value for r in failed] == [[1, -5], "oops", [-1, -1]]
    assert all(r.step_index == 0 for r in inputs)


def test_text_summary_and_exit_codes(workdir) -> None:
    result = invoke("run", "v1.yaml", "Totals", "--import", "replay_test_components",
                    "--inputs", "inputs.jsonl", "--db", "h.db")
    assert result.exit_code == 1  # some executions failed: all recorded
    text = " ".join(result.stdout.split())
    assert "6 lines, 6 executions: 3 succeeded, 3 failed" in text
    assert "inputs of 3 failed and 0 sampled executions" in text
    assert "flowchain replay EXECUTION_ID --db h.db" in text
    (workdir / "good.jsonl").write_text("[1]\n\n[2, 3]\n")
    result = invoke("run", "v2.yaml", "Totals", "--import", "replay_test_components",
                    "--inputs", "good.jsonl", "--db", "h.db", "--json")
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    assert (s["lines"], s["executions"], s["failed"]) == (2, 2, 0)


def test_a_bad_line_is_named_and_nothing_runs(workdir) -> None:
    (workdir / "bad.jsonl").write_bytes(b'[1, 2]\n{"broken": \n[3]\n\xff\n')
    db = workdir / "bad.db"
    result = invoke("run", "v1.yaml", "Totals", "--import", "replay_test_components",
                    "--inputs", "bad.jsonl", "--db", str(db))
    assert result.exit_code == 2
    err = " ".join(result.stderr.split())
    assert "bad.jsonl:line 2: not valid JSON: Expecting value at column 12" in err
    assert "2 bad line(s)" in err and "nothing was run" in err and "--skip-bad-lines" in err
    assert "Traceback" not in result.output
    assert not db.exists()

    result = invoke("run", "v1.yaml", "Totals", "--import", "replay_test_components",
                    "--inputs", "bad.jsonl", "--db", str(db), "--skip-bad-lines", "--json")
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    assert s["skipped_lines"] == [2, 4] and s["executions"] == 2
    assert "skipped: bad.jsonl:line 4: not UTF-8 text" in " ".join(result.stderr.split())


def test_options_that_do_not_fit_are_refused(workdir) -> None:
    base = ("run", "v1.yaml", "Totals", "--import", "replay_test_components")
    no_db = invoke(*base, "--inputs", "inputs.jsonl")
    assert no_db.exit_code == 2 and "--db PATH" in no_db.stderr
    both = invoke(*base, "--inputs", "inputs.jsonl", "--input", "[1]", "--db", "x.db")
    assert both.exit_code == 2 and "not both" in both.stderr
    alone = invoke(*base, "--input", "[1]", "--db", "x.db")
    assert alone.exit_code == 2 and "--db goes with --inputs" in alone.stderr
    rate = invoke(*base, "--inputs", "inputs.jsonl", "--db", "x.db", "--record-inputs", "2")
    assert rate.exit_code == 2 and "--record-inputs" in rate.output
    (workdir / "blank.jsonl").write_text("\n  \n")
    blank = invoke(*base, "--inputs", "blank.jsonl", "--db", "x.db")
    assert blank.exit_code == 2 and "no input to run" in blank.stderr
    unwritable = invoke(*base, "--inputs", "inputs.jsonl", "--db", "no/such/dir/x.db")
    assert unwritable.exit_code == 2 and "cannot record into" in unwritable.stderr
    assert not (workdir / "x.db").exists()


def test_sampling_records_exactly_the_rate(workdir) -> None:
    (workdir / "many.jsonl").write_text("[1]\n" * 40)
    result = invoke("run", "v1.yaml", "Totals", "--import", "replay_test_components",
                    "--inputs", "many.jsonl", "--db", "s.db", "--record-inputs", "0.25", "--json")
    s = json.loads(result.stdout)
    assert s["recorded_inputs"] == {"failed": 0, "sampled": 10, "unserializable": 0}
    conn = sqlite3.connect(workdir / "s.db")
    # the sampled records and the sampled inputs are the same executions
    records = {r[0] for r in conn.execute(
        "SELECT execution_id FROM execution_records WHERE sampled = 1")}
    inputs = {r[0] for r in conn.execute("SELECT execution_id FROM recorded_inputs")}
    conn.close()
    assert records == inputs and len(inputs) == 10


def test_an_input_that_cannot_be_recorded_is_stored_as_its_reason(workdir) -> None:
    import replay_test_components  # noqa: F401  (registers the components)

    definition = load_chains_file(workdir / "v1.yaml")[0]
    registry = ChainRegistry()
    registry.register_chain(definition)
    writer = HistoryWriter(registry, workdir / "u.db", record_failed_inputs=False)
    run = RecordingRun(registry, definition, writer, record_rate=0.0)
    assert run.run(object()) is not None  # Total raises TypeError on it
    assert run.run([1]) is None
    totals = run.finish()
    assert (totals.failed, totals.recorded_failed, totals.unserializable) == (1, 1, 1)
    rows = load_inputs(workdir / "u.db", "Totals", include_unserializable=True)
    assert len(rows) == 1 and rows[0].value is None
    assert "builtins.object" in rows[0].unserializable
    assert load_inputs(workdir / "u.db", "Totals") == []


def test_profiles_are_stored_with_the_run(workdir) -> None:
    from flowchain.optimizer.profile_store import load_profiles

    s = record(workdir / "p.db", "--profile")
    assert s["profile_rate"] == 1.0 and s["profiles"] > 0
    stored = load_profiles(workdir / "p.db", s["chain_id"])
    assert len(stored) == s["profiles"]
    assert {p.run_id for p in stored} == {s["run_id"]}
    assert {p.step for p in stored} <= {"total", "check", "label"}
    sampled = record(workdir / "q.db", "--profile-rate", "0.5")
    assert 0 < sampled["profiles"] < s["profiles"]
    both = invoke("run", "v1.yaml", "Totals", "--import", "replay_test_components", "--inputs",
                  "inputs.jsonl", "--db", "r.db", "--profile", "--profile-rate", "0.5")
    assert both.exit_code == 2 and "not both" in both.stderr
    alone = invoke("run", "v1.yaml", "Totals", "--import", "replay_test_components",
                   "--input", "[1]", "--profile")
    assert alone.exit_code == 2 and "--profile goes with --inputs" in alone.stderr

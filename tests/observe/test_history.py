"""History: interval HDR histograms in SQLite, exact on merge; failures and samples persisted."""
import sqlite3

import pytest

from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ComponentRegistry, UserContext
from flowchain.observe.history import CHAIN_ROW, HistoryReader, HistoryWriter, parse_since


def make_registry():
    components = ComponentRegistry()
    components.register("Parse", lambda x: x)

    def score(x):
        if x % 10 == 9:
            raise ValueError(f"cannot score {x}")
        return sum(range(x % 50))

    components.register("Score", score)
    reg = ChainRegistry(components, ring_capacity=256)
    cid = reg.register_chain(ChainBuilder("trade").step("parse", "Parse", "t", "t", 1)
                             .step("score", "Score", "t", "s", 1).build())
    return reg, cid


def run(runner, xs, context=None):
    for x in xs:
        try:
            runner.run(x, context)
        except ChainStepError:
            pass


def test_intervals_merge_to_the_engines_own_histogram(tmp_path):
    reg, cid = make_registry()
    runner = reg.runner(cid)
    writer = HistoryWriter(reg, tmp_path / "h.db", sample_rate=0)
    for batch in range(3):
        run(runner, range(batch * 100, batch * 100 + 100))
        writer.flush()
    writer.flush()                          # an empty interval writes no rows
    writer.close()
    with HistoryReader(tmp_path / "h.db") as reader:
        assert reader.chains() == ["trade"]
        merged = reader.histogram("trade")
        live = reg.histogram(cid)
        assert merged.count == live.count == 270
        for p in (50.0, 90.0, 99.0, 99.9, 100.0):
            assert merged.percentile(p) == live.percentile(p)
        steps = reader.steps("trade")
        assert [s.step for s in steps] == ["parse", "score", CHAIN_ROW]
        assert steps[1].errors == 30 and steps[1].count == 270
        assert steps[1].error_rate == pytest.approx(0.1)
        assert steps[2].errors == 30
        assert reader.histogram("trade", "score").percentile(99) == \
            reg.histogram(cid, "score").percentile(99)
        n_rows = reader.conn.execute("SELECT count(*) FROM latency_intervals").fetchone()[0]
        assert n_rows == 9                  # 3 intervals x (2 steps + chain)


def test_range_queries_and_trend(tmp_path):
    reg, cid = make_registry()
    runner = reg.runner(cid)
    writer = HistoryWriter(reg, tmp_path / "h.db", sample_rate=0)
    run(runner, range(50))
    writer.flush()
    conn = writer.conn
    mid = conn.execute("SELECT max(end_ns) FROM latency_intervals").fetchone()[0]
    run(runner, range(100, 120))
    writer.flush()
    writer.close()
    with HistoryReader(tmp_path / "h.db") as reader:
        assert reader.histogram("trade", since_ns=mid).count == 18
        assert reader.histogram("trade", until_ns=mid).count == 45
        trend = reader.trend("trade", bucket_s=1e-6)
        assert [t["count"] for t in trend] == [45, 18]
        assert [t["errors"] for t in trend] == [5, 2]
        assert all(t["p99_ns"] >= t["p50_ns"] > 0 for t in trend)
        assert trend[0]["error_rate"] == pytest.approx(0.1)


def test_failures_persisted_with_context_and_successes_sampled(tmp_path):
    reg, cid = make_registry()
    runner = reg.runner(cid)
    writer = HistoryWriter(reg, tmp_path / "h.db", sample_rate=0.25)
    run(runner, range(100), UserContext("desk_a", "ann", "pro"))
    writer.flush()
    writer.flush()                      # nothing new: nothing stored twice
    writer.close()
    with HistoryReader(tmp_path / "h.db") as reader:
        failures = reader.failures("trade", limit=100)
        assert len(failures) == 10
        f = failures[0]
        assert f["failure"]["step"] == "score" and f["failure"]["exception_type"] == "ValueError"
        assert "cannot score" in f["failure"]["message"] and "Traceback" in f["failure"]["traceback"]
        assert f["failure"]["input"].isdigit()
        assert f["tenant"] == "desk_a" and f["completed_steps"] == ["parse"]
        sampled = reader.executions("trade", status="succeeded", limit=100)
        assert len(sampled) == 25 - 5       # seqs 3, 7, 11 ... 99, minus 19, 39, 59, 79, 99 (failed)
        assert all(s["sampled"] and s["total_duration_ns"] > 0 for s in sampled)
    assert writer.counters["failures"] == 10 and writer.counters["samples"] == 20


def test_tenants_per_registry(tmp_path):
    reg_a, cid_a = make_registry()
    reg_b, cid_b = make_registry()
    run(reg_a.runner(cid_a), range(8))
    run(reg_b.runner(cid_b), range(3))
    writer = HistoryWriter({"desk_a": reg_a, "desk_b": reg_b}, tmp_path / "h.db", sample_rate=0)
    writer.close()
    with HistoryReader(tmp_path / "h.db") as reader:
        assert reader.tenants() == ["desk_a", "desk_b"]
        assert reader.histogram("trade", tenant="desk_a").count == 8
        assert reader.histogram("trade", tenant="desk_b").count == 3
        assert reader.histogram("trade").count == 11


def test_background_thread_writes_intervals(tmp_path, eventually):
    reg, cid = make_registry()
    writer = HistoryWriter(reg, tmp_path / "h.db", interval_s=0.05, sample_rate=0).start()
    try:
        run(reg.runner(cid), range(5))
        eventually(lambda: writer.counters["intervals"] >= 3, timeout=10)
    finally:
        writer.close()
    with HistoryReader(tmp_path / "h.db") as reader:
        assert reader.histogram("trade").count == 5


def test_other_process_reads_while_writer_is_open(tmp_path):
    reg, cid = make_registry()
    writer = HistoryWriter(reg, tmp_path / "h.db", sample_rate=0)
    run(reg.runner(cid), range(5))
    writer.flush()
    other = sqlite3.connect(tmp_path / "h.db")
    assert other.execute("SELECT sum(count) FROM latency_intervals WHERE step = ''").fetchone()[0] == 5
    other.close()
    writer.close()


def test_bad_arguments_are_refused(tmp_path):
    reg, _ = make_registry()
    with pytest.raises(ValueError, match="sample_rate"):
        HistoryWriter(reg, tmp_path / "h.db", sample_rate=2)
    with pytest.raises(FileNotFoundError, match="no history database"):
        HistoryReader(tmp_path / "missing.db")


def test_parse_since():
    now = 10_000 * 10**9
    assert parse_since("30s", now) == now - 30 * 10**9
    assert parse_since("2h", now) == now - 7200 * 10**9
    assert parse_since("1970-01-01T00:00:10", now) == 10 * 10**9
    assert parse_since(None) is None
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since("yesterday-ish", now)


def test_an_old_history_file_gains_the_failure_column(tmp_path):
    from flowchain.histograms import LatencyHistogram

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("""CREATE TABLE latency_intervals (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL,
        start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, chain TEXT NOT NULL,
        chain_id TEXT NOT NULL, step TEXT NOT NULL, step_index INTEGER NOT NULL,
        tenant TEXT NOT NULL, count INTEGER NOT NULL, errors INTEGER NOT NULL,
        expected_ns INTEGER, histogram TEXT NOT NULL)""")
    hist = LatencyHistogram.from_values([1000, 2000])
    conn.execute("INSERT INTO latency_intervals (run_id, start_ns, end_ns, chain, chain_id, step, "
                 "step_index, tenant, count, errors, expected_ns, histogram) VALUES "
                 "('r', 1, 2, 'old', 'old@1', '', -1, 'default', 2, 1, 5, ?)", (hist.encode(),))
    conn.commit()
    conn.close()
    with HistoryReader(path) as reader:
        (chain,) = reader.steps("old")
        assert chain.count == 2 and chain.failure_histogram.count == 0
        assert reader.histogram("old", outcome="failure").count == 0
        with pytest.raises(ValueError, match="outcome must be"):
            reader.histogram("old", outcome="all")


def test_warnings_escalations_and_recoveries_are_stored_with_their_spans(tmp_path):
    from flowchain.observe.alerts import ESCALATION, RECOVERY, SLOW_STEP
    from flowchain.observe.monitor import Monitor

    class Clock:
        now = 50.0

        def __call__(self):
            return self.now

    failing = {"on": True}
    components = ComponentRegistry()
    components.register("Parse", lambda x: x)

    def score(x):
        if failing["on"]:
            raise ValueError(f"cannot score {x}")
        return x

    components.register("Score", score)
    reg = ChainRegistry(components, ring_capacity=256)
    cid = reg.register_chain(ChainBuilder("trade").step("parse", "Parse", "t", "t", 0.000001)
                             .step("score", "Score", "t", "s", 1).build())
    writer = HistoryWriter(reg, tmp_path / "h.db", sample_rate=0)
    clock = Clock()
    monitor = Monitor(reg, [writer], warning_interval_s=0, window_s=5, min_attempts=5,
                      repeat_interval_s=2, clock=clock)
    runner = reg.runner(cid)
    for _ in range(5):                           # 5 polls, 1.5 s apart, failing every time
        run(runner, range(10))
        monitor.poll()
        clock.now += 1.5
    writer.flush()                               # the escalation is stored while it lasts
    with HistoryReader(tmp_path / "h.db") as reader:
        [open_row] = reader.alerts(kind=ESCALATION)
        assert open_row["end_ns"] is None and open_row["step"] == "score"
        assert open_row["alerts"] == 3 and open_row["run_last_ns"] is not None  # 1 + 2 repeats
        assert len(reader.alerts(kind=SLOW_STEP)) == 5    # warning_interval_s=0: each poll
    failing["on"] = False
    clock.now += 6                               # the failures leave the 5 s window
    run(runner, range(10))
    kinds = [e.kind for e in monitor.poll()]
    assert RECOVERY in kinds
    writer.close()
    with HistoryReader(tmp_path / "h.db") as reader:
        rows = reader.alerts()
        [esc] = [r for r in rows if r["kind"] == ESCALATION]
        [rec] = [r for r in rows if r["kind"] == RECOVERY]
        assert esc["end_ns"] == rec["start_ns"] == rec["end_ns"]        # closed by the recovery
        assert esc["start_ns"] == rec["fields"]["since_ns"] < esc["end_ns"]
        assert esc["alerts"] == 3 and esc["fields"]["repeat"] == 2
        slow = [r for r in rows if r["kind"] == SLOW_STEP]
        assert len(slow) == 6 and all(r["start_ns"] <= r["end_ns"] for r in slow)
        assert all(r["step"] == "parse" and r["tenant"] == "default" for r in slow)
        assert [r["start_ns"] for r in rows] == sorted(r["start_ns"] for r in rows)
        assert reader.alerts(chain="other") == []
        assert reader.alerts(since_ns=esc["end_ns"] + 1, kind=ESCALATION) == []
        assert reader.alerts(until_ns=esc["start_ns"] - 1, kind=ESCALATION) == []
    assert writer.counters["events"] == len(rows) + 2   # the 2 repeats updated the open row


def test_event_queue_is_bounded_and_counts_what_it_drops(tmp_path, monkeypatch):
    import flowchain.observe.history as history
    from flowchain.observe.alerts import SLOW_STEP, AlertEvent

    monkeypatch.setattr(history, "EVENT_QUEUE", 3)
    reg, _ = make_registry()
    writer = HistoryWriter(reg, tmp_path / "h.db")
    for i in range(5):
        writer.emit(AlertEvent(SLOW_STEP, "trade", "c1", "score", f"slow {i}", 1000 + i,
                               {"tenant": "default"}))
    assert writer.counters["dropped_events"] == 2
    writer.close()
    with HistoryReader(tmp_path / "h.db") as reader:
        assert [r["message"] for r in reader.alerts()] == ["slow 0", "slow 1", "slow 2"]

"""DatabaseService and the whole MT5 -> database chain, by hand and through the engine."""
import dataclasses
import math

import numpy as np
import pytest

from flowchain.ingest import (
    BatchStageError,
    DatabaseService,
    DataBridge,
    DataProcessor,
    DataValidator,
    RawTickBatch,
    StorageConfirmation,
)
from flowchain.ingest.synthetic import synthetic_ticks
from flowchain.store import ensure_schema, open_database


def steps(path):
    return [DataBridge(), DataValidator(), DataProcessor(), DatabaseService(path)]


def run(chain, raw):
    data = raw
    for step in chain:
        data = step(data)
    return data


def counts(path):
    conn = open_database(path, readonly=True)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("ticks", "bars", "quarantine")}
    finally:
        conn.close()


def dirty_ticks(n=300, seed=1):
    ticks = synthetic_ticks(n, seed=seed)
    ticks["bid"][10] = math.nan
    ticks["ask"][20] = ticks["bid"][20] - 1e-4
    ticks[31] = ticks[30]  # a resend: see dirty_batch
    return ticks


def dirty_batch(symbol, lo, ticks, first_seq=0, size=None):
    """The ticks ``lo .. lo+size`` of :func:`dirty_ticks` with their seqs: tick 31 is a resend
    of tick 30 (its seq again), so the validator quarantines it as a duplicate."""
    seqs = np.arange(first_seq, first_seq + len(ticks), dtype=np.int64)
    seqs[31] = seqs[30]
    hi = len(ticks) if size is None else lo + size
    return RawTickBatch(symbol, int(seqs[lo]), ticks[lo:hi].tobytes(), seqs[lo:hi])


def test_a_batch_is_written_and_confirmed(tmp_path):
    path = tmp_path / "node.db"
    confirmation = run(steps(path), dirty_batch("EURUSD", 0, dirty_ticks(), first_seq=1))
    assert isinstance(confirmation, StorageConfirmation)
    assert confirmation.symbol == "EURUSD" and confirmation.first_seq == 1
    assert confirmation.inserted["ticks"] == 297 and confirmation.ignored["ticks"] == 0
    assert confirmation.inserted["quarantine"] == 3
    assert confirmation.reason_counts["non_finite"] == 1
    assert confirmation.reason_counts["crossed"] == 1
    assert confirmation.reason_counts["duplicate"] == 1
    stored = counts(path)
    assert stored["ticks"] == 297 and stored["quarantine"] == 3
    assert stored["bars"] == confirmation.inserted["bars"] > 0


def test_replaying_batches_into_a_restarted_chain_adds_no_rows(tmp_path):
    path = tmp_path / "node.db"
    ticks = dirty_ticks(1000)
    batches = [dirty_batch("EURUSD", lo, ticks, size=250) for lo in range(0, 1000, 250)]
    first_chain = steps(path)
    for raw in batches:
        run(first_chain, raw)
    before = counts(path)
    conn = open_database(path, readonly=True)
    bars_before = conn.execute("SELECT * FROM bars ORDER BY 1, 2, 3").fetchall()
    restarted = steps(path)
    for raw in batches:
        confirmation = run(restarted, raw)
        assert confirmation.inserted["ticks"] == 0 and confirmation.inserted["quarantine"] == 0
        assert confirmation.ignored["ticks"] == 250 - sum(confirmation.reason_counts.values())
    assert counts(path) == before
    assert conn.execute("SELECT * FROM bars ORDER BY 1, 2, 3").fetchall() == bars_before
    conn.close()
    assert before["ticks"] == 997


def test_bars_in_the_database_match_one_big_batch(tmp_path):
    ticks = synthetic_ticks(2000, seed=8, mean_gap_ms=70)
    split, whole = tmp_path / "split.db", tmp_path / "whole.db"
    chain = steps(split)
    for lo in range(0, 2000, 137):
        run(chain, RawTickBatch("EURUSD", lo, ticks[lo:lo + 137].tobytes()))
    run(steps(whole), RawTickBatch("EURUSD", 0, ticks.tobytes()))
    query = "SELECT * FROM bars ORDER BY symbol, timeframe, start_msc"
    a, b = open_database(split, readonly=True), open_database(whole, readonly=True)
    rows_a, rows_b = a.execute(query).fetchall(), b.execute(query).fetchall()
    assert len(rows_a) == len(rows_b) > 0
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert ra[:3] == rb[:3] and ra[7] == rb[7] and ra[9:] == rb[9:]
        assert ra[3:7] == pytest.approx(rb[3:7], abs=1e-12)
        assert ra[8] == pytest.approx(rb[8])


def test_a_failed_write_leaves_nothing_of_the_batch(tmp_path):
    path = tmp_path / "node.db"
    chain = steps(path)
    processed = run(chain[:3], dirty_batch("EURUSD", 0, dirty_ticks()))
    broken = dataclasses.replace(processed, rejected_seqs=processed.rejected_seqs[:1])
    with pytest.raises(ValueError, match="3 quarantined ticks but 1 sequence numbers"):
        chain[3](broken)
    assert counts(path) == {"ticks": 0, "bars": 0, "quarantine": 0}
    assert chain[3].batches_written == 0
    chain[3](processed)
    assert counts(path)["ticks"] == 297


def test_totals_add_up(tmp_path):
    service = DatabaseService(tmp_path / "node.db")
    chain = [DataBridge(), DataValidator(), DataProcessor(), service]
    ticks = dirty_ticks(600)
    for lo in (0, 300, 0):
        run(chain, dirty_batch("EURUSD", lo, ticks, size=300))
    assert service.batches_written == 3
    assert service.rows_inserted["ticks"] == 297 + 300
    # The third batch repeats the first into the same validator: quarantined as a replay. Its
    # NaN, crossed and resent ticks are there already, and so is tick 30 (the resend's seq
    # and record): the quarantine holds one row per (symbol, seq, record).
    assert service.rows_inserted["quarantine"] == 3 + 300 - 4
    assert service.rows_ignored["quarantine"] == 4
    service.close()


def test_connection_can_be_shared(tmp_path):
    conn = open_database(tmp_path / "shared.db")
    ensure_schema(conn, ["CREATE TABLE IF NOT EXISTS order_journal (req_id INTEGER PRIMARY KEY)"])
    service = DatabaseService(conn)
    run([DataBridge(), DataValidator(), DataProcessor(), service],
        RawTickBatch("EURUSD", 0, synthetic_ticks(10).tobytes()))
    service.close()  # not its connection: stays open
    assert conn.execute("SELECT count(*) FROM ticks").fetchone()[0] == 10


def test_default_path_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWCHAIN_DB", str(tmp_path / "env.db"))
    with DatabaseService() as service:
        assert service.path == tmp_path / "env.db"
        assert not service.path.exists()  # opened on the first batch
        run([DataBridge(), DataValidator(), DataProcessor(), service],
            RawTickBatch("EURUSD", 0, synthetic_ticks(10).tobytes()))
    assert counts(tmp_path / "env.db")["ticks"] == 10


def test_wrong_stage_is_refused(tmp_path):
    validated = DataValidator()(DataBridge()(RawTickBatch("EURUSD", 0, synthetic_ticks(3))))
    with pytest.raises(BatchStageError, match="stage VALIDATED.*after DataProcessor"):
        DatabaseService(tmp_path / "x.db")(validated)


def test_the_chain_runs_through_the_engine(tmp_path):
    from flowchain import ChainRegistry, ChainStepError, ComponentRegistry
    from flowchain.chain import load_chains_file
    from flowchain.chains import MT5_TO_DATABASE_CHAIN, TRADING_NODE_YAML

    components = ComponentRegistry()
    components.register("DataBridge", DataBridge)
    components.register("DataValidator", DataValidator)
    components.register("DataProcessor", DataProcessor)
    components.register("DatabaseService", DatabaseService(tmp_path / "engine.db"))
    definition = next(d for d in load_chains_file(TRADING_NODE_YAML)
                      if d.name == MT5_TO_DATABASE_CHAIN)
    registry = ChainRegistry(components)
    runner = registry.runner(registry.register_chain(definition))
    confirmation = runner.run(dirty_batch("EURUSD", 0, dirty_ticks()))
    assert confirmation.inserted["ticks"] == 297
    with pytest.raises(ChainStepError) as info:
        runner.run(RawTickBatch("EURUSD", 300, b"\x00" * 61))
    assert "mt5_data_ingestion" in str(info.value)
    assert counts(tmp_path / "engine.db")["ticks"] == 297


def test_components_are_registered_under_the_seed_names():
    from flowchain.components import default_components
    from flowchain.ingest.components import COMPONENTS

    for name, cls in COMPONENTS.items():
        assert name in default_components.names()
        assert cls.__name__ == name


def test_ingest_benchmark_reports_both_rates(tmp_path):
    from flowchain.ingest.bench import measure_ingest

    result = measure_ingest(ticks_total=2000, batch_size=250, repetitions=5, workdir=tmp_path)
    assert result["ingest_ticks_per_s"] > 0 and result["bare_sqlite_rows_per_s"] > 0
    assert result["ticks_per_repetition"] == 2000
    assert all(len(v) == 5 for v in result["samples_per_s"].values())
    assert result["batch_latency"]["ingest"]["count"] == 5 * 8
    assert list(tmp_path.iterdir()) == []  # its database files are removed
    with pytest.raises(ValueError, match="at least 5 interleaved repetitions"):
        measure_ingest(repetitions=4)

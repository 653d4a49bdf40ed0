"""The node's profiled executions record their chain input (status 'sampled') for replay."""
import sqlite3
import threading

import pytest

from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ComponentRegistry
from flowchain.config import HistorySection
from flowchain.observe.history import HistoryWriter
from flowchain.optimizer.recorded_inputs import load_inputs


def _touch(data):
    if data.get("fail"):
        raise ValueError("asked to fail")
    data["rows"].append(99)  # changes its input in place: the recorded input must not
    return len(data["rows"])


def _registry(**kwargs):
    components = ComponentRegistry()
    components.register("Touch", _touch)
    components.register("Double", lambda n: 2 * n)
    registry = ChainRegistry(components, **kwargs)
    chain = (ChainBuilder("Sampled").step("touch", "Touch", "data", "count", 1)
             .step("double", "Double", "count", "doubled", 1).build())
    return registry, registry.register_chain(chain)


def _run_all(registry, chain_id, inputs):
    run = registry.runner(chain_id).run
    for value in inputs:
        try:
            run(value)
        except ChainStepError:
            pass


def _rows(db):
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT execution_id, status, payload IS NOT NULL, unserializable "
                            "FROM recorded_inputs ORDER BY id").fetchall()
    finally:
        conn.close()


def test_profiled_successes_record_their_input_as_it_was_before_the_chain_ran(tmp_path):
    registry, chain_id = _registry()
    registry.set_profiling(0.5, record_inputs=True)
    db = tmp_path / "history.db"
    writer = HistoryWriter(registry, db, interval_s=3600.0, sample_rate=0.0)
    inputs = [{"rows": [i, i + 1], "tag": f"t{i}"} for i in range(8)]
    originals = [{"rows": list(v["rows"]), "tag": v["tag"]} for v in inputs]
    _run_all(registry, chain_id, inputs)
    writer.close()
    recorded = load_inputs(db, "Sampled", status="sampled")
    # 1 execution in 2 is profiled: the 2nd, 4th, ... (seq 1, 3, 5, 7)
    assert [r.execution_id for r in recorded] == [f"{chain_id}#{s}" for s in (1, 3, 5, 7)]
    assert [r.value for r in recorded] == [originals[s] for s in (1, 3, 5, 7)]
    assert all(r.status == "sampled" and r.step_index == 0 and r.chain_id == chain_id
               for r in recorded)
    assert writer.counters["inputs"] == 4
    # the chain's definition is stored beside them, for replay and --verify
    from flowchain.cli.optimize import _verify_inputs

    definition = registry.get_chain(chain_id)
    assert _verify_inputs(definition, db, None, 0) == [originals[s] for s in (1, 3, 5, 7)]
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT chain FROM chain_definitions WHERE chain_id = ?",
                            (chain_id,)).fetchall() == [("Sampled",)]
    finally:
        conn.close()


def test_a_failed_profiled_execution_is_recorded_by_the_failure_path_only(tmp_path):
    registry, chain_id = _registry(profile_rate=1.0)
    registry.set_profiling(1.0, record_inputs=True)
    db = tmp_path / "history.db"
    writer = HistoryWriter(registry, db, interval_s=3600.0, sample_rate=0.0)
    _run_all(registry, chain_id, [{"rows": [1]}, {"rows": [2], "fail": True}])
    writer.close()
    assert [(r[0], r[1]) for r in _rows(db)] == [(f"{chain_id}#1", "failed"),
                                                  (f"{chain_id}#0", "sampled")]


def test_an_unserializable_input_is_stored_with_its_reason(tmp_path):
    registry, chain_id = _registry()
    registry.set_profiling(1.0, record_inputs=True)
    db = tmp_path / "history.db"
    writer = HistoryWriter(registry, db, interval_s=3600.0, sample_rate=0.0)
    _run_all(registry, chain_id, [{"rows": [1], "lock": threading.Lock()}])
    writer.close()
    [(execution_id, status, has_payload, reason)] = _rows(db)
    assert status == "sampled" and not has_payload and "lock" in reason.lower()
    assert load_inputs(db, chain_id, status="sampled") == []
    [kept] = load_inputs(db, chain_id, status="sampled", include_unserializable=True)
    assert kept.value is None and kept.unserializable == reason
    assert writer.counters["unserializable_inputs"] == 1


def test_held_inputs_are_bounded_and_the_excess_counted(tmp_path):
    registry, chain_id = _registry()
    registry.set_profiling(1.0, record_inputs=True)
    profiler = registry.runner(chain_id).sample_probe
    profiler.inputs_kept = 3
    _run_all(registry, chain_id, [{"rows": [i]} for i in range(5)])
    assert [s.seq for s in registry.take_sampled_inputs(chain_id)] == [0, 1, 2]
    assert profiler.inputs_dropped == 2
    _run_all(registry, chain_id, [{"rows": [9]}])  # room again once taken
    assert [s.seq for s in registry.take_sampled_inputs(chain_id)] == [5]


@pytest.mark.parametrize("setting", [{"rate": 0.0, "record_inputs": True},
                                     {"rate": 1.0, "record_inputs": False}])
def test_rate_zero_or_recording_off_records_no_input(tmp_path, setting):
    registry, chain_id = _registry()
    registry.set_profiling(setting["rate"], record_inputs=setting["record_inputs"])
    db = tmp_path / "history.db"
    writer = HistoryWriter(registry, db, interval_s=3600.0, sample_rate=0.0)
    _run_all(registry, chain_id, [{"rows": [i]} for i in range(6)])
    writer.close()
    assert _rows(db) == []
    assert registry.take_sampled_inputs(chain_id) == []


def test_history_config_needs_profiling_to_record_inputs():
    assert HistorySection(profile_rate=0.1, record_inputs=True).record_inputs
    with pytest.raises(ValueError, match="record_inputs.*profile_rate"):
        HistorySection(record_inputs=True)


def test_an_encoder_error_is_stored_as_a_reason_and_the_execution_succeeds(monkeypatch):
    import flowchain.optimizer.profiling as profiling

    def broken(value):
        raise RecursionError("deep")

    monkeypatch.setattr(profiling, "capture_input", broken)
    registry, chain_id = _registry()
    registry.set_profiling(1.0, record_inputs=True)
    assert registry.runner(chain_id).run({"rows": [1]}) == 4
    [kept] = registry.take_sampled_inputs(chain_id)
    assert kept.encoded is None and kept.reason == "encoding failed: RecursionError: deep"

"""Sampled step profiles: rate, what is measured, the step_profiles table, off by default."""
import sqlite3
import time

import pytest

from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ComponentRegistry
from flowchain._native import engine
from flowchain.optimizer.input_hash import input_hash
from flowchain.optimizer.profile_store import load_profiles, write_profiles
from flowchain.optimizer.profiling import sample_every


def _registry(**kwargs):
    components = ComponentRegistry()
    components.register("Expand", lambda rows: [bytearray(4096) for _ in rows])
    components.register("Wait", lambda rows: (time.sleep(0.005), len(rows))[1])
    components.register("Check", lambda n: n if n < 5 else (_ for _ in ()).throw(
        ValueError("too many")))
    registry = ChainRegistry(components, **kwargs)
    chain = (ChainBuilder("Prof").step("expand", "Expand", "rows", "blobs", 1)
             .step("wait", "Wait", "blobs", "count", 10)
             .step("check", "Check", "count", "ok", 1).build())
    return registry, registry.register_chain(chain)


def test_off_by_default_samples_nothing():
    registry, chain_id = _registry()
    runner = registry.runner(chain_id)
    assert registry.profile_rate == 0 and runner.sample_probe is None
    for _ in range(5):
        runner.run([1, 2])
    assert registry.take_profiles() == []


def test_every_execution_at_rate_one_measures_each_step():
    registry, chain_id = _registry(profile_rate=1.0)
    run = registry.runner(chain_id).run
    run([1, 2, 3])
    profiles = registry.take_profiles(chain_id)
    assert [p.step for p in profiles] == ["expand", "wait", "check"]
    expand, wait, check = profiles
    assert expand.items == 3 and wait.items == 3 and check.items is None
    assert expand.input_hash == input_hash([1, 2, 3])
    assert check.input_hash == input_hash(3)
    assert 3 * 4096 <= expand.alloc_bytes < 3 * 4096 + 2048  # three bytearrays and a list
    assert check.alloc_bytes < 256  # a comparison: ~nothing (the call itself, at most)
    assert wait.wall_ns >= 5_000_000 and wait.cpu_ns < wait.wall_ns
    assert expand.execution_seq == 0 and expand.chain == "Prof"
    assert wait.start_epoch_ns == expand.start_epoch_ns + expand.wall_ns
    assert registry.take_profiles(chain_id) == []
    # installed for good, and no window left open on this thread
    assert engine.alloc_counter_installed() and engine.alloc_window_depth() == 0


def test_rate_samples_one_in_n_and_can_change_on_built_runners():
    registry, chain_id = _registry()
    run = registry.runner(chain_id).run
    registry.set_profiling(0.25)
    for _ in range(8):
        run([1])
    seqs = sorted({p.execution_seq for p in registry.take_profiles()})
    assert seqs == [3, 7]
    registry.set_profiling(0)
    run([1])
    assert registry.take_profiles() == []


def test_a_failing_sampled_execution_keeps_its_completed_steps_and_fails_as_usual():
    registry, chain_id = _registry(profile_rate=1.0)
    with pytest.raises(ChainStepError) as info:
        registry.runner(chain_id).run(list(range(7)))
    assert info.value.execution.failure.step == "check"
    assert [p.step for p in registry.take_profiles()] == ["expand", "wait"]
    assert engine.alloc_window_depth() == 0  # the failed step's window was closed


def test_a_step_counts_its_own_thread_only_while_other_threads_allocate():
    import threading

    stop = threading.Event()
    hoard: list = []

    def churn():
        while not stop.is_set():
            hoard.append([bytearray(64) for _ in range(1000)])
            del hoard[:-2]

    components = ComponentRegistry()
    components.register("Idle", lambda n: (time.sleep(0.02), n)[1])
    components.register("Big", lambda n: [bytes(1000) for _ in range(n)])
    registry = ChainRegistry(components, profile_rate=1.0)
    chain_id = registry.register_chain(ChainBuilder("Busy").step("idle", "Idle", "n", "n2", 1)
                                       .step("big", "Big", "n2", "blobs", 1).build())
    others = [threading.Thread(target=churn) for _ in range(3)]
    for t in others:
        t.start()
    try:
        registry.runner(chain_id).run(10_000)
    finally:
        stop.set()
        for t in others:
            t.join()
    idle, big = registry.take_profiles()
    # the others allocated megabytes while "idle" slept (switching the GIL to them)
    assert idle.alloc_bytes < 4096
    assert 10_000 * 1000 <= big.alloc_bytes < 2 * 10_000 * 1033


@pytest.mark.parametrize("rate", [-0.1, 1.5, "0.1", float("nan"), True])
def test_bad_rates_are_refused(rate):
    with pytest.raises(ValueError, match="profiling rate must be a number from 0"):
        sample_every(rate)
    with pytest.raises(ValueError):
        ChainRegistry(ComponentRegistry(), profile_rate=rate)


def test_profiles_round_trip_through_the_table(tmp_path):
    registry, chain_id = _registry(profile_rate=1.0)
    run = registry.runner(chain_id).run
    run([1])
    run([1, 2])
    profiles = registry.take_profiles()
    db = tmp_path / "history.sqlite"
    conn = sqlite3.connect(db)
    assert write_profiles(conn, "run-1", profiles) == 6
    conn.close()
    by_name = load_profiles(db, "Prof")
    assert [p.run_id for p in by_name] == ["run-1"] * 6
    assert [dict(vars_of(p), run_id="") for p in by_name] == [vars_of(p) for p in profiles]
    assert load_profiles(db, chain_id) == by_name
    assert load_profiles(db, "Other") == []
    with pytest.raises(FileNotFoundError, match="no history database"):
        load_profiles(tmp_path / "missing.sqlite", "Prof")


def vars_of(profile):
    return {name: getattr(profile, name) for name in profile.__slots__}


def test_the_history_writer_stores_the_profiles_with_the_rest_of_history(tmp_path):
    from flowchain.observe.history import HistoryWriter

    registry, chain_id = _registry(profile_rate=0.5)
    run = registry.runner(chain_id).run
    for _ in range(4):
        run([1, 2])
    db = tmp_path / "node.db"
    writer = HistoryWriter(registry, db, interval_s=60, sample_rate=0)
    try:
        writer.flush()
        writer.flush()  # nothing new: nothing written twice
        assert writer.counters["profiles"] == 6
    finally:
        writer.close()
    stored = load_profiles(db, "Prof")
    assert len(stored) == 6 and {p.run_id for p in stored} == {writer.run_id}
    assert sorted({p.execution_seq for p in stored}) == [1, 3]


def test_the_node_config_takes_a_validated_profile_rate(tmp_path):
    from flowchain.config import ConfigError, load_config

    good = tmp_path / "good.toml"
    good.write_text("[history]\nprofile_rate = 0.01\n")
    assert load_config(good).history.profile_rate == 0.01
    assert load_config(None).history.profile_rate == 0.0
    bad = tmp_path / "bad.toml"
    bad.write_text("[history]\nprofile_rate = 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value).startswith(str(bad)) and "'history.profile_rate'" in str(info.value)


def test_bench_profile_measures_off_against_one_percent_interleaved():
    from typer.testing import CliRunner

    from flowchain.bench import profile as bench
    from flowchain.cli.app import app

    result = bench.run(repetitions=5, n=1000)
    # 5 x 1000 measured executions of the sampled chain (after a warm-up of 200, whose
    # profiles are dropped): exactly 1 in 100 profiled
    assert result["sampled_executions"] == 50
    assert result["rate"] == 0.01 and result["repetitions"] == 5
    for way in ("off", "sampled"):
        s = result[way]
        assert 0 < s["p50_ns"] <= s["p99_ns"] <= s["p999_ns"] <= s["max_ns"] and s["mean_ns"] > 0
    assert result["p50_ratio"] > 0 and result["mean_ratio"] > 0
    with pytest.raises(ValueError, match="at least 5 interleaved repetitions"):
        bench.run(repetitions=3)
    shown = CliRunner().invoke(app, ["bench", "profile", "--repetitions", "5",
                                     "--executions", "1000"], catch_exceptions=False)
    assert shown.exit_code == 0
    assert "sampled/off: p50" in shown.output and "sampled" in shown.output


def test_profiles_held_in_memory_are_bounded_newest_kept():
    registry, chain_id = _registry(profile_rate=1.0, profiles_kept=5)
    run = registry.runner(chain_id).run
    for _ in range(4):
        run([1])
    profiles = registry.take_profiles()
    assert [p.execution_seq for p in profiles] == [3, 3, 3]
    profiler = registry._entry(chain_id).profiler
    assert profiler.sampled == 4 and profiler.dropped == 9

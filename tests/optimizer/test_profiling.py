"""Sampled step profiles: rate, what is measured, the step_profiles table, off by default."""
import sqlite3
import time
import tracemalloc

import pytest

from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ComponentRegistry
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
    assert not tracemalloc.is_tracing()


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
    assert expand.alloc_bytes >= 3 * 4096
    assert wait.wall_ns >= 5_000_000 and wait.cpu_ns < wait.wall_ns
    assert expand.execution_seq == 0 and expand.chain == "Prof"
    assert wait.start_epoch_ns == expand.start_epoch_ns + expand.wall_ns
    assert not tracemalloc.is_tracing()  # started around the sampled execution only
    assert registry.take_profiles(chain_id) == []


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

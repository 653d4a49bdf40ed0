"""parallel: N runs an element-wise step in worker processes, with the plain step's output."""
import dataclasses
import os
import threading
import time

import numpy as np
import pytest

from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ChainValidationError, ComponentRegistry
from flowchain.optimizer.pool import ComponentNotPicklable, ComponentPool, PoolBroken, measure_dispatch_cost


def square(rows):
    return [r * r for r in rows]


def tagged(rows):
    """Each item with the process that computed it (to see the chunks ran elsewhere).

    Items are (folder, n): each chunk leaves its pid in the folder and waits (by condition, at
    most 20 s) until two processes have, so two chunks can only finish by running at once.
    """
    folder = rows[0][0]
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + 20
    while len(list(folder.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    return [(r, os.getpid()) for _, r in rows]


def fails_on_13(rows):
    out = []
    for r in rows:
        if r == 13:
            raise ValueError(f"cannot score {r}")
        out.append(r + 1)
    return out


def array_double(rows):
    return np.asarray(rows) * 2


def too_short(rows):
    return list(rows)[:-1]


def spin(rows):
    """CPU work: each item spins its worker's CPU for ``item`` milliseconds."""
    for ms in rows:
        end = time.thread_time() + ms / 1000
        while time.thread_time() < end:
            pass
    return list(rows)


def nap(rows):
    """No CPU work: each item waits ``item`` milliseconds."""
    for ms in rows:
        time.sleep(ms / 1000)
    return list(rows)


def dies_on_7(rows):
    if 7 in rows:
        os._exit(3)  # the worker process dies, as one killed by the OOM killer would
    return list(rows)


def _own_registry(name, fn):
    """A registry of its own (closed by the test) holding ``Prepare`` and ``name``."""
    components = ComponentRegistry()
    components.register("Prepare", lambda raw: raw)
    components.register(name, fn, elementwise=True)
    return ChainRegistry(components)


def _chain(component, parallel):
    plain = ChainBuilder("P").step("prepare", "Prepare", "raw", "rows", 1) \
        .step("score", component, "rows", "scores", 5).build()
    steps = (plain.steps[0], dataclasses.replace(plain.steps[1], parallel=parallel))
    return plain, dataclasses.replace(plain, steps=steps)


@pytest.fixture(scope="module")
def registry():
    components = ComponentRegistry()
    components.register("Prepare", lambda raw: raw)
    for name, fn in (("Square", square), ("Tagged", tagged), ("Fails", fails_on_13),
                     ("ArrayDouble", array_double), ("TooShort", too_short), ("Spin", spin),
                     ("Nap", nap)):
        components.register(name, fn, elementwise=True)
    reg = ChainRegistry(components)
    yield reg
    reg.close()


def test_outputs_equal_the_plain_chain_in_order(registry):
    plain, optimized = _chain("Square", 2)
    run_plain = registry.runner(registry.register_chain(plain)).run
    run_parallel = registry.runner(registry.register_chain(optimized)).run
    assert plain.chain_id != optimized.chain_id
    for data in ([], [3], [1, 2], list(range(101)), tuple(range(7))):
        assert run_parallel(data) == run_plain(data)
    assert run_parallel(list(range(10))) == [i * i for i in range(10)]


def test_chunks_run_at_once_in_worker_processes_kept_across_executions(registry, tmp_path):
    _, optimized = _chain("Tagged", 2)
    run = registry.runner(registry.register_chain(optimized)).run
    (tmp_path / "1").mkdir()
    first = run([(tmp_path / "1", i) for i in range(20)])
    assert [r for r, _ in first] == list(range(20))
    pids = {pid for _, pid in first}
    assert len(pids) == 2 and os.getpid() not in pids
    (tmp_path / "2").mkdir()
    again = {pid for _, pid in run([(tmp_path / "2", i) for i in range(20)])}
    assert again == pids  # the same workers: the pool lives across executions


def test_numpy_arrays_split_and_join(registry):
    _, optimized = _chain("ArrayDouble", 3)
    run = registry.runner(registry.register_chain(optimized)).run
    out = run(np.arange(10))
    assert isinstance(out, np.ndarray)
    assert out.tolist() == [2 * i for i in range(10)]


def test_a_failing_chunk_fails_the_step_with_its_name_and_input(registry):
    _, optimized = _chain("Fails", 4)
    chain_id = registry.register_chain(optimized)
    run = registry.runner(chain_id).run
    data = list(range(20))
    with pytest.raises(ChainStepError) as info:
        run(data)
    failure = info.value.execution.failure
    assert failure.step == "score"
    assert failure.input_repr == repr(data)
    assert info.value.args[4] is data
    cause = info.value.__cause__
    assert isinstance(cause, ValueError) and "cannot score 13" in str(cause)
    assert any("chunk 3 of 4 (input items 10..14)" in note for note in cause.__notes__)
    assert run([1, 2, 3, 4]) == [2, 3, 4, 5]  # the pool survived the failure


def test_worker_usage_counts_the_cpu_the_workers_had_not_their_wall_time(registry):
    """The workers' CPU is timed in them: spinning chunks were on a CPU nearly all their wall
    time (less on a busy machine, never more), sleeping ones almost never."""
    for component, low, high in (("Spin", 0.05, 1.05), ("Nap", 0.0, 0.2)):
        _, optimized = _chain(component, 2)
        chain_id = registry.register_chain(optimized)
        assert registry.step_worker_usage(chain_id, "score") is None  # no runner built yet
        run = registry.runner(chain_id).run
        for _ in range(3):
            assert run([20, 20, 20, 20]) == [20] * 4
        run([5])  # one item: run in the calling thread, not counted
        usage = registry.step_worker_usage(chain_id, "score")
        assert (usage.workers, usage.calls, usage.chunks, usage.items) == (2, 3, 6, 12)
        assert usage.wall_ns >= 6 * 2 * 20_000_000 * 0.95  # each chunk: two 20 ms items
        assert low <= usage.cpu_share <= high, (component, usage)
        assert usage.cores_worth == pytest.approx(min(2.0, 2 * usage.cpu_share))
        assert usage.item_wall_ns() == usage.wall_ns / 12
    plain, _ = _chain("Spin", 2)
    assert registry.step_worker_usage(registry.register_chain(plain), "score") is None
    with pytest.raises(KeyError):
        registry.step_worker_usage(chain_id, "nope")


def test_verify_compares_the_workers_speed_with_the_original_step(registry):
    from flowchain.optimizer.verify import verify_side_by_side

    plain, optimized = _chain("Spin", 2)
    registry.register_chain(plain)
    registry.register_chain(optimized)
    registry.runner(plain.chain_id).run([1, 1])  # earlier runs do not count in the check
    result = verify_side_by_side(registry, plain, optimized, [[10, 10, 10, 10]] * 4)
    assert result.identical
    check = result.workers["score"]
    assert (check.usage.calls, check.usage.chunks, check.usage.items) == (4, 8, 16)
    assert check.serial_item_ns >= 10_000_000 * 0.95  # 10 ms of CPU an item, alone
    # below 1 when the workers were short of CPU; above only when the original version was
    assert 0.05 < check.speed < 4.0
    # a call waits for its slowest chunk: never more than the workers' mean speed gives
    assert 0.0 < check.effective_cores <= min(2.0, 2 * check.speed) + 1e-9
    assert check.usage.span_ns >= check.usage.wall_ns / 2
    data = result.to_dict()["workers"]["score"]
    assert data["speed"] == round(check.speed, 3) and data["items"] == 16
    # an input of one item is not split: the items differ, so no speed is claimed
    mixed = verify_side_by_side(registry, plain, optimized, [[10, 10], [10]])
    assert mixed.workers["score"].serial_item_ns is None
    assert mixed.workers["score"].speed is None and mixed.workers["score"].effective_cores is None
    assert mixed.to_dict()["workers"]["score"]["effective_cores"] is None


def test_a_worker_that_dies_fails_the_step_as_a_broken_pool():
    registry = _own_registry("Dies", dies_on_7)
    _, optimized = _chain("Dies", 2)
    run = registry.runner(registry.register_chain(optimized)).run
    try:
        assert run([1, 2, 3, 4]) == [1, 2, 3, 4]
        with pytest.raises(ChainStepError) as info:
            run([5, 6, 7, 8])
        cause = info.value.__cause__
        assert isinstance(cause, PoolBroken)
        assert "step 'score'" in str(cause) and "a worker process died" in str(cause)
        assert info.value.execution.failure.step == "score"
        with pytest.raises(ChainStepError) as again:  # the pool stays broken, and says so
            run([1, 2])
        assert isinstance(again.value.__cause__, PoolBroken)
    finally:
        registry.close()


def test_a_non_sequence_input_fails_the_step_with_the_reason(registry):
    _, optimized = _chain("Square", 2)
    run = registry.runner(registry.register_chain(optimized)).run
    with pytest.raises(ChainStepError) as info:
        run({"a": 1})
    assert "received a dict; pass a list, a tuple or a 1-d array" in str(info.value.__cause__)
    assert info.value.execution.failure.step == "score"


def test_a_component_that_is_not_element_wise_after_all_is_caught(registry):
    _, optimized = _chain("TooShort", 2)
    run = registry.runner(registry.register_chain(optimized)).run
    with pytest.raises(ChainStepError) as info:
        run([1, 2, 3, 4])
    assert "returned 1 items for the 2 of chunk 1 of 2" in str(info.value.__cause__)


def test_an_instance_that_cannot_be_sent_to_a_worker_is_refused_when_the_runner_is_built():
    class Holder:  # a class defined in a function: its instances do not pickle
        def __call__(self, rows):
            return rows

    registry = _own_registry("Holder", Holder())
    with pytest.raises(ChainValidationError, match="cannot be sent"):
        registry.register_chain(_chain("Holder", 2)[1])
    with pytest.raises(ComponentNotPicklable, match="cannot be sent to one.*top level of an "
                                                    "importable module"):
        ComponentPool(Holder(), 2, "step 'score'")


def test_runners_of_plain_steps_get_the_component_itself():
    registry = _own_registry("Square", square)
    plain, _ = _chain("Square", 2)
    runner = registry.runner(registry.register_chain(plain))
    assert runner.steps[1] is square


def test_close_stops_the_workers_and_later_runs_fail_as_the_step():
    registry = _own_registry("Square", square)
    _, optimized = _chain("Square", 2)
    run = registry.runner(registry.register_chain(optimized)).run
    assert run([1, 2, 3]) == [1, 4, 9]
    registry.close()
    with pytest.raises(ChainStepError) as info:
        run([1, 2, 3])
    assert "cannot take work" in str(info.value.__cause__)
    assert threading.active_count() >= 1


def test_measure_dispatch_cost_is_positive_and_validated():
    cost = measure_dispatch_cost(1, items=200, rounds=3)
    assert cost.fixed_ns > 0 and cost.per_item_ns >= 0
    with pytest.raises(ValueError, match="workers must be at least 1"):
        measure_dispatch_cost(0)


def test_a_component_imported_from_an_authors_folder_runs_in_the_workers(tmp_path):
    from flowchain.component_modules import import_modules

    (tmp_path / "opt_engine_author_scoring.py").write_text(
        "import flowchain\n\n"
        "def triple(rows):\n    return [3 * r for r in rows]\n")
    import_modules(["opt_engine_author_scoring"], [tmp_path])  # not on sys.path, as --import
    import opt_engine_author_scoring

    registry = _own_registry("Triple", opt_engine_author_scoring.triple)
    _, optimized = _chain("Triple", 2)
    try:
        assert registry.runner(registry.register_chain(optimized)).run([1, 2, 3]) == [3, 6, 9]
    finally:
        registry.close()


def test_a_worker_that_cannot_load_the_component_says_why(tmp_path):
    from flowchain.component_modules import import_modules

    (tmp_path / "opt_engine_parent_only.py").write_text(
        "import multiprocessing\n\n"
        "if multiprocessing.parent_process() is not None:\n"
        "    raise ImportError('this module refuses worker processes')\n\n"
        "def same(rows):\n    return list(rows)\n")
    import_modules(["opt_engine_parent_only"], [tmp_path])
    import opt_engine_parent_only

    with pytest.raises(ComponentNotPicklable, match="could not load the component "
                                                    r"\(ImportError: this module refuses"):
        ComponentPool(opt_engine_parent_only.same, 1, "step 'same'")


def test_registration_refuses_parallel_on_what_cannot_run_in_a_worker():
    async def fetch(rows):
        return rows

    components = ComponentRegistry()
    components.register("Prepare", lambda raw: raw)
    components.register("Lambda", lambda rows: rows, elementwise=True)
    components.register("Coroutine", fetch, elementwise=True)
    registry = ChainRegistry(components)
    with pytest.raises(ChainValidationError, match="step 'score': 'parallel' runs 'Lambda' in "
                                                   "worker processes, but it cannot be sent"):
        registry.register_chain(_chain("Lambda", 2)[1])
    with pytest.raises(ChainValidationError, match="it is a coroutine .*use 'async"):
        registry.register_chain(_chain("Coroutine", 2)[1])

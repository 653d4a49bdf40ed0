"""Process isolation: a component that raises, crashes the interpreter, segfaults, hangs or
leaks takes down only its tenant's worker, which is restarted and counted."""
import os

import pytest
from tenancy_parts import chain

from flowchain.errors import ChainStepError
from flowchain.tenancy import WorkerCrashed
from flowchain.tenancy import worker as worker_module


@pytest.fixture
def isolated(manager):
    manager.add_tenant("iso", "enterprise")
    manager.add_tenant("other", "enterprise")
    manager.add_tenant("neighbour", "free")
    for tenant in ("iso", "other", "neighbour"):
        manager.register_chain(tenant, chain("inc"))
    manager.register_chain("iso", chain("boom", 2, last="Boom"))
    manager.register_chain("iso", chain("exit", 2, last="Exit"))
    manager.register_chain("iso", chain("segv", 1, "Segfault"))
    manager.register_chain("iso", chain("hang", 1, "Hang"))
    return manager


def _pid(m, tenant):
    return m._tenants[tenant].worker.pid


def _survivors_fine(m):
    assert m.execute("other", "inc", 1) == 5
    assert m.execute("neighbour", "inc", 1) == 5
    assert m.execute("iso", "inc", 1) == 5  # the restarted worker has every chain again


def test_a_raising_component_is_an_ordinary_failed_record(isolated):
    m = isolated
    pid = _pid(m, "iso")
    with pytest.raises(ChainStepError) as info:
        m.execute("iso", "boom", 7)
    failure = info.value.execution.failure
    assert failure.step == "step_1" and failure.exception_type == "ValueError"
    assert "bad input 8" in failure.message and failure.input_repr == "8"
    assert _pid(m, "iso") == pid and m.usage("iso").worker_restarts["crashed"] == 0
    assert [r.failure.step for r in m.failures("iso", "boom")] == ["step_1"]
    record = m.execute_user_chain("boom", m._tenants["iso"].contexts["default"], 1)
    assert record.status.value == "failed"


@pytest.mark.parametrize("chain_name, exitcode", [("exit", 3), ("segv", -11)])
def test_a_crashing_component_takes_down_only_its_worker(isolated, chain_name, exitcode):
    m = isolated
    other_pid, pid = _pid(m, "other"), _pid(m, "iso")
    with pytest.raises(WorkerCrashed) as info:
        m.execute("iso", chain_name, 1)
    assert info.value.reason == "crashed" and info.value.exitcode == exitcode
    assert "restarted" in str(info.value)
    assert m.usage("iso").worker_restarts["crashed"] == 1
    assert _pid(m, "iso") not in (None, pid) and _pid(m, "other") == other_pid
    _survivors_fine(m)
    assert m.usage("iso").running == 0  # the crashed execution released its slot


def test_a_hanging_component_is_killed_after_the_timeout(isolated):
    m = isolated  # enterprise in the test tiers: execution_timeout_s = 2
    pid = _pid(m, "iso")
    with pytest.raises(WorkerCrashed) as info:
        m.execute("iso", "hang", 1)
    assert info.value.reason == "timeout"
    assert m.usage("iso").worker_restarts["timeout"] == 1 and _pid(m, "iso") != pid
    _survivors_fine(m)


def test_a_leaking_component_gets_its_worker_recycled(isolated, monkeypatch):
    m = isolated
    monkeypatch.setattr(worker_module, "MEMORY_CHECK_EVERY", 2)
    m.register_chain("iso", chain("leak", 1, "Leak"))  # forks a worker that sees the patch
    pid = _pid(m, "iso")
    for i in range(8):  # 4 MiB a call, recycled past 8 MiB of growth
        assert m.execute("iso", "leak", i) == i
    assert m.usage("iso").worker_restarts["memory"] >= 1 and _pid(m, "iso") != pid
    _survivors_fine(m)


def test_records_and_statistics_come_back_from_the_worker(isolated):
    m = isolated
    for i in range(5):
        m.execute("iso", "inc", i, user_id="ana")
    assert m.stats("iso", "inc").executions == 5
    assert m.histogram("iso", "inc").count == 5
    assert m.histogram("iso", "inc", "step_0").count == 5
    recent = m.recent_executions("iso", "inc", 3)
    assert [r.user_context.user_id for r in recent] == ["ana"] * 3
    assert m.last_execution("iso", "inc").seq == 4
    assert m.user_performance("iso", "ana").executions == 5
    assert os.getpid() not in {_pid(m, "iso"), _pid(m, "other")}


def test_an_output_that_does_not_pickle_is_a_clear_error(isolated, components):
    m = isolated
    components.register("Unpicklable", lambda x: (lambda: x))
    m.register_chain("iso", chain("lam", 1, "Unpicklable"))
    with pytest.raises(RuntimeError, match="picklable outputs"):
        m.execute("iso", "lam", 1)
    assert m.execute("iso", "inc", 1) == 5


async def test_async_executions_in_a_worker(isolated):
    m = isolated
    assert await m.execute_async("iso", "inc", 10) == 14
    record = await m.execute_user_chain_async("inc", m._tenants["iso"].contexts["default"], 0)
    assert record.is_successful()

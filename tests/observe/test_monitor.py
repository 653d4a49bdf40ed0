"""Monitor: slow-step warnings (rate-limited), error-rate escalation and recovery, live status."""
import asyncio
import threading

import pytest

from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ComponentRegistry
from flowchain.observe._reader import RingTail
from flowchain.observe.alerts import ESCALATION, RECOVERY, SLOW_STEP, CallbackSink
from flowchain.observe.monitor import Monitor, step_statuses


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_registry(behaviour):
    """A registry with one chain parse -> score -> act; ``behaviour`` drives the 'score' step."""
    components = ComponentRegistry()
    components.register("Parse", lambda x: x)
    components.register("Score", behaviour)
    components.register("Act", lambda x: x)
    reg = ChainRegistry(components, ring_capacity=64)
    chain = (ChainBuilder("trade")
             .step("parse", "Parse", "tick", "tick", 1000)
             .step("score", "Score", "tick", "score", 0.000001)   # 1 ns: every run is "slow"
             .step("act", "Act", "score", "order", 1000)
             .build())
    cid = reg.register_chain(chain)
    return reg, cid


def test_ring_tail_reads_each_execution_once_and_counts_overwrites():
    reg, cid = make_registry(lambda x: x)
    runner = reg.runner(cid)
    tail = RingTail(runner, from_start=True)
    for i in range(10):
        runner.run(i)
    rows = tail.read()
    assert list(rows.seq) == list(range(10))
    assert len(tail.read()) == 0
    for i in range(200):          # more than the ring's 64 slots
        runner.run(i)
    rows = tail.read()
    assert tail.lost == 200 - 64
    assert list(rows.seq) == list(range(210 - 64, 210))
    assert (rows.step == 3).all()


def test_slow_step_warning_names_execution_and_is_rate_limited():
    reg, cid = make_registry(lambda x: x)
    clock = FakeClock()
    seen = []
    mon = Monitor(reg, [CallbackSink(seen.append)], warning_interval_s=10, clock=clock)
    runner = reg.runner(cid)
    for i in range(5):
        runner.run(i)
    events = mon.poll()
    assert [e.kind for e in events] == [SLOW_STEP]
    event = events[0]
    assert event.step == "score" and event.chain == "trade"
    assert event.fields["execution_id"].startswith(cid + "#")
    assert event.fields["observed_ns"] > event.fields["expected_ns"] == 1
    assert event.fields["suppressed"] == 4
    assert seen == events
    for i in range(5):
        runner.run(i)
    assert mon.poll() == []                      # inside the rate limit: suppressed
    clock.now += 11
    runner.run(0)
    later = mon.poll()
    assert len(later) == 1 and later[0].fields["suppressed"] == 5


def test_escalation_above_threshold_then_recovery_below():
    fail = threading.Event()

    def score(x):
        if fail.is_set() and x % 5 == 0:      # 20% of attempts fail
            raise ValueError(f"bad score input {x}")
        return x

    reg, cid = make_registry(score)
    clock = FakeClock()
    mon = Monitor(reg, warning_interval_s=1e9, window_s=60, min_attempts=20, clock=clock)
    runner = reg.runner(cid)
    for i in range(50):
        runner.run(i)
    mon.poll()
    fail.set()
    for i in range(50):
        try:
            runner.run(i)
        except ChainStepError:
            pass
    clock.now += 1
    escalations = [e for e in mon.poll() if e.kind == ESCALATION]
    assert len(escalations) == 1
    esc = escalations[0]
    assert esc.step == "score" and esc.fields["errors"] == 10 and esc.fields["attempts"] == 100
    assert esc.fields["error_rate"] == pytest.approx(0.10)
    assert step_statuses(mon.step_health()[cid])[1] == "failing"
    assert [e.kind for e in mon.poll() if e.kind == ESCALATION] == []   # no repeat
    fail.clear()
    clock.now += 61                                # the failing period leaves the window
    for i in range(30):
        runner.run(i)
    recoveries = [e for e in mon.poll() if e.kind == RECOVERY]
    assert len(recoveries) == 1 and recoveries[0].fields["errors"] == 0


def switched_monitor(repeat_interval_s):
    """A chain whose 'score' step fails while the returned event is set, its Monitor (window
    10 s, 5 attempts, on a fake clock) and ``run(n)``, which executes it n times."""
    failing = threading.Event()
    failing.set()

    def score(x):
        if failing.is_set():
            raise ValueError(f"score cannot read {x}")
        return x

    reg, cid = make_registry(score)
    clock = FakeClock()
    mon = Monitor(reg, warning_interval_s=1e9, window_s=10, min_attempts=5,
                  repeat_interval_s=repeat_interval_s, clock=clock)
    runner = reg.runner(cid)

    def run(n):
        for i in range(n):
            try:
                runner.run(i)
            except ChainStepError:
                pass

    return failing, cid, clock, mon, run


def test_escalation_is_a_state_repeated_while_it_lasts_until_recovery():
    failing, cid, clock, mon, run = switched_monitor(repeat_interval_s=30)
    run(10)
    first = [e for e in mon.poll() if e.kind == ESCALATION]
    assert len(first) == 1 and first[0].fields["repeat"] == 0
    since = first[0].fields["since_ns"]
    [held] = mon.escalations()
    assert (held.chain, held.step, held.since_ns, held.repeats) == ("trade", "score", since, 0)
    assert held.error_rate == 1.0 and mon.is_escalated(cid, 1) and not mon.is_escalated(cid, 0)
    kinds = []
    for _ in range(12):                         # 60 s more of failing, polled every 5 s
        clock.now += 5
        run(10)
        kinds += [(e.kind, e.fields.get("repeat")) for e in mon.poll()]
        assert [e.step for e in mon.escalations()] == ["score"]   # still there, every poll
    assert kinds == [(ESCALATION, 1), (ESCALATION, 2)]           # every 30 s, no more
    [held] = mon.escalations()
    assert held.since_ns == since and held.repeats == 2 and "escalated for" in held.message
    failing.clear()
    clock.now += 11                             # the failures leave the 10 s window
    run(10)
    [recovery] = [e for e in mon.poll() if e.kind == RECOVERY]
    assert recovery.fields["since_ns"] == since and recovery.fields["repeats"] == 2
    assert recovery.fields["duration_s"] >= 0 and "recovered after" in recovery.message
    assert mon.escalations() == [] and not mon.is_escalated(cid, 1)
    clock.now += 100
    assert [e for e in mon.poll() if e.kind in (ESCALATION, RECOVERY)] == []


def test_throughput_is_over_fixed_windows_of_the_monitors_clock_whoever_asks():
    reg, cid = make_registry(lambda x: x)
    clock = FakeClock()
    mon = Monitor(reg, warning_interval_s=1e9, clock=clock)
    runner = reg.runner(cid)
    runner.run(0)
    mon.poll()
    assert mon.throughput(cid) == {"per_1s": None, "per_10s": None}   # one sample: no rate
    for _second in range(12):                     # 100 executions a second, polled at 4 Hz
        for _ in range(4):
            for i in range(25):
                runner.run(i)
            clock.now += 0.25
            mon.poll()
    rates = mon.throughput(cid)
    assert rates == {"per_1s": 100.0, "per_10s": 100.0}
    assert [mon.throughput(cid) for _ in range(5)] == [rates] * 5    # asking changes nothing
    for i in range(300):                         # a burst: 300 more within the last second
        runner.run(i)
    clock.now += 0.25
    mon.poll()
    rates = mon.throughput(cid)
    assert rates["per_1s"] == pytest.approx((300 + 75) / 1.0)
    assert rates["per_10s"] == pytest.approx((300 + 975) / 10.0)
    assert mon.throughput("no-such-chain") == {"per_1s": None, "per_10s": None}


def test_no_escalation_below_min_attempts():
    reg, cid = make_registry(lambda x: 1 / 0)
    mon = Monitor(reg, min_attempts=20, warning_interval_s=1e9)
    runner = reg.runner(cid)
    for i in range(5):
        with pytest.raises(ChainStepError):
            runner.run(i)
    assert [e for e in mon.poll() if e.kind == ESCALATION] == []
    assert mon.step_health()[cid][1]["errors"] == 5


def test_raising_sink_is_counted_and_other_sinks_still_get_events():
    reg, cid = make_registry(lambda x: x)
    got = []

    class Broken:
        def emit(self, event):
            raise RuntimeError("sink down")

    mon = Monitor(reg, [Broken(), CallbackSink(got.append)], warning_interval_s=0)
    reg.runner(cid).run(1)
    mon.poll()
    assert mon.counters["sink_errors"] == 1 and len(got) == 1


async def test_live_status_reports_current_step_progress_and_eta(eventually_async):
    gate = asyncio.Event()

    async def score(x):
        await gate.wait()
        return x

    reg, cid = make_registry(score)
    mon = Monitor(reg)
    task = asyncio.ensure_future(reg.runner(cid).run_async(7))
    live = await eventually_async(lambda: mon.live())
    assert live[0]["current_step"] == "score"
    assert live[0]["completed_steps"] == ["parse"]
    assert live[0]["progress"] == pytest.approx(33.3, abs=0.1)
    assert live[0]["eta_ns"] is not None
    gate.set()
    assert await task == 7
    assert mon.live() == []


def test_thread_mode_polls_in_background(eventually):
    reg, cid = make_registry(lambda x: x)
    got = []
    mon = Monitor(reg, [CallbackSink(got.append)], interval_s=0.01).start()
    try:
        reg.runner(cid).run(1)
        eventually(lambda: got, timeout=10)
    finally:
        mon.stop()
    assert got[0].kind == SLOW_STEP and mon.counters["polls"] >= 1


def test_bad_settings_are_refused():
    reg, _ = make_registry(lambda x: x)
    with pytest.raises(ValueError, match="error_threshold"):
        Monitor(reg, error_threshold=5)
    with pytest.raises(ValueError, match="interval_s"):
        Monitor(reg, interval_s=0)
    with pytest.raises(ValueError, match="repeat_interval_s"):
        Monitor(reg, repeat_interval_s=0)


def test_a_window_without_attempts_holds_the_escalation():
    """A stall (no execution for longer than the window) is no evidence of recovery."""
    failing, cid, clock, mon, run = switched_monitor(repeat_interval_s=1e9)
    run(10)
    assert [e.kind for e in mon.poll()].count(ESCALATION) == 1
    for _ in range(4):                          # 40 s without one execution
        clock.now += 10
        assert [e for e in mon.poll() if e.kind in (ESCALATION, RECOVERY)] == []
        assert mon.is_escalated(cid, 1)
        [held] = mon.escalations()              # its last measured rate stands, not 0 of 0
        assert (held.error_rate, held.errors, held.attempts) == (1.0, 10, 10)
    failing.clear()                             # executions again, and they succeed
    clock.now += 1
    run(10)
    assert [e.kind for e in mon.poll() if e.kind in (ESCALATION, RECOVERY)] == [RECOVERY]
    assert not mon.is_escalated(cid, 1)


def test_a_repeat_in_a_window_without_attempts_says_so():
    failing, cid, clock, mon, run = switched_monitor(repeat_interval_s=5)
    run(10)
    assert [e.kind for e in mon.poll()].count(ESCALATION) == 1
    clock.now += 11                             # no execution in the last 10 s
    [repeat] = [e for e in mon.poll() if e.kind == ESCALATION]
    assert repeat.fields["repeat"] == 1 and repeat.fields["idle"] is True
    assert (repeat.fields["error_rate"], repeat.fields["errors"], repeat.fields["attempts"]) == \
        (1.0, 10, 10)
    assert "failed 10 of 10 attempts (100.0%) in the last window with attempts (none in the " \
           "last 10 s), above the 5% threshold; escalated for" in repeat.message
    [held] = mon.escalations()
    assert held.message == repeat.message and held.error_rate == 1.0

"""flowchain.periodic.PeriodicThread: the monitor's, exporter's and history writer's thread."""
from __future__ import annotations

import threading

import pytest

from flowchain.periodic import PeriodicThread


def test_calls_every_interval_and_once_more_on_stop(eventually):
    calls = []
    periodic = PeriodicThread(lambda: calls.append(threading.current_thread().name), 0.01,
                              "test-periodic")
    periodic.start()
    periodic.start()  # already running: no second thread
    eventually(lambda: len(calls) >= 3)
    assert periodic.running
    assert periodic.stop(5) is True
    after_stop = len(calls)
    assert not periodic.running
    assert set(calls) == {"test-periodic"}
    assert periodic.stop() is False  # nothing running: the caller does the last call itself
    assert len(calls) == after_stop


def test_stop_wakes_the_thread_for_its_last_call_without_waiting_an_interval():
    calls = []
    periodic = PeriodicThread(lambda: calls.append(1), 3600.0, "test-periodic-slow")
    periodic.start()
    assert periodic.stop(10) is True
    assert calls == [1]


def test_an_escaping_exception_is_counted_and_the_thread_goes_on(eventually):
    calls = []

    def work() -> None:
        calls.append(1)
        raise RuntimeError("a bug in the work")

    periodic = PeriodicThread(work, 0.01, "test-periodic-raises")
    periodic.start()
    eventually(lambda: periodic.errors >= 2)
    periodic.stop(5)
    assert periodic.errors == len(calls)


def test_restart_after_stop():
    calls = []
    periodic = PeriodicThread(lambda: calls.append(1), 3600.0, "test-periodic-restart")
    periodic.start()
    periodic.stop(5)
    periodic.start()
    assert periodic.running
    periodic.stop(5)
    assert calls == [1, 1]


@pytest.mark.parametrize("interval", [0, -1.0])
def test_interval_must_be_positive(interval):
    with pytest.raises(ValueError, match="interval_s must be positive"):
        PeriodicThread(lambda: None, interval, "bad")

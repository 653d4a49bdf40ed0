"""A daemon thread that does one piece of cold-path work every interval until stopped.

The monitor polls, the trace exporter exports and the history writer flushes this way: wait
``interval_s`` (woken early by :meth:`PeriodicThread.stop`), do the work, again; on stop, do it
once more so nothing pending is left behind.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class PeriodicThread:
    """Call ``work`` every ``interval_s`` seconds in a daemon thread, and once more on stop.

    ``work`` is expected to guard itself (count and log its own failures, as the monitor's
    poll, the exporter's export and the history flush do). An exception that escapes it anyway
    is logged, counted in :attr:`errors`, and the thread goes on with the next interval.

    Parameters
    ----------
    work : callable
        Called with no arguments from the thread.
    interval_s : float
        Seconds between calls.
    name : str
        The thread's name (shown by debuggers and in logs).

    Attributes
    ----------
    errors : int
        Exceptions that escaped ``work``.

    Raises
    ------
    ValueError
        When ``interval_s`` is not positive.
    """

    __slots__ = ("work", "interval_s", "name", "errors", "_stop", "_thread")

    def __init__(self, work: Callable[[], object], interval_s: float, name: str) -> None:
        if not 0 < interval_s <= threading.TIMEOUT_MAX:
            raise ValueError(f"periodic thread {name!r}: interval_s must be positive and at "
                             f"most {threading.TIMEOUT_MAX:g} s, got {interval_s}")
        self.work = work
        self.interval_s = interval_s
        self.name = name
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread; nothing happens when it is already running."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Wake the thread, let it do its last call, and wait up to ``timeout`` seconds.

        Returns
        -------
        bool
            True when a thread had been started (it did, or is still doing, the last call);
            False when there was none, so the caller may do the last call itself.
        """
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return False
        thread.join(timeout)
        if thread.is_alive():
            log.warning("%s did not finish its last call within %.1f s; left running as a "
                        "daemon", self.name, timeout)
        return True

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                self._call()
        except Exception:  # never die silently: the work stops, so say so loudly
            self.errors += 1
            log.critical("%s stopped: its loop raised, so its work no longer runs", self.name,
                         exc_info=True)
            return
        self._call()

    def _call(self) -> None:
        try:
            self.work()
        except Exception:  # the thread outlives a bug in its work; counted and logged
            self.errors += 1
            log.exception("%s: periodic work raised", self.name)

"""How much CPU this process can get at once right now: the cores a parallel step would
really have.

The affinity mask says how many cores the process may use; on a machine shared with other busy
processes it gets less. :func:`measure_cpu_capacity` runs the same CPU-bound work (a key
derivation in C, which releases the GIL) on 1 thread and on ``workers`` threads at once, and
returns how many threads' worth of work the machine completed per unit of time: ``workers`` on
an idle machine with enough cores, less on a loaded one.
"""
from __future__ import annotations

import hashlib
import statistics
import threading
import time

PROBE_ITERATIONS = 20_000
"""Key-derivation rounds of one probe unit (a few milliseconds of CPU)."""


def _unit() -> None:
    hashlib.pbkdf2_hmac("sha256", b"capacity", b"probe", PROBE_ITERATIONS)


def _one_round(workers: int) -> float:
    """Seconds for ``workers`` threads to finish one unit each, together."""
    gate = threading.Barrier(workers + 1)

    def work() -> None:
        gate.wait()
        _unit()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def measure_cpu_capacity(workers: int, rounds: int = 3) -> float:
    """Return the threads' worth of CPU work ``workers`` threads got done at once (1..workers).

    Median of ``rounds`` alternating single-thread and ``workers``-thread rounds.

    Raises
    ------
    ValueError
        When ``workers`` is below 1.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        return 1.0
    ratios = []
    _unit()  # warm
    for _ in range(rounds):
        single = _one_round(1)
        together = _one_round(workers)
        ratios.append(workers * single / together if together > 0 else float(workers))
    return max(1.0, min(float(workers), statistics.median(ratios)))

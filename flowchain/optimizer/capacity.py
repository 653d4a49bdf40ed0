"""How much CPU this process can get at once right now: the cores a parallel step would
really have.

The affinity mask says how many cores the process may use; on a machine shared with other busy
processes it gets less. :func:`measure_cpu_capacity` runs the same CPU-bound work (a key
hash in C, with the GIL released) on 1 thread and on ``workers`` threads at once, and
returns how many threads' worth of work the machine completed per unit of time: ``workers`` on
an idle machine with enough cores, less on a loaded one. The work is SHA-256 over a block of
a few megabytes, which hashlib computes with the GIL released (it does so for data over 2 KiB).
"""
from __future__ import annotations

import hashlib
import statistics
import threading
import time

PROBE_BYTES = 4 << 20
"""Bytes hashed by one probe unit (a few milliseconds of CPU)."""
_BLOCK = bytes(range(256)) * (PROBE_BYTES // 256)


def _unit() -> None:
    hashlib.sha256(_BLOCK).digest()


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

"""How much CPU this process can get at once right now: the cores a parallel step would
really have.

The affinity mask says how many cores the process may use; on a machine shared with other busy
processes it gets less. :func:`measure_cpu_capacity` runs the same CPU-bound work (a key
hash in C, with the GIL released) on 1 thread and on ``workers`` threads at once, and
returns how many threads' worth of work the machine completed per unit of time: ``workers`` on
an idle machine with enough cores, less on a loaded one. The work is SHA-256 over a block of
a few megabytes, which hashlib computes with the GIL released (it does so for data over 2 KiB),
repeated for about :data:`UNIT_SECONDS` per thread, so that a round measures sustained sharing
rather than a moment (with 2 ms units, one probe in three read 1.5 or more cores' worth next to
a process that had just started spinning on one of two cores; with 40 ms, none of seven did).

What it cannot see: cores that are slower together than alone for other kinds of work
(hyperthreads of one core, a VM host's other guests). On this project's 2-vCPU VMs it read
1.8-2.0 while the workers of the optimizer's CPU example delivered 1.3-1.7 cores' worth of that
step's key derivation; ``flowchain optimize --verify`` measures what the workers delivered and
remakes the prediction for it (:mod:`flowchain.optimizer.verify`).
"""
from __future__ import annotations

import hashlib
import statistics
import threading
import time

PROBE_BYTES = 4 << 20
"""Bytes hashed by one SHA-256 call (a few milliseconds of CPU)."""
UNIT_SECONDS = 0.04
"""CPU time of one thread's unit of work (calls repeated to last about this long)."""
_BLOCK = bytes(range(256)) * (PROBE_BYTES // 256)


def _hash(repeats: int) -> None:
    for _ in range(repeats):
        hashlib.sha256(_BLOCK).digest()


def _repeats() -> int:
    """SHA-256 calls in one unit, from the fastest of three timed calls."""
    fastest = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        _hash(1)
        fastest = min(fastest, time.perf_counter() - t0)
    return max(1, round(UNIT_SECONDS / fastest)) if fastest > 0 else 1


def _one_round(workers: int, repeats: int) -> float:
    """Seconds for ``workers`` threads to finish one unit each, together."""
    gate = threading.Barrier(workers + 1)

    def work() -> None:
        gate.wait()
        _hash(repeats)

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
    repeats = _repeats()
    for _ in range(rounds):
        single = _one_round(1, repeats)
        together = _one_round(workers, repeats)
        ratios.append(workers * single / together if together > 0 else float(workers))
    return max(1.0, min(float(workers), statistics.median(ratios)))

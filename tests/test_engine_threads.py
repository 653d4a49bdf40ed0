"""Runners record in several threads while others read: every read is consistent.

Writers execute chains (one failing on every seventh input) in their own threads, two of them
contending for one shared runner; readers meanwhile take ``registry.stats()``,
``histogram().summary()``, raw HDR snapshots and runner snapshots, tail the execution rings and
read the failure records. With the GIL handed over every few microseconds, no read may show a
total unlike its counts, a p99 above its max, a missing percentile, or a row made of two
executions.
"""
import sys
import threading

import numpy as np
import pytest

from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ComponentRegistry
from flowchain._native import STATUS_FAILED, STATUS_SUCCEEDED
from flowchain.observe._reader import RingTail

EXECUTIONS = 6000


def check(x):
    if x % 7 == 0:
        raise ValueError(f"bad {x}")
    return x


@pytest.fixture
def switching():
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def build():
    comps = ComponentRegistry()
    comps.register("Inc", lambda x: x + 1)
    comps.register("Check", check)
    comps.register("Double", lambda x: x * 2)
    registry = ChainRegistry(comps, ring_capacity=64, failures_kept=16)
    ids = [registry.register_chain(
        ChainBuilder(f"chain{k}").step("inc", "Inc", "n", "n1", 1)
        .step("check", "Check", "n1", "n2", 1).step("double", "Double", "n2", "n3", 1).build())
        for k in range(3)]
    return registry, ids


def write(run, count, refused):
    for x in range(count):
        try:
            run(x)
        except ChainStepError:
            pass
        except RuntimeError:  # the shared runner refused a second thread
            refused.append(x)


def check_summary(s, problems, where):
    if s.count and not (s.p50_ns <= s.p99_ns <= s.max_ns):
        problems.append((where, "p99 above max", s))


def check_rows(rows, n, problems):
    spent = rows.end_ns - rows.start_ns
    for r in range(len(rows)):
        if rows.status[r] == STATUS_SUCCEEDED:
            ok = rows.step[r] == n and rows.step_ns[r].sum() == spent[r]
        elif rows.status[r] == STATUS_FAILED:
            step = int(rows.step[r])
            ok = step == 1 and rows.step_ns[r, :step + 1].sum() == spent[r]
        else:
            ok = False
        if not ok:
            problems.append(("torn row", int(rows.seq[r])))


def read(registry, ids, stop, problems, reads):
    tails = {cid: RingTail(registry.runner(cid), from_start=True) for cid in ids}
    while not stop.is_set():
        for cid in ids:
            runner = registry.runner(cid)
            stats = registry.stats(cid)
            check_summary(stats.latency, problems, "stats latency")
            check_summary(stats.failure_latency, problems, "stats failure latency")
            for s in stats.steps:
                check_summary(s.latency, problems, "step latency")
            if stats.succeeded + stats.failures > stats.executions:
                problems.append(("more completed than started", stats))
            if stats.failures != sum(s.errors for s in stats.steps):
                problems.append(("errors disagree", stats))
            check_summary(registry.histogram(cid, "check").latency(), problems, "histogram")
            counts, hstats = runner.histograms.snapshot(3)
            if counts.sum() != hstats[0]:
                problems.append(("snapshot total", int(counts.sum()), hstats))
            snap = runner.snapshot()
            if not (snap.failures == snap.step_errors.sum() == snap.failure_stats[3, 0]):
                problems.append(("runner snapshot", snap.failures, snap.step_errors))
            if not np.array_equal(snap.counts.sum(axis=1), snap.stats[:, 0]):
                problems.append(("runner snapshot totals", snap.stats[:, 0]))
            check_rows(tails[cid].read(), 3, problems)
            for record in registry.failures(cid, limit=4):
                f = record.failure
                value = int(f.input_repr)
                if f.message != f"bad {value}" or value % 7 or \
                        record.end_ns - record.start_ns != sum(s.duration_ns
                                                               for s in record.steps):
                    problems.append(("torn failure", record.seq, f.message, f.input_repr))
            reads.append(1)


def test_reads_stay_consistent_while_threads_record(switching):
    registry, ids = build()
    refused: list = []
    problems: list = []
    reads: list = []
    stop = threading.Event()
    shared = registry.runner(ids[2]).run
    writers = [threading.Thread(target=write, args=(registry.runner(ids[0]).run, EXECUTIONS,
                                                    refused)),
               threading.Thread(target=write, args=(registry.runner(ids[1]).run, EXECUTIONS,
                                                    refused)),
               threading.Thread(target=write, args=(shared, EXECUTIONS, refused)),
               threading.Thread(target=write, args=(shared, EXECUTIONS, refused))]
    readers = [threading.Thread(target=read, args=(registry, ids, stop, problems, reads))
               for _ in range(2)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(120)
    stop.set()
    for t in readers:
        t.join(60)
    assert problems == []
    assert len(reads) >= 3, len(reads)  # reads overlapped the writes
    for cid in ids[:2]:
        stats = registry.stats(cid)
        assert stats.executions == EXECUTIONS
        assert stats.failures == EXECUTIONS // 7  # inputs 1..EXECUTIONS reach the check
    # the shared runner let exactly one thread in at a time: every call either ran or was
    # refused, and what ran was recorded whole
    stats = registry.stats(ids[2])
    assert stats.executions + len(refused) == 2 * EXECUTIONS
    assert stats.succeeded + stats.failures == stats.executions

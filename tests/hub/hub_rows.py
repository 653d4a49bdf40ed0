"""Rows like a node ships: real HDR histograms of recorded values, for the hub's tests."""
import random

from flowchain.histograms import LatencyHistogram
from flowchain.hub.rows import AlertRow, Batch, ExecutionRow, IntervalRow, UsageRow

INTERVAL_NS = 10_000_000_000
T0 = 1_767_225_600_000_000_000
"""2026-01-01T00:00:00Z in epoch ns."""


def recorded(seed: int, n: int = 200) -> LatencyHistogram:
    """A histogram of ``n`` latencies (ns) drawn from a seeded log-normal-ish spread."""
    rng = random.Random(seed)
    return LatencyHistogram.from_values(int(rng.lognormvariate(10.0, 1.2)) + 1 for _ in range(n))


def interval(node: str, local_id: int, *, tenant: str = "acme", chain: str = "decide",
             step: str = "", slot: int = 0, seed: int = 0, errors: int = 0) -> IntervalRow:
    hist = recorded(seed)
    return IntervalRow(node, local_id, "run-1", tenant, chain, f"{chain}-id", step,
                       -1 if step == "" else 0, T0 + slot * INTERVAL_NS,
                       T0 + (slot + 1) * INTERVAL_NS, hist.count, errors, 50_000,
                       hist.encode(), None)


def execution(node: str, local_id: int, *, tenant: str = "acme", chain: str = "decide",
              status: str = "failed", start: int = 0) -> ExecutionRow:
    return ExecutionRow(node, local_id, "run-1", f"{node}-e{local_id}", tenant, chain,
                        f"{chain}-id", status, status != "failed", T0 + start, 1234,
                        "score" if status == "failed" else None,
                        '{"error": "ValueError: bad tick"}')


def alert(node: str, local_id: int, *, tenant: str = "acme", end_ns=None, alerts: int = 1,
          start: int = 0) -> AlertRow:
    return AlertRow(node, local_id, "run-1", "escalation", tenant, "decide", "decide-id",
                    "score", T0 + start, end_ns, alerts, "score is slow", '{"p99_ns": 900}')


def usage(node: str, *, tenant: str = "acme", used: int = 10, updated_ns: int = T0,
          period: str = "2026-01-01") -> UsageRow:
    return UsageRow(node, tenant, period, used, used + 5, 0, updated_ns)


def full_batch(node: str, first: int = 1, n: int = 4, tenant: str = "acme") -> Batch:
    """A batch with ``n`` rows of each local kind (ids from ``first``) and one usage row."""
    ids = range(first, first + n)
    return Batch(node,
                 intervals=tuple(interval(node, i, tenant=tenant, slot=i, seed=i) for i in ids),
                 executions=tuple(execution(node, i, tenant=tenant, start=i) for i in ids),
                 alerts=tuple(alert(node, i, tenant=tenant, start=i) for i in ids),
                 usage=(usage(node, tenant=tenant, used=first + n),))

"""Measurements made up in tests: a chain of steps with profiled calls, built by hand."""
import numpy as np

from flowchain.optimizer.measurements import ChainMeasurements, StepMeasurements


def step(name, index, wall_ns, *, cpu_ns=None, alloc=0, hashes=None, items=None,
         expected_ns=1_000_000, elementwise=False, deterministic=False, component=None):
    n = len(wall_ns)
    walls = tuple(int(w) for w in wall_ns)
    return StepMeasurements(
        name=name, index=index, component=component or name.title(), expected_ns=expected_ns,
        p50_ns=float(np.percentile(walls, 50)), p99_ns=float(np.percentile(walls, 99)),
        wall_ns=walls, cpu_ns=tuple(int(c) for c in (cpu_ns if cpu_ns is not None else walls)),
        alloc_bytes=tuple([alloc] * n),
        input_hashes=tuple(hashes if hashes is not None else (f"{i:016x}" for i in range(n))),
        items=tuple(items if items is not None else [None] * n),
        elementwise=elementwise, deterministic=deterministic)


def chain(*steps, name="c"):
    walls = np.array([s.wall_ns for s in steps], dtype=np.int64).T
    totals = walls.sum(axis=1)
    rows = np.tile(np.arange(walls.shape[0])[:, None], (1, len(steps)))
    return ChainMeasurements(name, f"{name}@0000000000000000", walls.shape[0],
                             float(np.percentile(totals, 50)), float(np.percentile(totals, 99)),
                             tuple(steps), walls, rows)

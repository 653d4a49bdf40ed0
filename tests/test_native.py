"""The compiled engine is what runs: no pure-Python fallback, a real clock, loud failures."""
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import flowchain
from flowchain._native import engine
from flowchain.histograms import DEFAULT_SETTINGS


def test_the_engine_is_the_compiled_extension():
    # fails (never skips) when flowchain._engine is not a compiled extension module
    suffix = Path(engine.__file__).suffix
    assert suffix in (".so", ".pyd"), f"flowchain._engine is not compiled: {engine.__file__}"
    assert type(engine.ChainRunner.run).__name__ in ("method_descriptor", "cython_function_or_method")
    assert flowchain.ChainRunner is engine.ChainRunner


def test_importing_without_the_engine_says_how_to_build(tmp_path):
    # a copy of the package without the compiled module refuses its first engine-backed name
    # (the package root itself is lazy, so the bridge and the wire protocol import without it)
    import shutil
    src = Path(flowchain.__file__).parent
    dst = tmp_path / "flowchain"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    # -S: no site-packages, so the editable install's finder cannot supply the real engine
    proc = subprocess.run([sys.executable, "-S", "-c", "from flowchain import ChainRunner"], cwd=tmp_path,
                          capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path),
                                                               "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0
    assert "native engine (flowchain._engine) is not built" in proc.stderr
    assert "pip install -e ." in proc.stderr


def test_clock_is_monotonic_and_calibrated():
    info = flowchain.clock_info()
    assert info["source"] in ("counter", "os")
    a = engine.now_ns()
    t0 = time.monotonic_ns()
    time.sleep(0.05)
    b = engine.now_ns()
    elapsed = time.monotonic_ns() - t0
    assert b > a
    assert abs((b - a) - elapsed) < 0.02 * elapsed + 2_000_000
    # the engine clock tracks the OS monotonic clock it was calibrated against
    assert abs(engine.now_ns() - engine.os_now_ns()) < 50_000_000


def test_os_clock_can_be_forced():
    out = subprocess.run([sys.executable, "-c",
                          "import flowchain; print(flowchain.clock_info()['source'])"],
                         capture_output=True, text=True, env={**__import__("os").environ,
                                                              "FLOWCHAIN_CLOCK": "os"})
    assert out.stdout.strip() == "os"


def test_setup_py_fails_loudly_without_cython(tmp_path):
    root = Path(flowchain.__file__).parent.parent
    blocker = tmp_path / "Cython"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('no Cython here')\n")
    (blocker / "Build.py").write_text("raise ImportError('no Cython here')\n")
    proc = subprocess.run([sys.executable, str(root / "setup.py"), "--version"], cwd=root,
                          capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode != 0
    assert "flowchain needs Cython>=3.0" in proc.stderr + proc.stdout


# ---------------------------------------------------------------- the engine's boundary


def test_status_codes_are_defined_once_by_the_engine():
    from flowchain import _native, registry
    from flowchain.execution import ExecutionStatus
    from flowchain.observe import _reader, history, otel

    codes = (engine.STATUS_PENDING, engine.STATUS_RUNNING, engine.STATUS_SUCCEEDED,
             engine.STATUS_FAILED)
    assert len(set(codes)) == 4
    assert engine.STATUS_NAMES == {c: s.value for c, s in zip(codes, ExecutionStatus, strict=False)}
    assert (_native.STATUS_RUNNING, _native.STATUS_FAILED) == (codes[1], codes[3])
    # the modules that read ring status columns use the engine's codes, not copies
    assert _reader.STATUS_SUCCEEDED is _native.STATUS_SUCCEEDED
    assert _reader.STATUS_FAILED is _native.STATUS_FAILED
    assert history.STATUS_SUCCEEDED is otel.STATUS_SUCCEEDED is _native.STATUS_SUCCEEDED
    assert registry._STATUS[_native.STATUS_FAILED] is ExecutionStatus.FAILED


@pytest.mark.parametrize("change, message", [
    ({"counts_len": 1024}, "counts_len=1024 does not fit its other fields"),
    ({"sub_bucket_half_count": 512}, "is not 2\\*\\*sub_bucket_half_count_magnitude"),
    ({"sub_bucket_mask": 7}, "sub_bucket_mask=7 is not"),
    ({"highest_trackable_value": 1}, "below twice the lowest"),
    ({"unit_magnitude": 70}, "magnitudes out of range"),
    ({"counts_len": -5}, "outside 0..2\\*\\*63-1"),
    ({"counts_len": 3.5}, "'counts_len' must be an int, got float"),
    ({"counts_len": None}, "'counts_len' must be an int"),
])
def test_hdr_counts_refuse_a_layout_that_does_not_fit(change, message):
    layout = {**DEFAULT_SETTINGS.layout(), **change}
    with pytest.raises((ValueError, TypeError), match=message):
        engine.HdrCounts(2, layout)


def test_hdr_counts_refuse_a_layout_missing_a_field():
    layout = DEFAULT_SETTINGS.layout()
    del layout["sub_bucket_mask"]
    with pytest.raises(ValueError, match="missing 'sub_bucket_mask'"):
        engine.HdrCounts(1, layout)
    with pytest.raises(ValueError, match="at least one histogram"):
        engine.HdrCounts(0, DEFAULT_SETTINGS.layout())


def test_hdr_counts_check_every_index_and_percentile():
    h = engine.HdrCounts(2, DEFAULT_SETTINGS.layout())
    h.record(1, 1000)
    assert h.value_at_percentile(1, 50.0) == 1000 and h.value_at_percentile(0, 50.0) == 0
    for bad in (2, -1, 1 << 40):
        with pytest.raises(IndexError, match="outside 0..1"):
            h.value_at_percentile(bad, 50.0)
        with pytest.raises(IndexError):
            h.snapshot(bad)
        with pytest.raises(IndexError):
            h.record(bad, 1)
    for bad in (-0.1, 100.5, float("nan")):
        with pytest.raises(ValueError, match="percentile must be within 0..100"):
            h.value_at_percentile(1, bad)
    with pytest.raises(ValueError, match="outside 0.."):
        h.index_of(-1)
    # the public arrays are views the caller cannot write through
    with pytest.raises(ValueError):
        h.counts[0, 0] = 5
    with pytest.raises(ValueError):
        h.stats[0, 0] = 5


def test_hdr_snapshots_copy_counts_and_totals_together():
    h = engine.HdrCounts(3, DEFAULT_SETTINGS.layout())
    for v in (10, 20, 30, 10 ** 12):
        h.record(2, v)
    counts, stats = h.snapshot(2)
    assert stats[0] == counts.sum() == 4 and (stats[1], stats[2]) == (10, 10 ** 12)
    every, every_stats = h.snapshot_all()
    assert every.shape == (3, counts.shape[0]) and np.array_equal(every[2], counts)
    assert list(every_stats[:, 0]) == [0, 0, 4] and h.total(2) == 4
    counts[:] = 0  # a copy: the histogram is untouched
    assert h.snapshot(2)[0].sum() == 4
    h.reset()
    assert h.snapshot(2)[0].sum() == 0 and h.snapshot(2)[1] == (0, 2 ** 63 - 1, 0, 0)


def test_failure_ring_rounds_up_and_reads_whole_rows():
    ring = engine.FailureRing(3, 2)
    assert ring.capacity == 4 and ring.written == 0 and ring.read(0) is None
    with pytest.raises(ValueError):
        engine.FailureRing(0, 2)
    with pytest.raises(ValueError):
        engine.FailureRing(4, 0)


def test_the_busy_guard_is_set_before_anything_can_switch_threads():
    """A second thread arriving while the first is inside Python code (here the context's
    __hash__, the first thing run() calls) is refused, never let in."""
    import threading

    from flowchain import ChainBuilder, ChainRegistry, ComponentRegistry

    comps = ComponentRegistry()
    comps.register("Id", lambda x: x)
    registry = ChainRegistry(comps)
    runner = registry.runner(registry.register_chain(
        ChainBuilder("g").step("a", "Id", "x", "x", 1).build()))
    inside, other_done = threading.Event(), threading.Event()
    outcome = {}

    class SlowHash:
        def __hash__(self):
            inside.set()
            other_done.wait(5)  # releases the GIL: the other thread runs now
            return 1

    def other():
        inside.wait(5)
        try:
            outcome["other"] = runner.run(2)
        except RuntimeError as exc:
            outcome["other"] = exc
        other_done.set()

    t = threading.Thread(target=other)
    t.start()
    assert runner.run(1, SlowHash()) == 1
    t.join(5)
    assert isinstance(outcome["other"], RuntimeError)
    assert "already executing" in str(outcome["other"])
    assert runner.executions == 1 and not runner.busy

"""The engine's per-thread allocation counter (native/alloc.h): what a window on one thread
counts, what it leaves out, and that it holds under many threads and tracemalloc."""
import threading

import pytest

from flowchain._native import engine

MB = 1_000_000


def _window(fn):
    engine.alloc_window_start()
    try:
        fn()
    finally:
        nbytes = engine.alloc_window_bytes()
    return nbytes


def test_ten_megabytes_of_python_objects_are_counted_within_a_factor():
    kept = []
    nbytes = _window(lambda: kept.append([bytes(1000) for _ in range(10_000)]))
    # 10,000 bytes objects of 1033 bytes each, and the list's (realloc-grown) pointer array
    assert 10 * MB <= nbytes < 2 * 10 * MB
    assert engine.alloc_counter_installed()


def test_a_window_that_allocates_nothing_counts_nothing():
    x = 3
    assert _window(lambda: x + 1) == 0
    engine.alloc_window_start()
    assert engine.alloc_window_bytes() == 0


def test_frees_are_not_subtracted_and_realloc_counts_the_new_size():
    def churn():
        for _ in range(10):
            del bytearray(100_000)[:]  # allocated, then shrunk to nothing by realloc

    nbytes = _window(churn)
    assert 10 * 100_000 <= nbytes < 2 * 10 * 100_000


def _handler_name(arr=None):
    pytest.importorskip("numpy")
    try:
        from numpy._core.multiarray import get_handler_name
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import get_handler_name
    return get_handler_name() if arr is None else get_handler_name(arr)


def test_numpy_array_data_is_counted():
    np = pytest.importorskip("numpy")
    kept = []
    nbytes = _window(lambda: kept.append(np.ones(1_000_000)))
    assert 8 * MB <= nbytes < 8 * MB + 10_000  # its 8 MB of data (malloc) and its object
    nbytes = _window(lambda: kept.append(np.zeros((1000, 500), dtype=np.int32)))
    assert 2 * MB <= nbytes < 2 * MB + 10_000  # calloc
    _window(lambda: kept.append(np.ones(1000)))
    nbytes = _window(lambda: kept[-1].resize(250_000, refcheck=False))
    assert 2 * MB <= nbytes < 2 * MB + 10_000  # realloc: the new size
    before = np.ones(1000)  # allocated by numpy's own handler, which it keeps:
    assert _window(lambda: before.resize(250_000, refcheck=False)) < 10_000  # not counted


def test_numpy_handler_is_set_in_the_window_only_and_put_back_after():
    np = pytest.importorskip("numpy")
    before = _handler_name()
    assert before != "flowchain_alloc_counter"
    engine.alloc_window_start()
    try:
        assert _handler_name() == "flowchain_alloc_counter"
        engine.alloc_window_start()  # a nested window keeps the outermost one's handler
        inner = np.ones(10)
        engine.alloc_window_bytes()
        assert _handler_name() == "flowchain_alloc_counter"
    finally:
        engine.alloc_window_bytes()
    assert _handler_name() == before
    assert _handler_name(inner) == "flowchain_alloc_counter"  # the array keeps its allocator
    assert _handler_name(np.ones(10)) == before
    # a window whose step raised, closed by its caller afterwards, puts it back all the same
    with pytest.raises(ZeroDivisionError):
        _window(lambda: [np.ones(1000), 1 / 0])
    assert _handler_name() == before and engine.alloc_window_depth() == 0


def test_arrays_cross_the_window_edges_without_harm():
    np = pytest.importorskip("numpy")
    outside = [np.arange(100_000.0) for _ in range(4)]
    inside = []

    def step():
        inside.extend(np.full(100_000, float(i)) for i in range(4))
        outside[0].resize(200_000, refcheck=False)  # an outside array grown inside
        del outside[1]  # an outside array freed inside

    nbytes = _window(step)
    assert 4 * 800_000 <= nbytes < 4 * 800_000 + 50_000
    inside[0].resize(300_000, refcheck=False)  # an inside array grown outside: not counted
    for a in inside:
        a += 1
    assert float(inside[1][99_999]) == 2.0 and float(outside[0][99_999]) == 99_999.0
    engine.alloc_window_start()
    nbytes = engine.alloc_window_bytes()
    del inside[:], outside[:]  # freed outside, through the handler they were allocated with
    assert nbytes == 0
    assert _window(lambda: np.ones(10) + 1) < 10_000  # and counting again afterwards


def test_another_threads_numpy_arrays_are_not_counted():
    np = pytest.importorskip("numpy")
    seen = []
    go, stop = threading.Event(), threading.Event()

    def hog():
        seen.append(_handler_name())
        go.set()
        while not stop.is_set():
            seen.append(np.ones(100_000).sum())
            del seen[1:-1]

    engine.alloc_window_start()
    t = threading.Thread(target=hog)
    try:
        t.start()  # started inside the window: its context is its own
        go.wait(10)
        stop.wait(0.05)  # the GIL goes to the hog, which allocates megabytes meanwhile
    finally:
        nbytes = engine.alloc_window_bytes()
        stop.set()
        t.join()
    assert seen[0] != "flowchain_alloc_counter"
    assert nbytes < 100_000  # the thread object and its bookkeeping, none of the hog's arrays


def test_windows_nest_and_an_outer_one_holds_the_inner_ones():
    engine.alloc_window_start()
    a = [bytes(10_000)]
    engine.alloc_window_start()
    b = [bytes(20_000)]
    inner = engine.alloc_window_bytes()
    outer = engine.alloc_window_bytes()
    assert 20_000 <= inner < 21_000
    assert 30_000 <= outer < 32_000 and a and b
    assert engine.alloc_window_depth() == 0


def test_unbalanced_windows_are_refused_on_the_thread_that_misuses_them():
    with pytest.raises(RuntimeError, match="no allocation window is open on this thread"):
        engine.alloc_window_bytes()
    opened = 0
    try:
        with pytest.raises(RuntimeError, match="nest at most 16 deep"):
            for _ in range(17):
                engine.alloc_window_start()
                opened += 1
        assert opened == 16 and engine.alloc_window_depth() == 16
    finally:
        for _ in range(opened):
            engine.alloc_window_bytes()
    assert engine.alloc_window_depth() == 0


def test_another_thread_allocating_meanwhile_is_not_counted():
    go, stop = threading.Event(), threading.Event()
    done = []

    def hog():
        go.set()
        while not stop.is_set():
            done.append([bytearray(1000) for _ in range(1000)])
            del done[:-1]

    t = threading.Thread(target=hog)
    t.start()
    try:
        go.wait(10)
        engine.alloc_window_start()
        stop.wait(0.05)  # the GIL goes to the hog, which allocates megabytes meanwhile
        nbytes = engine.alloc_window_bytes()
    finally:
        stop.set()
        t.join()
    assert len(done) == 1
    assert nbytes < 4096


def test_many_threads_each_count_their_own():
    sizes = [1000 * (i + 1) for i in range(32)]
    results: dict[int, int] = {}
    start = threading.Barrier(len(sizes))

    def work(i: int) -> None:
        start.wait(10)
        total = 0
        for _ in range(20):
            engine.alloc_window_start()
            kept = [bytes(sizes[i]) for _ in range(100)]
            total += engine.alloc_window_bytes()
            del kept
        results[i] = total

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sizes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, size in enumerate(sizes):
        expected = 20 * 100 * size
        assert expected <= results[i] < expected + 20 * 100 * 64 + 20 * 4096, i


def test_tracemalloc_started_and_stopped_around_it_leaves_it_counting():
    import tracemalloc

    engine.install_alloc_counter()
    was = tracemalloc.is_tracing()
    tracemalloc.start()  # wraps the counter's allocators...
    try:
        assert 100_000 <= _window(lambda: [bytes(100_000)]) < 110_000
    finally:
        if not was:
            tracemalloc.stop()  # ...and puts them back
    assert engine.alloc_counter_installed()
    assert 100_000 <= _window(lambda: [bytes(100_000)]) < 110_000


def test_a_counter_installed_under_tracemalloc_counts_again_after_its_stop():
    """In a fresh process: tracemalloc started first, the counter wrapping it, then
    tracemalloc.stop() putting back the allocators it saved (the counter's dropped): the next
    window wraps them again."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import tracemalloc
        from flowchain._native import engine
        assert not engine.alloc_counter_installed()
        tracemalloc.start()
        engine.install_alloc_counter()
        assert engine.alloc_counter_installed()
        tracemalloc.stop()
        assert not engine.alloc_counter_installed()
        engine.alloc_window_start()
        kept = [bytes(100_000)]
        n = engine.alloc_window_bytes()
        assert 100_000 <= n < 110_000, n
        assert engine.alloc_counter_installed()
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"

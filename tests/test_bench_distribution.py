"""flowchain.bench.distribution: the one HDR summary and interleaving every benchmark uses."""
from __future__ import annotations

import numpy as np
import pytest

from flowchain.bench.distribution import interleave, median_summary, new_histogram, summarize_histogram, summarize_ns


def test_summary_of_known_values():
    values = np.arange(1, 1001, dtype=np.int64) * 1000  # 1 us .. 1 ms
    s = summarize_ns(values)
    assert s["count"] == 1000
    assert s["p50_ns"] == pytest.approx(500_000, rel=1e-3)
    assert s["p99_ns"] == pytest.approx(990_000, rel=1e-3)
    assert s["p999_ns"] == pytest.approx(999_000, rel=1e-3)
    assert s["max_ns"] == pytest.approx(1_000_000, rel=1e-3)
    assert all(isinstance(v, int) for v in s.values())


def test_zero_durations_count_as_one_ns_and_empty_is_zeros():
    assert summarize_ns(np.zeros(3, dtype=np.int64))["max_ns"] == 1
    assert summarize_ns([]) == {"count": 0, "p50_ns": 0, "p99_ns": 0, "p999_ns": 0, "max_ns": 0}


def test_summarize_ns_agrees_with_a_histogram_recorded_by_hand():
    values = np.random.default_rng(3).lognormal(9, 1.5, 5_000).astype(np.int64) + 1
    hist = new_histogram()
    for v in values.tolist():
        hist.record_value(v)
    assert summarize_ns(values) == summarize_histogram(hist)


def test_non_integer_input_is_refused_by_name():
    with pytest.raises(ValueError, match="summarize_ns"):
        summarize_ns(["fast", "slow"])


def test_interleave_alternates_ways_and_passes_the_repetition():
    order = []
    out = interleave({"a": lambda rep: order.append(("a", rep)) or rep,
                      "b": lambda rep: order.append(("b", rep)) or -rep}, 5,
                     before_each=lambda rep: order.append(("start", rep)))
    assert out == {"a": [0, 1, 2, 3, 4], "b": [0, -1, -2, -3, -4]}
    assert order[:6] == [("start", 0), ("a", 0), ("b", 0), ("start", 1), ("a", 1), ("b", 1)]


def test_interleave_needs_five_repetitions():
    with pytest.raises(ValueError, match="at least 5"):
        interleave({"a": lambda rep: rep}, 4)


def test_median_summary_takes_each_key_s_median():
    reps = [{"p50_ns": p, "p99_ns": 10 * p, "p999_ns": 0, "max_ns": 0} for p in (5, 1, 3, 9, 7)]
    assert median_summary(reps) == {"p50_ns": 5, "p99_ns": 50, "p999_ns": 0, "max_ns": 0}
    with pytest.raises(ValueError, match="p99_ns"):
        median_summary([{"p50_ns": 1}], ("p50_ns", "p99_ns"))
    with pytest.raises(ValueError, match="no repetitions"):
        median_summary([])

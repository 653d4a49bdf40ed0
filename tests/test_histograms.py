"""Native HDR counts vs the hdrhistogram package: same layout, same percentiles, codec, merge."""
import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from flowchain import HistogramSettings, LatencyHistogram
from flowchain._native import engine


@pytest.mark.parametrize("settings", [HistogramSettings(), HistogramSettings(1, 10**9, 2),
                                      HistogramSettings(1000, 10**12, 3)])
def test_native_counts_equal_hdrhistogram_on_the_same_values(settings):
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.lognormal(8, 2.5, 20_000).astype(np.int64),
                             [0, 1, 2, 1023, 1024, 2047, 2048, settings.highest]])
    native = engine.HdrCounts(1, settings.layout())
    reference = settings.new()
    for v in values:
        v = int(min(v, settings.highest))
        native.record(0, v)
        reference.record_value(v)
        assert native.index_of(v) == reference._counts_index_for(v)
    ours = LatencyHistogram.from_counts(*native.snapshot(0), settings=settings)
    assert np.array_equal(np.frombuffer(ours.hdr.counts, dtype=np.int64),
                          np.frombuffer(reference.counts, dtype=np.int64))
    for p in (0, 1, 50, 90, 99, 99.9, 99.99, 100):
        assert ours.percentile(p) == reference.get_value_at_percentile(p)
    assert ours.count == reference.get_total_count()
    assert ours.max == reference.get_max_value() and ours.min == reference.get_min_value()
    assert ours.mean == pytest.approx(reference.get_mean_value())


def test_values_above_the_highest_are_clamped_and_counted():
    settings = HistogramSettings(1, 10_000, 3)
    native = engine.HdrCounts(2, settings.layout())
    native.record(1, 50_000)
    native.record(1, -5)
    counts, (total, minimum, maximum, overflow) = native.snapshot(1)
    assert (total, minimum, maximum, overflow) == (2, 0, 10_000, 1)
    assert native.snapshot(0)[1][0] == 0
    with pytest.raises(IndexError):
        native.record(2, 1)


def test_encode_decode_is_the_standard_format_and_merges():
    a = LatencyHistogram.from_values(range(1, 10_001))
    b = LatencyHistogram.from_values(range(10_001, 20_001))
    encoded = a.encode()
    assert isinstance(encoded, str) and encoded.startswith("HISTF")
    # the package itself decodes it: the format is HdrHistogram's, not ours
    assert HdrHistogram.decode(encoded).get_total_count() == 10_000
    merged = LatencyHistogram.decode(encoded) + LatencyHistogram.decode(b.encode())
    assert merged.count == 20_000
    assert merged.percentile(50) == LatencyHistogram.from_values(range(1, 20_001)).percentile(50)
    assert a.count == 10_000  # + does not mutate


def test_summary_and_native_percentile_estimate():
    native = engine.HdrCounts(1, HistogramSettings().layout())
    for v in range(1, 1001):
        native.record(0, v * 1000)
    h = LatencyHistogram.from_counts(*native.snapshot(0))
    s = h.summary()
    assert s["count"] == 1000 and s["min_ns"] == 1000
    assert s["p50_ns"] == pytest.approx(500_000, rel=1e-3)
    assert s["p99_ns"] == pytest.approx(990_000, rel=1e-3)
    assert native.value_at_percentile(0, 50.0) == h.hdr.get_lowest_equivalent_value(s["p50_ns"])
    empty = LatencyHistogram()
    assert empty.summary()["p99_ns"] == 0 and empty.count == 0


def test_decode_rejects_garbage():
    with pytest.raises(ValueError, match="not an encoded HdrHistogram"):
        LatencyHistogram.decode("definitely not base64 hdr")


def test_counts_of_the_wrong_layout_are_rejected():
    with pytest.raises(ValueError, match="do not fit"):
        LatencyHistogram.from_counts(np.zeros(10, dtype=np.int64), (0, 0, 0, 0))


def test_a_hand_made_counts_pair_cannot_make_percentiles_disagree():
    settings = HistogramSettings()
    h = engine.HdrCounts(1, settings.layout())
    for v in (100, 200, 300, 40_000):
        h.record(0, v)
    counts, stats = h.snapshot(0)
    # a total that disagrees with the counts (as a torn copy would) is not trusted
    hist = LatencyHistogram.from_counts(counts, (stats[0] + 5, *stats[1:]), settings)
    s = hist.summary()
    assert s["count"] == 4
    assert s["p50_ns"] <= s["p99_ns"] <= s["max_ns"]
    assert set(hist.percentiles((50.0, 99.0, 99.999))) == {50.0, 99.0, 99.999}

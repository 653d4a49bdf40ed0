"""The fast merge of encoded histograms equals the hdrhistogram package's merge, bucket for bucket."""
import random

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from flowchain.histograms import LatencyHistogram
from flowchain.hub.merge import merge_encoded, merged_counts


def _counts(h):
    return np.frombuffer(h.hdr.counts, dtype=np.int64)


def _package_merge(texts):
    out = LatencyHistogram()
    for t in texts:
        out.merge(LatencyHistogram.decode(t))
    return out


def _random_histogram(rng):
    h = LatencyHistogram()
    for _ in range(rng.randrange(0, 300)):
        h.hdr.record_value(int(rng.lognormvariate(rng.uniform(3, 22), rng.uniform(0.1, 2.0)))
                           % 3_600_000_000_000 + 1, rng.choice((1, 1, 1, 7, 1000, 1 << 40)))
    return h


@pytest.mark.parametrize("seed", range(5))
def test_random_histograms_merge_exactly(seed):
    rng = random.Random(seed)
    texts = [_random_histogram(rng).encode() for _ in range(40)]
    want = _package_merge(texts)
    got = merge_encoded(texts)
    assert np.array_equal(_counts(got), _counts(want))
    assert got.count == want.count and got.max == want.max
    assert got.percentiles((50.0, 90.0, 99.0, 99.9, 100.0)) == \
        want.percentiles((50.0, 90.0, 99.0, 99.9, 100.0))
    nz = np.flatnonzero(_counts(want))
    if nz.size:  # the smallest value's bucket, as the package's decoder sets it
        assert got.min == LatencyHistogram.decode(texts[0]).hdr.get_value_from_index(int(nz[0]))


def test_edge_histograms_merge_exactly():
    empty = LatencyHistogram().encode()
    one = LatencyHistogram.from_values([1]).encode()
    top = LatencyHistogram.from_values([3_600_000_000_000, 7]).encode()
    huge = LatencyHistogram()
    huge.hdr.record_value(1000, 1 << 57)  # a count needing the 9-byte word
    texts = [empty, one, top, huge.encode(), one]
    assert np.array_equal(_counts(merge_encoded(texts)), _counts(_package_merge(texts)))
    assert merge_encoded([]).count == 0
    assert merge_encoded([empty]).count == 0


def test_another_layout_is_re_recorded_into_the_default_one():
    other = HdrHistogram(1, 1_000_000, 2)
    for v in (10, 500, 90_000):
        other.record_value(v)
    text = other.encode().decode()
    mine = LatencyHistogram.from_values([20, 30]).encode()
    want = _package_merge([mine, text])
    assert np.array_equal(merged_counts([mine, text]), _counts(want))
    assert merge_encoded([mine, text]).count == 5


@pytest.mark.parametrize("text", ["QUJDREVGRw==", "not base64 at all", ""])
def test_malformed_texts_are_named(text):
    good = LatencyHistogram.from_values([5]).encode()
    with pytest.raises(ValueError, match="HdrHistogram"):
        merge_encoded([good, text])

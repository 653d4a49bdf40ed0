"""DataProcessor: mid, spread, and 1 s / 1 min bars against a plain-Python reference."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowchain.ingest import BatchStageError, DataBridge, DataProcessor, DataValidator, RawTickBatch, compute_bars
from flowchain.ingest.batch import BatchStage
from flowchain.ingest.processing import merge_bar
from flowchain.ingest.synthetic import synthetic_ticks
from flowchain.store import BAR_DTYPE, TIMEFRAMES


def reference_bars(ticks, bar_ms):
    """{start: (open, high, low, close, count, volume, first_msc, last_msc)} tick by tick."""
    bars = {}
    for rec in ticks:
        t = int(rec["time_msc"])
        mid = (float(rec["bid"]) + float(rec["ask"])) * 0.5
        start = t - t % bar_ms
        if start not in bars:
            bars[start] = [mid, mid, mid, mid, 0, 0.0, t, t]
        bar = bars[start]
        bar[1], bar[2], bar[3] = max(bar[1], mid), min(bar[2], mid), mid
        bar[4] += 1
        bar[5] += float(rec["volume_real"])
        bar[7] = t
    return {start: tuple(v) for start, v in bars.items()}


def as_dict(bars):
    return {int(b["start_msc"]): (float(b["open"]), float(b["high"]), float(b["low"]),
                                  float(b["close"]), int(b["tick_count"]), float(b["volume"]),
                                  int(b["first_msc"]), int(b["last_msc"])) for b in bars}


def chain(symbol="EURUSD"):
    bridge, validator, processor = DataBridge(), DataValidator(), DataProcessor()

    def run(ticks, first_seq=0):
        return processor(validator(bridge(RawTickBatch(symbol, first_seq, ticks))))
    return run, processor


def assert_bars_equal(got, expected):
    assert got.keys() == expected.keys()
    for start in expected:
        g, e = got[start], expected[start]
        np.testing.assert_allclose(g[:4], e[:4], rtol=0, atol=1e-12)
        assert g[4] == e[4] and g[6:] == e[6:]
        assert g[5] == pytest.approx(e[5])


def test_mid_and_spread():
    ticks = synthetic_ticks(300, seed=2)
    run, _ = chain()
    batch = run(ticks)
    assert batch.stage is BatchStage.PROCESSED
    np.testing.assert_allclose(batch.mid, (ticks["bid"] + ticks["ask"]) / 2)
    np.testing.assert_allclose(batch.spread, ticks["ask"] - ticks["bid"])
    assert (batch.spread > 0).all()


@pytest.mark.parametrize("label", sorted(TIMEFRAMES))
def test_bars_of_one_batch_match_the_reference(label):
    ticks = synthetic_ticks(3000, seed=5, mean_gap_ms=60)
    run, _ = chain()
    batch = run(ticks)
    bars = batch.bars[label]
    assert bars.dtype == BAR_DTYPE
    assert (np.diff(bars["start_msc"]) > 0).all()
    assert (bars["start_msc"] % TIMEFRAMES[label] == 0).all()
    assert_bars_equal(as_dict(bars), reference_bars(ticks, TIMEFRAMES[label]))
    assert int(bars["tick_count"].sum()) == 3000


def test_bars_spanning_batches_merge():
    ticks = synthetic_ticks(4000, seed=9, mean_gap_ms=25)
    cuts = [0, 7, 500, 501, 1333, 2900, 4000]
    run, processor = chain()
    final = {label: {} for label in TIMEFRAMES}
    for lo, hi in itertools.pairwise(cuts):
        batch = run(ticks[lo:hi], first_seq=lo)
        for label, bars in batch.bars.items():
            final[label].update(as_dict(bars))  # later emissions of a bar replace earlier ones
    for label, bar_ms in TIMEFRAMES.items():
        assert_bars_equal(final[label], reference_bars(ticks, bar_ms))
        open_bar = processor.open_bar("EURUSD", label)
        assert int(open_bar["last_msc"][0]) == int(ticks["time_msc"][-1])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 399), max_size=6), st.integers(0, 10_000))
def test_any_split_gives_the_same_bars(cut_points, seed):
    ticks = synthetic_ticks(400, seed=seed, mean_gap_ms=15, same_ms_share=0.2)
    cuts = [0, *sorted(set(cut_points)), 400]
    run, _ = chain()
    final = {}
    for lo, hi in itertools.pairwise(cuts):
        final.update(as_dict(run(ticks[lo:hi], first_seq=lo).bars["1s"]))
    assert_bars_equal(final, reference_bars(ticks, 1000))


def test_rejected_ticks_make_no_bars():
    ticks = synthetic_ticks(10, seed=1)
    ticks["bid"][3] = np.nan
    run, _ = chain()
    batch = run(ticks)
    assert int(batch.bars["1m"]["tick_count"].sum()) == 9
    assert len(batch.mid) == 9


def test_empty_batch_has_no_bars_and_keeps_the_open_bar():
    ticks = synthetic_ticks(10, seed=1)
    run, processor = chain()
    run(ticks)
    before = processor.open_bar("EURUSD", "1s")
    batch = run(ticks[:0], first_seq=10)
    assert all(len(bars) == 0 for bars in batch.bars.values())
    assert processor.open_bar("EURUSD", "1s").tobytes() == before.tobytes()


def test_symbols_keep_their_own_open_bars():
    ticks = synthetic_ticks(50, seed=4)
    run_eur, processor = chain("EURUSD")
    validator, bridge = DataValidator(), DataBridge()
    run_eur(ticks[:25])
    other = ticks[25:].copy()
    other["bid"] += 1.0
    other["ask"] += 1.0
    processor(validator(bridge(RawTickBatch("GBPUSD", 0, other))))
    batch = run_eur(ticks[25:], first_seq=25)
    expected = reference_bars(ticks, 60_000)
    assert_bars_equal(as_dict(batch.bars["1m"][-1:]),
                      {k: expected[k] for k in [max(expected)]})
    processor.reset("EURUSD")
    assert processor.open_bar("EURUSD", "1m") is None
    assert processor.open_bar("GBPUSD", "1m") is not None


def test_compute_bars_checks_its_arguments():
    with pytest.raises(ValueError, match="positive number of milliseconds"):
        compute_bars(np.zeros(1, np.int64), np.ones(1), np.ones(1), 0)
    with pytest.raises(ValueError, match="2 prices"):
        compute_bars(np.zeros(1, np.int64), np.ones(2), np.ones(1), 1000)
    assert len(compute_bars(np.zeros(0, np.int64), np.ones(0), np.ones(0), 1000)) == 0


def test_merge_bar_takes_open_from_the_earlier_and_close_from_the_later():
    a = compute_bars(np.array([1000, 1500]), np.array([2.0, 3.0]), np.ones(2), 1000)
    b = compute_bars(np.array([1200, 1700]), np.array([1.0, 4.0]), np.ones(2), 1000)
    merged = b.copy()
    merge_bar(merged, a)
    assert as_dict(merged) == {1000: (2.0, 4.0, 1.0, 4.0, 4, 4.0, 1000, 1700)}
    with pytest.raises(ValueError, match="only one bar's ticks merge"):
        merge_bar(a, compute_bars(np.array([2000]), np.ones(1), np.ones(1), 1000))


def test_timeframes_are_checked():
    with pytest.raises(ValueError, match="'5s' has length 0"):
        DataProcessor({"5s": 0})


def test_wrong_stage_is_refused():
    decoded = DataBridge()(RawTickBatch("EURUSD", 0, synthetic_ticks(3)))
    with pytest.raises(BatchStageError, match="stage DECODED.*after DataValidator"):
        DataProcessor()(decoded)

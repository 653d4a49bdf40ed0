"""DataValidator: every reject reason, cross-batch state, counts, quarantine, and a reference."""
import math

import numpy as np
import pytest
from flowchain_bridge.ticks import TICK_DTYPE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowchain.ingest import BatchStageError, DataBridge, DataValidator, RawTickBatch
from flowchain.ingest.batch import BatchStage
from flowchain.ingest.synthetic import synthetic_ticks
from flowchain.ingest.validation import REJECT_REASONS, reason_name

T0 = 1_767_225_600_000


def make(rows):
    """Ticks from (time_msc, bid, ask) or (time_msc, bid, ask, last, volume, volume_real)."""
    ticks = np.zeros(len(rows), dtype=TICK_DTYPE)
    for i, row in enumerate(rows):
        time_msc, bid, ask, *rest = row
        last, volume, volume_real = (rest + [0.0, 1, 1.0][len(rest):]) if rest else (0.0, 1, 1.0)
        ticks[i] = (time_msc // 1000, bid, ask, last, volume, time_msc, 6, volume_real)
    return ticks


def validate(validator, ticks, symbol="EURUSD", first_seq=0, seqs=None):
    seqs = None if seqs is None else np.asarray(seqs, dtype=np.int64)
    return validator(DataBridge()(RawTickBatch(symbol, first_seq, ticks.tobytes(), seqs)))


def reasons_of(batch):
    return [reason_name(c) for c in batch.rejected_reasons.tolist()]


def test_clean_ticks_are_all_accepted():
    ticks = synthetic_ticks(500, seed=1)
    batch = validate(DataValidator(), ticks)
    assert batch.stage is BatchStage.VALIDATED
    assert batch.accepted == 500 and len(batch.rejected) == 0
    assert batch.reason_counts == {reason: 0 for reason in REJECT_REASONS}
    np.testing.assert_array_equal(batch.ticks, ticks)
    np.testing.assert_array_equal(batch.seqs, np.arange(500))


@pytest.mark.parametrize("row, reason", [
    ((T0, math.nan, 1.2), "non_finite"),
    ((T0, 1.1, math.inf), "non_finite"),
    ((T0, 1.1, 1.2, math.nan, 1, 1.0), "non_finite"),
    ((T0, 1.1, 1.2, 0.0, 1, -math.inf), "non_finite"),
    ((T0, 0.0, 1.2), "non_positive"),
    ((T0, 1.1, -1.2), "non_positive"),
    ((T0, 1.1, 1.2, -0.5, 1, 1.0), "non_positive"),
    ((T0, 1.3, 1.2), "crossed"),
    ((T0, 1.1, 1.2, 0.0, 2**63, 1.0), "volume_out_of_range"),
    ((T0, 1.1, 1.2, 0.0, 1, -1.0), "volume_out_of_range"),
])
def test_each_price_and_volume_reason(row, reason):
    good = (T0 - 5, 1.1, 1.2)
    batch = validate(DataValidator(), make([good, row, good[:1] + (1.15, 1.2)]))
    assert reasons_of(batch) == [reason]
    assert batch.reason_counts[reason] == 1 and sum(batch.reason_counts.values()) == 1
    assert batch.accepted == 2
    np.testing.assert_array_equal(batch.rejected_seqs, [1])


def test_locked_quote_and_zero_last_are_accepted():
    batch = validate(DataValidator(), make([(T0, 1.2, 1.2, 0.0, 0, 0.0)]))
    assert batch.accepted == 1


def test_first_reason_wins():
    # NaN bid and crossed and negative ask at once: counted once, as non_finite.
    batch = validate(DataValidator(), make([(T0, math.nan, -1.0), (T0, -1.0, -2.0)]))
    assert reasons_of(batch) == ["non_finite", "non_positive"]


def test_out_of_order_within_a_batch():
    batch = validate(DataValidator(), make([(T0, 1.1, 1.2), (T0 + 10, 1.1, 1.2),
                                            (T0 + 5, 1.1, 1.2), (T0 + 10, 1.11, 1.2)]))
    assert reasons_of(batch) == ["out_of_order"]
    np.testing.assert_array_equal(batch.rejected_seqs, [2])
    np.testing.assert_array_equal(batch.ticks["time_msc"], [T0, T0 + 10, T0 + 10])


def test_a_rejected_tick_does_not_push_the_clock():
    # A crossed tick far in the future must not make the following good ticks out of order.
    batch = validate(DataValidator(), make([(T0, 1.1, 1.2), (T0 + 10**9, 1.3, 1.2),
                                            (T0 + 1, 1.1, 1.2)]))
    assert reasons_of(batch) == ["crossed"]


def test_out_of_order_across_batches():
    validator = DataValidator()
    validate(validator, make([(T0, 1.1, 1.2), (T0 + 100, 1.1, 1.2)]))
    batch = validate(validator, make([(T0 + 50, 1.1, 1.2), (T0 + 100, 1.12, 1.2),
                                      (T0 + 101, 1.1, 1.2)]), first_seq=2)
    assert reasons_of(batch) == ["out_of_order"]
    np.testing.assert_array_equal(batch.rejected_seqs, [2])
    assert validator.last_time_msc("EURUSD") == T0 + 101


def test_a_repeated_seq_within_a_millisecond_is_a_duplicate_and_the_first_is_kept():
    a, b = (T0, 1.1, 1.2), (T0, 1.11, 1.2)
    batch = validate(DataValidator(), make([a, b, a, (T0 + 1, 1.1, 1.2), b, a]),
                     seqs=[0, 1, 1, 2, 1, 3])
    # seq 1 again at T0 is a resend; b at T0 after T0 + 1 is out of order before it can be one.
    assert reasons_of(batch) == ["duplicate", "out_of_order", "out_of_order"]
    np.testing.assert_array_equal(batch.rejected_seqs, [1, 1, 3])
    np.testing.assert_array_equal(batch.seqs, [0, 1, 2])
    assert batch.ticks["bid"].tolist() == [1.1, 1.11, 1.1]


def test_a_quote_that_moves_a_b_a_within_a_millisecond_is_three_ticks():
    a, b = (T0, 1.1, 1.2), (T0, 1.11, 1.2)
    batch = validate(DataValidator(), make([a, b, a]), first_seq=40)
    assert batch.accepted == 3 and len(batch.rejected) == 0
    np.testing.assert_array_equal(batch.seqs, [40, 41, 42])
    assert batch.ticks["bid"].tolist() == [1.1, 1.11, 1.1]  # the final quote is A again


def test_same_millisecond_with_other_fields_is_not_a_duplicate():
    batch = validate(DataValidator(), make([(T0, 1.1, 1.2), (T0, 1.1, 1.21),
                                            (T0, 1.1, 1.2, 0.0, 2, 1.0)]))
    assert batch.accepted == 3


def test_the_same_seq_at_another_millisecond_is_not_a_duplicate():
    # A new bridge session counts from 1 again: its seq 1 is not the old session's seq 1.
    batch = validate(DataValidator(), make([(T0, 1.1, 1.2), (T0 + 1, 1.1, 1.2)]), seqs=[1, 1])
    assert batch.accepted == 2


def test_negative_zero_is_stored_as_zero():
    batch = validate(DataValidator(), make([(T0, 1.1, 1.2, 0.0, 1, 0.0),
                                            (T0, 1.1, 1.2, -0.0, 1, -0.0)]))
    assert batch.accepted == 2
    assert [math.copysign(1.0, v) for v in batch.ticks["last"]] == [1.0, 1.0]
    assert [math.copysign(1.0, v) for v in batch.ticks["volume_real"]] == [1.0, 1.0]


def test_duplicates_across_batches_against_the_previous_tail():
    validator = DataValidator()
    first = make([(T0 - 1, 1.0, 1.2), (T0, 1.1, 1.2), (T0, 1.11, 1.2)])
    validate(validator, first)
    # The same batch again (a replay after a failed write): nothing new.
    again = validate(validator, first)
    assert reasons_of(again) == ["out_of_order", "duplicate", "duplicate"]
    # Seqs 1 and 2 again at T0 are resends; seq 3 and 4 at T0 repeat a quote but are new.
    batch = validate(validator, make([(T0, 1.11, 1.2), (T0, 1.12, 1.2), (T0, 1.1, 1.2),
                                      (T0, 1.1, 1.2), (T0 + 1, 1.1, 1.2)]), seqs=[2, 3, 1, 4, 5])
    assert reasons_of(batch) == ["duplicate", "duplicate"]
    np.testing.assert_array_equal(batch.rejected_seqs, [2, 1])
    np.testing.assert_array_equal(batch.seqs, [3, 4, 5])
    # The tail grows when a batch ends on the same millisecond.
    third = validate(validator, make([(T0 + 1, 1.1, 1.2), (T0 + 1, 1.1, 1.2)]), seqs=[5, 6])
    assert reasons_of(third) == ["duplicate"]
    fourth = validate(validator, make([(T0 + 1, 1.1, 1.2)]), seqs=[6])
    assert reasons_of(fourth) == ["duplicate"]


def test_a_tick_dated_in_the_future_is_quarantined_and_does_not_move_the_clock():
    now_ns = T0 * 1_000_000
    validator = DataValidator(clock=lambda: now_ns)
    day = 86_400_000
    batch = validate(validator, make([(T0 - 10, 1.1, 1.2), (T0 + day + 1, 1.1, 1.2),
                                      (T0 - 9, 1.1, 1.2), (T0 + day, 1.1, 1.2)]))
    assert reasons_of(batch) == ["future"]
    np.testing.assert_array_equal(batch.rejected_seqs, [1])
    assert validator.last_time_msc("EURUSD") == T0 + day  # a day ahead is still allowed
    later = DataValidator(clock=lambda: now_ns)
    validate(later, make([(T0 + 365 * day, 1.1, 1.2)]))
    assert later.last_time_msc("EURUSD") is None
    assert validate(later, make([(T0, 1.1, 1.2)]), first_seq=1).accepted == 1
    assert later.rejected_by_reason["future"] == 1
    off = DataValidator(max_ahead_ms=None, clock=lambda: now_ns)
    assert validate(off, make([(T0 + 365 * day, 1.1, 1.2)])).accepted == 1
    with pytest.raises(ValueError, match="max_ahead_ms"):
        DataValidator(max_ahead_ms=-1)


def test_tails_are_per_symbol_and_reset_forgets():
    validator = DataValidator()
    ticks = make([(T0, 1.1, 1.2)])
    validate(validator, ticks, symbol="EURUSD")
    assert validate(validator, ticks, symbol="GBPUSD").accepted == 1
    assert reasons_of(validate(validator, ticks, symbol="EURUSD")) == ["duplicate"]
    validator.reset("EURUSD")
    assert validate(validator, ticks, symbol="EURUSD").accepted == 1
    validator.reset()
    assert validator.last_time_msc("GBPUSD") is None


def test_quarantine_keeps_the_original_records_and_totals_add_up():
    rows = [(T0, 1.1, 1.2), (T0, math.nan, 1.2), (T0 + 1, 1.3, 1.2), (T0, 1.1, 1.2),
            (T0 + 2, 1.1, 1.2, -0.0, 1, 1.0)]
    ticks = make(rows)
    validator = DataValidator()
    batch = validate(validator, ticks, first_seq=100)
    # The crossed tick does not move the clock, so the repeat of the first quote (a new seq) is
    # accepted in order.
    assert reasons_of(batch) == ["non_finite", "crossed"]
    assert batch.rejected.tobytes() == ticks[[1, 2]].tobytes()
    np.testing.assert_array_equal(batch.rejected_seqs, [101, 102])
    assert batch.accepted + len(batch.rejected) == batch.received == 5
    validate(validator, make([(T0 + 3, -1.0, 1.2), (T0 + 2, 1.1, 1.2)]), seqs=[105, 104])
    assert validator.rejected_by_reason == {"non_finite": 1, "non_positive": 1, "crossed": 1,
                                            "volume_out_of_range": 0, "future": 0,
                                            "out_of_order": 0, "duplicate": 1}
    assert validator.accepted_ticks == 3


def test_input_batch_is_left_intact():
    ticks = make([(T0, 1.1, 1.2, -0.0, 1, 1.0)])
    decoded = DataBridge()(RawTickBatch("EURUSD", 0, ticks))
    DataValidator()(decoded)
    assert decoded.stage is BatchStage.DECODED
    assert math.copysign(1.0, decoded.ticks["last"][0]) == -1.0


def test_wrong_stage_is_refused():
    validator = DataValidator()
    batch = validate(validator, make([(T0, 1.1, 1.2)]))
    with pytest.raises(BatchStageError, match="stage VALIDATED"):
        validator(batch)
    with pytest.raises(BatchStageError, match="a dict"):
        validator({})


def test_reason_names():
    assert reason_name(0) == "accepted"
    assert [reason_name(i + 1) for i in range(len(REJECT_REASONS))] == list(REJECT_REASONS)
    with pytest.raises(ValueError, match="unknown reject reason code 99"):
        reason_name(99)


# --- against a tick-by-tick reference -------------------------------------------------------

def reference_codes(batches, seq_lists):
    """Validate tick by tick in plain Python; return each batch's reason codes."""
    last_msc, seen = None, set()
    out = []
    for ticks, seqs in zip(batches, seq_lists, strict=True):
        codes = []
        for rec, seq in zip(ticks, seqs, strict=True):
            bid, ask, last, volume_real = (float(rec[f]) for f in ("bid", "ask", "last",
                                                                 "volume_real"))
            volume, time_msc = int(rec["volume"]), int(rec["time_msc"])
            if not all(math.isfinite(v) for v in (bid, ask, last, volume_real)):
                codes.append(1)
            elif bid <= 0 or ask <= 0 or last < 0:
                codes.append(2)
            elif bid > ask:
                codes.append(3)
            elif volume > 2**63 - 1 or volume_real < 0:
                codes.append(4)
            elif time_msc > T0 + 86_400_000:
                codes.append(5)
            elif last_msc is not None and time_msc < last_msc:
                codes.append(6)
            else:
                key = seq
                if time_msc == last_msc and key in seen:
                    codes.append(7)
                else:
                    if time_msc != last_msc:
                        last_msc, seen = time_msc, set()
                    seen.add(key)
                    codes.append(0)
        out.append(codes)
    return out


prices = st.sampled_from([1.1, 1.2, 1.3, 0.0, -1.0, math.nan, math.inf])
lasts = st.sampled_from([0.0, -0.0, 1.2, -1.0, math.nan])
tick_rows = st.tuples(st.sampled_from([0, 1, 2, 3, 5, 6, 86_400_001]), prices, prices, lasts,
                      st.sampled_from([0, 1, 2**63, 2**64 - 1]),
                      st.sampled_from([0.0, -0.0, 1.0, -2.0, math.inf]),
                      st.integers(0, 5))  # the seq: a small range, so resends happen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(tick_rows, max_size=12), min_size=1, max_size=4))
def test_matches_the_reference(batch_rows):
    batches, seq_lists = [], []
    for rows in batch_rows:
        ticks = np.zeros(len(rows), dtype=TICK_DTYPE)
        for i, (dt, bid, ask, last, volume, volume_real, _) in enumerate(rows):
            ticks[i] = ((T0 + dt) // 1000, bid, ask, last, volume, T0 + dt, 6, volume_real)
        batches.append(ticks)
        seq_lists.append([row[-1] for row in rows])
    validator = DataValidator(clock=lambda: T0 * 1_000_000)
    expected = reference_codes(batches, seq_lists)
    for ticks, seqs, codes in zip(batches, seq_lists, expected, strict=True):
        batch = validate(validator, ticks, seqs=seqs)
        accepted = [i for i, c in enumerate(codes) if c == 0]
        rejected = [i for i, c in enumerate(codes) if c != 0]
        assert batch.rejected_reasons.tolist() == [codes[i] for i in rejected]
        assert batch.rejected_seqs.tolist() == [seqs[i] for i in rejected]
        assert batch.seqs.tolist() == [seqs[i] for i in accepted]
        assert batch.rejected.tobytes() == ticks[rejected].tobytes()
    flat = [c for codes in expected for c in codes]
    assert validator.accepted_ticks == flat.count(0)
    assert [validator.rejected_by_reason[r] for r in REJECT_REASONS] == \
        [flat.count(i + 1) for i in range(len(REJECT_REASONS))]

"""The wire protocol: every frame round-trips, and malformed bytes only ever raise FrameError."""
import math
import struct

import numpy as np
import pytest
from flowchain_bridge import wire
from flowchain_bridge.ticks import TICK_DTYPE
from flowchain_bridge.wire import FrameError, FrameType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _ticks(n: int, start_msc: int = 1_700_000_000_000) -> np.ndarray:
    a = np.zeros(n, dtype=TICK_DTYPE)
    a["time_msc"] = start_msc + np.arange(n) // 2  # pairs share a millisecond
    a["time"] = a["time_msc"] // 1000
    a["bid"] = 1.1 + np.arange(n) * 1e-5
    a["ask"] = a["bid"] + 2e-5
    a["flags"] = 0x86  # an unknown bit (0x80) beside BID|ASK
    a["volume_real"] = 1.5
    return a


def _order(**overrides) -> wire.OrderRequest:
    fields = dict(req_id=2**63 + 5, deadline_ns=1_700_000_000_123_456_789, symbol="EURUSD", type=0,
                  volume=0.1, price=1.1, sl=1.09, tp=1.12, deviation=10, magic=4242,
                  comment="fc-é test", type_filling=1)
    fields.update(overrides)
    return wire.OrderRequest(**fields)


def test_tick_frame_carries_the_mt5_record_verbatim():
    ticks = _ticks(3)
    frame = wire.encode_tick(99, 7, 2, ticks[1:2].tobytes())
    assert len(frame) == wire.TICK_FRAME_SIZE == 80
    tick = wire.decode_tick(frame)
    assert (tick.symbol_id, tick.session_id, tick.seq) == (2, 99, 7)
    assert tick.time_msc == ticks[1]["time_msc"] and tick.flags == 0x86
    assert tick.bid == ticks[1]["bid"] and tick.ask == ticks[1]["ask"]


def test_decode_tick_into_writes_the_ring_row_and_returns_the_head():
    ticks = _ticks(4)
    ring = np.zeros(8, dtype=TICK_DTYPE)
    view = memoryview(ring).cast("B")
    buffer = bytearray(wire.TICK_FRAME_SIZE)
    wire.encode_tick_into(buffer, 5, 41, 3, memoryview(ticks).cast("B"), 2)
    values = wire.decode_tick_into(bytes(buffer), view, 7)
    assert ring[7].tobytes() == ticks[2].tobytes()
    assert values[wire.TICK_SEQ] == 41 and values[wire.TICK_SESSION_ID] == 5
    assert values[wire.TICK_SYMBOL_ID] == 3 and values[wire.TICK_TIME_MSC] == ticks[2]["time_msc"]
    with pytest.raises(IndexError):
        wire.decode_tick_into(bytes(buffer), view, 8)


@pytest.mark.parametrize("field,value,reason", [
    ("bid", float("nan"), "nan_price"), ("ask", float("inf"), "inf_price"),
    ("last", -float("inf"), "inf_price"), ("volume_real", float("nan"), "nan_price"),
])
def test_non_finite_prices_are_rejected_and_the_ring_is_untouched(field, value, reason):
    ticks = _ticks(1)
    ticks[field] = value
    frame = wire.encode_tick(1, 1, 0, ticks.tobytes())
    ring = np.zeros(1, dtype=TICK_DTYPE)
    with pytest.raises(FrameError) as err:
        wire.decode_tick_into(frame, memoryview(ring).cast("B"), 0)
    assert err.value.reason == reason
    assert ring.tobytes() == bytes(60)
    with pytest.raises(FrameError, match=reason):
        wire.decode_tick(frame)


@pytest.mark.parametrize("fields,reason", [
    ({"bid": 0.0}, "non_positive_price"), ({"ask": -1.1}, "non_positive_price"),
    ({"bid": -1.0, "ask": -0.5}, "non_positive_price"), ({"last": -0.1}, "non_positive_price"),
    ({"bid": 1.2, "ask": 1.1}, "crossed_price"), ({"volume_real": -1.0}, "bad_tick_volume"),
    ({"volume": 2**63}, "bad_tick_volume"), ({"bid": math.nan, "ask": 0.0}, "nan_price"),
])
def test_ticks_that_break_a_quote_rule_are_refused_by_name(fields, reason):
    ticks = _ticks(1)
    for field, value in fields.items():
        ticks[field] = value
    frame = wire.encode_tick(1, 1, 0, ticks.tobytes())
    ring = np.zeros(1, dtype=TICK_DTYPE)
    with pytest.raises(FrameError) as err:
        wire.decode_tick_into(frame, memoryview(ring).cast("B"), 0)
    assert err.value.reason == reason and reason in wire.TICK_REFUSALS
    assert ring.tobytes() == bytes(60)
    with pytest.raises(FrameError, match=reason):
        wire.decode_tick(frame)


def test_a_locked_quote_and_a_zero_last_are_fine():
    ticks = _ticks(1)
    ticks["ask"] = ticks["bid"]
    frame = wire.encode_tick(1, 1, 0, ticks.tobytes())
    assert wire.decode_tick(frame).ask == ticks["bid"][0]


_EDGES = [0.0, -0.0, 1e-300, 1.1, 1.2, -1.0, math.nan, math.inf, -math.inf, 5e-324]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_EDGES), st.sampled_from(_EDGES), st.sampled_from(_EDGES),
       st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1]), st.sampled_from(_EDGES))
def test_the_inlined_tick_check_is_the_quote_rules(bid, ask, last, volume, volume_real):
    """decode_tick_into inlines flowchain_bridge.ticks.tick_fault for speed: both must always agree,
    and the vectorized batch check too."""
    from flowchain_bridge.ticks import tick_fault, tick_faults

    record = np.zeros(1, dtype=TICK_DTYPE)
    record[0] = (1, bid, ask, last, volume, 1000, 6, volume_real)
    frame = wire.encode_tick(1, 1, 0, record.tobytes())
    code = tick_fault(bid, ask, last, volume, volume_real)
    try:
        wire.decode_tick_into(frame, memoryview(np.zeros(1, dtype=TICK_DTYPE)).cast("B"), 0)
        refused = None
    except FrameError as err:
        refused = err.reason
    assert (refused is None) == (code == 0), (refused, code)
    assert refused == wire.tick_refusal(bid, ask, last, volume, volume_real)
    assert int(tick_faults(record)[0]) == code


def test_a_batch_with_bad_records_keeps_the_good_ones_and_names_the_bad():
    ticks = _ticks(6)
    ticks["bid"][1] = 0.0
    ticks["ask"][3] = ticks["bid"][3] - 1e-5
    ticks["bid"][4] = math.nan
    batch = wire.decode_batch(wire.encode_batch(3, 100, 1, ticks))
    assert batch.records.tobytes() == ticks.tobytes()
    assert list(batch.refusals) == [None, "non_positive_price", None, "crossed_price",
                                    "nan_price", None]
    assert wire.decode_batch(wire.encode_batch(3, 100, 1, _ticks(4))).refusals is None
    resp = wire.decode_backfill_response(
        wire.encode_backfill_response(9, 4, 1, wire.BackfillStatus.OK, 10, ticks))
    assert list(resp.refusals) == list(batch.refusals)


@pytest.mark.parametrize("mutate,reason", [
    (lambda f: f[:10], "short"), (lambda f: f + b"\0", "length"),
    (lambda f: b"\x02" + f[1:], "version"), (lambda f: f[:1] + b"\x63" + f[2:], "unknown_type"),
    (lambda f: f[:1] + bytes([FrameType.HEARTBEAT]) + f[2:], "wrong_type"), (lambda f: b"", "short"),
])
def test_malformed_tick_frames_name_their_reason(mutate, reason):
    frame = mutate(wire.encode_tick(1, 1, 0, _ticks(1).tobytes()))
    ring = memoryview(np.zeros(1, dtype=TICK_DTYPE)).cast("B")
    with pytest.raises(FrameError) as err:
        wire.decode_tick_into(frame, ring, 0)
    assert err.value.reason == reason


def test_batch_round_trip_and_count_checks():
    ticks = _ticks(5)
    frame = wire.encode_batch(3, 100, 1, ticks)
    batch = wire.decode_batch(frame)
    assert (batch.session_id, batch.first_seq, batch.symbol_id) == (3, 100, 1)
    assert batch.records.tobytes() == ticks.tobytes()
    with pytest.raises(FrameError, match="length"):
        wire.decode_batch(frame[:-1])
    zero = wire.BATCH_HEAD.pack(1, FrameType.TICK_BATCH, 1, 0, 3, 100)
    with pytest.raises(FrameError, match="bad_count"):
        wire.decode_batch(zero)
    with pytest.raises(ValueError):
        wire.encode_batch(3, 1, 1, np.zeros(3, dtype="f8"))


def test_heartbeat_round_trip():
    state = wire.HeartbeatState.CONNECTED | wire.HeartbeatState.INITIALIZED
    frame = wire.encode_heartbeat(11, 2, 500, state, interval_ms=250, last_error=-10004,
                                  reconnects=3, bridge_time_ns=123)
    hb = wire.decode_heartbeat(frame)
    assert (hb.session_id, hb.symbol_id, hb.last_seq, hb.reconnects) == (11, 2, 500, 3)
    assert hb.connected and not hb.trade_allowed and hb.last_error == -10004
    with pytest.raises(FrameError, match="bad_field"):
        wire.decode_heartbeat(wire.encode_heartbeat(11, 2, 500, 0x80))


def test_backfill_round_trips():
    req = wire.BackfillRequest(req_id=9, session_id=4, symbol_id=1, from_seq=10, to_seq=20)
    assert wire.decode_backfill_request(wire.encode_backfill_request(req)) == req
    ticks = _ticks(11)
    frame = wire.encode_backfill_response(9, 4, 1, wire.BackfillStatus.OK, 10, ticks)
    resp = wire.decode_backfill_response(frame)
    assert resp.status is wire.BackfillStatus.OK and resp.first_seq == 10
    assert resp.records.tobytes() == ticks.tobytes()
    empty = wire.encode_backfill_response(9, 4, 1, wire.BackfillStatus.GONE, 0, ticks[:0])
    assert len(wire.decode_backfill_response(empty).records) == 0
    bad = wire.BACKFILL_REQUEST.pack(1, FrameType.BACKFILL_REQUEST, 1, 0, 9, 4, 20, 10)
    with pytest.raises(FrameError, match="bad_count"):
        wire.decode_backfill_request(bad)


def test_backfill_since_round_trip_and_checks():
    req = wire.BackfillSince(req_id=3, session_id=8, symbol="XAUUSD", after_time_msc=1_700_000_000_123,
                             seen_at_time=2)
    frame = wire.encode_backfill_since(req)
    assert len(frame) == wire.BACKFILL_SINCE.size == 64
    assert wire.decode_backfill_since(frame) == req and wire.decode(frame) == req
    with pytest.raises(FrameError, match="bad_time"):
        wire.decode_backfill_since(frame[:24] + struct.pack("<q", -1) + frame[32:])
    with pytest.raises(FrameError, match="bad_symbol"):
        wire.decode_backfill_since(frame[:32] + bytes(32))
    with pytest.raises(FrameError, match="bad_symbol"):
        wire.encode_backfill_since(req._replace(symbol="X" * 40))
    for status in (wire.BackfillStatus.NOT_READY, wire.BackfillStatus.TERMINAL_ERROR):
        answer = wire.encode_backfill_response(3, 8, 0, status, 0, _ticks(0))
        assert wire.decode_backfill_response(answer).status is status


def test_order_request_ack_and_result_round_trip():
    req = _order()
    assert wire.decode_order_request(wire.encode_order_request(req)) == req
    pending = _order(action=5, type=2, type_time=2, expiration=1_900_000_000, stoplimit=0.0)
    assert wire.decode_order_request(wire.encode_order_request(pending)) == pending
    ack = wire.OrderAck(req.req_id, wire.AckStatus.DUPLICATE_DONE, 3, 77)
    assert wire.decode_order_ack(wire.encode_order_ack(ack)) == ack
    result = wire.OrderResult(req.req_id, wire.OrderStatus.SENT, 10009, 5001, 6001, 0.1, 1.10002,
                              1.1, 1.10002, "Request executed", 77, 0, (1, "Success"), 1500, True)
    assert wire.decode_order_result(wire.encode_order_result(result)) == result


def test_long_texts_are_cut_at_a_character_boundary():
    req = _order(comment="é" * 40)
    decoded = wire.decode_order_request(wire.encode_order_request(req))
    assert decoded.comment == "é" * 16
    with pytest.raises(FrameError, match="bad_symbol"):
        wire.encode_order_request(_order(symbol="X" * 33))


@pytest.mark.parametrize("overrides,reason", [
    (dict(volume=0.0), "bad_volume"), (dict(volume=float("nan")), "nan_price"),
    (dict(price=float("inf")), "inf_price"), (dict(type=9), "bad_field"),
    (dict(type_filling=4), "bad_field"), (dict(action=2), "bad_field"),
])
def test_bad_order_requests_are_rejected(overrides, reason):
    with pytest.raises(FrameError) as err:
        wire.decode_order_request(wire.encode_order_request(_order(**overrides)))
    assert err.value.reason == reason


def test_topics_are_terminated_so_prefixes_never_match():
    assert wire.tick_topic("EURUSD") == b"TEURUSD\0"
    assert not wire.tick_topic("EURUSDm").startswith(wire.tick_topic("EURUSD"))
    assert wire.parse_topic(wire.heartbeat_topic("XAUUSD")) == ("H", "XAUUSD")
    for bad, reason in ((b"TEURUSD", "bad_topic"), (b"X1\0", "bad_topic"), (b"T\xff\xfe\0", "bad_symbol"),
                        (b"T" + b"A" * 33 + b"\0", "bad_symbol")):
        with pytest.raises(FrameError) as err:
            wire.parse_topic(bad)
        assert err.value.reason == reason
    with pytest.raises(FrameError, match="bad_symbol"):
        wire.tick_topic("")


def test_reject_counts_start_at_zero_for_every_reason():
    counts = wire.RejectCounts()
    assert set(counts.as_dict()) == set(wire.REJECT_REASONS) and counts.total == 0
    counts.count("short")
    counts.count("short")
    assert counts["short"] == 2 and counts.total == 2


_VALID_FRAMES = [
    wire.encode_tick(1, 1, 0, _ticks(1).tobytes()),
    wire.encode_batch(1, 1, 0, _ticks(3)),
    wire.encode_heartbeat(1, 0, 5, 7),
    wire.encode_backfill_request(wire.BackfillRequest(1, 1, 0, 1, 2)),
    wire.encode_backfill_response(1, 1, 0, wire.BackfillStatus.OK, 1, _ticks(2)),
    wire.encode_backfill_since(wire.BackfillSince(1, 1, "EURUSD", 1_700_000_000_000, 1)),
    wire.encode_order_request(_order()),
    wire.encode_order_ack(wire.OrderAck(1, wire.AckStatus.QUEUED, 0, 0)),
    wire.encode_order_result(wire.OrderResult(1, wire.OrderStatus.SENT, 10009, 1, 1, 0.1, 1.1, 1.1,
                                              1.1, "", 0, 0, (1, "Success"))),
]
_COUNTS = wire.RejectCounts()
_DECODERS = [wire.decode, wire.decode_tick, wire.decode_batch, wire.decode_heartbeat,
             wire.decode_backfill_request, wire.decode_backfill_response,
             wire.decode_order_request, wire.decode_order_ack, wire.decode_order_result,
             wire.decode_backfill_since, wire.decode_account_query, wire.decode_account_state]


def _mutations():
    corrupt = st.tuples(st.sampled_from(_VALID_FRAMES), st.integers(0, 400), st.binary(max_size=8)).map(
        lambda t: t[0][: t[1] % (len(t[0]) + 1)] + t[2] + t[0][t[1] % (len(t[0]) + 1) + len(t[2]):])
    flipped = st.tuples(st.sampled_from(_VALID_FRAMES), st.integers(0, 10_000), st.integers(1, 255)).map(
        lambda t: bytes(b ^ t[2] if i == t[1] % len(t[0]) else b for i, b in enumerate(t[0])))
    truncated = st.tuples(st.sampled_from(_VALID_FRAMES), st.integers(0, 2000)).map(
        lambda t: t[0][: t[1] % len(t[0])])
    nonfinite = st.tuples(st.sampled_from(_VALID_FRAMES), st.integers(0, 400),
                          st.sampled_from([math.nan, math.inf, -math.inf])).map(
        lambda t: t[0][: t[1] % max(1, len(t[0]) - 8)] + struct.pack("<d", t[2])
        + t[0][t[1] % max(1, len(t[0]) - 8) + 8:])
    return st.one_of(st.binary(max_size=200), corrupt, flipped, truncated, nonfinite)


@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(frame=_mutations(), which=st.integers(0, len(_DECODERS) - 1))
def _fuzz_decoders(frame, which):
    ring = memoryview(np.zeros(2, dtype=TICK_DTYPE)).cast("B")
    decoders = _DECODERS + [lambda f: wire.decode_tick_into(f, ring, 1), wire.parse_topic]
    for decode in (decoders[which], decoders[-2], decoders[-1]):
        try:
            decode(frame)
        except FrameError as err:
            assert err.reason in wire.REJECT_REASONS, err.reason
            _COUNTS.count(err.reason)


def test_fuzzed_frames_only_raise_frame_error_with_a_known_reason():
    """Fuzz every decoder (derandomized: the same 1500 frames each run), then check the fuzz
    exercised the rejection paths, not only valid frames."""
    _fuzz_decoders()
    reached = {reason for reason, n in _COUNTS.as_dict().items() if n}
    assert {"short", "length", "version", "unknown_type", "wrong_type", "bad_topic"} <= reached, reached
    assert reached & set(wire.TICK_REFUSALS), reached


def test_account_frames_round_trip_and_refuse_what_does_not_add_up():
    query = wire.AccountQuery(7, 20_240_601, "fc5eed0001", 1_764_633_600)
    assert wire.decode(wire.encode_account_query(query)) == query
    rows = tuple(wire.SymbolExposure(f"S{i}", 0.01 * i, 0.02 * i, 0.01 * i, -1.5 * i, i) for i in range(3))
    state = wire.AccountState(7, wire.AccountStatus.OK, 1_764_633_600, 4, -12.25, 99, rows)
    frame = wire.encode_account_state(state)
    assert len(frame) == wire.ACCOUNT_HEAD.size + 3 * wire.ACCOUNT_ROW.size
    assert wire.decode(frame) == state
    with pytest.raises(FrameError) as err:
        wire.decode_account_state(frame[:-1])
    assert err.value.reason == "length"
    with pytest.raises(FrameError) as err:
        wire.decode_account_state(frame[:2] + bytes([5]) + frame[3:])
    assert err.value.reason == "bad_field"
    with pytest.raises(ValueError, match="at most"):
        wire.encode_account_state(state._replace(symbols=rows[:1] * (wire.MAX_ACCOUNT_SYMBOLS + 1)))


_ACCOUNT_FRAMES = [
    wire.encode_account_query(wire.AccountQuery(1, 99, "fc0000abcd", 1_700_000_000)),
    wire.encode_account_state(wire.AccountState(1, wire.AccountStatus.OK, 0, 2, -3.5, 1, (
        wire.SymbolExposure("EURUSD", 0.1, 0.3, 0.2, -1.25, 3),
        wire.SymbolExposure("XAUUSD", -0.05, 0.0, 0.05, 7.0, 1)))),
]


@settings(max_examples=400, deadline=None, derandomize=True)
@given(which=st.integers(0, 1), cut=st.integers(0, 300), at=st.integers(0, 300),
       patch=st.one_of(st.binary(min_size=1, max_size=8),
                       st.sampled_from([math.nan, math.inf, -math.inf]).map(lambda v: struct.pack("<d", v))))
def test_fuzzed_account_frames_only_raise_frame_error(which, cut, at, patch):
    frame = _ACCOUNT_FRAMES[which]
    at %= len(frame)
    mutated = (frame[:at] + patch + frame[at + len(patch):])[: len(frame) - cut % 3 * (cut % len(frame))]
    for decode in (wire.decode, wire.decode_account_query, wire.decode_account_state):
        try:
            decode(mutated)
        except FrameError as err:
            assert err.reason in wire.REJECT_REASONS, err.reason

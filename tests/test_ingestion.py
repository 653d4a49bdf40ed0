"""DataBridge: raw MT5-dtype bytes or arrays -> TickBatch, refusals counted by reason."""
import numpy as np
import pytest
from flowchain_bridge.ticks import TICK_DTYPE

from flowchain.ingest import BatchDecodeError, BatchStage, DataBridge, RawTickBatch
from flowchain.ingest.ingestion import DECODE_REASONS
from flowchain.ingest.synthetic import synthetic_ticks


@pytest.fixture
def ticks():
    return synthetic_ticks(50, seed=3)


def test_bytes_are_viewed_without_copy(ticks):
    payload = bytearray(ticks.tobytes())
    batch = DataBridge()(RawTickBatch("EURUSD", 1000, payload))
    assert batch.stage is BatchStage.DECODED
    assert batch.received == 50 and batch.symbol == "EURUSD" and batch.first_seq == 1000
    assert np.shares_memory(batch.ticks, np.frombuffer(payload, dtype=np.uint8))
    assert batch.ticks.tobytes() == ticks.tobytes()
    np.testing.assert_array_equal(batch.seqs, np.arange(1000, 1050))


@pytest.mark.parametrize("wrap", [bytes, memoryview])
def test_bytes_and_memoryview_decode_to_the_same_ticks(ticks, wrap):
    batch = DataBridge()(RawTickBatch("EURUSD", 0, wrap(ticks.tobytes())))
    np.testing.assert_array_equal(batch.ticks, ticks)


def test_decoded_array_passes_through(ticks):
    batch = DataBridge()(RawTickBatch("GBPUSD", 7, ticks))
    assert batch.ticks is ticks


def test_same_fields_in_another_layout_are_converted(ticks):
    aligned = np.dtype({"names": list(TICK_DTYPE.names),
                        "formats": [TICK_DTYPE[n] for n in TICK_DTYPE.names], "aligned": True})
    assert aligned.itemsize != TICK_DTYPE.itemsize
    batch = DataBridge()(RawTickBatch("GBPUSD", 7, ticks.astype(aligned)))
    assert batch.ticks.dtype == TICK_DTYPE
    np.testing.assert_array_equal(batch.ticks, ticks)


def test_explicit_seqs_are_kept(ticks):
    seqs = np.arange(50, dtype=np.uint64) * 2 + 5
    batch = DataBridge()(RawTickBatch("EURUSD", 5, ticks, seqs=seqs))
    assert batch.seqs.dtype == np.int64
    np.testing.assert_array_equal(batch.seqs, seqs.astype(np.int64))


def test_empty_payload_is_an_empty_batch():
    batch = DataBridge()(RawTickBatch("EURUSD", 0, b""))
    assert batch.received == 0 and len(batch.ticks) == 0 and len(batch.seqs) == 0


def _refused(bridge, raw, reason):
    with pytest.raises(BatchDecodeError) as info:
        bridge(raw)
    assert info.value.reason == reason
    return str(info.value)


def test_truncated_payload_is_refused_with_its_size(ticks):
    bridge = DataBridge()
    message = _refused(bridge, RawTickBatch("EURUSD", 42, ticks.tobytes()[:-7]), "size_not_multiple")
    assert "EURUSD" in message and "42" in message and str(50 * 60 - 7) in message
    assert "53 bytes left over" in message
    assert bridge.rejected_batches["size_not_multiple"] == 1
    assert bridge.decoded_batches == 0


@pytest.mark.parametrize("raw, reason", [
    (RawTickBatch("", 0, b""), "bad_symbol"),
    (RawTickBatch(None, 0, b""), "bad_symbol"),  # type: ignore[arg-type]
    (RawTickBatch("EURUSD", -1, b""), "bad_seq"),
    (RawTickBatch("EURUSD", True, b""), "bad_seq"),
    (RawTickBatch("EURUSD", 0, np.zeros(3, dtype=np.float64)), "wrong_dtype"),
    (RawTickBatch("EURUSD", 0, np.zeros((2, 2), dtype=TICK_DTYPE)), "wrong_shape"),
    (RawTickBatch("EURUSD", 0, "not bytes"), "wrong_type"),  # type: ignore[arg-type]
    (RawTickBatch("EURUSD", 0, np.zeros(2, dtype=TICK_DTYPE), seqs=np.arange(3)), "bad_seqs"),
    (RawTickBatch("EURUSD", 0, np.zeros(2, dtype=TICK_DTYPE), seqs=np.zeros(2)), "bad_seqs"),
    (RawTickBatch("EURUSD", 0, memoryview(bytes(240)).cast("B")[::2]), "unreadable_buffer"),
])
def test_each_bad_batch_is_refused_and_counted(raw, reason):
    bridge = DataBridge()
    _refused(bridge, raw, reason)
    assert reason in DECODE_REASONS
    assert bridge.rejected_batches[reason] == 1
    assert sum(bridge.rejected_batches.values()) == 1


def test_something_else_than_a_raw_batch_is_refused():
    bridge = DataBridge()
    message = _refused(bridge, {"symbol": "EURUSD"}, "wrong_type")
    assert "RawTickBatch" in message


def test_counters_add_up(ticks):
    bridge = DataBridge()
    for i in range(3):
        bridge(RawTickBatch("EURUSD", i * 50, ticks.tobytes()))
    with pytest.raises(BatchDecodeError):
        bridge(RawTickBatch("EURUSD", 0, b"x"))
    assert bridge.decoded_batches == 3 and bridge.decoded_ticks == 150
    assert bridge.rejected_batches["size_not_multiple"] == 1

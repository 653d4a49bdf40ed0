"""The rows a node ships and Batch's JSON wire form: round trip, strictness, bounds."""
import json

import msgspec
import pytest
from hub_rows import full_batch, interval, usage

from flowchain.hub.rows import BATCH_BYTES_MAX, NAME_MAX, ROWS_MAX, Batch, BatchError, IntervalRow


def test_batch_round_trips_every_kind():
    batch = full_batch("node-a")
    again = Batch.from_json(batch.to_json())
    assert again == batch
    assert again.counts() == {"intervals": 4, "executions": 4, "alerts": 4, "usage": 1}
    assert len(again) == 13
    assert isinstance(again.intervals, tuple) and isinstance(again.intervals[0], IntervalRow)


def test_optional_fields_default_and_kinds_may_be_absent():
    body = json.loads(Batch("n", intervals=(interval("n", 1),)).to_json())
    del body["executions"], body["alerts"], body["usage"]
    del body["intervals"][0]["failure_histogram"]
    batch = Batch.from_json(json.dumps(body))
    assert batch.intervals[0].failure_histogram is None and batch.usage == ()


def _body():
    return json.loads(full_batch("node-a").to_json())


@pytest.mark.parametrize("mutate, names", [
    (lambda b: b["intervals"][2].__setitem__("count", "12"), "intervals[2].count"),
    (lambda b: b["intervals"][0].__setitem__("count", -1), "intervals[0].count"),
    (lambda b: b["executions"][1].__setitem__("sampled", 1), "executions[1].sampled"),
    (lambda b: b["alerts"][3].pop("message"), "alerts[3]"),
    (lambda b: b["usage"][0].__setitem__("extra", 1), "usage[0]"),
    (lambda b: b["intervals"][1].__setitem__("histogram", "not base64!"),
     "intervals[1].histogram"),
    (lambda b: b["intervals"][2].__setitem__("failure_histogram", "QUJDREVGRw=="),
     "intervals[2].failure_histogram"),
    (lambda b: b["intervals"][0].__setitem__("local_id", 0), "intervals[0].local_id"),
    (lambda b: b["intervals"][0].__setitem__("start_ns", 1.5), "intervals[0].start_ns"),
    (lambda b: b["executions"][0].__setitem__("node_id", "node-b"), "executions[0].node_id"),
    (lambda b: b["intervals"][3].__setitem__("end_ns", 0), "intervals[3].end_ns"),
    (lambda b: b.__setitem__("node_id", ""), "node_id"),
    (lambda b: b["alerts"][0].__setitem__("tenant", "t" * (NAME_MAX + 1)), "alerts[0].tenant"),
    (lambda b: b.__setitem__("intervals", {}), "intervals"),
])
def test_malformed_batches_name_the_field(mutate, names):
    body = _body()
    mutate(body)
    with pytest.raises(BatchError) as err:
        Batch.from_json(json.dumps(body))
    assert names in str(err.value)


def test_not_json_and_wrong_shape_are_batch_errors():
    with pytest.raises(BatchError, match="not JSON"):
        Batch.from_json(b'{"node_id": "n", "intervals": [')
    with pytest.raises(BatchError, match="Expected `object`"):
        Batch.from_json(b"[]")
    with pytest.raises(BatchError, match="node_id"):
        Batch.from_json(b"{}")


def test_sizes_are_bounded():
    with pytest.raises(BatchError, match="larger than"):
        Batch.from_json(b" " * (BATCH_BYTES_MAX + 1))
    row = json.loads(msgspec.json.encode(usage("n")))
    body = {"node_id": "n", "usage": [row] * (ROWS_MAX + 1)}
    with pytest.raises(BatchError, match="usage"):
        Batch.from_json(json.dumps(body))


def test_constructing_a_batch_checks_rows_belong_to_it():
    with pytest.raises(ValueError, match=r"intervals\[0\].node_id 'other'"):
        Batch("mine", intervals=(interval("other", 1),))

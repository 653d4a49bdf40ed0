"""Recorded inputs: the encoding round-trips (value and type), refuses what it cannot keep with
a reason, never unpickles or imports code, and the table stores and loads them back."""
from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import math
import sqlite3
import sys
import uuid
from pathlib import PurePosixPath
from typing import Any

import msgspec
import numpy as np
import pytest
from flowchain_bridge.ticks import TICK_DTYPE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from flowchain.chain import ChainBuilder
from flowchain.context import UserContext
from flowchain.ingest.batch import BatchStage, RawTickBatch, TickBatch
from flowchain.optimizer.recorded_inputs import (
    ENCODING,
    MAX_DEPTH,
    InputNotDecodable,
    InputNotSerializable,
    decode_input,
    definition_row,
    encode_input,
    ensure_recorded_inputs_schema,
    input_row,
    insert_definitions,
    insert_rows,
    load_inputs,
    sampled,
)
from flowchain.store import StoreError, open_database
from flowchain.trading.context import DecisionContext


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


@dataclasses.dataclass(frozen=True)
class Order:
    symbol: str
    side: Side
    volume: float
    tags: tuple = ()
    placed: dt.datetime | None = None


class Quote(msgspec.Struct, frozen=True):
    symbol: str
    bid: float
    ask: float
    extra: Any = None


def same(a: Any, b: Any) -> bool:
    """Equal value and equal type, all the way down (arrays by dtype, shape and bytes)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) ==
                                                      math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name))
                   for f in dataclasses.fields(a) if f.init)
    if isinstance(a, msgspec.Struct):
        return all(same(getattr(a, f), getattr(b, f)) for f in a.__struct_fields__)
    if isinstance(a, memoryview):
        return a.tobytes() == b.tobytes()
    if isinstance(a, dt.datetime):
        return a == b and a.tzinfo == b.tzinfo and a.fold == b.fold
    return a == b


def round_trip(value: Any) -> Any:
    encoding, payload = encode_input(value)
    assert encoding == ENCODING and isinstance(payload, bytes)
    return decode_input(encoding, payload)


# ------------------------------------------------------------------ property tests

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
    st.text(), st.binary(max_size=64),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones(),
                                     st.just(dt.timezone(dt.timedelta(hours=-3), "X")))),
    st.dates(), st.times(), st.timedeltas(), st.uuids(), st.complex_numbers(allow_nan=False),
    st.sampled_from(list(Side)), st.sampled_from(list(BatchStage)),
)
keys = st.one_of(st.text(max_size=8), st.integers(), st.tuples(st.integers(), st.text()))
arrays = hnp.arrays(
    dtype=st.one_of(hnp.integer_dtypes(), hnp.floating_dtypes(), hnp.boolean_dtypes(),
                    hnp.complex_number_dtypes(), st.just(np.dtype(TICK_DTYPE)),
                    hnp.byte_string_dtypes(max_len=4), hnp.unicode_string_dtypes(max_len=4)),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
values = st.recursive(
    st.one_of(scalars, arrays),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(keys, inner, max_size=4),
        st.builds(Order, st.text(max_size=6), st.sampled_from(list(Side)), st.floats(),
                  st.lists(inner, max_size=2).map(tuple)),
        st.builds(Quote, st.text(max_size=6), st.floats(), st.floats(), inner),
    ),
    max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_any_supported_value_round_trips_with_its_type(value: Any) -> None:
    assert same(value, round_trip(value))


@settings(max_examples=40, deadline=None)
@given(st.sets(st.integers()), st.frozensets(st.text(max_size=4)))
def test_sets_round_trip(a: set, b: frozenset) -> None:
    assert same(a, round_trip(a)) and same(b, round_trip(b))


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.dtype(TICK_DTYPE), st.integers(0, 20)), st.text(min_size=1, max_size=8),
       st.integers(0, 2**40))
def test_tick_batches_round_trip(ticks: np.ndarray, symbol: str, first_seq: int) -> None:
    raw = RawTickBatch(symbol, first_seq, ticks)
    back = round_trip(raw)
    assert same(raw, back)
    as_bytes = RawTickBatch(symbol, first_seq, ticks.tobytes(), np.arange(len(ticks)))
    assert same(as_bytes, round_trip(as_bytes))
    batch = TickBatch(symbol, first_seq, ticks, np.arange(len(ticks), dtype=np.int64),
                      BatchStage.PROCESSED, len(ticks), reason_counts={"spread": 1},
                      bars={"1s": np.zeros(2, dtype=[("a", "<i8")])})
    assert same(batch, round_trip(batch))


# ------------------------------------------------------------------ the project's own inputs

def test_user_context_is_rebuilt_with_this_process_hash() -> None:
    ctx = UserContext("acme", "u1", "pro")
    back = round_trip(ctx)
    assert back == ctx and hash(back) == hash(ctx)


def test_decision_context_keeps_tick_state_and_decision() -> None:
    ticks = np.zeros(5, dtype=TICK_DTYPE)
    ticks["bid"] = np.arange(5) + 1.0
    ticks["ask"] = ticks["bid"] + 0.5
    ticks["time_msc"] = 1_700_000_000_000 + np.arange(5)
    ctx = DecisionContext("EURUSD", history=16)
    ctx.point_at(ticks, 3, received_ns=42)
    ctx.state[:] = np.linspace(0, 1, len(ctx.state))
    ctx.features[2] = 7.0
    ctx.signals = np.array([0.5, -0.5])
    ctx.agent_names = ("a", "b")
    ctx.decision.action, ctx.decision.volume = 1, 0.1
    ctx.result.reason = "why"
    back = round_trip(ctx)
    assert type(back) is DecisionContext
    assert (back.symbol, back.history, back.received_ns) == ("EURUSD", 16, 42)
    assert back.ticks[back.index].tobytes() == ticks[3].tobytes()
    assert same(back.state, ctx.state) and same(back.features, ctx.features)
    assert same(back.signals, ctx.signals) and back.agent_names == ("a", "b")
    assert (back.decision.action, back.decision.volume) == (1, 0.1)
    assert back.result.reason == "why" and back.result.symbol == "EURUSD"
    assert back.agents_owner is None  # the orchestrator rebinds on its first run


# ------------------------------------------------------------------ refusals

class Plain:
    pass


def test_unsupported_values_are_refused_with_what_and_why() -> None:
    with pytest.raises(InputNotSerializable, match=r"the input\[1\]\['k'\] is a .*Plain"):
        encode_input([1, {"k": Plain()}])
    with pytest.raises(InputNotSerializable, match="object"):
        encode_input(np.array([Plain()], dtype=object))
    cyclic: list = [1]
    cyclic.append(cyclic)
    with pytest.raises(InputNotSerializable, match="contains itself"):
        encode_input(cyclic)
    deep: Any = 0
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(InputNotSerializable, match="nested deeper"):
        encode_input(deep)
    with pytest.raises(InputNotSerializable, match="over the"):
        encode_input(np.zeros(3_000_000))

    @dataclasses.dataclass
    class Local:
        x: int

    with pytest.raises(InputNotSerializable, match="inside a function"):
        encode_input(Local(1))
    with pytest.raises(InputNotSerializable, match="tzinfo"):
        class Odd(dt.tzinfo):
            def utcoffset(self, d: Any) -> dt.timedelta:
                return dt.timedelta(0)
        encode_input(dt.datetime(2024, 1, 1, tzinfo=Odd()))


def test_decoding_never_imports_a_module_on_its_own() -> None:
    name = "json.tool"  # importable, but not imported here
    sys.modules.pop(name, None)
    payload = b'{"$t":"dataclass","cls":"json.tool:X","fields":{}}'
    with pytest.raises(InputNotDecodable, match="--import json.tool"):
        decode_input(ENCODING, payload)
    assert name not in sys.modules
    with pytest.raises(InputNotDecodable, match="not a class"):
        decode_input(ENCODING, b'{"$t":"dataclass","cls":"os:system","fields":{}}')
    with pytest.raises(InputNotDecodable, match="not a dataclass"):
        decode_input(ENCODING, b'{"$t":"dataclass","cls":"subprocess:Popen","fields":{}}')
    with pytest.raises(InputNotDecodable, match="unknown input encoding"):
        decode_input("pickle", b"\x80\x04.")
    with pytest.raises(InputNotDecodable, match="cannot be rebuilt"):
        decode_input(ENCODING, b'{"$t":"bytes","b64":"!!"}')


# ------------------------------------------------------------------ storage

def _chain():
    return (ChainBuilder("recorded").step("a", "identity", "x", "x", 1.0).build())


def test_rows_store_load_filter_and_say_what_was_not_recorded(tmp_path) -> None:
    db = tmp_path / "history.db"
    conn = open_database(db)
    ensure_recorded_inputs_schema(conn)
    d = _chain()
    rows = [input_row(run_id="r1", execution_id=f"{d.chain_id}#{i}", chain=d.name,
                      chain_id=d.chain_id, status="failed" if i % 2 else "sampled",
                      start_epoch_ns=1000 + i, value=Order("EURUSD", Side.BUY, i))
            for i in range(6)]
    rows.append(input_row(run_id="r1", execution_id=f"{d.chain_id}#6", chain=d.name,
                          chain_id=d.chain_id, status="failed", start_epoch_ns=2000,
                          value=Plain()))
    insert_rows(conn, rows)
    insert_rows(conn, rows[:1])  # the same execution again adds nothing
    insert_definitions(conn, [definition_row(d), definition_row(d)])
    stored = conn.execute("SELECT payload, unserializable FROM recorded_inputs "
                          "WHERE execution_id LIKE '%#6'").fetchone()
    assert stored[0] is None and "Plain" in stored[1]
    assert conn.execute("SELECT count(*) FROM chain_definitions").fetchone()[0] == 1
    conn.close()

    everything = load_inputs(db, d.name)
    assert [r.value.volume for r in everything] == [0, 1, 2, 3, 4, 5]
    assert [r.value.volume for r in load_inputs(db, d.chain_id, status="failed")] == [1, 3, 5]
    assert [r.value.volume for r in load_inputs(db, d.name, limit=2)] == [4, 5]
    with_reasons = load_inputs(db, d.name, status="failed", include_unserializable=True)
    assert with_reasons[-1].value is None and "Plain" in with_reasons[-1].unserializable
    assert with_reasons[0].replay_id == f"{d.chain_id}#1@r1"
    assert load_inputs(db, "other") == []
    with pytest.raises(ValueError, match="status"):
        load_inputs(db, d.name, status="ok")
    with pytest.raises(ValueError, match="status"):
        input_row(run_id="r", execution_id="e", chain="c", chain_id="c@1", status="ok",
                  start_epoch_ns=0, value=1)


def test_load_inputs_of_a_database_without_the_table_or_file(tmp_path) -> None:
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    assert load_inputs(db, "x") == []
    with pytest.raises(FileNotFoundError):
        load_inputs(tmp_path / "missing.db", "x")
    text = tmp_path / "notes.db"
    text.write_text("not a database, just text that is long enough " * 20)
    with pytest.raises(StoreError, match="not a readable SQLite database"):
        load_inputs(text, "x")


def test_sampling_picks_exactly_the_rate() -> None:
    assert sum(sampled(s, 0.1) for s in range(1000)) == 100
    assert not any(sampled(s, 0.0) for s in range(100))
    assert all(sampled(s, 1.0) for s in range(100))


def test_paths_and_odd_keys_round_trip() -> None:
    value = {PurePosixPath("/a/b"): uuid.uuid4(), "$t": [decimal.Decimal("1.10")],
             (1, "x"): bytearray(b"ab"), "m": memoryview(b"cd")}
    assert same(value, round_trip(value))

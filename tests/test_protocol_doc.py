"""docs/protocol.md says what flowchain_bridge.wire does: every frame's size, offsets and field types,
the frame type numbers, the statuses, the MT5 enum values and the message size limits are read
from the page's tables and compared with the structs, enums and constants of the code."""
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from flowchain_bridge import wire

ROOT = Path(__file__).parent.parent
DOC = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
MT5 = json.loads((ROOT / "bridge" / "flowchain_bridge" / "mt5_constants.json").read_text())["constants"]

# each documented layout (the heading's title) -> (fixed part, repeated record or None)
LAYOUTS = {
    "TICK": (struct.Struct(wire.TICK_HEAD.format + f"{wire.TICK_RECORD_SIZE}s"), None),
    "TICK_BATCH": (wire.BATCH_HEAD, wire.TICK_RECORD_SIZE),
    "HEARTBEAT": (wire.HEARTBEAT, None),
    "BACKFILL_REQUEST": (wire.BACKFILL_REQUEST, None),
    "BACKFILL_RESPONSE": (wire.BACKFILL_HEAD, wire.TICK_RECORD_SIZE),
    "BACKFILL_SINCE": (wire.BACKFILL_SINCE, None),
    "ORDER_REQUEST": (wire.ORDER_REQUEST, None),
    "ORDER_ACK": (wire.ORDER_ACK, None),
    "ORDER_RESULT": (wire.ORDER_RESULT, None),
    "ACCOUNT_QUERY": (wire.ACCOUNT_QUERY, None),
    "ACCOUNT_STATE": (wire.ACCOUNT_HEAD, wire.ACCOUNT_ROW.size),
    "ACCOUNT_STATE row": (wire.ACCOUNT_ROW, None),
}
TICK_RECORD = "The MT5 tick record"
HEADING = re.compile(r"^#{2,4} (?P<title>.+?) \((?P<fixed>\d+)(?: \+ (?P<per>\d+)·count)? bytes\)",
                     re.M)
CODES = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "i32": "i", "i64": "q", "f64": "d"}
DTYPES = {"u32": "<u4", "u64": "<u8", "i64": "<i8", "f64": "<f8"}


def sections(doc=DOC):
    """{heading title: (fixed bytes, bytes per record or None, the section's text)}."""
    found = {}
    matches = list(HEADING.finditer(doc))
    for m, nxt in zip(matches, matches[1:] + [None], strict=True):
        body = doc[m.end():nxt.start() if nxt else len(doc)]
        body = re.split(r"^#{1,4} ", body, maxsplit=1, flags=re.M)[0]
        assert m["title"] not in found, f"two sections titled {m['title']!r}"
        found[m["title"]] = (int(m["fixed"]), int(m["per"]) if m["per"] else None, body)
    return found


def table(text, first_column):
    """The rows (lists of cells) of the first table in ``text`` whose header starts so."""
    rows, inside = [], False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            if inside:
                break
            continue
        if not inside:
            inside = cells[0] == first_column
            continue
        if set(cells[0]) <= {"-", " "}:
            continue
        rows.append(cells)
    assert rows, f"no table starting with {first_column!r}"
    return rows


def doc_codes(kind):
    """The struct codes of a documented type: 'u8, u8' -> BB, '5 × f64' -> ddddd, '32 bytes, ...' -> 32s."""
    kind = re.sub(r"\s*\(.*\)$", "", kind.strip())
    if m := re.match(r"(\d+) bytes\b", kind):
        return [f"{m[1]}s"]
    if m := re.fullmatch(r"(\d+) × (\w+)", kind):
        return [CODES[m[2]]] * int(m[1])
    return [CODES[part.strip()] for part in kind.split(",")]


def struct_fields(layout):
    """[(offset, code)] of a struct, one entry per field (``32s`` is one field)."""
    out, offset = [], 0
    for count, code in re.findall(r"(\d*)([a-zA-Z])", layout.format.lstrip("<")):
        if code == "s":
            out.append((offset, f"{count}s"))
            offset += int(count)
            continue
        for _ in range(int(count or 1)):
            out.append((offset, code))
            offset += struct.calcsize("<" + code)
    assert offset == layout.size
    return out


def test_every_sized_section_is_checked_and_every_layout_documented():
    titles = set(sections())
    assert titles == set(LAYOUTS) | {TICK_RECORD}, titles ^ (set(LAYOUTS) | {TICK_RECORD})


def check_layout(title, doc=DOC):
    fixed, per, text = sections(doc)[title]
    layout, record = LAYOUTS[title]
    assert fixed == layout.size, f"{title}: the doc says {fixed} bytes, the struct is {layout.size}"
    assert per == record, f"{title}: the doc says {per} bytes per record, the code {record}"
    rows = table(text, "offset")
    if record is not None:  # the last row is the repeated part, right after the fixed one
        *rows, tail = rows
        assert int(tail[0]) == layout.size, f"{title}: records start at {layout.size}: {tail}"
        assert re.match(rf"count × {record} bytes\b", tail[2]), f"{title}: {tail}"
    documented = []
    for row in rows:
        offset, codes = int(row[0]), doc_codes(row[2])
        fields = [f.strip() for f in re.sub(r"\s*\(.*?\)", "", row[1]).split(",")]
        assert len(fields) in (1, len(codes)), f"{title} row {row}: fields and types disagree"
        for code in codes:
            documented.append((offset, code))
            offset += struct.calcsize("<" + code)
    assert documented == struct_fields(layout), f"{title}: the table does not match {layout.format}"


@pytest.mark.parametrize("title", sorted(LAYOUTS))
def test_frame_size_offsets_and_types_match_the_struct(title):
    check_layout(title)


def test_tick_record_matches_the_tick_dtype():
    fixed, per, text = sections()[TICK_RECORD]
    assert fixed == wire.TICK_RECORD_SIZE == wire.TICK_DTYPE.itemsize and per is None
    rows = [(r[1], int(r[0]), np.dtype(DTYPES[r[2]])) for r in table(text, "offset")]
    assert rows == [(name, offset, dtype) for name, (dtype, offset)
                    in wire.TICK_DTYPE.fields.items()]


def test_frame_type_numbers_match_the_enum():
    rows = table(DOC, "type")
    assert {row[1]: int(row[0]) for row in rows} == {t.name: int(t) for t in wire.FrameType}


@pytest.mark.parametrize("enum, first", [(wire.OrderStatus, "status"), (wire.BackfillStatus, "status")])
def test_status_tables_match_the_enums(enum, first):
    heading = {wire.OrderStatus: "### ORDER_RESULT", wire.BackfillStatus: "### BACKFILL_RESPONSE"}[enum]
    text = DOC[DOC.index(heading):]
    text = text[text.index("| status | meaning"):]
    numbered = {m[2]: int(m[1]) for m in (re.match(r"(\d+) (\w+)", r[0]) for r in table(text, first))}
    assert numbered == {s.name: int(s) for s in enum}


def test_ack_statuses_match_the_enum():
    _, _, text = sections()["ORDER_ACK"]
    status = next(r for r in table(text, "offset") if r[1] == "status")
    assert dict((name, int(n)) for n, name in re.findall(r"(\d+) (\w+)", status[3])) == \
        {s.name: int(s) for s in wire.AckStatus}


def test_mt5_values_match_the_package_constants():
    text = DOC[DOC.index("## MT5 values on the wire"):]
    rows = {r[0].strip("`"): r[1] for r in table(text, "field")}
    for field, prefix in (("action", "TRADE_ACTION_"), ("order_type", "ORDER_TYPE_"),
                          ("filling", "ORDER_FILLING_"), ("type_time", "ORDER_TIME_")):
        documented = {name: int(value) for name, value in re.findall(r"(\w+) (\d+)", rows[field])}
        assert documented == {k: v for k, v in MT5.items() if k.startswith(prefix)}, field
    for name, value in re.findall(r"(TRADE_RETCODE_\w+) (\d+)", rows["retcode"]):
        assert MT5[name] == int(value), name
    # the decoder accepts exactly these
    assert wire._TRADE_ACTIONS == {v for k, v in MT5.items() if k.startswith("TRADE_ACTION_")}


def test_size_limits_name_the_largest_messages():
    text = DOC[DOC.index("## Maximum message size"):]
    rows = table(text, "socket")
    requests = max((wire.ORDER_REQUEST, wire.BACKFILL_REQUEST, wire.BACKFILL_SINCE,
                    wire.ACCOUNT_QUERY), key=lambda s: s.size)
    assert requests is wire.ORDER_REQUEST
    assert rows[0][1].startswith(f"{wire.MAX_REQUEST_BYTES:,} bytes")
    assert rows[0][2] == f"ORDER_REQUEST, {wire.ORDER_REQUEST.size} bytes"
    largest = wire.BACKFILL_HEAD.size + wire.MAX_BATCH_TICKS * wire.TICK_RECORD_SIZE
    assert largest > wire.BATCH_HEAD.size + wire.MAX_BATCH_TICKS * wire.TICK_RECORD_SIZE
    assert rows[1][1].startswith("1 MiB") and wire.MAX_MESSAGE_BYTES == 1 << 20 > largest
    assert rows[1][2] == f"a full BACKFILL_RESPONSE, {largest:,} bytes"
    assert wire.MAX_REQUEST_BYTES >= wire.ORDER_REQUEST.size


@pytest.mark.parametrize("title, right, wrong", [
    ("ORDER_REQUEST", "### ORDER_REQUEST (152 bytes)", "### ORDER_REQUEST (136 bytes)"),
    ("BACKFILL_RESPONSE", "### BACKFILL_RESPONSE (36 + 60", "### BACKFILL_RESPONSE (40 + 60"),
    ("ORDER_RESULT", "| 72 | last_error_code | i32 |", "| 72 | last_error_code | u32 |"),
    ("HEARTBEAT", "| 28 | last_seq | u64 |", "| 24 | last_seq | u64 |"),
])
def test_the_checker_refuses_a_wrong_size_type_or_offset(title, right, wrong):
    assert right in DOC
    with pytest.raises(AssertionError, match=title):
        check_layout(title, DOC.replace(right, wrong))


def test_type_notation_reads_as_struct_codes():
    assert doc_codes("u8, u8") == ["B", "B"] and doc_codes("5 × f64") == ["d"] * 5
    assert doc_codes("32 bytes, NUL-padded UTF-8") == ["32s"]
    assert doc_codes("u32 (1..16384)") == ["I"]
    assert struct_fields(wire.ORDER_REQUEST)[-2:] == [(88, "32s"), (120, "32s")]

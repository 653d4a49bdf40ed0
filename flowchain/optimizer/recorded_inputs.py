"""Chain inputs recorded in a form that round-trips, for replay and for the optimizer's checks.

:func:`encode_input` turns a chain's (or a step's) input into ``(encoding, payload)`` and
:func:`decode_input` gives back an equal value of the same type. The only encoding is
:data:`ENCODING`, tagged JSON (UTF-8):

* JSON scalars and lists as themselves; ``float`` NaN/infinity, ``tuple``, ``set``,
  ``frozenset``, ``dict`` (any hashable keys, insertion order kept), ``bytes``,
  ``bytearray``, ``memoryview``, ``complex``, ``datetime``/``date``/``time``/``timedelta``
  (with a ``datetime.timezone`` or ``zoneinfo.ZoneInfo``), ``Decimal``, ``uuid.UUID`` and
  ``pathlib`` paths as ``{"$t": tag, ...}`` objects;
* numpy arrays (any non-object dtype, structured ones included: dtype, shape and the raw
  bytes) and numpy scalars;
* enum members, dataclass instances and msgspec Structs by the import path of their class
  (``module:QualName``), rebuilt through the class's constructor from the fields it takes
  (so ``__post_init__`` runs again; ``init=False`` fields are the class's to compute);
* this project's engine types: :class:`~flowchain.trading.context.DecisionContext` (its
  symbol, current tick, feature state and buffers), ``Decision`` and ``TradeResult``; the
  ingestion batches and :class:`~flowchain.context.UserContext` are dataclasses.

Anything else raises :class:`InputNotSerializable` with what and why (a class defined inside a
function, an object array, a cycle, a value over :data:`MAX_PAYLOAD_BYTES` ...). Recorders store
that reason in place of the payload: an input is never dropped without saying so.

Pickle is never used. A history database is a file other processes load (``flowchain replay``,
``flowchain optimize --verify``, a colleague's copy of a node's database): unpickling it would
run whatever code the file names. Decoding here only builds data: the classes it instantiates
must be enums, dataclasses or msgspec Structs (or the engine types above), found in a module
that the reading process has already imported (``--import MODULE``) or in ``flowchain`` itself;
a payload naming anything else is refused (:class:`InputNotDecodable`), never imported.

Storage: table ``recorded_inputs`` (one row per recorded execution, ``payload`` NULL and
``unserializable`` the reason when it could not be encoded) and ``chain_definitions`` (the
YAML of every chain version that inputs were recorded for, by content-hash id, so a replay can
run the version an input ran on). :func:`load_inputs` reads them back.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import importlib
import math
import pathlib
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from flowchain.errors import FlowChainError

ENCODING = "flowchain-json-1"
"""The one encoding: tagged JSON (see the module docstring)."""

MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
"""Inputs whose encoding is longer than this are recorded as unserializable ("too large")."""

MAX_DEPTH = 100
"""Containers nested deeper than this are refused (a bound on the decoder's recursion too)."""

STATUSES = ("failed", "sampled")
"""``recorded_inputs.status``: the input of a failed execution, or of a sampled success."""

DatabasePath = str | Path


class InputNotSerializable(FlowChainError, ValueError):
    """The input cannot be recorded in a form that round-trips; ``reason`` says what and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InputNotDecodable(FlowChainError, ValueError):
    """A recorded payload cannot be rebuilt here (unknown encoding, a class not imported,
    damaged data); the message says what to do."""


# ---------------------------------------------------------------------------------- encoding

def _path_of(cls: type) -> str:
    """``module:QualName`` of a class, checked to resolve back to the same class."""
    qualname = getattr(cls, "__qualname__", cls.__name__)
    module = getattr(cls, "__module__", None)
    if not module or "<locals>" in qualname:
        raise InputNotSerializable(
            f"{cls.__name__} is defined inside a function, so it cannot be found by its import "
            "path when the input is replayed; define it at module level")
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not cls:
        raise InputNotSerializable(
            f"{module}:{qualname} does not resolve to the input's class (a class made "
            "dynamically or shadowed); define it at module level")
    return f"{module}:{qualname}"


_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
"""Integers outside int64 are written as decimal text (JSON readers differ beyond it)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_DESCRS: dict[np.dtype, Any] = {}


def _descr(dtype: np.dtype) -> Any:
    descr = _DESCRS.get(dtype)
    if descr is None:
        descr = np.lib.format.dtype_to_descr(dtype)
        if len(_DESCRS) < 256:
            _DESCRS[dtype] = descr
    return descr


class _Encoder:
    __slots__ = ("_active",)

    def __init__(self) -> None:
        self._active: set[int] = set()

    def value(self, v: Any, depth: int, where: str) -> Any:
        if depth > MAX_DEPTH:
            raise InputNotSerializable(f"{where} is nested deeper than {MAX_DEPTH} levels")
        t = type(v)
        if v is None or t is bool or t is str:
            return v
        if t is int:
            return v if _INT_MIN <= v <= _INT_MAX else {"$t": "int", "v": str(v)}
        if t is float:
            return v if math.isfinite(v) else {"$t": "float", "v": repr(v)}
        if isinstance(v, enum.Enum):
            return {"$t": "enum", "cls": _path_of(t), "name": v.name}
        if isinstance(v, np.ndarray):
            return self._array(v, where)
        if isinstance(v, np.generic):
            if v.dtype.hasobject:
                raise InputNotSerializable(f"{where} is a numpy object scalar")
            return {"$t": "npscalar", "dtype": _descr(v.dtype), "b64": _b64(v.tobytes())}
        if t in (list, tuple, set, frozenset, dict):
            return self._container(v, t, depth, where)
        if t is bytes:
            return {"$t": "bytes", "b64": _b64(v)}
        if t is bytearray:
            return {"$t": "bytearray", "b64": _b64(bytes(v))}
        if t is memoryview:
            return {"$t": "memoryview", "b64": _b64(v.tobytes())}
        if t is complex:
            return {"$t": "complex", "v": [repr(v.real), repr(v.imag)]}
        if t is decimal.Decimal:
            return {"$t": "decimal", "v": str(v)}
        if t is dt.datetime:
            return {"$t": "datetime", "v": v.replace(tzinfo=None).isoformat(),
                    "tz": self._tz(v.tzinfo, where), "fold": v.fold}
        if t is dt.date:
            return {"$t": "date", "v": v.isoformat()}
        if t is dt.time:
            return {"$t": "time", "v": v.replace(tzinfo=None).isoformat(),
                    "tz": self._tz(v.tzinfo, where), "fold": v.fold}
        if t is dt.timedelta:
            return {"$t": "timedelta", "v": [v.days, v.seconds, v.microseconds]}
        if t is uuid.UUID:
            return {"$t": "uuid", "v": str(v)}
        if isinstance(v, pathlib.PurePath) and t.__module__ == "pathlib":
            return {"$t": "path", "cls": t.__name__, "v": str(v)}
        codec = _PROJECT_ENCODERS.get(t)
        if codec is not None:
            return self._guarded(v, depth, where, lambda: {
                "$t": "object", "cls": _path_of(t),
                "fields": {k: self.value(x, depth + 1, f"{where}.{k}")
                           for k, x in codec(v).items()}})
        if isinstance(v, msgspec.Struct):
            return self._guarded(v, depth, where, lambda: {
                "$t": "struct", "cls": _path_of(t),
                "fields": {k: self.value(getattr(v, k), depth + 1, f"{where}.{k}")
                           for k in t.__struct_fields__}})
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return self._guarded(v, depth, where, lambda: {
                "$t": "dataclass", "cls": _path_of(t),
                "fields": {f.name: self.value(getattr(v, f.name), depth + 1, f"{where}.{f.name}")
                           for f in dataclasses.fields(v) if f.init}})
        raise InputNotSerializable(
            f"{where} is a {t.__module__}.{t.__qualname__}, which has no recorded form "
            "(JSON types, tuples, bytes, numpy arrays, datetime, Decimal, enums, dataclasses "
            "and msgspec Structs are recorded); make it a dataclass or a msgspec Struct")

    def _guarded(self, v: Any, depth: int, where: str, build: Callable[[], Any]) -> Any:
        key = id(v)
        if key in self._active:
            raise InputNotSerializable(f"{where} contains itself (a reference cycle)")
        self._active.add(key)
        try:
            return build()
        finally:
            self._active.discard(key)

    def _container(self, v: Any, t: type, depth: int, where: str) -> Any:
        def build() -> Any:
            if t is list:
                return [self.value(x, depth + 1, f"{where}[{i}]") for i, x in enumerate(v)]
            if t is dict:
                if all(type(k) is str for k in v):
                    return {"$t": "dict", "v": {k: self.value(x, depth + 1, f"{where}[{k!r}]")
                                                for k, x in v.items()}}
                return {"$t": "dict", "items": [
                    [self.value(k, depth + 1, f"{where} key {k!r}"),
                     self.value(x, depth + 1, f"{where}[{k!r}]")] for k, x in v.items()]}
            tag = t.__name__
            return {"$t": tag, "v": [self.value(x, depth + 1, f"{where}[{i}]")
                                     for i, x in enumerate(v)]}
        return self._guarded(v, depth, where, build)

    @staticmethod
    def _array(a: np.ndarray, where: str) -> Any:
        if a.dtype.hasobject:
            raise InputNotSerializable(
                f"{where} is a numpy array of dtype {a.dtype} (Python objects); only arrays of "
                "numbers, strings, bytes or records round-trip")
        if type(a) is not np.ndarray:
            raise InputNotSerializable(
                f"{where} is a {type(a).__qualname__} (an ndarray subclass); pass a plain array")
        data = np.ascontiguousarray(a)
        out = {"$t": "ndarray", "dtype": _descr(a.dtype), "shape": list(a.shape),
               "b64": _b64(data.tobytes())}
        if not a.flags.writeable:
            out["readonly"] = True
        return out

    @staticmethod
    def _tz(tz: dt.tzinfo | None, where: str) -> Any:
        if tz is None:
            return None
        if type(tz) is dt.timezone:
            offset = tz.utcoffset(None)
            name = tz.tzname(None)
            return {"offset": offset.total_seconds(),
                    "name": None if tz == dt.timezone(offset) and
                    name == dt.timezone(offset).tzname(None) else name}
        key = getattr(tz, "key", None)
        if type(tz).__module__ == "zoneinfo" and isinstance(key, str):
            return {"zone": key}
        raise InputNotSerializable(
            f"{where} has a tzinfo of type {type(tz).__qualname__}; only datetime.timezone and "
            "zoneinfo.ZoneInfo round-trip")


def encode_input(value: Any) -> tuple[str, bytes]:
    """Return ``(encoding, payload)`` of ``value`` such that :func:`decode_input` gives back an
    equal value of the same type.

    Raises
    ------
    InputNotSerializable
        When ``value`` (or something inside it) has no recorded form, contains itself, is
        nested deeper than :data:`MAX_DEPTH` or encodes to more than
        :data:`MAX_PAYLOAD_BYTES`; ``reason`` names the part and the cause.
    """
    try:
        tree = _Encoder().value(value, 0, "the input")
    except InputNotSerializable:
        raise
    except RecursionError:
        raise InputNotSerializable("the input is nested too deeply to encode") from None
    except Exception as exc:  # a property or __struct_fields__ that raises while read
        raise InputNotSerializable(
            f"reading the input failed: {type(exc).__name__}: {exc}") from None
    payload = msgspec.json.encode(tree)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InputNotSerializable(
            f"the input encodes to {len(payload):,} bytes, over the {MAX_PAYLOAD_BYTES:,}-byte "
            "limit of a recorded input")
    return ENCODING, payload


# ---------------------------------------------------------------------------------- decoding

_TRUSTED_PREFIX = "flowchain."


def _resolve(path: Any) -> type:
    """The class at ``module:QualName``, from a module already imported (never imports one,
    except this package's own modules)."""
    if not isinstance(path, str) or ":" not in path:
        raise InputNotDecodable(f"a recorded class path must be 'module:QualName', got {path!r}")
    module_name, qualname = path.split(":", 1)
    module = sys.modules.get(module_name)
    if module is None and (module_name == "flowchain" or module_name.startswith(_TRUSTED_PREFIX)):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise InputNotDecodable(f"the recorded input names {path}, but {module_name} "
                                    f"cannot be imported: {exc}") from None
    if module is None:
        raise InputNotDecodable(
            f"the recorded input holds a {path}, but module {module_name!r} is not imported; "
            f"pass --import {module_name} (recorded inputs never import code on their own)")
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if not isinstance(found, type):
        raise InputNotDecodable(f"the recorded input names {path}, which is not a class here")
    return found


def _fields(node: dict) -> dict:
    fields = node.get("fields")
    if not isinstance(fields, dict):
        raise InputNotDecodable(f"a recorded {node.get('$t')} has no field mapping")
    return fields


def _decode(node: Any, depth: int) -> Any:
    if depth > MAX_DEPTH + 2:
        raise InputNotDecodable(f"the recorded input is nested deeper than {MAX_DEPTH} levels")
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(x, depth + 1) for x in node]
    if not isinstance(node, dict):
        raise InputNotDecodable(f"unexpected JSON value {node!r} in a recorded input")
    tag = node.get("$t")
    v = node.get("v")
    if tag == "dict":
        if "items" in node:
            return {_decode(k, depth + 1): _decode(x, depth + 1) for k, x in node["items"]}
        return {k: _decode(x, depth + 1) for k, x in v.items()}
    if tag in ("tuple", "set", "frozenset"):
        items = [_decode(x, depth + 1) for x in v]
        return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
    if tag == "float":
        return float(v)
    if tag == "int":
        return int(v)
    if tag in ("bytes", "bytearray", "memoryview"):
        raw = base64.b64decode(node["b64"], validate=True)
        return raw if tag == "bytes" else bytearray(raw) if tag == "bytearray" \
            else memoryview(raw)
    if tag == "ndarray":
        dtype = np.lib.format.descr_to_dtype(_descr_back(node["dtype"]))
        if dtype.hasobject:
            raise InputNotDecodable("a recorded array names an object dtype")
        raw = base64.b64decode(node["b64"], validate=True)
        array = np.frombuffer(raw, dtype=dtype).copy().reshape(tuple(node["shape"]))
        if node.get("readonly"):
            array.flags.writeable = False
        return array
    if tag == "npscalar":
        dtype = np.lib.format.descr_to_dtype(_descr_back(node["dtype"]))
        if dtype.hasobject:
            raise InputNotDecodable("a recorded numpy scalar names an object dtype")
        return np.frombuffer(base64.b64decode(node["b64"], validate=True), dtype=dtype)[0]
    if tag == "complex":
        return complex(float(v[0]), float(v[1]))
    if tag == "decimal":
        return decimal.Decimal(v)
    if tag == "datetime":
        return dt.datetime.fromisoformat(v).replace(tzinfo=_tz_back(node.get("tz")),
                                                    fold=node.get("fold", 0))
    if tag == "date":
        return dt.date.fromisoformat(v)
    if tag == "time":
        return dt.time.fromisoformat(v).replace(tzinfo=_tz_back(node.get("tz")),
                                                fold=node.get("fold", 0))
    if tag == "timedelta":
        return dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2])
    if tag == "uuid":
        return uuid.UUID(v)
    if tag == "path":
        kinds = {"PurePath", "PurePosixPath", "PureWindowsPath", "Path", "PosixPath",
                 "WindowsPath"}
        if node.get("cls") not in kinds:
            raise InputNotDecodable(f"unknown recorded path type {node.get('cls')!r}")
        return getattr(pathlib, node["cls"])(v)
    if tag == "enum":
        cls = _resolve(node.get("cls"))
        if not issubclass(cls, enum.Enum):
            raise InputNotDecodable(f"{node.get('cls')} is not an Enum")
        return cls[node["name"]]
    if tag == "dataclass":
        cls = _resolve(node.get("cls"))
        if not dataclasses.is_dataclass(cls):
            raise InputNotDecodable(f"{node.get('cls')} is not a dataclass here")
        return cls(**{k: _decode(x, depth + 1) for k, x in _fields(node).items()})
    if tag == "struct":
        cls = _resolve(node.get("cls"))
        if not issubclass(cls, msgspec.Struct):
            raise InputNotDecodable(f"{node.get('cls')} is not a msgspec Struct here")
        return cls(**{k: _decode(x, depth + 1) for k, x in _fields(node).items()})
    if tag == "object":
        cls = _resolve(node.get("cls"))
        build = _project_decoders().get(cls)
        if build is None:
            raise InputNotDecodable(f"{node.get('cls')} is not one of the engine types that "
                                    "recorded inputs rebuild")
        return build({k: _decode(x, depth + 1) for k, x in _fields(node).items()})
    raise InputNotDecodable(f"unknown tag {tag!r} in a recorded input")


def _descr_back(descr: Any) -> Any:
    """JSON turned the dtype descr's tuples into lists; make them tuples again."""
    if isinstance(descr, list):
        return [tuple(_descr_back(x) if isinstance(x, list) else x for x in field)
                if isinstance(field, list) else field for field in descr]
    return descr


def _tz_back(tz: Any) -> dt.tzinfo | None:
    if tz is None:
        return None
    if "zone" in tz:
        import zoneinfo

        return zoneinfo.ZoneInfo(tz["zone"])
    offset = dt.timedelta(seconds=tz["offset"])
    return dt.timezone(offset) if tz.get("name") is None else dt.timezone(offset, tz["name"])


def decode_input(encoding: str, payload: bytes) -> Any:
    """Return the value :func:`encode_input` encoded as ``(encoding, payload)``.

    Raises
    ------
    InputNotDecodable
        When the encoding is unknown, the payload is damaged, or it names a class that is not
        imported in this process (the message says which module to ``--import``).
    """
    if encoding != ENCODING:
        raise InputNotDecodable(f"unknown input encoding {encoding!r}; this FlowChain reads "
                                f"{ENCODING!r}")
    try:
        tree = msgspec.json.decode(bytes(payload))
        return _decode(tree, 0)
    except InputNotDecodable:
        raise
    except Exception as exc:  # damaged payload, or a constructor that rejects the fields
        raise InputNotDecodable(f"the recorded input cannot be rebuilt: "
                                f"{type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------------- engine types

def _decision_context_fields(ctx: Any) -> dict[str, Any]:
    tick = np.array(ctx.ticks[ctx.index:ctx.index + 1])
    return {"symbol": ctx.symbol, "history": ctx.history, "tick": tick,
            "received_ns": ctx.received_ns, "state": ctx.state, "features": ctx.features,
            "signals": ctx.signals, "confidences": ctx.confidences,
            "agent_names": ctx.agent_names, "decision": ctx.decision, "result": ctx.result}


def _decision_context(fields: dict[str, Any]) -> Any:
    from flowchain.trading.context import DecisionContext

    ctx = DecisionContext(fields["symbol"], fields["history"])
    ctx.load(fields["tick"], fields["received_ns"])
    ctx.state = fields["state"]
    ctx.features = fields["features"]
    ctx.signals = fields["signals"]
    ctx.confidences = fields["confidences"]
    ctx.agent_names = tuple(fields["agent_names"])
    ctx.decision = fields["decision"]
    ctx.result = fields["result"]
    return ctx


def _slots_fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in type(obj).__slots__}


def _slots_object(cls: type) -> Callable[[dict[str, Any]], Any]:
    def build(fields: dict[str, Any]) -> Any:
        obj = cls()
        for name, value in fields.items():
            if name not in cls.__slots__:
                raise InputNotDecodable(f"{cls.__qualname__} has no field {name!r}")
            setattr(obj, name, value)
        return obj
    return build


def _project_decoders() -> dict[type, Callable[[dict[str, Any]], Any]]:
    from flowchain.trading.context import DecisionContext
    from flowchain.trading.decision import Decision, TradeResult

    return {DecisionContext: _decision_context, Decision: _slots_object(Decision),
            TradeResult: _slots_object(TradeResult)}


class _ProjectEncoders(dict):
    """Engine type -> its fields; filled on first use (the trading package loads lazily)."""

    def get(self, key: Any, default: Any = None) -> Any:  # type: ignore[override]
        if not self and "flowchain.trading.context" in sys.modules:
            from flowchain.trading.context import DecisionContext
            from flowchain.trading.decision import Decision, TradeResult

            self.update({DecisionContext: _decision_context_fields, Decision: _slots_fields,
                         TradeResult: _slots_fields})
        return super().get(key, default)


_PROJECT_ENCODERS = _ProjectEncoders()
"""DecisionContext holds a reference to its orchestrator (``agents_owner``), which is not
recorded: the orchestrator rebinds to a replayed context on its first run."""


# ---------------------------------------------------------------------------------- storage

RECORDED_INPUTS_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS recorded_inputs (
        id             INTEGER PRIMARY KEY,
        run_id         TEXT    NOT NULL,
        execution_id   TEXT    NOT NULL,
        chain          TEXT    NOT NULL,
        chain_id       TEXT    NOT NULL,
        status         TEXT    NOT NULL,
        start_epoch_ns INTEGER NOT NULL,
        encoding       TEXT,
        payload        BLOB,
        unserializable TEXT,
        step_index     INTEGER NOT NULL DEFAULT 0,
        tenant         TEXT    NOT NULL DEFAULT 'default',
        UNIQUE (run_id, tenant, execution_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS recorded_inputs_by_chain "
    "ON recorded_inputs (chain, status, start_epoch_ns)",
    "CREATE INDEX IF NOT EXISTS recorded_inputs_by_execution ON recorded_inputs (execution_id)",
    """
    CREATE TABLE IF NOT EXISTS chain_definitions (
        chain_id    TEXT    PRIMARY KEY,
        chain       TEXT    NOT NULL,
        definition  TEXT    NOT NULL,
        recorded_ns INTEGER NOT NULL
    )
    """,
)
"""``recorded_inputs``: ``step_index`` is 0 when the row holds the chain's input, else the
index of the step whose input it is (a node's failure: the engine keeps the failing step's
input, not the chain's). ``chain_definitions``: the YAML (``dump_chains``) of each version."""

_INSERT = ("INSERT OR IGNORE INTO recorded_inputs (run_id, execution_id, chain, chain_id, "
           "status, start_epoch_ns, encoding, payload, unserializable, step_index, tenant) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def ensure_recorded_inputs_schema(conn: sqlite3.Connection) -> None:
    """Create ``recorded_inputs`` and ``chain_definitions`` when missing."""
    from flowchain.store import ensure_schema

    ensure_schema(conn, RECORDED_INPUTS_SCHEMA)


def sampled(seq: int, rate: float) -> bool:
    """Whether execution ``seq`` is among the sampled ones at ``rate``: exactly that fraction
    of the sequence numbers, spread evenly (the history writer's rule for successes)."""
    return math.floor((seq + 1) * rate) > math.floor(seq * rate)


def check_rate(rate: float, what: str = "record_inputs") -> float:
    """Return ``rate`` when it is a fraction in [0, 1].

    Raises
    ------
    ValueError
        Naming ``what`` otherwise.
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or \
            not 0.0 <= rate <= 1.0:
        raise ValueError(f"{what} must be a fraction in [0, 1], got {rate!r}")
    return float(rate)


def input_row(*, run_id: str, execution_id: str, chain: str, chain_id: str, status: str,
              start_epoch_ns: int, value: Any, step_index: int = 0,
              tenant: str = "default", unserializable: str | None = None,
              encoded: tuple[str, bytes] | None = None) -> tuple:
    """Encode ``value`` into a ``recorded_inputs`` row (the unserializable reason in place of
    the payload when it cannot be encoded, or ``unserializable`` when the caller already knows
    why there is no input to record, or ``encoded`` when the caller encoded it already, before
    the chain ran and could change it). Insert it with :func:`insert_rows`.

    Raises
    ------
    ValueError
        When ``status`` is not one of :data:`STATUSES`.
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    encoding = payload = None
    reason = unserializable
    if encoded is not None and reason is None:
        encoding, payload = encoded
    elif reason is None:
        try:
            encoding, payload = encode_input(value)
        except InputNotSerializable as exc:
            reason = exc.reason
    return (run_id, execution_id, chain, chain_id, status, int(start_epoch_ns), encoding,
            payload, reason, int(step_index), tenant)


def insert_rows(conn: sqlite3.Connection, rows: list[tuple]) -> None:
    """Insert rows made by :func:`input_row` (in the caller's transaction, if any)."""
    conn.executemany(_INSERT, rows)


def definition_row(definition: Any) -> tuple:
    """A ``chain_definitions`` row of a ChainDefinition (see :func:`insert_definitions`)."""
    from flowchain.chain import dump_chains

    return (definition.chain_id, definition.name, dump_chains([definition]), time.time_ns())


def insert_definitions(conn: sqlite3.Connection, rows: list[tuple]) -> None:
    """Store chain versions; a version already stored is kept as it is."""
    conn.executemany("INSERT OR IGNORE INTO chain_definitions (chain_id, chain, definition, "
                     "recorded_ns) VALUES (?, ?, ?, ?)", rows)


@dataclass(frozen=True, slots=True)
class RecordedInput:
    """One recorded input, decoded.

    ``value`` is None and ``unserializable`` the reason when the input could not be recorded.
    ``step_index`` 0: the chain's input; otherwise the input of that step (where it failed).
    ``replay_id`` (``<execution_id>@<run_id>``) names it uniquely across runs and processes;
    ``execution_id`` alone (``<chain_id>#<seq>``) is unique within one run only.
    """

    run_id: str
    execution_id: str
    chain: str
    chain_id: str
    status: str
    start_epoch_ns: int
    step_index: int
    tenant: str
    value: Any
    unserializable: str | None = None

    @property
    def replay_id(self) -> str:
        return f"{self.execution_id}@{self.run_id}"


_COLUMNS = ("run_id, execution_id, chain, chain_id, status, start_epoch_ns, step_index, tenant, "
            "encoding, payload, unserializable")


def open_for_reading(db_path: DatabasePath) -> sqlite3.Connection:
    """Open a history database read-only (any journal mode: a copied file is read as it is).

    Raises
    ------
    FileNotFoundError
        When ``db_path`` does not exist.
    flowchain.store.StoreError
        When it is not a SQLite database.
    """
    from flowchain.store import StoreError

    p = Path(db_path)
    if not p.is_file():
        raise FileNotFoundError(f"no history database at {str(p)!r}")
    try:
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0,
                               check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise StoreError(f"{str(p)!r} is not a readable SQLite database: {exc}") from None
    return conn


def has_recorded_inputs(conn: sqlite3.Connection) -> bool:
    """Whether the database has a ``recorded_inputs`` table."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                        "name = 'recorded_inputs'").fetchone() is not None


def recorded_from_row(row: tuple) -> RecordedInput:
    """Decode one row selected as ``_COLUMNS``.

    Raises
    ------
    InputNotDecodable
        When its payload cannot be rebuilt here (the message names the execution).
    """
    run_id, execution_id, chain, chain_id, status, start, step_index, tenant, encoding, \
        payload, reason = row
    value = None
    if reason is None:
        try:
            value = decode_input(encoding, payload)
        except InputNotDecodable as exc:
            raise InputNotDecodable(f"recorded input of {execution_id}@{run_id}: {exc}") \
                from None
    return RecordedInput(run_id, execution_id, chain, chain_id, status, start, step_index,
                         tenant, value, reason)


def load_inputs(db_path: DatabasePath, chain: str, *, status: str | None = None,
                limit: int | None = None,
                include_unserializable: bool = False) -> list[RecordedInput]:
    """Return the recorded inputs of a chain (its name or a chain id), oldest first.

    Parameters
    ----------
    status : {"failed", "sampled"}, optional
        Only those of failed executions, or of sampled successes.
    limit : int, optional
        Only the newest ``limit`` (still returned oldest first).
    include_unserializable : bool
        Also the executions whose input could not be recorded (``value`` None,
        ``unserializable`` the reason); left out by default, as nothing can run them.

    Raises
    ------
    FileNotFoundError
        When ``db_path`` does not exist.
    ValueError
        When ``status`` is not one of :data:`STATUSES` or ``limit`` is negative.
    InputNotDecodable
        When a payload cannot be rebuilt here (e.g. its class's module is not imported).
    """
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES} or None, got {status!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    conn = open_for_reading(db_path)
    try:
        if not has_recorded_inputs(conn):
            return []
        column = "chain_id" if "@" in chain else "chain"
        clauses, args = [f"{column} = ?"], [chain]
        if status is not None:
            clauses.append("status = ?")
            args.append(status)
        if not include_unserializable:
            clauses.append("unserializable IS NULL")
        sql = (f"SELECT {_COLUMNS} FROM recorded_inputs WHERE {' AND '.join(clauses)} "
               "ORDER BY start_epoch_ns DESC, id DESC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = conn.execute(sql, args).fetchall()
    finally:
        conn.close()
    return [recorded_from_row(r) for r in reversed(rows)]

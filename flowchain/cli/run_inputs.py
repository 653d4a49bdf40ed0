"""What ``flowchain run`` hands a chain, and how it shows what the chain returned.

``--input`` is JSON. Most chains take it as is. The trading node's chains take engine types,
so their first contract decides how the JSON becomes input (:data:`CONTRACT_INPUTS`):

* ``RawTickBatch`` (the MT5 -> database chain): ``{"symbol": "EURUSD", "ticks": [{"time_msc":
  1700000000000, "bid": 1.1, "ask": 1.1002}, ...]}`` becomes one batch of MT5-dtype ticks;
* ``DecisionContext`` (the AI decision chain): the same JSON; the chain runs once per tick on
  one symbol context, as the node runs it, and the last run is shown.

Each tick object needs ``time_msc``, ``bid`` and ``ask``; ``last``, ``volume``, ``flags`` and
``volume_real`` default to 0.

``--inputs FILE.jsonl`` holds one such JSON value per line (blank lines are skipped):
:func:`read_input_lines` reads and checks every line before anything runs, so a bad line is
reported with its number (:class:`BadLine`) and never half-way through a recording.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

TICK_FIELDS = ("time_msc", "bid", "ask", "last", "volume", "flags", "volume_real")
_REQUIRED = ("time_msc", "bid", "ask")
_ARRAY_SHOWN = 64
"""Arrays up to this size are shown element by element; longer ones by shape and type."""


class InputError(ValueError):
    """``--input`` does not fit the chain's first contract; the message says what to pass."""


def _ticks(data: Any, contract: str) -> tuple[str, np.ndarray]:
    from flowchain.ticks import TICK_DTYPE

    shape = ('{"symbol": "EURUSD", "ticks": [{"time_msc": 1700000000000, "bid": 1.1, '
             '"ask": 1.1002}, ...]}')
    if not isinstance(data, Mapping) or not isinstance(data.get("ticks"), list):
        raise InputError(f"a chain starting with {contract} takes {shape}")
    symbol = data.get("symbol", "EURUSD")
    if not isinstance(symbol, str) or not symbol.strip():
        raise InputError(f"'symbol' must be a non-empty string, got {symbol!r}")
    rows = data["ticks"]
    if not rows:
        raise InputError("'ticks' is empty; give at least one tick")
    out = np.zeros(len(rows), dtype=TICK_DTYPE)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InputError(f"ticks[{i}] must be an object such as {{\"time_msc\": ..., "
                             f"\"bid\": ..., \"ask\": ...}}, got {row!r}")
        unknown = set(row) - set(TICK_FIELDS)
        if unknown:
            raise InputError(f"ticks[{i}] has unknown field(s) {sorted(unknown)}; a tick has "
                             f"{', '.join(TICK_FIELDS)}")
        missing = [f for f in _REQUIRED if f not in row]
        if missing:
            raise InputError(f"ticks[{i}] lacks {', '.join(missing)}")
        for name in TICK_FIELDS:
            value = row.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value):
                raise InputError(f"ticks[{i}].{name} must be a finite number, got {value!r}")
            try:
                out[name][i] = value
            except (OverflowError, ValueError) as exc:
                raise InputError(f"ticks[{i}].{name} = {value!r} does not fit: {exc}") from None
        out["time"][i] = out["time_msc"][i] // 1000
    return symbol, out


def _raw_tick_batch(data: Any) -> Iterator[Any]:
    from flowchain.ingest.batch import RawTickBatch

    symbol, ticks = _ticks(data, "RawTickBatch")
    yield RawTickBatch(symbol, 0, ticks)


def _decision_context(data: Any) -> Iterator[Any]:
    from flowchain.trading.context import DecisionContext

    symbol, ticks = _ticks(data, "DecisionContext")
    context = DecisionContext(symbol)
    for i in range(len(ticks)):
        context.point_at(ticks, i)
        yield context


CONTRACT_INPUTS: dict[str, Callable[[Any], Iterator[Any]]] = {
    "RawTickBatch": _raw_tick_batch,
    "DecisionContext": _decision_context,
}
"""First-contract type (before ``:``) -> the inputs, one per run, made from ``--input``."""


def chain_inputs(contract: str, data: Any) -> Iterator[Any]:
    """Return the inputs to run a chain whose first step takes ``contract`` on.

    Raises
    ------
    InputError
        When ``data`` does not fit the contract (raised on first iteration).
    """
    make = CONTRACT_INPUTS.get(contract.split(":", 1)[0])
    return make(data) if make is not None else iter((data,))


@dataclass(frozen=True)
class BadLine:
    """A line of an ``--inputs`` file that cannot be run: its number (1-based) and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def read_input_lines(path: Path, contract: str) -> tuple[list[tuple[int, Any]], list[BadLine]]:
    """Read a JSONL file of inputs for a chain whose first step takes ``contract``.

    Returns the good lines as ``(line number, parsed JSON)`` and the bad ones: not UTF-8, not
    JSON, nested too deeply, or not fitting the contract (:func:`chain_inputs`). Blank lines
    are neither.

    Raises
    ------
    OSError
        When the file cannot be read.
    """
    good: list[tuple[int, Any]] = []
    bad: list[BadLine] = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                bad.append(BadLine(number, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                                           f"column {exc.start + 1})"))
                continue
            if not text.strip():
                continue
            try:
                data = json.loads(text.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                bad.append(BadLine(number, f"not valid JSON: {exc.msg} at column {exc.colno}"))
                continue
            except RecursionError:
                bad.append(BadLine(number, "JSON nested too deeply to read"))
                continue
            try:
                for _ in chain_inputs(contract, data):
                    pass
            except InputError as exc:
                bad.append(BadLine(number, f"does not fit the first step's input {contract!r}: "
                                           f"{exc}"))
                continue
            good.append((number, data))
    return good, bad


def _shown(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.size <= _ARRAY_SHOWN:
            return value.tolist()
        return f"<array {value.dtype} shape {value.shape}>"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    slots = getattr(type(value), "__slots__", None)
    if slots and not dataclasses.is_dataclass(value):
        return {"type": type(value).__name__,
                **{s: getattr(value, s, None) for s in slots if not s.startswith("_")
                   and not callable(getattr(value, s, None))
                   and not hasattr(getattr(value, s, None), "__dict__")}}
    return repr(value)


def output_json(value: Any) -> Any:
    """Return the chain's output as JSON-ready data: arrays as lists (short ones) or a shape,
    slotted objects as their public fields, anything else as its ``repr``."""
    try:
        return msgspec.to_builtins(value, enc_hook=_shown, str_keys=True)
    except (TypeError, ValueError, RecursionError, msgspec.EncodeError):
        return repr(value)

"""A stable hash of a step's input: the same value hashes the same in every process and run.

16 hex digits of a blake2b digest over a canonical, type-tagged encoding of the value (never
Python's ``hash()``, which is salted per process for strings). ``1``, ``1.0`` and ``True`` hash
differently, as do a list and a tuple of the same items; a dict hashes the same whatever its
insertion order. Read: None, bool, int, float, complex, str, bytes/bytearray/memoryview, lists,
tuples, dicts, sets, numpy arrays and scalars, dataclasses and msgspec structs (by their class's
import path and fields), enums. Anything else cannot be encoded: :func:`input_digest` raises
:class:`UnhashableInput`, and :func:`input_hash` returns a one-off token starting with ``?``
that never equals another, so such inputs never count as repeats.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import itertools
import struct
from typing import Any

import numpy as np

HASH_HEX_DIGITS = 16
"""The length of :func:`input_hash`'s result."""

_MAX_DEPTH = 200
_unhashable_tokens = itertools.count()
_pack_double = struct.Struct(">d").pack


class UnhashableInput(TypeError):
    """The value holds something the canonical encoding cannot read; ``reason`` says what."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _qualname(cls: type) -> bytes:
    return f"{cls.__module__}.{cls.__qualname__}".encode()


def _encode(value: Any, out: bytearray, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise UnhashableInput(f"nested deeper than {_MAX_DEPTH} levels")
    cls = type(value)
    if value is None:
        out += b"N"
    elif cls is bool:
        out += b"T" if value else b"F"
    elif cls is int:
        text = str(value).encode()
        out += b"i%d:" % len(text) + text
    elif cls is float:
        out += b"f" + _pack_double(value)
    elif cls is str:
        data = value.encode("utf-8", "surrogatepass")
        out += b"s%d:" % len(data) + data
    elif cls is bytes or cls is bytearray or cls is memoryview:
        data = bytes(value)
        out += b"b%d:" % len(data) + data
    elif cls is list or cls is tuple:
        out += (b"l" if cls is list else b"t") + b"%d:" % len(value)
        for item in value:
            _encode(item, out, depth + 1)
    elif cls is dict:
        items = []
        for key, item in value.items():
            part = bytearray()
            _encode(key, part, depth + 1)
            _encode(item, part, depth + 1)
            items.append(bytes(part))
        items.sort()
        out += b"d%d:" % len(items)
        for part in items:
            out += part
    elif cls is set or cls is frozenset:
        parts = []
        for item in value:
            part = bytearray()
            _encode(item, part, depth + 1)
            parts.append(bytes(part))
        parts.sort()
        out += b"S%d:" % len(parts) + b"".join(parts)
    elif isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            out += b"A" + str(value.shape).encode() + b":"
            for item in value.ravel():
                _encode(item, out, depth + 1)
        else:
            header = f"{value.dtype.str}{value.shape}".encode()
            out += b"a%d:" % len(header) + header + np.ascontiguousarray(value).tobytes()
    elif isinstance(value, np.generic):
        header = value.dtype.str.encode()
        out += b"g%d:" % len(header) + header + value.tobytes()
    elif isinstance(value, enum.Enum):
        out += b"e" + _qualname(cls) + b":"
        _encode(value.value, out, depth + 1)
    elif cls is complex:
        out += b"c" + _pack_double(value.real) + _pack_double(value.imag)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        out += b"D" + _qualname(cls) + b":"
        for f in dataclasses.fields(value):
            _encode(f.name, out, depth + 1)
            _encode(getattr(value, f.name), out, depth + 1)
    elif hasattr(cls, "__struct_fields__"):  # a msgspec Struct
        out += b"M" + _qualname(cls) + b":"
        for name in cls.__struct_fields__:
            _encode(name, out, depth + 1)
            _encode(getattr(value, name), out, depth + 1)
    elif isinstance(value, (int, float, str, bytes, list, tuple, dict)):
        # a subclass of a plain type: its class is part of what it is
        out += b"X" + _qualname(cls) + b":"
        base = next(b for b in (bool, int, float, str, bytes, list, tuple, dict)
                    if isinstance(value, b))
        _encode(base(value), out, depth + 1)
    else:
        raise UnhashableInput(f"cannot encode a {cls.__module__}.{cls.__qualname__}")


def input_digest(value: Any, size: int = HASH_HEX_DIGITS // 2) -> bytes:
    """Return the ``size``-byte blake2b digest of ``value``'s canonical encoding.

    Raises
    ------
    UnhashableInput
        When the value holds a type the encoding does not read, or nests too deeply.
    """
    out = bytearray()
    _encode(value, out, 0)
    return hashlib.blake2b(out, digest_size=size).digest()


def input_hash(value: Any) -> str:
    """Return 16 hex digits identifying ``value``, stable across processes and runs.

    A value :func:`input_digest` cannot read gets ``"?"`` and 15 hex digits unique in this
    process: it never equals another input's hash.
    """
    try:
        return input_digest(value).hex()
    except UnhashableInput:
        return "?" + format(next(_unhashable_tokens), "015x")

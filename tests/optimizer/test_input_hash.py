"""The stable input hash: equal values hash equal in every process, different ones differ."""
import dataclasses
import enum
import os
import subprocess
import sys

import msgspec
import numpy as np
import pytest

from flowchain.optimizer.input_hash import UnhashableInput, input_digest, input_hash

VALUE = {"symbol": "EURUSD", "bids": [1.0841, 1.0842], "n": 3, "flags": (True, None),
         "blob": b"\x00\x01", "ids": {3, 1, 2}}


def test_the_hash_is_the_same_in_a_fresh_interpreter():
    code = ("from flowchain.optimizer.input_hash import input_hash; "
            f"print(input_hash({VALUE!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONHASHSEED="12345"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == input_hash(VALUE)
    assert len(input_hash(VALUE)) == 16


class Side(enum.Enum):
    BUY = 1


@dataclasses.dataclass
class Tick:
    symbol: str
    bid: float


class Quote(msgspec.Struct):
    symbol: str
    bid: float


@pytest.mark.parametrize("a, b", [
    (1, 1.0), (1, True), (0.0, -0.0), ([1, 2], (1, 2)), ("1", 1), (b"a", "a"),
    (Side.BUY, 1), (Tick("X", 1.0), Quote("X", 1.0)), (Tick("X", 1.0), Tick("X", 2.0)),
    (np.arange(3), np.arange(3, dtype=np.int32)), (np.arange(4), np.arange(4).reshape(2, 2)),
    ([[1], [2]], [[1, 2]]), ({"a": 1}, {"a": 2}), ("ab", "a b"),
])
def test_different_values_hash_differently(a, b):
    assert input_hash(a) != input_hash(b)


@pytest.mark.parametrize("a, b", [
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}), ({1, 2, 3}, {3, 2, 1}), (Tick("X", 1.0), Tick("X", 1.0)),
    (np.arange(5)[::2], np.array([0, 2, 4])), (np.float64(2.5), np.float64(2.5)),
    (bytearray(b"ab"), bytearray(b"ab")),
])
def test_equal_values_hash_equal(a, b):
    assert input_hash(a) == input_hash(b)


def test_unreadable_values_get_one_off_tokens_and_the_digest_says_why():
    class Opaque:
        pass

    first, second = input_hash(Opaque()), input_hash(Opaque())
    assert first.startswith("?") and len(first) == 16 and first != second
    with pytest.raises(UnhashableInput, match="cannot encode a .*Opaque"):
        input_digest([1, Opaque()])
    nested: list = []
    for _ in range(300):
        nested = [nested]
    with pytest.raises(UnhashableInput, match="nested deeper than"):
        input_digest(nested)

"""Split an element-wise step's input into chunks and join the chunks' outputs back.

An element-wise component (``ComponentTraits.elementwise``) maps a sequence to a sequence of the
same length, item by item, so running it on contiguous chunks and concatenating the outputs in
order gives exactly what one call on the whole input gives. Inputs: lists, tuples and 1-d numpy
arrays; outputs: lists, tuples or numpy arrays (joined as the first chunk's output is).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class NotASequenceError(TypeError):
    """An element-wise step received an input it cannot split."""


def split(data: Any, parts: int, what: str) -> list[Any]:
    """Return ``data`` cut into at most ``parts`` contiguous, non-empty chunks, in order.

    ``what`` names the step for the error message.

    Raises
    ------
    NotASequenceError
        When ``data`` is not a list, tuple or 1-d numpy array.
    """
    if isinstance(data, np.ndarray):
        if data.ndim != 1:
            raise NotASequenceError(
                f"{what} splits its input item by item, but received a {data.ndim}-d array of "
                f"shape {data.shape}; pass a list, a tuple or a 1-d array")
    elif not isinstance(data, (list, tuple)):
        raise NotASequenceError(
            f"{what} splits its input item by item, but received a "
            f"{type(data).__name__}; pass a list, a tuple or a 1-d array")
    n = len(data)
    parts = max(1, min(parts, n))
    size, extra = divmod(n, parts)
    chunks = []
    start = 0
    for k in range(parts):
        end = start + size + (1 if k < extra else 0)
        chunks.append(data[start:end])
        start = end
    return chunks


def join(chunks: Sequence[Any], outputs: Sequence[Any], what: str) -> Any:
    """Return the chunks' outputs concatenated in order, as one call would have returned them.

    Raises
    ------
    TypeError
        When an output is not a sequence, or not as long as its chunk (the component is then
        not element-wise, whatever it declared).
    """
    for k, (chunk, out) in enumerate(zip(chunks, outputs, strict=False)):
        if not isinstance(out, (list, tuple, np.ndarray)):
            raise TypeError(
                f"{what} is declared element-wise but returned a {type(out).__name__} for "
                f"chunk {k + 1} of {len(chunks)}; an element-wise component returns a list, a "
                "tuple or an array as long as its input")
        if len(out) != len(chunk):
            raise TypeError(
                f"{what} is declared element-wise but returned {len(out)} items for the "
                f"{len(chunk)} of chunk {k + 1} of {len(chunks)}; an element-wise component "
                "returns one item per input item")
    first = outputs[0]
    if len(outputs) == 1:
        return first
    if isinstance(first, np.ndarray):
        return np.concatenate(outputs)
    joined: list[Any] = []
    for out in outputs:
        joined.extend(out)
    return tuple(joined) if isinstance(first, tuple) else joined


def note_chunk(exc: BaseException, what: str, index: int, count: int, start: int,
               length: int) -> None:
    """Add to ``exc`` which chunk (and items) of the step's input it was raised on."""
    add_note = getattr(exc, "add_note", None)
    if add_note is not None:
        add_note(f"raised by {what} on chunk {index + 1} of {count} (input items "
                 f"{start}..{start + length - 1})")

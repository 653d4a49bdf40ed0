"""DataBridge, the chain's first step: decode a raw batch into a numpy view of MT5 ticks.

Bytes are viewed in place (``numpy.frombuffer``: no copy, read-only); an array of the MT5 dtype
is passed through as it is; an array with the MT5 fields in another layout is converted (one
copy). Anything else is refused with a :class:`BatchDecodeError` naming the batch and the
problem, and counted by reason in :attr:`DataBridge.rejected_batches`.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from flowchain_bridge.ticks import TICK_DTYPE

from flowchain.ingest.batch import BatchStage, RawTickBatch, TickBatch
from flowchain.ingest.errors import BatchDecodeError

_ITEM = TICK_DTYPE.itemsize
DECODE_REASONS = ("bad_symbol", "bad_seq", "size_not_multiple", "wrong_dtype", "wrong_shape",
                  "bad_seqs", "wrong_type", "unreadable_buffer")
"""Why DataBridge refuses a batch (the keys of :attr:`DataBridge.rejected_batches`)."""


class DataBridge:
    """Decode raw MT5 batches into :class:`TickBatch` objects (step ``mt5_data_ingestion``).

    Attributes
    ----------
    rejected_batches : collections.Counter
        Refused batches by reason (:data:`DECODE_REASONS`).
    decoded_batches, decoded_ticks : int
        What was decoded so far.
    """

    def __init__(self) -> None:
        self.rejected_batches: Counter[str] = Counter({reason: 0 for reason in DECODE_REASONS})
        self.decoded_batches = 0
        self.decoded_ticks = 0

    def __call__(self, raw: RawTickBatch) -> TickBatch:
        """Decode ``raw`` and return a :class:`TickBatch` at stage ``DECODED``.

        Raises
        ------
        BatchDecodeError
            When the symbol is empty, ``first_seq`` is not a non-negative integer, the byte
            length is not a multiple of 60, the array has another dtype or is not 1-D, or
            ``seqs`` does not match the tick count. The batch is counted under the error's
            ``reason`` before the error propagates.
        """
        try:
            batch = self._decode(raw)
        except BatchDecodeError as exc:
            self.rejected_batches[exc.reason] += 1
            raise
        self.decoded_batches += 1
        self.decoded_ticks += batch.received
        return batch

    def _decode(self, raw: Any) -> TickBatch:
        if not isinstance(raw, RawTickBatch):
            raise BatchDecodeError(
                "wrong_type", f"DataBridge received a {type(raw).__name__}, expected a "
                "RawTickBatch(symbol, first_seq, payload); wrap wire batches in one")
        symbol, first_seq = raw.symbol, raw.first_seq
        if not isinstance(symbol, str) or not symbol:
            raise BatchDecodeError(
                "bad_symbol", f"batch with first_seq={first_seq!r} has symbol {symbol!r}; "
                "every batch must name its MT5 symbol")
        if isinstance(first_seq, bool) or not isinstance(first_seq, (int, np.integer)) \
                or first_seq < 0:
            raise BatchDecodeError(
                "bad_seq", f"{symbol} batch has first_seq {first_seq!r}; expected the "
                "non-negative wire sequence number of its first tick")
        ticks = self._ticks(symbol, int(first_seq), raw.payload)
        seqs = self._seqs(symbol, int(first_seq), len(ticks), raw.seqs)
        return TickBatch(symbol=symbol, first_seq=int(first_seq), ticks=ticks, seqs=seqs,
                         stage=BatchStage.DECODED, received=len(ticks))

    @staticmethod
    def _ticks(symbol: str, first_seq: int, payload: Any) -> np.ndarray:
        where = f"{symbol} batch at seq {first_seq}"
        if isinstance(payload, np.ndarray):
            if payload.ndim != 1:
                raise BatchDecodeError(
                    "wrong_shape", f"{where}: array has shape {payload.shape}; expected a 1-D "
                    "array of MT5 ticks")
            if payload.dtype == TICK_DTYPE:
                return payload
            if payload.dtype.names is not None \
                    and set(payload.dtype.names) == set(TICK_DTYPE.names):
                try:
                    return payload.astype(TICK_DTYPE)
                except (TypeError, ValueError) as exc:
                    raise BatchDecodeError(
                        "wrong_dtype", f"{where}: could not convert dtype {payload.dtype} to the "
                        f"MT5 tick dtype: {exc}") from exc
            raise BatchDecodeError(
                "wrong_dtype", f"{where}: array has dtype {payload.dtype}; expected the MT5 "
                f"tick dtype with fields {list(TICK_DTYPE.names)} (flowchain_bridge.ticks.TICK_DTYPE)")
        if isinstance(payload, (bytes, bytearray, memoryview)):
            size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
            if size % _ITEM:
                raise BatchDecodeError(
                    "size_not_multiple", f"{where}: payload is {size} bytes, not a multiple of "
                    f"the {_ITEM}-byte MT5 tick record ({size // _ITEM} whole records and "
                    f"{size % _ITEM} bytes left over); the frame was truncated or is not a tick "
                    "batch")
            try:
                return np.frombuffer(payload, dtype=TICK_DTYPE)
            except (TypeError, ValueError, BufferError) as exc:
                raise BatchDecodeError(
                    "unreadable_buffer", f"{where}: cannot view the payload as MT5 ticks "
                    f"({exc}); pass contiguous bytes") from exc
        raise BatchDecodeError(
            "wrong_type", f"{where}: payload is a {type(payload).__name__}; expected bytes of "
            "packed MT5 ticks or a numpy array of flowchain_bridge.ticks.TICK_DTYPE")

    @staticmethod
    def _seqs(symbol: str, first_seq: int, n: int, seqs: Any) -> np.ndarray:
        if seqs is None:
            return np.arange(first_seq, first_seq + n, dtype=np.int64)
        values = np.asarray(seqs)
        if values.ndim != 1 or len(values) != n or values.dtype.kind not in "iu":
            raise BatchDecodeError(
                "bad_seqs", f"{symbol} batch at seq {first_seq}: seqs has shape {values.shape} "
                f"and dtype {values.dtype}; expected {n} integers, one per tick")
        return values.astype(np.int64, copy=False)

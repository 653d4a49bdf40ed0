"""The batch the MT5 -> database chain passes from step to step.

The chain is ``DataBridge -> DataValidator -> DataProcessor -> DatabaseService``; each step takes
one object and returns one. The first step takes a :class:`RawTickBatch` (MT5-dtype bytes from
the wire, or an already-decoded array); the next three pass a :class:`TickBatch`, each returning
a new one (a frozen copy with its result fields filled and its :attr:`TickBatch.stage`
advanced), so the input a step failed on is still intact in the execution record; the last
returns a :class:`~flowchain.ingest.storage.StorageConfirmation`.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from flowchain_bridge.ticks import TICK_DTYPE

Payload = bytes | bytearray | memoryview | np.ndarray

_NO_TICKS = np.zeros(0, dtype=TICK_DTYPE)
_NO_SEQS = np.zeros(0, dtype=np.int64)
_NO_CODES = np.zeros(0, dtype=np.uint8)
_NO_FLOATS = np.zeros(0, dtype=np.float64)
for _empty in (_NO_TICKS, _NO_SEQS, _NO_CODES, _NO_FLOATS):
    _empty.flags.writeable = False


class BatchStage(enum.IntEnum):
    """How far along the chain a :class:`TickBatch` is."""

    DECODED = 1
    VALIDATED = 2
    PROCESSED = 3


@dataclass(frozen=True, slots=True, eq=False)
class RawTickBatch:
    """A batch as it arrives: one symbol's ticks as raw MT5-dtype bytes (or a decoded array).

    Attributes
    ----------
    symbol : str
        The MT5 symbol, e.g. ``"EURUSD"``.
    first_seq : int
        The wire sequence number of the first tick; tick ``i`` has ``first_seq + i`` unless
        ``seqs`` says otherwise.
    payload : bytes, bytearray, memoryview or numpy.ndarray
        Packed records of :data:`~flowchain_bridge.ticks.TICK_DTYPE` (60 bytes each), or a 1-D array of
        that dtype (from ``copy_ticks_range`` or a :class:`~flowchain.feeds.ring.TickRing`).
    seqs : numpy.ndarray, optional
        One sequence number per tick, when they are not consecutive (a ring read after a gap).
    """

    symbol: str
    first_seq: int
    payload: Payload
    seqs: np.ndarray | None = None


@dataclass(frozen=True, slots=True, eq=False)
class TickBatch:
    """One symbol's batch of ticks and what the chain's steps found out about it.

    Attributes
    ----------
    symbol, first_seq
        As in :class:`RawTickBatch`.
    ticks : numpy.ndarray
        The ticks the next step works on (:data:`~flowchain_bridge.ticks.TICK_DTYPE`): every decoded
        tick after DataBridge, only the accepted ones after DataValidator.
    seqs : numpy.ndarray
        ``int64`` sequence number of each tick in ``ticks``.
    stage : BatchStage
        The last step that filled this batch.
    received : int
        How many ticks the batch arrived with.
    rejected, rejected_seqs, rejected_reasons
        The ticks the validator quarantined, their sequence numbers and ``uint8`` reason codes
        (indexes into :data:`flowchain.ingest.validation.REJECT_REASONS`), in arrival order.
    reason_counts : Mapping[str, int]
        Rejected ticks of this batch by reason (every reason present, zeros included).
    mid, spread : numpy.ndarray
        ``(bid + ask) / 2`` and ``ask - bid`` of each accepted tick (after DataProcessor).
    bars : Mapping[str, numpy.ndarray]
        Per timeframe label (``"1s"``, ``"1m"``), every bar of :data:`~flowchain.store.BAR_DTYPE`
        this batch touched, in time order; the first may merge a bar begun by an earlier batch,
        the last is still open and carries its whole state so far.
    """

    symbol: str
    first_seq: int
    ticks: np.ndarray
    seqs: np.ndarray
    stage: BatchStage = BatchStage.DECODED
    received: int = 0
    rejected: np.ndarray = field(default_factory=lambda: _NO_TICKS)
    rejected_seqs: np.ndarray = field(default_factory=lambda: _NO_SEQS)
    rejected_reasons: np.ndarray = field(default_factory=lambda: _NO_CODES)
    reason_counts: Mapping[str, int] = field(default_factory=dict)
    mid: np.ndarray = field(default_factory=lambda: _NO_FLOATS)
    spread: np.ndarray = field(default_factory=lambda: _NO_FLOATS)
    bars: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        """How many ticks are in :attr:`ticks`."""
        return len(self.ticks)

    def __repr__(self) -> str:
        return (f"TickBatch(symbol={self.symbol!r}, first_seq={self.first_seq}, "
                f"stage={self.stage.name}, received={self.received}, ticks={len(self.ticks)}, "
                f"rejected={len(self.rejected)})")

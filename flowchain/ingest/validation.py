"""DataValidator, the chain's second step: vectorized checks that split accepted from rejected ticks.

Each tick gets at most one reason, the first that applies in this order:

``non_finite``
    ``bid``, ``ask``, ``last`` or ``volume_real`` is NaN or infinite.
``non_positive``
    ``bid`` or ``ask`` is zero or negative, or ``last`` is negative (``last == 0`` is MT5's "no
    trade price" and is accepted).
``crossed``
    ``bid > ask`` (a locked quote, ``bid == ask``, is accepted).
``volume_out_of_range``
    ``volume`` does not fit a signed 64-bit integer (SQLite's) or ``volume_real`` is negative.
``out_of_order``
    ``time_msc`` is earlier than an accepted tick before it, in this batch or in the symbol's
    previous batches.
``duplicate``
    Every field equal to an accepted tick before it (several ticks may share a ``time_msc``
    and differ in other fields: those are kept), in this batch or at the end of the symbol's
    previous batch.

Rejected ticks are never dropped: the batch carries them (exact original records, sequence
numbers and reason codes) for the quarantine table, and the validator counts them by reason,
per batch and in total. ``-0.0`` in ``last`` and ``volume_real`` is normalized to ``0.0`` in the
accepted ticks, so equal values always have equal bytes and keys.

The validator keeps, per symbol, the last accepted ``time_msc`` and the accepted records at that
millisecond. A batch that failed after validation (say the disk was full) and is sent again is
therefore quarantined as ``duplicate``/``out_of_order``, not stored; call :meth:`reset` for the
symbol first when you replay on purpose.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np

from flowchain.ingest.batch import BatchStage, TickBatch
from flowchain.ingest.errors import BatchStageError

REJECT_REASONS: tuple[str, ...] = ("non_finite", "non_positive", "crossed",
                                   "volume_out_of_range", "out_of_order", "duplicate")
"""Reject reasons in the order they are checked; reason code ``i + 1`` is ``REJECT_REASONS[i]``
(code 0 means accepted)."""

NON_FINITE, NON_POSITIVE, CROSSED, VOLUME_OUT_OF_RANGE, OUT_OF_ORDER, DUPLICATE = range(1, 7)
_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min
_RECORD = np.dtype((np.void, 60))


def reason_name(code: int) -> str:
    """Return the reason string of a reason code (``0`` is ``"accepted"``).

    Raises
    ------
    ValueError
        When ``code`` is not a known reason code.
    """
    if code == 0:
        return "accepted"
    if 1 <= code <= len(REJECT_REASONS):
        return REJECT_REASONS[code - 1]
    raise ValueError(f"unknown reject reason code {code}; codes are 0..{len(REJECT_REASONS)}")


@dataclasses.dataclass(slots=True)
class _SymbolTail:
    """What the validator remembers of a symbol: its last accepted ms and the records at it."""

    last_msc: int
    records: set[bytes]


class DataValidator:
    """Split each batch into accepted and quarantined ticks (step ``data_validation``).

    Attributes
    ----------
    rejected_by_reason : collections.Counter
        Total rejected ticks by reason, every reason present.
    accepted_ticks : int
        Total accepted ticks.
    """

    def __init__(self) -> None:
        self.rejected_by_reason: Counter[str] = Counter({r: 0 for r in REJECT_REASONS})
        self.accepted_ticks = 0
        self._tails: dict[str, _SymbolTail] = {}

    def reset(self, symbol: str | None = None) -> None:
        """Forget what was seen of ``symbol`` (of every symbol when ``None``), e.g. on replay."""
        if symbol is None:
            self._tails.clear()
        else:
            self._tails.pop(symbol, None)

    def last_time_msc(self, symbol: str) -> int | None:
        """Return the last accepted ``time_msc`` of ``symbol``, or ``None`` if none yet."""
        tail = self._tails.get(symbol)
        return None if tail is None else tail.last_msc

    def __call__(self, batch: TickBatch) -> TickBatch:
        """Validate ``batch`` and return it at stage ``VALIDATED``.

        Raises
        ------
        BatchStageError
            When ``batch`` is not a :class:`TickBatch` fresh from DataBridge.
        """
        if not isinstance(batch, TickBatch) or batch.stage != BatchStage.DECODED:
            raise BatchStageError(
                f"DataValidator received {_describe(batch)}; expected a TickBatch at stage "
                "DECODED: chain DataValidator right after DataBridge")
        ticks, seqs = batch.ticks, batch.seqs
        tail = self._tails.get(batch.symbol)
        codes = self._price_codes(ticks)
        self._mark_out_of_order(ticks["time_msc"], codes, tail)
        accepted_idx = np.flatnonzero(codes == 0)
        accepted = ticks[accepted_idx]  # a copy: never a view of the caller's buffer
        accepted["last"] += 0.0  # -0.0 -> 0.0, so equal values have equal bytes
        accepted["volume_real"] += 0.0
        duplicate = self._duplicates(accepted, tail)
        if duplicate.any():
            codes[accepted_idx[duplicate]] = DUPLICATE
            keep = ~duplicate
            accepted = accepted[keep]
            accepted_idx = accepted_idx[keep]
        self._remember(batch.symbol, accepted, tail)

        counts = np.bincount(codes, minlength=len(REJECT_REASONS) + 1)
        reason_counts = {reason: int(counts[i + 1]) for i, reason in enumerate(REJECT_REASONS)}
        for reason, count in reason_counts.items():
            if count:
                self.rejected_by_reason[reason] += count
        self.accepted_ticks += len(accepted)
        rejected_idx = np.flatnonzero(codes)
        return dataclasses.replace(
            batch, ticks=accepted, seqs=seqs[accepted_idx], stage=BatchStage.VALIDATED,
            rejected=ticks[rejected_idx], rejected_seqs=seqs[rejected_idx],
            rejected_reasons=codes[rejected_idx], reason_counts=reason_counts)

    @staticmethod
    def _price_codes(ticks: np.ndarray) -> np.ndarray:
        bid, ask, last, volume_real = ticks["bid"], ticks["ask"], ticks["last"], \
            ticks["volume_real"]
        codes = np.zeros(len(ticks), dtype=np.uint8)
        finite = np.isfinite(bid) & np.isfinite(ask) & np.isfinite(last) & np.isfinite(volume_real)
        codes[~finite] = NON_FINITE
        with np.errstate(invalid="ignore"):
            checks = (
                (NON_POSITIVE, (bid <= 0.0) | (ask <= 0.0) | (last < 0.0)),
                (CROSSED, bid > ask),
                (VOLUME_OUT_OF_RANGE, (ticks["volume"] > _INT64_MAX) | (volume_real < 0.0)),
            )
        for code, failed in checks:
            codes[failed & (codes == 0)] = code
        return codes

    @staticmethod
    def _mark_out_of_order(time_msc: np.ndarray, codes: np.ndarray,
                           tail: _SymbolTail | None) -> None:
        n = len(time_msc)
        if n == 0:
            return
        ok = codes == 0
        running = np.maximum.accumulate(np.where(ok, time_msc, _INT64_MIN))
        before = np.empty(n, dtype=np.int64)
        before[0] = _INT64_MIN if tail is None else tail.last_msc
        before[1:] = running[:-1]
        if tail is not None:
            np.maximum(before, tail.last_msc, out=before)
        codes[ok & (time_msc < before)] = OUT_OF_ORDER

    @staticmethod
    def _duplicates(accepted: np.ndarray, tail: _SymbolTail | None) -> np.ndarray:
        """Mark accepted ticks (time-sorted) equal in every field to an earlier accepted one."""
        n = len(accepted)
        duplicate = np.zeros(n, dtype=bool)
        if n == 0:
            return duplicate
        records = accepted.view(_RECORD)
        time_msc = accepted["time_msc"]
        if tail is not None and tail.records:
            # Only the leading ticks can share the previous batch's last millisecond.
            at_tail = int(np.searchsorted(time_msc, tail.last_msc, side="right"))
            for i in range(at_tail):
                if records[i].tobytes() in tail.records:
                    duplicate[i] = True
        # Identical ticks share a millisecond; check only ticks in multi-tick milliseconds.
        same_ms = time_msc[1:] == time_msc[:-1]
        if same_ms.any():
            grouped = np.zeros(n, dtype=bool)
            grouped[1:] |= same_ms
            grouped[:-1] |= same_ms
            candidates = np.flatnonzero(grouped & ~duplicate)
            _, first = np.unique(records[candidates], return_index=True)
            later = np.ones(len(candidates), dtype=bool)
            later[first] = False
            duplicate[candidates[later]] = True
        return duplicate

    def _remember(self, symbol: str, accepted: np.ndarray, tail: _SymbolTail | None) -> None:
        if len(accepted) == 0:
            return
        last_msc = int(accepted["time_msc"][-1])
        start = int(np.searchsorted(accepted["time_msc"], last_msc, side="left"))
        records = {r.tobytes() for r in accepted[start:].view(_RECORD)}
        if tail is not None and tail.last_msc == last_msc:
            tail.records |= records
        else:
            self._tails[symbol] = _SymbolTail(last_msc, records)


def _describe(value: Any) -> str:
    if isinstance(value, TickBatch):
        return f"a TickBatch at stage {value.stage.name}"
    return f"a {type(value).__name__}"

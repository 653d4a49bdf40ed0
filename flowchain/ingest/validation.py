"""DataValidator, the chain's second step: checks that split accepted from rejected ticks.

The checks run in one pass of a numba kernel per batch (:mod:`flowchain.ingest.kernels`).

Each tick gets at most one reason, the first that applies in this order (the first four are the
quote rules of :func:`flowchain_bridge.ticks.tick_fault`, the one definition the wire decoders, the
replay reader and the decision chain's guard apply too):

``non_finite``
    ``bid``, ``ask``, ``last`` or ``volume_real`` is NaN or infinite.
``non_positive``
    ``bid`` or ``ask`` is zero or negative, or ``last`` is negative (``last == 0`` is MT5's "no
    trade price" and is accepted).
``crossed``
    ``bid > ask`` (a locked quote, ``bid == ask``, is accepted).
``volume_out_of_range``
    ``volume`` does not fit a signed 64-bit integer (SQLite's) or ``volume_real`` is negative.
``future``
    ``time_msc`` is more than ``max_ahead_ms`` (a day by default: MT5 servers keep their own time
    zone) after the validator's clock. Such a tick is never accepted, so it cannot push the
    symbol's clock ahead and make every real tick after it ``out_of_order``.
``out_of_order``
    ``time_msc`` is earlier than an accepted tick before it, in this batch or in the symbol's
    previous batches.
``duplicate``
    The identity of an accepted tick before it, in this batch or at the end of the symbol's
    previous batch. A tick's identity is its ``time_msc`` and the sequence number its feed gave
    it (the bridge's per-symbol ``seq``, a replay file's tick number, the simulator's count),
    carried through the ring and the batches: never its prices. Ticks that share a millisecond
    and their prices but not a sequence number are distinct and all kept, in order (a quote that
    moves A -> B -> A within a millisecond is three ticks, and the last one is the final quote
    of that millisecond).

Rejected ticks are never dropped: the batch carries them (exact original records, sequence
numbers and reason codes) for the quarantine table, and the validator counts them by reason,
per batch and in total. ``-0.0`` in ``last`` and ``volume_real`` is normalized to ``0.0`` in the
accepted ticks, so equal values always have equal bytes and keys.

The validator keeps, per symbol, the last accepted ``time_msc`` and the sequence numbers accepted
at that millisecond. A batch that failed after validation (say the disk was full) and is sent
again is therefore quarantined as ``duplicate``/``out_of_order``, not stored; call :meth:`reset`
for the symbol first when you replay on purpose. A feed must number its ticks (a seq shared by
two ticks of one millisecond makes the second a ``duplicate``); every FlowChain feed does.
"""
from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from flowchain_bridge.ticks import TICK_FAULTS

from flowchain.ingest import kernels
from flowchain.ingest.batch import BatchStage, TickBatch
from flowchain.ingest.errors import BatchStageError

REJECT_REASONS: tuple[str, ...] = TICK_FAULTS + ("future", "out_of_order", "duplicate")
"""Reject reasons in the order they are checked; reason code ``i + 1`` is ``REJECT_REASONS[i]``
(code 0 means accepted)."""

DUPLICATE = kernels.DUPLICATE
_INT64_MIN = np.iinfo(np.int64).min
_INT64_MAX = np.iinfo(np.int64).max
DEFAULT_MAX_AHEAD_MS = 86_400_000
"""How far past the validator's clock a tick may be dated before it is ``future``."""


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
    """What the validator remembers of a symbol: its last accepted ms and the seqs at it."""

    last_msc: int
    seqs: set[int]


class DataValidator:
    """Split each batch into accepted and quarantined ticks (step ``data_validation``).

    Parameters
    ----------
    max_ahead_ms : int or None, optional
        Ticks dated more than this after ``clock()`` are quarantined as ``future``; ``None``
        turns the check off.
    clock : callable, optional
        Wall-clock time in ns (``time.time_ns`` by default), read once per batch.

    Attributes
    ----------
    rejected_by_reason : collections.Counter
        Total rejected ticks by reason, every reason present.
    accepted_ticks : int
        Total accepted ticks.
    """

    def __init__(self, max_ahead_ms: int | None = DEFAULT_MAX_AHEAD_MS,
                 clock: Callable[[], int] = time.time_ns) -> None:
        if max_ahead_ms is not None and max_ahead_ms < 0:
            raise ValueError(f"DataValidator: max_ahead_ms must be >= 0 or None, got "
                             f"{max_ahead_ms}")
        self.max_ahead_ms = max_ahead_ms
        self._clock = clock
        self.rejected_by_reason: Counter[str] = Counter({r: 0 for r in REJECT_REASONS})
        self.accepted_ticks = 0
        self._tails: dict[str, _SymbolTail] = {}
        kernels.warm_up()

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
        codes = np.empty(len(ticks), dtype=np.uint8)
        rejected = kernels.reject_codes(
            ticks["bid"], ticks["ask"], ticks["last"], ticks["volume"], ticks["volume_real"],
            ticks["time_msc"], _INT64_MIN if tail is None else tail.last_msc,
            _INT64_MAX if self.max_ahead_ms is None
            else self._clock() // 1_000_000 + self.max_ahead_ms, codes)
        if rejected:
            accepted_idx = np.flatnonzero(codes == 0)
            accepted = ticks[accepted_idx]  # a copy
        else:
            accepted_idx = np.arange(len(ticks))
            accepted = ticks.copy()  # never a view of the caller's buffer
        accepted["last"] += 0.0  # -0.0 -> 0.0, so equal values have equal bytes
        accepted["volume_real"] += 0.0
        accepted_seqs = seqs[accepted_idx] if rejected else seqs
        duplicate = self._duplicates(accepted, accepted_seqs, tail)
        if duplicate.any():
            codes[accepted_idx[duplicate]] = DUPLICATE
            keep = ~duplicate
            accepted = accepted[keep]
            accepted_idx = accepted_idx[keep]
            accepted_seqs = accepted_seqs[keep]
        self._remember(batch.symbol, accepted, accepted_seqs, tail)
        self.accepted_ticks += len(accepted)
        if len(accepted) == len(ticks):
            return dataclasses.replace(
                batch, ticks=accepted, seqs=seqs.copy(), stage=BatchStage.VALIDATED,
                reason_counts=dict.fromkeys(REJECT_REASONS, 0))

        counts = np.bincount(codes, minlength=len(REJECT_REASONS) + 1)
        reason_counts = {reason: int(counts[i + 1]) for i, reason in enumerate(REJECT_REASONS)}
        for reason, count in reason_counts.items():
            if count:
                self.rejected_by_reason[reason] += count
        rejected_idx = np.flatnonzero(codes)
        return dataclasses.replace(
            batch, ticks=accepted, seqs=seqs[accepted_idx], stage=BatchStage.VALIDATED,
            rejected=ticks[rejected_idx], rejected_seqs=seqs[rejected_idx],
            rejected_reasons=codes[rejected_idx], reason_counts=reason_counts)

    @staticmethod
    def _duplicates(accepted: np.ndarray, seqs: np.ndarray,
                    tail: _SymbolTail | None) -> np.ndarray:
        """Mark accepted ticks (time-sorted) whose (``time_msc``, seq) an earlier one has."""
        n = len(accepted)
        duplicate = np.zeros(n, dtype=bool)
        if n == 0:
            return duplicate
        time_msc = accepted["time_msc"]
        if tail is not None and tail.seqs:
            # Only the leading ticks can share the previous batch's last millisecond.
            at_tail = int(np.searchsorted(time_msc, tail.last_msc, side="right"))
            if at_tail:
                for i, seq in enumerate(seqs[:at_tail].tolist()):
                    if seq in tail.seqs:
                        duplicate[i] = True
        # Ticks of one identity share a millisecond: compare seqs only within one millisecond.
        if n > 1 and (time_msc[1:] == time_msc[:-1]).any():
            kernels.mark_duplicates(time_msc, seqs, duplicate)
        return duplicate

    def _remember(self, symbol: str, accepted: np.ndarray, seqs: np.ndarray,
                  tail: _SymbolTail | None) -> None:
        if len(accepted) == 0:
            return
        last_msc = int(accepted["time_msc"][-1])
        start = int(np.searchsorted(accepted["time_msc"], last_msc, side="left"))
        at_last = set(seqs[start:].tolist())
        if tail is not None and tail.last_msc == last_msc:
            tail.seqs |= at_last
        else:
            self._tails[symbol] = _SymbolTail(last_msc, at_last)


def _describe(value: Any) -> str:
    if isinstance(value, TickBatch):
        return f"a TickBatch at stage {value.stage.name}"
    return f"a {type(value).__name__}"

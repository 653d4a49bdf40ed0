"""ConsensusEngine: a confidence-weighted vote of the agents, gated by agreement and a threshold."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from flowchain.trading.context import DecisionContext
from flowchain.trading.decision import BUY, HOLD, SELL

_OUT_SIDE = 0
_OUT_SCORE = 1
_OUT_AGREEMENT = 2
_OUT_CONFIDENCE = 3


@njit(cache=True, nogil=True)
def weighted_vote(signals, confidences, threshold, min_agreement, min_confidence, deadband,
                  out):  # pragma: no cover - numba
    """Write ``(side, score, agreement, mean confidence)`` of the vote into ``out``.

    ``score = sum(s*c) / sum(c)``; ``agreement`` is the share of the confidence weight whose
    signal is on the score's side (``|s| >= deadband``). ``side`` is +1/-1 only when
    ``|score| >= threshold``, ``agreement >= min_agreement`` and the mean confidence reaches
    ``min_confidence``; else 0.
    """
    n = signals.shape[0]
    total = 0.0
    weighted = 0.0
    for i in range(n):
        c = confidences[i]
        total += c
        weighted += signals[i] * c
    score = weighted / total if total > 0.0 else 0.0
    agree = 0.0
    if score != 0.0:
        for i in range(n):
            s = signals[i]
            if abs(s) >= deadband and (s > 0.0) == (score > 0.0):
                agree += confidences[i]
    agreement = agree / total if total > 0.0 else 0.0
    mean_conf = total / n if n > 0 else 0.0
    side = 0.0
    if abs(score) >= threshold and agreement >= min_agreement and mean_conf >= min_confidence:
        side = 1.0 if score > 0.0 else -1.0
    out[_OUT_SIDE] = side
    out[_OUT_SCORE] = score
    out[_OUT_AGREEMENT] = agreement
    out[_OUT_CONFIDENCE] = mean_conf


class ConsensusEngine:
    """The ``consensus_generation`` step: turn the agents' votes into a :class:`Decision`.

    Parameters
    ----------
    threshold : float, optional
        Smallest ``|score|`` (confidence-weighted mean signal) that trades, in (0, 1].
    min_agreement : float, optional
        Smallest share of the confidence weight on the score's side, in [0, 1].
    min_confidence : float, optional
        Smallest mean confidence of the agents, in [0, 1].
    deadband : float, optional
        Votes with ``|signal|`` below this count as neutral (they never agree).
    base_volume : float, optional
        Lots at ``|score| == 1``; the volume scales with ``|score|``.
    volume_step : float, optional
        Lot step: volumes are rounded down to it, and never below one step.
    max_volume : float, optional
        Upper bound on one decision's volume.

    Raises
    ------
    ValueError
        If a parameter is outside its range.

    Notes
    -----
    It fills ``ctx.decision`` in place and returns ``ctx``; the decision's ``signals`` and
    ``confidences`` are the context's vote arrays, so ``decision.votes()`` is its reason.
    """

    def __init__(self, threshold: float = 0.3, min_agreement: float = 0.6,
                 min_confidence: float = 0.1, deadband: float = 0.05, base_volume: float = 0.1,
                 volume_step: float = 0.01, max_volume: float = 1.0) -> None:
        checks = (("threshold", threshold, 0.0 < threshold <= 1.0, "(0, 1]"),
                  ("min_agreement", min_agreement, 0.0 <= min_agreement <= 1.0, "[0, 1]"),
                  ("min_confidence", min_confidence, 0.0 <= min_confidence <= 1.0, "[0, 1]"),
                  ("deadband", deadband, 0.0 <= deadband < 1.0, "[0, 1)"),
                  ("base_volume", base_volume, base_volume > 0, "> 0"),
                  ("volume_step", volume_step, 0 < volume_step <= base_volume, "(0, base_volume]"),
                  ("max_volume", max_volume, max_volume >= volume_step, ">= volume_step"))
        for name, value, ok, rng in checks:
            if not ok or not math.isfinite(value):
                raise ValueError(f"ConsensusEngine: {name} must be in {rng}, got {value}")
        self.threshold = float(threshold)
        self.min_agreement = float(min_agreement)
        self.min_confidence = float(min_confidence)
        self.deadband = float(deadband)
        self.base_volume = float(base_volume)
        self.volume_step = float(volume_step)
        self.max_volume = float(max_volume)
        self._out = np.zeros(4, dtype=np.float64)
        weighted_vote(np.zeros(1), np.zeros(1), 0.5, 0.5, 0.0, 0.0, self._out)  # compile/warm

    def volume_for(self, score: float) -> float:
        """Return the lots for a score: ``base_volume * |score|`` on the lot grid, within bounds."""
        steps = math.floor(self.base_volume * abs(score) / self.volume_step + 1e-9)
        volume = max(1, steps) * self.volume_step
        return round(min(volume, self.max_volume), 8)

    def __call__(self, ctx: DecisionContext) -> DecisionContext:
        """Decide on ``ctx``'s votes; fill ``ctx.decision`` and return ``ctx``."""
        out = self._out
        weighted_vote(ctx.signals, ctx.confidences, self.threshold, self.min_agreement,
                      self.min_confidence, self.deadband, out)
        side, score, agreement, confidence = out.tolist()
        d = ctx.decision
        d.score = score
        d.agreement = agreement
        d.confidence = confidence
        if d.signals is not ctx.signals:
            d.signals = ctx.signals
            d.confidences = ctx.confidences
            d.agent_names = ctx.agent_names
        if side > 0.0:
            d.action, d.side, d.volume = BUY, 1, self.volume_for(score)
        elif side < 0.0:
            d.action, d.side, d.volume = SELL, -1, self.volume_for(score)
        else:
            d.action, d.side, d.volume = HOLD, 0, 0.0
        return ctx

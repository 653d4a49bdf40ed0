"""Trading agents: each reads the feature vector and votes ``(signal in [-1, 1], confidence in [0, 1])``.

The four built-in agents are numba scalar kernels (:func:`momentum_vote`, ...), so
:class:`~flowchain.trading.orchestrator.MultiAgentOrchestrator` can run all of them in one fused
numba call per tick; each is also usable alone through its :meth:`analyze` method.

Any object with a ``name`` and an ``analyze(features) -> (signal, confidence)`` method is an
:class:`Agent`; a component registered with ``@flowchain.component("MyAgent")`` whose call takes
the feature vector and returns ``(signal, confidence)`` is one too (see the orchestrator).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from numba import njit

from flowchain.trading.layout import (
    F_CHANNEL_HIGH,
    F_CHANNEL_LOW,
    F_COUNT,
    F_EMA_FAST,
    F_EMA_SLOW,
    F_IMBALANCE,
    F_MID,
    F_RSI,
    F_VOLATILITY,
)
from flowchain.trading.linear_model import LinearWeights, load_linear_weights

VOLATILITY_FLOOR = 1e-7
"""Per-tick volatility below this is treated as this (no division by a flat market's zero)."""

KIND_MOMENTUM = 0
KIND_MEAN_REVERSION = 1
KIND_BREAKOUT = 2
KIND_LINEAR = 3


@runtime_checkable
class Agent(Protocol):
    """What the orchestrator needs from an agent."""

    name: str

    def analyze(self, features: np.ndarray) -> tuple[float, float]:
        """Return ``(signal in [-1, 1], confidence in [0, 1])`` for one feature vector."""
        ...


@njit(cache=True, nogil=True)
def momentum_vote(features, scale, warmup):  # pragma: no cover - numba
    """Trend: the fast/slow EMA gap in volatility units, squashed by tanh."""
    if features[F_COUNT] < warmup:
        return 0.0, 0.0
    vol = max(features[F_VOLATILITY], VOLATILITY_FLOOR)
    z = math.log(features[F_EMA_FAST] / features[F_EMA_SLOW]) / vol
    return math.tanh(z / scale), min(1.0, abs(z) / (2.0 * scale))


@njit(cache=True, nogil=True)
def mean_reversion_vote(features, scale, warmup):  # pragma: no cover - numba
    """Fade the mid's distance from the slow EMA; confident when RSI agrees it is stretched."""
    if features[F_COUNT] < warmup:
        return 0.0, 0.0
    vol = max(features[F_VOLATILITY], VOLATILITY_FLOOR)
    z = math.log(features[F_MID] / features[F_EMA_SLOW]) / vol
    signal = -math.tanh(z / scale)
    stretch = (features[F_RSI] - 50.0) / 50.0  # +1 overbought, -1 oversold
    agree = -stretch if signal >= 0.0 else stretch  # RSI on the side the signal fades
    confidence = min(1.0, abs(signal)) * min(1.0, max(0.0, agree) * 2.0)
    return signal, confidence


@njit(cache=True, nogil=True)
def breakout_vote(features, scale, warmup):  # pragma: no cover - numba
    """Go with a break of the previous channel's high or low; confident with order flow behind it."""
    if features[F_COUNT] < warmup:
        return 0.0, 0.0
    mid = features[F_MID]
    unit = scale * max(features[F_VOLATILITY], VOLATILITY_FLOOR) * mid
    imbalance = features[F_IMBALANCE]
    if mid > features[F_CHANNEL_HIGH]:
        return min(1.0, (mid - features[F_CHANNEL_HIGH]) / unit), min(1.0, max(0.0, 0.5 + 0.5 * imbalance))
    if mid < features[F_CHANNEL_LOW]:
        return -min(1.0, (features[F_CHANNEL_LOW] - mid) / unit), min(1.0, max(0.0, 0.5 - 0.5 * imbalance))
    return 0.0, 0.0


@njit(cache=True, nogil=True)
def linear_vote(features, weights, bias, mean, scale):  # pragma: no cover - numba
    """``tanh(bias + w . (x - mean) / scale)``; confidence is the signal's magnitude."""
    z = bias
    for i in range(features.shape[0]):
        z += weights[i] * (features[i] - mean[i]) / scale[i]
    if not math.isfinite(z):
        return 0.0, 0.0
    signal = math.tanh(z)
    return signal, abs(signal)


class _RuleAgent:
    """A built-in rule agent: ``scale`` sets how fast the vote saturates, ``warmup`` its silence."""

    kind = -1
    default_name = ""

    def __init__(self, scale: float = 2.0, warmup: int = 50, name: str = "") -> None:
        if not scale > 0:
            raise ValueError(f"{type(self).__name__}: scale must be positive, got {scale}")
        if warmup < 0:
            raise ValueError(f"{type(self).__name__}: warmup must be >= 0 ticks, got {warmup}")
        self.name = name or self.default_name
        self.scale = float(scale)
        self.warmup = float(warmup)

    def params(self) -> tuple[float, float]:
        """Return the parameters the fused kernel reads: ``(scale, warmup)``."""
        return self.scale, self.warmup


class MomentumAgent(_RuleAgent):
    """Follow the trend: fast EMA above slow EMA (in volatility units) -> buy."""

    kind = KIND_MOMENTUM
    default_name = "momentum"

    def analyze(self, features: np.ndarray) -> tuple[float, float]:
        """Return ``(signal, confidence)``; silent (0, 0) during warm-up."""
        return momentum_vote(features, self.scale, self.warmup)


class MeanReversionAgent(_RuleAgent):
    """Fade stretches: mid far above the slow EMA with a high RSI -> sell."""

    kind = KIND_MEAN_REVERSION
    default_name = "mean_reversion"

    def analyze(self, features: np.ndarray) -> tuple[float, float]:
        """Return ``(signal, confidence)``; silent (0, 0) during warm-up."""
        return mean_reversion_vote(features, self.scale, self.warmup)


class BreakoutAgent(_RuleAgent):
    """Trade channel breaks: mid above the previous channel high -> buy, below the low -> sell."""

    kind = KIND_BREAKOUT
    default_name = "breakout"

    def __init__(self, scale: float = 1.0, warmup: int = 50, name: str = "") -> None:
        super().__init__(scale, warmup, name)

    def analyze(self, features: np.ndarray) -> tuple[float, float]:
        """Return ``(signal, confidence)``; (0, 0) inside the channel or during warm-up."""
        return breakout_vote(features, self.scale, self.warmup)


class LinearModelAgent:
    """A linear model over the standardized feature vector, with weights from a file.

    Parameters
    ----------
    weights : LinearWeights, str or Path, optional
        Loaded weights, or the path of a ``.json`` / ``.npy`` file
        (see :func:`flowchain.trading.linear_model.load_linear_weights`); the packaged
        illustrative default when omitted.
    name : str, optional

    Raises
    ------
    FileNotFoundError, ValueError
        If the weights file is missing or malformed (the message names the file and the fault).
    """

    kind = KIND_LINEAR

    def __init__(self, weights: LinearWeights | str | Path | None = None,
                 name: str = "linear") -> None:
        self.model = weights if isinstance(weights, LinearWeights) else load_linear_weights(weights)
        self.name = name

    def analyze(self, features: np.ndarray) -> tuple[float, float]:
        """Return ``(tanh(z), |tanh(z)|)``; (0, 0) when ``z`` is not finite."""
        m = self.model
        return linear_vote(features, m.weights, m.bias, m.mean, m.scale)


BUILTIN_AGENTS = (MomentumAgent, MeanReversionAgent, BreakoutAgent, LinearModelAgent)


def default_agents(linear_weights: str | Path | None = None) -> list[Agent]:
    """Return one of each built-in agent (the linear one with ``linear_weights``)."""
    return [MomentumAgent(), MeanReversionAgent(), BreakoutAgent(),
            LinearModelAgent(linear_weights)]

"""MultiAgentOrchestrator: every agent votes on the tick's features; built-ins in one numba call.

Strategy authors add their own agents in two ways:

* pass objects with ``name`` and ``analyze(features) -> (signal, confidence)``::

      MultiAgentOrchestrator(agents=[*default_agents(), MyAgent()])

* or register a component and name it; the orchestrator resolves it through the component
  registry (a class is instantiated once; its call takes the feature vector)::

      @flowchain.component("VolumeSpikeAgent")
      def volume_spike(features):
          return (1.0, 0.4) if features[F_TICK_RATE] > 50 else (0.0, 0.0)

      MultiAgentOrchestrator(agent_components=["VolumeSpikeAgent"])

Built-in agents run fused in :func:`run_builtin_agents` (one numba crossing for all of them);
others are called one by one from Python. A custom agent that raises or returns something that is
not two finite numbers abstains for that tick (signal 0, confidence 0) and is counted in
:attr:`MultiAgentOrchestrator.faults` by ``(agent name, reason)``; values outside their range are
clipped and counted the same way.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numba import njit

from flowchain.components import ComponentRegistry, default_components
from flowchain.trading.agents import (
    BUILTIN_AGENTS,
    KIND_BREAKOUT,
    KIND_MEAN_REVERSION,
    KIND_MOMENTUM,
    Agent,
    LinearModelAgent,
    breakout_vote,
    default_agents,
    linear_vote,
    mean_reversion_vote,
    momentum_vote,
)
from flowchain.trading.context import DecisionContext
from flowchain.trading.layout import N_FEATURES


@njit(cache=True, nogil=True)
def run_builtin_agents(features, kinds, slots, params, lin_w, lin_b, lin_mean, lin_scale,
                       signals, confidences):  # pragma: no cover - numba
    """Run every built-in agent on ``features``; write the votes at ``slots``."""
    for k in range(kinds.shape[0]):
        kind = kinds[k]
        if kind == KIND_MOMENTUM:
            s, c = momentum_vote(features, params[k, 0], params[k, 1])
        elif kind == KIND_MEAN_REVERSION:
            s, c = mean_reversion_vote(features, params[k, 0], params[k, 1])
        elif kind == KIND_BREAKOUT:
            s, c = breakout_vote(features, params[k, 0], params[k, 1])
        else:
            row = int(params[k, 0])
            s, c = linear_vote(features, lin_w[row], lin_b[row], lin_mean[row], lin_scale[row])
        signals[slots[k]] = s
        confidences[slots[k]] = c


class _ComponentAgent:
    """Adapt a registered component (``features -> (signal, confidence)``) to :class:`Agent`."""

    def __init__(self, name: str, call: object) -> None:
        self.name = name
        self._call = call

    def analyze(self, features: np.ndarray) -> tuple[float, float]:
        return self._call(features)  # type: ignore[operator]


class MultiAgentOrchestrator:
    """The ``multi_agent_analysis`` step: run all agents, write their votes into the context.

    Parameters
    ----------
    agents : sequence of Agent, optional
        The agents, in vote order; one of each built-in agent when omitted.
    agent_components : sequence of str, optional
        Names of registered components to add as agents (after ``agents``).
    registry : ComponentRegistry, optional
        Where to resolve ``agent_components``; the process-wide registry by default.
    linear_weights : str or Path, optional
        Weights file for the default linear agent (only used when ``agents`` is omitted).

    Raises
    ------
    ValueError
        If there is no agent, two agents share a name, or an agent lacks ``name``/``analyze``.
    flowchain.errors.UnknownComponentError
        If a name in ``agent_components`` is not registered.
    """

    def __init__(self, agents: Sequence[Agent] | None = None,
                 agent_components: Sequence[str] = (),
                 registry: ComponentRegistry | None = None,
                 linear_weights: str | Path | None = None) -> None:
        chosen: list = list(agents) if agents is not None else default_agents(linear_weights)
        reg = registry or default_components
        for name in agent_components:
            chosen.append(_ComponentAgent(name, reg.resolve(name).call))
        if not chosen:
            raise ValueError("MultiAgentOrchestrator: no agents; pass agents=[...] or "
                             "agent_components=[...] (or neither, for the built-in four)")
        for agent in chosen:
            if not isinstance(getattr(agent, "name", None), str) or not callable(
                    getattr(agent, "analyze", None)):
                raise ValueError(f"MultiAgentOrchestrator: {agent!r} is not an agent; it needs a "
                                 "str 'name' and an analyze(features) -> (signal, confidence)")
        names = [a.name for a in chosen]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"MultiAgentOrchestrator: agent names must be unique; repeated: "
                             f"{duplicates}; give each agent its own name=")
        self.agents: tuple = tuple(chosen)
        self.agent_names: tuple[str, ...] = tuple(names)
        self.faults: Counter = Counter()
        """Votes a custom agent could not give, by ``(agent name, reason)``."""
        self._compile_builtins()
        self._warm_up()

    def _compile_builtins(self) -> None:
        # Exactly the built-in classes run fused; a subclass may override analyze(), so it runs
        # from Python like any author's agent.
        builtin = [(i, a) for i, a in enumerate(self.agents) if type(a) in BUILTIN_AGENTS]
        linear = [a for _, a in builtin if isinstance(a, LinearModelAgent)]
        n = len(builtin)
        self._kinds = np.array([a.kind for _, a in builtin], dtype=np.int64)
        self._slots = np.array([i for i, _ in builtin], dtype=np.int64)
        self._params = np.zeros((n, 2), dtype=np.float64)
        row = 0
        for k, (_, agent) in enumerate(builtin):
            if isinstance(agent, LinearModelAgent):
                self._params[k] = (row, 0.0)
                row += 1
            else:
                self._params[k] = agent.params()
        nl = max(1, len(linear))
        self._lin_w = np.zeros((nl, N_FEATURES))
        self._lin_b = np.zeros(nl)
        self._lin_mean = np.zeros((nl, N_FEATURES))
        self._lin_scale = np.ones((nl, N_FEATURES))
        for r, agent in enumerate(linear):
            self._lin_w[r] = agent.model.weights
            self._lin_b[r] = agent.model.bias
            self._lin_mean[r] = agent.model.mean
            self._lin_scale[r] = agent.model.scale
        fused = set(self._slots.tolist())
        self._custom = tuple((i, a) for i, a in enumerate(self.agents) if i not in fused)

    def _warm_up(self) -> None:
        features = np.zeros(N_FEATURES)
        features[:] = 1.0
        n = len(self.agents)
        run_builtin_agents(features, self._kinds, self._slots, self._params, self._lin_w,
                           self._lin_b, self._lin_mean, self._lin_scale, np.zeros(n), np.zeros(n))

    def bind(self, ctx: DecisionContext) -> None:
        """Size ``ctx``'s vote arrays for this orchestrator's agents (once per symbol)."""
        n = len(self.agents)
        ctx.signals = np.zeros(n, dtype=np.float64)
        ctx.confidences = np.zeros(n, dtype=np.float64)
        ctx.agent_names = self.agent_names
        ctx.agents_owner = self

    def __call__(self, ctx: DecisionContext) -> DecisionContext:
        """Write every agent's vote into ``ctx.signals`` / ``ctx.confidences``; return ``ctx``."""
        if ctx.agents_owner is not self:
            self.bind(ctx)
        signals = ctx.signals
        confidences = ctx.confidences
        features = ctx.features
        run_builtin_agents(features, self._kinds, self._slots, self._params, self._lin_w,
                           self._lin_b, self._lin_mean, self._lin_scale, signals, confidences)
        for slot, agent in self._custom:
            signals[slot], confidences[slot] = self._ask(agent, features)
        return ctx

    def _ask(self, agent: Agent, features: np.ndarray) -> tuple[float, float]:
        try:
            signal, confidence = agent.analyze(features)
            signal = float(signal)
            confidence = float(confidence)
        except Exception as exc:  # an author's agent must not stop the chain: abstain, count
            self.faults[(agent.name, f"raised {type(exc).__name__}")] += 1
            return 0.0, 0.0
        if not (math.isfinite(signal) and math.isfinite(confidence)):
            self.faults[(agent.name, "not finite")] += 1
            return 0.0, 0.0
        if not (-1.0 <= signal <= 1.0 and 0.0 <= confidence <= 1.0):
            self.faults[(agent.name, "out of range, clipped")] += 1
            signal = min(1.0, max(-1.0, signal))
            confidence = min(1.0, max(0.0, confidence))
        return signal, confidence

"""The built-in agents, the linear model's weights file, and the orchestrator (fused and custom)."""
import json

import numpy as np
import pytest

from flowchain.components import ComponentRegistry
from flowchain.errors import UnknownComponentError
from flowchain.trading import layout as L
from flowchain.trading.agents import (
    BreakoutAgent,
    LinearModelAgent,
    MeanReversionAgent,
    MomentumAgent,
    default_agents,
)
from flowchain.trading.context import DecisionContext
from flowchain.trading.linear_model import load_linear_weights
from flowchain.trading.orchestrator import MultiAgentOrchestrator


def features(**values) -> np.ndarray:
    f = np.zeros(L.N_FEATURES)
    f[L.F_MID] = f[L.F_EMA_FAST] = f[L.F_EMA_SLOW] = 1.1
    f[L.F_CHANNEL_HIGH], f[L.F_CHANNEL_LOW] = 1.101, 1.099
    f[L.F_VOLATILITY], f[L.F_RSI], f[L.F_COUNT] = 1e-4, 50.0, 500
    for name, value in values.items():
        f[L.FEATURE_NAMES.index(name)] = value
    return f


def in_range(vote):
    s, c = vote
    return -1.0 <= s <= 1.0 and 0.0 <= c <= 1.0


def test_momentum_follows_the_trend():
    up = MomentumAgent().analyze(features(ema_fast=1.1003))
    down = MomentumAgent().analyze(features(ema_fast=1.0997))
    assert up[0] > 0.5 and down[0] < -0.5 and up[1] > 0 and in_range(up) and in_range(down)
    assert MomentumAgent().analyze(features(ema_fast=1.1003, count=10)) == (0.0, 0.0)


def test_mean_reversion_fades_a_stretch_confirmed_by_rsi():
    stretched = MeanReversionAgent().analyze(features(mid=1.1003, rsi=85.0))
    assert stretched[0] < -0.5 and stretched[1] > 0.5 and in_range(stretched)
    unconfirmed = MeanReversionAgent().analyze(features(mid=1.1003, rsi=30.0))
    assert unconfirmed[1] == 0.0
    oversold = MeanReversionAgent().analyze(features(mid=1.0997, rsi=15.0))
    assert oversold[0] > 0.5 and oversold[1] > 0.5


def test_breakout_goes_with_the_break_and_the_flow():
    up = BreakoutAgent().analyze(features(mid=1.1012, imbalance=0.6))
    down = BreakoutAgent().analyze(features(mid=1.0985, imbalance=0.6))
    inside = BreakoutAgent().analyze(features(mid=1.1))
    assert up[0] > 0 and up[1] == pytest.approx(0.8) and down[0] < 0 and down[1] == pytest.approx(0.2)
    assert inside == (0.0, 0.0)


def test_linear_model_from_json_and_npy(tmp_path):
    w = np.zeros(L.N_FEATURES)
    w[L.F_IMBALANCE] = 2.0
    (tmp_path / "m.json").write_text(json.dumps({"weights": w.tolist(), "bias": 0.1}))
    np.save(tmp_path / "m.npy", np.concatenate([w, [0.1]]))
    f = features(imbalance=0.5)
    for name in ("m.json", "m.npy"):
        s, c = LinearModelAgent(tmp_path / name).analyze(f)
        assert s == pytest.approx(np.tanh(1.1)) and c == pytest.approx(abs(s))
    default = load_linear_weights()
    assert default.weights.shape == (L.N_FEATURES,) and in_range(LinearModelAgent().analyze(f))


@pytest.mark.parametrize("content,match", [
    ({"weights": [1.0, 2.0]}, r"shape \(2,\)"),
    ({"weights": [0.0] * L.N_FEATURES, "scale": [0.0] * L.N_FEATURES}, "positive"),
    ({"weights": [float("nan")] + [0.0] * (L.N_FEATURES - 1)}, "NaN"),
    ({"bias": 1.0}, "'weights'"),
    ({"weights": [0.0] * L.N_FEATURES, "features": ["a"]}, "do not match"),
])
def test_bad_weights_files_name_the_fault(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=match):
        LinearModelAgent(path)


def test_bad_weights_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LinearModelAgent(tmp_path / "missing.json")
    np.save(tmp_path / "w.npy", np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"\(17,\)"):
        LinearModelAgent(tmp_path / "w.npy")
    (tmp_path / "w.txt").write_text("1")
    with pytest.raises(ValueError, match="unknown format"):
        LinearModelAgent(tmp_path / "w.txt")


def random_features(rng, n):
    out = []
    for _ in range(n):
        out.append(features(mid=1.1 + rng.normal(0, 3e-4), ema_fast=1.1 + rng.normal(0, 2e-4),
                            rsi=rng.uniform(0, 100), imbalance=rng.uniform(-1, 1),
                            volatility=rng.uniform(0, 3e-4), ret_medium=rng.normal(0, 1e-3)))
    return out


def test_fused_kernel_matches_each_agent_alone():
    rng = np.random.default_rng(3)
    agents = default_agents()
    orch = MultiAgentOrchestrator(agents)
    ctx = DecisionContext("EURUSD")
    for f in random_features(rng, 200):
        ctx.features[:] = f
        assert orch(ctx) is ctx
        expected = [a.analyze(f) for a in agents]
        np.testing.assert_allclose(ctx.signals, [e[0] for e in expected], rtol=1e-12)
        np.testing.assert_allclose(ctx.confidences, [e[1] for e in expected], rtol=1e-12)
        assert np.all(np.abs(ctx.signals) <= 1) and np.all((ctx.confidences >= 0) & (ctx.confidences <= 1))
    assert ctx.agent_names == ("momentum", "mean_reversion", "breakout", "linear")


def test_custom_agents_by_object_and_by_component_and_their_faults():
    registry = ComponentRegistry()

    @registry.component("FlowAgent")
    def flow_agent(f):
        return f[L.F_IMBALANCE], 0.9

    class Broken:
        name = "broken"

        def __init__(self):
            self.mode = "raise"

        def analyze(self, f):
            if self.mode == "raise":
                raise RuntimeError("boom")
            return (float("nan"), 1.0) if self.mode == "nan" else (3.0, -1.0)

    class Momentum2(MomentumAgent):  # a subclass runs from Python, not fused
        def analyze(self, f):
            return 0.25, 0.5

    broken = Broken()
    orch = MultiAgentOrchestrator([MomentumAgent(), broken, Momentum2(name="m2")],
                                  agent_components=["FlowAgent"], registry=registry)
    ctx = DecisionContext("EURUSD")
    ctx.features[:] = features(imbalance=0.4)
    orch(ctx)
    assert ctx.agent_names == ("momentum", "broken", "m2", "FlowAgent")
    assert list(ctx.signals[1:]) == [0.0, 0.25, 0.4] and ctx.confidences[3] == 0.9
    broken.mode = "nan"
    orch(ctx)
    broken.mode = "range"
    orch(ctx)
    assert ctx.signals[1] == 1.0 and ctx.confidences[1] == 0.0
    assert orch.faults == {("broken", "raised RuntimeError"): 1, ("broken", "not finite"): 1,
                           ("broken", "out of range, clipped"): 1}


def test_orchestrator_refuses_bad_agent_sets():
    with pytest.raises(ValueError, match="unique"):
        MultiAgentOrchestrator([MomentumAgent(), MomentumAgent()])
    with pytest.raises(ValueError, match="no agents"):
        MultiAgentOrchestrator([])
    with pytest.raises(ValueError, match="not an agent"):
        MultiAgentOrchestrator([object()])
    with pytest.raises(UnknownComponentError):
        MultiAgentOrchestrator(agent_components=["Nope"], registry=ComponentRegistry())

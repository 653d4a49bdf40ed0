"""ConsensusEngine: weighted vote, agreement, threshold, volume, and the votes as the reason."""
import numpy as np
import pytest

from flowchain.trading.consensus import ConsensusEngine
from flowchain.trading.context import DecisionContext


def decide(engine, signals, confidences):
    ctx = DecisionContext("EURUSD")
    ctx.signals = np.array(signals, dtype=float)
    ctx.confidences = np.array(confidences, dtype=float)
    ctx.agent_names = tuple(f"a{i}" for i in range(len(signals)))
    assert engine(ctx) is ctx
    return ctx.decision


def test_confident_agreement_buys_with_the_votes_as_reason():
    d = decide(ConsensusEngine(threshold=0.3, min_agreement=0.6, base_volume=0.1),
               [0.8, 0.6, -0.2], [0.9, 0.5, 0.2])
    expected_score = (0.8 * 0.9 + 0.6 * 0.5 - 0.2 * 0.2) / 1.6
    assert d.action == "buy" and d.side == 1
    assert d.score == pytest.approx(expected_score)
    assert d.agreement == pytest.approx(1.4 / 1.6)
    assert d.volume == pytest.approx(0.06)  # floor(0.1 * 0.6125 / 0.01) steps
    assert d.votes() == [("a0", 0.8, 0.9), ("a1", 0.6, 0.5), ("a2", -0.2, 0.2)]
    assert d.reason()["votes"]["a2"] == {"signal": -0.2, "confidence": 0.2}


def test_sell_side_is_symmetric():
    d = decide(ConsensusEngine(), [-0.8, -0.6, 0.2], [0.9, 0.5, 0.2])
    assert d.action == "sell" and d.side == -1 and d.volume > 0


def test_below_threshold_holds():
    d = decide(ConsensusEngine(threshold=0.5), [0.4, 0.4], [1.0, 1.0])
    assert d.action == "hold" and d.volume == 0.0 and d.score == pytest.approx(0.4)


def test_split_vote_fails_minimum_agreement():
    # Score clears the threshold, but only 55 % of the weight is on its side.
    d = decide(ConsensusEngine(threshold=0.1, min_agreement=0.6), [1.0, -0.6], [0.55, 0.45])
    assert d.score == pytest.approx(0.28) and d.agreement == pytest.approx(0.55)
    assert d.action == "hold"


def test_low_confidence_and_no_confidence_hold():
    assert decide(ConsensusEngine(min_confidence=0.5), [1.0, 1.0], [0.3, 0.3]).action == "hold"
    d = decide(ConsensusEngine(), [1.0, -1.0], [0.0, 0.0])
    assert d.action == "hold" and d.score == 0.0 and d.agreement == 0.0


def test_deadband_votes_never_agree():
    d = decide(ConsensusEngine(threshold=0.01, min_agreement=0.6, deadband=0.05),
               [0.5, 0.01, 0.01], [0.4, 0.3, 0.3])
    assert d.agreement == pytest.approx(0.4) and d.action == "hold"


def test_volume_grid_and_cap():
    engine = ConsensusEngine(base_volume=2.0, volume_step=0.1, max_volume=1.5)
    assert engine.volume_for(1.0) == 1.5
    assert engine.volume_for(0.33) == pytest.approx(0.6)
    assert engine.volume_for(0.01) == pytest.approx(0.1)  # never below one step


def test_decision_copy_is_independent():
    engine = ConsensusEngine()
    ctx = DecisionContext("EURUSD")
    ctx.signals, ctx.confidences, ctx.agent_names = np.array([0.9]), np.array([0.9]), ("a",)
    engine(ctx)
    kept = ctx.decision.copy()
    ctx.signals[0] = -0.9
    engine(ctx)
    assert kept.action == "buy" and kept.signals[0] == 0.9 and ctx.decision.action == "sell"


@pytest.mark.parametrize("kwargs", [{"threshold": 0.0}, {"min_agreement": 1.5},
                                    {"base_volume": 0.0}, {"volume_step": 1.0, "base_volume": 0.1},
                                    {"threshold": float("nan")}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError, match="ConsensusEngine"):
        ConsensusEngine(**kwargs)

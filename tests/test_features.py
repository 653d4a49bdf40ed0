"""FeatureEngine: every incremental feature against a whole-series numpy reference."""
import numpy as np
import pytest
from flowchain_bridge.ticks import TICK_DTYPE, TICK_FLAG_BUY, TICK_FLAG_SELL

from flowchain.trading import layout as L
from flowchain.trading.context import DecisionContext
from flowchain.trading.features import FeatureEngine, QuoteRefused

N = 1500


def make_ticks(n: int = N, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ticks = np.zeros(n, dtype=TICK_DTYPE)
    mid = 1.1 * np.exp(np.cumsum(rng.normal(0, 2e-4, n)))
    if n > 220:
        mid[200:220] = mid[199]  # flat stretch: zero changes
    spread = rng.uniform(1e-5, 3e-4, n)
    ticks["bid"] = mid - spread / 2
    ticks["ask"] = mid + spread / 2
    ticks["time_msc"] = 1_700_000_000_000 + np.cumsum(rng.integers(0, 60, n))  # shared ms too
    ticks["time"] = ticks["time_msc"] // 1000
    flags = rng.choice([0x02, 0x06, TICK_FLAG_BUY | 0x08, TICK_FLAG_SELL | 0x08,
                        TICK_FLAG_BUY | TICK_FLAG_SELL, 0x86], n)
    ticks["flags"] = flags
    ticks["volume_real"] = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.1, 5.0, n))
    return ticks


def ewma(x: np.ndarray, alpha: float, start: float) -> np.ndarray:
    """y_t = (1-a) y_{t-1} + a x_t with y_{-1} = start, as one lower-triangular matrix product."""
    n = len(x)
    t = np.arange(n)
    lag = t[:, None] - t[None, :]
    weights = np.where(lag >= 0, alpha * (1 - alpha) ** np.clip(lag, 0, None), 0.0)
    return weights @ x + (1 - alpha) ** (t + 1) * start


def run_incremental(engine: FeatureEngine, ticks: np.ndarray, history: int = 1024) -> np.ndarray:
    ctx = DecisionContext("EURUSD", history=history)
    out = np.empty((len(ticks), L.N_FEATURES))
    for i in range(len(ticks)):
        ctx.point_at(ticks, i)
        assert engine(ctx) is ctx
        out[i] = ctx.features
    return out


@pytest.fixture(scope="module")
def series():
    engine = FeatureEngine(horizons=(1, 10, 100), fast_period=12, slow_period=48,
                           volatility_period=100, rsi_period=14, rate_window_ms=1000.0,
                           imbalance_period=50, channel=50)
    ticks = make_ticks()
    return engine, ticks, run_incremental(engine, ticks)


def test_mid_spread_quote(series):
    _, ticks, feats = series
    np.testing.assert_allclose(feats[:, L.F_MID], (ticks["bid"] + ticks["ask"]) / 2, rtol=1e-15)
    np.testing.assert_allclose(feats[:, L.F_SPREAD], ticks["ask"] - ticks["bid"], rtol=1e-15)
    np.testing.assert_array_equal(feats[:, L.F_BID], ticks["bid"])
    np.testing.assert_array_equal(feats[:, L.F_TIME_MSC], ticks["time_msc"])
    np.testing.assert_array_equal(feats[:, L.F_COUNT], np.arange(1, N + 1))


@pytest.mark.parametrize("col,h", [(L.F_RET_SHORT, 1), (L.F_RET_MEDIUM, 10), (L.F_RET_LONG, 100)])
def test_log_returns(series, col, h):
    _, ticks, feats = series
    mid = (ticks["bid"] + ticks["ask"]) / 2
    expected = np.zeros(N)
    expected[h:] = np.log(mid[h:] / mid[:-h])
    np.testing.assert_allclose(feats[:, col], expected, rtol=1e-12, atol=1e-15)


def test_emas(series):
    engine, ticks, feats = series
    mid = (ticks["bid"] + ticks["ask"]) / 2
    for col, period in ((L.F_EMA_FAST, 12), (L.F_EMA_SLOW, 48)):
        alpha = 2 / (period + 1)
        expected = ewma(mid[1:], alpha, mid[0])
        np.testing.assert_allclose(feats[0, col], mid[0])
        np.testing.assert_allclose(feats[1:, col], expected, rtol=1e-12)


def test_realized_volatility(series):
    _, ticks, feats = series
    mid = (ticks["bid"] + ticks["ask"]) / 2
    r = np.concatenate([[0.0], np.diff(np.log(mid))])
    expected = np.sqrt(ewma(r * r, 2 / 101, 0.0))
    np.testing.assert_allclose(feats[:, L.F_VOLATILITY], expected, rtol=1e-9)


def test_rsi_wilder(series):
    _, ticks, feats = series
    n = 14
    mid = (ticks["bid"] + ticks["ask"]) / 2
    d = np.diff(mid)
    gains, losses = np.clip(d, 0, None), np.clip(-d, 0, None)
    # Seed with the simple mean of the first n changes (tick n), then Wilder's alpha = 1/n.
    avg_g = np.concatenate([[gains[:n].mean()], ewma(gains[n:], 1 / n, gains[:n].mean())])
    avg_l = np.concatenate([[losses[:n].mean()], ewma(losses[n:], 1 / n, losses[:n].mean())])
    expected = np.full(N, 50.0)
    with np.errstate(divide="ignore"):
        expected[n:] = np.where(avg_l == 0, np.where(avg_g > 0, 100.0, 50.0),
                                100 - 100 / (1 + avg_g / avg_l))
    np.testing.assert_allclose(feats[:, L.F_RSI], expected, rtol=1e-9)
    assert feats[:, L.F_RSI].min() >= 0 and feats[:, L.F_RSI].max() <= 100


def test_tick_rate(series):
    _, ticks, feats = series
    t = ticks["time_msc"].astype(np.int64)
    first = np.searchsorted(t, t - 1000, side="right")  # first tick strictly inside the window
    counts = np.arange(N) - first + 1
    np.testing.assert_allclose(feats[:, L.F_TICK_RATE], counts * 1000 / 1000.0)


def test_tick_rate_is_bounded_by_history():
    engine = FeatureEngine(horizons=(1, 2, 3), channel=3)
    ticks = make_ticks(200)
    ticks["time_msc"] = 1_000  # all in one millisecond: more ticks in the window than history
    feats = run_incremental(engine, ticks, history=16)
    assert feats[-1, L.F_TICK_RATE] == 16.0


def test_imbalance(series):
    _, ticks, feats = series
    mid = (ticks["bid"] + ticks["ask"]) / 2
    flags = ticks["flags"].astype(np.int64)
    buy = (flags & TICK_FLAG_BUY) != 0
    sell = (flags & TICK_FLAG_SELL) != 0
    rule = np.sign(np.concatenate([[0.0], np.diff(mid)]))
    side = np.where(buy & ~sell, 1.0, np.where(sell & ~buy, -1.0, rule))
    w = np.where(ticks["volume_real"] > 0, ticks["volume_real"], 1.0)
    alpha = 2 / 51
    expected = ewma(side * w, alpha, 0.0) / ewma(w, alpha, 0.0)
    np.testing.assert_allclose(feats[:, L.F_IMBALANCE], expected, rtol=1e-9, atol=1e-12)
    assert np.abs(feats[:, L.F_IMBALANCE]).max() <= 1.0


def test_breakout_channel(series):
    _, ticks, feats = series
    mid = (ticks["bid"] + ticks["ask"]) / 2
    k = 50
    high = np.empty(N)
    low = np.empty(N)
    for i in range(N):  # the reference: max/min over the previous k mids, by slicing
        window = mid[max(0, i - k):i]
        high[i] = window.max() if len(window) else mid[i]
        low[i] = window.min() if len(window) else mid[i]
    np.testing.assert_array_equal(feats[:, L.F_CHANNEL_HIGH], high)
    np.testing.assert_array_equal(feats[:, L.F_CHANNEL_LOW], low)


def test_symbols_are_independent_and_reset_restarts():
    engine = FeatureEngine()
    ticks = make_ticks(300)
    a, b = DecisionContext("A"), DecisionContext("B")
    for i in range(300):
        a.point_at(ticks, i)
        engine(a)
    b.point_at(ticks, 0)
    engine(b)
    assert b.features[L.F_COUNT] == 1 and a.features[L.F_COUNT] == 300
    a.reset()
    a.point_at(ticks, 5)
    engine(a)
    assert a.features[L.F_COUNT] == 1 and a.features[L.F_EMA_SLOW] == a.features[L.F_MID]


def test_load_copies_a_record():
    engine = FeatureEngine()
    ticks = make_ticks(3)
    ctx = DecisionContext("EURUSD")
    ctx.load(ticks[1])
    ticks["bid"][1] = 99.0  # the context copied the record: later writes do not leak in
    engine(ctx)
    assert ctx.features[L.F_BID] != 99.0


def test_bad_parameters_and_short_history_are_refused():
    with pytest.raises(ValueError, match="horizons"):
        FeatureEngine(horizons=(10, 1, 100))
    with pytest.raises(ValueError, match="rsi_period"):
        FeatureEngine(rsi_period=0)
    engine = FeatureEngine(horizons=(1, 10, 100))
    with pytest.raises(ValueError, match="history=101"):
        engine(DecisionContext("EURUSD", history=50))
    with pytest.raises(ValueError, match="symbol"):
        DecisionContext("")


@pytest.mark.parametrize("fields, reason", [
    ({"bid": 0.0}, "non_positive"), ({"ask": 0.0}, "non_positive"),
    ({"bid": -1.1}, "non_positive"), ({"last": -1.0}, "non_positive"),
    ({"bid": np.nan}, "non_finite"), ({"ask": np.inf}, "non_finite"),
    ({"volume_real": np.nan}, "non_finite"), ({"bid": 1.3, "ask": 1.2}, "crossed"),
    ({"volume_real": -1.0}, "volume_out_of_range"),
])
def test_a_bad_tick_is_refused_and_leaves_the_symbol_usable(fields, reason):
    """One bad tick amid good ones: refused by name, the state untouched, and every later tick's
    features exactly as if the bad tick had never come (no poisoned state)."""
    ticks = make_ticks(400)
    bad_at = 250
    poisoned = ticks.copy()
    for field, value in fields.items():
        poisoned[field][bad_at] = value
    engine = FeatureEngine()
    ctx = DecisionContext("EURUSD")
    features = []
    for i in range(len(poisoned)):
        ctx.point_at(poisoned, i)
        if i == bad_at:
            state, vector = ctx.state.copy(), ctx.features.copy()
            with pytest.raises(QuoteRefused, match=reason) as info:
                engine(ctx)
            assert info.value.reason == reason and info.value.symbol == "EURUSD"
            assert ctx.state.tobytes() == state.tobytes()
            assert ctx.features.tobytes() == vector.tobytes()
            continue
        engine(ctx)
        features.append(ctx.features.copy())
    assert engine.refused == {reason: 1}
    clean = run_incremental(FeatureEngine(), np.delete(ticks, bad_at))
    np.testing.assert_array_equal(np.array(features), clean)
    assert np.isfinite(clean).all()


def test_the_first_tick_of_a_symbol_may_be_the_bad_one():
    engine = FeatureEngine()
    ctx = DecisionContext("EURUSD")
    ctx.load_quote(0.0, 1.1, 1_700_000_000_000)
    with pytest.raises(QuoteRefused, match="non_positive"):
        engine(ctx)
    ctx.load_quote(1.1, 1.1002, 1_700_000_000_001)
    engine(ctx)
    assert ctx.features[L.F_COUNT] == 1 and ctx.features[L.F_MID] == pytest.approx(1.1001)

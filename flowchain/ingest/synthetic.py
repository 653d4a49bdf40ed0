"""Seeded synthetic MT5 ticks for the ingest benchmark and tests: a clean, time-ordered random walk."""
from __future__ import annotations

import numpy as np
from flowchain_bridge.ticks import TICK_DTYPE, TICK_FLAG_ASK, TICK_FLAG_BID

DEFAULT_START_MSC = 1_767_225_600_000
"""2026-01-01T00:00:00Z in milliseconds."""


def synthetic_ticks(n: int, *, seed: int = 0, start_msc: int = DEFAULT_START_MSC,
                    mean_gap_ms: float = 40.0, price: float = 1.1, spread: float = 1e-4,
                    same_ms_share: float = 0.05) -> np.ndarray:
    """Return ``n`` valid MT5 ticks: a mid-price random walk with exponential gaps between ticks.

    Parameters
    ----------
    n : int
        How many ticks.
    seed : int
        The random seed; equal arguments give equal ticks.
    start_msc : int
        ``time_msc`` of the first tick.
    mean_gap_ms : float
        Mean time between ticks, in milliseconds.
    price, spread : float
        Starting mid price and the typical spread.
    same_ms_share : float
        Share of ticks that arrive in the same millisecond as the previous one (with other
        prices), as real MT5 feeds do.

    Returns
    -------
    numpy.ndarray
        ``n`` ticks of :data:`~flowchain_bridge.ticks.TICK_DTYPE`, ``time_msc`` non-decreasing, all
        valid and distinct (DataValidator accepts every one).

    Raises
    ------
    ValueError
        When ``n`` is negative or a price, spread or gap is not positive.
    """
    if n < 0 or price <= 0 or spread <= 0 or mean_gap_ms <= 0:
        raise ValueError(f"synthetic_ticks needs n >= 0 and positive price, spread and gap; got "
                         f"n={n}, price={price}, spread={spread}, mean_gap_ms={mean_gap_ms}")
    rng = np.random.default_rng(seed)
    gaps = np.maximum(rng.exponential(mean_gap_ms, n), 1.0).astype(np.int64)
    gaps[rng.random(n) < same_ms_share] = 0
    gaps[0] = 0
    ticks = np.zeros(n, dtype=TICK_DTYPE)
    ticks["time_msc"] = start_msc + np.cumsum(gaps)
    ticks["time"] = ticks["time_msc"] // 1000
    mid = price * np.exp(np.cumsum(rng.normal(0.0, 2e-5, n)))
    half = spread * (0.5 + rng.random(n)) / 2
    ticks["bid"] = np.round(mid - half, 6)
    ticks["ask"] = np.round(mid + half, 6)
    # Ticks in one millisecond differ at least in volume (its last three digits count them), so
    # the stream holds no duplicates however the prices round.
    index = np.arange(n)
    run_start = np.maximum.accumulate(np.where(gaps > 0, index, 0))
    ticks["volume"] = rng.integers(1, 10, n) * 1000 + np.minimum(index - run_start, 999)
    ticks["volume_real"] = ticks["volume"].astype(np.float64)
    ticks["flags"] = TICK_FLAG_BID | TICK_FLAG_ASK
    return ticks

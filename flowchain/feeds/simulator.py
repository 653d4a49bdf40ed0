"""The seeded simulator feed, the node's default source: realistic FX ticks, same seed, same ticks.

Each symbol's mid follows a geometric random walk whose per-tick variance is a GARCH(1,1)
process, so calm stretches alternate with volatile clusters. The spread widens with volatility
and is jittered around the symbol's typical spread, in whole points. Ticks of all symbols are
interleaved on one millisecond clock with exponential gaps, and a share of ticks arrive in the
same millisecond as the previous one (bursts). Flags carry ``TICK_FLAG_BID``/``TICK_FLAG_ASK``
for what changed plus, on a share of ticks, the undocumented bit 0x80 real terminals send (the
MQL5 docs show ``flags=134``). Every tick keeps the quote rules of :func:`flowchain_bridge.ticks.tick_fault`
(bid at least one point, ask above bid). Ticks are generated in chunks by a numba kernel (compiled with
``cache=True`` and warmed up when the module is first used) and copied one by one into the rings.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from flowchain_bridge.ticks import TICK_DTYPE, TICK_FLAG_ASK, TICK_FLAG_BID
from numba import njit

from flowchain.feeds.base import DEFAULT_RING_CAPACITY, Feed

UNKNOWN_FLAG = 0x80
"""An undocumented flag bit real MT5 ticks carry; the simulator sets it so consumers pass it on."""

DEFAULT_START_MSC = 1_704_186_000_000
"""2024-01-02 09:00:00 UTC, the simulated clock's default start (ms since the epoch)."""


@dataclass(frozen=True)
class SymbolSpec:
    """How one simulated symbol trades.

    Attributes
    ----------
    mid : float
        Starting mid price.
    digits : int
        Price digits; one point is ``10 ** -digits``.
    spread_points : float
        Typical spread in points on a calm market.
    sigma : float
        Typical per-tick standard deviation of the log mid.
    weight : float
        Relative share of all ticks.
    """

    mid: float
    digits: int
    spread_points: float
    sigma: float
    weight: float = 1.0


DEFAULT_SPECS: dict[str, SymbolSpec] = {
    "EURUSD": SymbolSpec(1.08500, 5, 7.0, 2.5e-5, 3.0),
    "GBPUSD": SymbolSpec(1.27000, 5, 11.0, 3.0e-5, 2.0),
    "USDJPY": SymbolSpec(149.500, 3, 9.0, 2.8e-5, 2.0),
    "AUDUSD": SymbolSpec(0.67000, 5, 9.0, 3.0e-5, 1.0),
    "USDCHF": SymbolSpec(0.86000, 5, 12.0, 2.8e-5, 1.0),
    "XAUUSD": SymbolSpec(2030.00, 2, 18.0, 4.0e-5, 2.0),
}
"""Specs for common symbols; any other symbol gets :data:`GENERIC_SPEC`."""

GENERIC_SPEC = SymbolSpec(1.00000, 5, 10.0, 3.0e-5, 1.0)

_GARCH_ALPHA = 0.08
_GARCH_BETA = 0.90


@njit(cache=True)
def _generate(sym: np.ndarray, z: np.ndarray, gap_ms: np.ndarray, u_spread: np.ndarray,
              u_flag: np.ndarray, unknown_share: float, mid: np.ndarray, var: np.ndarray,
              base_var: np.ndarray, point: np.ndarray, spread_points: np.ndarray,
              last_bid: np.ndarray, last_ask: np.ndarray, clock: np.ndarray,
              out_msc: np.ndarray, out_bid: np.ndarray, out_ask: np.ndarray,
              out_flags: np.ndarray) -> None:  # pragma: no cover (compiled)
    """Advance every symbol's GARCH random walk over one chunk of ticks, in place."""
    for i in range(sym.shape[0]):
        s = sym[i]
        r = math.sqrt(var[s]) * z[i]
        mid[s] = mid[s] * math.exp(r)
        var[s] = base_var[s] * (1.0 - _GARCH_ALPHA - _GARCH_BETA) + _GARCH_ALPHA * r * r \
            + _GARCH_BETA * var[s]
        excitement = math.sqrt(var[s] / base_var[s])
        spread = spread_points[s] * (0.75 + 0.5 * u_spread[i]) * (0.5 + 0.5 * excitement)
        spread = max(1.0, math.floor(spread + 0.5)) * point[s]
        p = point[s]
        bid = math.floor((mid[s] - 0.5 * spread) / p + 0.5) * p
        if bid < p:  # a quote keeps the rules (flowchain_bridge.ticks.tick_fault) at any mid
            bid = p
        ask = bid + spread
        ask = math.floor(ask / p + 0.5) * p
        flags = 0
        if bid != last_bid[s]:
            flags |= TICK_FLAG_BID
        if ask != last_ask[s]:
            flags |= TICK_FLAG_ASK
        if flags == 0:
            flags = TICK_FLAG_BID | TICK_FLAG_ASK
        if u_flag[i] < unknown_share:
            flags |= UNKNOWN_FLAG
        last_bid[s] = bid
        last_ask[s] = ask
        clock[0] += gap_ms[i]
        out_msc[i] = clock[0]
        out_bid[i] = bid
        out_ask[i] = ask
        out_flags[i] = flags


class SimulatorFeed(Feed):
    """Seeded, realistic FX ticks for several symbols, as fast as possible or at a set rate.

    Parameters
    ----------
    symbols : sequence of str, optional
        Symbols to simulate (default: EURUSD, GBPUSD, USDJPY, XAUUSD).
    seed : int, optional
        The seed; the same seed and symbols give the same ticks.
    rate : float or None, optional
        Ticks per second of wall time, all symbols together; ``None`` is as fast as possible.
    max_ticks : int or None, optional
        Stop after this many ticks (``None``: run until stopped).
    mean_gap_ms : float, optional
        Mean simulated time between two ticks that are not in a burst.
    burst_share : float, optional
        Share of ticks in the same millisecond as the previous tick.
    unknown_flag_share : float, optional
        Share of ticks that carry the undocumented flag bit 0x80.
    start_msc : int, optional
        Simulated time of the first tick, ms since the epoch.
    specs : dict, optional
        Per-symbol :class:`SymbolSpec` overriding :data:`DEFAULT_SPECS`.
    ring_capacity : int, optional
        Ticks each ring keeps.
    chunk : int, optional
        Ticks generated per kernel call.

    Raises
    ------
    ValueError
        If a rate, share, gap or count is out of range (the message names it).
    """

    def __init__(self, symbols: Sequence[str] = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD"),
                 seed: int = 0, rate: float | None = None, max_ticks: int | None = None,
                 mean_gap_ms: float = 25.0, burst_share: float = 0.2,
                 unknown_flag_share: float = 0.3, start_msc: int = DEFAULT_START_MSC,
                 specs: dict[str, SymbolSpec] | None = None,
                 ring_capacity: int = DEFAULT_RING_CAPACITY, chunk: int = 4096) -> None:
        super().__init__(symbols, ring_capacity)
        _check(rate is None or rate > 0, f"rate must be positive ticks/s or None, got {rate}")
        _check(max_ticks is None or max_ticks >= 0, f"max_ticks must be >= 0, got {max_ticks}")
        _check(mean_gap_ms > 0, f"mean_gap_ms must be positive, got {mean_gap_ms}")
        _check(0.0 <= burst_share < 1.0, f"burst_share must be in [0, 1), got {burst_share}")
        _check(0.0 <= unknown_flag_share <= 1.0,
               f"unknown_flag_share must be in [0, 1], got {unknown_flag_share}")
        _check(chunk >= 1, f"chunk must be >= 1, got {chunk}")
        self.seed = seed
        self.rate = rate
        self.max_ticks = max_ticks
        self.mean_gap_ms = mean_gap_ms
        self.burst_share = burst_share
        self.unknown_flag_share = unknown_flag_share
        table = dict(DEFAULT_SPECS, **(specs or {}))
        chosen = [table.get(s, GENERIC_SPEC) for s in self.symbols]
        self._rng = np.random.Generator(np.random.PCG64(seed))
        weights = np.array([c.weight for c in chosen], dtype=np.float64)
        self._cum_weights = np.cumsum(weights / weights.sum())
        self._mid = np.array([c.mid for c in chosen], dtype=np.float64)
        self._base_var = np.array([c.sigma ** 2 for c in chosen], dtype=np.float64)
        self._var = self._base_var.copy()
        self._point = np.array([10.0 ** -c.digits for c in chosen], dtype=np.float64)
        self._spread = np.array([c.spread_points for c in chosen], dtype=np.float64)
        self._last_bid = np.zeros(len(chosen))
        self._last_ask = np.zeros(len(chosen))
        self._clock = np.array([start_msc], dtype=np.int64)
        self._chunk_size = chunk
        self._chunk = np.zeros(chunk, dtype=TICK_DTYPE)
        self._chunk_raw = memoryview(self._chunk.view(np.uint8))
        self._msc = np.zeros(chunk, dtype=np.int64)
        self._bid = np.zeros(chunk)
        self._ask = np.zeros(chunk)
        self._flags = np.zeros(chunk, dtype=np.uint32)
        self._chunk_syms: list[int] = []
        self._pos = 0
        self._ring_list = [self.rings[s] for s in self.symbols]
        self.sent = 0
        """Ticks delivered so far (also the next tick's sequence number)."""

    # -- generation -----------------------------------------------------------------------
    def _refill(self) -> None:
        n = self._chunk_size
        rng = self._rng
        sym = np.searchsorted(self._cum_weights, rng.random(n), side="right").astype(np.int32)
        np.minimum(sym, len(self.symbols) - 1, out=sym)
        z = rng.standard_normal(n)
        gaps = np.ceil(rng.exponential(self.mean_gap_ms, n)).astype(np.int64)
        gaps[rng.random(n) < self.burst_share] = 0
        _generate(sym, z, gaps, rng.random(n), rng.random(n), self.unknown_flag_share,
                  self._mid, self._var, self._base_var, self._point, self._spread,
                  self._last_bid, self._last_ask, self._clock,
                  self._msc, self._bid, self._ask, self._flags)
        c = self._chunk
        c["time_msc"] = self._msc
        c["time"] = self._msc // 1000
        c["bid"] = self._bid
        c["ask"] = self._ask
        c["flags"] = self._flags
        self._chunk_syms = sym.tolist()
        self._pos = 0

    def generate(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Generate the next ``n`` ticks without delivering them (for tests and tools).

        Returns
        -------
        symbol_ids : numpy.ndarray
            Each tick's symbol id (its index in :attr:`symbols`).
        ticks : numpy.ndarray
            The ticks in the MT5 dtype.
        """
        ids = np.empty(n, dtype=np.int32)
        ticks = np.empty(n, dtype=TICK_DTYPE)
        for i in range(n):
            if self._pos >= len(self._chunk_syms):
                self._refill()
            ids[i] = self._chunk_syms[self._pos]
            ticks[i] = self._chunk[self._pos]
            self._pos += 1
        return ids, ticks

    def pump(self, n: int) -> int:
        """Deliver up to ``n`` ticks now, synchronously (respecting ``max_ticks``).

        Returns
        -------
        int
            Ticks delivered.
        """
        if self.max_ticks is not None:
            n = min(n, self.max_ticks - self.sent)
        rings = self._ring_list
        raw = self._chunk_raw
        done = 0
        while done < n:
            if self._pos >= len(self._chunk_syms):
                self._refill()
            pos = self._pos
            end = min(len(self._chunk_syms), pos + (n - done))
            syms = self._chunk_syms
            seq = self.sent
            for i in range(pos, end):
                ring = rings[syms[i]]
                self._deliver(ring, ring.append_record(raw[i * 60:i * 60 + 60], seq))
                seq += 1
            done += end - pos
            self.sent = seq
            self._pos = end
        return done

    # -- the feed's task ------------------------------------------------------------------
    async def _run(self) -> None:
        sleep = asyncio.sleep
        if self.rate is None:
            while self.max_ticks is None or self.sent < self.max_ticks:
                self.pump(256)
                await sleep(0)
            return
        started = time.perf_counter()
        base = self.sent
        while self.max_ticks is None or self.sent < self.max_ticks:
            due = base + int((time.perf_counter() - started) * self.rate) + 1
            if due > self.sent:
                self.pump(min(due - self.sent, 4096))
                await sleep(0)
            else:
                await sleep((self.sent + 1 - base) / self.rate - (time.perf_counter() - started))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"SimulatorFeed: {message}")


def warm_up() -> None:
    """Compile (or load from the cache) the generation kernel before the first tick."""
    feed = SimulatorFeed(("EURUSD",), seed=0, ring_capacity=4, chunk=8)
    feed.pump(1)

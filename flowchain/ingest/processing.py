"""DataProcessor, the chain's third step: mid, spread and 1 s / 1 min OHLC bars on the mid price.

Bars are computed per batch in one pass of a numba kernel over the runs of ticks that share a
bar (accepted ticks are in time order, so each bar is one contiguous run). The processor keeps the
open (last) bar of every symbol and timeframe; when the next batch's first ticks fall in the
same bar, they are merged into it, so a bar spanning batches comes out exactly as if its ticks
had arrived in one batch. Every bar a batch touched is emitted, the open one with its state so
far; the store upserts them.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from flowchain.ingest import kernels
from flowchain.ingest.batch import BatchStage, TickBatch
from flowchain.ingest.errors import BatchStageError
from flowchain.store import BAR_DTYPE, TIMEFRAMES


def compute_bars(time_msc: np.ndarray, price: np.ndarray, volume: np.ndarray,
                 bar_ms: int) -> np.ndarray:
    """Return the OHLC bars of time-sorted ticks, one per ``bar_ms`` interval that has ticks.

    Parameters
    ----------
    time_msc : numpy.ndarray
        ``int64`` tick times in milliseconds, non-decreasing.
    price : numpy.ndarray
        The price each bar aggregates (the mid), same length.
    volume : numpy.ndarray
        Each tick's ``volume_real``, summed per bar.
    bar_ms : int
        The bar length in milliseconds; bars start at multiples of it.

    Returns
    -------
    numpy.ndarray
        Bars of :data:`~flowchain.store.BAR_DTYPE`, in time order.

    Raises
    ------
    ValueError
        When ``bar_ms`` is not positive or the arrays differ in length.
    """
    if bar_ms <= 0:
        raise ValueError(f"bar length must be a positive number of milliseconds, got {bar_ms}")
    n = len(time_msc)
    if len(price) != n or len(volume) != n:
        raise ValueError(f"compute_bars got {n} times, {len(price)} prices and {len(volume)} "
                         "volumes; pass one of each per tick")
    if n == 0:
        return np.zeros(0, dtype=BAR_DTYPE)
    out = np.empty(n, dtype=BAR_DTYPE)
    written = kernels.ohlc_bars(time_msc, price, volume, bar_ms, out["start_msc"], out["open"],
                                out["high"], out["low"], out["close"], out["tick_count"],
                                out["volume"], out["first_msc"], out["last_msc"])
    bars = out[:written].copy()
    return bars


def merge_bar(bar: np.ndarray, other: np.ndarray) -> None:
    """Fold ``other`` (more ticks of the same bar) into ``bar``, in place.

    Both are 1-element arrays of :data:`~flowchain.store.BAR_DTYPE`. The open comes from the one
    with the earlier first tick, the close from the one with the later last tick (``other`` on a
    tie, as it is the newer); the same rule the store's upsert applies.

    Raises
    ------
    ValueError
        When the two are not the same bar (different ``start_msc``).
    """
    if bar["start_msc"][0] != other["start_msc"][0]:
        raise ValueError(f"cannot merge the bar starting {int(other['start_msc'][0])} into the "
                         f"bar starting {int(bar['start_msc'][0])}; only one bar's ticks merge")
    if other["first_msc"][0] < bar["first_msc"][0]:
        bar["open"] = other["open"]
        bar["first_msc"] = other["first_msc"]
    if other["last_msc"][0] >= bar["last_msc"][0]:
        bar["close"] = other["close"]
        bar["last_msc"] = other["last_msc"]
    bar["high"] = np.maximum(bar["high"], other["high"])
    bar["low"] = np.minimum(bar["low"], other["low"])
    bar["tick_count"] += other["tick_count"]
    bar["volume"] += other["volume"]


class DataProcessor:
    """Derive mid, spread and OHLC bars from validated batches (step ``data_processing``).

    Parameters
    ----------
    timeframes : Mapping[str, int], optional
        Bar timeframes, label -> milliseconds; :data:`~flowchain.store.TIMEFRAMES` (1 s and
        1 min) by default.
    """

    def __init__(self, timeframes: Mapping[str, int] | None = None) -> None:
        self.timeframes: dict[str, int] = dict(TIMEFRAMES if timeframes is None else timeframes)
        for label, bar_ms in self.timeframes.items():
            if not isinstance(bar_ms, int) or bar_ms <= 0:
                raise ValueError(f"timeframe {label!r} has length {bar_ms!r}; expected a "
                                 "positive number of milliseconds")
        self._open: dict[tuple[str, str], np.ndarray] = {}
        kernels.warm_up()

    def open_bar(self, symbol: str, timeframe: str) -> np.ndarray | None:
        """Return a copy of the open bar (a 1-element array) of ``symbol``, or ``None``."""
        bar = self._open.get((symbol, timeframe))
        return None if bar is None else bar.copy()

    def reset(self, symbol: str | None = None) -> None:
        """Forget the open bars of ``symbol`` (of every symbol when ``None``)."""
        if symbol is None:
            self._open.clear()
        else:
            for key in [k for k in self._open if k[0] == symbol]:
                del self._open[key]

    def __call__(self, batch: TickBatch) -> TickBatch:
        """Return ``batch`` at stage ``PROCESSED`` with ``mid``, ``spread`` and ``bars`` filled.

        Raises
        ------
        BatchStageError
            When ``batch`` is not a :class:`TickBatch` fresh from DataValidator (bars need
            validated, time-ordered ticks).
        """
        if not isinstance(batch, TickBatch) or batch.stage != BatchStage.VALIDATED:
            what = (f"a TickBatch at stage {batch.stage.name}" if isinstance(batch, TickBatch)
                    else f"a {type(batch).__name__}")
            raise BatchStageError(f"DataProcessor received {what}; expected a TickBatch at "
                                  "stage VALIDATED: chain DataProcessor right after DataValidator")
        ticks = batch.ticks
        bid, ask = ticks["bid"], ticks["ask"]
        mid = (bid + ask) * 0.5
        spread = ask - bid
        bars = {label: self._bars(batch.symbol, label, bar_ms, ticks, mid)
                for label, bar_ms in self.timeframes.items()}
        return dataclasses.replace(batch, stage=BatchStage.PROCESSED, mid=mid, spread=spread,
                                   bars=bars)

    def _bars(self, symbol: str, label: str, bar_ms: int, ticks: np.ndarray,
              mid: np.ndarray) -> np.ndarray:
        bars = compute_bars(ticks["time_msc"], mid, ticks["volume_real"], bar_ms)
        if len(bars) == 0:
            return bars
        key = (symbol, label)
        open_bar = self._open.get(key)
        if open_bar is not None and open_bar["start_msc"][0] == bars["start_msc"][0]:
            merged = open_bar.copy()
            merge_bar(merged, bars[:1])
            bars[:1] = merged
        self._open[key] = bars[-1:].copy()
        return bars

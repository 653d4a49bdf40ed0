"""Latency distributions and interleaved repetitions, as every benchmark reports them.

A benchmark times each operation into an array of nanoseconds, summarizes one repetition with
:func:`summarize_ns` (an HDR histogram with the engine's settings, p50/p99/p99.9/max), runs its
ways interleaved with :func:`interleave` (A B A B ..., each way once per repetition) and reports
the median over repetitions with :func:`median_summary`.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import numpy as np
from hdrh.histogram import HdrHistogram

from flowchain.histograms import DEFAULT_SETTINGS

SUMMARY_KEYS = ("p50_ns", "p99_ns", "p999_ns", "max_ns")
"""The percentiles every summary holds, besides ``count``."""

T = TypeVar("T")


def new_histogram() -> HdrHistogram:
    """Return an empty HDR histogram with the engine's settings (1 ns to 1 h, 3 figures)."""
    return DEFAULT_SETTINGS.new()


def summarize_histogram(hist: HdrHistogram) -> dict[str, int]:
    """Return ``count``, ``p50_ns``, ``p99_ns``, ``p999_ns`` and ``max_ns`` of ``hist``.

    An empty histogram gives a count of 0 and zeros.
    """
    if not hist.get_total_count():
        return {"count": 0, "p50_ns": 0, "p99_ns": 0, "p999_ns": 0, "max_ns": 0}
    ps = hist.get_percentile_to_value_dict([50.0, 99.0, 99.9])
    return {"count": int(hist.get_total_count()), "p50_ns": int(ps[50.0]),
            "p99_ns": int(ps[99.0]), "p999_ns": int(ps[99.9]),
            "max_ns": int(hist.get_max_value())}


def summarize_ns(values: np.ndarray | Iterable[int]) -> dict[str, int]:
    """Record ``values`` (durations in ns) into an HDR histogram and summarize it.

    Values below 1 ns (a clock that did not advance) are recorded as 1 ns.

    Parameters
    ----------
    values : numpy array or iterable of int
        The durations of one repetition, in nanoseconds.

    Returns
    -------
    dict
        ``{"count", "p50_ns", "p99_ns", "p999_ns", "max_ns"}``, all ints.

    Raises
    ------
    ValueError
        When ``values`` holds something that is not an integer number of ns.
    """
    try:
        durations = np.asarray(values if isinstance(values, np.ndarray) else list(values),
                               dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"summarize_ns: expected integer durations in ns, got {exc}") from exc
    hist = new_histogram()
    record = hist.record_value
    for v in np.maximum(durations.ravel(), 1).tolist():
        record(v)
    return summarize_histogram(hist)


def median_summary(reps: Sequence[Mapping[str, float]],
                   keys: Sequence[str] = SUMMARY_KEYS) -> dict[str, int]:
    """Return, for each of ``keys``, the median over the per-repetition summaries ``reps``.

    Raises
    ------
    ValueError
        When ``reps`` is empty or a summary lacks one of ``keys``.
    """
    if not reps:
        raise ValueError("median_summary: no repetitions to take the median of")
    try:
        return {key: int(statistics.median(r[key] for r in reps)) for key in keys}
    except KeyError as exc:
        raise ValueError(f"median_summary: a repetition's summary has no {exc}; it has "
                         f"{sorted(reps[0])}") from exc


def interleave(ways: Mapping[str, Callable[[int], T]], repetitions: int, *,
               before_each: Callable[[int], None] | None = None) -> dict[str, list[T]]:
    """Run every way once per repetition, in order (A B A B ...), and collect what each returns.

    Parameters
    ----------
    ways : mapping of name -> callable
        Each callable runs one repetition of its way; it is given the repetition's index.
    repetitions : int
        Repetitions of each way (at least 5, so that medians mean something).
    before_each : callable, optional
        Called with the repetition's index before its first way runs (progress lines).

    Returns
    -------
    dict
        ``{name: [result of repetition 0, result of repetition 1, ...]}``.

    Raises
    ------
    ValueError
        When ``repetitions`` is below 5 or there are no ways.
    """
    if repetitions < 5 or not ways:
        raise ValueError(f"interleave: need at least 5 repetitions of at least one way, got "
                         f"{repetitions} of {list(ways)}")
    out: dict[str, list[T]] = {name: [] for name in ways}
    for rep in range(repetitions):
        if before_each is not None:
            before_each(rep)
        for name, measure in ways.items():
            out[name].append(measure(rep))
    return out

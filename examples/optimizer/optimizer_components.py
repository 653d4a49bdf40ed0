"""Components of the optimizer examples: each chain has one planted bottleneck, one has none.

* ``ScoreItems`` (chain ``cpu_scoring``): CPU-heavy and element-wise: a key-stretching hash per
  item, all of it CPU work in C (no I/O, few allocations). ``parallel: N`` splits its items.
* ``VolatilitySurface`` (chain ``memory_surface``): memory-heavy and deterministic: builds a
  multi-megabyte array from its input (a seed) and reduces it; the inputs repeat, so an LRU
  cache answers most calls.
* ``FetchQuotes`` (chain ``io_quotes``): I/O-bound and element-wise: each item waits on a
  blocking call (a sleep standing for a request). ``async: {concurrency: N}`` overlaps the waits.
* ``Normalize``, ``Checksum``, ``Tally``: light CPU steps around them, and the whole of the
  clean chain ``clean_pipeline``.

Every component returns plain data, so the outputs of an original and an optimized version
compare exactly.
"""
from __future__ import annotations

import hashlib
import time

import numpy as np

import flowchain

LIGHT_ITERATIONS = 3000
"""Key-stretching rounds of a light step (about a millisecond of CPU)."""
SEED_ITERATIONS = 4 * LIGHT_ITERATIONS
"""Rounds of the memory chain's first step: the chain keeps a few milliseconds of work a
cache cannot answer, so its gain (and its prediction) does not hang on sub-millisecond costs."""
HEAVY_ITERATIONS = 2000
"""Key-stretching rounds per item of ScoreItems."""
SURFACE_POINTS = 150_000
"""Points of a volatility surface: 1.2 MB of float64 per array."""
FETCH_WAIT_S = 0.005
"""How long one quote request waits (long enough that a loaded machine's thread wake-ups, a
fraction of a millisecond each, do not decide the gain of overlapping the waits)."""


def _stretch(data: bytes, iterations: int) -> str:
    return hashlib.pbkdf2_hmac("sha256", data, b"flowchain", iterations).hex()[:16]


@flowchain.component("Normalize")
def normalize(request: dict) -> list:
    """A request's ``values`` as a list of ints, after a light CPU check of the request."""
    values = [int(v) for v in request["values"]]
    _stretch(repr(values).encode(), LIGHT_ITERATIONS)
    return values


@flowchain.component("SeedOf")
def seed_of(request: dict) -> int:
    """The surface seed a request asks for, after a light CPU check of the request."""
    _stretch(repr(sorted(request.items())).encode(), SEED_ITERATIONS)
    return int(request["seed"])


@flowchain.component("ScoreItems", elementwise=True, deterministic=True)
def score_items(values: list) -> list:
    """One stretched hash per item: CPU-heavy, item by item."""
    return [_stretch(str(v).encode(), HEAVY_ITERATIONS) for v in values]


@flowchain.component("VolatilitySurface", deterministic=True)
def volatility_surface(seed: int) -> list:
    """Build the surface of ``seed`` (large arrays) and return its summary quantiles."""
    rng = np.random.default_rng(seed)
    surface = np.cumsum(rng.standard_normal(SURFACE_POINTS))
    surface = np.abs(np.sin(surface)) * (1.0 + seed % 7)
    return [round(float(q), 12) for q in np.quantile(surface, (0.05, 0.5, 0.95))]


@flowchain.component("FetchQuotes", elementwise=True)
def fetch_quotes(symbols: list) -> list:
    """One blocking request per item (a wait), answered with a price derived from the item."""
    out = []
    for s in symbols:
        time.sleep(FETCH_WAIT_S)
        out.append(round(100.0 + (int(s) % 97) / 8.0, 4))
    return out


@flowchain.component("Checksum")
def checksum(values: list) -> str:
    """A light CPU digest of a list (the clean chain's middle step)."""
    return _stretch(repr(values).encode(), LIGHT_ITERATIONS)


@flowchain.component("Tally")
def tally(values) -> dict:
    """A summary of the step before, after a light CPU check."""
    text = repr(values)
    return {"digest": _stretch(text.encode(), LIGHT_ITERATIONS),
            "size": len(values) if isinstance(values, (list, tuple)) else 1}

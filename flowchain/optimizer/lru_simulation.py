"""Replay a step's recorded input hashes through an LRU cache of every size at once.

An LRU cache of ``size`` entries answers an access from memory exactly when fewer than ``size``
distinct other keys were used since the same key's previous access (its *reuse distance*,
Mattson's stack distance): LRU is a stack algorithm, so one pass over the accesses gives the
hit ratio of every size. The distances are counted with a Fenwick tree over access times, so the
pass costs O(n log n) for n accesses, not O(n x distinct keys).
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

COLD = -1
"""The reuse distance of a key's first access: a miss at every size."""


def reuse_distances(keys: Sequence[Hashable]) -> list[int]:
    """Return, per access, the number of distinct other keys used since this key's last access.

    A first access is :data:`COLD`. An access with distance ``d`` hits in an LRU cache of
    ``size`` entries exactly when ``d < size``.
    """
    n = len(keys)
    tree = [0] * (n + 1)  # Fenwick tree: 1 at the time of each key's latest access

    def add(i: int, delta: int) -> None:
        i += 1
        while i <= n:
            tree[i] += delta
            i += i & -i

    def prefix(i: int) -> int:  # marks at times 0..i-1
        total = 0
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    last: dict[Hashable, int] = {}
    out = []
    for t, key in enumerate(keys):
        before = last.get(key)
        if before is None:
            out.append(COLD)
        else:
            out.append(prefix(t) - prefix(before + 1))
            add(before, -1)
        add(t, 1)
        last[key] = t
    return out


@dataclass(frozen=True, slots=True)
class HitRatioCurve:
    """The hit ratio of an LRU cache of each size over one access sequence.

    ``hit_ratios[s - 1]`` is the ratio at ``s`` entries, for ``s`` from 1 to ``distinct``
    (beyond ``distinct`` entries nothing more hits: :attr:`achievable`).
    """

    accesses: int
    distinct: int
    hit_ratios: tuple[float, ...]

    @property
    def achievable(self) -> float:
        """The hit ratio of an unbounded cache: every access but each key's first."""
        return (self.accesses - self.distinct) / self.accesses if self.accesses else 0.0

    def hit_ratio(self, size: int) -> float:
        """The hit ratio with ``size`` entries (0 for a size below 1)."""
        if size < 1 or not self.hit_ratios:
            return 0.0
        return self.hit_ratios[min(size, len(self.hit_ratios)) - 1]

    def smallest_size_reaching(self, fraction: float) -> int | None:
        """The fewest entries whose hit ratio is at least ``fraction`` of :attr:`achievable`.

        None when nothing ever hits (every input was new).

        Raises
        ------
        ValueError
            When ``fraction`` is not in (0, 1].
        """
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        target = self.achievable * fraction
        if self.achievable <= 0.0:
            return None
        for size, ratio in enumerate(self.hit_ratios, start=1):
            if ratio >= target - 1e-12:
                return size
        return len(self.hit_ratios)


def hit_ratio_curve(keys: Sequence[Hashable]) -> HitRatioCurve:
    """Return the LRU hit-ratio curve of the access sequence ``keys``."""
    distances = reuse_distances(keys)
    distinct = sum(1 for d in distances if d == COLD)
    at = [0] * (distinct + 1)  # at[d]: accesses with reuse distance d
    for d in distances:
        if d != COLD:
            at[d] += 1
    ratios = []
    hits = 0
    n = len(keys)
    for size in range(1, distinct + 1):
        hits += at[size - 1]
        ratios.append(hits / n)
    return HitRatioCurve(n, distinct, tuple(ratios))


def lru_hits(keys: Sequence[Hashable], size: int) -> list[bool]:
    """Return, per access, whether an LRU cache of ``size`` entries (empty at first) hits."""
    return [d != COLD and d < size for d in reuse_distances(keys)]

"""The LRU simulation against a real LRU cache, access by access."""
import random
from collections import OrderedDict

import pytest

from flowchain.optimizer.lru_simulation import COLD, hit_ratio_curve, lru_hits, reuse_distances


def real_lru_hits(keys, size):
    table: OrderedDict = OrderedDict()
    out = []
    for key in keys:
        if key in table:
            table.move_to_end(key)
            out.append(True)
        else:
            out.append(False)
            table[key] = None
            if len(table) > size:
                table.popitem(last=False)
    return out


def test_reuse_distances_count_distinct_keys_in_between():
    assert reuse_distances("abcab") == [COLD, COLD, COLD, 2, 2]
    assert reuse_distances("aaab") == [COLD, 0, 0, COLD]
    assert reuse_distances("abba") == [COLD, COLD, 0, 1]
    assert reuse_distances([]) == []


@pytest.mark.parametrize("seed", range(5))
def test_simulation_matches_a_real_lru_cache_at_every_size(seed):
    rng = random.Random(seed)
    keys = [rng.choice("abcdefghijkl") if rng.random() < 0.8 else rng.random()
            for _ in range(400)]
    curve = hit_ratio_curve(keys)
    for size in range(1, curve.distinct + 2):
        real = real_lru_hits(keys, size)
        assert lru_hits(keys, size) == real
        assert curve.hit_ratio(size) == pytest.approx(sum(real) / len(keys))


def test_curve_reaches_the_achievable_ratio_and_finds_the_knee():
    # 10 keys cycled: LRU with fewer than 10 entries never hits a cyclic scan
    keys = [k % 10 for k in range(200)]
    curve = hit_ratio_curve(keys)
    assert curve.distinct == 10
    assert curve.achievable == pytest.approx(190 / 200)
    assert curve.hit_ratio(9) == 0.0
    assert curve.hit_ratio(10) == pytest.approx(0.95)
    assert curve.smallest_size_reaching(0.95) == 10
    # a hot key and a long tail: one entry already holds most of what hits
    hot = ["hot" if i % 2 else f"cold{i}" for i in range(200)]
    curve = hit_ratio_curve(hot)
    assert curve.smallest_size_reaching(0.95) == 2


def test_no_repeats_means_no_size():
    curve = hit_ratio_curve(list(range(50)))
    assert curve.achievable == 0.0
    assert curve.smallest_size_reaching(0.95) is None
    with pytest.raises(ValueError, match="fraction"):
        curve.smallest_size_reaching(0.0)

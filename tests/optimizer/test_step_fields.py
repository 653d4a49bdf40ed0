"""Step fields parallel / cache / async: YAML, validation, round trip, ids, trait checks."""
import dataclasses

import pytest

from flowchain import ChainBuilder, ChainRegistry, ChainValidationError, ComponentRegistry, dump_chains, load_chains
from flowchain.chain import AsyncSpec, CacheSpec

PLAIN = """
Scores:
  steps:
    - {name: parse, component: Parse, input: raw, output: rows, expected_duration: 1}
    - {name: score, component: Score, input: rows, output: scores, expected_duration: 5}
"""

OPTIONED = """
Scores:
  steps:
    - {name: parse, component: Parse, input: raw, output: rows, expected_duration: 1}
    - name: score
      component: Score
      input: rows
      output: scores
      expected_duration: 5
      parallel: 2
      cache: {strategy: lru, size: 64}
"""


def _problems(text):
    with pytest.raises(ChainValidationError) as info:
        load_chains(text, source="c.yaml")
    return [str(p) for p in info.value.problems]


def test_fields_load_from_yaml():
    (chain,) = load_chains(OPTIONED)
    step = chain.steps[1]
    assert step.parallel == 2
    assert step.cache == CacheSpec(strategy="lru", size=64)
    assert step.async_ is None
    assert chain.steps[0].parallel is None and chain.steps[0].cache is None


def test_async_loads_and_strategy_defaults_to_lru():
    text = PLAIN.replace("expected_duration: 5}", "expected_duration: 5,\n"
                         "       async: {concurrency: 8}, cache: {size: 3}}")
    step = load_chains(text)[0].steps[1]
    assert step.async_ == AsyncSpec(8)
    assert step.cache == CacheSpec(size=3)


def test_existing_ids_do_not_change_and_each_field_makes_a_new_one():
    (plain,) = load_chains(PLAIN)
    # the id every chain had before step options existed (same canonical form)
    assert plain.chain_id == "Scores@" + __import__("hashlib").sha256(
        b'{"name":"Scores","steps":[["parse","Parse","raw","rows",1.0],'
        b'["score","Score","rows","scores",5.0]]}').hexdigest()[:16]
    step = plain.steps[1]
    ids = {plain.chain_id}
    for change in ({"parallel": 2}, {"parallel": 3}, {"cache": CacheSpec(size=64)},
                   {"cache": CacheSpec(size=65)}, {"async_": AsyncSpec(4)}):
        changed = dataclasses.replace(plain, steps=(plain.steps[0],
                                                    dataclasses.replace(step, **change)))
        ids.add(changed.chain_id)
    assert len(ids) == 6


def test_round_trip_through_dump_chains():
    (chain,) = load_chains(OPTIONED)
    text = dump_chains([chain])
    assert "parallel: 2" in text and "strategy: lru" in text
    (again,) = load_chains(text)
    assert again.chain_id == chain.chain_id
    assert again.steps[1] == chain.steps[1]
    step = dataclasses.replace(chain.steps[1], parallel=None, async_=AsyncSpec(5))
    assert step.to_dict()["async"] == {"concurrency": 5}
    assert "parallel" not in step.to_dict()


@pytest.mark.parametrize("value, message", [
    ("0", "'parallel' (worker processes) must be from 2 to 256, got 0"),
    ("1", "1 is the plain step: remove the key"),
    ("9999", "must be from 2 to 256, got 9999"),
    ("two", "must be a whole number from 2 to 256, got 'two'"),
    ("2.5", "got 2.5"),
    ("true", "got True"),
    ("[2]", "'parallel' must be a number of worker processes, got a list"),
])
def test_bad_parallel_is_named_with_file_line_chain_and_step(value, message):
    text = OPTIONED.replace("parallel: 2", f"parallel: {value}")
    (problem,) = _problems(text)
    assert problem.startswith("c.yaml:10: chain 'Scores' step 'score': ")
    assert message in problem


@pytest.mark.parametrize("value, message", [
    ("{strategy: lfu, size: 4}", "strategy must be one of lru, got 'lfu'"),
    ("{size: 0}", "'cache' size (entries) must be from 1 to 10000000, got 0"),
    ("{strategy: lru}", "'cache' has no size"),
    ("{size: 4, ttl: 3}", "unknown key 'ttl' in 'cache'"),
    ("{size: [4]}", "'cache' size must be a single value, got a list"),
    ("64", "'cache' must be a mapping {strategy: lru, size: N}, got a single value"),
    ("{size: 4, size: 5}", "duplicate key 'size'"),
])
def test_bad_cache_is_named(value, message):
    text = OPTIONED.replace("{strategy: lru, size: 64}", value)
    problems = _problems(text)
    assert any(message in p and "chain 'Scores' step 'score'" in p and p.startswith("c.yaml:")
               for p in problems), problems


@pytest.mark.parametrize("value, message", [
    ("{concurrency: 0}", "'async' concurrency must be from 1 to 10000, got 0"),
    ("{}", "'async' has no concurrency"),
    ("{limit: 3}", "unknown key 'limit' in 'async'"),
    ("yes", "'async' must be a mapping {concurrency: N}"),
])
def test_bad_async_is_named(value, message):
    text = PLAIN.replace("expected_duration: 5}", f"expected_duration: 5, async: {value}}}")
    problems = _problems(text)
    assert any(message in p and "step 'score'" in p for p in problems), problems


def test_parallel_and_async_together_are_refused():
    text = OPTIONED.replace("cache: {strategy: lru, size: 64}", "async: {concurrency: 2}")
    (problem,) = _problems(text)
    assert "sets both 'parallel' and 'async'" in problem


def test_python_built_steps_are_validated_too():
    chain = ChainBuilder("C").step("a", "A", "x", "y", 1).build()
    bad = dataclasses.replace(chain, steps=(dataclasses.replace(chain.steps[0], parallel=-1,
                                                                cache=CacheSpec(size=True)),))
    messages = [p.message for p in bad.problems()]
    assert any("'parallel' (worker processes) must be from 2 to 256, got -1" in m
               for m in messages)
    assert any("'cache' size (entries) must be a whole number" in m for m in messages)


def score(rows):
    return list(rows)


def _registry(elementwise=False, deterministic=False):
    components = ComponentRegistry()
    components.register("Parse", lambda raw: raw)
    components.register("Score", score, elementwise=elementwise, deterministic=deterministic)
    return ChainRegistry(components)


def test_registry_refuses_options_the_traits_do_not_allow():
    (chain,) = load_chains(OPTIONED, source="c.yaml")
    with pytest.raises(ChainValidationError) as info:
        _registry().register_chain(chain)
    text = str(info.value)
    assert "'parallel' needs a component declared element-wise" in text
    assert "'cache' needs a component declared deterministic" in text
    assert "@flowchain.component('Score', elementwise=True)" in text
    assert "c.yaml:5: chain 'Scores' step 'score'" in text
    with pytest.raises(ChainValidationError, match="'cache' needs a component declared "
                                                   "deterministic"):
        _registry(elementwise=True).register_chain(chain)
    with pytest.raises(ChainValidationError, match="'parallel' needs"):
        _registry(deterministic=True).register_chain(chain)


def test_registry_refuses_async_without_elementwise():
    text = PLAIN.replace("expected_duration: 5}", "expected_duration: 5, async: {concurrency: 2}}")
    (chain,) = load_chains(text)
    with pytest.raises(ChainValidationError, match="'async' needs a component declared "
                                                   "element-wise"):
        _registry(deterministic=True).register_chain(chain)


def test_registry_accepts_options_the_traits_allow():
    (chain,) = load_chains(OPTIONED)
    registry = _registry(elementwise=True, deterministic=True)
    assert registry.register_chain(chain) == chain.chain_id

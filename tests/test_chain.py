"""Chain definitions: YAML in both shapes, the builder, content-hash ids, every validation error."""
from pathlib import Path

import pytest

from flowchain import (
    ChainBuilder,
    ChainDefinition,
    ChainStep,
    ChainValidationError,
    dump_chains,
    load_chains,
    load_chains_file,
)

DATA = Path(__file__).parent / "data"


def _steps(*triples):
    return tuple(ChainStep(n, c, i, o, 1.0) for n, c, i, o in triples)


def test_seed_file_loads_both_chains_with_contracts_and_lines():
    chains = {c.name: c for c in load_chains_file(DATA / "seed_chains.yaml")}
    assert set(chains) == {"MT5_To_Database_Chain", "AI_Decision_Chain"}
    ai = chains["AI_Decision_Chain"]
    assert ai.step_names == ("feature_extraction", "multi_agent_analysis",
                             "consensus_generation", "trading_execution")
    assert ai.steps[-1].expected_duration_ms == 1.2
    assert ai.steps[-1].expected_duration_ns == 1_200_000
    assert ai.steps[0].line is not None and ai.steps[0].line > 30
    assert ai.source.endswith("seed_chains.yaml")


def test_unwrapped_mapping_loads_the_same_chain():
    text = (DATA / "seed_chains.yaml").read_text()
    wrapped = {c.name: c.chain_id for c in load_chains(text)}
    body = "\n".join(line[2:] for line in text.splitlines()
                     if line.startswith("  ") or not line.strip())
    unwrapped = {c.name: c.chain_id for c in load_chains(body)}
    assert wrapped == unwrapped


def test_dump_round_trips():
    chains = load_chains_file(DATA / "seed_chains.yaml")
    again = load_chains(dump_chains(chains))
    assert [c.chain_id for c in again] == [c.chain_id for c in chains]


def test_same_definition_same_id_and_every_change_a_new_one():
    base = ChainBuilder("c").step("a", "A", "x", "y", 1).step("b", "B", "y", "z", 2).build()
    same = ChainBuilder("c", description="docs are not content").step(
        "a", "A", "x", "y", 1).step("b", "B", "y", "z", 2.0).build()
    assert base.chain_id == same.chain_id
    variants = [
        ChainBuilder("c").step("a2", "A", "x", "y", 1).step("b", "B", "y", "z", 2).build(),
        ChainBuilder("c").step("a", "A2", "x", "y", 1).step("b", "B", "y", "z", 2).build(),
        ChainBuilder("c").step("a", "A", "x", "y2", 1).step("b", "B", "y2", "z", 2).build(),
        ChainBuilder("c").step("a", "A", "x", "y", 1.5).step("b", "B", "y", "z", 2).build(),
        ChainBuilder("d").step("a", "A", "x", "y", 1).step("b", "B", "y", "z", 2).build(),
    ]
    ids = {v.chain_id for v in variants}
    assert base.chain_id not in ids and len(ids) == len(variants)
    assert base.chain_id.startswith("c@") and len(base.chain_id) == 2 + 16


def _problems(text):
    with pytest.raises(ChainValidationError) as info:
        load_chains(text, source="chains.yaml")
    return info.value.problems, str(info.value)


def test_empty_chain_is_rejected_naming_chain_and_line():
    problems, text = _problems("Empty:\n  steps: []\n")
    assert len(problems) == 1
    assert "chains.yaml:1: chain 'Empty': the chain is empty" in text


def test_duplicate_step_names_are_rejected():
    problems, text = _problems(
        "C:\n  steps:\n"
        "    - {name: a, component: A, input: x, output: y, expected_duration: 1}\n"
        "    - {name: a, component: B, input: y, output: z, expected_duration: 1}\n")
    assert "chains.yaml:4: chain 'C' step 'a': duplicate step name 'a' (first at line 3)" in text


def test_broken_contract_names_both_steps_and_types():
    problems, text = _problems(
        "MT5:\n  steps:\n"
        "    - {name: mt5_data_ingestion, component: DataBridge, input: raw, output: raw_ticks,"
        " expected_duration: 1}\n"
        "    - {name: data_validation, component: DataValidator, input: normalized_ticks,"
        " output: v, expected_duration: 1}\n")
    assert ("step 'data_validation': (DataValidator) expects input 'normalized_ticks' but "
            "'mt5_data_ingestion' outputs 'raw_ticks'") in text
    assert problems[0].line == 4 and problems[0].step == "data_validation"


@pytest.mark.parametrize("duration, fragment", [
    ("", "has no expected duration"),
    ("expected_duration: 0", "must be a positive number of ms, got 0"),
    ("expected_duration: -3", "got -3"),
    ("expected_duration: fast", "got 'fast'"),
    ("expected_duration: .nan", "got nan"),
])
def test_missing_or_non_positive_duration(duration, fragment):
    extra = f", {duration}" if duration else ""
    _, text = _problems(f"C:\n  steps:\n    - {{name: a, component: A, input: x, output: y{extra}}}\n")
    assert fragment in text and "chains.yaml:3" in text


def test_malformed_yaml_names_the_line():
    problems, text = _problems("C:\n  steps:\n    - name: a\n      component: [unclosed\n")
    assert text.startswith("chains.yaml:") and "malformed YAML" in text
    assert problems[0].line is not None


def test_structure_errors():
    assert "expected a mapping of chain names" in _problems("- a\n- b\n")[1]
    assert "has no 'steps:'" in _problems("C:\n  description: x\n")[1]
    assert "'steps:' must be a list" in _problems("C:\n  steps: 3\n")[1]
    assert "unknown key 'stpes'" in _problems("C:\n  stpes: []\n  steps: []\n")[1]
    assert "missing or empty" in _problems(
        "C:\n  steps:\n    - {name: a, input: x, output: y, expected_duration: 1}\n")[1]
    assert "holds no chains" in _problems("")[1]


def test_every_problem_is_reported_at_once():
    problems, text = _problems(
        "C:\n  steps:\n"
        "    - {name: a, component: A, input: x, output: y, expected_duration: 0}\n"
        "    - {name: a, component: B, input: q, output: z, expected_duration: 1}\n")
    assert len(problems) == 3 and text.startswith("3 problems")


def test_missing_file_is_a_validation_error(tmp_path):
    with pytest.raises(ChainValidationError, match="cannot read the file"):
        load_chains_file(tmp_path / "nope.yaml")


def test_builder_validates():
    with pytest.raises(ChainValidationError, match="the chain is empty"):
        ChainBuilder("c").build()
    with pytest.raises(ChainValidationError, match="expects input 'q'"):
        ChainBuilder("c").step("a", "A", "x", "y", 1).step("b", "B", "q", "z", 1).build()


def test_definition_is_immutable_and_steps_become_a_tuple():
    d = ChainDefinition("c", list(_steps(("a", "A", "x", "y"))))
    assert isinstance(d.steps, tuple)
    with pytest.raises(AttributeError):
        d.name = "other"


# --------------------------------------------------------------------------- the builder's forms

def _double(x):
    return 2 * x


class _Scale:
    def __call__(self, x):
        return 3 * x


def test_keyword_steps_build_the_same_chain_as_positional_ones():
    positional = (ChainBuilder("c").step("a", "A", "x", "y", 1).step("b", "B", "y", "z", 2)
                  .build())
    keywords = (ChainBuilder("c")
                .step("a", component="A", input="x", output="y", expected_ms=1)
                .step("b", component="B", output="z", expected_ms=2)  # input: the previous output
                .build())
    assert keywords == positional and keywords.chain_id == positional.chain_id
    assert keywords.steps[1].input == "y"


def test_missing_step_fields_are_reported_together_by_build():
    builder = (ChainBuilder("c").step("first", component="A", output="y", expected_ms=1)
               .step("second", component="B", input="y"))
    with pytest.raises(ChainValidationError) as info:
        builder.build()
    text = str(info.value)
    assert "step 'first'" in text and "'input' is missing" in text
    assert "step 'second'" in text and "'output' is missing" in text
    assert "no expected duration" in text


def test_a_callable_component_gets_a_stable_derived_name():
    chain = (ChainBuilder("c")
             .step("double", component=_double, input="n", output="n2", expected_ms=1)
             .step("scale", component=_Scale, output="n3", expected_ms=1)
             .step("add", component=lambda x: x + 1, output="n4", expected_ms=1)
             .build())
    double, scale, add = chain.steps
    assert double.component == f"{__name__}:_double" and double.implementation is _double
    assert scale.component == f"{__name__}:_Scale" and scale.implementation is _Scale
    assert add.component == (f"{__name__}:test_a_callable_component_gets_a_stable_derived_name"
                             f".<locals>.<lambda>:{add.implementation.__code__.co_firstlineno}")
    # the implementation is not content: the same names give the same id
    same = (ChainBuilder("c").step("double", f"{__name__}:_double", "n", "n2", 1)
            .step("scale", f"{__name__}:_Scale", "n2", "n3", 1)
            .step("add", add.component, "n3", "n4", 1).build())
    assert same.chain_id == chain.chain_id
    # an instance derives its type's name
    instance = ChainBuilder("i").step("s", component=_Scale(), input="n", output="m",
                                      expected_ms=1).build()
    assert instance.steps[0].component == f"{__name__}:_Scale"


def test_a_component_that_is_neither_a_name_nor_callable_is_refused():
    with pytest.raises(TypeError, match="step 'a': component must be a component name or a "
                                        "callable, got int"):
        ChainBuilder("c").step("a", component=42, input="x", output="y", expected_ms=1)


def test_the_chain_id_is_computed_once(monkeypatch):
    chain = ChainBuilder("c").step("a", component="A", input="x", output="y", expected_ms=1).build()
    calls = []
    original = ChainDefinition._content_hash
    monkeypatch.setattr(ChainDefinition, "_content_hash",
                        lambda self: calls.append(1) or original(self))
    first = chain.chain_id
    assert chain.chain_id is first and calls == [1]
    # a changed copy gets its own id, and a copy survives pickling with the same id
    import dataclasses
    import pickle
    renamed = dataclasses.replace(chain, name="d")
    assert renamed.chain_id != first and renamed.chain_id.startswith("d@")
    assert pickle.loads(pickle.dumps(chain)).chain_id == first
    assert chain == dataclasses.replace(chain)  # the cache is not part of equality

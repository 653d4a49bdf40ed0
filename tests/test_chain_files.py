"""Mistakes in chain files: each one a clear problem naming the file, line and key, never a
traceback; and loading that stays linear in the file's size."""
import time

import pytest

from flowchain import ChainValidationError, load_chains, load_chains_file

STEP = "{name: a, component: A, input: x, output: y, expected_duration: 1}"


def _problem(text, source="chains.yaml"):
    with pytest.raises(ChainValidationError) as info:
        load_chains(text, source=source)
    return info.value.problems, str(info.value)


def test_a_file_that_is_not_utf8_names_the_line_and_byte(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"C:\n  description: caf\xe9\n  steps: []\n")
    with pytest.raises(ChainValidationError) as info:
        load_chains_file(path)
    text = str(info.value)
    assert f"{path}:2:" in text and "not UTF-8" in text and "0xe9" in text
    assert "save the file as UTF-8" in text


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfC:\n  steps:\n    - " + STEP.encode() + b"\n")
    assert [c.name for c in load_chains_file(path)] == ["C"]


@pytest.mark.parametrize("opener, closer", [("[", "]"), ("{a: ", "}"), ("- ", "")])
def test_nesting_20000_deep_is_refused_without_recursion(opener, closer):
    depth = 20_000
    if opener == "- ":
        text = "".join("  " * i + "-\n" for i in range(depth))
    else:
        text = opener * depth + "1" + closer * depth
    problems, message = _problem(text)
    assert "nested too deeply" in message and "four levels" in message
    assert message.startswith("chains.yaml:")
    assert problems[0].line is not None


def test_python_tags_are_refused_naming_the_line():
    _, message = _problem(
        "C:\n  steps:\n    - name: !!python/object/apply:os.system ['echo hi']\n")
    assert "chains.yaml:3:" in message and "python/object/apply:os.system" in message
    assert "not allowed" in message
    _, message = _problem("C: !!python/name:os.system\n")
    assert "chains.yaml:1:" in message and "not allowed" in message


def test_an_unknown_local_tag_is_refused():
    _, message = _problem("C:\n  steps: !custom [1]\n")
    assert "chains.yaml:2:" in message and "'!custom' is not allowed" in message


def test_a_bad_float_tag_names_the_value_and_line():
    _, message = _problem(
        "C:\n  steps:\n    - {name: a, component: A, input: x, output: y,\n"
        "       expected_duration: !!float fast}\n")
    assert "chains.yaml:4:" in message and "'fast' is not a valid float" in message


def test_duplicate_keys_in_a_step_name_key_and_both_lines():
    problems, message = _problem(
        "C:\n  steps:\n    - name: a\n      component: A\n      input: x\n      output: y\n"
        "      expected_duration: 1\n      component: B\n")
    assert len(problems) == 1
    assert ("chains.yaml:8: chain 'C' step 'a': duplicate key 'component' in the step "
            "(first at line 4)") in message


def test_duplicate_keys_in_a_chain_are_reported():
    _, message = _problem(f"C:\n  steps: [{STEP}]\n  steps: []\n")
    assert "chains.yaml:3: chain 'C': duplicate key 'steps' in the chain (first at line 2)" \
        in message


@pytest.mark.parametrize("wrapped", [False, True])
def test_two_chains_with_one_name_are_refused(wrapped):
    body = f"C:\n  steps: [{STEP}]\nD:\n  steps: [{STEP}]\nC:\n  steps: [{STEP}]\n"
    if wrapped:
        body = "Data_Flow_Chains:\n" + "".join("  " + line + "\n" for line in body.splitlines())
    problems, message = _problem(body)
    assert len(problems) == 1
    line = 6 if wrapped else 5
    first = 2 if wrapped else 1
    assert (f"chains.yaml:{line}: chain 'C': the chain is defined twice in this file "
            f"(first at line {first})") in message


def test_wrapper_beside_other_top_level_chains_is_refused():
    _, message = _problem(f"Data_Flow_Chains:\n  C:\n    steps: [{STEP}]\nD:\n  steps: [{STEP}]\n")
    assert "'Data_Flow_Chains' must be the only top-level key" in message


def test_a_second_document_and_a_list_valued_field_are_problems():
    assert "more than one YAML document" in _problem(f"C:\n  steps: [{STEP}]\n---\nD: 1\n")[1]
    _, message = _problem(
        "C:\n  steps:\n    - {name: a, component: [A, B], input: x, output: y,"
        " expected_duration: 1}\n")
    assert "chains.yaml:3:" in message and "'component' must be a single value, got a list" \
        in message


def test_anchors_and_aliases_still_load():
    chains = load_chains(
        "C:\n  steps:\n    - &s {name: a, component: A, input: x, output: x,"
        " expected_duration: 1}\nD:\n  steps: [*s]\n")
    assert [c.steps[0].name for c in chains] == ["a", "a"]


def _big_file(chains: int) -> str:
    parts = []
    for i in range(chains):
        parts.append(
            f"Chain_{i}:\n  description: \"chain number {i}\"\n  steps:\n"
            + "".join(f"    - name: step_{j}\n      component: Component_{j}\n"
                      f"      input: t{j}\n      output: t{j + 1}\n"
                      f"      expected_duration: {j + 1}.5\n"
                      f"      description: \"step {j} of chain {i}\"\n"
                      for j in range(6)))
    return "".join(parts)


def test_loading_is_linear_and_a_10mb_file_loads_in_seconds():
    small, large = _big_file(500), _big_file(5000)
    t0 = time.perf_counter()
    assert len(load_chains(small)) == 500
    t_small = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert len(load_chains(large)) == 5000
    t_large = time.perf_counter() - t0
    # ten times the chains: about ten times the time (a quadratic loader would take 100x)
    assert t_large < 30 * t_small + 0.5, (t_small, t_large)
    text = _big_file(int(5000 * 10e6 / len(large)))
    assert len(text) >= 10_000_000
    t0 = time.perf_counter()
    chains = load_chains(text)
    elapsed = time.perf_counter() - t0
    assert len(chains) > 10_000 and chains[-1].steps[-1].expected_duration_ms == 6.5
    assert elapsed < 60, f"a 10 MB chains file took {elapsed:.1f} s to load"

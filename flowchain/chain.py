"""Chain definitions: steps with typed contracts, content-hash ids, Python builder and YAML.

A chain is an ordered list of named steps; each step names a *component* (resolved through
:mod:`flowchain.components`) that turns one input of type ``input`` into one output of type
``output`` within ``expected_duration_ms``. The types are contract names: a step's input must
be the previous step's output.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import yaml

from flowchain.errors import ChainProblem, ChainValidationError

WRAPPER_KEY = "Data_Flow_Chains"
"""The seed's top-level key; files may use it or list the chains at the top level."""


@dataclass(frozen=True, slots=True)
class ChainStep:
    """One step of a chain.

    Parameters
    ----------
    name : str
        Unique within the chain.
    component : str
        The registered component that implements the step.
    input, output : str
        Contract names of the data the step receives and returns.
    expected_duration_ms : float
        How long the step should take; slower executions raise warnings. Must be positive.
    description : str
        Free text; not part of the chain id.
    line : int or None
        Line of the step in its YAML file, when loaded from one (not part of the id).
    """

    name: str
    component: str
    input: str
    output: str
    expected_duration_ms: float
    description: str = ""
    line: Optional[int] = field(default=None, compare=False)

    @property
    def expected_duration_ns(self) -> int:
        """The expected duration in nanoseconds."""
        return int(round(self.expected_duration_ms * 1_000_000))

    def to_dict(self) -> dict[str, Any]:
        """Return the step in the YAML file's shape."""
        out: dict[str, Any] = {
            "name": self.name,
            "component": self.component,
            "input": self.input,
            "output": self.output,
            "expected_duration": self.expected_duration_ms,
        }
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class ChainDefinition:
    """A named, ordered list of steps.

    The id (:attr:`chain_id`) is a hash of the name and of every step's name, component,
    contracts and expected duration: the same definition always gets the same id and any
    change gets a new one. ``version`` is an optional label of the author's; the registry also
    numbers the versions it sees of each name.
    """

    name: str
    steps: tuple[ChainStep, ...]
    description: str = ""
    version: Optional[str] = None
    source: Optional[str] = field(default=None, compare=False)
    line: Optional[int] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.steps, tuple):
            object.__setattr__(self, "steps", tuple(self.steps))

    @property
    def chain_id(self) -> str:
        """The content hash of the definition, ``<name>@<16 hex digits>``."""
        canonical = json.dumps(
            {
                "name": self.name,
                "steps": [
                    [s.name, s.component, s.input, s.output, float(s.expected_duration_ms)]
                    for s in self.steps
                ],
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return f"{self.name}@{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"

    @property
    def step_names(self) -> tuple[str, ...]:
        """The steps' names in order."""
        return tuple(s.name for s in self.steps)

    def problems(self) -> list[ChainProblem]:
        """Return every structural problem of the definition (empty when valid).

        Checks: a name, at least one step, step fields present and strings, unique step
        names, each step's input equal to the previous step's output, a positive finite
        expected duration. Component names are checked by the registry, which knows them.
        """
        found: list[ChainProblem] = []

        def problem(message: str, step: Optional[ChainStep] = None) -> None:
            found.append(ChainProblem(message, chain=self.name or None,
                                      step=step.name if step is not None else None,
                                      source=self.source,
                                      line=step.line if step is not None and step.line else self.line))

        if not isinstance(self.name, str) or not self.name.strip():
            problem("the chain has no name; give it a non-empty string name")
        if not self.steps:
            problem("the chain is empty; give it at least one step under 'steps:'")
        seen: dict[str, ChainStep] = {}
        previous: Optional[ChainStep] = None
        for step in self.steps:
            for attr in ("name", "component", "input", "output"):
                value = getattr(step, attr)
                if not isinstance(value, str) or not value.strip():
                    problem(f"the step's {attr!r} is missing or empty; it must be a non-empty string",
                            step)
            if isinstance(step.name, str) and step.name in seen:
                first = seen[step.name]
                where = f" (first at line {first.line})" if first.line else ""
                problem(f"duplicate step name {step.name!r}{where}; step names must be unique", step)
            elif isinstance(step.name, str):
                seen[step.name] = step
            duration = step.expected_duration_ms
            if duration is None:
                problem("the step has no expected duration; set 'expected_duration' (ms, > 0)",
                        step)
            elif (isinstance(duration, bool) or not isinstance(duration, (int, float))
                  or not math.isfinite(duration) or duration <= 0):
                problem(f"expected duration must be a positive number of ms, got {duration!r}",
                        step)
            if previous is not None and step.input != previous.output:
                problem(
                    f"({step.component}) expects input {step.input!r} but "
                    f"{previous.name!r} outputs {previous.output!r}; make the contracts match",
                    step,
                )
            previous = step
        return found

    def validate(self) -> "ChainDefinition":
        """Return self, or raise ChainValidationError listing every problem.

        Raises
        ------
        ChainValidationError
            When :meth:`problems` finds any.
        """
        found = self.problems()
        if found:
            raise ChainValidationError(found)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Return the chain in the YAML file's shape (without its name)."""
        out: dict[str, Any] = {}
        if self.description:
            out["description"] = self.description
        if self.version is not None:
            out["version"] = self.version
        out["steps"] = [s.to_dict() for s in self.steps]
        return out


class ChainBuilder:
    """Build a chain in Python, step by step.

    Examples
    --------
    >>> chain = (ChainBuilder("AI_Decision_Chain")
    ...          .step("feature_extraction", "FeatureEngine", "market_data", "feature_vectors", 30)
    ...          .step("multi_agent_analysis", "MultiAgentOrchestrator",
    ...                "feature_vectors", "agent_results", 15)
    ...          .build())
    """

    def __init__(self, name: str, description: str = "", version: Optional[str] = None) -> None:
        self._name = name
        self._description = description
        self._version = version
        self._steps: list[ChainStep] = []

    def step(self, name: str, component: str, input: str, output: str,
             expected_duration_ms: float, description: str = "") -> "ChainBuilder":
        """Append a step and return the builder."""
        self._steps.append(ChainStep(name, component, input, output, expected_duration_ms,
                                     description))
        return self

    def build(self) -> ChainDefinition:
        """Return the validated definition.

        Raises
        ------
        ChainValidationError
            When the chain is empty, has duplicate steps, broken contracts or bad durations.
        """
        return ChainDefinition(self._name, tuple(self._steps), self._description,
                               self._version).validate()


# --------------------------------------------------------------------------- YAML loading

def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _scalar(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node)) if isinstance(node, yaml.ScalarNode) else None


def _mapping(node: yaml.Node) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        out[str(key.value)] = (key, value)
    return out


def load_chains(text: str, source: Optional[str] = None) -> list[ChainDefinition]:
    """Parse YAML text into validated chain definitions.

    Both shapes load: a mapping of chain names, or the seed's ``Data_Flow_Chains:`` mapping
    around it. Each chain has ``steps:`` (a list of name/component/input/output/
    expected_duration mappings) and optionally ``description`` and ``version``.

    Raises
    ------
    ChainValidationError
        On malformed YAML or any problem in any chain; every problem names the file, line,
        chain and step.
    """
    problems: list[ChainProblem] = []
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        raise ChainValidationError([ChainProblem(
            f"malformed YAML: {reason}", source=source,
            line=mark.line + 1 if mark is not None else None)]) from exc
    if root is None:
        raise ChainValidationError([ChainProblem("the file holds no chains", source=source)])
    if not isinstance(root, yaml.MappingNode):
        raise ChainValidationError([ChainProblem(
            "expected a mapping of chain names at the top level", source=source,
            line=_line(root))])
    top = _mapping(root)
    if WRAPPER_KEY in top:
        wrapped = top[WRAPPER_KEY][1]
        if not isinstance(wrapped, yaml.MappingNode):
            raise ChainValidationError([ChainProblem(
                f"'{WRAPPER_KEY}' must hold a mapping of chain names", source=source,
                line=_line(wrapped))])
        top = _mapping(wrapped)

    chains: list[ChainDefinition] = []
    for name, (key_node, chain_node) in top.items():
        where = dict(chain=name, source=source)
        if not isinstance(chain_node, yaml.MappingNode):
            problems.append(ChainProblem("expected a mapping with 'steps:'", line=_line(chain_node),
                                         **where))
            continue
        fields = _mapping(chain_node)
        unknown = set(fields) - {"steps", "description", "version"}
        for key in sorted(unknown):
            problems.append(ChainProblem(
                f"unknown key {key!r}; a chain has 'steps', 'description' and 'version'",
                line=_line(fields[key][0]), **where))
        if "steps" not in fields:
            problems.append(ChainProblem("the chain has no 'steps:' list", line=_line(key_node),
                                         **where))
            continue
        steps_node = fields["steps"][1]
        if not isinstance(steps_node, yaml.SequenceNode):
            problems.append(ChainProblem("'steps:' must be a list of steps",
                                         line=_line(steps_node), **where))
            continue
        steps: list[ChainStep] = []
        for index, step_node in enumerate(steps_node.value):
            if not isinstance(step_node, yaml.MappingNode):
                problems.append(ChainProblem(f"step #{index + 1} must be a mapping",
                                             line=_line(step_node), **where))
                continue
            sf = {k: _scalar(v) for k, (_, v) in _mapping(step_node).items()}
            step_name = sf.get("name")
            bad = set(sf) - {"name", "component", "input", "output", "expected_duration",
                             "expected_duration_ms", "description"}
            for key in sorted(bad):
                problems.append(ChainProblem(
                    f"unknown key {key!r}; a step has name, component, input, output, "
                    "expected_duration (ms) and description", step=str(step_name),
                    line=_line(step_node), **where))
            duration = sf.get("expected_duration", sf.get("expected_duration_ms"))
            steps.append(ChainStep(
                name=step_name if isinstance(step_name, str) else ("" if step_name is None
                                                                   else str(step_name)),
                component=sf.get("component") or "",
                input=sf.get("input") or "",
                output=sf.get("output") or "",
                expected_duration_ms=duration,
                description=sf.get("description") or "",
                line=_line(step_node),
            ))
        description = _scalar(fields["description"][1]) if "description" in fields else ""
        version = _scalar(fields["version"][1]) if "version" in fields else None
        definition = ChainDefinition(name, tuple(steps), description or "",
                                     None if version is None else str(version),
                                     source=source, line=_line(key_node))
        problems.extend(definition.problems())
        chains.append(definition)
    if problems:
        raise ChainValidationError(problems)
    return chains


def load_chains_file(path: Union[str, os.PathLike]) -> list[ChainDefinition]:
    """Load and validate the chains of a YAML file (see :func:`load_chains`).

    Raises
    ------
    ChainValidationError
        On a missing or unreadable file, malformed YAML or any invalid chain.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ChainValidationError([ChainProblem(f"cannot read the file: {exc.strerror}",
                                                 source=str(p))]) from exc
    return load_chains(text, source=str(p))


def dump_chains(chains: Iterable[ChainDefinition]) -> str:
    """Return YAML text (the seed's wrapped shape) that loads back into ``chains``."""
    body = {c.name: c.to_dict() for c in chains}
    return yaml.safe_dump({WRAPPER_KEY: body}, sort_keys=False)

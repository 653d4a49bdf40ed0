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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flowchain.components import component_name
from flowchain.errors import ChainProblem, ChainValidationError

WRAPPER_KEY = "Data_Flow_Chains"
"""The concept document's top-level key; files may use it or list the chains at the top level."""

MAX_PARALLEL = 256
"""The most worker processes a step's ``parallel: N`` may ask for."""
MAX_CACHE_SIZE = 10_000_000
"""The most entries a step's ``cache: {size: N}`` may keep."""
MAX_CONCURRENCY = 10_000
"""The most items a step's ``async: {concurrency: N}`` may keep in flight."""
CACHE_STRATEGIES = ("lru",)
"""The cache strategies a step may name."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheSpec:
    """A step's ``cache: {strategy: lru, size: N}``: keep the outputs of the last ``size``
    distinct inputs and answer a repeated input from them (deterministic components only)."""

    strategy: str = "lru"
    size: int


@dataclass(frozen=True, slots=True)
class AsyncSpec:
    """A step's ``async: {concurrency: N}``: run the items of an element-wise input
    concurrently, at most ``concurrency`` in flight."""

    concurrency: int


def _count_problem(what: str, value: Any, low: int, high: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{what} must be a whole number from {low} to {high}, got {value!r}"
    if not low <= value <= high:
        return f"{what} must be from {low} to {high}, got {value}"
    return None


def parallel_problem(value: Any) -> str | None:
    """Why ``value`` is not a valid ``parallel:``, or None."""
    problem = _count_problem("'parallel' (worker processes)", value, 2, MAX_PARALLEL)
    if problem is not None and value == 1 and not isinstance(value, bool):
        problem += "; 1 is the plain step: remove the key"
    return problem


def cache_problem(value: Any) -> str | None:
    """Why ``value`` is not a valid ``cache:``, or None."""
    if not isinstance(value, CacheSpec):
        return f"'cache' must be a mapping {{strategy: lru, size: N}}, got {value!r}"
    if value.strategy not in CACHE_STRATEGIES:
        return (f"'cache' strategy must be one of {', '.join(CACHE_STRATEGIES)}, got "
                f"{value.strategy!r}")
    return _count_problem("'cache' size (entries)", value.size, 1, MAX_CACHE_SIZE)


def async_problem(value: Any) -> str | None:
    """Why ``value`` is not a valid ``async:``, or None."""
    if not isinstance(value, AsyncSpec):
        return f"'async' must be a mapping {{concurrency: N}}, got {value!r}"
    return _count_problem("'async' concurrency", value.concurrency, 1, MAX_CONCURRENCY)


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
    implementation : callable or None
        The callable, class or async callable the builder was given for the step (its
        ``component`` is then the name derived from it, see :func:`component_name`); the
        registry registers it under ``component`` when the chain is registered. Not part of
        the id.
    parallel : int or None
        ``parallel: N``: split the (element-wise) input into N chunks run in N worker processes.
    cache : CacheSpec or None
        ``cache: {strategy: lru, size: N}``: answer repeated inputs from an LRU cache.
    async_ : AsyncSpec or None
        ``async: {concurrency: N}``: run the (element-wise) input's items concurrently.

    The last three are part of the id only when set, so adding one makes a new version.
    """

    name: str
    component: str
    input: str
    output: str
    expected_duration_ms: float
    description: str = ""
    line: int | None = field(default=None, compare=False)
    implementation: Any = field(default=None, compare=False, repr=False)
    parallel: int | None = None
    cache: CacheSpec | None = None
    async_: AsyncSpec | None = None

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
        out.update(self.execution_options())
        return out

    def execution_options(self) -> dict[str, Any]:
        """Return the step's set ``parallel`` / ``cache`` / ``async`` fields, as in YAML."""
        out: dict[str, Any] = {}
        if self.parallel is not None:
            out["parallel"] = self.parallel
        if self.cache is not None:
            out["cache"] = {"strategy": self.cache.strategy, "size": self.cache.size}
        if self.async_ is not None:
            out["async"] = {"concurrency": self.async_.concurrency}
        return out


def _step_content(step: ChainStep) -> list[Any]:
    content: list[Any] = [step.name, step.component, step.input, step.output,
                          float(step.expected_duration_ms)]
    options = step.execution_options()
    if options:  # only when set: a step without them keeps the id it always had
        content.append(options)
    return content


@dataclass(frozen=True, slots=True)
class ChainDefinition:
    """A named, ordered list of steps.

    The id (:attr:`chain_id`) is a hash of the name and of every step's name, component,
    contracts, expected duration and (when set) ``parallel``/``cache``/``async``: the same
    definition always gets the same id and any change gets a new one. ``version`` is an optional
    label of the author's; the registry also numbers the versions it sees of each name.
    """

    name: str
    steps: tuple[ChainStep, ...]
    description: str = ""
    version: str | None = None
    source: str | None = field(default=None, compare=False)
    line: int | None = field(default=None, compare=False)
    _chain_id: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.steps, tuple):
            object.__setattr__(self, "steps", tuple(self.steps))

    @property
    def chain_id(self) -> str:
        """The content hash of the definition, ``<name>@<16 hex digits>``.

        Computed on first read and kept: the definition is frozen, so it never changes.
        """
        chain_id = self._chain_id
        if chain_id is None:
            chain_id = self._content_hash()
            object.__setattr__(self, "_chain_id", chain_id)
        return chain_id

    def _content_hash(self) -> str:
        canonical = json.dumps(
            {
                "name": self.name,
                "steps": [_step_content(s) for s in self.steps],
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

        def problem(message: str, step: ChainStep | None = None) -> None:
            found.append(ChainProblem(message, chain=self.name or None,
                                      step=step.name if step is not None else None,
                                      source=self.source,
                                      line=step.line if step is not None and step.line else self.line))

        if not isinstance(self.name, str) or not self.name.strip():
            problem("the chain has no name; give it a non-empty string name")
        if not self.steps:
            problem("the chain is empty; give it at least one step under 'steps:'")
        seen: dict[str, ChainStep] = {}
        previous: ChainStep | None = None
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
            for value, check in ((step.parallel, parallel_problem), (step.cache, cache_problem),
                                 (step.async_, async_problem)):
                if value is not None:
                    message = check(value)
                    if message is not None:
                        problem(message, step)
            if step.parallel is not None and step.async_ is not None:
                problem("the step sets both 'parallel' and 'async'; both split its input, keep "
                        "one", step)
            if previous is not None and step.input != previous.output:
                problem(
                    f"({step.component}) expects input {step.input!r} but "
                    f"{previous.name!r} outputs {previous.output!r}; make the contracts match",
                    step,
                )
            previous = step
        return found

    def validate(self) -> ChainDefinition:
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

    Give a step's fields as keywords; ``input`` may be left out after the first step (it is
    then the previous step's output), and ``component`` may be a registered name or the
    callable itself (see :func:`~flowchain.components.component_name`).

    Examples
    --------
    >>> chain = (ChainBuilder("AI_Decision_Chain")
    ...          .step("feature_extraction", component="FeatureEngine", input="market_data",
    ...                output="feature_vectors", expected_ms=30)
    ...          .step("multi_agent_analysis", component="MultiAgentOrchestrator",
    ...                output="agent_results", expected_ms=15)
    ...          .build())
    """

    def __init__(self, name: str, description: str = "", version: str | None = None) -> None:
        self._name = name
        self._description = description
        self._version = version
        self._steps: list[ChainStep] = []

    def step(self, name: str, component: str | Callable[..., Any],
             input: str | None = None, output: str | None = None,
             expected_ms: float | None = None, description: str = "") -> ChainBuilder:
        """Append a step and return the builder.

        Write the fields as keywords; the positional order (name, component, input, output,
        expected_ms, description) also works. A field left out is reported by :meth:`build`
        with every other problem of the chain.

        Parameters
        ----------
        name : str
            Unique within the chain.
        component : str or callable
            A component name, or the callable, class or async callable itself: it is then
            registered under :func:`~flowchain.components.component_name` of it when the
            chain is registered.
        input : str, optional
            The contract name of what the step receives; by default the previous step's
            output (the first step must give it).
        output : str
            The contract name of what the step returns.
        expected_ms : float
            How long the step should take, in milliseconds (> 0).
        description : str
            Free text; not part of the chain id.

        Raises
        ------
        TypeError
            When ``component`` is neither a string nor callable.
        """
        implementation = None
        if not isinstance(component, str):
            if not callable(component):
                raise TypeError(f"step {name!r}: component must be a component name or a "
                                f"callable, got {type(component).__name__}")
            implementation, component = component, component_name(component)
        if input is None:  # the first step without one is reported by build()
            input = self._steps[-1].output if self._steps else ""
        duration: Any = expected_ms  # None is reported by build()
        self._steps.append(ChainStep(name, component, input, output or "", duration, description,
                                     implementation=implementation))
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

MAX_DEPTH = 64
"""The deepest nesting a chains file may have (a chain needs four levels)."""

_DEPTH_HINT = "a chains file needs four levels (chains, chain, steps, step)"
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAGS = (None, "!", "tag:yaml.org,2002:map")
_SEQ_TAGS = (None, "!", "tag:yaml.org,2002:seq")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when PyYAML has it (about ten times faster), else the pure-Python one."""


class _Scalar:
    __slots__ = ("value", "raw", "line")

    def __init__(self, value: Any, raw: str, line: int) -> None:
        self.value = value
        self.raw = raw
        self.line = line


class _Seq:
    __slots__ = ("items", "line")

    def __init__(self, line: int) -> None:
        self.items: list[Any] = []
        self.line = line


class _Map:
    __slots__ = ("items", "line", "key")

    def __init__(self, line: int) -> None:
        self.items: list[tuple[_Scalar, Any]] = []
        self.line = line
        self.key: _Scalar | None = None  # a key read, waiting for its value


_Node = _Scalar | _Seq | _Map


def _fail(message: str, source: str | None, line: int | None) -> ChainValidationError:
    return ChainValidationError([ChainProblem(message, source=source, line=line)])


def _resolve_scalar(loader: Any, event: Any, source: str | None) -> _Scalar:
    line = event.start_mark.line + 1
    tag = event.tag
    if tag is None and event.implicit == (False, True):  # quoted, untagged: a string
        return _Scalar(event.value, event.value, line)
    if tag is None or tag == "!":
        tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
    if tag == _STR_TAG:
        return _Scalar(event.value, event.value, line)
    construct = loader.yaml_constructors.get(tag)
    if construct is None or tag.startswith("tag:yaml.org,2002:python/"):
        raise _fail(f"the tag {event.tag or tag!r} is not allowed in a chains file; write plain "
                    "strings and numbers", source, line)
    node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
    try:
        value = construct(loader, node)
    except (ValueError, TypeError, OverflowError, yaml.YAMLError) as exc:
        raise _fail(f"{event.value!r} is not a valid {tag.rsplit(':', 1)[-1]} "
                    f"({type(exc).__name__}: {exc}); fix the value or remove the tag",
                    source, line) from None
    return _Scalar(value, event.value, line)


def _compose(text: str, source: str | None) -> _Node | None:
    """Read YAML text into light nodes that keep their line numbers, without recursion.

    One pass over the parser's events: the nesting depth is bounded (:data:`MAX_DEPTH`), tags
    other than YAML's plain ones are refused, and duplicate keys are kept for the caller to
    report with their chain and step.
    """
    loader = _Loader(text)
    anchors: dict[str, _Node] = {}
    stack: list[_Seq | _Map] = []
    root: _Node | None = None
    documents = 0

    def attach(node: _Node, anchor: str | None, line: int) -> None:
        nonlocal root
        if anchor is not None:
            anchors[anchor] = node
        if not stack:
            root = node
            return
        parent = stack[-1]
        if isinstance(parent, _Seq):
            parent.items.append(node)
        elif parent.key is None:
            if not isinstance(node, _Scalar):
                raise _fail("a mapping key must be a plain value, not a list or mapping",
                            source, line)
            parent.key = node
        else:
            parent.items.append((parent.key, node))
            parent.key = None

    get_event = loader.get_event
    try:
        while True:
            event = get_event()
            kind = event.__class__
            if kind is yaml.ScalarEvent:
                attach(_resolve_scalar(loader, event, source), event.anchor,
                       event.start_mark.line + 1)
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                line = event.start_mark.line + 1
                is_map = kind is yaml.MappingStartEvent
                if event.tag not in (_MAP_TAGS if is_map else _SEQ_TAGS):
                    raise _fail(f"the tag {event.tag!r} is not allowed in a chains file; write "
                                "plain mappings and lists", source, line)
                if len(stack) >= MAX_DEPTH:
                    raise _fail(f"nested too deeply (more than {MAX_DEPTH} levels); {_DEPTH_HINT}",
                                source, line)
                node: _Seq | _Map = _Map(line) if is_map else _Seq(line)
                attach(node, event.anchor, line)
                stack.append(node)
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                stack.pop()
            elif kind is yaml.AliasEvent:
                line = event.start_mark.line + 1
                target = anchors.get(event.anchor)
                if target is None:
                    raise _fail(f"unknown alias *{event.anchor}", source, line)
                attach(target, None, line)
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise _fail("the file holds more than one YAML document (a second '---'); "
                                "keep every chain in one document", source,
                                event.start_mark.line + 1)
            elif kind is yaml.StreamEndEvent:
                break
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        if "nesting depth" in reason:  # libyaml's own bound, met before ours in flow style
            reason = f"nested too deeply ({reason}); {_DEPTH_HINT}"
        raise _fail(f"malformed YAML: {reason}", source,
                    mark.line + 1 if mark is not None else None) from None
    finally:
        loader.dispose()
    return root


def _kind(node: _Node) -> str:
    return {_Scalar: "a single value", _Seq: "a list", _Map: "a mapping"}[type(node)]


def _mapping(node: _Map, problems: list[ChainProblem], what: str,
             **where: Any) -> dict[str, tuple[_Scalar, _Node]]:
    """Return ``{key: (key node, value node)}``; a key given twice is a problem (first wins)."""
    out: dict[str, tuple[_Scalar, _Node]] = {}
    for key, value in node.items:
        name = key.raw
        if name in out:
            problems.append(ChainProblem(
                f"duplicate key {name!r} in {what} (first at line {out[name][0].line}); "
                "give each key once", line=key.line, **where))
            continue
        out[name] = (key, value)
    return out


_STEP_KEYS = ("name", "component", "input", "output", "expected_duration",
              "expected_duration_ms", "description")
_OPTION_KEYS = ("parallel", "cache", "async")
_OPTION_FIELDS = {"cache": ("strategy", "size"), "async": ("concurrency",)}


def _step_option(key: str, value: _Node, problems: list[ChainProblem], **where: Any) -> Any:
    """Read a step's ``parallel`` / ``cache`` / ``async`` value; None (and a problem) if bad."""
    def bad(message: str, line: int) -> None:
        problems.append(ChainProblem(message, line=line, **where))

    if key == "parallel":
        if not isinstance(value, _Scalar):
            bad(f"'parallel' must be a number of worker processes, got {_kind(value)}",
                value.line)
            return None
        message = parallel_problem(value.value)
        if message is not None:
            bad(message, value.line)
            return None
        return value.value
    shape = "{strategy: lru, size: N}" if key == "cache" else "{concurrency: N}"
    if not isinstance(value, _Map):
        bad(f"{key!r} must be a mapping {shape}, got {_kind(value)}", value.line)
        return None
    fields: dict[str, Any] = {}
    ok = True
    for name, (name_node, field_node) in _mapping(value, problems, f"the step's {key!r}",
                                                  **where).items():
        if name not in _OPTION_FIELDS[key]:
            bad(f"unknown key {name!r} in {key!r}; it takes {shape}", name_node.line)
            ok = False
        elif not isinstance(field_node, _Scalar):
            bad(f"{key!r} {name} must be a single value, got {_kind(field_node)}",
                field_node.line)
            ok = False
        else:
            fields[name] = field_node.value
    if not ok:
        return None
    if key == "cache":
        if "size" not in fields:
            bad("'cache' has no size; write {strategy: lru, size: N}", value.line)
            return None
        spec: Any = CacheSpec(strategy=fields.get("strategy", "lru"), size=fields["size"])
        message = cache_problem(spec)
    else:
        if "concurrency" not in fields:
            bad("'async' has no concurrency; write {concurrency: N}", value.line)
            return None
        spec = AsyncSpec(fields["concurrency"])
        message = async_problem(spec)
    if message is not None:
        bad(message, value.line)
        return None
    return spec


def load_chains(text: str, source: str | None = None) -> list[ChainDefinition]:
    """Parse YAML text into validated chain definitions.

    Both shapes load: a mapping of chain names, or the ``Data_Flow_Chains:`` mapping
    around it. Each chain has ``steps:`` (a list of name/component/input/output/
    expected_duration mappings) and optionally ``description`` and ``version``. Loading is
    one linear pass over the parser's events (libyaml's when available).

    Raises
    ------
    ChainValidationError
        On malformed YAML, a tag other than YAML's plain ones, nesting deeper than
        :data:`MAX_DEPTH`, a duplicate key or chain name, or any problem in any chain; every
        problem names the file, line, chain and step.
    """
    problems: list[ChainProblem] = []
    root = _compose(text, source)
    if root is None:
        raise _fail("the file holds no chains", source, None)
    if not isinstance(root, _Map):
        raise _fail("expected a mapping of chain names at the top level", source, root.line)
    top_items = root.items
    if len(top_items) == 1 and top_items[0][0].raw == WRAPPER_KEY:
        wrapped = top_items[0][1]
        if not isinstance(wrapped, _Map):
            raise _fail(f"'{WRAPPER_KEY}' must hold a mapping of chain names", source,
                        wrapped.line)
        top_items = wrapped.items
    elif any(key.raw == WRAPPER_KEY for key, _ in top_items):
        wrapper = next(k for k, _ in top_items if k.raw == WRAPPER_KEY)
        raise _fail(f"'{WRAPPER_KEY}' must be the only top-level key when present; put every "
                    "chain under it", source, wrapper.line)

    chains: list[ChainDefinition] = []
    first_line: dict[str, int] = {}
    for key_node, chain_node in top_items:
        name = key_node.raw
        where = dict(chain=name, source=source)
        if name in first_line:
            problems.append(ChainProblem(
                f"the chain is defined twice in this file (first at line {first_line[name]}); "
                "rename one or remove it", line=key_node.line, **where))
            continue
        first_line[name] = key_node.line
        if not isinstance(chain_node, _Map):
            problems.append(ChainProblem("expected a mapping with 'steps:'",
                                         line=chain_node.line, **where))
            continue
        fields = _mapping(chain_node, problems, "the chain", **where)
        unknown = set(fields) - {"steps", "description", "version"}
        for key in sorted(unknown):
            problems.append(ChainProblem(
                f"unknown key {key!r}; a chain has 'steps', 'description' and 'version'",
                line=fields[key][0].line, **where))
        if "steps" not in fields:
            problems.append(ChainProblem("the chain has no 'steps:' list", line=key_node.line,
                                         **where))
            continue
        steps_node = fields["steps"][1]
        if not isinstance(steps_node, _Seq):
            problems.append(ChainProblem("'steps:' must be a list of steps",
                                         line=steps_node.line, **where))
            continue
        steps: list[ChainStep] = []
        for index, step_node in enumerate(steps_node.items):
            if not isinstance(step_node, _Map):
                problems.append(ChainProblem(f"step #{index + 1} must be a mapping",
                                             line=step_node.line, **where))
                continue
            raw_name = next((v for k, v in step_node.items if k.raw == "name"), None)
            step_name = raw_name.value if isinstance(raw_name, _Scalar) else None
            step_where = dict(where, step=None if step_name is None else str(step_name))
            sf: dict[str, Any] = {}
            options: dict[str, Any] = {}
            for key, (key_node_, value) in _mapping(step_node, problems, "the step",
                                                    **step_where).items():
                if key in _OPTION_KEYS:
                    options[key] = _step_option(key, value, problems, **step_where)
                elif key not in _STEP_KEYS:
                    problems.append(ChainProblem(
                        f"unknown key {key!r}; a step has name, component, input, output, "
                        "expected_duration (ms), description, and optionally parallel, "
                        "cache and async", line=key_node_.line, **step_where))
                elif not isinstance(value, _Scalar):
                    problems.append(ChainProblem(
                        f"the step's {key!r} must be a single value, got {_kind(value)}",
                        line=value.line, **step_where))
                    sf[key] = "" if key != "expected_duration" else None
                else:
                    sf[key] = value.value
            if "expected_duration" in sf and "expected_duration_ms" in sf:
                problems.append(ChainProblem(
                    "the step gives both 'expected_duration' and 'expected_duration_ms'; "
                    "keep one", line=step_node.line, **step_where))
            duration: Any = sf.get("expected_duration", sf.get("expected_duration_ms"))
            steps.append(ChainStep(
                name=step_name if isinstance(step_name, str) else ("" if step_name is None
                                                                   else str(step_name)),
                component=sf.get("component") or "",
                input=sf.get("input") or "",
                output=sf.get("output") or "",
                expected_duration_ms=duration,
                description=sf.get("description") or "",
                line=step_node.line,
                parallel=options.get("parallel"),
                cache=options.get("cache"),
                async_=options.get("async"),
            ))
        description = fields["description"][1] if "description" in fields else None
        version = fields["version"][1] if "version" in fields else None
        definition = ChainDefinition(
            name, tuple(steps),
            str(description.value or "") if isinstance(description, _Scalar) else "",
            None if not isinstance(version, _Scalar) or version.value is None
            else str(version.value),
            source=source, line=key_node.line)
        problems.extend(definition.problems())
        chains.append(definition)
    if problems:
        raise ChainValidationError(problems)
    return chains


def load_chains_file(path: str | os.PathLike) -> list[ChainDefinition]:
    """Load and validate the chains of a YAML file (see :func:`load_chains`).

    The file must be UTF-8 (a byte-order mark is allowed).

    Raises
    ------
    ChainValidationError
        On a missing or unreadable file, text that is not UTF-8, malformed YAML or any
        invalid chain.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read the file: {exc.strerror}", str(p), None) from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[:exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise _fail(f"the file is not UTF-8 text: byte 0x{data[exc.start]:02x} at column "
                    f"{column} cannot be decoded; save the file as UTF-8", str(p), line) from None
    return load_chains(text, source=str(p))


def dump_chains(chains: Iterable[ChainDefinition]) -> str:
    """Return YAML text (the wrapped ``Data_Flow_Chains:`` shape) that loads back into ``chains``."""
    body = {c.name: c.to_dict() for c in chains}
    return yaml.safe_dump({WRAPPER_KEY: body}, sort_keys=False)

"""The component registry: component names (as chains use them) -> implementations.

An implementation is one of:

* a plain callable taking one input and returning one output;
* a class, instantiated once (without arguments) the first time a chain needs it, whose
  instances are such callables (``__call__``);
* an async callable (``async def``), awaited by :meth:`ChainRunner.run_async`.

Register with the decorator::

    @flowchain.component("FeatureEngine")
    class FeatureEngine:
        def __call__(self, tick): ...

A registration may declare *traits*, promises about the implementation that let the engine run
a step differently without changing what it returns (see :class:`ComponentTraits`)::

    @flowchain.component("Scorer", elementwise=True, deterministic=True)
    def score(rows): return [heavy(r) for r in rows]
"""
from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flowchain.errors import UnknownComponentError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ResolvedComponent:
    """A component ready to be called: the callable and whether it must be awaited."""

    name: str
    call: Callable[[Any], Any]
    is_async: bool


@dataclass(frozen=True, slots=True)
class ComponentTraits:
    """What a component promises about itself; both false unless declared at registration.

    Attributes
    ----------
    elementwise : bool
        The component takes a sequence (list, tuple or 1-d numpy array) and returns a list (or
        array) of the same length, item by item: ``f(a + b) == f(a) + f(b)`` (concatenation).
        The engine may then split the input into chunks and concatenate the chunks' outputs
        (a step's ``parallel: N`` and ``async: {concurrency: N}``).
    deterministic : bool
        The output depends only on the input: no clock, no state kept between calls, no
        randomness. The engine may then answer a repeated input from a cache (a step's
        ``cache: {strategy: lru, size: N}``).
    """

    elementwise: bool = False
    deterministic: bool = False


NO_TRAITS = ComponentTraits()
"""The traits of a component registered without any."""


def _is_async(fn: Any) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004  (the method itself: is it a coroutine?)
    return call is not None and inspect.iscoroutinefunction(call)


class ComponentRegistry:
    """Map component names to implementations; classes are instantiated once, on first use."""

    def __init__(self) -> None:
        self._impls: dict[str, Any] = {}
        self._resolved: dict[str, ResolvedComponent] = {}
        self._traits: dict[str, ComponentTraits] = {}
        self._lock = threading.Lock()

    def register(self, name: str, impl: Any, *, replace: bool = False,
                 elementwise: bool = False, deterministic: bool = False) -> Any:
        """Register ``impl`` under ``name`` and return it.

        ``elementwise`` and ``deterministic`` declare the component's traits (see
        :class:`ComponentTraits`); registering the same implementation again replaces them.

        Raises
        ------
        TypeError
            When ``impl`` is neither callable nor a class.
        ValueError
            When ``name`` is empty, or already registered to another implementation and
            ``replace`` is false.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a component name must be a non-empty string, got {name!r}")
        if not callable(impl):
            raise TypeError(f"component {name!r} must be a callable, a class or an async "
                            f"callable; got {type(impl).__name__}")
        for trait, value in (("elementwise", elementwise), ("deterministic", deterministic)):
            if not isinstance(value, bool):
                raise TypeError(f"component {name!r}: {trait} must be True or False, got "
                                f"{value!r}")
        traits = ComponentTraits(elementwise, deterministic) \
            if elementwise or deterministic else NO_TRAITS
        with self._lock:
            existing = self._impls.get(name)
            if existing is not None and existing is not impl and not replace:
                raise ValueError(
                    f"component {name!r} is already registered to {existing!r}; "
                    "pass replace=True to replace it")
            self._impls[name] = impl
            self._traits[name] = traits
            self._resolved.pop(name, None)
        return impl

    def component(self, name: str, *, elementwise: bool = False,
                  deterministic: bool = False) -> Callable[[T], T]:
        """Return a decorator registering its target under ``name`` with these traits."""
        def decorate(impl: T) -> T:
            self.register(name, impl, elementwise=elementwise, deterministic=deterministic)
            return impl
        return decorate

    def unregister(self, name: str) -> None:
        """Forget ``name`` (chains already built keep their instance)."""
        with self._lock:
            self._impls.pop(name, None)
            self._traits.pop(name, None)
            self._resolved.pop(name, None)

    def implementation(self, name: str) -> Any:
        """Return what ``name`` was registered with (the class itself, not an instance).

        Raises
        ------
        UnknownComponentError
            When ``name`` is not registered.
        """
        impl = self._impls.get(name)
        if impl is None:
            raise UnknownComponentError(f"unknown component {name!r}")
        return impl

    def traits(self, name: str) -> ComponentTraits:
        """Return the traits ``name`` was registered with.

        Raises
        ------
        UnknownComponentError
            When ``name`` is not registered.
        """
        traits = self._traits.get(name)
        if traits is None:
            raise UnknownComponentError(f"unknown component {name!r}")
        return traits

    def __contains__(self, name: object) -> bool:
        return name in self._impls

    def names(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self._impls)

    def resolve(self, name: str) -> ResolvedComponent:
        """Return the callable for ``name``, instantiating a class the first time.

        Raises
        ------
        UnknownComponentError
            When ``name`` is not registered; the message lists the known names.
        """
        resolved = self._resolved.get(name)
        if resolved is not None:
            return resolved
        with self._lock:
            resolved = self._resolved.get(name)
            if resolved is not None:
                return resolved
            impl = self._impls.get(name)
            if impl is None:
                known = ", ".join(sorted(self._impls)) or "none"
                raise UnknownComponentError(
                    f"unknown component {name!r}; registered components: {known}. Register it "
                    f"with @flowchain.component({name!r}) before registering the chain (from "
                    "the command line: import its module with --import MODULE, or the node's "
                    "[components] import)")
            call = impl() if inspect.isclass(impl) else impl
            if not callable(call):
                raise TypeError(f"component {name!r}: instances of {impl.__name__} are not "
                                "callable; define __call__(self, data)")
            resolved = ResolvedComponent(name, call, _is_async(call))
            self._resolved[name] = resolved
            return resolved


default_components = ComponentRegistry()
"""The process-wide registry that :func:`component` and a default ChainRegistry use."""


def component(name: str, registry: ComponentRegistry | None = None, *,
              elementwise: bool = False, deterministic: bool = False) -> Callable[[T], T]:
    """Register the decorated callable, class or async callable as component ``name``.

    ``elementwise`` and ``deterministic`` declare its traits (:class:`ComponentTraits`): what
    lets a chain give its step ``parallel``/``async`` (element-wise) or ``cache``
    (deterministic).
    """
    return (registry or default_components).component(
        name, elementwise=elementwise, deterministic=deterministic)


def component_name(impl: Any) -> str:
    """Return the name a callable is registered under when a chain is given it, not a name.

    ``module:qualname`` of the function or class (``my_components:returns``,
    ``my_components:ThresholdSignal``), with ``:line`` added for a lambda
    (``my_components:<lambda>:12``); for another callable object, that of its type. The name is
    stable from run to run (chain ids include it) and never looks like a hand-picked one. Two
    different callables may derive the same name (closures from one factory, two lambdas on
    one line, two instances of one class): registering the second is refused, so give one a
    name of its own.

    Raises
    ------
    TypeError
        When ``impl`` is not callable.
    """
    if not callable(impl):
        raise TypeError(f"a component must be callable, got {type(impl).__name__}")
    named = impl if hasattr(impl, "__qualname__") and hasattr(impl, "__module__") else type(impl)
    name = f"{named.__module__}:{named.__qualname__}"
    code = getattr(named, "__code__", None)
    if named.__name__ == "<lambda>" and code is not None:
        name += f":{code.co_firstlineno}"
    return name

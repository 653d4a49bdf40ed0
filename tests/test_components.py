"""The component registry: callables, classes instantiated once, async callables, errors."""
import pytest

from flowchain import ComponentRegistry, UnknownComponentError, component, default_components


def test_plain_callable_class_and_async_resolve():
    reg = ComponentRegistry()
    created = []

    @reg.component("Plain")
    def plain(x):
        return x + 1

    @reg.component("Cls")
    class Scaler:
        def __init__(self):
            created.append(self)

        def __call__(self, x):
            return x * 3

    @reg.component("Async")
    async def fetch(x):
        return x

    class AsyncCls:
        async def __call__(self, x):
            return x

    reg.register("AsyncCls", AsyncCls)
    assert reg.resolve("Plain").call(1) == 2 and not reg.resolve("Plain").is_async
    first = reg.resolve("Cls")
    assert first.call(2) == 6 and reg.resolve("Cls") is first and len(created) == 1
    assert reg.resolve("Async").is_async and reg.resolve("AsyncCls").is_async
    assert reg.names() == ["Async", "AsyncCls", "Cls", "Plain"]
    assert "Plain" in reg and "Nope" not in reg


def test_unknown_component_lists_known_names():
    reg = ComponentRegistry()
    reg.register("A", len)
    with pytest.raises(UnknownComponentError, match=r"unknown component 'B'; registered components: A"):
        reg.resolve("B")


def test_conflicting_registration_needs_replace():
    reg = ComponentRegistry()
    reg.register("A", len)
    reg.register("A", len)  # the same implementation again is fine
    with pytest.raises(ValueError, match="already registered"):
        reg.register("A", abs)
    reg.register("A", abs, replace=True)
    assert reg.resolve("A").call(-2) == 2


def test_bad_registrations():
    reg = ComponentRegistry()
    with pytest.raises(TypeError, match="must be a callable"):
        reg.register("X", 3)
    with pytest.raises(ValueError, match="non-empty string"):
        reg.register("", len)

    class NotCallable:
        pass

    reg.register("N", NotCallable)
    with pytest.raises(TypeError, match="define __call__"):
        reg.resolve("N")


def test_module_level_decorator_uses_the_default_registry():
    @component("test_components.Identity")
    def ident(x):
        return x

    try:
        assert default_components.resolve("test_components.Identity").call(5) == 5
    finally:
        default_components.unregister("test_components.Identity")

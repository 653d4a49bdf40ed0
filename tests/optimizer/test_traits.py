"""Component traits: declared at registration, read back, refused when not booleans."""
import pytest

import flowchain
from flowchain import ComponentRegistry, ComponentTraits, UnknownComponentError


def double(rows):
    return [2 * r for r in rows]


def test_traits_default_to_neither():
    components = ComponentRegistry()
    components.register("Double", double)
    assert components.traits("Double") == ComponentTraits(elementwise=False, deterministic=False)


def test_register_declares_traits():
    components = ComponentRegistry()
    components.register("Double", double, elementwise=True, deterministic=True)
    traits = components.traits("Double")
    assert traits.elementwise and traits.deterministic


def test_decorator_declares_traits_in_a_private_registry():
    components = ComponentRegistry()

    @flowchain.component("Scorer", components, deterministic=True)
    class Scorer:
        def __call__(self, x):
            return x

    assert components.traits("Scorer") == ComponentTraits(deterministic=True)
    assert "Scorer" not in flowchain.default_components


def test_registering_again_replaces_the_traits():
    components = ComponentRegistry()
    components.register("Double", double, elementwise=True)
    components.register("Double", double)
    assert components.traits("Double") == ComponentTraits()
    components.register("Double", lambda rows: rows, replace=True, deterministic=True)
    assert components.traits("Double") == ComponentTraits(deterministic=True)


def test_unknown_and_unregistered_names_raise():
    components = ComponentRegistry()
    with pytest.raises(UnknownComponentError, match="'Nope'"):
        components.traits("Nope")
    components.register("Double", double, elementwise=True)
    components.unregister("Double")
    with pytest.raises(UnknownComponentError):
        components.traits("Double")


def test_a_trait_that_is_not_a_boolean_is_refused():
    components = ComponentRegistry()
    with pytest.raises(TypeError, match="component 'Double': elementwise must be True or False"):
        components.register("Double", double, elementwise="yes")
    assert "Double" not in components


def test_traits_are_frozen():
    with pytest.raises(AttributeError):
        ComponentTraits().elementwise = True  # type: ignore[misc]

"""Tenancy fixtures: components, the test tiers and a manager over a real SQLite file."""
import pytest
from tenancy_parts import TEST_TIERS, make_components

from flowchain import ComponentRegistry
from flowchain.tenancy import TenantManager, tiers_from_toml


@pytest.fixture
def components() -> ComponentRegistry:
    return make_components()


@pytest.fixture
def tiers():
    return tiers_from_toml(TEST_TIERS)


@pytest.fixture
def manager(components, tiers, tmp_path):
    m = TenantManager(tiers, components=components, db=tmp_path / "node.db")
    yield m
    m.close()

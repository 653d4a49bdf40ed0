"""Tiers as data: the shipped defaults, and every bad tier file refused by file and key."""
from pathlib import Path

import pytest

from flowchain.tenancy import (
    TenantManager,
    TierConfigError,
    UnknownTierError,
    load_tiers,
    tiers_from_toml,
)

GOOD = """
[features]
advanced = ["Advanced"]

[tiers.basic]
isolation = "shared"
executions_per_second = 10.0
features = []

[tiers.plus]
isolation = "dedicated"
chains = 3
features = ["advanced"]
"""


def test_defaults_ship_free_pro_enterprise_in_upgrade_order():
    tiers = load_tiers()
    assert tiers.names() == ["free", "pro", "enterprise"]
    assert [t.isolation for t in tiers] == ["shared", "dedicated", "process"]
    free, pro = tiers.get("free"), tiers.get("pro")
    assert free.executions_per_day and free.concurrent and free.chains
    assert "advanced" in pro.features and "advanced" not in free.features
    assert tiers.next_above(free) is pro and tiers.next_above(tiers.get("enterprise")) is None
    assert tiers.feature_of("MultiAgentOrchestrator") == "advanced"
    assert tiers.first_with_feature("advanced") is pro


def test_left_out_limits_are_unlimited_and_burst_defaults_to_the_rate():
    tiers = tiers_from_toml(GOOD)
    basic = tiers.get("basic")
    assert basic.chains is None and basic.executions_per_day is None
    assert basic.effective_burst == 10
    assert tiers.first_allowing("chains", 10).name == "basic"


def test_tiers_from_the_nodes_toml_beside_its_sections(tmp_path: Path):
    path = tmp_path / "node.toml"
    path.write_text("[node]\nfeed = \"sim\"\n" + GOOD)
    assert load_tiers(path).names() == ["basic", "plus"]
    from flowchain.config import load_config

    assert load_config(path).tiers["plus"]["chains"] == 3  # the node accepts the tables


@pytest.mark.parametrize("body, key, words", [
    ('[tiers.a]\nchainz = 3\n', "tiers.a.chainz", "unknown key"),
    ('[tiers.a]\nchains = 0\n', "tiers.a.chains", "must be > 0"),
    ('[tiers.a]\nconcurrent = -2\n', "tiers.a.concurrent", "must be > 0"),
    ('[tiers.a]\nexecutions_per_second = -0.5\n', "tiers.a.executions_per_second", "> 0"),
    ('[tiers.a]\nexecutions_per_day = 2.5\n', "tiers.a.executions_per_day", "integer"),
    ('[tiers.a]\nchains = true\n', "tiers.a.chains", "positive integer"),
    ('[tiers.a]\nchains = "many"\n', "tiers.a.chains", "positive integer"),
    ('[tiers.a]\nexecutions_per_second = nan\n', "tiers.a.executions_per_second", "> 0"),
    ('[tiers.a]\nisolation = "vm"\n', "tiers.a.isolation", "shared, dedicated, process"),
    ('[tiers.a]\nfeatures = ["gold"]\n', "tiers.a.features", "unknown feature 'gold'"),
    ('[tiers.a]\nburst = 4\n', "tiers.a.burst", "needs executions_per_second"),
    ('[tier.a]\nchains = 1\n', "tier", "unknown top-level key"),
    ('[features]\nadvanced = "X"\n[tiers.a]\n', "features.advanced", "list of component"),
    ('[node]\nfeed = "sim"\n', "tiers", "no tiers defined"),
    ('tiers = 3\n', "tiers", "no tiers defined"),
])
def test_bad_tier_files_name_the_file_and_key(tmp_path: Path, body: str, key: str, words: str):
    path = tmp_path / "tiers.toml"
    path.write_text(body)
    with pytest.raises(TierConfigError) as info:
        load_tiers(path)
    text = str(info.value)
    assert text.startswith(f"{path}: key {key!r}"), text
    assert words in text


def test_missing_and_invalid_files(tmp_path: Path):
    with pytest.raises(TierConfigError, match="no such tier file"):
        load_tiers(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[tiers.a\n")
    with pytest.raises(TierConfigError, match=f"{bad}: not valid TOML"):
        load_tiers(bad)


def test_unknown_tier_names_the_known_ones(components):
    manager = TenantManager(tiers_from_toml(GOOD), components=components)
    with pytest.raises(UnknownTierError, match="unknown tier 'gold'.*basic, plus"):
        manager.add_tenant("acme", "gold")
    assert manager.tenants() == []

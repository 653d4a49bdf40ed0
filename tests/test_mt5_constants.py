"""The fake MetaTrader5 obeys the official package: its constants and function names."""
import inspect
import os

import pytest
from flowchain_bridge.fake_mt5 import FakeMetaTrader5
from flowchain_bridge.mt5_records import constant_names
from flowchain_bridge.mt5_reference import download_wheel, load_snapshot, parse_init, read_wheel

SNAPSHOT = load_snapshot()
# The groups the bridge's behaviour depends on: the fake must define every official member.
REQUIRED_PREFIXES = ("TRADE_RETCODE_", "RES_", "ORDER_TYPE_", "ORDER_FILLING_", "ORDER_TIME_",
                     "TRADE_ACTION_", "TICK_FLAG_", "COPY_TICKS_", "POSITION_TYPE_", "DEAL_ENTRY_")


def test_every_fake_constant_has_the_official_value():
    official = SNAPSHOT["constants"]
    fake = constant_names(FakeMetaTrader5)
    unknown = sorted(set(fake) - set(official))
    wrong = {k: (v, official[k]) for k, v in fake.items() if k in official and official[k] != v}
    assert not unknown, f"the fake defines constants the official package lacks: {unknown}"
    assert not wrong, f"fake constants differ from the official ones (fake, official): {wrong}"


def test_the_fake_defines_every_official_constant_the_bridge_relies_on():
    fake = constant_names(FakeMetaTrader5)
    missing = sorted(k for k in SNAPSHOT["constants"] if k.startswith(REQUIRED_PREFIXES) and k not in fake)
    assert not missing, f"the fake lacks official constants: {missing}"
    assert SNAPSHOT["constants"]["COPY_TICKS_ALL"] == -1  # the value peers get wrong


def test_the_fake_has_every_official_function():
    missing = sorted(name for name in SNAPSHOT["functions"] if not callable(getattr(FakeMetaTrader5, name, None)))
    assert not missing, f"the fake lacks official functions: {missing}"


@pytest.mark.parametrize("name", ["copy_ticks_range", "copy_ticks_from", "order_send", "symbol_select",
                                  "copy_rates_from", "order_calc_profit"])
def test_positional_parameters_match_the_official_signature(name):
    official = SNAPSHOT["functions"][name]
    wanted = [p.strip() for p in official[official.index("(") + 1:-1].split(",")
              if p.strip() and "[" not in p and "=" not in p]
    params = [p.name for p in inspect.signature(getattr(FakeMetaTrader5, name)).parameters.values()
              if p.name != "self" and p.default is inspect.Parameter.empty][: len(wanted)]
    assert params == wanted, f"{name}: fake {params}, official {official}"


def test_parse_init_evaluates_the_packages_expressions():
    version, constants, helpers = parse_init(
        "__version__ = '1.2'\nTIMEFRAME_H1 = 1 | 0x4000\nRES_E_FAIL = -1\ndef Buy(): pass\n")
    assert version == "1.2" and constants == {"TIMEFRAME_H1": 0x4001, "RES_E_FAIL": -1} and helpers == ["Buy"]


def test_the_snapshot_matches_the_wheel_when_it_can_be_downloaded(tmp_path):
    if os.environ.get("FLOWCHAIN_OFFLINE"):
        pytest.skip("FLOWCHAIN_OFFLINE is set: the committed snapshot is the reference")
    wheel = download_wheel(tmp_path, timeout=60)
    if wheel is None:
        pytest.skip("the MetaTrader5 wheel could not be downloaded; the committed snapshot stands")
    live = read_wheel(wheel)
    fake = constant_names(FakeMetaTrader5)
    wrong = {k: (v, live["constants"].get(k)) for k, v in fake.items() if live["constants"].get(k) != v}
    assert not wrong, f"fake constants differ from MetaTrader5 {live['version']}: {wrong}; "
    "rerun scripts/snapshot_mt5_constants.py and fix the fake"
    changed = {k for k in SNAPSHOT["constants"] if live["constants"].get(k) != SNAPSHOT["constants"][k]}
    assert not changed, f"MetaTrader5 {live['version']} changed {sorted(changed)}: rerun the snapshot script"

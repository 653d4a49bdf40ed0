"""The node's money configuration: ``[account] currency`` and ``[symbols.NAME]`` specs, merged
over the shipped defaults and checked at load, with errors naming the file and the key."""
from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from flowchain.config import ConfigError, NodeConfig, load_config
from flowchain.node_parts import build_broker
from flowchain.trading.valuation import DEFAULT_CONTRACT_SPECS, ContractSpec


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_a_usd_account_with_the_shipped_specs() -> None:
    config = load_config()
    assert config.account.currency == "USD"
    assert config.contract_specs == dict(DEFAULT_CONTRACT_SPECS)
    broker = build_broker(config)
    assert broker.account_currency == "USD"
    assert broker.valuation.quoted == config.node.symbols
    assert broker.valuation.instrument("XAUUSD").contract_size == 100.0


def test_a_shipped_spec_is_overridden_key_by_key_and_a_new_symbol_added(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '''
[node]
symbols = ["XAUUSD", "US500"]
[account]
currency = "USD"
[symbols.XAUUSD]
trade_contract_size = 10.0
[symbols.US500]
trade_contract_size = 1.0
currency_base = "US500"
currency_profit = "USD"
'''))
    specs = config.contract_specs
    assert specs["XAUUSD"] == ContractSpec(trade_contract_size=10.0, currency_base="XAU",
                                         currency_profit="USD")
    assert specs["US500"].currency_base == "US500"
    assert specs["EURUSD"] == DEFAULT_CONTRACT_SPECS["EURUSD"]
    data = config.to_dict()
    assert data["symbols"]["XAUUSD"] == {"trade_contract_size": 10.0}  # only what was set
    assert msgspec.convert(dict(data, source=config.source), NodeConfig) == config


def test_an_eur_account_converts_through_the_node_symbols(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[account]\ncurrency = "EUR"\n'))
    valuation = build_broker(config).valuation
    assert valuation.conversion("USD").route == ("EURUSD",)
    assert valuation.conversion("JPY").route == ("USDJPY", "EURUSD")


@pytest.mark.parametrize("text, key, what", [
    ('[account]\ncurrency = "usd"\n', "account.currency", "currency code"),
    ('[account]\ncurrency = 840\n', "account.currency", "expected `str`"),
    ('[account]\ncurrncy = "USD"\n', "account.currncy", "known keys there are currency"),
    ('[symbols.XAUUSD]\ntrade_contract_size = 0\n', "symbols.XAUUSD.trade_contract_size", "> 0"),
    ('[symbols.XAUUSD]\ncontract_size = 100\n', "symbols.XAUUSD.contract_size",
     "trade_contract_size, currency_base, currency_profit"),
    ('[symbols.EURUSD]\ncurrency_profit = "dollars"\n', "symbols.EURUSD.currency_profit",
     "currency code"),
    ('[symbols]\nXAUUSD = 100\n', "symbols.XAUUSD", "expected `object`"),
    ('[symbols.US500]\ntrade_contract_size = 1.0\n', "symbols.US500.currency_base",
     "must set trade_contract_size, currency_base and currency_profit"),
    ('[node]\nsymbols = ["US500"]\n', "symbols.US500", "US500 has no symbol spec"),
    ('[node]\nsymbols = ["EURGBP"]\n', "node.symbols",
     "no quoted pair converts GBP to the account currency USD"),
    ('[node]\nsymbols = ["XAUUSD"]\n[account]\ncurrency = "EUR"\n', "node.symbols",
     "trade a pair such as USDEUR or EURUSD"),
])
def test_bad_money_settings_name_file_and_key(tmp_path: Path, text: str, key: str,
                                              what: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path)) and repr(key) in message and what in message


def test_the_bridge_broker_needs_no_paper_conversion(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[node]\nsymbols = ["EURGBP"]\nbroker = "bridge"\n'
                                         'feed = "tcp://127.0.0.1:5555"\n'))
    assert config.node.symbols == ("EURGBP",)


def test_flags_that_complete_the_file_are_applied_before_the_check(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\nsymbols = ["EURGBP"]\n')
    config = load_config(path, {"symbols": ["EURGBP", "GBPUSD"]})
    assert build_broker(config).valuation.conversion("GBP").route == ("GBPUSD",)
    with pytest.raises(ConfigError, match=r"\+ --flags: key 'node.symbols': EURGBP"):
        load_config(path, {"db": "x.db"})

"""The node's configuration: defaults, TOML file, flag overrides, and errors naming file and key."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flowchain.config import (
    DEFAULT_DASHBOARD_PORT,
    DEFAULT_DB,
    OTLP_EXPORTER_MODULE,
    ConfigError,
    NodeConfig,
    feed_kind,
    load_config,
    otlp_exporter_available,
)
from flowchain.observe.web.server import DEFAULT_PORT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_run_the_main_job() -> None:
    config = load_config()
    assert config.node.feed == "sim"
    assert config.node.broker == "paper"
    assert config.node.db == DEFAULT_DB == "flowchain.db"
    assert config.duration is None
    assert config.feed_kind == "sim"


def test_file_sets_every_section(tmp_path: Path) -> None:
    path = write(tmp_path, """
[node]
feed = "replay:ticks.csv"
db = "x.db"
duration = 2.5
symbols = ["EURUSD"]
status_interval = 0
[simulator]
seed = 7
rate = 0
[risk]
max_position = 0.5
max_orders_per_second = 2
kill_file = "STOP"
[paper]
latency_ms = 1.5
slippage = 0.0002
[bridge]
orders = "tcp://10.0.0.2:7001"
""")
    config = load_config(path)
    assert config.replay_path == Path("ticks.csv")
    assert config.duration == 2.5
    assert config.node.symbols == ("EURUSD",)
    assert config.simulator.seed == 7 and config.simulator.rate == 0
    assert config.risk.max_position == 0.5 and config.risk.kill_file == "STOP"
    assert config.paper.latency_ms == 1.5
    assert config.bridge.orders == "tcp://10.0.0.2:7001"
    assert config.source == str(path)


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\nfeed = "sim"\ndb = "file.db"\nduration = 9\n')
    config = load_config(path, {"db": "flag.db", "duration": 1.0, "broker": None})
    assert config.node.db == "flag.db"
    assert config.duration == 1.0
    assert config.node.broker == "paper"  # None means "flag not given"


@pytest.mark.parametrize("text, key", [
    ('[node]\nfeed = "udp://x:1"\n', "node.feed"),
    ('[node]\nbroker = "ib"\n', "node.broker"),
    ('[node]\nduration = -1\n', "node.duration"),
    ('[node]\nduration = "long"\n', "node.duration"),
    ('[node]\nsymbols = []\n', "node.symbols"),
    ('[node]\nsymbols = ["EURUSD", "EURUSD"]\n', "node.symbols"),
    ('[risk]\nmax_orders_per_second = 0\n', "risk.max_orders_per_second"),
    ('[node]\nid = "desk-1"\n', "node"),
    ('[risk]\nmax_position_lots = 1\n', "risk.max_position_lots"),
    ('[risk]\nmax_orders_per_second = 2.5\n', "risk.max_orders_per_second"),
    ('[bridge]\norders = "tcp://host:99999"\n', "bridge.orders"),
    ('[bridge]\nserver_public_key = "bridge.key"\n', "bridge"),
    ('[sim]\nseed = 1\n', "sim"),
])
def test_bad_values_name_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert repr(key) in message or f"'{key}." in message


def test_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_position, max_orders_per_second"):
        load_config(write(tmp_path, "[risk]\nmax_position_lots = 1\n"))


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[node\nfeed = \n"))


def test_bad_flag_is_named_as_a_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--flags: key 'node.feed'"):
        load_config(None, {"feed": "carrier-pigeon"})


def test_bridge_broker_needs_the_bridge_feed() -> None:
    with pytest.raises(ConfigError, match="tcp://host:port"):
        load_config(None, {"broker": "bridge"})
    config = load_config(None, {"broker": "bridge", "feed": "tcp://127.0.0.1:5555"})
    assert config.feed_kind == "tcp"


def test_source_is_not_a_file_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'source'"):
        load_config(write(tmp_path, 'source = "x"\n'))


@pytest.mark.parametrize("spec, kind", [("sim", "sim"), ("replay:a.csv", "replay"),
                                        ("tcp://127.0.0.1:5555", "tcp")])
def test_feed_kinds(spec: str, kind: str) -> None:
    assert feed_kind(spec) == kind


def test_to_dict_round_trips() -> None:
    import msgspec

    config = load_config(None, {"db": "round.db", "duration": 3.0, "symbols": ["EURUSD"]})
    data = config.to_dict()
    assert set(data) == {"node", "simulator", "risk", "trading", "paper", "account", "symbols",
                         "bridge",
                         "dashboard", "history", "monitor", "alerts", "otel", "components",
                         "chains"}
    back = msgspec.convert(dict(data, source=config.source), NodeConfig)
    assert back == config


def test_bridge_key_files_come_in_pairs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="server_public_key"):
        load_config(write(tmp_path, '[bridge]\nsecret_key = "node.key_secret"\n'))
    config = load_config(write(tmp_path, '[bridge]\nsecret_key = "n.key_secret"\n'
                                         'server_public_key = "b.key"\n'))
    assert config.bridge.secret_key == "n.key_secret"


def test_observer_defaults_are_the_documented_ones() -> None:
    config = load_config()
    d = config.dashboard
    assert (d.enabled, d.host, d.port, d.url_file, d.allow_remote) == \
        (True, "127.0.0.1", DEFAULT_DASHBOARD_PORT, "", False)
    assert DEFAULT_DASHBOARD_PORT == DEFAULT_PORT == 8750  # where `flowchain status` asks
    assert (config.history.enabled, config.history.interval_s, config.history.sample_rate) == \
        (True, 10.0, 0.001)
    assert config.history_db == config.node.db
    m = config.monitor
    assert (m.warning_interval_s, m.window_s, m.error_threshold) == (10.0, 60.0, 0.05)
    assert m.repeat_interval_s == 60.0
    assert config.alerts.webhook == "" and config.otel.endpoint == ""


def test_observer_sections_from_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
[dashboard]
host = "::1"
port = 0
url_file = "url.txt"
[history]
db = "history.db"
interval_s = 0.5
sample_rate = 0.25
[monitor]
warning_interval_s = 0
error_threshold = 0.1
min_attempts = 5
repeat_interval_s = 15
[alerts]
webhook = "https://hooks.example/flowchain"
"""))
    assert config.monitor.repeat_interval_s == 15.0
    assert (config.dashboard.host, config.dashboard.port) == ("::1", 0)
    assert config.history_db == "history.db" and config.history.sample_rate == 0.25
    assert config.monitor.error_threshold == 0.1 and config.monitor.warning_interval_s == 0
    assert config.alerts.webhook.startswith("https://")


@pytest.mark.parametrize("flag, host, port", [("127.0.0.1:0", "127.0.0.1", 0),
                                              ("localhost:9000", "localhost", 9000),
                                              ("[::1]:8751", "::1", 8751)])
def test_dashboard_flag_sets_host_and_port(flag: str, host: str, port: int) -> None:
    config = load_config(None, {"dashboard": flag})
    assert (config.dashboard.host, config.dashboard.port) == (host, port)


@pytest.mark.parametrize("flag", ["8750", "127.0.0.1:", ":8750", "127.0.0.1:http",
                                  "127.0.0.1:70000"])
def test_malformed_dashboard_flag_names_the_flag(flag: str) -> None:
    with pytest.raises(ConfigError, match=r"^--dashboard: expected HOST:PORT"):
        load_config(None, {"dashboard": flag})


def test_non_loopback_dashboard_is_refused_unless_allowed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'dashboard.host'.*not loopback.*allow_remote"):
        load_config(None, {"dashboard": "0.0.0.0:8750"})
    with pytest.raises(ConfigError, match=r"node.toml: key 'dashboard.host'"):
        load_config(write(tmp_path, '[dashboard]\nhost = "192.168.1.5"\n'))
    allowed = load_config(None, {"dashboard": "0.0.0.0:8750", "dashboard_allow_remote": True})
    assert allowed.dashboard.host == "0.0.0.0"
    off = load_config(None, {"dashboard": "0.0.0.0:8750", "dashboard_enabled": False})
    assert not off.dashboard.enabled  # nothing listens, so nothing to refuse


@pytest.mark.parametrize("text, key", [
    ('[dashboard]\nport = 70000\n', "dashboard.port"),
    ('[dashboard]\ninterval_s = 0\n', "dashboard.interval_s"),
    ('[history]\nsample_rate = 2\n', "history.sample_rate"),
    ('[history]\ninterval_s = -1\n', "history.interval_s"),
    ('[monitor]\nerror_threshold = 1.5\n', "monitor.error_threshold"),
    ('[monitor]\nwindow_s = 0\n', "monitor.window_s"),
    ('[monitor]\nmin_attempts = 0\n', "monitor.min_attempts"),
    ('[monitor]\nrepeat_interval_s = 0\n', "monitor.repeat_interval_s"),
    ('[alerts]\nwebhook = "ftp://x"\n', "alerts.webhook"),
    ('[otel]\nendpoint = "collector:4318"\n', "otel.endpoint"),
    ('[dashboard]\nlisten = "x"\n', "dashboard.listen"),
])
def test_bad_observer_values_name_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))
    assert repr(key) in str(info.value)


def test_otel_endpoint_without_the_exporter_names_the_missing_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules hides the exporter whether or not the otel extra is installed
    monkeypatch.setitem(sys.modules, OTLP_EXPORTER_MODULE, None)
    assert not otlp_exporter_available()
    path = write(tmp_path, '[otel]\nendpoint = "http://127.0.0.1:4318/v1/traces"\n')
    with pytest.raises(ConfigError, match=r"'otel.endpoint'.*flowchain\[otel\].*otlp"):
        load_config(path)

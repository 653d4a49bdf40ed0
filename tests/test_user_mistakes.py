"""Ordinary user mistakes, each driven through the real ``flowchain`` command: a message that
names the file, key or value and what to do, a non-zero exit (2 for a usage mistake), and never
a traceback or a silent acceptance."""
import re
import socket
import threading
import time

import pytest
import yaml
import zmq
from typer.testing import CliRunner

from flowchain.chain import load_chains
from flowchain.chains import TRADING_NODE_YAML
from flowchain.cli import app

runner = CliRunner()


def invoke(*args: str, env: dict | None = None):
    """Run ``flowchain ARGS``; an exception escaping the command fails the test (a traceback)."""
    return runner.invoke(app, list(args), catch_exceptions=False, env=env)


def said(result) -> str:
    """The command's output with the console's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- the node's TOML configuration ----------------------------------------------------------
NODE_CONFIG_MISTAKES = {
    "interval_1e300": ("[monitor]\ninterval_s = 1e300\n",
                       ["key 'monitor.interval_s'", "at most 3600"]),
    "webhook_without_host": ('[alerts]\nwebhook = "http://"\n',
                             ["key 'alerts.webhook'", "with a host", "'http://'"]),
    "allow_remote_list": ("[bridge]\nallow_remote = [0]\n",
                          ["key 'bridge.allow_remote'", "expected `bool`, got `array`"]),
    "not_toml": ("[monitor\ninterval_s = 1\n", ["node.toml: not valid TOML"]),
}


@pytest.mark.parametrize("name", sorted(NODE_CONFIG_MISTAKES))
def test_node_config_mistakes_are_refused_at_load_with_exit_2(here, name):
    text, expected = NODE_CONFIG_MISTAKES[name]
    (here / "node.toml").write_text(text)
    result = invoke("node", "-c", "node.toml", "--no-dashboard", "--duration", "1")
    assert result.exit_code == 2, result.output
    for fragment in expected:
        assert fragment in said(result), result.output
    assert not (here / "flowchain.db").exists()  # refused before anything was opened


def test_every_problem_of_a_node_config_is_reported_at_once(here):
    (here / "node.toml").write_text(
        '[monitor]\ninterval_s = -1\nwindow_s = "x"\n[risk]\nmax_position = -1\n'
        '[alerts]\nwebhook = "http://"\n[symbols.FOO]\ntrade_contract_size = 0\nbogus = 1\n'
        '[bogus]\na = 1\n')
    result = invoke("node", "-c", "node.toml", "--no-dashboard")
    assert result.exit_code == 2, result.output
    text = said(result)
    assert "invalid configuration (7 problems):" in text
    for fragment in ("key 'monitor.interval_s'", "key 'monitor.window_s'",
                     "key 'risk.max_position'", "key 'alerts.webhook'",
                     "unknown key 'symbols.FOO.bogus'", "key 'symbols.FOO.trade_contract_size'",
                     "unknown key 'bogus'"):
        assert f"node.toml: {fragment}" in text, (fragment, text)


# -- the bridge ------------------------------------------------------------------------------
BRIDGE_FILE_MISTAKES = {
    "syntax.yaml": ("symbols: [EURUSD\n", ["syntax.yaml:2:1: not valid YAML"]),
    "syntax.json": ('{"poll_ms": ', ["syntax.json:1:13: not valid JSON"]),
    "values.yaml": ("poll_ms: -2\nheartbeat_ms: 0\nallow_remote: [0]\nlogin: x\nbogus: 1\n",
                    ["'poll_ms' in file values.yaml is -2.0; it must be > 0",
                     "'heartbeat_ms' in file values.yaml is 0; it must be >= 1",
                     "'allow_remote' in file values.yaml has value [0], which is not true or "
                     "false",
                     "'login' in file values.yaml has value 'x', which is not a whole number",
                     "unknown bridge setting 'bogus' in file values.yaml"]),
    "list.yaml": ("- EURUSD\n", ["expected a mapping of settings"]),
}


@pytest.mark.parametrize("name", sorted(BRIDGE_FILE_MISTAKES))
def test_bridge_config_mistakes_are_all_reported_with_exit_2(here, name):
    text, expected = BRIDGE_FILE_MISTAKES[name]
    (here / name).write_text(text)
    result = invoke("bridge", "--fake", "--config", name, "--duration", "1")
    assert result.exit_code == 2, result.output
    for fragment in expected:
        assert fragment in said(result), result.output


def test_a_bridge_setting_from_the_environment_is_type_checked(here):
    result = invoke("bridge", "--fake", "--duration", "1",
                    env={"FLOWCHAIN_BRIDGE_ALLOW_REMOTE": "maybe",
                         "FLOWCHAIN_BRIDGE_HEARTBEAT_MS": "0"})
    assert result.exit_code == 2, result.output
    assert "'allow_remote' in environment has value 'maybe'" in said(result)
    assert "'heartbeat_ms' in environment is 0" in said(result)


@pytest.mark.parametrize("rate", ["-5", "0", "nan"])
def test_a_fake_rate_that_is_not_positive_is_refused(here, rate):
    result = invoke("bridge", "--fake", "--rate", rate, "--duration", "1")
    assert result.exit_code == 2, result.output
    assert "--rate" in said(result) and f"must be a positive number of ticks per second, not {rate}" in said(result)


@pytest.fixture
def keys_dir(here):
    assert invoke("keys", "generate", "k").exit_code == 0
    return here / "k"


LOCAL = ("--pub", "tcp://127.0.0.1:0", "--router", "tcp://127.0.0.1:0", "--duration", "1")


@pytest.mark.parametrize("secret, authorized, expected", [
    ("k/bridge.key_secret", "k/nope", "authorized_dir k/nope: no such folder"),
    ("k/bridge.key", "k/authorized", "k/bridge.key holds no secret key: pass the *.key_secret"),
    ("k/missing", "k/authorized", "secret_key k/missing: cannot read it"),
])
def test_bridge_key_mistakes_are_refused_before_any_socket(keys_dir, secret, authorized,
                                                           expected):
    result = invoke("bridge", "--fake", "--secret-key", secret, "--authorized-dir", authorized,
                    *LOCAL)
    assert result.exit_code == 2, result.output
    assert expected in said(result)


def test_a_bridge_secret_key_without_authorized_dir_is_refused(keys_dir):
    result = invoke("bridge", "--fake", "--secret-key", "k/bridge.key_secret", *LOCAL)
    assert result.exit_code == 2, result.output
    assert "without authorized_dir" in said(result)


@pytest.mark.parametrize("which", ["--pub", "--router"])
def test_a_bridge_port_in_use_is_a_message_and_exit_2(here, which):
    ctx = zmq.Context.instance()
    holder = ctx.socket(zmq.PUB)
    try:
        port = holder.bind_to_random_port("tcp://127.0.0.1")
        other = "--router" if which == "--pub" else "--pub"
        result = invoke("bridge", "--fake", which, f"tcp://127.0.0.1:{port}", other,
                        "tcp://127.0.0.1:0", "--duration", "1")
    finally:
        holder.close(0)
    assert result.exit_code == 2, result.output
    assert f"cannot bind tcp://127.0.0.1:{port}: Address already in use" in said(result)
    assert "pick free endpoints with --pub/--router" in said(result)


def test_a_symbol_the_terminal_lacks_stops_the_bridge_naming_it(here):
    result = invoke("bridge", "--fake", "-s", "EURUSD", "-s", "NOSUCH", *LOCAL)
    assert result.exit_code == 3, result.output
    assert "the terminal does not know symbol 'NOSUCH'" in said(result)


# -- keys and report -------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["afile/keys", "afile/deeper/keys"])
def test_keys_generate_into_an_unwritable_place_exits_2(here, where):
    (here / "afile").write_text("not a folder")
    result = invoke("keys", "generate", where)
    assert result.exit_code == 2, result.output
    assert f"cannot write the keys into {where}" in said(result)
    assert "pick a folder you can write to" in said(result)


@pytest.fixture
def history_db(here):
    from recorded_history import history

    return history(here)


def test_report_db_that_is_a_text_file_exits_2(here):
    (here / "notes.db").write_text("a: 1\n")
    result = invoke("report", "--db", "notes.db", "--out", "r.html")
    assert result.exit_code == 2, result.output
    assert "--db notes.db: cannot open database 'notes.db': file is not a database" in said(result)
    assert not (here / "r.html").exists()


def test_report_out_into_a_missing_directory_exits_2_before_reading(here, history_db):
    result = invoke("report", "--db", str(history_db), "--out", "nope/r.html")
    assert result.exit_code == 2, result.output
    assert "the directory nope does not exist" in said(result)


# -- replay files ----------------------------------------------------------------------------
def test_replay_time_beyond_int64_is_a_counted_reject_naming_the_line(tmp_path):
    from flowchain.feeds.replay import ReplayFeed

    path = tmp_path / "ticks.csv"
    path.write_text("symbol,time_msc,bid,ask\nEURUSD,99999999999999999999,1.1,1.2\n"
                    "EURUSD,1700000000000,1.1,1.2\n,1700000000001,1.1,1.2\n")
    feed = ReplayFeed(path)
    assert list(feed.symbols) == ["EURUSD"] and feed.total == 1
    assert dict(feed.stats.rejects) == {"bad_timestamp": 1, "unknown_symbol": 1}
    examples = " ".join(feed.stats.reject_examples)
    assert f"{path}:2" in examples and "beyond 2^63-1" in examples
    assert f"{path}:4" in examples and "the symbol column is empty" in examples


def test_a_replay_symbol_column_empty_throughout_stops_the_node_with_the_fix(here):
    (here / "ticks.csv").write_text("symbol,time_msc,bid,ask\n,1700000000000,1.1,1.2\n")
    result = invoke("node", "--feed", "replay:ticks.csv", "--no-dashboard", "--db", "n.db")
    assert result.exit_code == 3, result.output
    assert "the symbol column holds no symbol; fill it in" in said(result)


# -- the node's start ------------------------------------------------------------------------
def test_a_dashboard_port_in_use_is_found_before_the_slow_start(here):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = invoke("node", "--dashboard", f"127.0.0.1:{port}", "--duration", "1")
    assert result.exit_code == 3, result.output
    assert f"dashboard 127.0.0.1:{port}" in said(result) and "Address already in use" in said(
        result) and "--no-dashboard" in said(result)
    assert "compiling" not in said(result)
    assert not (here / "flowchain.db").exists()  # found before anything else was opened


def test_a_node_db_that_is_not_a_database_is_found_before_the_slow_start(here):
    (here / "notes.db").write_text("a: 1\n" * 100)
    result = invoke("node", "--db", "notes.db", "--no-dashboard", "--duration", "1")
    assert result.exit_code == 3, result.output
    assert "database 'notes.db'" in said(result) and "file is not a database" in said(result)


def test_one_chain_in_two_of_the_authors_files_is_refused_naming_both(here):
    text = TRADING_NODE_YAML.read_text()
    (here / "base.yaml").write_text(text)
    (here / "mine.yaml").write_text(text)
    (here / "node.toml").write_text('[node]\nchains = "base.yaml"\n[chains]\nfile = "mine.yaml"\n'
                                    '[dashboard]\nenabled = false\n')
    result = invoke("node", "-c", "node.toml", "--db", "n.db", "--duration", "1")
    assert result.exit_code == 3, result.output
    line = next(d.line for d in load_chains(text) if d.name == "AI_Decision_Chain")
    assert (f"mine.yaml:{line}: chain 'AI_Decision_Chain': the chain is also defined at "
            f"base.yaml:{line}; a chains file replaces only bundled chains") in said(result)


# -- the monitor thread ----------------------------------------------------------------------
def test_the_monitor_refuses_a_period_no_timed_wait_can_hold():
    from flowchain.observe.monitor import Monitor
    from flowchain.periodic import PeriodicThread
    from flowchain.registry import ChainRegistry

    with pytest.raises(ValueError, match="interval_s=1e"):
        Monitor(ChainRegistry(), interval_s=1e300)
    with pytest.raises(ValueError, match="at most"):
        PeriodicThread(lambda: None, float("inf"), "t")


def test_a_monitor_whose_poll_raises_logs_it_and_keeps_monitoring(caplog):
    from flowchain.observe.monitor import Monitor
    from flowchain.registry import ChainRegistry

    class Broken(ChainRegistry):
        def built_runners(self):
            raise RuntimeError("the registry is broken")

    monitor = Monitor(Broken(), interval_s=0.01).start()
    try:
        deadline = time.monotonic() + 10
        while monitor.counters["poll_errors"] < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert monitor.counters["poll_errors"] >= 3  # it went on polling after the first
        assert any(t.name == "flowchain-monitor" for t in threading.enumerate())
    finally:
        monitor.stop()
    assert "monitor poll failed" in caplog.text and "the registry is broken" in caplog.text


def test_a_periodic_thread_whose_loop_dies_says_so_loudly(caplog):
    from flowchain.periodic import PeriodicThread

    thread = PeriodicThread(lambda: None, 0.01, "flowchain-test-periodic")
    thread.interval_s = 1e300  # what a wait cannot hold: the loop itself raises
    thread.start()
    deadline = time.monotonic() + 10
    while thread.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not thread.running and thread.errors == 1
    assert "flowchain-test-periodic stopped: its loop raised" in caplog.text


# -- status at 80 columns --------------------------------------------------------------------
def test_status_fits_80_columns_and_keeps_every_name(here):
    from rich.console import Console

    from flowchain.cli.status import print_status
    from flowchain.components import ComponentRegistry
    from flowchain.feeds.base import FeedState, FeedStats
    from flowchain.observe.monitor import Monitor
    from flowchain.observe.web import DashboardState
    from flowchain.registry import ChainRegistry

    components = ComponentRegistry()
    for name in ("DataBridge", "DataValidator", "DataProcessor", "DatabaseService",
                 "FeatureEngine", "MultiAgentOrchestrator", "ConsensusEngine", "TradingEngine"):
        components.register(name, lambda x: x)
    registry = ChainRegistry(components)
    ids = registry.register_file(TRADING_NODE_YAML)
    for chain_id in ids:
        for i in range(1500):
            registry.runner(chain_id).run(i)

    class Feed:
        stats, state = FeedStats(), FeedState()

    Feed.stats.received = 1_234_567
    monitor = Monitor(registry)
    monitor.poll()
    snap = DashboardState(registry, monitor, {"simulator": Feed}).snapshot()
    console = Console(width=80, record=True, color_system=None)
    print_status(snap, "http://127.0.0.1:8750", console)
    text = console.export_text()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80, text
    for definition in map(registry.get_chain, ids):
        assert definition.name in text
        for step in definition.steps:
            assert f"  {step.name}" in text, (step.name, text)
    assert "1,500" in text and "1,234,567" in text and "…" not in text


# -- chain loading is linear -----------------------------------------------------------------
def _chains_text(n: int) -> str:
    return "".join(
        f"chain_{i}:\n  description: \"chain {i} of a large file\"\n  steps:\n" + "".join(
            f"    - name: step_{j}\n      component: Component{j}\n      input: \"T{j}\"\n"
            f"      output: \"T{j + 1}\"\n      expected_duration: {j + 1}.5\n"
            f"      description: \"step {j} of chain {i}, which does its part\"\n"
            for j in range(6))
        for i in range(n))


def test_a_10mb_chain_file_loads_within_a_small_multiple_of_libyaml_parsing_it():
    text = _chains_text(10_000)
    assert len(text) >= 10_000_000
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    started = time.perf_counter()
    events = sum(1 for _ in yaml.parse(text, Loader=loader))
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    chains = load_chains(text)
    elapsed = time.perf_counter() - started
    assert events > 900_000
    assert len(chains) == 10_000 and chains[-1].steps[-1].expected_duration_ms == 6.5
    # one pass over the same events, validating as it goes: measured 5-8x the bare parse;
    # a loader quadratic in the chains (the 300 s this file once took) is hundreds of times
    assert elapsed < 20 * baseline + 2.0, (baseline, elapsed)


def test_run_input_nested_too_deeply_exits_2(here):
    result = invoke("run", str(TRADING_NODE_YAML), "AI_Decision_Chain", "--input",
                    "[" * 100_000 + "]" * 100_000)
    assert result.exit_code == 2, result.output
    assert "--input is nested too deeply to read; flatten the JSON" in said(result)


def test_help_paragraphs_are_not_broken_where_the_source_was(here):
    result = invoke("--help", env={"COLUMNS": "80"})
    assert result.exit_code == 0
    lines = [line.strip("│ ") for line in result.output.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("node "))
    end = next(i for i, line in enumerate(lines) if i > start and re.match(r"[a-z]+  ", line))
    shown = [line.removeprefix("node").strip() for line in lines[start:end]]
    # a paragraph wrapped once, at the width: every line but the last is nearly full
    assert all(len(line) > 55 for line in shown[:-1]), shown
    assert "chain (every tick) and the MT5 -> database chain" in " ".join(shown)


def test_a_slow_start_says_it_is_compiling(here, monkeypatch):
    import flowchain.node

    monkeypatch.setattr(flowchain.node, "COMPILING_NOTICE_S", 0.0)
    (here / "ticks.csv").write_text("time_msc,bid,ask\n1700000000000,1.1,1.1002\n")
    result = invoke("node", "--feed", "replay:ticks.csv", "--no-dashboard", "--db", "n.db",
                    "--json")
    assert result.exit_code == 0, result.output
    assert "[node] compiling the numeric kernels (first run only" in result.output

"""`flowchain bridge --fake` and `flowchain keys generate` from the command line."""
import json
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

import flowchain.cli  # noqa: F401  (the lead's command modules)
import flowchain.cli.bridge  # noqa: F401  (registers `bridge`)
import flowchain.cli.keys  # noqa: F401  (registers `keys`)
from flowchain.cli.app import app


def test_keys_generate_then_refuse_overwrite(tmp_path):
    runner = CliRunner()
    first = runner.invoke(app, ["keys", "generate", str(tmp_path / "k"), "--json"])
    assert first.exit_code == 0, first.output
    paths = json.loads(first.stdout)
    assert set(paths) == {"bridge_public", "bridge_secret", "node_public", "node_secret", "authorized"}
    again = runner.invoke(app, ["keys", "generate", str(tmp_path / "k")])
    assert again.exit_code == 1 and "already holds" in again.output


def test_bridge_fake_runs_and_prints_counters():
    result = CliRunner().invoke(app, ["bridge", "--fake", "--pub", "tcp://127.0.0.1:*", "--router",
                                      "tcp://127.0.0.1:*", "--rate", "200", "--duration", "1.5", "--json",
                                      "-s", "EURUSD", "-s", "XAUUSD"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    assert stats["ticks_published"] > 0 and set(stats["last_seq"]) == {"EURUSD", "XAUUSD"}
    assert stats["state"] == 7 and sum(stats["rejects"].values()) == 0


def test_bridge_refuses_remote_bind_without_keys():
    result = CliRunner().invoke(app, ["bridge", "--fake", "--pub", "tcp://0.0.0.0:7777"])
    assert result.exit_code == 2 and "--allow-remote" in result.output


def _run_bridge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowchain.cli", "bridge", *args], capture_output=True,
                          text=True, timeout=timeout)


LOCAL = ("--pub", "tcp://127.0.0.1:*", "--router", "tcp://127.0.0.1:*")


def test_fake_streams_the_symbols_a_node_expects_by_default():
    from flowchain_bridge.config import DEFAULT_SYMBOLS

    from flowchain.config import NodeSection

    assert list(DEFAULT_SYMBOLS) == list(NodeSection().symbols)
    result = CliRunner().invoke(app, ["bridge", "--fake", *LOCAL, "--rate", "200", "--duration", "1", "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(stats["last_seq"]) == list(DEFAULT_SYMBOLS) and all(stats["last_seq"].values())


@pytest.mark.parametrize("symbol", ["", "X" * 40, "EUR\0USD"])
def test_a_symbol_that_cannot_be_streamed_is_refused_at_start_with_exit_2(symbol):
    result = CliRunner().invoke(app, ["bridge", "--fake", *LOCAL, "-s", "EURUSD", "-s", symbol])
    assert result.exit_code == 2, result.output
    assert "cannot be streamed" in result.output and "1..32 UTF-8 bytes" in result.output


def test_a_symbol_the_terminal_does_not_know_stops_the_bridge_with_exit_3():
    started = time.monotonic()
    proc = _run_bridge("--fake", *LOCAL, "-s", "EURUSD", "-s", "NOSUCH", "--json")
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - started < 60
    assert "does not know symbol 'NOSUCH'" in proc.stderr and "MT5 error -4" in proc.stderr
    assert json.loads(proc.stdout)["failure"].startswith("the terminal does not know symbol")


def test_a_refused_login_is_logged_retried_with_backoff_then_exit_3(tmp_path):
    config = tmp_path / "bridge.json"
    config.write_text(json.dumps({"login": 123, "password": "wrong", "connect_attempts": 3}))
    started = time.monotonic()
    proc = _run_bridge("--fake", *LOCAL, "--config", str(config), "--json")
    took = time.monotonic() - started
    assert proc.returncode == 3, proc.stderr
    for attempt in (1, 2):
        assert f"terminal connection attempt {attempt}/3 failed: initialize (login 123) gave MT5 error -6 " \
               "'Terminal: Authorization failed'" in proc.stderr
    assert "after 3 attempts in a row" in proc.stderr
    assert took >= 1.5  # 0.5 s, then 1 s between the three attempts
    stats = json.loads(proc.stdout)
    assert stats["terminal"] == "login_failed" and stats["last_error"][0] == -6
    assert stats["ticks_published"] == 0 and stats["heartbeats_published"] > 0  # nodes heard it


def test_sigterm_stops_the_bridge_cleanly_with_its_counters():
    proc = subprocess.Popen([sys.executable, "-m", "flowchain.cli", "bridge", "--fake", *LOCAL, "--rate", "200",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        while "bridge session" not in line and line:
            line = proc.stderr.readline()
        time.sleep(1.0)  # let it publish
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    stats = json.loads(out)
    assert stats["ticks_published"] > 0 and stats["failure"] is None

"""`flowchain bridge --fake` and `flowchain keys generate` from the command line."""
import json

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

"""The bridge as a distribution of its own (``bridge/``, ``flowchain-bridge``): pure Python.

A trader's Windows machine has Python and MetaTrader 5, not a C compiler. These tests show that
the bridge's import path and its command never load the compiled engine, numba or hdrhistogram
(``python -X importtime``), and that the bridge alone installs into a fresh venv with the C
compiler disabled, pulls only numpy, pyzmq and PyYAML, and streams ticks to the node's feed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zmq
from flowchain_bridge.ticks import tick_faults
from foreign_env import foreign_env
from pip import __version__ as pip_version

from flowchain.feeds.subscriber import ZmqFeed

REPO = Path(__file__).resolve().parents[1]
BRIDGE_SRC = REPO / "bridge"
# Top-level modules (or the engine's own) that must not load on the bridge's side.
HEAVY = {"flowchain._engine", "flowchain._native", "numba", "llvmlite", "hdrh", "Cython", "uvloop"}
CLI_LIBRARIES = {"typer", "click", "rich"}
LOCAL = ("--pub", "tcp://127.0.0.1:*", "--router", "tcp://127.0.0.1:*")


def imported(args: list[str], timeout: float = 120) -> tuple[set[str], subprocess.CompletedProcess]:
    """Run ``python -X importtime *args``; return the modules it imported and the process."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    modules.discard("imported package")  # the header line
    return modules, proc


def heavy_in(modules: set[str]) -> set[str]:
    return {m for m in modules if m in HEAVY or m.split(".")[0] in HEAVY}


def test_the_package_root_the_wire_protocol_and_the_bridge_import_without_the_engine():
    modules, proc = imported(["-c", "import flowchain, flowchain_bridge, flowchain_bridge.wire, "
                                    "flowchain_bridge.server, flowchain_bridge.client, flowchain_bridge.cli, "
                                    "flowchain_bridge.fake_mt5, json, sys; flowchain_bridge.Bridge; "
                                    "flowchain.__version__; print(json.dumps(sorted(sys.modules)))"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules |= set(json.loads(proc.stdout))  # what importtime reports, and what is loaded at the end
    assert {"flowchain", "flowchain_bridge.wire", "flowchain_bridge.server", "zmq"} <= modules
    assert heavy_in(modules) == set(), f"the bridge's import path loaded {sorted(heavy_in(modules))}"
    assert not modules & CLI_LIBRARIES


def test_the_first_engine_backed_name_loads_the_engine():
    # the measure above can see the engine: the lazy root loads it on first use of a public name
    modules, proc = imported(["-c", "import flowchain; flowchain.ChainRegistry"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "flowchain._engine" in modules and "flowchain.registry" in modules


@pytest.mark.parametrize("command", [
    ["-m", "flowchain_bridge.cli"],
    ["-c", "import sys; from flowchain.console import main; sys.argv[1:1] = ['bridge']; main()"],
], ids=["flowchain-bridge", "flowchain bridge"])
def test_the_bridge_command_streams_without_the_engine_or_the_cli_libraries(command):
    modules, proc = imported([*command, "--fake", *LOCAL, "--rate", "200", "--duration", "1", "--json",
                              "-s", "EURUSD"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    assert stats["ticks_published"] > 0 and stats["failure"] is None
    assert heavy_in(modules) == set(), f"the bridge command loaded {sorted(heavy_in(modules))}"
    assert not modules & CLI_LIBRARIES, sorted(modules & CLI_LIBRARIES)


@pytest.mark.parametrize("args, says", [
    (["--rate", "-5"], "--rate: must be a positive number"),
    (["--duration", "nan"], "--duration: must be a finite number"),
    (["--connect-attempts", "-1"], "--connect-attempts: must be 0 or more"),
    (["--config", "no/such/bridge.yaml"], "no/such/bridge.yaml does not exist"),
])
def test_a_bad_option_exits_2_naming_it(args, says):
    from flowchain_bridge.cli import main

    proc = subprocess.run([sys.executable, "-m", "flowchain_bridge.cli", "--fake", *LOCAL, *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr
    assert main(["--fake", *args]) == 2  # the same in-process (what `flowchain bridge` calls)


# -- the bridge alone, in a fresh venv, without a C compiler -----------------------------------------

_NO_INDEX = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
             "Failed to establish a new connection", "No route to host")


def pip(*args: str, env: dict[str, str], python: str = sys.executable) -> subprocess.CompletedProcess:
    """Run ``python``'s pip; skip the test only when no package index can be reached."""
    proc = subprocess.run([python, "-m", "pip", *args], capture_output=True, text=True,
                          timeout=600, env=env)
    if proc.returncode != 0 and any(sign in proc.stdout + proc.stderr for sign in _NO_INDEX):
        pytest.skip("no package index is reachable from this machine, so a fresh venv cannot get "
                    f"numpy/pyzmq/PyYAML: pip {args[0]} said {(proc.stderr or proc.stdout)[-300:]!r}")
    assert proc.returncode == 0, f"pip {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def venv_bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / (name + (".exe" if os.name == "nt" else ""))


@pytest.fixture(scope="module")
def bridge_venv(tmp_path_factory) -> Path:
    """A fresh venv holding only ``flowchain-bridge`` (from a wheel built here with CC=false)."""
    root = tmp_path_factory.mktemp("bridge-dist")
    src = root / "src"
    shutil.copytree(BRIDGE_SRC, src, ignore=shutil.ignore_patterns("*.egg-info", "build", "dist",
                                                                    "__pycache__"))
    # nothing in the fresh venv is sanitized: it runs without a sanitized run's preload; no compiler
    env = {**foreign_env(), "CC": "false", "CXX": "false", "LDSHARED": "false",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    pip("wheel", "-q", "--no-deps", "-w", str(root / "dist"), str(src), env=env)
    wheels = list((root / "dist").glob("*.whl"))
    assert len(wheels) == 1 and wheels[0].name.endswith("-py3-none-any.whl"), wheels
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
    assert not [n for n in names if n.endswith((".so", ".pyd", ".c"))], names
    assert {"flowchain_bridge/mt5_constants.json", "flowchain_bridge/py.typed",
            "flowchain_bridge/wire.py"} <= set(names)
    venv = root / "venv"
    # pip 22.3+ installs into another environment (--python): the venv then needs no pip of its own
    drives_others = tuple(int(part) for part in pip_version.split(".")[:2]) >= (22, 3)
    subprocess.run([sys.executable, "-m", "venv", *(["--without-pip"] if drives_others else []), str(venv)],
                   check=True, timeout=120, env=env)
    if drives_others:
        pip("--python", str(venv_bin(venv, "python")), "install", "-q", str(wheels[0]), env=env)
    else:
        pip("install", "-q", str(wheels[0]), env=env, python=str(venv_bin(venv, "python")))
    return venv


def test_the_bridge_alone_installs_without_a_compiler_and_pulls_only_what_it_uses(bridge_venv):
    probe = ("import importlib.metadata as m, importlib.util as u, json, flowchain_bridge; print(json.dumps("
             "{'dists': sorted(d.metadata['Name'].lower().replace('_', '-') for d in m.distributions()), "
             "'where': flowchain_bridge.__file__, 'flowchain': u.find_spec('flowchain') is not None}))")
    proc = subprocess.run([str(venv_bin(bridge_venv, "python")), "-c", probe], capture_output=True, text=True,
                          timeout=60, cwd=bridge_venv, env=foreign_env())
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    installers = {"pip", "setuptools"}  # a venv's own, when this pip cannot drive another venv
    assert set(found["dists"]) - installers == {"flowchain-bridge", "numpy", "pyyaml", "pyzmq"}, found["dists"]
    assert Path(found["where"]).is_relative_to(bridge_venv), found["where"]
    assert found["flowchain"] is False  # the main package (and its engine) is not there


async def test_the_installed_bridge_streams_ticks_to_the_nodes_feed(bridge_venv, ctx, eventually_async):
    symbols = ["EURUSD", "GBPUSD"]
    proc = subprocess.Popen([str(venv_bin(bridge_venv, "flowchain-bridge")), "--fake", *LOCAL, "--rate", "200",
                             "--json", *(a for s in symbols for a in ("-s", s))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=bridge_venv,
                            env=foreign_env())
    feed = None
    try:
        said = []
        for line in proc.stderr:  # the bridge logs its bound endpoints once its sockets are up
            said.append(line)
            started = re.search(r"PUB (\S+) ROUTER (\S+)", line)
            if started:
                break
        assert started, "".join(said)
        feed = ZmqFeed(started[1], symbols, started[2], context=ctx, backfill_timeout=2.0)
        await feed.start()
        await eventually_async(lambda: all(feed.ring(s).count >= 40 for s in symbols), timeout=30,
                               message="the node's feed never got 40 ticks a symbol from the bridge")
        for symbol in symbols:
            ring = feed.ring(symbol)
            seqs = ring.seq_window(ring.count)
            assert (np.diff(seqs) == 1).all(), f"{symbol}: seqs not consecutive: {seqs}"
            assert not tick_faults(ring.window(ring.count)).any()
        assert feed.stats.rejected == 0 and feed.stats.dropped == 0
        session = feed.session_id
    finally:
        if feed is not None:
            await feed.stop()
        proc.terminate()  # SIGTERM: the bridge stops cleanly and prints its counters
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    stats = json.loads(out)
    assert stats["session_id"] == session and stats["failure"] is None
    assert all(stats["last_seq"][s] >= 40 for s in symbols)


# -- keys made on each machine: only public keys cross ----------------------------------------------

def test_keys_made_on_each_machine_secure_the_link_with_only_public_keys_exchanged(tmp_path, ctx, eventually,
                                                                                     capsys):
    from flowchain_bridge import Bridge, BridgeConfig, FakeMetaTrader5, keys, wire
    from flowchain_bridge.cli import main

    windows, node = tmp_path / "windows", tmp_path / "node"
    assert main(["--generate-keys", str(windows), "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert Path(made["bridge_secret"]).name == "bridge.key_secret" and Path(made["authorized"]).is_dir()
    assert main(["--generate-keys", str(windows)]) == 1  # never overwrites a key
    assert "already holds bridge.key, bridge.key_secret" in capsys.readouterr().err
    node_keys = keys.generate(node)  # `flowchain keys generate` on the node
    shutil.copy(node_keys["node_public"], windows / "authorized")  # node.key -> the bridge
    shutil.copy(made["bridge_public"], node / "windows-bridge.key")  # bridge.key -> the node
    config = BridgeConfig(symbols=["EURUSD"], pub_endpoint="tcp://127.0.0.1:*",
                          router_endpoint="tcp://127.0.0.1:*", heartbeat_ms=50,
                          secret_key=made["bridge_secret"], authorized_dir=made["authorized"])

    def heard(server_public: Path, within_ms: int) -> wire.Heartbeat | None:
        sub = ctx.socket(zmq.SUB)
        try:
            keys.secure_client(sub, node_keys["node_secret"], server_public)
            sub.setsockopt(zmq.SUBSCRIBE, wire.heartbeat_topic("EURUSD"))
            sub.connect(running.pub_endpoint)
            return wire.decode_heartbeat(sub.recv_multipart()[1]) if sub.poll(within_ms) else None
        finally:
            sub.close(0)

    with Bridge(FakeMetaTrader5(seed=3), config) as running:
        beat = heard(node / "windows-bridge.key", 10_000)
        assert beat is not None and beat.session_id == running.session_id
        # the bridge pair the node made for itself is not this bridge's: no handshake, nothing heard
        assert heard(node_keys["bridge_public"], 500) is None


@pytest.mark.parametrize("keys_given, says", [
    (lambda d: ["--secret-key", str(d / "bridge.key_secret"), "--authorized-dir", str(d / "missing")],
     "missing: no such folder"),
    (lambda d: ["--secret-key", str(d / "bridge.key"), "--authorized-dir", str(d / "authorized")],
     "holds no secret key: pass the *.key_secret file"),
], ids=["missing authorized folder", "public key as the secret"])
def test_a_key_mistake_stops_the_bridge_with_exit_2_naming_the_file(tmp_path, keys_given, says):
    from flowchain_bridge.keys import generate_bridge_pair

    generate_bridge_pair(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "flowchain_bridge.cli", "--fake", *LOCAL, "--duration", "5",
                           *keys_given(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_endpoint_in_use_stops_the_bridge_with_exit_2_naming_it():
    holder = zmq.Context.instance().socket(zmq.PUB)
    try:
        port = holder.bind_to_random_port("tcp://127.0.0.1")
        proc = subprocess.run([sys.executable, "-m", "flowchain_bridge.cli", "--fake", "--pub",
                               f"tcp://127.0.0.1:{port}", "--router", "tcp://127.0.0.1:*", "--duration", "5"],
                              capture_output=True, text=True, timeout=60)
    finally:
        holder.close(0)
    assert proc.returncode == 2, proc.stderr
    assert f"tcp://127.0.0.1:{port}" in proc.stderr and "Address already in use" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name, text, says", [
    ("bridge.yaml", "login: [1,\n", ":2:1: not valid YAML: did not find expected node content"),
    ("bridge.json", '{"login": 1,', ":1:13: not valid JSON: Expecting property name"),
])
def test_a_config_file_that_does_not_parse_exits_2_naming_it(tmp_path, name, text, says, capsys):
    from flowchain_bridge.cli import main

    config = tmp_path / name
    config.write_text(text, encoding="utf-8")
    assert main(["--fake", *LOCAL, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"bridge config {config}{says}" in err

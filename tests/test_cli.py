"""The `flowchain` command: chains validate/list/show, run, bench overhead."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowchain.chains import TRADING_NODE_YAML
from flowchain.cli import app

DATA = Path(__file__).parent / "data"
runner = CliRunner()

COMPONENTS = '''
import flowchain

@flowchain.component("cli_test.Double")
def double(x):
    return x * 2

@flowchain.component("cli_test.Boom")
def boom(x):
    raise ValueError(f"cannot take {x}")
'''

CHAINS = '''
Good:
  steps:
    - {name: a, component: cli_test.Double, input: n, output: n2, expected_duration: 1}
    - {name: b, component: cli_test.Double, input: n2, output: n4, expected_duration: 0.5}
Bad:
  steps:
    - {name: a, component: cli_test.Double, input: n, output: n2, expected_duration: 1}
    - {name: b, component: cli_test.Boom, input: n2, output: n4, expected_duration: 1}
'''


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "cli_test_components.py").write_text(COMPONENTS)
    (tmp_path / "chains.yaml").write_text(CHAINS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def invoke(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_every_command_is_attached():
    def names(group):
        return {c.name for c in group.registered_commands} | {g.name for g in group.registered_groups}

    from flowchain.cli.app import bench_app, chains_app
    assert names(app) == {"run", "replay", "bridge", "node", "status", "report", "keys", "chains", "bench",
                          "tenants", "analytics", "hub", "optimize"}
    assert names(bench_app) == {"overhead", "wire", "node", "observe", "tenancy", "profile", "hub"}
    assert names(chains_app) == {"validate", "list", "show", "diagram"}


def test_validate_list_show(workdir):
    result = invoke("chains", "validate", "chains.yaml", "--import", "cli_test_components")
    assert result.exit_code == 0, result.output
    assert "2 valid chain(s)" in result.output
    result = invoke("chains", "list", "chains.yaml", "-i", "cli_test_components")
    assert result.exit_code == 0 and "Good@" in result.output and "Bad@" in result.output
    result = invoke("chains", "show", "chains.yaml", "Good", "-i", "cli_test_components")
    assert result.exit_code == 0
    assert "cli_test.Double" in result.output and "version 1" in result.output
    assert "n2" in result.output and "0.5" in result.output
    result = invoke("chains", "show", "chains.yaml", "Nope", "-i", "cli_test_components")
    assert result.exit_code == 1 and "has no chain 'Nope'" in result.output


def test_validate_reports_unknown_components_and_broken_files(workdir):
    (workdir / "ghost.yaml").write_text(
        "G:\n  steps:\n    - {name: a, component: cli_test.Ghost, input: n, output: m,"
        " expected_duration: 1}\n")
    result = invoke("chains", "validate", "ghost.yaml")
    assert result.exit_code == 1
    assert "ghost.yaml:3: chain 'G' step 'a': unknown component 'cli_test.Ghost'" in result.output
    (workdir / "broken.yaml").write_text("C:\n  steps: [\n")
    result = invoke("chains", "validate", "broken.yaml")
    assert result.exit_code == 1 and "broken.yaml:" in result.output and "malformed YAML" in result.output
    result = invoke("chains", "validate", "chains.yaml", "-i", "no_such_module_xyz")
    assert result.exit_code == 2 and "cannot import component module 'no_such_module_xyz'" in result.output


def test_run_success_and_failure(workdir):
    result = invoke("run", "chains.yaml", "Good", "--input", "3", "-i", "cli_test_components")
    assert result.exit_code == 0 and "succeeded" in result.output
    result = invoke("run", "chains.yaml", "Good", "--input", "3", "-i", "cli_test_components",
                    "--json")
    record = json.loads(result.output)
    assert record["status"] == "succeeded" and [s["name"] for s in record["steps"]] == ["a", "b"]
    result = invoke("run", "chains.yaml", "Bad", "--input", "3", "-i", "cli_test_components")
    assert result.exit_code == 1
    assert "failed at step 'b' (cli_test.Boom): ValueError: cannot take 6" in result.output
    assert "input: 6" in result.output and "Traceback" in result.output
    result = invoke("run", "chains.yaml", "Good", "--input", "{bad", "-i", "cli_test_components")
    assert result.exit_code == 2 and "--input is not valid JSON" in result.output


def test_console_script_bench_overhead_json():
    proc = subprocess.run([sys.executable, "-m", "flowchain.cli", "bench", "overhead", "--json",
                           "--repetitions", "5", "--executions", "5000"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in ("floor_ns", "naive_ns", "otel_ns", "prom_hdr_ns", "flowchain_ns"):
        assert result[key] > 0
    assert set(result["step_latency"]) == {"step_0", "step_1", "step_2", "step_3"}
    assert all(s["p50_ns"] <= s["p99_ns"] <= s["p999_ns"] for s in result["step_latency"].values())
    assert result["versions"]["cython"] and result["cpu"]


def test_run_prints_the_output_and_json_includes_it(workdir):
    result = invoke("run", "chains.yaml", "Good", "--input", "3", "-i", "cli_test_components")
    assert result.exit_code == 0
    assert result.output.rstrip().endswith("output:\n12")
    result = invoke("run", "chains.yaml", "Good", "--input", '"ab"', "-i",
                    "cli_test_components", "--json")
    record = json.loads(result.output)
    assert record["output"] == "abababab" and record["runs"] == 1
    result = invoke("run", "chains.yaml", "Bad", "--input", "3", "-i", "cli_test_components",
                    "--json")
    assert result.exit_code == 1 and json.loads(result.output)["output"] is None


CHAIN_FILE_MISTAKES = {
    "latin1.yaml": (b"G:\n  description: caf\xe9\n  steps: []\n",
                    "latin1.yaml:2: the file is not UTF-8 text: byte 0xe9"),
    "deep.yaml": (b"G: " + b"[" * 20_000 + b"]" * 20_000 + b"\n", "nested too deeply"),
    "python_tag.yaml": (b"G:\n  steps: !!python/object/apply:os.system [echo hi]\n",
                        "python_tag.yaml:2: the tag 'tag:yaml.org,2002:python/object/apply:"
                        "os.system' is not allowed"),
    "bad_float.yaml": (b"G:\n  steps:\n    - {name: a, component: cli_test.Double, input: n,"
                       b" output: m, expected_duration: !!float soon}\n",
                       "bad_float.yaml:3: 'soon' is not a valid float"),
    "dup_key.yaml": (b"G:\n  steps:\n    - name: a\n      component: cli_test.Double\n"
                     b"      input: n\n      output: m\n      input: q\n"
                     b"      expected_duration: 1\n",
                     "dup_key.yaml:7: chain 'G' step 'a': duplicate key 'input' in the step "
                     "(first at line 5)"),
    "dup_chain.yaml": (b"G:\n  steps:\n    - {name: a, component: cli_test.Double, input: n,"
                       b" output: m, expected_duration: 1}\nG:\n  steps: []\n",
                       "dup_chain.yaml:4: chain 'G': the chain is defined twice in this file "
                       "(first at line 1)"),
}


@pytest.mark.parametrize("name", sorted(CHAIN_FILE_MISTAKES))
def test_chain_file_mistakes_are_messages_and_nonzero_exits(workdir, name):
    data, expected = CHAIN_FILE_MISTAKES[name]
    (workdir / name).write_bytes(data)
    for args in (("chains", "validate", name), ("chains", "show", name, "G"),
                 ("run", name, "G", "--input", "1")):
        result = invoke(*args, "-i", "cli_test_components")  # raises if anything escapes
        assert result.exit_code == 1, (args, result.output)
        assert expected in " ".join(result.output.split()), result.output
        assert "Traceback" not in result.output


def test_run_input_deeply_nested_or_invalid_json_exits_2(workdir):
    deep = "[" * 100_000 + "]" * 100_000
    result = invoke("run", "chains.yaml", "Good", "--input", deep, "-i", "cli_test_components")
    assert result.exit_code == 2 and "--input is nested too deeply" in result.output
    result = invoke("run", "chains.yaml", "Good", "--input", '{"a": 1,}', "-i",
                    "cli_test_components")
    assert result.exit_code == 2
    assert "--input is not valid JSON: Expecting property name enclosed in double quotes at " \
           "line 1 column 9" in " ".join(result.output.split())


def test_names_that_look_like_console_markup_are_printed_as_written(workdir):
    (workdir / "markup_components.py").write_text(
        "import flowchain\nflowchain.component('[/c]')(lambda x: x)\n")
    (workdir / "markup.yaml").write_text(
        'G:\n  description: "[/z] desc"\n  steps:\n'
        '    - {name: "[bold]x[/y]", component: "[/c]", input: "[/a]", output: b,'
        ' expected_duration: 1}\n')
    for args in (("chains", "validate", "markup.yaml"), ("chains", "list", "markup.yaml"),
                 ("chains", "show", "markup.yaml", "G"), ("run", "markup.yaml", "G")):
        result = invoke(*args, "-i", "markup_components")
        assert result.exit_code == 0, (args, result.output)
    assert "[bold]x[/y]" in invoke("chains", "show", "markup.yaml", "G", "-i",
                                   "markup_components").output
    result = invoke("run", "markup.yaml", "[/nope]", "-i", "markup_components")
    assert result.exit_code == 1 and "has no chain '[/nope]'" in result.output
    (workdir / "bad_markup.yaml").write_text(
        'G:\n  steps:\n    - {name: "[bold]x[/y]", component: A, input: a, output: b,'
        ' expected_duration: 0}\n')
    result = invoke("chains", "diagram", "bad_markup.yaml", "G")
    assert result.exit_code == 1 and "step '[bold]x[/y]'" in result.output


def test_run_awaits_async_steps_and_shows_their_output(workdir):
    (workdir / "async_components.py").write_text(
        "import asyncio\nimport flowchain\n\n"
        "@flowchain.component('cli_test.Later')\n"
        "async def later(x):\n    await asyncio.sleep(0)\n    return {'got': x, 'items': [x] * 3}\n")
    (workdir / "async.yaml").write_text(
        "A:\n  steps:\n    - {name: a, component: cli_test.Double, input: n, output: n,"
        " expected_duration: 1}\n    - {name: b, component: cli_test.Later, input: n, output: m,"
        " expected_duration: 1}\n")
    result = invoke("run", "async.yaml", "A", "--input", "2", "-i", "cli_test_components",
                    "-i", "async_components", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["output"] == {"got": 4, "items": [4, 4, 4]}


@pytest.mark.parametrize("ticks, fragment", [
    ('{"symbol": "EURUSD", "ticks": []}', "'ticks' is empty"),
    ('{"symbol": "", "ticks": [{"time_msc": 1, "bid": 1, "ask": 1}]}', "'symbol' must be"),
    ('{"ticks": [{"time_msc": 1, "bid": NaN, "ask": 1}]}', "ticks[0].bid must be a finite number"),
    ('{"ticks": [{"time_msc": 1e30, "bid": 1, "ask": 1}]}', "ticks[0].time_msc = 1e+30 does not fit"),
    ('{"ticks": [{"time_msc": 99999999999999999999, "bid": 1, "ask": 1}]}', "does not fit"),
    ('{"ticks": [{"time_msc": 1, "bid": 1, "ask": 1, "spread": 2}]}', "unknown field(s) ['spread']"),
    ('{"ticks": [[1, 2, 3]]}', "ticks[0] must be an object"),
])
def test_run_node_chain_input_mistakes_exit_2(workdir, ticks, fragment):
    from flowchain.chains import TRADING_NODE_YAML

    result = invoke("run", str(TRADING_NODE_YAML), "MT5_To_Database_Chain", "--input", ticks)
    assert result.exit_code == 2, result.output
    assert fragment in " ".join(result.output.split())


SHADOW = 'raise SystemExit("numba.py of the current directory was imported")\n'
USES_NUMBA = '''
import numba
import flowchain

@flowchain.component("cwd_test.Jit")
def jit(x):
    return x + int(hasattr(numba, "njit"))
'''


@pytest.mark.parametrize("launch", [["-m", "flowchain.cli"], ["-c", "from flowchain.cli import main; main()"]])
def test_a_module_in_the_current_directory_never_shadows_an_installed_one(tmp_path, launch):
    (tmp_path / "numba.py").write_text(SHADOW)
    (tmp_path / "chains.yaml").write_text(CHAINS)
    shutil.copy(TRADING_NODE_YAML, tmp_path / "trading_node.yaml")
    for args in (["chains", "validate", "trading_node.yaml"],  # imports the numba features
                 ["run", "trading_node.yaml", "MT5_To_Database_Chain", "--input", "null"]):
        proc = subprocess.run([sys.executable, *launch, *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert "current directory was imported" not in proc.stdout + proc.stderr, args
    # it ran as far as the input: the chain's first step takes ticks, not null (exit 2)
    assert proc.returncode == 2 and "RawTickBatch takes" in " ".join(proc.stderr.split())


def test_import_names_a_module_of_the_current_directory_and_nothing_else(tmp_path):
    (tmp_path / "numba.py").write_text(SHADOW)
    (tmp_path / "cwd_components.py").write_text(USES_NUMBA)
    (tmp_path / "jit.yaml").write_text(
        "Jit:\n  steps:\n    - {name: a, component: cwd_test.Jit, input: n, output: m, expected_duration: 1}\n")
    proc = subprocess.run([sys.executable, "-m", "flowchain.cli", "run", "jit.yaml", "Jit", "--input", "1",
                           "--import", "cwd_components", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # cwd_components came from the current directory; the numba it imports is the installed one
    # (the numba.py beside it would have exited the process)
    assert json.loads(proc.stdout)["status"] == "succeeded"

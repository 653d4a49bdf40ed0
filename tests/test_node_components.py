"""The node with an author's components and chains: [components] import / path, [chains] file,
--import / --chains, and the registry the node builds from them."""
from pathlib import Path

import pytest

import flowchain
from flowchain.chain import load_chains_file
from flowchain.chains import AI_DECISION_CHAIN, MT5_TO_DATABASE_CHAIN, TRADING_NODE_YAML
from flowchain.config import ConfigError, load_config
from flowchain.node_parts import NodeStartError, build_registry

AUDIT_MODULE = '''
import flowchain

@flowchain.component("node_components_test.Audit")
class Audit:
    def __call__(self, ctx):
        return ctx
'''


def _author_chains(tmp_path: Path, component: str = "node_components_test.Audit") -> Path:
    text = TRADING_NODE_YAML.read_text()
    start = text.index("  AI_Decision_Chain:")
    ai = text[start:].replace(
        '      - name: "multi_agent_analysis"',
        f'      - name: "audit"\n        component: "{component}"\n'
        '        input: "DecisionContext:features"\n        output: "DecisionContext:features"\n'
        '        expected_duration: 1\n\n      - name: "multi_agent_analysis"')
    path = tmp_path / "chains" / "mine.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text("Data_Flow_Chains:\n" + ai)
    return path


def test_components_and_chains_sections_resolve_against_the_config_file(tmp_path):
    config = tmp_path / "conf" / "node.toml"
    config.parent.mkdir()
    config.write_text('[components]\nimport = ["mine", "pkg.sub"]\npath = ["lib"]\n'
                      '[chains]\nfile = "../chains/mine.yaml"\n')
    cfg = load_config(config)
    assert cfg.components.imports == ("mine", "pkg.sub")
    assert cfg.components.path == (str(config.parent / "lib"),)
    assert cfg.chains.file == str(config.parent / "../chains/mine.yaml")
    # flags: --import adds to the file's list, --chains replaces the file as given
    cfg = load_config(config, {"imports": ["extra"], "chains": "other.yaml"})
    assert cfg.components.imports == ("mine", "pkg.sub", "extra")
    assert cfg.chains.file == "other.yaml"
    assert cfg.components.path == (str(config.parent / "lib"),)
    # no path: the config file's own directory is searched
    config.write_text('[components]\nimport = ["mine"]\n')
    assert load_config(config).components.path == (str(config.parent),)
    assert load_config(None, {"imports": ["a"]}).components.imports == ("a",)


@pytest.mark.parametrize("body, fragment", [
    ('[components]\nimport = ["my-components"]\n',
     "key 'components.import': import holds 'my-components', which is not a dotted module name"),
    ('[components]\nimport = "mine"\n', "key 'components.import'"),
    ('[components]\nimports = ["mine"]\n',
     "unknown key 'components.imports'; the known keys there are import, path"),
    ('[chains]\nfiles = "x.yaml"\n', "unknown key 'chains.files'; the known keys there are file"),
])
def test_bad_components_and_chains_sections_name_the_key(tmp_path, body, fragment):
    config = tmp_path / "node.toml"
    config.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert str(info.value).startswith(str(config)) and fragment in str(info.value)


def test_the_registry_puts_author_components_beside_the_configured_ones(tmp_path, monkeypatch):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "node_components_audit.py").write_text(AUDIT_MODULE)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    chains = _author_chains(tmp_path)
    config = tmp_path / "node.toml"
    config.write_text(f'[components]\nimport = ["node_components_audit"]\npath = ["lib"]\n'
                      f'[chains]\nfile = "{chains.relative_to(tmp_path)}"\n')
    class Features:
        def __call__(self, ctx):
            return ctx

    configured = {"FeatureEngine": Features()}
    for name in ("DataBridge", "DataValidator", "DataProcessor", "DatabaseService",
                 "MultiAgentOrchestrator", "ConsensusEngine", "TradingEngine"):
        configured[name] = lambda x: x
    registry = build_registry(load_config(config), configured)
    ai = registry.get_chain(AI_DECISION_CHAIN)
    assert ai.step_names[1] == "audit" and ai.source == str(chains)
    bundled = {c.name: c for c in load_chains_file(TRADING_NODE_YAML)}
    assert registry.get_chain(MT5_TO_DATABASE_CHAIN).chain_id == \
        bundled[MT5_TO_DATABASE_CHAIN].chain_id
    assert ai.chain_id != bundled[AI_DECISION_CHAIN].chain_id
    assert len(registry.versions(AI_DECISION_CHAIN)) == 1
    # the configured instance wins over the class the process-wide registry may hold
    assert registry.components.resolve("FeatureEngine").call is configured["FeatureEngine"]
    assert "node_components_test.Audit" in flowchain.components.default_components


def test_an_unknown_component_says_how_to_import_it(tmp_path):
    config = tmp_path / "node.toml"
    chains = _author_chains(tmp_path, "node_components_test.Missing")
    config.write_text(f'[chains]\nfile = "{chains}"\n')
    with pytest.raises(NodeStartError) as info:
        build_registry(load_config(config), {})
    text = str(info.value)
    assert f"{chains}:" in text and "unknown component 'node_components_test.Missing'" in text
    assert "flowchain node --import MODULE" in text and '[components] import = ["MODULE"]' in text


def test_a_chains_file_replacing_the_bundled_one_must_define_the_node_chains(tmp_path):
    only_ai = _author_chains(tmp_path, "FeatureEngine")
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\nchains = "{only_ai}"\n')
    with pytest.raises(NodeStartError, match="the node runs 'MT5_To_Database_Chain' and no "
                                             "chains file defines it"):
        build_registry(load_config(config), {"FeatureEngine": lambda x: x,
                                              "MultiAgentOrchestrator": lambda x: x,
                                              "ConsensusEngine": lambda x: x,
                                              "TradingEngine": lambda x: x})


def test_a_module_that_fails_to_import_names_itself(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    (tmp_path / "node_components_broken.py").write_text("import no_such_dependency_xyz\n")
    config = tmp_path / "node.toml"
    config.write_text('[components]\nimport = ["node_components_broken"]\n')
    with pytest.raises(NodeStartError) as info:
        build_registry(load_config(config), {})
    text = str(info.value)
    assert "component module 'node_components_broken'" in text
    assert "No module named 'no_such_dependency_xyz'" in text and str(tmp_path) in text


def test_resolving_an_unknown_component_says_how_to_register_it():
    from flowchain.components import ComponentRegistry
    from flowchain.errors import UnknownComponentError

    with pytest.raises(UnknownComponentError) as info:
        ComponentRegistry().resolve("Mine")
    text = str(info.value)
    assert "@flowchain.component('Mine')" in text and "--import MODULE" in text
    assert "[components] import" in text


def test_a_component_class_that_fails_to_build_stops_the_node_with_exit_3(tmp_path):
    import subprocess
    import sys

    (tmp_path / "node_components_fragile.py").write_text(
        "import flowchain\n\n@flowchain.component('node_components_test.Fragile')\n"
        "class Fragile:\n    def __init__(self):\n        raise OSError('model file missing')\n"
        "    def __call__(self, ctx):\n        return ctx\n")
    chains = _author_chains(tmp_path, "node_components_test.Fragile")
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\ndb = "{tmp_path / "n.db"}"\n[dashboard]\nenabled = false\n'
                      f'[components]\nimport = ["node_components_fragile"]\n'
                      f'[chains]\nfile = "{chains}"\n')
    proc = subprocess.run([sys.executable, "-m", "flowchain.cli", "node", "--config", str(config),
                           "--duration", "5"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=240, env={**__import__("os").environ, "COLUMNS": "200"})
    assert proc.returncode == 3, proc.stderr
    assert "building the node's chains: OSError: model file missing" in proc.stderr
    assert "Traceback" not in proc.stderr

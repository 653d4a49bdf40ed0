"""The public namespace: exactly the documented names, each importable (trio's habit)."""
import flowchain

PUBLIC = {
    "ChainBuilder", "ChainDefinition", "ChainExecution", "ChainProblem", "ChainRegistry",
    "ChainRunner", "ChainStep", "ChainStepError", "ChainValidationError", "ChainVersion",
    "ComponentRegistry", "ComponentTraits", "ExecutionStatus", "FlowChainError", "HistogramSettings",
    "LatencyHistogram", "StepFailure", "StepResult", "UnknownChainError",
    "UnknownComponentError", "UserContext", "clock_info", "component", "default_components",
    "dump_chains", "load_chains", "load_chains_file", "now_ns",
}


def test_all_is_the_documented_public_api():
    assert set(flowchain.__all__) == PUBLIC
    for name in flowchain.__all__:
        assert getattr(flowchain, name) is not None, name


def test_no_undocumented_public_names_leak():
    leaked = {n for n in vars(flowchain) if not n.startswith("_")} - PUBLIC
    # submodules are reachable as attributes once imported; they are not part of __all__
    import types
    leaked = {n for n in leaked if not isinstance(getattr(flowchain, n), types.ModuleType)}
    assert leaked == set(), leaked

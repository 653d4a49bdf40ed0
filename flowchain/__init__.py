"""FlowChain: run and track the data-flow chains of an AI trading node, at nanosecond resolution.

The public API; the native engine (``flowchain._engine``) is private.

The package root loads nothing until a public name is first used (:pep:`562`), so the bridge,
the wire protocol (``flowchain_bridge``) and ``flowchain bridge`` run without the compiled
engine, numba or hdrhistogram. The first engine-backed name raises an ImportError that says how
to build when the engine is missing.
"""
import typing as _typing

__version__ = "0.1.0"

# public name -> the module that defines it (the engine's names come from flowchain._native)
_HOMES = {
    "ChainBuilder": "flowchain.chain",
    "ChainDefinition": "flowchain.chain",
    "ChainStep": "flowchain.chain",
    "dump_chains": "flowchain.chain",
    "load_chains": "flowchain.chain",
    "load_chains_file": "flowchain.chain",
    "ComponentRegistry": "flowchain.components",
    "ComponentTraits": "flowchain.components",
    "component": "flowchain.components",
    "default_components": "flowchain.components",
    "UserContext": "flowchain.context",
    "ChainProblem": "flowchain.errors",
    "ChainStepError": "flowchain.errors",
    "ChainValidationError": "flowchain.errors",
    "FlowChainError": "flowchain.errors",
    "UnknownChainError": "flowchain.errors",
    "UnknownComponentError": "flowchain.errors",
    "ChainExecution": "flowchain.execution",
    "ExecutionStatus": "flowchain.execution",
    "StepFailure": "flowchain.execution",
    "StepResult": "flowchain.execution",
    "HistogramSettings": "flowchain.histograms",
    "LatencyHistogram": "flowchain.histograms",
    "ChainRegistry": "flowchain.registry",
    "ChainVersion": "flowchain.registry",
    "ChainStats": "flowchain.stats",
    "LatencySummary": "flowchain.stats",
    "StepStats": "flowchain.stats",
    "ChainRunner": "flowchain._native",
    "clock_info": "flowchain._native",
    "now_ns": "flowchain._native",
}

__all__ = [
    "ChainBuilder",
    "ChainDefinition",
    "ChainExecution",
    "ChainProblem",
    "ChainRegistry",
    "ChainRunner",
    "ChainStats",
    "ChainStep",
    "ChainStepError",
    "ChainValidationError",
    "ChainVersion",
    "ComponentRegistry",
    "ComponentTraits",
    "ExecutionStatus",
    "FlowChainError",
    "HistogramSettings",
    "LatencyHistogram",
    "LatencySummary",
    "StepFailure",
    "StepResult",
    "StepStats",
    "UnknownChainError",
    "UnknownComponentError",
    "UserContext",
    "clock_info",
    "component",
    "default_components",
    "dump_chains",
    "load_chains",
    "load_chains_file",
    "now_ns",
]


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'flowchain' has no attribute {name!r}")
    # the import statement's machinery (not importlib.import_module), so `python -X importtime`
    # reports what a public name loads
    module = __import__(home, fromlist=[name])
    value = getattr(module.engine, name) if home == "flowchain._native" else getattr(module, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if _typing.TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from flowchain._engine import ChainRunner, clock_info, now_ns
    from flowchain.chain import (
        ChainBuilder,
        ChainDefinition,
        ChainStep,
        dump_chains,
        load_chains,
        load_chains_file,
    )
    from flowchain.components import (
        ComponentRegistry,
        ComponentTraits,
        component,
        default_components,
    )
    from flowchain.context import UserContext
    from flowchain.errors import (
        ChainProblem,
        ChainStepError,
        ChainValidationError,
        FlowChainError,
        UnknownChainError,
        UnknownComponentError,
    )
    from flowchain.execution import ChainExecution, ExecutionStatus, StepFailure, StepResult
    from flowchain.histograms import HistogramSettings, LatencyHistogram
    from flowchain.registry import ChainRegistry, ChainVersion
    from flowchain.stats import ChainStats, LatencySummary, StepStats

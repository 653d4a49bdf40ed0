"""FlowChain: run and track the data-flow chains of an AI trading node, at nanosecond resolution.

The public API; the native engine (``flowchain._engine``) is private.
"""
from flowchain._native import engine as _engine  # noqa: F401  (fails loudly when not built)
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

ChainRunner = _engine.ChainRunner
now_ns = _engine.now_ns
clock_info = _engine.clock_info

__version__ = "0.1.0"

__all__ = [
    "ChainBuilder",
    "ChainDefinition",
    "ChainExecution",
    "ChainProblem",
    "ChainRegistry",
    "ChainRunner",
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
    "StepFailure",
    "StepResult",
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

"""FlowChain: run and track the data-flow chains of an AI trading node, at nanosecond resolution."""
from flowchain._native import engine as _engine  # noqa: F401  (fails loudly when not built)

__version__ = "0.1.0"

"""The chain optimizer: what the engine runs for optimized steps, and what it measures.

Step options (a chain's ``parallel``, ``cache`` and ``async``) run through :mod:`.parallel`,
:mod:`.cache` and :mod:`.concurrency`, built once per runner by :mod:`.step_runtime`; sampled
per-step profiles come from :mod:`.profiling` and are stored by :mod:`.profile_store`.
Chain inputs are recorded in a form that round-trips by :mod:`.recorded_inputs` (from
``flowchain run --inputs``: :mod:`.input_recording`) and run again by :mod:`.replay`.
Bottlenecks are found by :mod:`.detectors`, their remedies sized by :mod:`.suggestions` (with
:mod:`.lru_simulation` and :mod:`.capacity`), all driven by :class:`.optimizer.ChainOptimizer`;
:mod:`.apply` writes the optimized version and :mod:`.verify` measures it against the original.
"""
from typing import Any

__all__ = ["ChainOptimizer", "OptimizationResult"]


def __getattr__(name: str) -> Any:
    """``ChainOptimizer`` and ``OptimizationResult``, imported on first use (importing an
    engine-side module of this package does not load the analysis)."""
    if name in __all__:
        from flowchain.optimizer import optimizer

        return getattr(optimizer, name)
    raise AttributeError(f"module 'flowchain.optimizer' has no attribute {name!r}")

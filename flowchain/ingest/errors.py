"""The MT5 -> database chain's exceptions: each names the batch, what was wrong and what to do."""
from __future__ import annotations

from flowchain.errors import FlowChainError


class BatchDecodeError(FlowChainError, ValueError):
    """A batch could not be decoded into MT5 ticks; ``reason`` is the counter it was counted under.

    Parameters
    ----------
    reason : str
        A short machine-readable reason (``"size_not_multiple"``, ``"wrong_dtype"``, ...).
    message : str
        The full explanation.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BatchStageError(FlowChainError, TypeError):
    """A step received something other than the batch the previous step should have produced."""

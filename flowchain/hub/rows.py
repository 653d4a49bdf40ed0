"""The rows a node ships to the hub, and :class:`Batch`, their JSON wire form (node -> hub).

Every row carries the shipping node's ``node_id`` and ``local_id``, the row's id in the node's
own SQLite table; the hub stores each (node_id, kind, local_id) once, so a batch sent twice or
re-cut differently after a restart is stored once. Usage rows are keyed by (node_id, tenant,
period) instead: the latest value wins.

Decoding is strict (no type coercion, no unknown fields) and bounded (field lengths, rows per
batch, bytes per body); malformed input raises :class:`BatchError` naming the field, e.g.
``intervals[3].count: Expected `int`, got `str```.
"""
from __future__ import annotations

from typing import Annotated

import msgspec

NAME_MAX = 256
"""Longest node id, run id, tenant, chain, chain id, step, status, kind or period (characters)."""
HISTOGRAM_MAX = 1 << 20
"""Longest encoded histogram (characters); a full 1 ns..1 h histogram encodes far below this."""
TEXT_MAX = 1 << 20
"""Longest execution record, alert message or alert fields (characters)."""
ROWS_MAX = 20_000
"""Most rows of one kind in one batch."""
BATCH_BYTES_MAX = 64 << 20
"""Largest JSON body :meth:`Batch.from_json` accepts (bytes)."""

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_MAX)]
Label = Annotated[str, msgspec.Meta(max_length=NAME_MAX)]
"""A name that may be empty (a whole chain's ``step`` is ``''``)."""
Histogram = Annotated[str, msgspec.Meta(min_length=8, max_length=HISTOGRAM_MAX,
                                        pattern=r"^HISTF[A-Za-z0-9+/]*={0,2}$")]
"""A standard compressed HdrHistogram in base64: its cookie makes every one start ``HISTF``."""
Text = Annotated[str, msgspec.Meta(max_length=TEXT_MAX)]
LocalId = Annotated[int, msgspec.Meta(ge=1, le=(1 << 63) - 1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]
Nanos = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]
StepIndex = Annotated[int, msgspec.Meta(ge=-1, le=1 << 30)]

KINDS = ("intervals", "executions", "alerts", "usage")
"""The row kinds of a batch, in the order the store writes them."""
LOCAL_KINDS = ("intervals", "executions", "alerts")
"""The kinds identified by the node's ``local_id`` (:meth:`HubStore.shipped_up_to`)."""


class BatchError(ValueError):
    """A batch body that is not valid JSON of a :class:`Batch`; the message names the field."""


class IntervalRow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One interval histogram of a chain (``step == ''``) or a step: a ``latency_intervals`` row.

    ``start_ns``/``end_ns`` are epoch nanoseconds; ``histogram`` and ``failure_histogram`` are
    standard HdrHistogram base64 encodings, as the node stores them.
    """

    node_id: Name
    local_id: LocalId
    run_id: Name
    tenant: Name
    chain: Name
    chain_id: Name
    step: Label
    step_index: StepIndex
    start_ns: Nanos
    end_ns: Nanos
    count: Count
    errors: Count
    expected_ns: Count | None
    histogram: Histogram
    failure_histogram: Histogram | None = None


class ExecutionRow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A failed or sampled execution with its context: an ``execution_records`` row.

    ``record`` is the node's JSON text of the execution, kept as it is.
    """

    node_id: Name
    local_id: LocalId
    run_id: Name
    execution_id: Name
    tenant: Name
    chain: Name
    chain_id: Name
    status: Name
    sampled: bool
    start_epoch_ns: Nanos
    duration_ns: Count | None
    failed_step: Label | None
    record: Text


class AlertRow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A warning, escalation or recovery with its span: an ``alert_events`` row.

    ``end_ns`` is None while an escalation is open; the node updates the row in place until it
    closes, so the hub updates its copy when a later batch carries more (see the store).
    """

    node_id: Name
    local_id: LocalId
    run_id: Name
    kind: Name
    tenant: Name
    chain: Name
    chain_id: Name
    step: Label
    start_ns: Nanos
    end_ns: Nanos | None
    alerts: Count
    message: Text
    fields: Text


class UsageRow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A tenant's usage counters of one period on one node (``tenant_usage``); latest wins."""

    node_id: Name
    tenant: Name
    period: Name
    used: Count
    reserved: Count
    refused: Count
    updated_ns: Nanos


class Batch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one node ships in one request: rows of each kind, all of that node.

    Raises
    ------
    BatchError
        (from :meth:`from_json`) when the body is malformed; when constructed directly with a
        row of another node, or an interval ending before it starts, ``msgspec.ValidationError``
        (a ``ValueError``) naming the row.
    """

    node_id: Name
    intervals: Annotated[tuple[IntervalRow, ...], msgspec.Meta(max_length=ROWS_MAX)] = ()
    executions: Annotated[tuple[ExecutionRow, ...], msgspec.Meta(max_length=ROWS_MAX)] = ()
    alerts: Annotated[tuple[AlertRow, ...], msgspec.Meta(max_length=ROWS_MAX)] = ()
    usage: Annotated[tuple[UsageRow, ...], msgspec.Meta(max_length=ROWS_MAX)] = ()

    def __post_init__(self) -> None:
        for kind in KINDS:
            for i, row in enumerate(getattr(self, kind)):
                if row.node_id != self.node_id:
                    raise ValueError(f"{kind}[{i}].node_id {row.node_id!r} is not the batch's "
                                     f"node_id {self.node_id!r}")
        for i, row in enumerate(self.intervals):
            if row.end_ns < row.start_ns:
                raise ValueError(f"intervals[{i}].end_ns {row.end_ns} is before its start_ns "
                                 f"{row.start_ns}")

    def __len__(self) -> int:
        return sum(len(getattr(self, kind)) for kind in KINDS)

    def counts(self) -> dict[str, int]:
        """Return the number of rows of each kind."""
        return {kind: len(getattr(self, kind)) for kind in KINDS}

    def to_json(self) -> bytes:
        """Return the wire form: one JSON object with the fields above."""
        return _ENCODER.encode(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Batch:
        """Decode a wire body strictly.

        Raises
        ------
        BatchError
            When the body is larger than :data:`BATCH_BYTES_MAX`, is not JSON, or any field is
            missing, unknown, of the wrong type, out of bounds or inconsistent; the message
            names the field (``intervals[3].count``).
        """
        if len(data) > BATCH_BYTES_MAX:
            raise BatchError(f"batch of {len(data)} bytes is larger than the "
                             f"{BATCH_BYTES_MAX} bytes accepted")
        try:
            return _DECODER.decode(data)
        except msgspec.ValidationError as exc:
            raise BatchError(f"malformed batch: {_field_path(str(exc))}") from None
        except msgspec.DecodeError as exc:
            raise BatchError(f"batch is not JSON: {exc}") from None


def _field_path(message: str) -> str:
    """Turn msgspec's ``... - at `$.intervals[3].count``` into ``intervals[3].count: ...``."""
    text, sep, where = message.rpartition(" - at `")
    if not sep:
        return message
    path = where.rstrip("`").removeprefix("$").lstrip(".")
    return f"{path}: {text}" if path else text


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Batch, strict=True)

"""The MT5 -> database chain: DataBridge -> DataValidator -> DataProcessor -> DatabaseService.

Import :mod:`flowchain.ingest.components` to register the four components by the names the chain uses.
"""
from flowchain.ingest.batch import BatchStage, RawTickBatch, TickBatch
from flowchain.ingest.errors import BatchDecodeError, BatchStageError
from flowchain.ingest.ingestion import DataBridge
from flowchain.ingest.processing import DataProcessor, compute_bars
from flowchain.ingest.storage import DatabaseService, StorageConfirmation
from flowchain.ingest.validation import REJECT_REASONS, DataValidator

__all__ = [
    "BatchDecodeError", "BatchStage", "BatchStageError", "DataBridge", "DataProcessor",
    "DataValidator", "DatabaseService", "REJECT_REASONS", "RawTickBatch", "StorageConfirmation",
    "TickBatch", "compute_bars",
]

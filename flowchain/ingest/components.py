"""Register the MT5 -> database chain's components under their chain names.

Importing this module registers, in :data:`flowchain.components.default_components`:

=================  =========================================  =====================
component          class                                      step (node's chain)
=================  =========================================  =====================
DataBridge         :class:`~flowchain.ingest.ingestion.DataBridge`       mt5_data_ingestion
DataValidator      :class:`~flowchain.ingest.validation.DataValidator`   data_validation
DataProcessor      :class:`~flowchain.ingest.processing.DataProcessor`   data_processing
DatabaseService    :class:`~flowchain.ingest.storage.DatabaseService`    database_storage
=================  =========================================  =====================

Each class is instantiated once, without arguments, when a chain first needs it; DatabaseService
then writes to ``$FLOWCHAIN_DB`` (or ``flowchain.db``). To write elsewhere, register an instance
instead: ``default_components.register("DatabaseService", DatabaseService(path), replace=True)``.
"""
from __future__ import annotations

from flowchain.components import component
from flowchain.ingest.ingestion import DataBridge
from flowchain.ingest.processing import DataProcessor
from flowchain.ingest.storage import DatabaseService
from flowchain.ingest.validation import DataValidator

COMPONENTS = {
    "DataBridge": component("DataBridge")(DataBridge),
    "DataValidator": component("DataValidator")(DataValidator),
    "DataProcessor": component("DataProcessor")(DataProcessor),
    "DatabaseService": component("DatabaseService")(DatabaseService),
}
"""The registered names and their classes, in chain order."""

"""pyarrow schemas of vccflow's output tables (see :mod:`schemas.outputs`)."""

from schemas.outputs import (
    CHANNEL_STATES,
    ERROR_CODES,
    PARTITION_COLUMN,
    PARTITION_SOURCE,
    TABLES,
    dataset_schema,
)

__all__ = [
    "CHANNEL_STATES",
    "ERROR_CODES",
    "PARTITION_COLUMN",
    "PARTITION_SOURCE",
    "TABLES",
    "dataset_schema",
]

"""Writing output rows as hive-partitioned Parquet through Beam's FileSystems.

A batch of rows of one table becomes one file per ``event_date`` partition:
``ROOT/<table>/event_date=YYYY-MM-DD/part-<label>.parquet``. Labels are deterministic
(shard number, input file hash, window), so a retried bundle overwrites its own files and
never adds a second copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from itertools import chain
from operator import itemgetter
from typing import NamedTuple

import apache_beam as beam
import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from schemas import PARTITION_COLUMN, PARTITION_SOURCE, TABLES

_DAY_US = 86_400_000_000
_EPOCH_DATE = date(1970, 1, 1)


class RowBatch(NamedTuple):
    """Rows of one table that land in files labelled ``label``: dicts keyed by column name,
    or value sequences in the table's column order (see :func:`to_arrow`)."""

    table: str
    label: str
    rows: list


class RowBatchCoder(beam.coders.Coder):
    """A :class:`RowBatch` as MessagePack, with a size estimate that does not encode it.

    Beam samples the size of the elements each step outputs by encoding them, even where the
    step is fused with the next one and nothing is ever encoded: for a batch of tens of
    thousands of rows that sampling cost a tenth of the batch job's CPU. The estimate is the
    first row's encoded size times the number of rows.
    """

    def encode(self, batch: RowBatch) -> bytes:
        return msgspec.msgpack.encode(batch)

    def decode(self, data: bytes) -> RowBatch:
        return RowBatch(*msgspec.msgpack.decode(data))

    def estimate_size(self, batch: RowBatch) -> int:
        first = len(msgspec.msgpack.encode(batch.rows[0])) if batch.rows else 0
        return len(batch.table) + len(batch.label) + first * len(batch.rows)

    def is_deterministic(self) -> bool:
        return False


beam.coders.registry.register_coder(RowBatch, RowBatchCoder)


def utc_date(ts_us: int) -> str:
    """``YYYY-MM-DD`` of a microsecond UTC time."""
    return (_EPOCH_DATE + timedelta(days=ts_us // _DAY_US)).isoformat()


def to_arrow(table: str, rows: list) -> pa.Table:
    """Rows of ``table`` to an Arrow table with its schema from :mod:`schemas.outputs`: dicts
    keyed by column name (every row has every column), or value sequences (tuples, lists) in
    the schema's column order. Timestamps are int microseconds."""
    schema = TABLES[table]
    width = len(schema)
    if rows and not isinstance(rows[0], dict):
        if any(len(row) != width for row in rows):
            raise ValueError(f"{table} rows must have the {width} values of its columns")
        columns = zip(*rows, strict=True)  # the transposition runs in C
        return pa.Table.from_arrays([_array(c, f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)
    # One pass over the rows (every table has several columns, so the getter returns
    # tuples), then column j is every width-th value from j.
    values = list(chain.from_iterable(map(itemgetter(*schema.names), rows)))
    columns = [_array(values[j::width], f.type) for j, f in enumerate(schema)]
    return pa.Table.from_arrays(columns, schema=schema)


def _array(values: Sequence, type_: pa.DataType) -> pa.Array:
    """``values`` as an Arrow array of ``type_``; timestamps (int microseconds) go through
    int64, which converts faster than Python ints to a timestamp type."""
    if pa.types.is_timestamp(type_):
        return pa.array(values, type=pa.int64()).view(type_)
    return pa.array(values, type=type_)


def partitions(table: str, data: pa.Table) -> list[tuple[str, pa.Table]]:
    """``data`` (rows of ``table``) split by ``event_date``: the UTC date of the table's
    partition source column, as ``(YYYY-MM-DD, rows)`` in date order, rows in their order."""
    if data.num_rows == 0:
        return []
    name = PARTITION_SOURCE[table]
    source = data[name]
    if source.null_count:
        raise ValueError(f"{table}.{name} has nulls: rows without a partition")
    first, last = (s.value for s in pc.min_max(source).values())
    if first // _DAY_US == last // _DAY_US:
        return [(utc_date(first), data)]
    # Stored values are UTC: the naive cast is free and the date cast needs no time zone.
    days = source.cast(pa.timestamp("us")).cast(pa.date32())
    distinct = sorted(pc.unique(days).to_pylist())
    return [(day.isoformat(), data.filter(pc.equal(days, pa.scalar(day, pa.date32())))) for day in distinct]


#: Text columns holding (nearly) one value per row: dictionary encoding would only cost time.
_DISTINCT_TEXT = frozenset(
    {"channel_id", "interaction_id", "conversation_id", "session_id", "raw", "error_detail", "origin", "event_id"}
)


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """The text columns of few distinct values (states, roles, agents, codes...)."""
    text = (pa.string(), pa.list_(pa.string()))
    return [f.name for f in schema if f.type in text and f.name not in _DISTINCT_TEXT]


def write_parquet(path: str, data: pa.Table) -> None:
    """One Arrow table to one Parquet file at ``path`` (any FileSystems scheme), zstd,
    dictionary-encoding only the text columns of few distinct values."""
    with FileSystems.create(path) as f:
        pq.write_table(data, f, compression="zstd", use_dictionary=_dictionary_columns(data.schema))


def table_file(root: str, table: str, day: str, label: str) -> str:
    return FileSystems.join(root, table, f"{PARTITION_COLUMN}={day}", f"part-{label}.parquet")


def write_rows(root: str, table: str, label: str, rows: list) -> int:
    """Write ``rows`` of ``table`` under ``root``, one file per partition; returns the count."""
    for day, part in partitions(table, to_arrow(table, rows)):
        write_parquet(table_file(root, table, day, label), part)
    return len(rows)


class WriteTables(beam.PTransform):
    """:class:`RowBatch` elements (or plain ``(table, label, rows)`` tuples) in; Parquet files under ``root`` written;
    out: ``{"rows.<table>": n}`` count dicts (one per element), for the run report."""

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = root

    def expand(self, batches):
        root = self.root

        def write(element):
            table, label, rows = element
            return {f"rows.{table}": write_rows(root, table, label, rows)}

        return batches | "WriteParquet" >> beam.Map(write)

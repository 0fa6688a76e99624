"""Rows to Arrow, the ``event_date`` split and the Parquet files (transforms/parquet.py)."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import PARTITION_COLUMN, PARTITION_SOURCE, TABLES
from transforms.parquet import RowBatch, RowBatchCoder, partitions, to_arrow, utc_date, write_rows

DAY = 86_400_000_000
#: Microsecond times around the epoch and day boundaries, down to year 1 and up to year 9999.
TIMES = (
    -62_135_596_800_000_000,  # 0001-01-01T00:00:00Z
    -DAY - 1,
    -DAY,
    -1,
    0,
    DAY - 1,
    DAY,
    1_709_596_799_999_999,  # 2024-03-04T23:59:59.999999Z
    1_709_596_800_000_000,
    253_402_300_799_999_999,  # 9999-12-31T23:59:59.999999Z
)
INTS = (0, 1, -1, 2**63 - 1, -(2**63))


def _value(field: pa.Field, i: int, ts: int):
    """A value of ``field`` for row ``i`` whose times are ``ts`` (null every third row when nullable)."""
    if field.nullable and i % 3 == 1 and field.type != pa.list_(pa.string()):
        return None
    if pa.types.is_timestamp(field.type):
        return ts
    return {
        pa.string(): f"{field.name}-{i}",
        pa.int64(): INTS[i % len(INTS)],
        pa.bool_(): i % 2 == 0,
        pa.float64(): i / 7,
        pa.list_(pa.string()): ["a", f"b{i}"][: i % 3],
    }[field.type]


def _rows(table: str, times: list[int]) -> list[dict]:
    """One row per time, keys in reverse schema order plus a key no column has."""
    schema = TABLES[table]
    return [{"extra": i, **{f.name: _value(f, i, ts) for f in reversed(schema)}} for i, ts in enumerate(times)]


@pytest.mark.parametrize("table", TABLES)
def test_to_arrow_is_the_plain_conversion_and_times_round_trip(table):
    times = [*TIMES, *reversed(TIMES)]
    rows = _rows(table, times)
    data = to_arrow(table, rows)
    assert data.schema.equals(TABLES[table], check_metadata=True)
    assert data.equals(pa.Table.from_pylist(rows, schema=TABLES[table]))
    assert data[PARTITION_SOURCE[table]].cast(pa.int64()).to_pylist() == times
    assert to_arrow(table, []).num_rows == 0


@pytest.mark.parametrize("table", ["channel_sessions", "channel_segments"])
def test_partitions_are_a_filter_per_utc_date_in_row_order(table):
    times = [TIMES[0], TIMES[-1], *(t + d for t in TIMES[1:-1] for d in (0, 5, -7))]
    random.Random(4).shuffle(times)
    rows = _rows(table, times)
    days = sorted({utc_date(t) for t in times})
    source = PARTITION_SOURCE[table]
    expected = [(day, to_arrow(table, [r for r in rows if utc_date(r[source]) == day])) for day in days]
    got = partitions(table, to_arrow(table, rows))
    assert [day for day, _ in got] == days
    for (day, part), (_, want) in zip(got, expected, strict=True):
        assert part.equals(want), day


def test_partitions_of_one_day_and_of_nothing():
    data = to_arrow("channel_segments", _rows("channel_segments", [DAY, 2 * DAY - 1, DAY + 5]))
    assert partitions("channel_segments", data) == [("1970-01-02", data)]
    assert partitions("channel_segments", data.slice(0, 0)) == []


def test_partitions_refuse_rows_without_a_partition_time():
    data = to_arrow("channel_segments", _rows("channel_segments", [0, 1]))
    data = data.set_column(7, "start_at", pa.array([0, None], pa.timestamp("us", tz="UTC")))
    with pytest.raises(ValueError, match="start_at has nulls"):
        partitions("channel_segments", data)


def test_write_rows_round_trips_every_value(tmp_path):
    times = [DAY - 1, -1, DAY, 0, DAY + 1, -DAY]
    rows = _rows("channel_sessions", times)
    assert write_rows(str(tmp_path), "channel_sessions", "s00007", rows) == len(rows)
    for day in ("1969-12-31", "1970-01-01", "1970-01-02"):
        path = tmp_path / "channel_sessions" / f"{PARTITION_COLUMN}={day}" / "part-s00007.parquet"
        want = to_arrow("channel_sessions", [r for r in rows if utc_date(r["first_event_at"]) == day])
        # Parquet names a list's item "element": the cast only renames it back.
        assert pq.read_table(path).cast(want.schema).equals(want, check_metadata=True)


@pytest.mark.parametrize("table", TABLES)
def test_a_row_batch_round_trips_through_its_coder_and_its_size_is_estimated_from_one_row(table):
    import msgspec

    rows = _rows(table, list(TIMES))
    batch = RowBatch(table, "s00003", rows)
    coder = RowBatchCoder()
    decoded = coder.decode(coder.encode(batch))
    assert type(decoded) is RowBatch
    assert decoded == batch
    row_bytes = len(msgspec.msgpack.encode(rows[0]))
    assert coder.estimate_size(batch) == len(table) + len("s00003") + row_bytes * len(rows)
    assert coder.estimate_size(RowBatch(table, "s00003", [])) == len(table) + len("s00003")


@pytest.mark.parametrize("table", TABLES)
def test_rows_as_value_sequences_in_column_order_give_the_same_table(table):
    rows = _rows(table, [*TIMES, *reversed(TIMES)])
    names = TABLES[table].names
    as_dicts = to_arrow(table, rows)
    assert to_arrow(table, [tuple(r[n] for n in names) for r in rows]).equals(as_dicts)
    coder = RowBatchCoder()  # MessagePack gives the tuples back as lists
    decoded = coder.decode(coder.encode(RowBatch(table, "s00001", [tuple(r[n] for n in names) for r in rows])))
    assert to_arrow(table, decoded.rows).equals(as_dicts)
    with pytest.raises(ValueError, match="values of its columns"):
        to_arrow(table, [tuple(r[n] for n in names)[:-1] for r in rows])


def test_the_channel_cores_value_tuples_follow_the_schemas():
    from transforms.timeline import SEGMENT_COLUMNS, SESSION_COLUMNS

    assert list(SESSION_COLUMNS) == TABLES["channel_sessions"].names
    assert list(SEGMENT_COLUMNS) == TABLES["channel_segments"].names

"""Great Expectations suites for every output table, built in code from :mod:`schemas.outputs`.

The column list, the types and the nullability come from the pyarrow schemas; the domain
rules of ``shared/spec/outputs.md`` are added per table. Everything is a built-in GX 1.x
expectation validated on a pandas batch:

- implications (``hold_count == 0`` implies ``hold_ms == 0``, ``is_complete`` implies
  ``ended_at`` not null, ...) are built-ins with a ``row_condition``;
- rules comparing a column with arithmetic over other columns (sums, floored millisecond
  differences, the last ``seq`` of a channel, the partition date) compare it with a
  *helper column* (name starting with ``_``) that :func:`add_helper_columns` appends to the
  frame before validation: GX's ``UnexpectedRowsExpectation`` runs SQL only, not on pandas.

Frames must be typed as :func:`to_pandas` types them: the type expectations check pandas
dtypes (``Int64``, ``Float64``, ``boolean``, ``string``, ``datetime64[us, UTC]``, Arrow
lists), so an Arrow type other than the schema's fails its column's type expectation.

Great Expectations is imported lazily, offline (:func:`import_gx`), never at module import.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from schemas.outputs import (
    CHANNEL_STATES,
    ERROR_CODES,
    PARTITION_COLUMN,
    PARTITION_SOURCE,
    TABLES,
    TS,
    dataset_schema,
)

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite

#: Columns that identify a row in failure examples (``unexpected_index_column_names``).
ROW_KEYS: dict[str, tuple[str, ...]] = {
    "channel_sessions": ("channel_id",),
    "channel_segments": ("channel_id", "seq"),
    "agent_presence": ("agent_id", "start_at"),
    "agent_sessions": ("session_id",),
    "dead_letter": ("origin",),
}

_PANDAS_DTYPES: dict[pa.DataType, Any] = {
    pa.int64(): pd.Int64Dtype(),
    pa.float64(): pd.Float64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.string(): pd.StringDtype("pyarrow"),
    TS: pd.DatetimeTZDtype("us", "UTC"),
    pa.list_(pa.string()): pd.ArrowDtype(pa.list_(pa.string())),
}

#: ``type_`` of ExpectColumnValuesToBeOfType per schema type. On pandas, GX compares it with
#: the ``.type`` of the column's dtype (or, for an ``object`` column, of each value): ``int``
#: matches ``Int64``/``int64`` and Python ints but not ``int32``; ``Timestamp`` matches
#: ``datetime64[*, tz]``, which :func:`to_pandas` only produces for ``timestamp[us, tz=UTC]``.
_GX_TYPE_NAMES: dict[pa.DataType, str] = {
    pa.int64(): "int",
    pa.float64(): "float",
    pa.bool_(): "bool",
    pa.string(): "str",
    TS: "Timestamp",
    pa.list_(pa.string()): "list",
}

_HELPER_ERRORS = (KeyError, TypeError, ValueError, AttributeError, ArithmeticError, pa.ArrowException)


def import_gx() -> ModuleType:
    """``great_expectations``, imported with usage statistics off (no network calls)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    import great_expectations

    return great_expectations


def _pandas_dtype(type_: pa.DataType) -> Any:
    """Schema types to nullable pandas dtypes; other timestamps stay Arrow-typed (so a wrong
    unit or time zone fails the type check), anything else converts as pyarrow does."""
    for known, dtype in _PANDAS_DTYPES.items():
        if type_ == known:  # not a dict lookup: equal list types can hash differently
            return dtype
    return pd.ArrowDtype(type_) if pa.types.is_timestamp(type_) else None


def to_pandas(data: pa.Table) -> pd.DataFrame:
    """An Arrow table as a DataFrame typed the way the suites expect (nulls kept as NA)."""
    return data.to_pandas(types_mapper=_pandas_dtype)


def empty_frame(table: str) -> pd.DataFrame:
    """A zero-row frame of ``table`` as read from its folder (with ``event_date``)."""
    return to_pandas(dataset_schema(table).empty_table())


# --- helper columns ------------------------------------------------------------------------


def _sum_of(*columns: str) -> Callable[[pd.DataFrame], pd.Series]:
    def total(df: pd.DataFrame) -> pd.Series:
        return sum((df[c] for c in columns[1:]), df[columns[0]])

    return total


def _floor_ms(times: pd.Series) -> pd.Series:
    """Milliseconds since the epoch, floored (``us // 1000``); NA for NaT."""
    us = pd.Series(times.dt.as_unit("us").array.asi8, index=times.index, dtype="Int64")
    return us.mask(times.isna()) // 1000


def _end_minus_start_ms(df: pd.DataFrame) -> pd.Series:
    return _floor_ms(df["end_at"]) - _floor_ms(df["start_at"])


def _channel_max_seq(df: pd.DataFrame) -> pd.Series:
    return df.groupby("channel_id", sort=False)["seq"].transform("max")


def _utc_date_of(column: str) -> Callable[[pd.DataFrame], pd.Series]:
    def utc_date(df: pd.DataFrame) -> pd.Series:
        return df[column].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d").astype(pd.StringDtype("pyarrow"))

    return utc_date


_Helper = tuple[str, str, Callable[[pd.DataFrame], pd.Series]]

_END_MINUS_START: _Helper = (
    "_end_minus_start_ms",
    "end_at // 1 ms - start_at // 1 ms (floored per endpoint), NA while open",
    _end_minus_start_ms,
)
_TALK_HOLD_WRAP: _Helper = (
    "_talk_hold_wrap_ms",
    "talk_ms + hold_ms + wrap_ms",
    _sum_of("talk_ms", "hold_ms", "wrap_ms"),
)

_HELPERS: dict[str, tuple[_Helper, ...]] = {
    "channel_sessions": (
        (
            "_talk_hold_park_interruption_ms",
            "talk_ms + hold_ms + park_ms + interruption_ms",
            _sum_of("talk_ms", "hold_ms", "park_ms", "interruption_ms"),
        ),
        _TALK_HOLD_WRAP,
    ),
    "channel_segments": (
        _END_MINUS_START,
        ("_channel_max_seq", "largest seq of the row's channel_id", _channel_max_seq),
    ),
    "agent_presence": (_END_MINUS_START,),
    "agent_sessions": (
        (
            "_presence_sum_ms",
            "ready_ms + away_ms + extended_away_ms + other_presence_ms",
            _sum_of("ready_ms", "away_ms", "extended_away_ms", "other_presence_ms"),
        ),
        _TALK_HOLD_WRAP,
    ),
    "dead_letter": (),
}


def _helpers(table: str, partitioned: bool) -> tuple[_Helper, ...]:
    helpers = _HELPERS[table]
    if partitioned:
        source = PARTITION_SOURCE[table]
        helpers += (("_partition_date", f"UTC date (YYYY-MM-DD) of {source}", _utc_date_of(source)),)
    return helpers


def helper_columns(table: str, partitioned: bool = True) -> dict[str, str]:
    """Helper column name -> what it holds, in the order :func:`add_helper_columns` appends them."""
    return {name: doc for name, doc, _ in _helpers(table, partitioned)}


def add_helper_columns(table: str, df: pd.DataFrame, partitioned: bool = True) -> pd.DataFrame:
    """A copy of ``df`` with ``table``'s helper columns appended.

    A helper whose inputs are missing or mistyped is all-NA: the rules using it then pass
    and the column/type expectations of its inputs report the cause.
    """
    out = df.copy()
    for name, _, compute in _helpers(table, partitioned):
        try:
            out[name] = compute(df)
        except _HELPER_ERRORS:
            out[name] = pd.Series(pd.NA, index=df.index, dtype="object")
    return out


# --- suites --------------------------------------------------------------------------------


def _at_least(E: Any, later: str, earlier: str, **kw: Any) -> Any:
    """``later >= earlier`` where both are present."""
    return E.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=later, column_B=earlier, or_equal=True, ignore_row_if="either_value_is_missing", **kw
    )


def _equal(E: Any, column: str, helper: str, **kw: Any) -> Any:
    """``column == helper`` where both are present (a NA helper: inputs reported elsewhere)."""
    return E.ExpectColumnPairValuesToBeEqual(
        column_A=column, column_B=helper, ignore_row_if="either_value_is_missing", **kw
    )


def _null_iff_open(E: Any, column: str, end: Any) -> list:
    """``column`` is null exactly when the ``end`` column (a GX ``Column``) is."""
    return [
        E.ExpectColumnValuesToBeNull(column=column, row_condition=end.is_null()),
        E.ExpectColumnValuesToNotBeNull(column=column, row_condition=end.is_not_null()),
    ]


def _is_open_iff_null(E: Any, end: Any) -> list:
    """``is_open`` is true exactly when the ``end`` column (a GX ``Column``) is null."""
    return [
        E.ExpectColumnValuesToBeInSet(column="is_open", value_set=[True], row_condition=end.is_null()),
        E.ExpectColumnValuesToBeInSet(column="is_open", value_set=[False], row_condition=end.is_not_null()),
    ]


def _channel_sessions_rules(E: Any, Column: Any) -> list:
    lifecycle = ("alerted_at", "connected_at", "disconnected_at", "wrap_started_at", "ended_at")
    rules = [E.ExpectColumnValuesToBeUnique(column="channel_id")]
    rules += [_at_least(E, later, earlier) for i, earlier in enumerate(lifecycle) for later in lifecycle[i + 1 :]]
    rules += [
        _at_least(E, "last_event_at", "first_event_at"),
        _equal(E, "connected_ms", "_talk_hold_park_interruption_ms"),
        _equal(E, "handle_ms", "_talk_hold_wrap_ms"),
    ]
    for phase in ("hold", "park", "interruption"):
        rules += [
            _at_least(E, f"{phase}_ms", f"longest_{phase}_ms"),
            E.ExpectColumnValuesToBeInSet(
                column=f"{phase}_ms", value_set=[0], row_condition=Column(f"{phase}_count") == 0
            ),
        ]
    complete = Column("is_complete") == True  # noqa: E712 (builds a GX Condition)
    return [
        *rules,
        E.ExpectColumnValuesToNotBeNull(column="ended_at", row_condition=complete),
        E.ExpectColumnValuesToBeNull(column="open_state", row_condition=complete),
        E.ExpectColumnValuesToBeInSet(column="open_state", value_set=list(CHANNEL_STATES)),
        E.ExpectColumnValuesToBeInSet(column="disconnect_state", value_set=list(CHANNEL_STATES)),
    ]


def _channel_segments_rules(E: Any, Column: Any) -> list:
    return [
        E.ExpectCompoundColumnsToBeUnique(column_list=["channel_id", "seq"]),
        E.ExpectColumnValuesToBeInSet(column="state", value_set=list(CHANNEL_STATES)),
        _at_least(E, "end_at", "start_at"),
        _equal(E, "duration_ms", "_end_minus_start_ms"),
        _equal(E, "seq", "_channel_max_seq", row_condition=Column("end_at").is_null()),
        *_null_iff_open(E, "ended_by", Column("end_at")),
        *_null_iff_open(E, "duration_ms", Column("end_at")),
    ]


def _agent_presence_rules(E: Any, Column: Any) -> list:
    return [
        # Changes at the same instant leave 0 ms intervals (transforms/presence.py): only the
        # intervals that last, or are open, start at distinct times.
        E.ExpectCompoundColumnsToBeUnique(
            column_list=["agent_id", "start_at"],
            row_condition=Column("end_at").is_null() | (Column("duration_ms") > 0),
        ),
        E.ExpectColumnValuesToBeUnique(column="agent_id", row_condition=Column("end_at").is_null()),
        _at_least(E, "end_at", "start_at"),
        _equal(E, "duration_ms", "_end_minus_start_ms"),
        *_null_iff_open(E, "duration_ms", Column("end_at")),
        *_is_open_iff_null(E, Column("end_at")),
    ]


def _agent_sessions_rules(E: Any, Column: Any) -> list:
    return [
        E.ExpectColumnValuesToBeUnique(column="session_id"),
        _at_least(E, "logout_at", "login_at"),
        E.ExpectColumnValuesToBeBetween(column="occupancy", min_value=0, max_value=1),
        _equal(E, "duration_ms", "_presence_sum_ms"),
        _at_least(E, "duration_ms", "busy_ms"),
        _equal(E, "handle_ms", "_talk_hold_wrap_ms"),
        *_is_open_iff_null(E, Column("logout_at")),
    ]


def _dead_letter_rules(E: Any, Column: Any) -> list:
    return [E.ExpectColumnValuesToBeInSet(column="error_code", value_set=list(ERROR_CODES))]


#: Domain rules per table, beyond the columns, types, nulls and ``>= 0`` taken from the schema.
_RULES: dict[str, Callable[[Any, Any], list]] = {
    "channel_sessions": _channel_sessions_rules,
    "channel_segments": _channel_segments_rules,
    "agent_presence": _agent_presence_rules,
    "agent_sessions": _agent_sessions_rules,
    "dead_letter": _dead_letter_rules,
}


def build_suite(table: str, partitioned: bool = True) -> ExpectationSuite:
    """The expectation suite of ``table`` (a key of ``TABLES``), named after it.

    ``partitioned``: the frame has the ``event_date`` partition column (a whole table read
    from its folder), which must be the UTC date of the table's partition source column.
    The frame is validated after :func:`add_helper_columns` with the same ``partitioned``.
    """
    gx = import_gx()
    E = gx.expectations
    schema = dataset_schema(table) if partitioned else TABLES[table]
    helpers = helper_columns(table, partitioned)
    expectations: list = [
        E.ExpectTableColumnsToMatchOrderedList(
            column_list=[*schema.names, *helpers],
            notes=f"Columns starting with `_` are helpers derived before validation: {helpers}",
        )
    ]
    for field in schema:
        expectations.append(E.ExpectColumnValuesToBeOfType(column=field.name, type_=_GX_TYPE_NAMES[field.type]))
        if not field.nullable:
            expectations.append(E.ExpectColumnValuesToNotBeNull(column=field.name))
        if field.type == pa.int64():
            expectations.append(E.ExpectColumnValuesToBeBetween(column=field.name, min_value=0))
    from great_expectations.expectations.row_conditions import Column

    expectations += _RULES[table](E, Column)
    if partitioned:
        expectations.append(
            E.ExpectColumnPairValuesToBeEqual(
                column_A=PARTITION_COLUMN, column_B="_partition_date", ignore_row_if="either_value_is_missing"
            )
        )
    return gx.ExpectationSuite(
        name=table,
        expectations=expectations,
        meta={"source": "schemas/expectations.py", "helper_columns": helpers},
    )

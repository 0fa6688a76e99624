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

Frames must be typed as :func:`to_pandas` types them (the type expectations check pandas
dtypes: ``Int64``, ``Float64``, ``boolean``, ``string``, ``datetime64[us, UTC]``, Arrow lists;
any other Arrow type becomes an ``ArrowDtype`` that fails its column's type expectation).

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
}

#: ``type_`` of ExpectColumnValuesToBeOfType per schema type: GX compares it with the
#: ``.type`` of the pandas dtype :func:`to_pandas` gives (``Timestamp`` for tz-aware times).
_GX_TYPE_NAMES: dict[pa.DataType, str] = {
    pa.int64(): "int64",
    pa.float64(): "float64",
    pa.bool_(): "bool",
    pa.string(): "str",
    TS: "Timestamp",
}

_HELPER_ERRORS = (KeyError, TypeError, ValueError, AttributeError, ArithmeticError, pa.ArrowException)


def import_gx() -> ModuleType:
    """``great_expectations``, imported with usage statistics off (no network calls)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    import great_expectations

    return great_expectations


def _pandas_dtype(type_: pa.DataType) -> Any:
    return _PANDAS_DTYPES.get(type_) or pd.ArrowDtype(type_)


def to_pandas(data: pa.Table) -> pd.DataFrame:
    """An Arrow table as a DataFrame typed the way the suites expect (nulls kept as NA)."""
    return data.to_pandas(types_mapper=_pandas_dtype)


def empty_frame(table: str, partitioned: bool = True) -> pd.DataFrame:
    """A zero-row frame of ``table`` (with ``event_date`` when ``partitioned``)."""
    schema = dataset_schema(table) if partitioned else TABLES[table]
    return to_pandas(schema.empty_table())


def _gx_type_name(type_: pa.DataType) -> str:
    return "list" if pa.types.is_list(type_) else _GX_TYPE_NAMES[type_]


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


def _domain_rules(table: str, gx: ModuleType) -> list:
    from great_expectations.expectations.row_conditions import Column

    E = gx.expectations

    def at_least(later: str, earlier: str, **kw: Any) -> Any:
        return E.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=later, column_B=earlier, or_equal=True, ignore_row_if="either_value_is_missing", **kw
        )

    def equal(column: str, helper: str, **kw: Any) -> Any:
        return E.ExpectColumnPairValuesToBeEqual(
            column_A=column, column_B=helper, ignore_row_if="either_value_is_missing", **kw
        )

    def null_iff_open(column: str, open_when: Any) -> list:
        return [
            E.ExpectColumnValuesToBeNull(column=column, row_condition=open_when.is_null()),
            E.ExpectColumnValuesToNotBeNull(column=column, row_condition=open_when.is_not_null()),
        ]

    if table == "channel_sessions":
        lifecycle = ("alerted_at", "connected_at", "disconnected_at", "wrap_started_at", "ended_at")
        rules = [E.ExpectColumnValuesToBeUnique(column="channel_id")]
        rules += [at_least(b, a) for i, a in enumerate(lifecycle) for b in lifecycle[i + 1 :]]
        rules += [
            at_least("last_event_at", "first_event_at"),
            equal("connected_ms", "_talk_hold_park_interruption_ms"),
            equal("handle_ms", "_talk_hold_wrap_ms"),
        ]
        for phase in ("hold", "park", "interruption"):
            rules += [
                at_least(f"{phase}_ms", f"longest_{phase}_ms"),
                E.ExpectColumnValuesToBeInSet(
                    column=f"{phase}_ms", value_set=[0], row_condition=Column(f"{phase}_count") == 0
                ),
            ]
        complete = Column("is_complete") == True  # noqa: E712 (a GX Condition, not a comparison)
        rules += [
            E.ExpectColumnValuesToNotBeNull(column="ended_at", row_condition=complete),
            E.ExpectColumnValuesToBeNull(column="open_state", row_condition=complete),
            E.ExpectColumnValuesToBeInSet(column="open_state", value_set=list(CHANNEL_STATES)),
            E.ExpectColumnValuesToBeInSet(column="disconnect_state", value_set=list(CHANNEL_STATES)),
        ]
        return rules
    if table == "channel_segments":
        return [
            E.ExpectCompoundColumnsToBeUnique(column_list=["channel_id", "seq"]),
            E.ExpectColumnValuesToBeInSet(column="state", value_set=list(CHANNEL_STATES)),
            at_least("end_at", "start_at"),
            equal("duration_ms", "_end_minus_start_ms"),
            equal("seq", "_channel_max_seq", row_condition=Column("end_at").is_null()),
            *null_iff_open("ended_by", Column("end_at")),
            *null_iff_open("duration_ms", Column("end_at")),
        ]
    if table == "agent_presence":
        return [
            E.ExpectCompoundColumnsToBeUnique(column_list=["agent_id", "start_at"]),
            E.ExpectColumnValuesToBeUnique(column="agent_id", row_condition=Column("end_at").is_null()),
            at_least("end_at", "start_at"),
            equal("duration_ms", "_end_minus_start_ms"),
            *null_iff_open("duration_ms", Column("end_at")),
            E.ExpectColumnValuesToBeInSet(column="is_open", value_set=[True], row_condition=Column("end_at").is_null()),
            E.ExpectColumnValuesToBeInSet(
                column="is_open", value_set=[False], row_condition=Column("end_at").is_not_null()
            ),
        ]
    if table == "agent_sessions":
        return [
            E.ExpectColumnValuesToBeUnique(column="session_id"),
            at_least("logout_at", "login_at"),
            E.ExpectColumnValuesToBeBetween(column="occupancy", min_value=0, max_value=1),
            equal("duration_ms", "_presence_sum_ms"),
            at_least("duration_ms", "busy_ms"),
            equal("handle_ms", "_talk_hold_wrap_ms"),
            E.ExpectColumnValuesToBeInSet(
                column="is_open", value_set=[True], row_condition=Column("logout_at").is_null()
            ),
            E.ExpectColumnValuesToBeInSet(
                column="is_open", value_set=[False], row_condition=Column("logout_at").is_not_null()
            ),
        ]
    if table == "dead_letter":
        return [E.ExpectColumnValuesToBeInSet(column="error_code", value_set=list(ERROR_CODES))]
    raise KeyError(table)


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
        expectations.append(E.ExpectColumnValuesToBeOfType(column=field.name, type_=_gx_type_name(field.type)))
        if not field.nullable:
            expectations.append(E.ExpectColumnValuesToNotBeNull(column=field.name))
        if field.type == pa.int64():
            expectations.append(E.ExpectColumnValuesToBeBetween(column=field.name, min_value=0))
    expectations += _domain_rules(table, gx)
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

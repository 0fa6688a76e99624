"""Great Expectations suites for every output table, built in code from :mod:`schemas.outputs`.

The column list, the types and the nullability come from the pyarrow schemas; the domain
rules of ``shared/spec/outputs.md`` are added per table. Everything is a built-in GX 1.x
expectation validated on a pandas batch: the frame :func:`validation_frame` makes, i.e. the
table's columns followed by *helper columns* (names starting with ``_``). The suites are
shaped around GX's pandas engine, which copies the whole frame for every metric of an
expectation that has a ``row_condition`` or an ``ignore_row_if`` that drops rows, or whose
column holds nulls, and which checks ranges by calling Python per value on ``Int64``:

- built-in row-wise expectations (not null, ranges, sets, uniqueness, pair comparisons) are
  used on columns that hold no nulls in a valid table; ``Int64`` columns without nulls are
  handed to GX as numpy ``int64`` (same values, same ``int`` type);
- a rule that has to skip nulls or select rows (``end_at >= start_at`` where both are
  present, ``hold_count == 0`` implies ``hold_ms == 0``, ``>= 0`` on a nullable column, ...)
  is a :class:`Rule`: its *rule column*, computed vectorized, is true where the rule holds
  or does not apply, and ``ExpectColumnValuesToBeInSet([True])`` checks it. The expectation
  carries the rule in words (its Data Docs text, ``meta.rule``) and the columns whose
  values a failure shows per row (``meta.shows``);
- rules comparing a column with arithmetic over other columns (sums, floored millisecond
  differences, the last ``seq`` of a channel, the partition date) compare it with a *value
  helper column*: GX's ``UnexpectedRowsExpectation`` runs SQL only, not on pandas;
- uniqueness among selected rows keeps a ``row_condition``: it has no row-wise form.

Frames must be typed as :func:`to_pandas` types them: the type expectations check pandas
dtypes (``Int64``, ``Float64``, ``boolean``, ``string``, ``datetime64[us, UTC]``, Arrow
lists), so an Arrow type other than the schema's fails its column's type expectation.

Great Expectations is imported lazily, offline (:func:`import_gx`), never at module import.
"""

from __future__ import annotations

import functools
import itertools
import operator
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from schemas.lazyimport import lazily
from schemas.outputs import (
    ABANDONED_OUTCOMES,
    CHANNEL_STATES,
    DIRECTIONS,
    ERROR_CODES,
    OUTCOMES,
    PARTITION_COLUMN,
    PARTITION_SOURCE,
    SERVICE_THRESHOLDS,
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
    "interactions": ("interaction_id",),
    "agent_intervals": ("agent_id", "interval_start"),
    "service_intervals": ("interval_start",),
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
    """``great_expectations``, imported with usage statistics off (no network calls) and
    without batch fingerprints.

    GX labels every pandas batch under ``HASH_THRESHOLD`` bytes with a hash of the whole
    frame (a pickle of it when a list column cannot be hashed): ~1.4 s of a 1.2M-row
    output's validation, for a label vccflow does not use (its batches are named by table).
    A threshold of 0 sends every frame down the path GX already takes from 1 GB on.
    SciPy and Altair, which GX imports for expectations and charts vccflow does not use, are
    loaded only if something uses them (:func:`schemas.lazyimport.lazily`: ~1.2 CPU-s).
    """
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    with lazily("scipy", "altair"):
        import great_expectations
    from great_expectations.execution_engine import pandas_execution_engine

    pandas_execution_engine.HASH_THRESHOLD = 0
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

_Compute = Callable[[pd.DataFrame], pd.Series]
_Helper = tuple[str, str, _Compute]
_US_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class Rule:
    """A row-wise rule, checked as its rule column ``name`` being true on every row.

    ``holds(frame)`` is true where the rule holds or does not apply, NA nowhere (an NA is
    taken as a violation); it sees the value helper columns. ``shows``: the columns whose
    values a failure lists for each example row.
    """

    name: str
    text: str
    shows: tuple[str, ...]
    holds: _Compute


def _sum_of(*columns: str) -> _Compute:
    def total(df: pd.DataFrame) -> pd.Series:
        return sum((df[c] for c in columns[1:]), df[columns[0]])

    return total


def _micros(times: pd.Series) -> np.ndarray:
    """Microseconds since the epoch (UTC) of a ``datetime64[*, tz]`` column; meaningless at NaT."""
    return times.dt.as_unit("us").array.asi8


def _floor_ms(times: pd.Series) -> pd.Series:
    """Milliseconds since the epoch, floored (``us // 1000``), as ``Int64``; NA for NaT."""
    return pd.Series(pd.arrays.IntegerArray(_micros(times) // 1000, times.isna().to_numpy()), index=times.index)


def _end_minus_start_ms(df: pd.DataFrame) -> pd.Series:
    return _floor_ms(df["end_at"]) - _floor_ms(df["start_at"])


def _interval_length_ms(df: pd.DataFrame) -> pd.Series:
    return _floor_ms(df["interval_end"]) - _floor_ms(df["interval_start"])


def _on_grid(df: pd.DataFrame) -> pd.Series:
    """``interval_start`` is a multiple of the interval length (the grid is aligned on UTC)."""
    length = df["_interval_length_ms"]
    return (
        _missing(df, "interval_start", "_interval_length_ms")
        | (length <= 0)
        | (_floor_ms(df["interval_start"]) % length.where(length > 0, 1) == 0)
    )


def _product_of(a: str, b: str) -> _Compute:
    def product(df: pd.DataFrame) -> pd.Series:
        return df[a] * df[b]

    return product


def _minus_started_ms(column: str) -> _Helper:
    """``column // 1 ms - started_at // 1 ms``, NA where ``column`` is null."""
    return (
        f"_{column.removesuffix('_at')}_minus_started_ms",
        f"{column} // 1 ms - started_at // 1 ms (floored per endpoint), NA where {column} is null",
        lambda df: _floor_ms(df[column]) - _floor_ms(df["started_at"]),
    )


def _channel_max_seq(df: pd.DataFrame) -> pd.Series:
    return df.groupby("channel_id", sort=False)["seq"].transform("max")


def _utc_date_of(column: str) -> _Compute:
    def utc_date(df: pd.DataFrame) -> pd.Series:
        times = df[column]
        missing = times.isna().to_numpy()
        days, labels = pd.factorize(np.where(missing, 0, _micros(times) // _US_PER_DAY))
        dates = pa.array(labels.astype("datetime64[D]").astype(str)).take(pa.array(days, mask=missing))
        return pd.Series(pd.array(dates, dtype=pd.StringDtype("pyarrow")), index=df.index)

    return utc_date


def _missing(df: pd.DataFrame, *columns: str) -> pd.Series:
    """True where any of ``columns`` is null."""
    return functools.reduce(operator.or_, (df[c].isna() for c in columns))


def _is_true(values: pd.Series) -> pd.Series:
    """True where ``values`` is true (NA: false), as in a GX ``row_condition``."""
    return (values == True).fillna(False)  # noqa: E712 (element-wise, nullable)


def _ordered(later: str, earlier: str) -> Rule:
    """``later >= earlier`` where both are present."""
    return Rule(
        f"_{later}_not_before_{earlier}",
        f"{later} >= {earlier} where both are present",
        (later, earlier),
        lambda df: _missing(df, later, earlier) | (df[later] >= df[earlier]),
    )


def _equals(column: str, helper: str) -> Rule:
    """``column == helper`` where both are present (a NA helper: inputs reported elsewhere)."""
    return Rule(
        f"_{column}_is{helper}",
        f"{column} == {helper} where both are present",
        (column, helper),
        lambda df: _missing(df, column, helper) | (df[column] == df[helper]),
    )


def _not_negative(column: str) -> Rule:
    """``column >= 0`` where present (the range rule of a nullable integer column)."""
    return Rule(
        f"_{column}_not_negative",
        f"{column} >= 0 where present",
        (column,),
        lambda df: df[column].isna() | (df[column] >= 0),
    )


def _null_iff_open(column: str, end: str) -> Rule:
    """``column`` is null exactly when ``end`` is."""
    return Rule(
        f"_{column}_null_iff_no_{end}",
        f"{column} is null exactly when {end} is null",
        (column, end),
        lambda df: df[column].isna() == df[end].isna(),
    )


def _is_open_iff_null(end: str) -> Rule:
    """``is_open`` is true exactly when ``end`` is null (where ``is_open`` is present)."""
    return Rule(
        f"_is_open_iff_no_{end}",
        f"is_open is true exactly when {end} is null (where is_open is present)",
        ("is_open", end),
        lambda df: df["is_open"].isna() | (df["is_open"] == df[end].isna()),
    )


def _zero_without(phase: str) -> Rule:
    """``<phase>_ms == 0`` where ``<phase>_count == 0``."""
    ms, count = f"{phase}_ms", f"{phase}_count"
    return Rule(
        f"_{ms}_zero_without_{phase}s",
        f"{ms} == 0 where {count} == 0",
        (ms, count),
        lambda df: ~_is_true(df[count] == 0) | df[ms].isna() | (df[ms] == 0),
    )


def _if_complete(column: str, null: bool) -> Rule:
    """``column`` is null (``null``) or not null where ``is_complete`` is true."""
    state = "null" if null else "not null"
    return Rule(
        f"_{column}_{state.replace(' ', '_')}_if_complete",
        f"{column} is {state} where is_complete",
        (column, "is_complete"),
        lambda df: ~_is_true(df["is_complete"]) | (df[column].isna() == null),
    )


#: The outcomes each direction can have.
_OUTCOMES_OF = {
    "inbound": ("answered", *ABANDONED_OUTCOMES, "in_progress"),
    "outbound": ("connected", "failed", "in_progress"),
    "internal": ("internal",),
}


def _outcome_fits_direction(df: pd.DataFrame) -> pd.Series:
    fits = [_is_true(df["direction"] == d) & _is_true(df["outcome"].isin(o)) for d, o in _OUTCOMES_OF.items()]
    return functools.reduce(operator.or_, fits)


def _in_states(column: str) -> Rule:
    """``column`` is one of ``CHANNEL_STATES`` where present."""
    return Rule(
        f"_{column}_in_states",
        f"{column} in {{{', '.join(CHANNEL_STATES)}}} where present",
        (column,),
        lambda df: df[column].isna() | df[column].isin(CHANNEL_STATES),
    )


def _zero_where_none(column: str, count: str) -> Rule:
    """``column == 0`` where ``count == 0`` (a sum or maximum over no item)."""
    return Rule(
        f"_{column}_zero_without_{count}",
        f"{column} == 0 where {count} == 0",
        (column, count),
        lambda df: ~_is_true(df[count] == 0) | df[column].isna() | (df[column] == 0),
    )


_ON_GRID = Rule(
    "_interval_start_on_grid",
    "interval_start // 1 ms is a multiple of _interval_length_ms (the grid is aligned on UTC)",
    ("interval_start", "_interval_length_ms"),
    _on_grid,
)
_LIFECYCLE = ("alerted_at", "connected_at", "disconnected_at", "wrap_started_at", "ended_at")
_PHASES = ("hold", "park", "interruption")
_DURATION_MATCHES = _equals("duration_ms", "_end_minus_start_ms")
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
_PRESENCE_SUM: _Helper = (
    "_presence_sum_ms",
    "ready_ms + away_ms + extended_away_ms + other_presence_ms",
    _sum_of("ready_ms", "away_ms", "extended_away_ms", "other_presence_ms"),
)
_INTERVAL_LENGTH: _Helper = (
    "_interval_length_ms",
    "interval_end // 1 ms - interval_start // 1 ms",
    _interval_length_ms,
)
#: ``--interval-minutes`` choices, in ms (schemas does not import the transforms).
INTERVAL_LENGTHS_MS = (15 * 60_000, 30 * 60_000, 60 * 60_000)
#: agent_intervals durations that cannot exceed the interval: one presence, one wall clock at a time.
_ONE_AT_A_TIME = (
    "logged_in_ms",
    "ready_ms",
    "away_ms",
    "extended_away_ms",
    "other_presence_ms",
    "busy_ms",
    "idle_ms",
    "_idle_plus_busy_ms",
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
    "agent_sessions": (_PRESENCE_SUM, _TALK_HOLD_WRAP),
    "agent_intervals": (
        _INTERVAL_LENGTH,
        _PRESENCE_SUM,
        (
            "_active_sum_ms",
            "talk_ms + hold_ms + park_ms + interruption_ms + wrap_ms",
            _sum_of("talk_ms", "hold_ms", "park_ms", "interruption_ms", "wrap_ms"),
        ),
        ("_idle_plus_busy_ms", "idle_ms + busy_ms", _sum_of("idle_ms", "busy_ms")),
        (
            "_max_concurrency_times_busy_ms",
            "max_concurrency * busy_ms",
            _product_of("max_concurrency", "busy_ms"),
        ),
    ),
    "service_intervals": (
        _INTERVAL_LENGTH,
        (
            "_answered_abandoned_in_progress",
            "answered + abandoned + in_progress",
            _sum_of("answered", "abandoned", "in_progress"),
        ),
    ),
    "interactions": (
        _minus_started_ms("ended_at"),
        _minus_started_ms("answered_at"),
        _minus_started_ms("first_offered_at"),
        _TALK_HOLD_WRAP,
        (
            "_blind_plus_warm_transfers",
            "blind_transfers + warm_transfers",
            _sum_of("blind_transfers", "warm_transfers"),
        ),
    ),
    "dead_letter": (),
}

#: Domain rules per table that are rule columns (see the module docstring).
_TABLE_RULES: dict[str, tuple[Rule, ...]] = {
    "channel_sessions": (
        *(_ordered(later, earlier) for i, earlier in enumerate(_LIFECYCLE) for later in _LIFECYCLE[i + 1 :]),
        *(_zero_without(phase) for phase in _PHASES),
        _if_complete("ended_at", null=False),
        _if_complete("open_state", null=True),
        _in_states("open_state"),
        _in_states("disconnect_state"),
    ),
    "channel_segments": (
        _ordered("end_at", "start_at"),
        _DURATION_MATCHES,
        Rule(
            "_open_segment_is_last",
            "seq == _channel_max_seq where end_at is null (an open segment is its channel's last)",
            ("seq", "_channel_max_seq"),
            lambda df: (
                df["end_at"].notna() | _missing(df, "seq", "_channel_max_seq") | (df["seq"] == df["_channel_max_seq"])
            ),
        ),
        _null_iff_open("ended_by", "end_at"),
        _null_iff_open("duration_ms", "end_at"),
    ),
    "agent_presence": (
        _ordered("end_at", "start_at"),
        _DURATION_MATCHES,
        _null_iff_open("duration_ms", "end_at"),
        _is_open_iff_null("end_at"),
    ),
    "agent_sessions": (
        _ordered("logout_at", "login_at"),
        _is_open_iff_null("logout_at"),
    ),
    "agent_intervals": (
        _ON_GRID,
        Rule(
            "_max_concurrency_zero_iff_not_busy",
            "max_concurrency > 0 exactly where busy_ms > 0",
            ("max_concurrency", "busy_ms"),
            lambda df: (
                _missing(df, "max_concurrency", "busy_ms") | ((df["max_concurrency"] > 0) == (df["busy_ms"] > 0))
            ),
        ),
        _zero_where_none("handle_ms_of_handled", "handled"),
    ),
    "service_intervals": (
        _ON_GRID,
        _zero_where_none("sum_time_to_answer_ms", "answered"),
        _zero_where_none("max_time_to_answer_ms", "answered"),
        _zero_where_none("sum_abandon_ms", "abandoned"),
        _zero_where_none("handle_ms_of_handled", "handled"),
    ),
    "interactions": (
        *(_ordered(later, "started_at") for later in ("ended_at", "first_offered_at", "answered_at")),
        _equals("duration_ms", "_ended_minus_started_ms"),
        _equals("time_to_answer_ms", "_answered_minus_started_ms"),
        _equals("wait_before_offer_ms", "_first_offered_minus_started_ms"),
        _null_iff_open("duration_ms", "ended_at"),
        _null_iff_open("time_to_answer_ms", "answered_at"),
        _null_iff_open("wait_before_offer_ms", "first_offered_at"),
        Rule(
            "_is_complete_iff_ended_at",
            "is_complete is true exactly when ended_at is present",
            ("is_complete", "ended_at"),
            lambda df: df["is_complete"] == df["ended_at"].notna(),
        ),
        Rule(
            "_outcome_fits_direction",
            "outcome is one of the direction's: " + "; ".join(f"{d}: {', '.join(o)}" for d, o in _OUTCOMES_OF.items()),
            ("direction", "outcome"),
            _outcome_fits_direction,
        ),
        Rule(
            "_abandon_ms_iff_abandoned",
            f"abandon_ms is present exactly when outcome is one of {', '.join(ABANDONED_OUTCOMES)}",
            ("abandon_ms", "outcome"),
            lambda df: df["abandon_ms"].notna() == _is_true(df["outcome"].isin(ABANDONED_OUTCOMES)),
        ),
        Rule(
            "_answered_at_iff_answered",
            "answered_at is present exactly when outcome is answered or connected",
            ("answered_at", "outcome"),
            lambda df: df["answered_at"].notna() == _is_true(df["outcome"].isin(("answered", "connected"))),
        ),
    ),
    "dead_letter": (),
}


def _helpers(table: str, partitioned: bool) -> tuple[_Helper, ...]:
    helpers = _HELPERS[table]
    if partitioned:
        source = PARTITION_SOURCE[table]
        helpers += (("_partition_date", f"UTC date (YYYY-MM-DD) of {source}", _utc_date_of(source)),)
    return helpers


def rules(table: str) -> tuple[Rule, ...]:
    """``table``'s rule columns: ``>= 0`` of its nullable integer columns, then its domain rules."""
    ranges = tuple(_not_negative(f.name) for f in TABLES[table] if f.nullable and f.type == pa.int64())
    return ranges + _TABLE_RULES[table]


def helper_columns(table: str, partitioned: bool = True) -> dict[str, str]:
    """Helper column name -> what it holds, in the order :func:`validation_frame` appends them:
    value helpers, then rule columns."""
    values = {name: doc for name, doc, _ in _helpers(table, partitioned)}
    return values | {r.name: f"true where the rule holds or does not apply: {r.text}" for r in rules(table)}


def _computed(compute: _Compute, frame: pd.DataFrame) -> Any:
    try:
        return compute(frame)
    except _HELPER_ERRORS:
        return pd.Series(pd.NA, index=frame.index, dtype="object")


def _flags(holds: pd.Series) -> np.ndarray:
    """A rule's ``holds`` as numpy booleans; NA (undecided) counts as a violation."""
    return holds.fillna(False).to_numpy(dtype=bool)


def validation_frame(table: str, df: pd.DataFrame, partitioned: bool = True) -> pd.DataFrame:
    """``df`` as ``table``'s suite validates it; shares ``df``'s data and leaves ``df`` as it is.

    ``Int64`` columns without nulls become numpy ``int64``; the helper columns of
    :func:`helper_columns` are appended. A helper whose inputs are missing or mistyped is
    all-NA: the rules using it then pass and the column/type expectations of its inputs
    report the cause.
    """
    out = df.copy(deep=False)
    for name, column in df.items():
        if isinstance(column.dtype, pd.Int64Dtype) and not column.hasnans:
            out[name] = column.to_numpy(dtype=np.int64)
    for name, _, compute in _helpers(table, partitioned):
        out[name] = _computed(compute, out)
    for rule in rules(table):
        out[rule.name] = _computed(lambda frame, holds=rule.holds: _flags(holds(frame)), out)
    return out


# --- suites --------------------------------------------------------------------------------


def _at_least(E: Any, later: str, earlier: str) -> Any:
    """``later >= earlier`` where both are present (for columns without nulls)."""
    return E.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=later, column_B=earlier, or_equal=True, ignore_row_if="either_value_is_missing"
    )


def _equal(E: Any, column: str, helper: str) -> Any:
    """``column == helper`` where both are present (for columns without nulls)."""
    return E.ExpectColumnPairValuesToBeEqual(column_A=column, column_B=helper, ignore_row_if="either_value_is_missing")


def _channel_sessions_builtins(E: Any, Column: Any) -> list:
    return [
        E.ExpectColumnValuesToBeUnique(column="channel_id"),
        _at_least(E, "last_event_at", "first_event_at"),
        _equal(E, "connected_ms", "_talk_hold_park_interruption_ms"),
        _equal(E, "handle_ms", "_talk_hold_wrap_ms"),
        *(_at_least(E, f"{phase}_ms", f"longest_{phase}_ms") for phase in _PHASES),
    ]


def _channel_segments_builtins(E: Any, Column: Any) -> list:
    return [
        E.ExpectCompoundColumnsToBeUnique(column_list=["channel_id", "seq"]),
        E.ExpectColumnValuesToBeInSet(column="state", value_set=list(CHANNEL_STATES)),
    ]


def _agent_presence_builtins(E: Any, Column: Any) -> list:
    return [
        # Changes at the same instant leave 0 ms intervals (transforms/presence.py): only the
        # intervals that last, or are open, start at distinct times.
        E.ExpectCompoundColumnsToBeUnique(
            column_list=["agent_id", "start_at"],
            row_condition=Column("end_at").is_null() | (Column("duration_ms") > 0),
        ),
        E.ExpectColumnValuesToBeUnique(column="agent_id", row_condition=Column("end_at").is_null()),
    ]


def _agent_sessions_builtins(E: Any, Column: Any) -> list:
    return [
        E.ExpectColumnValuesToBeUnique(column="session_id"),
        E.ExpectColumnValuesToBeBetween(column="occupancy", min_value=0, max_value=1),
        _equal(E, "duration_ms", "_presence_sum_ms"),
        _at_least(E, "duration_ms", "busy_ms"),
        _equal(E, "handle_ms", "_talk_hold_wrap_ms"),
    ]


def _interval_builtins(E: Any, key: list[str]) -> list:
    """Rows unique per ``key``; one interval length for the whole table, one of the grid's."""
    return [
        E.ExpectCompoundColumnsToBeUnique(column_list=key)
        if len(key) > 1
        else E.ExpectColumnValuesToBeUnique(column=key[0]),
        E.ExpectColumnValuesToBeInSet(column="_interval_length_ms", value_set=list(INTERVAL_LENGTHS_MS)),
        E.ExpectColumnUniqueValueCountToBeBetween(column="_interval_length_ms", min_value=0, max_value=1),
    ]


def _agent_intervals_builtins(E: Any, Column: Any) -> list:
    return [
        *_interval_builtins(E, ["agent_id", "interval_start"]),
        *(_at_least(E, "_interval_length_ms", column) for column in _ONE_AT_A_TIME),
        _equal(E, "logged_in_ms", "_presence_sum_ms"),
        _equal(E, "active_channel_ms", "_active_sum_ms"),
        _at_least(E, "active_channel_ms", "busy_ms"),
        _at_least(E, "_max_concurrency_times_busy_ms", "active_channel_ms"),
        # every millisecond of channel work is logged-in time, known or inferred as agent_sessions does
        _at_least(E, "logged_in_ms", "_idle_plus_busy_ms"),
        _at_least(E, "ready_ms", "idle_ms"),
    ]


def _service_intervals_builtins(E: Any, Column: Any) -> list:
    within = [
        _at_least(E, f"{kind}_within_{b}s", f"{kind}_within_{a}s")
        for kind in ("answered", "abandoned")
        for a, b in itertools.pairwise(SERVICE_THRESHOLDS)
    ]
    return [
        *_interval_builtins(E, ["interval_start"]),
        *within,
        _at_least(E, "answered", f"answered_within_{SERVICE_THRESHOLDS[-1]}s"),
        _at_least(E, "abandoned", f"abandoned_within_{SERVICE_THRESHOLDS[-1]}s"),
        _at_least(E, "abandoned", "short_abandoned"),
        _equal(E, "inbound", "_answered_abandoned_in_progress"),
        _at_least(E, "outbound", "outbound_connected"),
        _at_least(E, "sum_time_to_answer_ms", "max_time_to_answer_ms"),
    ]


def _interactions_builtins(E: Any, Column: Any) -> list:
    return [
        E.ExpectColumnValuesToBeUnique(column="interaction_id"),
        E.ExpectColumnValuesToBeInSet(column="direction", value_set=list(DIRECTIONS)),
        E.ExpectColumnValuesToBeInSet(column="outcome", value_set=list(OUTCOMES)),
        _at_least(E, "last_event_at", "started_at"),
        _equal(E, "handle_ms", "_talk_hold_wrap_ms"),
        _equal(E, "transfers", "_blind_plus_warm_transfers"),
        _at_least(E, "consults", "warm_transfers"),
        _at_least(E, "consults", "conferences"),
        _at_least(E, "agent_channels", "distinct_agents"),
        _at_least(E, "agent_channels", "offers"),
    ]


def _dead_letter_builtins(E: Any, Column: Any) -> list:
    return [E.ExpectColumnValuesToBeInSet(column="error_code", value_set=list(ERROR_CODES))]


#: Domain rules per table that are built-in expectations on the table's columns.
_BUILTINS: dict[str, Callable[[Any, Any], list]] = {
    "channel_sessions": _channel_sessions_builtins,
    "channel_segments": _channel_segments_builtins,
    "agent_presence": _agent_presence_builtins,
    "agent_sessions": _agent_sessions_builtins,
    "interactions": _interactions_builtins,
    "agent_intervals": _agent_intervals_builtins,
    "service_intervals": _service_intervals_builtins,
    "dead_letter": _dead_letter_builtins,
}


def _rule_expectation(E: Any, rule: Rule) -> Any:
    return E.ExpectColumnValuesToBeInSet(
        column=rule.name,
        value_set=[True],
        description=f"Rule: {rule.text} (rule column {rule.name} is true on every row).",
        meta={"rule": rule.text, "shows": list(rule.shows)},
    )


def build_suite(table: str, partitioned: bool = True) -> ExpectationSuite:
    """The expectation suite of ``table`` (a key of ``TABLES``), named after it.

    ``partitioned``: the frame has the ``event_date`` partition column (a whole table read
    from its folder), which must be the UTC date of the table's partition source column.
    The frame is validated as :func:`validation_frame` makes it, with the same ``partitioned``.
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

    expectations += _BUILTINS[table](E, Column)
    expectations += [_rule_expectation(E, rule) for rule in rules(table)]
    if partitioned:
        expectations.append(_equal(E, PARTITION_COLUMN, "_partition_date"))
    return gx.ExpectationSuite(
        name=table,
        expectations=expectations,
        meta={"source": "schemas/expectations.py", "helper_columns": helpers},
    )

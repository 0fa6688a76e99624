"""Rule columns and value helpers of the suites (schemas/expectations.py), without running GX."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from schemas.expectations import helper_columns, rules, to_pandas, validation_frame
from schemas.outputs import PARTITION_COLUMN, TABLES, dataset_schema
from tests.test_validate import DAY1, S, _valid_tables

_LIFECYCLE = ("alerted_at", "connected_at", "disconnected_at", "wrap_started_at", "ended_at")
_T0 = DAY1 + 3600 * S + 123  # alerted_at of the complete channel c1 (and started_at of i1) in _valid_tables()


def _frame(table: str, rows: list[dict]) -> pd.DataFrame:
    return to_pandas(pa.Table.from_pylist(rows, schema=TABLES[table]))


def _only(later: str, earlier: str) -> dict:
    """c1's lifecycle cut down to ``earlier`` and ``later``, one microsecond before it (not complete)."""
    return {**dict.fromkeys(_LIFECYCLE), earlier: _T0, later: _T0 - 1, "is_complete": False}


#: (table, row of _valid_tables()[table], changes, the rule columns that must be false on that row)
CASES = [
    *(
        ("channel_sessions", 0, _only(later, earlier), {f"_{later}_not_before_{earlier}"})
        for i, earlier in enumerate(_LIFECYCLE)
        for later in _LIFECYCLE[i + 1 :]
    ),
    ("channel_sessions", 1, {"hold_ms": 5}, {"_hold_ms_zero_without_holds"}),
    ("channel_sessions", 0, {"park_ms": 5}, {"_park_ms_zero_without_parks"}),
    ("channel_sessions", 0, {"interruption_ms": 5}, {"_interruption_ms_zero_without_interruptions"}),
    ("channel_sessions", 0, {"ended_at": None}, {"_ended_at_not_null_if_complete"}),
    ("channel_sessions", 0, {"open_state": "connected"}, {"_open_state_null_if_complete"}),
    ("channel_sessions", 1, {"open_state": "ringing"}, {"_open_state_in_states"}),
    ("channel_sessions", 0, {"disconnect_state": "gone"}, {"_disconnect_state_in_states"}),
    (
        "channel_segments",
        0,
        {"end_at": _T0 - 1000, "duration_ms": -1},
        {"_end_at_not_before_start_at", "_duration_ms_not_negative"},
    ),
    ("channel_segments", 0, {"duration_ms": 999}, {"_duration_ms_is_end_minus_start_ms"}),
    ("channel_segments", 1, {"end_at": None, "duration_ms": None, "ended_by": None}, {"_open_segment_is_last"}),
    ("channel_segments", 0, {"ended_by": None}, {"_ended_by_null_iff_no_end_at"}),
    ("channel_segments", 6, {"ended_by": "held"}, {"_ended_by_null_iff_no_end_at"}),
    ("channel_segments", 0, {"duration_ms": None}, {"_duration_ms_null_iff_no_end_at"}),
    (
        "agent_presence",
        0,
        {"end_at": DAY1 - S, "duration_ms": -1000},
        {"_end_at_not_before_start_at", "_duration_ms_not_negative"},
    ),
    ("agent_presence", 0, {"duration_ms": 1}, {"_duration_ms_is_end_minus_start_ms"}),
    ("agent_presence", 2, {"duration_ms": 0}, {"_duration_ms_null_iff_no_end_at"}),
    ("agent_presence", 0, {"is_open": True}, {"_is_open_iff_no_end_at"}),
    ("agent_presence", 2, {"is_open": False}, {"_is_open_iff_no_end_at"}),
    ("agent_sessions", 0, {"logout_at": DAY1 - S}, {"_logout_at_not_before_login_at"}),
    ("agent_sessions", 0, {"logout_at": None}, {"_is_open_iff_no_logout_at"}),
    ("agent_sessions", 0, {"is_open": True}, {"_is_open_iff_no_logout_at"}),
    *(
        ("interactions", 0, {at: _T0 - 1000, ms: -1}, {f"_{at}_not_before_started_at", f"_{ms}_not_negative"})
        for at, ms in (
            ("ended_at", "duration_ms"),
            ("first_offered_at", "wait_before_offer_ms"),
            ("answered_at", "time_to_answer_ms"),
        )
    ),
    ("interactions", 0, {"duration_ms": 39999}, {"_duration_ms_is_ended_minus_started_ms"}),
    ("interactions", 0, {"time_to_answer_ms": 4999}, {"_time_to_answer_ms_is_answered_minus_started_ms"}),
    ("interactions", 0, {"wait_before_offer_ms": 2999}, {"_wait_before_offer_ms_is_first_offered_minus_started_ms"}),
    ("interactions", 0, {"duration_ms": None}, {"_duration_ms_null_iff_no_ended_at"}),
    ("interactions", 0, {"time_to_answer_ms": None}, {"_time_to_answer_ms_null_iff_no_answered_at"}),
    ("interactions", 0, {"wait_before_offer_ms": None}, {"_wait_before_offer_ms_null_iff_no_first_offered_at"}),
    ("interactions", 0, {"is_complete": False}, {"_is_complete_iff_ended_at"}),
    ("interactions", 0, {"outcome": "connected"}, {"_outcome_fits_direction"}),
    (
        "interactions",
        2,
        {"outcome": "abandoned_before_offer"},
        {"_outcome_fits_direction", "_abandon_ms_iff_abandoned"},
    ),
    ("interactions", 0, {"abandon_ms": 5}, {"_abandon_ms_iff_abandoned"}),
    ("interactions", 1, {"abandon_ms": -1}, {"_abandon_ms_not_negative"}),
    ("interactions", 1, {"ring_ms": -1}, {"_ring_ms_not_negative"}),
    ("interactions", 0, {"answered_at": None, "time_to_answer_ms": None}, {"_answered_at_iff_answered"}),
    *(
        (table, 0, {"interval_start": DAY1 + 60 * S, "interval_end": DAY1 + 960 * S}, {"_interval_start_on_grid"})
        for table in ("agent_intervals", "service_intervals")
    ),
    ("agent_intervals", 0, {"max_concurrency": 1}, {"_max_concurrency_zero_iff_not_busy"}),
    ("agent_intervals", 1, {"max_concurrency": 0}, {"_max_concurrency_zero_iff_not_busy"}),
    ("agent_intervals", 0, {"handle_ms_of_handled": 5}, {"_handle_ms_of_handled_zero_without_handled"}),
    ("service_intervals", 1, {"handle_ms_of_handled": 5}, {"_handle_ms_of_handled_zero_without_handled"}),
    (
        "service_intervals",
        0,
        {"answered": 0, "inbound": 0},
        {"_sum_time_to_answer_ms_zero_without_answered", "_max_time_to_answer_ms_zero_without_answered"},
    ),
    ("service_intervals", 0, {"sum_abandon_ms": 5}, {"_sum_abandon_ms_zero_without_abandoned"}),
]


def test_every_rule_column_has_a_case():
    assert {name for *_, failing in CASES for name in failing} == {r.name for t in TABLES for r in rules(t)}


@pytest.mark.parametrize("table", list(TABLES))
def test_valid_tables_hold_every_rule(table):
    frame = validation_frame(table, _frame(table, _valid_tables()[table]), partitioned=False)
    for rule in rules(table):
        assert frame[rule.name].dtype == np.bool_, rule.name
        assert frame[rule.name].all(), rule.name


@pytest.mark.parametrize(
    ("table", "index", "changes", "failing"),
    CASES,
    ids=[f"{table}[{index}]:{'+'.join(sorted(failing))}" for table, index, _, failing in CASES],
)
def test_a_rule_column_is_false_exactly_where_its_rule_is_violated(table, index, changes, failing):
    rows = _valid_tables()[table]
    rows[index] = {**rows[index], **changes}
    frame = validation_frame(table, _frame(table, rows), partitioned=False)
    assert {r.name for r in rules(table) if not frame[r.name].iloc[index]} == failing
    assert all(frame[r.name].drop(index).all() for r in rules(table))


def test_validation_frame_appends_helpers_without_changing_the_table():
    df = _frame("channel_segments", _valid_tables()["channel_segments"])
    before = df.copy()
    frame = validation_frame("channel_segments", df, partitioned=False)
    pd.testing.assert_frame_equal(df, before)
    assert list(frame.columns) == [*df.columns, *helper_columns("channel_segments", partitioned=False)]
    assert frame["seq"].dtype == np.int64  # no nulls: numpy, so GX checks ranges vectorized
    assert frame["duration_ms"].dtype == "Int64"  # null while open
    assert frame["seq"].tolist() == df["seq"].tolist()
    assert frame["_channel_max_seq"].tolist() == [4, 4, 4, 4, 4, 1, 1]
    assert frame["_end_minus_start_ms"].tolist() == df["duration_ms"].tolist()


def test_end_minus_start_floors_each_endpoint_also_before_1970():
    rows = _valid_tables()["agent_presence"][:1]
    rows[0] = {**rows[0], "start_at": -1, "end_at": 999, "duration_ms": 1}  # -0.001 ms floors to -1 ms
    frame = validation_frame("agent_presence", _frame("agent_presence", rows), partitioned=False)
    assert frame["_end_minus_start_ms"].tolist() == [1]
    assert frame["_duration_ms_is_end_minus_start_ms"].all()


def test_partition_date_is_the_utc_date_of_the_source_column():
    times = [DAY1 - 1, DAY1, DAY1 + 86_399_999_999, -1, None]
    data = pa.table({"ingested_at": pa.array(times, pa.timestamp("us", tz="UTC"))})
    frame = validation_frame("dead_letter", to_pandas(data))  # only the helper's input: the rest is reported by GX
    assert frame["_partition_date"].tolist() == ["2023-12-31", "2024-01-01", "2024-01-01", "1969-12-31", pd.NA]
    assert frame["_partition_date"].dtype == pd.StringDtype("pyarrow")


def test_a_rule_with_missing_inputs_is_all_na_and_passes():
    rows = _valid_tables()["agent_sessions"]
    df = _frame("agent_sessions", rows).drop(columns=["logout_at"])
    frame = validation_frame("agent_sessions", df, partitioned=False)
    assert frame["_logout_at_not_before_login_at"].isna().all()  # the column list expectation reports it
    assert frame["_is_open_iff_no_logout_at"].isna().all()


def test_partitioned_frames_end_with_the_partition_helper_before_the_rules():
    names = list(helper_columns("dead_letter"))
    assert names == ["_partition_date"]
    rows = _valid_tables()["agent_presence"]
    df = to_pandas(
        pa.Table.from_pylist(rows, schema=TABLES["agent_presence"]).append_column(
            PARTITION_COLUMN, pa.array(["2024-01-01"] * len(rows))
        )
    )
    frame = validation_frame("agent_presence", df)
    assert list(frame.columns) == [*dataset_schema("agent_presence").names, *helper_columns("agent_presence")]
    assert frame.columns.get_loc("_partition_date") < frame.columns.get_loc("_end_at_not_before_start_at")

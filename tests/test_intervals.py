"""Interval reports core (transforms/intervals.py): hand-made agents and interactions at the
interval boundaries, hand-computed numbers, and property tests that the intervals add up to
the unsplit totals of the channel and agent cores."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_presence import AGENT, MIN, USER, pres, seg, us
from transforms.events import PRESENCE_TYPE, Event
from transforms.intervals import (
    AGENT_INTERVAL_COLUMNS,
    AGENT_VALUE_COLUMNS,
    SERVICE_INTERVAL_COLUMNS,
    SERVICE_VALUE_COLUMNS,
    agent_intervals,
    handled_fields,
    interaction_fields,
    interval_ms,
    merge_all,
    merge_service,
    service_handled,
    service_interactions,
    service_rows,
)
from transforms.presence import sessionize_agent
from transforms.timeline import sessionize_channel

Q = interval_ms(15)
PRESENCE_COLUMNS = ("ready_ms", "away_ms", "extended_away_ms", "other_presence_ms")
CHANNEL_COLUMNS = ("alert_ms", "talk_ms", "hold_ms", "park_ms", "interruption_ms", "wrap_ms")
#: Durations that cannot exceed the interval: one presence, one wall clock at a time.
WITHIN_LENGTH = ("logged_in_ms", *PRESENCE_COLUMNS, "busy_ms", "idle_ms")


def rows_of(events, segments=(), channels=(), step: int = Q) -> list[dict]:
    """The agent's interval rows as dicts, from its presence events and segments through the agent core."""
    result = sessionize_agent(AGENT, list(events), list(segments), list(channels))
    rows = agent_intervals(AGENT, result.presence, result.sessions, segments, channels, interval_ms=step)
    out = [dict(zip(AGENT_INTERVAL_COLUMNS, row, strict=True)) for row in rows]
    for row in out:
        check_row(row, step)
    return out


def check_row(row: dict, step: int) -> None:
    """What every agent interval row must satisfy (the expectation suite's rules)."""
    assert row["interval_end"] - row["interval_start"] == step * 1000
    assert row["interval_start"] % (step * 1000) == 0
    assert all(row[c] >= 0 for c in AGENT_VALUE_COLUMNS)
    assert all(row[c] <= step for c in WITHIN_LENGTH), row
    assert row["logged_in_ms"] == sum(row[c] for c in PRESENCE_COLUMNS)
    assert row["active_channel_ms"] == sum(row[c] for c in CHANNEL_COLUMNS[1:])
    assert row["busy_ms"] <= row["active_channel_ms"] <= row["max_concurrency"] * row["busy_ms"]
    assert (row["max_concurrency"] > 0) == (row["busy_ms"] > 0)
    assert row["busy_ms"] <= row["logged_in_ms"]
    assert row["idle_ms"] <= row["ready_ms"]
    assert row["idle_ms"] + row["busy_ms"] <= row["logged_in_ms"]
    assert any(row[c] for c in AGENT_VALUE_COLUMNS), "a row without time or count"


def at(t: str) -> int:
    """Interval start (µs) of the 15-minute interval starting at ``t``."""
    return us(t)


def pick(rows: list[dict], *columns: str) -> dict:
    """``{interval start: (columns...)}``."""
    return {r["interval_start"]: tuple(r[c] for c in columns) for r in rows}


LOGIN_9_TO_10 = [pres("p1", "2023-09-20T09:00", "ready"), pres("p2", "2023-09-20T10:00", "loggedOut")]


def test_interval_ms_accepts_only_the_grid_lengths():
    assert [interval_ms(m) for m in (15, 30, 60)] == [900_000, 1_800_000, 3_600_000]
    for bad in (0, 10, 20, 45, 90):
        with pytest.raises(ValueError, match="15, 30, 60"):
            interval_ms(bad)


def test_a_segment_ending_exactly_on_a_boundary_puts_nothing_in_the_next_interval():
    segments = [
        seg("c1", 0, "alerting", "2023-09-20T09:04", "2023-09-20T09:05"),
        seg("c1", 1, "connected", "2023-09-20T09:05", "2023-09-20T09:15"),
        seg("c1", 2, "wrap", "2023-09-20T09:15", "2023-09-20T09:20"),
    ]
    rows = rows_of(LOGIN_9_TO_10, segments)
    cols = ("logged_in_ms", "ready_ms", "alert_ms", "talk_ms", "wrap_ms", "busy_ms", "idle_ms")
    assert pick(rows, *cols) == {
        at("2023-09-20T09:00"): (15 * MIN, 15 * MIN, MIN, 10 * MIN, 0, 10 * MIN, 4 * MIN),
        at("2023-09-20T09:15"): (15 * MIN, 15 * MIN, 0, 0, 5 * MIN, 5 * MIN, 10 * MIN),
        at("2023-09-20T09:30"): (15 * MIN, 15 * MIN, 0, 0, 0, 0, 15 * MIN),
        at("2023-09-20T09:45"): (15 * MIN, 15 * MIN, 0, 0, 0, 0, 15 * MIN),
    }
    assert [r["user_id"] for r in rows] == [USER] * 4
    assert [r["agent_id"] for r in rows] == [AGENT] * 4


def test_a_call_from_10_10_to_10_40_puts_5_15_and_10_minutes_in_three_intervals():
    events = [pres("p1", "2023-09-20T10:00", "ready"), pres("p2", "2023-09-20T11:00", "loggedOut")]
    rows = rows_of(events, [seg("c1", 0, "connected", "2023-09-20T10:10", "2023-09-20T10:40")])
    assert pick(rows, "talk_ms", "busy_ms", "active_channel_ms", "max_concurrency") == {
        at("2023-09-20T10:00"): (5 * MIN, 5 * MIN, 5 * MIN, 1),
        at("2023-09-20T10:15"): (15 * MIN, 15 * MIN, 15 * MIN, 1),
        at("2023-09-20T10:30"): (10 * MIN, 10 * MIN, 10 * MIN, 1),
        at("2023-09-20T10:45"): (0, 0, 0, 0),
    }
    assert pick(rows, "answered")[at("2023-09-20T10:00")] == (1,)


def test_sub_millisecond_times_floor_like_every_duration():
    """A segment from 09:14:59.9995 to 09:15:00.0009 lasts 09:15:00.000 - 09:14:59.999 = 1 ms,
    all before the boundary: the millisecond grid is the one of every other duration."""
    start, end = us("2023-09-20T09:15") - 500, us("2023-09-20T09:15") + 900
    segment = {**seg("c1", 0, "connected", "2023-09-20T09:10", None), "start_at": start, "end_at": end}
    rows = rows_of(LOGIN_9_TO_10, [segment])
    assert pick(rows, "talk_ms")[at("2023-09-20T09:00")] == (1,)
    assert pick(rows, "talk_ms")[at("2023-09-20T09:15")] == (0,)


def test_a_presence_interval_open_at_the_end_of_the_data_counts_up_to_the_last_known_time():
    events = [pres("p1", "2023-09-20T09:00", "ready"), pres("p2", "2023-09-20T09:10", "away")]
    segments = [seg("c1", 0, "connected", "2023-09-20T09:02", "2023-09-20T09:20")]  # ends after the last presence
    rows = rows_of(events, segments)
    assert pick(rows, "logged_in_ms", "ready_ms", "away_ms", "busy_ms", "idle_ms") == {
        at("2023-09-20T09:00"): (15 * MIN, 10 * MIN, 5 * MIN, 13 * MIN, 2 * MIN),
        at("2023-09-20T09:15"): (5 * MIN, 0, 5 * MIN, 5 * MIN, 0),
    }
    (session,) = sessionize_agent(AGENT, events, segments).sessions
    assert session["is_open"] and session["duration_ms"] == sum(r["logged_in_ms"] for r in rows)


def test_an_open_segment_counts_in_no_duration_but_its_offer_and_answer_count():
    segments = [
        seg("c1", 0, "alerting", "2023-09-20T09:20", "2023-09-20T09:21"),
        seg("c1", 1, "connected", "2023-09-20T09:21", None),
    ]
    rows = rows_of(LOGIN_9_TO_10, segments)
    row = pick(rows, "alert_ms", "talk_ms", "busy_ms", "offers", "answered", "missed", "idle_ms")
    assert row[at("2023-09-20T09:15")] == (MIN, 0, 0, 1, 1, 0, 14 * MIN)


def test_midnight_and_a_year_boundary():
    events = [pres("p1", "2023-12-31T23:50", "ready"), pres("p2", "2024-01-01T00:20", "loggedOut")]
    segments = [seg("c1", 0, "connected", "2023-12-31T23:55", "2024-01-01T00:05")]
    channels = [{"party_role": "agent", "agent_id": AGENT, "connected_at": us("2023-12-31T23:55"),
                 "ended_at": us("2024-01-01T00:05"), "handle_ms": 10 * MIN}]  # fmt: skip
    rows = rows_of(events, segments, channels)
    assert pick(rows, "logged_in_ms", "talk_ms", "handled", "handle_ms_of_handled") == {
        at("2023-12-31T23:45"): (10 * MIN, 5 * MIN, 0, 0),
        at("2024-01-01T00:00"): (15 * MIN, 5 * MIN, 1, 10 * MIN),
        at("2024-01-01T00:15"): (5 * MIN, 0, 0, 0),
    }
    assert rows[1]["interval_end"] == us("2024-01-01T00:15")


def test_concurrent_channels_count_busy_once_and_active_per_channel():
    segments = [
        seg("a", 0, "connected", "2023-09-20T09:00", "2023-09-20T09:20"),
        seg("b", 0, "connected", "2023-09-20T09:10", "2023-09-20T09:22"),
        seg("b", 1, "wrap", "2023-09-20T09:22", "2023-09-20T09:25"),
        seg("c", 0, "held", "2023-09-20T09:12", "2023-09-20T09:13"),
    ]
    rows = rows_of(LOGIN_9_TO_10, segments)
    assert pick(rows, "busy_ms", "active_channel_ms", "max_concurrency", "talk_ms", "hold_ms", "wrap_ms") == {
        at("2023-09-20T09:00"): (15 * MIN, (15 + 5 + 1) * MIN, 3, 20 * MIN, MIN, 0),
        at("2023-09-20T09:15"): (10 * MIN, (5 + 7 + 3) * MIN, 2, 12 * MIN, 0, 3 * MIN),
        at("2023-09-20T09:30"): (0, 0, 0, 0, 0, 0),
        at("2023-09-20T09:45"): (0, 0, 0, 0, 0, 0),
    }


def test_back_to_back_segments_of_one_channel_are_one_at_a_time():
    segments = [
        seg("a", 0, "connected", "2023-09-20T09:00", "2023-09-20T09:05"),
        seg("a", 1, "held", "2023-09-20T09:05", "2023-09-20T09:07"),
        seg("a", 2, "connected", "2023-09-20T09:07", "2023-09-20T09:08"),
        seg("b", 0, "connected", "2023-09-20T09:08", "2023-09-20T09:09"),  # starts as a ends
    ]
    rows = rows_of(LOGIN_9_TO_10, segments)
    assert pick(rows, "busy_ms", "active_channel_ms", "max_concurrency", "answered")[at("2023-09-20T09:00")] == (
        9 * MIN,
        9 * MIN,
        1,
        2,
    )


def test_zero_length_segments_make_no_time_but_their_counts_count():
    segments = [
        seg("a", 0, "alerting", "2023-09-20T11:05", "2023-09-20T11:05"),  # alerted and failed at once
        seg("b", 0, "connected", "2023-09-20T11:20", "2023-09-20T11:20"),
    ]
    events = [pres("p1", "2023-09-20T11:00", "ready"), pres("p2", "2023-09-20T11:30", "loggedOut")]
    rows = rows_of(events, segments)
    assert pick(
        rows, "alert_ms", "talk_ms", "busy_ms", "max_concurrency", "idle_ms", "offers", "missed", "answered"
    ) == {
        at("2023-09-20T11:00"): (0, 0, 0, 0, 15 * MIN, 1, 1, 0),
        at("2023-09-20T11:15"): (0, 0, 0, 0, 15 * MIN, 0, 0, 1),
    }
    # without presence the agent core infers presence from the first to the last of them
    assert pick(rows_of([], segments), "logged_in_ms", "other_presence_ms", "busy_ms") == {
        at("2023-09-20T11:00"): (10 * MIN, 10 * MIN, 0),
        at("2023-09-20T11:15"): (5 * MIN, 5 * MIN, 0),
    }
    events = [pres("p1", "2023-09-20T09:00", "ready"), pres("p2", "2023-09-20T09:00", "away")]
    assert rows_of(events) == []  # a zero-length presence interval, then an open one of no length


def test_offers_answered_missed_and_handled_by_their_instants():
    segments = [
        seg("ok", 0, "alerting", "2023-09-20T09:14", "2023-09-20T09:16"),
        seg("ok", 1, "connected", "2023-09-20T09:16", "2023-09-20T09:29"),
        seg("ok", 2, "wrap", "2023-09-20T09:29", "2023-09-20T09:31"),
        seg("no", 0, "alerting", "2023-09-20T09:40", "2023-09-20T09:46"),  # rejected
        seg("ring", 0, "alerting", "2023-09-20T09:50", None),  # still ringing
    ]
    channels = [
        {"party_role": "agent", "agent_id": AGENT, "connected_at": us("2023-09-20T09:16"),
         "ended_at": us("2023-09-20T09:31"), "handle_ms": 15 * MIN},
        {"party_role": "agent", "agent_id": AGENT, "connected_at": None, "ended_at": us("2023-09-20T09:46"),
         "handle_ms": 0},
        {"party_role": "agent", "agent_id": "someone else", "connected_at": 1, "ended_at": 2, "handle_ms": 5},
    ]  # fmt: skip
    rows = rows_of(LOGIN_9_TO_10, segments, channels)
    assert pick(rows, "offers", "answered", "missed", "handled", "handle_ms_of_handled") == {
        at("2023-09-20T09:00"): (1, 0, 0, 0, 0),
        at("2023-09-20T09:15"): (0, 1, 0, 0, 0),
        at("2023-09-20T09:30"): (1, 0, 0, 1, 15 * MIN),
        at("2023-09-20T09:45"): (1, 0, 1, 0, 0),
    }


def test_work_without_presence_and_past_a_logout_is_logged_in_time_of_unknown_presence():
    """As agent_sessions' inferred sessions: so busy_ms <= logged_in_ms on every row."""
    events = [pres("p1", "2023-09-20T09:00", "ready"), pres("p2", "2023-09-20T09:10", "loggedOut")]
    segments = [
        seg("a", 0, "connected", "2023-09-20T09:05", "2023-09-20T09:08"),
        seg("a", 1, "wrap", "2023-09-20T09:08", "2023-09-20T09:20"),  # 10 minutes past the logout
    ]
    rows = rows_of(events, segments)
    assert pick(rows, "logged_in_ms", "ready_ms", "other_presence_ms", "busy_ms", "idle_ms") == {
        at("2023-09-20T09:00"): (15 * MIN, 10 * MIN, 5 * MIN, 10 * MIN, 5 * MIN),
        at("2023-09-20T09:15"): (5 * MIN, 0, 5 * MIN, 5 * MIN, 0),
    }
    sessions = sessionize_agent(AGENT, events, segments).sessions
    assert [s["is_inferred"] for s in sessions] == [False, True]
    assert sum(s["other_presence_ms"] for s in sessions) == 10 * MIN


def test_grids_of_15_30_and_60_minutes_hold_the_same_time():
    events = [pres("p1", "2023-09-20T08:50", "ready"), pres("p2", "2023-09-20T10:35", "loggedOut")]
    segments = [seg("a", 0, "connected", "2023-09-20T09:10", "2023-09-20T10:05")]
    by_grid = {m: rows_of(events, segments, step=interval_ms(m)) for m in (15, 30, 60)}
    assert [len(by_grid[m]) for m in (15, 30, 60)] == [8, 5, 3]
    assert pick(by_grid[60], "logged_in_ms", "talk_ms") == {
        at("2023-09-20T08:00"): (10 * MIN, 0),
        at("2023-09-20T09:00"): (60 * MIN, 50 * MIN),
        at("2023-09-20T10:00"): (35 * MIN, 5 * MIN),
    }
    assert pick(by_grid[30], "talk_ms")[at("2023-09-20T09:00")] == (20 * MIN,)
    for m in (15, 30):
        assert coarsened(by_grid[m], 60) == coarsened(by_grid[60], 60)


def coarsened(rows: list[dict], minutes: int) -> dict:
    """Rows summed (max for max_concurrency) per ``minutes`` interval: a rollup to a coarser grid."""
    step = interval_ms(minutes) * 1000
    out: dict[int, dict] = {}
    for r in rows:
        acc = out.setdefault(r["interval_start"] // step * step, dict.fromkeys(AGENT_VALUE_COLUMNS, 0))
        for c in AGENT_VALUE_COLUMNS:
            acc[c] = max(acc[c], r[c]) if c == "max_concurrency" else acc[c] + r[c]
    return out


def test_other_agents_and_customer_segments_are_ignored():
    segments = [
        seg("a", 0, "connected", "2023-09-20T09:05", "2023-09-20T09:08", agent="other"),
        seg("b", 0, "connected", "2023-09-20T09:05", "2023-09-20T09:08", role="customer"),
    ]
    assert rows_of(LOGIN_9_TO_10, segments) == rows_of(LOGIN_9_TO_10)


# --- service intervals -----------------------------------------------------------------------


def interaction(started: str, direction: str = "inbound", outcome: str = "answered", **values) -> dict:
    return {
        "started_at": us(started),
        "direction": direction,
        "outcome": outcome,
        "time_to_answer_ms": None,
        "abandon_ms": None,
        "transfers": 0,
        "consults": 0,
        "conferences": 0,
        **values,
    }


def contributions(items: list[dict], short_abandon_ms: int = 5000) -> dict:
    return service_interactions(map(interaction_fields, items), interval_ms=Q, short_abandon_ms=short_abandon_ms)


def service(totals) -> dict:
    return {
        row[0]: dict(zip(SERVICE_INTERVAL_COLUMNS, row, strict=True)) for row in service_rows(totals, interval_ms=Q)
    }


def test_service_counts_by_the_interval_of_arrival_with_thresholds_inclusive():
    items = [
        interaction("2023-09-20T09:14:59", time_to_answer_ms=10_000),  # answered 09:15:09: still 09:00's
        interaction("2023-09-20T09:01", time_to_answer_ms=10_001),
        interaction("2023-09-20T09:02", time_to_answer_ms=125_000, transfers=1, consults=2, conferences=1),
        interaction("2023-09-20T09:03", outcome="abandoned_before_offer", abandon_ms=4_999),
        interaction("2023-09-20T09:04", outcome="abandoned_while_alerting", abandon_ms=5_000),
        interaction("2023-09-20T09:05", outcome="abandoned_after_offer", abandon_ms=60_000),
        interaction("2023-09-20T09:06", outcome="in_progress"),
        interaction("2023-09-20T09:07", direction="outbound", outcome="connected"),
        interaction("2023-09-20T09:08", direction="outbound", outcome="failed"),
        interaction("2023-09-20T09:09", direction="internal", outcome="internal", transfers=1),
        interaction("2023-09-20T09:15", time_to_answer_ms=0),
    ]
    rows = service(contributions(items))
    first, second = rows[at("2023-09-20T09:00")], rows[at("2023-09-20T09:15")]
    assert first["interval_end"] == at("2023-09-20T09:15")
    assert (first["inbound"], first["answered"], first["abandoned"], first["in_progress"]) == (7, 3, 3, 1)
    assert [first[f"answered_within_{s}s"] for s in (10, 20, 30, 60, 120)] == [1, 2, 2, 2, 2]
    assert [first[f"abandoned_within_{s}s"] for s in (10, 20, 30, 60, 120)] == [2, 2, 2, 3, 3]
    assert (first["short_abandoned"], first["sum_abandon_ms"]) == (1, 69_999)
    assert (first["sum_time_to_answer_ms"], first["max_time_to_answer_ms"]) == (145_001, 125_000)
    assert (first["outbound"], first["outbound_connected"]) == (2, 1)
    assert (first["transfers"], first["consults"], first["conferences"]) == (2, 2, 1)
    assert (first["handled"], first["handle_ms_of_handled"]) == (0, 0)
    assert (second["inbound"], second["answered_within_10s"], second["max_time_to_answer_ms"]) == (1, 1, 0)


def test_short_abandon_threshold_is_a_parameter():
    items = [
        interaction("2023-09-20T09:03", outcome="abandoned_before_offer", abandon_ms=w) for w in (1, 9_999, 10_000)
    ]
    counts = [service(contributions(items, s * 1000))[at("2023-09-20T09:00")]["short_abandoned"] for s in (1, 10, 11)]
    assert counts == [1, 2, 3]


def test_handled_by_the_interval_in_which_agent_channels_ended():
    def channel(role, connected, ended, handle):
        return {"party_role": role, "connected_at": connected and us(connected), "ended_at": ended and us(ended),
                "handle_ms": handle, "agent_id": None}  # fmt: skip

    channels = [
        channel("agent", "2023-09-20T07:00", "2023-09-20T09:00", 7_200_000),  # two hours, all at 09:00
        channel("agent", "2023-09-20T09:10", "2023-09-20T09:14:59.999", 100),
        channel("agent", None, "2023-09-20T09:05", 0),  # never connected
        channel("agent", "2023-09-20T09:10", None, 50),  # not ended
        channel("customer", "2023-09-20T09:10", "2023-09-20T09:11", 60_000),
    ]
    rows = service(service_handled(map(handled_fields, channels), interval_ms=Q))
    assert {start: (r["handled"], r["handle_ms_of_handled"], r["inbound"]) for start, r in rows.items()} == {
        at("2023-09-20T09:00"): (2, 7_200_100, 0)
    }


def test_service_contributions_merge_in_any_grouping_and_order():
    items = [interaction(f"2023-09-20T09:{m:02d}", time_to_answer_ms=m * 7000) for m in range(0, 60, 4)]
    items += [interaction("2023-09-20T09:31", outcome="abandoned_before_offer", abandon_ms=3000)]
    whole = contributions(items)
    parts = [
        service_interactions(map(interaction_fields, items[i::3]), interval_ms=Q, short_abandon_ms=5000)
        for i in range(3)
    ]
    handled = service_handled([("agent", 1, us("2023-09-20T09:20"), 42)], interval_ms=Q)
    assert merge_all([*reversed(parts)]) == whole
    assert merge_all([merge_all(parts[:2]), parts[2]]) == merge_all([parts[0], merge_all(parts[1:])])
    both = merge_all([handled, *parts])
    assert both == merge_service(merge_all(parts), handled)
    assert both[at("2023-09-20T09:15")][SERVICE_VALUE_COLUMNS.index("handled")] == 1
    assert max(v[SERVICE_VALUE_COLUMNS.index("max_time_to_answer_ms")] for v in both.values()) == 56 * 7000
    assert merge_all([]) == {}


# --- properties: the intervals add up to the unsplit totals ---------------------------------

BASE = us("2023-12-31T22:00")  # the data crosses midnight and a year boundary
STATES = ("held", "parked", "interrupted")
SUSPEND = {"held": "held", "parked": "parked", "interrupted": "interrupted"}
RESUME = {"held": "retrieved", "parked": "unparked", "interrupted": "resumed"}


@st.composite
def channel_events(draw, name: str, agent: str = AGENT) -> list[Event]:
    """One agent channel's lifecycle, possibly cut off: alerted -> connected -> suspensions
    -> disconnected -> wrap -> ended (or alerted -> failed/disconnected/ended), with gaps of
    0 to 40 minutes, sub-millisecond parts included."""
    t = BASE + draw(st.integers(0, 2 * 3600 * 10**6))
    gap = st.one_of(st.just(0), st.integers(0, 2000), st.integers(0, 40 * 60 * 10**6))
    kinds = ["alerted"]
    if draw(st.booleans()):
        kinds.append("connected")
        for _ in range(draw(st.integers(0, 3))):
            state = draw(st.sampled_from(STATES))
            kinds += [SUSPEND[state], RESUME[state]]
        kinds.append("disconnected")
        if draw(st.booleans()):
            kinds.append("wrapstarted")
    else:
        kinds.append(draw(st.sampled_from(["connectionfailed", "disconnected"])))
    kinds.append("ended")
    kinds = kinds[: draw(st.integers(1, len(kinds)))]
    events = []
    for i, kind in enumerate(kinds):
        if i:
            t += draw(gap)
        events.append(
            Event(
                "/channel", f"{name}-{i}", f"channel.{kind}", t, name, party_role="agent", agent_id=agent, user_id=USER
            )  # fmt: skip
        )
    return events


@st.composite
def agents(draw) -> tuple[list[Event], list]:
    types = ("ready", "away", "extendedAway", "loggedOut", "training")
    times = draw(st.lists(st.integers(0, 5 * 3600 * 10**6), max_size=12))
    presence = [
        Event(
            "/agent",
            f"p{i}",
            PRESENCE_TYPE,
            BASE + t,
            AGENT,
            agent_id=AGENT,
            user_id=USER,
            presence_type=draw(st.sampled_from(types)),
            presence_id="x",
        )  # fmt: skip
        for i, t in enumerate(times)
    ]
    channels = [sessionize_channel(draw(channel_events(f"c{i}"))) for i in range(draw(st.integers(0, 6)))]
    return presence, channels


PROPERTIES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTIES
@given(agents(), st.sampled_from((15, 30, 60)))
def test_sums_over_intervals_equal_the_unsplit_totals(agent, minutes):
    presence, channels = agent
    step = interval_ms(minutes)
    segments = [s for c in channels for s in c.segments]
    sessions = [c.session for c in channels]
    result = sessionize_agent(AGENT, presence, segments, sessions)
    rows = [
        dict(zip(AGENT_INTERVAL_COLUMNS, r, strict=True))
        for r in agent_intervals(AGENT, result.presence, result.sessions, segments, sessions, interval_ms=step)
    ]
    for row in rows:
        check_row(row, step)
    starts = [r["interval_start"] for r in rows]
    assert starts == sorted(set(starts))
    total = {c: sum(r[c] for r in rows) for c in AGENT_VALUE_COLUMNS}
    for column in ("ready_ms", "away_ms", "extended_away_ms", "other_presence_ms", "busy_ms"):
        assert total[column] == sum(s[column] for s in result.sessions), column
    assert total["logged_in_ms"] == sum(s["duration_ms"] for s in result.sessions)
    for column in CHANNEL_COLUMNS:
        assert total[column] == sum(s[column] for s in sessions), column
    assert total["offers"] == sum(s["alerted_at"] is not None for s in sessions)
    assert total["answered"] == sum(s["connected_at"] is not None for s in sessions)
    assert total["missed"] == sum(
        s["alerted_at"] is not None and s["connected_at"] is None and s["open_state"] != "alerting" for s in sessions
    )
    handled = [s for s in sessions if s["connected_at"] is not None and s["ended_at"] is not None]
    assert (total["handled"], total["handle_ms_of_handled"]) == (len(handled), sum(s["handle_ms"] for s in handled))
    # the service side: the same channels' handled, by the interval they ended in
    service_totals = service_handled(map(handled_fields, sessions), interval_ms=step)
    by_start = defaultdict(lambda: (0, 0))
    for r in rows:
        if r["handled"]:
            by_start[r["interval_start"]] = (r["handled"], r["handle_ms_of_handled"])
    handled_at = SERVICE_VALUE_COLUMNS.index("handled")
    assert {k: tuple(v[handled_at : handled_at + 2]) for k, v in service_totals.items()} == dict(by_start)
    # a 60-minute grid is the 15-minute grid rolled up
    if minutes == 15:
        hourly = agent_intervals(AGENT, result.presence, result.sessions, segments, sessions, interval_ms=4 * step)
        as_dicts = [dict(zip(AGENT_INTERVAL_COLUMNS, r, strict=True)) for r in hourly]
        assert coarsened(rows, 60) == coarsened(as_dicts, 60)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 400), st.integers(1, 120)).map(lambda p: (p[0], p[0] + p[1])),
        max_size=12,
    ),
    st.sampled_from([7, 50, 1000]),
)
def test_busy_blocks_equal_the_union_and_the_sweep(pieces, step):
    """``_busy`` sweeps only the blocks with an overlap; it must give what the union of all
    pieces and the sweep over all of them give (touching pieces included)."""
    from transforms.intervals import _A, _busy, _max_concurrency, _spread, _union

    def fresh():
        acc = {}
        for a, b in pieces:  # the rows the pieces' time makes, as agent_intervals makes them
            _spread(acc, a, b, (_A["active_channel_ms"],), step)
        return acc

    expected = fresh()
    for block in _union(pieces):
        _spread(expected, *block, (_A["busy_ms"],), step)
    _max_concurrency(expected, pieces, step)
    got = fresh()
    _busy(got, pieces, step)
    assert got == expected

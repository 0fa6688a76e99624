"""Agent sessionization core: hand-made presence events and segments, hand-computed numbers."""

from __future__ import annotations

import random

import pytest

from schemas.outputs import AGENT_PRESENCE, AGENT_SESSIONS
from transforms.events import PRESENCE_TYPE, Event, parse_timestamp
from transforms.presence import AgentResult, normalize_presence_type, sessionize_agent
from transforms.timeline import sessionize_channel

AGENT = "1544"
USER = "u-1544"
MIN = 60_000  # ms
HOUR = 60 * MIN

PRESENCE_COLS = set(AGENT_PRESENCE.names)
SESSION_COLS = set(AGENT_SESSIONS.names)
PRESENCE_MS_COLS = ("ready_ms", "away_ms", "extended_away_ms", "other_presence_ms")


def us(t: str) -> int:
    """``"2023-09-20T09:00"`` (UTC) to microseconds since epoch."""
    return parse_timestamp(t + (":00Z" if len(t) == 16 else "Z"))


def pres(
    eid: str,
    t: str,
    ptype: str,
    presence_id: str | None = None,
    sub: str | None = None,
    agent: str = AGENT,
    user: str | None = USER,
    desc: str | None = None,
) -> Event:
    return Event(
        "/agent",
        eid,
        PRESENCE_TYPE,
        us(t),
        agent,
        agent_id=agent,
        user_id=user,
        presence_id=presence_id or f"p-{ptype}",
        presence_type=ptype,
        presence_subcategory=sub,
        presence_description=desc,
    )


def seg(
    channel: str,
    seq: int,
    state: str,
    start: str,
    end: str | None,
    agent: str | None = AGENT,
    role: str = "agent",
    started_by: str | None = None,
) -> dict:
    return {
        "channel_id": channel,
        "interaction_id": f"i-{channel}",
        "conversation_id": f"c-{channel}",
        "agent_id": agent,
        "party_role": role,
        "seq": seq,
        "state": state,
        "start_at": us(start),
        "end_at": None if end is None else us(end),
        "duration_ms": None if end is None else (us(end) - us(start)) // 1000,
        "started_by": started_by or state,
        "ended_by": None if end is None else "x",
    }


def check_invariants(result: AgentResult) -> None:
    """Contracts every result must meet, whatever the input."""
    for row in result.presence:
        assert set(row) == PRESENCE_COLS
        assert row["is_open"] == (row["end_at"] is None) == (row["duration_ms"] is None)
    assert sum(r["is_open"] for r in result.presence) <= 1
    for row in result.sessions:
        assert set(row) == SESSION_COLS
        assert sum(row[c] for c in PRESENCE_MS_COLS) == row["duration_ms"]
        assert all(row[c] >= 0 for c in SESSION_COLS if c.endswith("_ms"))
        assert row["handle_ms"] == row["talk_ms"] + row["hold_ms"] + row["wrap_ms"]
        assert 0 <= row["busy_ms"] <= row["duration_ms"]
        assert 0.0 <= row["occupancy"] <= 1.0
        assert isinstance(row["occupancy"], float)
        if row["is_open"]:
            assert row["logout_at"] is None and not row["is_inferred"]
        else:
            assert row["logout_at"] is not None
            assert row["duration_ms"] == row["logout_at"] // 1000 - row["login_at"] // 1000
    ids = [r["session_id"] for r in result.sessions]
    assert len(ids) == len(set(ids))
    logins = [r["login_at"] for r in result.sessions]
    assert logins == sorted(logins)


def run(events, segments=(), sessions=(), **kw) -> AgentResult:
    result = sessionize_agent(AGENT, list(events), list(segments), list(sessions), **kw)
    check_invariants(result)
    return result


# --- normalization -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Ready", "ready"),
        ("ready", "ready"),
        ("READY", "ready"),
        ("Away", "away"),
        ("away", "away"),
        ("ExtendedAway", "extendedAway"),
        ("extendedAway", "extendedAway"),
        ("extended_away", "extendedAway"),
        ("Extended Away", "extendedAway"),
        ("EXTENDED-AWAY", "extendedAway"),
        ("LoggedOut", "loggedOut"),
        ("loggedOut", "loggedOut"),
        ("logged_out", "loggedOut"),
        ("Logged Out", "loggedOut"),
        ("Training", "Training"),
        ("busy", "busy"),
        ("", ""),
        (None, "unknown"),
    ],
)
def test_normalize_presence_type(raw, expected):
    assert normalize_presence_type(raw) == expected


# --- presence intervals and simple sessions ---------------------------------------------

SIMPLE = [
    pres("a1", "2023-09-20T09:00", "Ready"),
    pres("a2", "2023-09-20T10:00", "Away"),
    pres("a3", "2023-09-20T10:15", "ready"),
    pres("a4", "2023-09-20T12:00", "LoggedOut"),
]


def test_simple_login_ready_away_logout():
    result = run(SIMPLE)
    assert [(r["presence_type"], r["duration_ms"], r["is_open"]) for r in result.presence] == [
        ("ready", HOUR, False),
        ("away", 15 * MIN, False),
        ("ready", 105 * MIN, False),
        ("loggedOut", None, True),
    ]
    assert result.presence[0]["start_at"] == us("2023-09-20T09:00")
    assert result.presence[0]["end_at"] == us("2023-09-20T10:00")
    assert result.presence[-1]["start_at"] == us("2023-09-20T12:00")
    assert result.presence[0]["user_id"] == USER and result.presence[0]["agent_id"] == AGENT
    assert result.presence[0]["presence_id"] == "p-Ready"

    (s,) = result.sessions
    assert s["session_id"] == "1544:2023-09-20T09:00:00.000000Z"
    assert s["login_at"] == us("2023-09-20T09:00")
    assert s["logout_at"] == us("2023-09-20T12:00")
    assert s["duration_ms"] == 3 * HOUR
    assert (s["ready_ms"], s["away_ms"], s["extended_away_ms"], s["other_presence_ms"]) == (
        165 * MIN,
        15 * MIN,
        0,
        0,
    )
    assert s["is_open"] is False and s["is_inferred"] is False
    assert s["user_id"] == USER
    assert (s["busy_ms"], s["occupancy"], s["channels_handled"], s["handle_ms"]) == (0, 0.0, 0, 0)


def test_out_of_order_presence_gives_the_same_rows():
    expected = run(SIMPLE)
    for seed in range(5):
        shuffled = list(SIMPLE)
        random.Random(seed).shuffle(shuffled)
        assert run(shuffled) == expected


def test_duplicate_logout_same_id_is_dropped():
    assert run([*SIMPLE, SIMPLE[-1], SIMPLE[0]]) == run(SIMPLE)


def test_repeated_logout_with_another_id_is_absorbed():
    repeated = pres("a5", "2023-09-20T12:05", "LoggedOut")  # same presence, another notification id
    result = run([*SIMPLE, repeated])
    assert result == run(SIMPLE)
    assert result.presence[-1]["start_at"] == us("2023-09-20T12:00")
    assert len(result.presence) == 4


def test_same_type_new_subcategory_starts_an_interval_identical_repeat_does_not():
    events = [
        pres("b1", "2023-09-20T09:00", "ready", presence_id="r1", sub="readyInbound"),
        pres("b2", "2023-09-20T09:30", "ready", presence_id="r1", sub="readyOutbound"),
        pres("b3", "2023-09-20T09:45", "ready", presence_id="r1", sub="readyOutbound"),  # absorbed
        pres("b4", "2023-09-20T09:50", "ready", presence_id="r2", sub="readyOutbound"),  # new presence id
        pres("b5", "2023-09-20T10:00", "loggedOut"),
    ]
    result = run(events)
    assert [(r["presence_subcategory"], r["presence_id"], r["duration_ms"]) for r in result.presence] == [
        ("readyInbound", "r1", 30 * MIN),
        ("readyOutbound", "r1", 20 * MIN),
        ("readyOutbound", "r2", 10 * MIN),
        (None, "p-loggedOut", None),
    ]
    (s,) = result.sessions
    assert s["ready_ms"] == s["duration_ms"] == HOUR


def test_data_starting_mid_session():
    events = [
        pres("c1", "2023-09-20T09:00", "away"),
        pres("c2", "2023-09-20T09:30", "ready"),
        pres("c3", "2023-09-20T10:00", "loggedOut"),
    ]
    (s,) = run(events).sessions
    assert s["login_at"] == us("2023-09-20T09:00")
    assert (s["duration_ms"], s["away_ms"], s["ready_ms"]) == (HOUR, 30 * MIN, 30 * MIN)
    assert s["is_inferred"] is False


def test_never_logging_out_gives_an_open_session_up_to_the_last_known_time():
    events = [pres("d1", "2023-09-20T09:00", "ready"), pres("d2", "2023-09-20T10:00", "away")]
    segments = [
        seg("ch1", 1, "connected", "2023-09-20T10:10", "2023-09-20T10:20"),
        seg("ch1", 2, "wrap", "2023-09-20T10:20", "2023-09-20T10:25"),
        seg("ch2", 0, "alerting", "2023-09-20T10:30", None),  # open: its start is the last known time
    ]
    result = run(events, segments)
    assert result.presence[-1]["presence_type"] == "away" and result.presence[-1]["is_open"]
    (s,) = result.sessions
    assert s["is_open"] is True and s["logout_at"] is None
    assert s["duration_ms"] == 90 * MIN
    assert (s["ready_ms"], s["away_ms"]) == (HOUR, 30 * MIN)  # away 10:00 -> 10:30
    assert (s["talk_ms"], s["wrap_ms"], s["handle_ms"], s["busy_ms"]) == (10 * MIN, 5 * MIN, 15 * MIN, 15 * MIN)
    assert s["channels_handled"] == 1
    assert s["occupancy"] == pytest.approx(15 / 90)

    # Without channel work the open session ends at the last presence event (absorbed repeats count).
    (s,) = run([*events, pres("d3", "2023-09-20T10:40", "away")]).sessions
    assert (s["duration_ms"], s["ready_ms"], s["away_ms"]) == (100 * MIN, HOUR, 40 * MIN)


def test_single_ready_event_is_an_open_zero_length_session():
    result = run([pres("e1", "2023-09-20T09:00", "ready")])
    assert len(result.presence) == 1 and result.presence[0]["is_open"]
    (s,) = result.sessions
    assert (s["duration_ms"], s["occupancy"], s["is_open"]) == (0, 0.0, True)


def test_two_sessions_in_one_day():
    events = [
        pres("f1", "2023-09-20T08:00", "ready"),
        pres("f2", "2023-09-20T12:00", "loggedOut"),
        pres("f3", "2023-09-20T13:00", "ready"),
        pres("f4", "2023-09-20T15:00", "extendedAway"),
        pres("f5", "2023-09-20T17:00", "loggedOut"),
    ]
    segments = [seg("ch1", 0, "connected", "2023-09-20T13:30", "2023-09-20T14:00")]
    s1, s2 = run(events, segments).sessions
    assert (s1["login_at"], s1["logout_at"]) == (us("2023-09-20T08:00"), us("2023-09-20T12:00"))
    assert (s1["duration_ms"], s1["ready_ms"], s1["talk_ms"], s1["channels_handled"]) == (4 * HOUR, 4 * HOUR, 0, 0)
    assert (s2["login_at"], s2["logout_at"]) == (us("2023-09-20T13:00"), us("2023-09-20T17:00"))
    assert (s2["duration_ms"], s2["ready_ms"], s2["extended_away_ms"]) == (4 * HOUR, 2 * HOUR, 2 * HOUR)
    assert (s2["talk_ms"], s2["busy_ms"], s2["channels_handled"]) == (30 * MIN, 30 * MIN, 1)
    assert s2["occupancy"] == pytest.approx(0.125)
    assert s1["session_id"] != s2["session_id"]
    assert s2["session_id"] == "1544:2023-09-20T13:00:00.000000Z"


def test_session_crossing_midnight_is_one_row():
    events = [
        pres("g1", "2023-09-20T22:00", "ready"),
        pres("g2", "2023-09-21T01:00", "away"),
        pres("g3", "2023-09-21T02:00", "loggedOut"),
    ]
    segments = [seg("ch1", 0, "connected", "2023-09-20T23:50", "2023-09-21T00:20")]
    (s,) = run(events, segments).sessions
    assert s["login_at"] == us("2023-09-20T22:00")
    assert (s["duration_ms"], s["ready_ms"], s["away_ms"], s["talk_ms"]) == (4 * HOUR, 3 * HOUR, HOUR, 30 * MIN)


# --- channel work ------------------------------------------------------------------------

LOGIN_9_TO_11 = [pres("h1", "2023-09-20T09:00", "ready"), pres("h2", "2023-09-20T11:00", "loggedOut")]


def test_concurrent_channels_count_busy_once():
    segments = [
        # an email: 09:10 - 09:45
        seg("email", 0, "connected", "2023-09-20T09:10", "2023-09-20T09:40"),
        seg("email", 1, "wrap", "2023-09-20T09:40", "2023-09-20T09:45"),
        # a call overlapping it: 09:20 - 09:52
        seg("call", 0, "alerting", "2023-09-20T09:19", "2023-09-20T09:20"),
        seg("call", 1, "connected", "2023-09-20T09:20", "2023-09-20T09:30"),
        seg("call", 2, "held", "2023-09-20T09:30", "2023-09-20T09:35"),
        seg("call", 3, "connected", "2023-09-20T09:35", "2023-09-20T09:50", started_by="retrieved"),
        seg("call", 4, "wrap", "2023-09-20T09:50", "2023-09-20T09:52"),
        # ignored: the customer side of the call, another agent's channel
        seg("cust", 0, "connected", "2023-09-20T09:20", "2023-09-20T10:50", agent=None, role="customer"),
        seg("other", 0, "connected", "2023-09-20T10:00", "2023-09-20T10:50", agent="999"),
    ]
    (s,) = run(LOGIN_9_TO_11, segments).sessions
    assert s["talk_ms"] == 30 * MIN + 10 * MIN + 15 * MIN
    assert (s["hold_ms"], s["wrap_ms"], s["park_ms"], s["interruption_ms"]) == (5 * MIN, 7 * MIN, 0, 0)
    assert s["handle_ms"] == 67 * MIN
    assert s["busy_ms"] == 42 * MIN  # 09:10 - 09:52, overlap counted once
    assert s["channels_handled"] == 2
    assert s["occupancy"] == pytest.approx(42 / 120)


def test_park_and_interruption_are_busy_and_summed():
    segments = [
        seg("chat", 0, "connected", "2023-09-20T09:00", "2023-09-20T09:10"),
        seg("chat", 1, "parked", "2023-09-20T09:10", "2023-09-20T09:20"),
        seg("chat", 2, "connected", "2023-09-20T09:20", "2023-09-20T09:25", started_by="unparked"),
        seg("chat", 3, "interrupted", "2023-09-20T09:25", "2023-09-20T09:28"),
        seg("chat", 4, "connected", "2023-09-20T09:28", "2023-09-20T09:30", started_by="resumed"),
        seg("chat", 5, "wrap", "2023-09-20T09:30", None),  # open: counted nowhere
    ]
    (s,) = run(LOGIN_9_TO_11, segments).sessions
    assert (s["talk_ms"], s["park_ms"], s["interruption_ms"], s["wrap_ms"]) == (17 * MIN, 10 * MIN, 3 * MIN, 0)
    assert (s["handle_ms"], s["busy_ms"], s["channels_handled"]) == (17 * MIN, 30 * MIN, 1)
    assert s["occupancy"] == pytest.approx(0.25)


def test_channel_spanning_logout_is_clipped_and_the_rest_inferred():
    events = [pres("k1", "2023-09-20T09:00", "ready"), pres("k2", "2023-09-20T10:00", "loggedOut")]
    segments = [
        seg("call", 0, "connected", "2023-09-20T09:50", "2023-09-20T10:05"),
        seg("call", 1, "wrap", "2023-09-20T10:05", "2023-09-20T10:10"),
    ]
    s, inferred = run(events, segments).sessions
    assert (s["talk_ms"], s["wrap_ms"], s["busy_ms"], s["channels_handled"]) == (10 * MIN, 0, 10 * MIN, 1)
    assert s["occupancy"] == pytest.approx(10 / 60)
    assert inferred["is_inferred"] is True and inferred["is_open"] is False
    assert (inferred["login_at"], inferred["logout_at"]) == (us("2023-09-20T10:00"), us("2023-09-20T10:10"))
    assert inferred["session_id"] == "1544:2023-09-20T10:00:00.000000Z:inferred"
    assert (inferred["duration_ms"], inferred["other_presence_ms"], inferred["ready_ms"]) == (10 * MIN, 10 * MIN, 0)
    assert (inferred["talk_ms"], inferred["wrap_ms"], inferred["handle_ms"]) == (5 * MIN, 5 * MIN, 10 * MIN)
    assert (inferred["busy_ms"], inferred["occupancy"], inferred["channels_handled"]) == (10 * MIN, 1.0, 0)
    # nothing lost, nothing counted twice
    assert s["talk_ms"] + inferred["talk_ms"] == 15 * MIN


def test_channel_work_without_presence_is_inferred():
    segments = [
        seg("call", 0, "connected", "2023-09-20T09:00", "2023-09-20T09:10"),
        seg("call", 1, "wrap", "2023-09-20T09:10", "2023-09-20T09:12"),
        seg("email", 0, "connected", "2023-09-20T11:00", "2023-09-20T11:30"),
    ]
    sessions = [{"channel_id": "call", "party_role": "agent", "agent_id": AGENT, "user_id": "u-x", "first_event_at": 1}]
    result = run([], segments, sessions)
    assert result.presence == []
    (s,) = result.sessions
    assert s["is_inferred"] is True and s["is_open"] is False
    assert (s["login_at"], s["logout_at"]) == (us("2023-09-20T09:00"), us("2023-09-20T11:30"))
    assert (s["duration_ms"], s["other_presence_ms"]) == (150 * MIN, 150 * MIN)
    assert (s["talk_ms"], s["wrap_ms"], s["busy_ms"], s["channels_handled"]) == (40 * MIN, 2 * MIN, 42 * MIN, 2)
    assert s["occupancy"] == pytest.approx(42 / 150)
    assert s["user_id"] == "u-x"  # from channel_sessions when presence has none


def test_inferred_work_is_split_after_a_long_idle_stretch():
    segments = [
        seg("d1", 0, "connected", "2023-09-20T09:00", "2023-09-20T10:00"),
        seg("d2", 0, "connected", "2023-09-20T14:00", "2023-09-20T14:30"),  # idle exactly 4 h: same stretch
        seg("d3", 0, "connected", "2023-09-21T09:00", "2023-09-21T09:20"),  # next day
    ]
    a, b = run([], segments).sessions
    assert (a["login_at"], a["duration_ms"], a["talk_ms"]) == (us("2023-09-20T09:00"), 330 * MIN, 90 * MIN)
    assert (b["login_at"], b["duration_ms"], b["talk_ms"]) == (us("2023-09-21T09:00"), 20 * MIN, 20 * MIN)
    (one,) = run([], segments, idle_split_ms=None).sessions
    assert (one["duration_ms"], one["talk_ms"], one["channels_handled"]) == (24 * HOUR + 20 * MIN, 110 * MIN, 3)
    assert len(run([], segments, idle_split_ms=0).sessions) == 3


def test_work_before_first_login_and_between_sessions_is_inferred_per_gap():
    events = [
        pres("m1", "2023-09-20T09:00", "ready"),
        pres("m2", "2023-09-20T10:00", "loggedOut"),
        pres("m3", "2023-09-20T12:00", "ready"),
        pres("m4", "2023-09-20T13:00", "loggedOut"),
    ]
    segments = [
        seg("x", 0, "connected", "2023-09-20T08:40", "2023-09-20T09:05"),  # spans the first login
        seg("y", 0, "connected", "2023-09-20T11:00", "2023-09-20T11:10"),
        seg("z", 0, "wrap", "2023-09-20T11:50", "2023-09-20T12:10"),  # spans the second login
    ]
    rows = run(events, segments).sessions
    assert [(r["is_inferred"], r["login_at"], r["duration_ms"]) for r in rows] == [
        (True, us("2023-09-20T08:40"), 20 * MIN),
        (False, us("2023-09-20T09:00"), HOUR),
        (True, us("2023-09-20T11:00"), HOUR),
        (False, us("2023-09-20T12:00"), HOUR),
    ]
    assert [r["talk_ms"] for r in rows] == [20 * MIN, 5 * MIN, 10 * MIN, 0]
    assert [r["wrap_ms"] for r in rows] == [0, 0, 10 * MIN, 10 * MIN]
    assert [r["channels_handled"] for r in rows] == [1, 0, 1, 0]
    assert rows[2]["busy_ms"] == 20 * MIN and rows[2]["occupancy"] == pytest.approx(1 / 3)


def test_unknown_presence_type_kept_raw_and_counted_as_other():
    events = [
        pres("n1", "2023-09-20T09:00", "Ready"),
        pres("n2", "2023-09-20T09:30", "Training", desc="Training room"),
        pres("n3", "2023-09-20T09:50", "Extended Away"),
        pres("n4", "2023-09-20T10:00", "logged_out"),
    ]
    result = run(events)
    assert [r["presence_type"] for r in result.presence] == ["ready", "Training", "extendedAway", "loggedOut"]
    assert result.presence[1]["presence_description"] == "Training room"
    (s,) = result.sessions
    assert (s["ready_ms"], s["other_presence_ms"], s["extended_away_ms"], s["away_ms"]) == (
        30 * MIN,
        20 * MIN,
        10 * MIN,
        0,
    )
    assert s["ready_ms"] + s["away_ms"] + s["extended_away_ms"] + s["other_presence_ms"] == s["duration_ms"] == HOUR


def test_per_type_times_add_up_with_sub_millisecond_times():
    base = us("2023-09-20T09:00")
    events = [
        Event("/agent", f"q{i}", PRESENCE_TYPE, base + off, AGENT, agent_id=AGENT, presence_type=t)
        for i, (off, t) in enumerate(
            [(999, "ready"), (1_500, "away"), (2_000_001, "ready"), (2_999_999, "x"), (7_000_500, "loggedOut")]
        )
    ]
    (s,) = run(events).sessions
    # ms floored per endpoint: 0 -> 1 -> 2000 -> 2999 -> 7000
    assert (s["ready_ms"], s["away_ms"], s["other_presence_ms"], s["duration_ms"]) == (1 + 999, 1999, 4001, 7000)


# --- odd input ---------------------------------------------------------------------------


def test_empty_input_gives_empty_lists():
    assert run([]) == AgentResult([], [])
    assert sessionize_agent(AGENT, iter(()), iter(())) == ([], [])
    # segments of other agents / customers only
    other = [seg("c", 0, "connected", "2023-09-20T09:00", "2023-09-20T09:05", agent="2")]
    assert run([], other) == ([], [])


def test_logout_as_first_event_and_only_logouts():
    result = run([pres("r1", "2023-09-20T09:00", "loggedOut")])
    assert len(result.presence) == 1 and result.sessions == []
    events = [
        pres("r1", "2023-09-20T09:00", "loggedOut"),
        pres("r2", "2023-09-20T09:10", "ready"),
        pres("r3", "2023-09-20T09:40", "loggedOut"),
    ]
    (s,) = run(events).sessions
    assert (s["login_at"], s["duration_ms"]) == (us("2023-09-20T09:10"), 30 * MIN)


def test_odd_inputs_never_raise():
    events = [
        pres("s1", "2023-09-20T09:00", "ready", user=None),
        pres("s2", "2023-09-20T09:00", "loggedOut"),  # same instant: zero-length session
        Event("/channel", "s3", "channel.connected", us("2023-09-20T09:05"), "ch"),  # not a presence
        pres("s4", "2023-09-20T09:05", "ready", agent="other"),  # another agent
        Event("/agent", "s5", PRESENCE_TYPE, us("2023-09-20T09:06"), AGENT, agent_id=AGENT, presence_type=None),
    ]
    segments = [
        {"party_role": "agent", "agent_id": AGENT},  # no start
        {"party_role": "agent", "agent_id": AGENT, "start_at": "x", "state": "connected"},
        {"party_role": "agent", "agent_id": AGENT, "start_at": us("2023-09-20T09:30"), "end_at": 5, "state": "wrap"},
        {"party_role": "agent", "agent_id": AGENT, "start_at": us("2023-09-20T09:20"), "end_at": None},
        "not a dict",
    ]
    result = run(events, segments)
    assert [r["presence_type"] for r in result.presence] == ["ready", "loggedOut", "unknown"]
    assert [(r["is_inferred"], r["is_open"], r["duration_ms"]) for r in result.sessions] == [
        (False, False, 0),
        (False, True, 24 * MIN),  # open from 09:06 to the inverted segment's start 09:30
    ]


def test_duplicate_segment_copies_count_once_closed_copy_wins():
    segments = [
        seg("call", 0, "connected", "2023-09-20T09:10", None),
        seg("call", 0, "connected", "2023-09-20T09:10", "2023-09-20T09:20"),
        seg("call", 0, "connected", "2023-09-20T09:10", "2023-09-20T09:20"),
    ]
    (s,) = run(LOGIN_9_TO_11, segments).sessions
    assert (s["talk_ms"], s["busy_ms"], s["channels_handled"]) == (10 * MIN, 10 * MIN, 1)


def test_a_segment_without_end_at_reads_as_open():
    """A missing ``end_at`` key is an open segment, as ``end_at: None`` is (no KeyError)."""
    open_seg = seg("call", 0, "connected", "2023-09-20T09:10", None)
    no_key = {k: v for k, v in open_seg.items() if k != "end_at"}
    assert run(LOGIN_9_TO_11, [no_key]) == run(LOGIN_9_TO_11, [open_seg])


def test_with_segments_from_the_channel_core():
    def ch(eid: str, etype: str, t: str) -> Event:
        return Event("/channel", eid, etype, us(t), "call", party_role="agent", agent_id=AGENT, user_id=USER)

    channel = sessionize_channel(
        [
            ch("1", "channel.alerted", "2023-09-20T09:10"),
            ch("2", "channel.connected", "2023-09-20T09:11"),
            ch("3", "channel.held", "2023-09-20T09:15"),
            ch("4", "channel.retrieved", "2023-09-20T09:17"),
            ch("5", "channel.disconnected", "2023-09-20T09:20"),
            ch("6", "channel.wrapstarted", "2023-09-20T09:20"),
            ch("7", "channel.ended", "2023-09-20T09:23"),
        ]
    )
    (s,) = run(LOGIN_9_TO_11, channel.segments, [channel.session]).sessions
    cs = channel.session
    assert (s["talk_ms"], s["hold_ms"], s["wrap_ms"], s["handle_ms"]) == (
        cs["talk_ms"],
        cs["hold_ms"],
        cs["wrap_ms"],
        cs["handle_ms"],
    )
    assert (s["talk_ms"], s["hold_ms"], s["wrap_ms"]) == (7 * MIN, 2 * MIN, 3 * MIN)
    assert (s["busy_ms"], s["channels_handled"]) == (12 * MIN, 1)


# --- invariants on random input -----------------------------------------------------------


def _random_case(rng: random.Random):
    base = us("2023-09-20T00:00")
    types = ["ready", "Away", "extended_away", "loggedOut", "LoggedOut", "Training"]
    events = [
        Event(
            "/agent",
            f"e{i}",
            PRESENCE_TYPE,
            base + rng.randrange(0, 36 * 3600) * 1_000_000 + rng.randrange(1000),
            AGENT,
            agent_id=AGENT,
            presence_type=rng.choice(types),
            presence_id=rng.choice(["p1", "p2"]),
        )
        for i in range(rng.randrange(0, 25))
    ]
    events += rng.sample(events, k=min(3, len(events)))  # duplicates
    segments = []
    for c in range(rng.randrange(0, 12)):
        t = base + rng.randrange(0, 36 * 3600) * 1_000_000
        for seq, state in enumerate(rng.sample(["connected", "held", "parked", "wrap", "alerting"], k=3)):
            d = rng.randrange(0, 3 * 3600) * 1_000_000 + rng.randrange(1000)
            end = None if rng.random() < 0.1 else t + d
            segments.append({"channel_id": f"c{c}", "party_role": "agent", "agent_id": AGENT, "seq": seq,
                             "state": state, "start_at": t, "end_at": end})  # fmt: skip
            if end is None:
                break
            t = end
    return events, segments


@pytest.mark.parametrize("seed", range(40))
def test_random_inputs_keep_the_contracts(seed):
    rng = random.Random(seed)
    events, segments = _random_case(rng)
    result = run(events, segments)
    # every closed millisecond of work lands in exactly one row
    for state, col in [("connected", "talk_ms"), ("held", "hold_ms"), ("parked", "park_ms"), ("wrap", "wrap_ms")]:
        expected = sum(
            s["end_at"] // 1000 - s["start_at"] // 1000 for s in segments if s["state"] == state and s["end_at"]
        )
        assert sum(r[col] for r in result.sessions) == expected
    connected_channels = {s["channel_id"] for s in segments if s["state"] == "connected" and s["end_at"]}
    assert sum(r["channels_handled"] for r in result.sessions) == len(connected_channels)
    # order of arrival does not matter
    rng.shuffle(events)
    rng.shuffle(segments)
    assert run(events, segments) == result


@pytest.mark.parametrize("seed", range(20))
def test_segments_as_work_values_give_the_same_rows_as_row_dicts(seed):
    """The batch job hands the core each segment as values in WORK_SEGMENT_FIELDS order."""
    from transforms.presence import WORK_SEGMENT_FIELDS

    rng = random.Random(seed)
    events, segments = _random_case(rng)
    segments += [{**s, "agent_id": "other"} for s in segments[:2]] + [
        {**s, "party_role": "customer"} for s in segments[2:4]
    ]
    as_values = [tuple(s[f] for f in WORK_SEGMENT_FIELDS) for s in segments]
    expected = sessionize_agent(AGENT, events, segments)
    assert sessionize_agent(AGENT, events, as_values) == expected
    assert sessionize_agent(AGENT, events, [list(v) for v in as_values]) == expected  # as MessagePack gives them
    odd = [v[:-1] for v in as_values] + [(*v, None) for v in as_values] + ["not a segment", 7, None]
    assert sessionize_agent(AGENT, events, as_values + odd) == expected


@pytest.mark.parametrize("seed", range(10))
def test_segments_filtered_once_give_the_same_rows(seed):
    """A shell filters an agent's segments once (agent_segments) and hands them to both cores."""
    from transforms.intervals import agent_intervals
    from transforms.presence import AgentSegments, agent_segments

    rng = random.Random(seed)
    events, segments = _random_case(rng)
    segments += [{**s, "agent_id": "other"} for s in segments[:2]] + [
        {**s, "party_role": "customer"} for s in segments[2:4]
    ]
    usable = agent_segments(AGENT, segments)
    assert isinstance(usable, AgentSegments) and agent_segments(AGENT, usable) is usable
    assert len(usable) <= sum(s["agent_id"] == AGENT and s["party_role"] == "agent" for s in segments)
    expected = sessionize_agent(AGENT, events, segments)
    assert sessionize_agent(AGENT, events, usable) == expected
    step = 15 * MIN
    rows = agent_intervals(AGENT, expected.presence, expected.sessions, segments, interval_ms=step)
    assert agent_intervals(AGENT, expected.presence, expected.sessions, usable, interval_ms=step) == rows
    # another agent's filtered segments are filtered again: none of them is this agent's
    assert agent_segments("other", usable) == []

"""The pure cores' shortcuts against plain statements of their rules, on ANY input.

``transforms.timeline`` and ``transforms.presence`` take shortcuts for speed (a quick
no-copies test in ``dedup``, one pass of local state per channel, session rows filled into
a column template, plain-tuple pieces per agent). Here arbitrary, mostly invalid, inputs
check that:

- ``dedup`` keeps exactly what the plain rule keeps (the least copy by content as text,
  the first of equal ones, ids in first-arrival order) and ``normalize_presence_type``
  folds exactly like a character filter;
- channel and agent rows do not depend on arrival order or exact copies, whatever the
  event types, repeats and ties, and channel rows have the schema's columns in order with
  totals, counts and maxima that are those of their segments.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.outputs import CHANNEL_SEGMENTS, CHANNEL_SESSIONS
from transforms.events import CHANNEL_RANK, PRESENCE_TYPE, Event
from transforms.presence import WORK_SEGMENT_FIELDS, normalize_presence_type, sessionize_agent
from transforms.sessionize import _WORK_SESSION_KEYS, pack_work, unpack_work
from transforms.timeline import dedup, sessionize_channel

ANY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = 1_709_539_200_000_000
HOUR = 3_600_000_000
#: Every channel type, plus odd ones the rules must still absorb as anomalies.
KINDS = sorted(CHANNEL_RANK) + ["held", "channel.bogus", PRESENCE_TYPE]
STATES = ("alerting", "connected", "held", "parked", "interrupted", "wrap")
TOTALS = {"alerting": "alert_ms", "connected": "talk_ms", "held": "hold_ms", "parked": "park_ms"}
TOTALS |= {"interrupted": "interruption_ms", "wrap": "wrap_ms"}
SUSPENDED = {"held": "hold", "parked": "park", "interrupted": "interruption"}


def maybe(values):
    return st.one_of(st.none(), st.sampled_from(values))


@st.composite
def channel_events(draw) -> list[Event]:
    """Distinct (source, id) events of one channel: any types, in any order, with ties."""
    n = draw(st.integers(1, 12))
    return [
        Event(
            "/other" if i % 2 else "/channel",
            f"id{i // 2}",  # some ids repeat under another source: distinct events all the same
            draw(st.sampled_from(KINDS)),
            T0 + draw(st.sampled_from([0, 1, 999, 1_000, 1_500, 60_000_000])) * draw(st.integers(0, 4)),
            "ch",
            interaction_id=draw(maybe(["i1"])),
            conversation_id=draw(maybe(["c1"])),
            party_role=draw(maybe(["agent", "customer"])),
            agent_id=draw(maybe(["7"])),
            user_id=draw(maybe(["u1"])),
            reason=draw(maybe(["released", "busy"])),
        )
        for i in range(n)
    ]


def plain_dedup(events: list[Event]) -> tuple[list[Event], int]:
    """The dedup rule stated plainly: one copy per (source, id), the least by content as text."""
    kept: dict[tuple, Event] = {}
    for ev in events:
        cur = kept.get((ev.source, ev.id))
        text = tuple("" if v is None else str(v) for v in ev)
        if cur is None or text < tuple("" if v is None else str(v) for v in cur):
            kept[(ev.source, ev.id)] = ev
    return list(kept.values()), len(events) - len(kept)


@ANY
@given(channel_events(), st.data())
def test_dedup_keeps_what_the_plain_rule_keeps(events, data):
    changed = [ev._replace(ts=ev.ts + data.draw(st.integers(-2, 2))) for ev in events]  # differing copies
    arrivals = data.draw(st.permutations(events + data.draw(st.lists(st.sampled_from(events + changed)))))
    assert dedup(arrivals) == plain_dedup(arrivals)
    assert dedup(iter(arrivals)) == plain_dedup(arrivals)


@ANY
@given(st.one_of(st.none(), st.text(alphabet=" _-\tAaDdEeLlOoRrTtUuXxYyéß", max_size=16)))
def test_presence_type_folding_is_a_character_filter(raw):
    folded = None if raw is None else "".join(ch for ch in raw if ch not in " _-\t").lower()
    expected = {"ready": "ready", "away": "away", "extendedaway": "extendedAway", "loggedout": "loggedOut"}
    assert normalize_presence_type(raw) == ("unknown" if raw is None else expected.get(folded, raw))


@ANY
@given(channel_events(), st.randoms(use_true_random=False))
def test_channel_rows_on_any_sequence(events, rnd):
    result = sessionize_channel(events)
    s, segs = result.session, result.segments
    assert list(s) == CHANNEL_SESSIONS.names
    assert all(list(seg) == CHANNEL_SEGMENTS.names for seg in segs)

    # Arrival order and exact copies change nothing but the duplicate count.
    copies = [rnd.choice(events) for _ in range(rnd.randrange(4))]
    delivered = events + copies
    rnd.shuffle(delivered)
    again = sessionize_channel(delivered, duplicates=2)
    assert again.segments == segs
    assert again.session == {**s, "duplicate_count": len(copies) + 2}

    # The row's numbers are its segments' numbers.
    assert [seg["seq"] for seg in segs] == list(range(len(segs)))
    closed = [seg for seg in segs if seg["end_at"] is not None]
    assert segs[len(closed) :] == [seg for seg in segs if seg["end_at"] is None]
    assert s["open_state"] == (segs[-1]["state"] if len(closed) < len(segs) else None)
    for state in STATES:
        durations = [seg["duration_ms"] for seg in closed if seg["state"] == state]
        assert s[TOTALS[state]] == sum(durations)
        if state in SUSPENDED:
            assert s[f"{SUSPENDED[state]}_count"] == sum(seg["state"] == state for seg in segs)
            assert s[f"longest_{SUSPENDED[state]}_ms"] == max(durations, default=0)
    assert s["connected_ms"] == s["talk_ms"] + s["hold_ms"] + s["park_ms"] + s["interruption_ms"]
    assert s["handle_ms"] == s["talk_ms"] + s["hold_ms"] + s["wrap_ms"]
    assert s["anomaly_count"] == len(s["anomalies"])
    assert s["event_count"] == len(events)
    assert (s["first_event_at"], s["last_event_at"]) == (min(e.ts for e in events), max(e.ts for e in events))


@st.composite
def agent_inputs(draw) -> tuple[list[Event], list[dict]]:
    """Presence events and segments of agent A (and others'), distinct, with odd values."""
    ptypes = ["ready", "Away", "extended_away", "loggedOut", "LOGGED OUT", "training", None]
    events = [
        Event(
            "/agent",
            f"p{i}",
            PRESENCE_TYPE,
            T0 + draw(st.integers(0, 24)) * HOUR // 2,
            draw(st.sampled_from("AAB")),
            agent_id="A",
            user_id=draw(maybe(["u1"])),
            presence_id=draw(maybe(["x", "y"])),
            presence_type=draw(st.sampled_from(ptypes)),
            presence_subcategory=draw(maybe(["s"])),
        )  # fmt: skip
        for i in range(draw(st.integers(0, 8)))
    ]
    segments = []
    for i in range(draw(st.integers(0, 12))):
        start = T0 + draw(st.integers(0, 24 * HOUR))
        end = draw(st.one_of(st.none(), st.integers(-HOUR, 3 * HOUR).map(lambda d, s=start: s + d)))
        segments.append(
            {
                "channel_id": draw(maybe(["c1", "c2", "c3"])),
                "agent_id": draw(st.sampled_from("AAB")),
                "party_role": draw(st.sampled_from(["agent", "agent", "customer"])),
                "seq": i,
                "state": draw(st.sampled_from(STATES)),
                "start_at": start,
                "end_at": end,
            }
        )
    return events, segments


@ANY
@given(agent_inputs(), st.sampled_from([None, 0, 3_600_000]), st.randoms(use_true_random=False))
def test_agent_rows_on_any_input(inputs, idle_split_ms, rnd):
    events, segments = inputs
    result = sessionize_agent("A", events, segments, idle_split_ms=idle_split_ms)
    delivered_events = events + [rnd.choice(events) for _ in range(rnd.randrange(3))] if events else []
    keyed = [seg for seg in segments if seg["channel_id"] is not None]  # copies of the others count twice
    delivered_segments = segments + [dict(rnd.choice(keyed)) for _ in range(rnd.randrange(3))] if keyed else segments[:]
    rnd.shuffle(delivered_events)
    rnd.shuffle(delivered_segments)
    assert sessionize_agent("A", delivered_events, delivered_segments, idle_split_ms=idle_split_ms) == result


def test_agent_work_unpacks_segments_as_values_and_sessions_as_dicts():
    segments = [tuple(f"{key}{i}" for key in WORK_SEGMENT_FIELDS) for i in range(3)]
    sessions = [tuple(f"{key}0" for key in _WORK_SESSION_KEYS)]
    got = unpack_work(pack_work([(segments, sessions)]))
    assert got == ([list(s) for s in segments], [dict(zip(_WORK_SESSION_KEYS, s, strict=True)) for s in sessions])

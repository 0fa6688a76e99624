"""Channel sessionization: one channel's events in, its session row and segment rows out.

Pure Python (no Beam), the one rule set used by the batch and the streaming pipelines.
Rules (``shared/spec/outputs.md``):

- events are deduplicated on ``(source, id)`` and ordered by event time, ties broken by
  lifecycle position (alerted < connected < held/parked/interrupted < retrieved/unparked/
  resumed < connectionfailed < disconnected < wrapstarted < ended), then by id;
- the timeline is a sequence of non-overlapping states (alerting, connected, held, parked,
  interrupted, wrap); ``disconnected`` closes whatever is open, ``ended`` closes everything;
- every duration total is the sum of the CLOSED segments of its states, so a phase still
  open at the end of the data is not in the totals (the row names it in ``open_state``);
- an event that does not fit the current state is ignored for timing and recorded as an
  anomaly; nothing here raises on odd input.

Durations are whole milliseconds: ``end // 1000 - start // 1000`` on microsecond times, so
segment durations always add up exactly to the session totals.

Rows are value tuples in the column order of :mod:`schemas.outputs` (:data:`SESSION_COLUMNS`,
:data:`SEGMENT_COLUMNS`; :class:`ChannelResult` also gives them as dicts keyed by column
name); timestamps are integers (microseconds since epoch, UTC).

This runs once per channel of every job, so :func:`_walk` keeps everything in local
variables and makes each row exactly once; keep new rules in its one ``if`` chain.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import NamedTuple

from transforms.events import CHANNEL_RANK, FIELD, Event

_SUSPEND = {"held": "held", "parked": "parked", "interrupted": "interrupted"}
_RESUME = {"retrieved": "held", "unparked": "parked", "resumed": "interrupted"}
_CONNECTED_FAMILY = frozenset({"connected", "held", "parked", "interrupted"})
#: Channel columns taken from the first event that carries them.
_FIELDS = ("interaction_id", "conversation_id", "party_role", "agent_id", "user_id")
# Events are read by field index on this path (once per event of every job).
_SOURCE, _EVENT_ID, _TYPE, _TS, _KEY, _REASON = (FIELD[f] for f in ("source", "id", "type", "ts", "key", "reason"))
_ALL_FIELDS = itemgetter(*(FIELD[f] for f in _FIELDS))
_FIELD_GETTERS = tuple(itemgetter(FIELD[f]) for f in _FIELDS)
_ID = itemgetter(_EVENT_ID)
_rank = CHANNEL_RANK.get
#: ``channel_sessions`` columns, in the order of the schema and of a session's value tuple.
SESSION_COLUMNS = (
    "channel_id",
    "interaction_id",
    "conversation_id",
    "party_role",
    "agent_id",
    "user_id",
    "alerted_at",
    "connected_at",
    "disconnected_at",
    "wrap_started_at",
    "ended_at",
    "first_event_at",
    "last_event_at",
    "connection_failed",
    "end_reason",
    "alert_ms",
    "connected_ms",
    "talk_ms",
    "hold_ms",
    "park_ms",
    "interruption_ms",
    "wrap_ms",
    "handle_ms",
    "hold_count",
    "park_count",
    "interruption_count",
    "longest_hold_ms",
    "longest_park_ms",
    "longest_interruption_ms",
    "held_at_disconnect",
    "disconnect_state",
    "is_complete",
    "open_state",
    "event_count",
    "duplicate_count",
    "anomaly_count",
    "anomalies",
)
#: ``channel_segments`` columns, in the order of the schema and of a segment's value tuple.
SEGMENT_COLUMNS = (
    "channel_id",
    "interaction_id",
    "conversation_id",
    "agent_id",
    "party_role",
    "seq",
    "state",
    "start_at",
    "end_at",
    "duration_ms",
    "started_by",
    "ended_by",
)


class ChannelResult(NamedTuple):
    """One channel's rows as value tuples in column order: its session
    (:data:`SESSION_COLUMNS`) and its segments (:data:`SEGMENT_COLUMNS`). The batch job
    writes the tuples as they are; :attr:`session` and :attr:`segments` are the same rows as
    dicts keyed by column name."""

    session_values: tuple
    segment_values: list[tuple]

    @property
    def session(self) -> dict:
        return dict(zip(SESSION_COLUMNS, self.session_values, strict=True))

    @property
    def segments(self) -> list[dict]:
        return [dict(zip(SEGMENT_COLUMNS, segment, strict=True)) for segment in self.segment_values]


def ms_between(start_us: int, end_us: int) -> int:
    """Whole milliseconds between two microsecond times (floored per endpoint)."""
    return end_us // 1000 - start_us // 1000


def _sort_key(ev: Event) -> tuple:
    return ev[_TS], _rank(ev[_TYPE], 99), ev[_EVENT_ID], ev[_SOURCE]


def _content_key(ev: Event) -> tuple:
    return tuple("" if v is None else str(v) for v in ev)


def dedup(events: Iterable[Event]) -> tuple[list[Event], int]:
    """Drop repeated ``(source, id)``; returns the distinct events (in the order their ids
    first arrive) and how many were dropped.

    When copies differ, the same one is kept whatever the arrival order: the least by
    content (fields compared as text, None as ""), the first of equal ones.
    """
    evs = list(events)
    if len(set(map(_ID, evs))) == len(evs):  # distinct ids: nothing to drop (the usual case)
        return evs, 0
    kept: dict[tuple[str, str], Event] = {}
    for ev in evs:
        k = (ev.source, ev.id)
        cur = kept.setdefault(k, ev)
        if cur is not ev and cur != ev and _content_key(ev) < _content_key(cur):
            kept[k] = ev
    return list(kept.values()), len(evs) - len(kept)


def order_channel_events(events: Iterable[Event]) -> list[Event]:
    """Event-time order with the lifecycle tie-break."""
    return sorted(events, key=_sort_key)


def _first_known(events: list[Event]) -> list[str | None]:
    """Per field of :data:`_FIELDS`, its first non-None value along ``events`` (or None)."""
    values = list(_ALL_FIELDS(events[0]))
    if None in values:  # else the usual case: the first event carries them all
        for i, get in enumerate(_FIELD_GETTERS):
            if values[i] is None:
                for v in map(get, events):
                    if v is not None:
                        values[i] = v
                        break
    return values


def sessionize_channel(events: Iterable[Event], duplicates: int = 0) -> ChannelResult:
    """All events of ONE channel (any order, duplicates allowed) to its rows.

    ``duplicates`` adds copies already dropped upstream to the row's ``duplicate_count``.
    """
    distinct, dropped = dedup(events)
    if not distinct:
        raise ValueError("sessionize_channel needs at least one event")
    return _walk(order_channel_events(distinct), dropped + duplicates)


def _walk(ordered: list[Event], duplicate_count: int) -> ChannelResult:
    """The rows of one channel from its distinct events in order (the module docstring's rules)."""
    interaction_id, conversation_id, party_role, agent_id, user_id = _first_known(ordered)
    channel_id = ordered[0][_KEY]
    segments: list[tuple] = []
    anomalies: list[str] = []
    totals = {"alerting": 0, "connected": 0, "held": 0, "parked": 0, "interrupted": 0, "wrap": 0}  # closed segments
    longest = {"held": 0, "parked": 0, "interrupted": 0}  # longest closed segment
    counts = {"held": 0, "parked": 0, "interrupted": 0}  # segments, the open one included
    state: str | None = None  # the open segment: state, start time, starting event type
    start, started_by = 0, ""
    alerted = connected = disconnected = wrapstarted = ended = None  # first time of each milestone
    failed, fail_reason, end_reason, disconnect_state = False, None, None, None

    for ev in ordered:
        t, ts = ev[_TYPE].removeprefix("channel."), ev[_TS]
        if ended is not None:
            anomalies.append(f"{t}_after_ended")
            continue
        # Each rule checks that the event fits; if so it says whether the event closes the
        # open segment and which state it opens, if not the event is only an anomaly.
        closes, opens = False, None
        if t == "alerted":
            if alerted is None and connected is None and state is None and not failed:
                alerted, opens = ts, "alerting"
            else:
                anomalies.append("alerted_out_of_place")
        elif t == "connected":
            if connected is None and disconnected is None and not failed and state in (None, "alerting"):
                connected, closes, opens = ts, True, "connected"
            else:
                anomalies.append("connected_out_of_place")
        elif t in _SUSPEND:
            if state == "connected":
                closes, opens = True, _SUSPEND[t]
            else:
                anomalies.append(f"{t}_while_{state or 'not_connected'}")
        elif t in _RESUME:
            if state == _RESUME[t]:
                closes, opens = True, "connected"
            else:
                anomalies.append(f"{t}_without_{_RESUME[t]}")
        elif t == "connectionfailed":
            if connected is None and not failed and state in (None, "alerting"):
                closes, failed, fail_reason = True, True, ev[_REASON]
            else:
                anomalies.append("connectionfailed_out_of_place")
        elif t == "disconnected":
            if disconnected is None and (state in _CONNECTED_FAMILY or state == "alerting"):
                closes, disconnected, disconnect_state = True, ts, state
            else:
                anomalies.append("disconnected_out_of_place")
        elif t == "wrapstarted":
            if wrapstarted is not None or state == "alerting" or failed:
                anomalies.append("wrapstarted_out_of_place")
            else:
                if state in _CONNECTED_FAMILY:
                    anomalies.append("wrapstarted_without_disconnected")
                    closes = True
                wrapstarted, opens = ts, "wrap"
        elif t == "ended":
            closes, ended, end_reason = True, ts, ev[_REASON]
        else:  # pragma: no cover - the parser only admits known types
            anomalies.append(f"unknown_{t}")

        if closes and state is not None:
            duration = ts // 1000 - start // 1000  # ms_between(start, ts)
            segments.append(  # SEGMENT_COLUMNS
                (
                    channel_id, interaction_id, conversation_id, agent_id, party_role,
                    len(segments), state, start, ts, duration, started_by, t,
                )
            )  # fmt: skip
            totals[state] += duration
            if state in counts:
                counts[state] += 1
                if duration > longest[state]:
                    longest[state] = duration
            state = None
        if opens is not None:
            state, start, started_by = opens, ts, t

    if state is not None:
        segments.append(  # SEGMENT_COLUMNS, the open segment
            (
                channel_id, interaction_id, conversation_id, agent_id, party_role,
                len(segments), state, start, None, None, started_by, None,
            )
        )  # fmt: skip
        if state in counts:
            counts[state] += 1

    talk, hold, park, intr, wrap = (
        totals["connected"],
        totals["held"],
        totals["parked"],
        totals["interrupted"],
        totals["wrap"],
    )
    session = (  # SESSION_COLUMNS
        channel_id, interaction_id, conversation_id, party_role, agent_id, user_id,
        alerted, connected, disconnected, wrapstarted, ended,
        ordered[0][_TS], ordered[-1][_TS],
        failed, end_reason if end_reason is not None else fail_reason,
        totals["alerting"], talk + hold + park + intr, talk, hold, park, intr, wrap, talk + hold + wrap,
        counts["held"], counts["parked"], counts["interrupted"],
        longest["held"], longest["parked"], longest["interrupted"],
        disconnect_state == "held", disconnect_state, ended is not None, state,
        len(ordered), duplicate_count, len(anomalies), anomalies,
    )  # fmt: skip
    return ChannelResult(session, segments)

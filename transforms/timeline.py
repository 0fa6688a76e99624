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

Rows are plain dicts keyed by the column names of :mod:`schemas.outputs`; timestamps are
integers (microseconds since epoch, UTC).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from transforms.events import CHANNEL_RANK, Event

_SUSPEND = {"held": "held", "parked": "parked", "interrupted": "interrupted"}
_RESUME = {"retrieved": "held", "unparked": "parked", "resumed": "interrupted"}
_CONNECTED_FAMILY = frozenset({"connected", "held", "parked", "interrupted"})


class ChannelResult(NamedTuple):
    session: dict
    segments: list[dict]


def ms_between(start_us: int, end_us: int) -> int:
    """Whole milliseconds between two microsecond times (floored per endpoint)."""
    return end_us // 1000 - start_us // 1000


def _sort_key(ev: Event) -> tuple:
    return (ev.ts, CHANNEL_RANK.get(ev.type, 99), ev.id, ev.source)


def _content_key(ev: Event) -> tuple:
    return tuple("" if v is None else str(v) for v in ev)


def dedup(events: Iterable[Event]) -> tuple[list[Event], int]:
    """Drop repeated ``(source, id)``; returns the distinct events and how many were dropped.

    When copies differ, the same one is kept whatever the arrival order.
    """
    kept: dict[tuple[str, str], Event] = {}
    total = 0
    for ev in events:
        total += 1
        k = (ev.source, ev.id)
        cur = kept.get(k)
        if cur is None or (cur != ev and _content_key(ev) < _content_key(cur)):
            kept[k] = ev
    return list(kept.values()), total - len(kept)


def order_channel_events(events: Iterable[Event]) -> list[Event]:
    """Event-time order with the lifecycle tie-break."""
    return sorted(events, key=_sort_key)


class _Timeline:
    def __init__(self, first: Event) -> None:
        self.channel_id = first.key
        self.segments: list[dict] = []
        self.state: str | None = None
        self.start = 0
        self.started_by = ""
        self.anomalies: list[str] = []
        self.at: dict[str, int | None] = dict.fromkeys(("alerted", "connected", "disconnected", "wrapstarted", "ended"))
        self.failed = False
        self.fail_reason: str | None = None
        self.end_reason: str | None = None
        self.disconnect_state: str | None = None

    def open(self, state: str, ts: int, by: str) -> None:
        self.state, self.start, self.started_by = state, ts, by

    def close(self, ts: int, by: str) -> None:
        if self.state is None:
            return
        self.segments.append(
            {
                "seq": len(self.segments),
                "state": self.state,
                "start_at": self.start,
                "end_at": ts,
                "duration_ms": ms_between(self.start, ts),
                "started_by": self.started_by,
                "ended_by": by,
            }
        )
        self.state = None

    def anomaly(self, name: str) -> None:
        self.anomalies.append(name)

    def apply(self, ev: Event) -> None:
        t = ev.type.removeprefix("channel.")
        ts, at, state = ev.ts, self.at, self.state
        if at["ended"] is not None:
            self.anomaly(f"{t}_after_ended")
        elif t == "alerted":
            if at["alerted"] is None and at["connected"] is None and state is None and not self.failed:
                at["alerted"] = ts
                self.open("alerting", ts, t)
            else:
                self.anomaly("alerted_out_of_place")
        elif t == "connected":
            if (
                at["connected"] is None
                and at["disconnected"] is None
                and not self.failed
                and state in (None, "alerting")
            ):
                self.close(ts, t)
                at["connected"] = ts
                self.open("connected", ts, t)
            else:
                self.anomaly("connected_out_of_place")
        elif t in _SUSPEND:
            if state == "connected":
                self.close(ts, t)
                self.open(_SUSPEND[t], ts, t)
            else:
                self.anomaly(f"{t}_while_{state or 'not_connected'}")
        elif t in _RESUME:
            if state == _RESUME[t]:
                self.close(ts, t)
                self.open("connected", ts, t)
            else:
                self.anomaly(f"{t}_without_{_RESUME[t]}")
        elif t == "connectionfailed":
            if at["connected"] is None and not self.failed and state in (None, "alerting"):
                self.close(ts, t)
                self.failed = True
                self.fail_reason = ev.reason
            else:
                self.anomaly("connectionfailed_out_of_place")
        elif t == "disconnected":
            if at["disconnected"] is None and (state in _CONNECTED_FAMILY or state == "alerting"):
                self.disconnect_state = state
                self.close(ts, t)
                at["disconnected"] = ts
            else:
                self.anomaly("disconnected_out_of_place")
        elif t == "wrapstarted":
            if at["wrapstarted"] is not None or state == "alerting" or self.failed:
                self.anomaly("wrapstarted_out_of_place")
            else:
                if state in _CONNECTED_FAMILY:
                    self.anomaly("wrapstarted_without_disconnected")
                    self.close(ts, t)
                at["wrapstarted"] = ts
                self.open("wrap", ts, t)
        elif t == "ended":
            self.close(ts, t)
            at["ended"] = ts
            self.end_reason = ev.reason
        else:  # pragma: no cover - the parser only admits known types
            self.anomaly(f"unknown_{t}")


def _first(events: list[Event], attr: str) -> str | None:
    for ev in events:
        v = getattr(ev, attr)
        if v is not None:
            return v
    return None


def sessionize_channel(events: Iterable[Event], duplicates: int = 0) -> ChannelResult:
    """All events of ONE channel (any order, duplicates allowed) to its rows.

    ``duplicates`` adds copies already dropped upstream to the row's ``duplicate_count``.
    """
    distinct, dropped = dedup(events)
    if not distinct:
        raise ValueError("sessionize_channel needs at least one event")
    ordered = order_channel_events(distinct)
    tl = _Timeline(ordered[0])
    for ev in ordered:
        tl.apply(ev)

    closed = tl.segments
    segments = list(closed)
    if tl.state is not None:
        segments.append(
            {
                "seq": len(segments),
                "state": tl.state,
                "start_at": tl.start,
                "end_at": None,
                "duration_ms": None,
                "started_by": tl.started_by,
                "ended_by": None,
            }
        )

    totals = dict.fromkeys(("alerting", "connected", "held", "parked", "interrupted", "wrap"), 0)
    longest = dict.fromkeys(("held", "parked", "interrupted"), 0)
    counts = dict.fromkeys(("held", "parked", "interrupted"), 0)
    for seg in closed:
        totals[seg["state"]] += seg["duration_ms"]
        if seg["state"] in longest:
            longest[seg["state"]] = max(longest[seg["state"]], seg["duration_ms"])
    for seg in segments:
        if seg["state"] in counts:
            counts[seg["state"]] += 1

    talk, hold, park, intr, wrap = (totals[s] for s in ("connected", "held", "parked", "interrupted", "wrap"))
    attrs = {
        "channel_id": tl.channel_id,
        "interaction_id": _first(ordered, "interaction_id"),
        "conversation_id": _first(ordered, "conversation_id"),
        "party_role": _first(ordered, "party_role"),
        "agent_id": _first(ordered, "agent_id"),
    }
    session = {
        **attrs,
        "user_id": _first(ordered, "user_id"),
        "alerted_at": tl.at["alerted"],
        "connected_at": tl.at["connected"],
        "disconnected_at": tl.at["disconnected"],
        "wrap_started_at": tl.at["wrapstarted"],
        "ended_at": tl.at["ended"],
        "first_event_at": ordered[0].ts,
        "last_event_at": ordered[-1].ts,
        "connection_failed": tl.failed,
        "end_reason": tl.end_reason if tl.end_reason is not None else tl.fail_reason,
        "alert_ms": totals["alerting"],
        "connected_ms": talk + hold + park + intr,
        "talk_ms": talk,
        "hold_ms": hold,
        "park_ms": park,
        "interruption_ms": intr,
        "wrap_ms": wrap,
        "handle_ms": talk + hold + wrap,
        "hold_count": counts["held"],
        "park_count": counts["parked"],
        "interruption_count": counts["interrupted"],
        "longest_hold_ms": longest["held"],
        "longest_park_ms": longest["parked"],
        "longest_interruption_ms": longest["interrupted"],
        "held_at_disconnect": tl.disconnect_state == "held",
        "disconnect_state": tl.disconnect_state,
        "is_complete": tl.at["ended"] is not None,
        "open_state": tl.state,
        "event_count": len(ordered),
        "duplicate_count": dropped + duplicates,
        "anomaly_count": len(tl.anomalies),
        "anomalies": tl.anomalies,
    }
    seg_attrs = {k: attrs[k] for k in ("channel_id", "interaction_id", "conversation_id", "agent_id", "party_role")}
    return ChannelResult(session, [{**seg_attrs, **seg} for seg in segments])

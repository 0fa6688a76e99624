"""The pure channel timeline rules, on hand-made event sequences."""

from __future__ import annotations

import itertools
import random

import pytest

from transforms.events import Event
from transforms.timeline import ms_between, sessionize_channel

T0 = 1_709_539_200_000_000  # 2024-03-04T08:00:00Z in microseconds
_ids = itertools.count()


def ev(kind: str, at_s: float, channel: str = "ch1", role: str = "agent", reason: str | None = None, id_=None) -> Event:
    """A channel event ``at_s`` seconds after T0."""
    return Event(
        "/channel",
        id_ or f"id{next(_ids):06d}",
        f"channel.{kind}",
        T0 + round(at_s * 1_000_000),
        channel,
        interaction_id="int1",
        conversation_id="conv1",
        party_role=role,
        agent_id="1544" if role == "agent" else None,
        user_id="u1" if role == "agent" else None,
        reason=reason,
    )


def states(result) -> list[tuple]:
    return [(s["state"], s["duration_ms"], s["started_by"], s["ended_by"]) for s in result.segments]


def totals(result) -> dict:
    keys = ("alert_ms", "connected_ms", "talk_ms", "hold_ms", "park_ms", "interruption_ms", "wrap_ms", "handle_ms")
    return {k: result.session[k] for k in keys}


def inbound_call() -> list[Event]:
    return [
        ev("alerted", 0),
        ev("connected", 6),
        ev("held", 60),
        ev("retrieved", 90),
        ev("held", 120),
        ev("retrieved", 125.5),
        ev("disconnected", 200),
        ev("wrapstarted", 200),
        ev("ended", 245, reason="released"),
    ]


def test_inbound_agent_channel_with_two_holds_and_wrap():
    r = sessionize_channel(inbound_call())
    assert states(r) == [
        ("alerting", 6000, "alerted", "connected"),
        ("connected", 54000, "connected", "held"),
        ("held", 30000, "held", "retrieved"),
        ("connected", 30000, "retrieved", "held"),
        ("held", 5500, "held", "retrieved"),
        ("connected", 74500, "retrieved", "disconnected"),
        ("wrap", 45000, "wrapstarted", "ended"),
    ]
    assert [s["seq"] for s in r.segments] == list(range(7))
    assert totals(r) == {
        "alert_ms": 6000,
        "connected_ms": 194000,
        "talk_ms": 158500,
        "hold_ms": 35500,
        "park_ms": 0,
        "interruption_ms": 0,
        "wrap_ms": 45000,
        "handle_ms": 239000,
    }
    s = r.session
    assert (s["hold_count"], s["longest_hold_ms"]) == (2, 30000)
    assert s["is_complete"] and s["open_state"] is None and s["end_reason"] == "released"
    assert not s["held_at_disconnect"] and s["disconnect_state"] == "connected"
    assert s["alerted_at"] == T0 and s["connected_at"] == T0 + 6_000_000 and s["ended_at"] == T0 + 245_000_000
    assert (s["event_count"], s["duplicate_count"], s["anomaly_count"], s["anomalies"]) == (9, 0, 0, [])
    assert (s["agent_id"], s["user_id"], s["party_role"], s["interaction_id"]) == ("1544", "u1", "agent", "int1")


def test_inbound_customer_channel_zero_length_alerting_and_simultaneous_end():
    events = [
        ev("alerted", 0, role="customer"),
        ev("connected", 0, role="customer"),
        ev("disconnected", 200, role="customer"),
        ev("ended", 200, role="customer", reason="released"),
    ]
    r = sessionize_channel(list(reversed(events)))
    assert states(r) == [
        ("alerting", 0, "alerted", "connected"),
        ("connected", 200000, "connected", "disconnected"),
    ]
    assert r.session["alert_ms"] == 0 and r.session["talk_ms"] == 200000 and r.session["handle_ms"] == 200000
    assert r.session["agent_id"] is None and r.session["is_complete"]


def test_outbound_customer_rings_after_agent_connects():
    events = [
        ev("alerted", 10, role="customer"),
        ev("connected", 25, role="customer"),
        ev("disconnected", 85, role="customer"),
        ev("ended", 85, role="customer"),
    ]
    r = sessionize_channel(events)
    assert r.session["alert_ms"] == 15000 and r.session["connected_ms"] == 60000


def test_connection_failed():
    r = sessionize_channel(
        [ev("alerted", 0), ev("connectionfailed", 12, reason="rejected"), ev("ended", 12, reason="released")]
    )
    assert states(r) == [("alerting", 12000, "alerted", "connectionfailed")]
    s = r.session
    assert s["connection_failed"] and s["connected_at"] is None and s["is_complete"]
    assert s["alert_ms"] == 12000 and s["connected_ms"] == 0 and s["handle_ms"] == 0
    assert s["end_reason"] == "released"


def test_connection_failed_reason_kept_when_ended_has_none():
    r = sessionize_channel([ev("alerted", 0), ev("connectionfailed", 3, reason="busy"), ev("ended", 3)])
    assert r.session["end_reason"] == "busy"


def test_hold_still_open_at_disconnect_is_closed_by_disconnected():
    events = [
        ev("alerted", 0, role="customer"),
        ev("connected", 0, role="customer"),
        ev("held", 30, role="customer"),
        ev("disconnected", 50, role="customer"),
        ev("ended", 50, role="customer"),
    ]
    r = sessionize_channel(events)
    assert states(r)[-1] == ("held", 20000, "held", "disconnected")
    assert r.session["held_at_disconnect"] and r.session["disconnect_state"] == "held"
    assert r.session["hold_ms"] == 20000 and r.session["longest_hold_ms"] == 20000 and r.session["talk_ms"] == 30000


def test_park_and_interruption_episodes():
    events = [
        ev("connected", 0),
        ev("parked", 100),
        ev("unparked", 400),
        ev("interrupted", 500),
        ev("resumed", 560),
        ev("parked", 600),
        ev("unparked", 650),
        ev("disconnected", 700),
        ev("wrapstarted", 700),
        ev("ended", 730),
    ]
    r = sessionize_channel(events)
    s = r.session
    assert (s["park_count"], s["park_ms"], s["longest_park_ms"]) == (2, 350000, 300000)
    assert (s["interruption_count"], s["interruption_ms"], s["longest_interruption_ms"]) == (1, 60000, 60000)
    assert s["connected_ms"] == 700000 and s["talk_ms"] == 290000
    assert s["handle_ms"] == 290000 + 30000  # park and interruption are not handle time
    assert s["alert_ms"] == 0 and s["alerted_at"] is None
    assert [x[0] for x in states(r)] == [
        "connected",
        "parked",
        "connected",
        "interrupted",
        "connected",
        "parked",
        "connected",
        "wrap",
    ]


def test_simultaneous_events_ordered_by_lifecycle_position():
    # all at the same instant, delivered in the worst order
    events = [
        ev("ended", 5),
        ev("wrapstarted", 5),
        ev("disconnected", 5),
        ev("retrieved", 5),
        ev("held", 5),
        ev("connected", 5),
        ev("alerted", 5),
    ]
    r = sessionize_channel(events)
    assert [(x[0], x[1]) for x in states(r)] == [
        ("alerting", 0),
        ("connected", 0),
        ("held", 0),
        ("connected", 0),
        ("wrap", 0),
    ]
    assert r.session["anomaly_count"] == 0 and r.session["is_complete"]


def test_any_delivery_order_gives_the_same_rows():
    events = inbound_call()
    expected = sessionize_channel(events)
    rng = random.Random(3)
    for _ in range(50):
        rng.shuffle(events)
        assert sessionize_channel(events) == expected


def test_duplicates_dropped_and_counted_whatever_copy_comes_first():
    events = inbound_call()
    copies = [events[2], events[2], events[6]]
    r = sessionize_channel(copies + events)
    assert r.session["duplicate_count"] == 3 and r.session["event_count"] == 9
    assert totals(r) == totals(sessionize_channel(inbound_call()))
    assert sessionize_channel(events, duplicates=4).session["duplicate_count"] == 4


def test_differing_copies_of_one_id_resolve_deterministically():
    a = ev("held", 60, id_="same")
    b = a._replace(ts=a.ts + 1_000_000)
    base = [ev("connected", 0), ev("disconnected", 100), ev("ended", 100)]
    assert sessionize_channel(base + [a, b]) == sessionize_channel([b] + base + [a])


def test_events_after_ended_are_anomalies_not_timing():
    events = inbound_call() + [ev("held", 300), ev("disconnected", 310)]
    r = sessionize_channel(events)
    assert totals(r) == totals(sessionize_channel(inbound_call()))
    assert r.session["anomalies"] == ["held_after_ended", "disconnected_after_ended"]
    assert r.session["anomaly_count"] == 2 and r.session["event_count"] == 11


def test_retrieved_without_held():
    r = sessionize_channel([ev("connected", 0), ev("retrieved", 10), ev("disconnected", 20), ev("ended", 20)])
    assert r.session["anomalies"] == ["retrieved_without_held"]
    assert r.session["talk_ms"] == 20000 and r.session["hold_ms"] == 0 and r.session["hold_count"] == 0


def test_out_of_place_events_never_raise():
    r = sessionize_channel(
        [
            ev("unparked", 0),
            ev("resumed", 1),
            ev("held", 2),
            ev("wrapstarted", 3),
            ev("disconnected", 4),
            ev("connected", 5),
            ev("alerted", 6),
        ]
    )
    assert r.session["anomalies"] == [
        "unparked_without_parked",
        "resumed_without_interrupted",
        "held_while_not_connected",
        "disconnected_out_of_place",
        "connected_out_of_place",
        "alerted_out_of_place",
    ]
    assert r.session["anomaly_count"] == 6
    assert [x[0] for x in states(r)] == ["wrap"]
    assert r.session["open_state"] == "wrap" and not r.session["is_complete"]


def test_channel_that_never_ends_keeps_its_open_phase_out_of_the_totals():
    r = sessionize_channel([ev("alerted", 0), ev("connected", 5), ev("held", 65), ev("retrieved", 95), ev("held", 100)])
    s = r.session
    assert not s["is_complete"] and s["open_state"] == "held" and s["ended_at"] is None
    assert s["hold_count"] == 2 and s["hold_ms"] == 30000 and s["longest_hold_ms"] == 30000
    assert s["talk_ms"] == 60000 + 5000 and s["connected_ms"] == 95000
    last = r.segments[-1]
    assert (last["state"], last["end_at"], last["duration_ms"], last["ended_by"]) == ("held", None, None, None)


def test_agent_still_in_wrap_when_data_ends():
    r = sessionize_channel([ev("connected", 0), ev("disconnected", 60), ev("wrapstarted", 60)])
    assert r.session["open_state"] == "wrap" and r.session["wrap_ms"] == 0 and r.session["handle_ms"] == 60000


def test_disconnected_while_alerting_is_an_abandon_not_an_anomaly():
    r = sessionize_channel(
        [ev("alerted", 0, role="customer"), ev("disconnected", 8, role="customer"), ev("ended", 8, role="customer")]
    )
    assert states(r) == [("alerting", 8000, "alerted", "disconnected")]
    assert (
        r.session["anomaly_count"] == 0
        and r.session["connected_ms"] == 0
        and r.session["disconnect_state"] == "alerting"
    )


def test_wrapstarted_without_disconnect_closes_the_connected_phase():
    r = sessionize_channel([ev("connected", 0), ev("wrapstarted", 30), ev("ended", 40)])
    assert states(r) == [("connected", 30000, "connected", "wrapstarted"), ("wrap", 10000, "wrapstarted", "ended")]
    assert r.session["anomalies"] == ["wrapstarted_without_disconnected"]


@pytest.mark.parametrize(
    ("start", "end", "ms"),
    [(0, 999, 0), (999, 1000, 1), (1_500, 2_499, 1), (T0 + 123, T0 + 1_000_123, 1000), (-1, 0, 1)],
)
def test_ms_between_floors_each_endpoint(start, end, ms):
    assert ms_between(start, end) == ms


def test_sub_millisecond_times_still_add_up():
    events = [
        ev("connected", 0.0004),
        ev("held", 1.0007),
        ev("retrieved", 2.0001),
        ev("disconnected", 3.0009),
        ev("ended", 3.0009),
    ]
    r = sessionize_channel(events)
    assert sum(s["duration_ms"] for s in r.segments) == r.session["connected_ms"] == 3000

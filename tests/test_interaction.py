"""The pure interaction rules, on hand-made channel timelines built through the channel core."""

from __future__ import annotations

import itertools
import random

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.events import CHANNEL_RANK, Event
from transforms.interaction import (
    INFERENCES,
    INTERACTION_COLUMNS,
    SUMMARY_FIELDS,
    channel_summary,
    interaction_key,
    interaction_row,
    interaction_values,
)
from transforms.timeline import sessionize_channel

T0 = 1_709_539_200_000_000  # 2024-03-04T08:00:00Z in microseconds
US = 1_000_000


def at(s: float) -> int:
    return T0 + round(s * US)


def channel(cid: str, role: str | None, steps, agent: str | None = None, **ids) -> tuple:
    """The summary of a channel whose events are ``steps``: ``(kind, seconds after T0[, reason])``."""
    ids = {"interaction_id": "int1", "conversation_id": "conv1", **ids}
    events = [
        Event(
            "/channel",
            f"{cid}-{i}",
            f"channel.{step[0]}",
            at(step[1]),
            cid,
            party_role=role,
            agent_id=agent,
            user_id=None if agent is None else f"u-{agent}",
            reason=step[2] if len(step) > 2 else None,
            **ids,
        )
        for i, step in enumerate(steps)
    ]
    return channel_summary(sessionize_channel(events))


def holds(spans) -> list[tuple]:
    return [step for start, end in spans for step in (("held", start), ("retrieved", end))]


def caller(end: float | None, hold=(), cid: str = "cust", start: float = 0, **ids) -> tuple:
    """An inbound customer channel: alerted and connected at ``start``, hangs up at ``end``
    (None: still on the line when the data ends)."""
    steps = [("alerted", start), ("connected", start), *holds(hold)]
    steps += [("disconnected", end), ("ended", end, "released")] if end is not None else []
    return channel(cid, "customer", steps, **ids)


def leg(cid: str, agent: str | None, alert: float, connect: float, disconnect: float, end: float, hold=(), **ids):
    """An agent channel that answers: alerted, connected, disconnected, wrap until ``end``."""
    steps = [("alerted", alert), ("connected", connect), *holds(hold), ("disconnected", disconnect)]
    steps += [("wrapstarted", disconnect), ("ended", end, "released")]
    return channel(cid, "agent", steps, agent, **ids)


def offer(cid: str, agent: str, alert: float, fail: float | None, reason: str = "rejected") -> tuple:
    """An agent channel that rings and fails at ``fail`` (None: still ringing when the data ends)."""
    steps = [("alerted", alert)]
    steps += [("connectionfailed", fail, reason), ("ended", fail, reason)] if fail is not None else []
    return channel(cid, "agent", steps, agent)


def pick(row: dict, *columns: str) -> dict:
    return {c: row[c] for c in columns}


HANDOFFS = ("transfers", "blind_transfers", "warm_transfers", "consults", "conferences")


def handoffs(row: dict) -> tuple:
    return tuple(row[c] for c in HANDOFFS)


def test_columns_are_the_schema_and_summaries_are_value_tuples():
    from schemas.outputs import INTERACTIONS

    assert list(INTERACTION_COLUMNS) == INTERACTIONS.names
    summary = caller(10)
    assert len(summary) == len(SUMMARY_FIELDS)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(summary)) == list(summary)


def test_inbound_answered_first_try():
    row = interaction_row(
        [
            leg("ag1", "a1", 10, 16, 200, 245, hold=[(60, 90)]),
            caller(200, hold=[(60, 90)]),
        ]
    )
    assert row == {
        "interaction_id": "int1",
        "conversation_id": "conv1",
        "started_at": T0,
        "ended_at": at(245),
        "last_event_at": at(245),
        "duration_ms": 245_000,
        "is_complete": True,
        "customer_channels": 1,
        "agent_channels": 1,
        "distinct_agents": 1,
        "direction": "inbound",
        "outcome": "answered",
        "offers": 1,
        "first_offered_at": at(10),
        "answered_at": at(16),
        "time_to_answer_ms": 16_000,
        "wait_before_offer_ms": 10_000,
        "ring_ms": 6_000,
        "abandon_ms": None,
        "transfers": 0,
        "blind_transfers": 0,
        "warm_transfers": 0,
        "consults": 0,
        "conferences": 0,
        "agent_path": ["a1"],
        "first_agent_id": "a1",
        "final_agent_id": "a1",
        "talk_ms": 154_000,
        "hold_ms": 30_000,
        "park_ms": 0,
        "interruption_ms": 0,
        "wrap_ms": 45_000,
        "handle_ms": 229_000,
        "customer_hold_ms": 30_000,
        "customer_hold_count": 1,
        "hold_abandon": False,
        "anomaly_count": 0,
        "inference": ["direction"],
    }


def test_answered_after_a_rejected_offer():
    row = interaction_row([caller(300), offer("ag1", "a1", 10, 25), leg("ag2", "a2", 30, 35.5, 300, 330)])
    assert pick(row, "outcome", "offers", "first_offered_at", "answered_at", "time_to_answer_ms", "ring_ms") == {
        "outcome": "answered",
        "offers": 2,
        "first_offered_at": at(10),
        "answered_at": at(35.5),
        "time_to_answer_ms": 35_500,
        "ring_ms": 5_500,
    }
    assert (row["agent_path"], row["distinct_agents"], row["agent_channels"]) == (["a2"], 2, 2)
    assert handoffs(row) == (0, 0, 0, 0, 0) and row["abandon_ms"] is None


def test_abandoned_before_offer():
    row = interaction_row([caller(42.5)])
    assert pick(row, "direction", "outcome", "abandon_ms", "offers", "answered_at", "ring_ms", "duration_ms") == {
        "direction": "inbound",
        "outcome": "abandoned_before_offer",
        "abandon_ms": 42_500,
        "offers": 0,
        "answered_at": None,
        "ring_ms": None,
        "duration_ms": 42_500,
    }
    # an agent alerted only after the caller hung up was not offered the caller
    late_offer = interaction_row([caller(42.5), offer("ag1", "a1", 43, 44)])
    assert (late_offer["outcome"], late_offer["abandon_ms"], late_offer["offers"]) == (
        "abandoned_before_offer",
        42_500,
        1,
    )


def test_abandoned_while_alerting():
    # the network ends the ring at the hang-up (same instant): the offer was still alerting
    row = interaction_row([caller(30), offer("ag1", "a1", 20, 30, "noAnswer")])
    assert (row["outcome"], row["abandon_ms"], row["wait_before_offer_ms"], row["is_complete"]) == (
        "abandoned_while_alerting",
        30_000,
        20_000,
        True,
    )
    # the agent channel still rings when the data ends
    cut = interaction_row([caller(30), offer("ag1", "a1", 20, None)])
    assert (cut["outcome"], cut["is_complete"], cut["ended_at"], cut["duration_ms"]) == (
        "abandoned_while_alerting",
        False,
        None,
        None,
    )
    # offered at the very instant of the hang-up
    tie = interaction_row([caller(30), offer("ag1", "a1", 30, 31)])
    assert tie["outcome"] == "abandoned_while_alerting"


def test_abandoned_after_offer():
    row = interaction_row([caller(40), offer("ag1", "a1", 10, 22), offer("ag2", "a2", 25, 29.999)])
    assert pick(row, "outcome", "abandon_ms", "offers", "first_offered_at", "answered_at") == {
        "outcome": "abandoned_after_offer",
        "abandon_ms": 40_000,
        "offers": 2,
        "first_offered_at": at(10),
        "answered_at": None,
    }
    assert row["agent_path"] == [] and row["first_agent_id"] is None and row["final_agent_id"] is None


def test_a_caller_hanging_up_on_hold_is_a_hold_abandon():
    steps = [("alerted", 0), ("connected", 0), ("held", 50), ("disconnected", 80), ("ended", 80)]
    row = interaction_row([channel("cust", "customer", steps), leg("ag1", "a1", 5, 8, 80, 90, hold=[(50, 79)])])
    assert (row["outcome"], row["hold_abandon"], row["customer_hold_count"], row["customer_hold_ms"]) == (
        "answered",
        True,
        1,
        30_000,
    )


def test_blind_transfer_also_at_exactly_the_first_agents_end():
    for start in (100, 104.5):
        row = interaction_row([caller(300), leg("ag1", "a1", 5, 10, 100, 130), leg("ag2", "a2", 99, start, 300, 320)])
        assert handoffs(row) == (1, 1, 0, 0, 0), start
        assert (row["agent_path"], row["first_agent_id"], row["final_agent_id"]) == (["a1", "a2"], "a1", "a2")
        assert row["answered_at"] == at(10) and row["wrap_ms"] == 50_000


def test_warm_transfer_with_the_caller_on_hold_during_the_consult():
    row = interaction_row(
        [
            caller(300, hold=[(95, 120)]),
            leg("ag1", "a1", 5, 10, 120, 150, hold=[(95, 100)]),
            leg("ag2", "a2", 98, 100, 300, 310),
        ]
    )
    assert handoffs(row) == (1, 0, 1, 1, 0)
    assert row["final_agent_id"] == "a2"


def test_consult_that_returns_to_the_first_agent():
    row = interaction_row(
        [
            caller(300, hold=[(95, 155)]),
            leg("ag1", "a1", 5, 10, 300, 330, hold=[(95, 100)]),
            leg("ag2", "a2", 98, 100, 150, 160),
        ]
    )
    assert handoffs(row) == (0, 0, 0, 1, 0)
    assert (row["agent_path"], row["first_agent_id"], row["final_agent_id"]) == (["a1", "a2"], "a1", "a1")


def test_conference_and_its_one_millisecond_threshold():
    a1, a2 = leg("ag1", "a1", 5, 10, 300, 330), leg("ag2", "a2", 98, 100, 150, 160)
    assert handoffs(interaction_row([caller(300), a1, a2])) == (0, 0, 0, 1, 1)
    # a warm transfer that was a conference first (A leaves, B stays with the caller)
    a1_leaves = leg("ag1", "a1", 5, 10, 200, 230)
    assert handoffs(interaction_row([caller(300), a1_leaves, leg("ag2", "a2", 98, 100, 300, 310)])) == (1, 0, 1, 1, 1)
    # the caller is back from hold 1 ms (floored per endpoint) before the consult ends: a conference
    assert handoffs(interaction_row([caller(300, hold=[(95, 149.999)]), a1, a2])) == (0, 0, 0, 1, 1)
    # back exactly when it ends, or 0.9 ms before within the same millisecond: none
    assert handoffs(interaction_row([caller(300, hold=[(95, 150)]), a1, a2])) == (0, 0, 0, 1, 0)
    a2_sub_ms = leg("ag2", "a2", 98, 100, 150.0009, 160)
    assert handoffs(interaction_row([caller(300, hold=[(95, 150)]), a1, a2_sub_ms])) == (0, 0, 0, 1, 0)


def test_transfer_chain_over_three_agents():
    row = interaction_row(
        [
            caller(300),
            leg("ag1", "a1", 5, 10, 100, 110),
            leg("ag2", "a2", 101, 105, 200, 230),
            leg("ag3", "a3", 170, 180, 300, 330),
        ]
    )
    assert handoffs(row) == (2, 1, 1, 1, 1)
    assert (row["agent_path"], row["final_agent_id"], row["distinct_agents"]) == (["a1", "a2", "a3"], "a3", 3)
    assert row["handle_ms"] == sum(ms for ms in (90_000 + 10_000, 95_000 + 30_000, 120_000 + 30_000))


def test_a_consult_is_paired_with_the_agent_still_connected_not_an_earlier_consult():
    # a1 consults a2 (who leaves), later hands the caller to a3 with a consult: a warm
    # transfer from a1, not a blind one from a2 (who was gone when a3 connected)
    row = interaction_row(
        [
            caller(300),
            leg("ag1", "a1", 5, 10, 250, 260),
            leg("ag2", "a2", 45, 50, 80, 90),
            leg("ag3", "a3", 195, 200, 300, 310),
        ]
    )
    assert handoffs(row) == (1, 0, 1, 2, 2)
    assert (row["agent_path"], row["final_agent_id"]) == (["a1", "a2", "a3"], "a3")


def test_the_same_agent_twice_is_once_in_the_path():
    row = interaction_row([caller(300), leg("ag1", "a1", 5, 10, 100, 110), leg("ag2", "a1", 150, 155, 300, 310)])
    assert (row["agent_path"], row["distinct_agents"], row["blind_transfers"]) == (["a1"], 1, 1)


def test_outbound_connected():
    agent_leg = leg("ag1", "a1", 0, 1, 90, 120)
    callee = channel("cust", "customer", [("alerted", 2), ("connected", 12.25), ("disconnected", 90), ("ended", 90)])
    for channels in ([agent_leg, callee], [callee, agent_leg]):
        row = interaction_row(channels)
        assert pick(row, "direction", "outcome", "answered_at", "time_to_answer_ms", "ring_ms", "first_offered_at") == {
            "direction": "outbound",
            "outcome": "connected",
            "answered_at": at(12.25),
            "time_to_answer_ms": 12_250,
            "ring_ms": 10_250,
            "first_offered_at": None,
        }
        assert (row["wait_before_offer_ms"], row["abandon_ms"], row["offers"], row["inference"]) == (
            None,
            None,
            1,
            ["direction"],
        )


def test_outbound_failed_and_in_progress():
    agent_leg = leg("ag1", "a1", 0, 1, 21, 30)
    busy = channel("cust", "customer", [("alerted", 2), ("connectionfailed", 20, "busy"), ("ended", 20, "busy")])
    row = interaction_row([agent_leg, busy])
    assert (row["direction"], row["outcome"], row["answered_at"], row["ring_ms"], row["is_complete"]) == (
        "outbound",
        "failed",
        None,
        None,
        True,
    )
    ringing = channel("cust", "customer", [("alerted", 2)])
    dialing = channel("ag1", "agent", [("alerted", 0), ("connected", 1)], "a1")
    row = interaction_row([dialing, ringing])
    assert (row["outcome"], row["is_complete"], row["agent_path"]) == ("in_progress", False, ["a1"])


def test_internal():
    row = interaction_row([leg("ag1", "a1", 0, 1, 60, 70), leg("ag2", "a2", 2, 5, 60, 80)])
    assert pick(row, "direction", "outcome", "answered_at", "time_to_answer_ms", "first_offered_at", "offers") == {
        "direction": "internal",
        "outcome": "internal",
        "answered_at": None,
        "time_to_answer_ms": None,
        "first_offered_at": None,
        "offers": 2,
    }
    # an agent-to-agent call hands no customer on: no consult, though the two legs overlap
    assert handoffs(row) == (0, 0, 0, 0, 0) and row["customer_channels"] == 0
    assert (row["agent_path"], row["first_agent_id"], row["final_agent_id"]) == (["a1", "a2"], "a1", "a2")
    refused = interaction_row([offer("ag1", "a1", 0, 12, "rejected")])
    assert (refused["direction"], refused["outcome"], refused["offers"], refused["agent_path"]) == (
        "internal",
        "internal",
        1,
        [],
    )


def test_a_channel_cut_off_or_missing_leaves_the_interaction_in_progress():
    ringing = interaction_row([caller(None), offer("ag1", "a1", 10, None)])
    assert pick(ringing, "outcome", "is_complete", "ended_at", "duration_ms", "first_offered_at", "last_event_at") == {
        "outcome": "in_progress",
        "is_complete": False,
        "ended_at": None,
        "duration_ms": None,
        "first_offered_at": at(10),
        "last_event_at": at(10),
    }
    # the caller's disconnect and end were lost: an offer failed, the caller is still there
    lost_end = interaction_row([caller(None), offer("ag1", "a1", 10, 20)])
    assert (lost_end["outcome"], lost_end["is_complete"], lost_end["abandon_ms"]) == ("in_progress", False, None)
    # answered, the agent still in wrap when the data ends
    wrap = channel("ag1", "agent", [("alerted", 5), ("connected", 8), ("disconnected", 60), ("wrapstarted", 60)], "a1")
    row = interaction_row([caller(60), wrap])
    assert (row["outcome"], row["is_complete"], row["ended_at"], row["wrap_ms"], row["talk_ms"]) == (
        "answered",
        False,
        None,
        0,
        52_000,
    )
    # the customer channel is missing altogether: only agents, so internal (the row cannot know)
    alone = interaction_row([leg("ag1", "a1", 5, 8, 60, 70)])
    assert (alone["direction"], alone["outcome"]) == ("internal", "internal")


def test_ties_at_the_same_millisecond():
    # customer and agent channels start together: the customer is first (inbound), and named
    row = interaction_row([leg("ag1", "a1", 0, 0, 60, 70), caller(60)])
    assert (row["direction"], row["time_to_answer_ms"], row["inference"]) == (
        "inbound",
        0,
        ["direction", "direction_tie"],
    )
    # two agents connect at the same instant: channel order (first event, then channel id)
    x, y = leg("chX", "a9", 10, 12, 60, 70), leg("chY", "a1", 10, 12, 50, 70)
    for channels in itertools.permutations([caller(60), x, y]):
        row = interaction_row(channels)
        assert (row["agent_path"], row["final_agent_id"], row["answered_at"], row["ring_ms"]) == (
            ["a9", "a1"],
            "a9",
            at(12),
            2000,
        )
        assert handoffs(row) == (0, 0, 0, 1, 1)
    # equal ends: the later phase is the final agent; ending together is no transfer
    z = leg("chZ", "a1", 10, 30, 60, 70)
    row = interaction_row([caller(60), x, z])
    assert (row["final_agent_id"], handoffs(row)) == ("a1", (0, 0, 0, 1, 1))


def test_channels_in_any_order_give_the_same_row():
    channels = [
        caller(300, hold=[(95, 120)]),
        offer("ag0", "a0", 3, 5),
        leg("ag1", "a1", 5, 10, 120, 150, hold=[(95, 100)]),
        leg("ag2", "a2", 98, 100, 200, 230),
        leg("ag3", "a3", 200, 200, 300, 320),
    ]
    row = interaction_values(channels)
    assert all(interaction_values(p) == row for p in itertools.permutations(channels))
    row = interaction_row(channels)
    assert handoffs(row) == (2, 1, 1, 1, 0) and row["offers"] == 4


def test_disagreeing_channels_are_named_and_counted_never_raised():
    row = interaction_row(
        [
            caller(300, conversation_id="conv1"),
            leg("ag1", None, 5, 10, 100, 110, conversation_id="conv2"),
            leg("ag2", "a2", 101, 105, 300, 310),
        ]
    )
    assert (row["conversation_id"], row["anomaly_count"]) == ("conv1", 2)
    assert row["inference"] == ["direction", "conversation_id_conflict", "agent_id_missing"]
    assert (row["agent_path"], row["first_agent_id"], row["distinct_agents"], row["blind_transfers"]) == (
        ["a2"],
        "a2",
        1,
        1,
    )
    # the earliest channel without conversation id: the next one's is kept, no conflict
    row = interaction_row([caller(30, conversation_id=None), offer("ag1", "a1", 10, 20)])
    assert (row["conversation_id"], row["inference"], row["anomaly_count"]) == ("conv1", ["direction"], 0)


def test_a_channel_without_interaction_id_is_its_own_interaction():
    summary = caller(30, cid="lonely", interaction_id=None, conversation_id=None)
    assert interaction_key(summary) == "lonely"
    row = interaction_row([summary])
    assert (row["interaction_id"], row["conversation_id"], row["outcome"]) == ("lonely", None, "abandoned_before_offer")
    assert row["inference"] == ["direction", "interaction_id_missing"] and row["anomaly_count"] == 0
    assert interaction_key(caller(30)) == "int1"


def test_other_odd_inputs():
    # channels naming two interaction ids (streaming groups by the key it announced)
    other = channel(
        "ag1", "agent", [("alerted", 10), ("connectionfailed", 20), ("ended", 20)], "a1", interaction_id="int2"
    )
    row = interaction_row([caller(30), other])
    assert (row["interaction_id"], row["anomaly_count"], row["inference"]) == (
        "int1",
        1,
        ["direction", "interaction_id_conflict"],
    )
    # a customer-side role other than "customer", and none at all
    row = interaction_row([channel("c", None, [("alerted", 0), ("connected", 0)]), caller(5, cid="c2")])
    assert row["inference"] == ["direction", "customer_role"] and row["customer_channels"] == 2
    # two different summaries of one channel: one kept (the same whatever the order), counted
    full, cut = leg("ag1", "a1", 5, 10, 100, 110), channel("ag1", "agent", [("alerted", 5)], "a1")
    rows = [interaction_values(p) for p in itertools.permutations([caller(100), full, cut, full])]
    assert all(r == rows[0] for r in rows)
    row = dict(zip(INTERACTION_COLUMNS, rows[0], strict=True))
    assert "channel_conflict" in row["inference"] and row["anomaly_count"] == 1 and row["agent_channels"] == 1
    # out-of-place events of the channels add up; a channel that is only an `ended`
    odd = channel("ag1", "agent", [("retrieved", 1), ("ended", 2), ("held", 3)], "a1")
    row = interaction_row([caller(10), odd])
    assert (row["anomaly_count"], row["outcome"], row["is_complete"]) == (2, "abandoned_before_offer", True)
    with pytest.raises(ValueError):
        interaction_values([])


# --- properties ------------------------------------------------------------------------

KINDS = sorted(k.removeprefix("channel.") for k in CHANNEL_RANK)
ROLES = ("agent", "customer", None, "agent")


@st.composite
def interactions(draw) -> list[tuple]:
    """1 to 5 channels of one interaction, each a random sequence of any channel events
    (valid lifecycles and odd ones alike) at times with frequent ties."""
    n = draw(st.integers(1, 5))
    summaries = []
    for i in range(n):
        role = draw(st.sampled_from(ROLES))
        agent = draw(st.sampled_from(("a1", "a2", None))) if role == "agent" else None
        times = st.integers(0, 40).map(lambda t: t / 4)
        steps = draw(st.lists(st.tuples(st.sampled_from(KINDS), times), min_size=1, max_size=9))
        conversation = draw(st.sampled_from(("conv1", "conv1", "conv2", None)))
        summaries.append(channel(f"ch{i}", role, steps, agent, conversation_id=conversation))
    return summaries


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interactions(), st.randoms(use_true_random=False))
def test_order_copies_and_a_shuffle_change_nothing(channels, rnd: random.Random):
    row = interaction_values(channels)
    shuffled = channels + rnd.sample(channels, rnd.randint(0, len(channels)))
    rnd.shuffle(shuffled)
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(shuffled))  # the batch shuffle's lists
    assert interaction_values(shuffled) == row
    assert interaction_values(decoded) == row
    r = dict(zip(INTERACTION_COLUMNS, row, strict=True))
    assert r["transfers"] == r["blind_transfers"] + r["warm_transfers"]
    assert r["consults"] >= max(r["warm_transfers"], r["conferences"])
    assert (r["ended_at"] is not None) == r["is_complete"] == (r["duration_ms"] is not None)
    assert (r["abandon_ms"] is not None) == r["outcome"].startswith("abandoned")
    assert r["handle_ms"] == r["talk_ms"] + r["hold_ms"] + r["wrap_ms"]
    assert r["time_to_answer_ms"] is None or r["time_to_answer_ms"] >= 0
    assert r["distinct_agents"] <= r["agent_channels"] and r["offers"] <= r["agent_channels"]
    assert r["inference"][0] == "direction" and set(r["inference"]) <= set(INFERENCES)
    assert r["customer_channels"] + r["agent_channels"] == len({c[0] for c in channels})

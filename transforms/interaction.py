"""Interaction rules: the channel results of ONE interaction in, its ``interactions`` row out.

Pure Python (no Beam), the one rule set used by the batch and the streaming pipelines.
Input is one :data:`SUMMARY_FIELDS` value sequence per channel, made from the channel
core's result by :func:`channel_summary` (a tuple, or the list MessagePack gives back);
the row is a value tuple in :data:`INTERACTION_COLUMNS` order (:func:`interaction_values`)
or a dict (:func:`interaction_row`). Times are integer microseconds (UTC), durations whole
milliseconds ``end // 1000 - start // 1000`` (:func:`transforms.timeline.ms_between`).
Rules (``shared/spec/outputs.md``, "Interaction tables"; README "Interactions"):

Channels
    - A channel is an agent channel when its party role is ``agent``; every other channel,
      a missing role included, is customer-side ("customer").
    - Channels are taken in any order and ordered by ``(first_event_at, customer before
      agent, channel_id)``: the "earliest channel" and every tie below follow this order.
      Exact copies of a channel summary count once; two different summaries of one channel
      id keep the least (by content, compared as JSON) and count as a disagreement.

Identity and times
    - ``interaction_id`` / ``conversation_id``: the earliest channel's that has one. A channel
      without an interaction id is its own interaction, named by its channel id
      (``interaction_id_missing``). Channels naming another id than the kept one are
      disagreements (``interaction_id_conflict``, ``conversation_id_conflict``).
    - ``started_at`` = earliest first event; ``last_event_at`` = latest last event;
      ``is_complete`` = every channel saw ``ended``; ``ended_at`` = latest ``ended_at`` and
      ``duration_ms``, both only when complete.

Direction
    - ``inbound`` when the earliest channel is a customer channel (at equal times the
      customer is earlier: ``direction_tie`` in ``inference``), ``outbound`` when it is an
      agent channel and a customer channel exists, ``internal`` without customer channel.

Answer and offers
    - ``offers``: agent channels that alerted (any direction; on outbound the dialing
      agent's own leg is one). Inbound: ``first_offered_at`` = earliest agent
      ``alerted_at``, ``answered_at`` = earliest agent ``connected_at``; outbound:
      ``answered_at`` = earliest customer ``connected_at`` (no offer columns); internal:
      neither. ``time_to_answer_ms = answered_at - started_at``, ``wait_before_offer_ms =
      first_offered_at - started_at``, ``ring_ms`` = ``alert_ms`` of the answering channel.

Outcome
    - The customer leaves at the first customer channel's ``disconnected_at`` (the hang-up),
      else its ``ended_at``; not at all while it has neither.
    - Inbound: ``answered`` when an agent channel connected; else, once the customer left:
      ``abandoned_before_offer`` when no agent channel alerted at or before the leave,
      ``abandoned_while_alerting`` when one alerted then and its alerting lasted at least
      until the leave (still open, or closed at the same instant or later: the ring the
      hang-up ended), else ``abandoned_after_offer`` (rejected or failed offers);
      ``in_progress`` while the customer has not left. ``abandon_ms`` = leave -
      ``started_at`` for the abandoned outcomes.
    - Outbound: ``connected`` when a customer channel connected, ``failed`` when every
      customer channel failed, disconnected or ended without connecting, else
      ``in_progress``. Internal: ``internal``.

Hand-offs
    - Connected phases of the agent channels: from ``connected_at`` to the first of
      ``disconnected_at``, ``wrap_started_at``, ``ended_at`` (open while none), half-open,
      in order of ``connected_at`` (ties: channel order).
    - Each phase B after the first is paired with the phase it took the contact from: the
      latest earlier phase still connected when B starts (its end after B's start); if
      none is, the previous phase, and B is a ``blind`` transfer (B starting exactly at
      A's end included). With an overlap it is a consult; a ``warm`` transfer as well when
      A ends first (A ended while B is open or ends later; ending together is no
      transfer); a conference as well when a customer channel is in state ``connected``
      for at least 1 ms (floored per endpoint) during the overlap ``[B start, first of
      the two ends)``. Internal interactions (no customer channel) have no hand-offs: a
      call between two agents hands no customer on (as Genesys Cloud's ``nConsult`` and
      ``nTransferred`` count customer conversations only).
    - ``agent_path``: agent ids in phase order, each once; ``first_agent_id`` its first;
      ``final_agent_id`` the agent of the phase that ends last (open phases last, ties:
      the later phase): after a consult that returns to the first agent, the first
      agent. Agent channels without agent id are in no agent column
      (``agent_id_missing``).

Totals and data quality
    - ``talk_ms`` ... ``handle_ms`` sum the agent channels, ``customer_hold_ms`` /
      ``customer_hold_count`` the customer channels; ``hold_abandon``: a customer channel
      disconnected while held.
    - ``anomaly_count`` = the channels' anomalies + one per disagreeing channel (a conflicting
      interaction or conversation id, an agent channel without agent id, a conflicting
      copy). ``inference`` names, in this order: ``direction`` (always: the payload has none),
      ``direction_tie``, ``customer_role`` (a customer-side role other than ``customer``),
      ``interaction_id_missing``, ``interaction_id_conflict``, ``conversation_id_conflict``,
      ``agent_id_missing``, ``channel_conflict``.

Nothing here raises on odd input but an empty channel list.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from operator import itemgetter

from transforms.timeline import SEGMENT_COLUMNS, SESSION_COLUMNS, ChannelResult, ms_between

#: What the interaction core reads of one channel: these session columns, then
#: ``alert_end`` (end of its alerting segment; None if it never alerted or still alerts)
#: and ``connected_spans`` (customer channels: start, end, start, end... of their
#: ``connected`` segments, end None while open; agent channels: empty).
SUMMARY_FIELDS = (
    "channel_id",
    "interaction_id",
    "conversation_id",
    "party_role",
    "agent_id",
    "alerted_at",
    "connected_at",
    "disconnected_at",
    "wrap_started_at",
    "ended_at",
    "first_event_at",
    "last_event_at",
    "connection_failed",
    "alert_ms",
    "talk_ms",
    "hold_ms",
    "park_ms",
    "interruption_ms",
    "wrap_ms",
    "handle_ms",
    "hold_count",
    "held_at_disconnect",
    "is_complete",
    "anomaly_count",
    "alert_end",
    "connected_spans",
)
(
    _CHANNEL, _INTERACTION, _CONVERSATION, _ROLE, _AGENT, _ALERTED, _CONNECTED, _DISCONNECTED, _WRAP, _ENDED,
    _FIRST, _LAST, _FAILED, _ALERT_MS, _TALK, _HOLD, _PARK, _INTR, _WRAP_MS, _HANDLE, _HOLD_COUNT,
    _HELD_AT_DISCONNECT, _COMPLETE, _ANOMALIES, _ALERT_END, _SPANS,
) = range(len(SUMMARY_FIELDS))  # fmt: skip
_SESSION_PART = itemgetter(*map(SESSION_COLUMNS.index, SUMMARY_FIELDS[:_ALERT_END]))
_S_ROLE, _S_ALERTED = SESSION_COLUMNS.index("party_role"), SESSION_COLUMNS.index("alerted_at")
_SEG_STATE, _SEG_START, _SEG_END = (SEGMENT_COLUMNS.index(c) for c in ("state", "start_at", "end_at"))

#: ``interactions`` columns, in the order of the schema and of a row's value tuple.
INTERACTION_COLUMNS = (
    "interaction_id",
    "conversation_id",
    "started_at",
    "ended_at",
    "last_event_at",
    "duration_ms",
    "is_complete",
    "customer_channels",
    "agent_channels",
    "distinct_agents",
    "direction",
    "outcome",
    "offers",
    "first_offered_at",
    "answered_at",
    "time_to_answer_ms",
    "wait_before_offer_ms",
    "ring_ms",
    "abandon_ms",
    "transfers",
    "blind_transfers",
    "warm_transfers",
    "consults",
    "conferences",
    "agent_path",
    "first_agent_id",
    "final_agent_id",
    "talk_ms",
    "hold_ms",
    "park_ms",
    "interruption_ms",
    "wrap_ms",
    "handle_ms",
    "customer_hold_ms",
    "customer_hold_count",
    "hold_abandon",
    "anomaly_count",
    "inference",
)
#: ``inference`` entries, in the order a row lists them.
INFERENCES = (
    "direction",
    "direction_tie",
    "customer_role",
    "interaction_id_missing",
    "interaction_id_conflict",
    "conversation_id_conflict",
    "agent_id_missing",
    "channel_conflict",
)
_ABANDONED = ("abandoned_before_offer", "abandoned_while_alerting", "abandoned_after_offer")
_OPEN = 1 << 62  # the end of a phase or span still open (beyond any real time)


def channel_summary(result: ChannelResult) -> tuple:
    """What the interaction core reads of one channel (:data:`SUMMARY_FIELDS`): ints,
    strings, booleans, None and a list of ints, so it crosses a shuffle as MessagePack."""
    session = result.session_values
    alert_end = None
    spans: list = []
    if session[_S_ROLE] != "agent":  # a customer channel: its connected spans
        for seg in result.segment_values:
            state = seg[_SEG_STATE]
            if state == "connected":
                spans += (seg[_SEG_START], seg[_SEG_END])
            elif state == "alerting":
                alert_end = seg[_SEG_END]
    elif session[_S_ALERTED] is not None:  # an agent channel that alerted: its alerting segment
        for seg in result.segment_values:
            if seg[_SEG_STATE] == "alerting":
                alert_end = seg[_SEG_END]
                break
    return (*_SESSION_PART(session), alert_end, spans)


def _canonical(channel: Sequence) -> str:
    return json.dumps(list(channel), sort_keys=True, default=str)


def _distinct(channels: Iterable[Sequence]) -> tuple[list[Sequence], int]:
    """One summary per channel id (the least by content when copies differ) in channel
    order; returns them and how many differing copies were dropped."""
    chans = list(channels)
    if len({c[_CHANNEL] for c in chans}) != len(chans):
        kept: dict[str, Sequence] = {}
        differing: dict[str, set[str]] = {}
        for c in chans:
            cur = kept.setdefault(c[_CHANNEL], c)
            if cur is c:
                continue
            a, b = _canonical(cur), _canonical(c)
            if a != b:
                differing.setdefault(c[_CHANNEL], {a}).add(b)
                if b < a:
                    kept[c[_CHANNEL]] = c
        chans = list(kept.values())
        conflicts = sum(len(v) - 1 for v in differing.values())
    else:
        conflicts = 0
    chans.sort(key=lambda c: (c[_FIRST], c[_ROLE] == "agent", c[_CHANNEL]))
    return chans, conflicts


def _phase_end(c: Sequence) -> int:
    """End of a connected agent channel's connected phase (``_OPEN`` while open)."""
    for field in (_DISCONNECTED, _WRAP, _ENDED):
        if c[field] is not None:
            return c[field]
    return _OPEN


def _connected_for_1ms(customers: list[Sequence], start: int, end: int) -> bool:
    """A customer channel in state ``connected`` for >= 1 ms (floored) within ``[start, end)``."""
    for c in customers:
        spans = c[_SPANS]
        for i in range(0, len(spans), 2):
            lo = max(start, spans[i])
            hi = min(end, _OPEN if spans[i + 1] is None else spans[i + 1])
            if hi > lo and ms_between(lo, hi) >= 1:
                return True
    return False


def _hand_offs(phases: list[tuple[int, int, Sequence]], customers: list[Sequence]) -> tuple[int, int, int, int]:
    """``(blind, warm, consults, conferences)`` of the connected phases ``(start, end, channel)``
    in phase order (module docstring)."""
    blind = warm = consults = conferences = 0
    for k in range(1, len(phases)):
        start, end, _ = phases[k]
        a = next((j for j in range(k - 1, -1, -1) if phases[j][1] > start), None)
        if a is None:
            blind += 1
            continue
        a_end = phases[a][1]
        consults += 1
        if a_end < end:
            warm += 1
        if customers and _connected_for_1ms(customers, start, min(a_end, end)):
            conferences += 1
    return blind, warm, consults, conferences


def _outcome(direction: str, customers: list, agents: list, answered: bool) -> tuple[str, int | None]:
    """The outcome and, for abandons, the customer's leave time."""
    if direction == "internal":
        return "internal", None
    if direction == "outbound":
        if answered:
            return "connected", None
        done = all(c[_FAILED] or c[_DISCONNECTED] is not None or c[_ENDED] is not None for c in customers)
        return ("failed" if done else "in_progress"), None
    if answered:
        return "answered", None
    first = customers[0]
    left = first[_DISCONNECTED] if first[_DISCONNECTED] is not None else first[_ENDED]
    if left is None:
        return "in_progress", None
    offered = [c for c in agents if c[_ALERTED] is not None and c[_ALERTED] <= left]
    if not offered:
        return "abandoned_before_offer", left
    if any(c[_ALERT_END] is None or c[_ALERT_END] >= left for c in offered):
        return "abandoned_while_alerting", left
    return "abandoned_after_offer", left


def interaction_values(channels: Iterable[Sequence]) -> tuple:
    """The ``interactions`` row (:data:`INTERACTION_COLUMNS` order) of ONE interaction from
    the :func:`channel_summary` of each of its channels, in any order, copies allowed.

    One pass over the channels gathers what the rules read (this runs once per interaction
    of every job); the rules themselves are in the module docstring."""
    chans, conflicts = _distinct(channels)
    if not chans:
        raise ValueError("interaction_values needs at least one channel")
    customers: list[Sequence] = []
    agents: list[Sequence] = []
    anomalies = conflicts
    interaction_id = conversation_id = None
    other_interactions = other_conversations = nameless = 0
    complete, ended, last = True, None, chans[0][_LAST]
    odd_role = held_at_disconnect = False
    customer_hold = customer_holds = talk = hold = park = intr = wrap = handle = 0
    offered: list[int] = []
    connected: list[tuple[int, int, Sequence]] = []  # agent channels: (connected_at, channel order, channel)
    customer_connects: list[tuple[int, int, Sequence]] = []
    agent_ids: set[str] = set()
    for i, c in enumerate(chans):
        anomalies += c[_ANOMALIES]
        value = c[_INTERACTION]
        if value is not None:
            if interaction_id is None:
                interaction_id = value
            elif value != interaction_id:
                other_interactions += 1
        value = c[_CONVERSATION]
        if value is not None:
            if conversation_id is None:
                conversation_id = value
            elif value != conversation_id:
                other_conversations += 1
        if complete:
            if c[_COMPLETE] and c[_ENDED] is not None:
                if ended is None or c[_ENDED] > ended:
                    ended = c[_ENDED]
            else:
                complete, ended = False, None
        if c[_LAST] > last:
            last = c[_LAST]
        if c[_ROLE] == "agent":
            agents.append(c)
            if c[_AGENT] is None:
                nameless += 1
            else:
                agent_ids.add(c[_AGENT])
            if c[_ALERTED] is not None:
                offered.append(c[_ALERTED])
            if c[_CONNECTED] is not None:
                connected.append((c[_CONNECTED], i, c))
            talk += c[_TALK]
            hold += c[_HOLD]
            park += c[_PARK]
            intr += c[_INTR]
            wrap += c[_WRAP_MS]
            handle += c[_HANDLE]
        else:
            customers.append(c)
            if c[_ROLE] != "customer":
                odd_role = True
            if c[_CONNECTED] is not None:
                customer_connects.append((c[_CONNECTED], i, c))
            customer_hold += c[_HOLD]
            customer_holds += c[_HOLD_COUNT]
            if c[_HELD_AT_DISCONNECT]:
                held_at_disconnect = True

    inference = {"direction"}
    if conflicts:
        inference.add("channel_conflict")
    if interaction_id is None:
        interaction_id = chans[0][_CHANNEL]
        inference.add("interaction_id_missing")
    elif other_interactions:
        anomalies += other_interactions
        inference.add("interaction_id_conflict")
    if other_conversations:
        anomalies += other_conversations
        inference.add("conversation_id_conflict")
    if odd_role:
        inference.add("customer_role")
    if nameless:
        anomalies += nameless
        inference.add("agent_id_missing")

    started = chans[0][_FIRST]
    if chans[0][_ROLE] != "agent":
        direction = "inbound"
        if agents and agents[0][_FIRST] == started:  # channels are in order of first event
            inference.add("direction_tie")
    else:
        direction = "outbound" if customers else "internal"

    connected.sort()  # (connected_at, channel order): the order is unique, channels never compared
    first_offered = answering = None
    if direction == "inbound":
        first_offered = min(offered, default=None)
        answering = connected[0][2] if connected else None
    elif direction == "outbound" and customer_connects:
        answering = min(customer_connects)[2]
    answered_at = answering[_CONNECTED] if answering is not None else None
    outcome, left = _outcome(direction, customers, agents, answering is not None)

    phases = [(at, _phase_end(c), c) for at, _, c in connected]
    blind, warm, consults, conferences = _hand_offs(phases, customers) if customers else (0, 0, 0, 0)
    path: list[str] = []
    for _, _, c in connected:
        if c[_AGENT] is not None and c[_AGENT] not in path:
            path.append(c[_AGENT])
    named = [(end, k, c[_AGENT]) for k, (_, end, c) in enumerate(phases) if c[_AGENT] is not None]
    final_agent = max(named)[2] if named else None

    return (
        interaction_id,
        conversation_id,
        started,
        ended,
        last,
        ms_between(started, ended) if ended is not None else None,
        complete,
        len(customers),
        len(agents),
        len(agent_ids),
        direction,
        outcome,
        len(offered),
        first_offered,
        answered_at,
        ms_between(started, answered_at) if answered_at is not None else None,
        ms_between(started, first_offered) if first_offered is not None else None,
        answering[_ALERT_MS] if answering is not None else None,
        ms_between(started, left) if outcome in _ABANDONED else None,
        blind + warm,
        blind,
        warm,
        consults,
        conferences,
        path,
        path[0] if path else None,
        final_agent,
        talk,
        hold,
        park,
        intr,
        wrap,
        handle,
        customer_hold,
        customer_holds,
        held_at_disconnect,
        anomalies,
        [name for name in INFERENCES if name in inference],
    )


def interaction_row(channels: Iterable[Sequence]) -> dict:
    """:func:`interaction_values` as a dict keyed by column name."""
    return dict(zip(INTERACTION_COLUMNS, interaction_values(channels), strict=True))


def interaction_key(summary: Sequence) -> str:
    """The id a channel's interaction is grouped by: its interaction id, else its own
    channel id (a channel without interaction id is its own interaction)."""
    interaction = summary[_INTERACTION]
    return interaction if interaction is not None else summary[_CHANNEL]

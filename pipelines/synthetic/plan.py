"""What the simulation lays out, so the truth is known by construction: channels (events and
state segments built together), contacts (an interaction's channels with what was planned for
it: who answered, which hand-offs), work items, agents with their presence and login sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Channel:
    """One channel as the simulation lays it out: its events (``[ts, kind, reason, anomaly]``,
    kind without ``channel.``) and its state segments (``[state, start, end, started_by,
    ended_by]``, end None while open), built together so the truth is known by construction.
    ``slot`` numbers the agents of a work item: 0 is the agent whose ready period holds the
    item, 1 and 2 are other agents found logged in and ready when it is placed."""

    __slots__ = ("cid", "iid", "conv", "role", "style", "slot", "agent", "user", "events", "segs")

    def __init__(self, iid: str, conv: str, cid: str, role: str, style: str, slot: int = 0) -> None:
        self.cid, self.iid, self.conv, self.role, self.style, self.slot = cid, iid, conv, role, style, slot
        self.agent: str | None = None
        self.user: str | None = None
        self.events: list[list] = []
        self.segs: list[list] = []

    def _event(self, kind: str, ts: int, reason: str | None = None) -> None:
        self.events.append([ts, kind, reason, None])

    def _open(self, state: str, ts: int, by: str) -> None:
        self.segs.append([state, ts, None, by, None])

    def _close(self, ts: int, by: str) -> None:
        if self.segs and self.segs[-1][2] is None:
            self.segs[-1][2], self.segs[-1][4] = ts, by

    def alerted(self, ts: int) -> None:
        self._event("alerted", ts)
        self._open("alerting", ts, "alerted")

    def connected(self, ts: int) -> None:
        self._event("connected", ts)
        self._close(ts, "connected")
        self._open("connected", ts, "connected")

    def suspend(self, kind: str, ts: int) -> None:
        """``held``, ``parked`` or ``interrupted`` from connected."""
        self._event(kind, ts)
        self._close(ts, kind)
        self._open(kind, ts, kind)

    def resume(self, kind: str, ts: int) -> None:
        """``retrieved``, ``unparked`` or ``resumed``: back to connected."""
        self._event(kind, ts)
        self._close(ts, kind)
        self._open("connected", ts, kind)

    def failed(self, ts: int, reason: str) -> None:
        self._event("connectionfailed", ts, reason)
        self._close(ts, "connectionfailed")

    def disconnected(self, ts: int) -> None:
        self._event("disconnected", ts)
        self._close(ts, "disconnected")

    def wrapstarted(self, ts: int) -> None:
        self._event("wrapstarted", ts)
        self._open("wrap", ts, "wrapstarted")

    def ended(self, ts: int, reason: str | None) -> None:
        self._event("ended", ts, reason)
        self._close(ts, "ended")

    def odd(self, kind: str, ts: int, anomaly: str) -> None:
        """An out-of-place event: delivered, counted, ignored for timing."""
        self.events.append([ts, kind, None, anomaly])

    def shift(self, dt: int) -> None:
        for ev in self.events:
            ev[0] += dt
        for seg in self.segs:
            seg[1] += dt
            if seg[2] is not None:
                seg[2] += dt

    def cut(self, end: int) -> None:
        """Keep what happened before ``end``: later events vanish, a segment still running
        at ``end`` becomes open."""
        self.events = [ev for ev in self.events if ev[0] < end]
        self.segs = [seg for seg in self.segs if seg[1] < end]
        for seg in self.segs:
            if seg[2] is not None and seg[2] >= end:
                seg[2] = seg[4] = None

    def last_time(self) -> int:
        return max(ev[0] for ev in self.events)


class Handoff(NamedTuple):
    """A hand-off between two consecutive agent connections of a contact, as laid out:
    ``blind`` (the next agent connects after the first one disconnected), ``warm`` (a consult,
    then the first agent leaves) or ``return`` (a consult, then the consulted agent leaves);
    ``conference``: the customer was connected, not held, during the consult."""

    kind: str
    conference: bool = False


@dataclass
class Contact:
    """One interaction as planned: its channels, its direction and outcome, the channel that
    answered it (agent inbound, customer outbound), the customer channel whose end is the
    abandon, the agent channels in the order they connected, the hand-offs between
    consecutive ones, and (where the hand-offs do not tell) the final agent's channel."""

    kind: str
    direction: str
    outcome: str
    channels: list[Channel]
    answer: Channel | None = None
    abandon: Channel | None = None
    connects: list[Channel] = field(default_factory=list)
    handoffs: list[Handoff] = field(default_factory=list)
    final: Channel | None = None

    def final_agent(self) -> Channel | None:
        """The agent channel whose connected phase ends last: ``final`` when the layout says
        so, else the one the hand-offs leave the customer with (a ``return`` stays with the
        agent who consulted)."""
        if self.final is not None or not self.connects:
            return self.final
        holder = self.connects[0]
        for to, handoff in zip(self.connects[1:], self.handoffs, strict=False):
            if handoff.kind != "return":
                holder = to
        return holder


@dataclass
class Item:
    """A unit of agent work laid out from time 0: its contacts (an email's nested calls
    included) and their channels; ``connect`` is when the slot-0 agent channel connected
    (the start of an interruption when the item is a call nested in an email), ``end`` its
    last event."""

    contacts: list[Contact]
    channels: list[Channel]
    length: int
    connect: int
    end: int

    @property
    def n(self) -> int:
        """Interactions in the item."""
        return len(self.contacts)

    def helper_spans(self) -> list[tuple[int, int]]:
        """For agent slots 1, 2, ...: the first and last event time of that agent's channels."""
        spans: dict[int, tuple[int, int]] = {}
        for ch in self.channels:
            if ch.slot:
                times = [ev[0] for ev in ch.events]
                lo, hi = spans.get(ch.slot, (min(times), max(times)))
                spans[ch.slot] = (min(lo, *times), max(hi, *times))
        return [spans[k] for k in sorted(spans)]

    def shift(self, dt: int) -> None:
        for ch in self.channels:
            ch.shift(dt)
        self.connect += dt
        self.end += dt


@dataclass
class Presence:
    """One presence change of an agent, as sent (``raw``) and normalized (``canon``)."""

    ts: int
    canon: str
    raw: str
    sub: str
    desc: str
    cat_desc: str
    pid: str
    style: str
    repeat: bool  # repeats the current presence exactly (absorbed: no interval)


@dataclass
class Session:
    """One login session (``logout`` None while open) and the agent channels worked in it."""

    login: int
    logout: int | None = None
    channels: list[Channel] = field(default_factory=list)  # the agent channels worked in it


@dataclass
class Agent:
    """An agent: its presence changes, login sessions and agent channels."""

    idx: int
    agent_id: str
    user_id: str
    presence: list[Presence]
    sessions: list[Session]
    channels: list[Channel]


@dataclass
class Block:
    """A ready period of an agent inside one of its login sessions: room for work."""

    start: int
    end: int
    agent: Agent
    session: Session

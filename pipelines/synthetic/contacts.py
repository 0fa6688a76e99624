"""Contacts as VCC sends them: every kind the interactions table tells apart, laid out from
time 0 as work items, with the plan the truth needs (:class:`~pipelines.synthetic.plan.Contact`).

A :class:`Spec` names a kind and its structure (style of timestamps, customer-side role,
kind-specific choices); :meth:`Layout.build` draws the durations. Event sequences:

- an inbound customer channel alerts and connects at the same instant (the zero-duration
  alerting of an interaction's first channel; the IVR and queue time is connected time) and
  ends when the customer hangs up; an offer alerts an agent channel, which connects or fails
  (``connectionfailed`` with ``rejected``, ``noAnswer`` or ``busy``, then ``ended``);
- ``answered``: the first offer connects; ``missed_then_answered``: a first agent's offer
  fails, a second agent answers; ``queue_abandon``: the customer hangs up before any offer;
  ``ringing_abandon``: the customer hangs up while an agent is alerted, whose channel then
  ends (no ``connectionfailed``); ``offer_abandon``: one or two offers fail, the customer
  hangs up later;
- ``blind_transfer``: the first agent disconnects (and wraps), the next one is alerted around
  then and connects after it, the customer stays connected; ``warm_transfer``: the first agent
  holds the customer (both channels held), the next one connects (a consult), the first one
  disconnects from hold, the next one takes the customer off hold (``retrieved`` on the
  customer channel); ``consult_return``: the same consult, then the consulted agent
  disconnects and the first one retrieves the customer; ``conference``: the next agent
  connects while the customer is connected (at once, or after a consult on hold), then one
  of the two agents leaves; ``transfer_chain``: two hand-offs (blind or warm) over three agents;
- ``outbound``: the agent channel alerts and connects (dialing), then the customer channel
  alerts and connects, or fails (``outbound_failed``: ``busy`` or ``noAnswer``) and the
  agent hangs up and wraps; ``internal``: an agent calls another one (two agent channels, no
  customer channel, no wrap), who answers or not;
- ``email``: parked/unparked episodes and calls taken while it is open (their own
  interactions), each interrupting it or not; every suspension is on both channels.

Holds put both the agent's and the customer's channel on hold; the customer may hang up while
held. An agent who hands a contact on wraps; the consulted agent of a consult that returns
wraps or not.
"""

from __future__ import annotations

import random
import uuid
from typing import Any, NamedTuple

from pipelines.synthetic.plan import Channel, Contact, Handoff, Item
from pipelines.synthetic.times import SEC, align

#: Work items drawn at random: kind -> weight (an email counts once, whatever calls it holds).
MIX = {
    "answered": 41.0,
    "missed_then_answered": 3.0,
    "queue_abandon": 3.5,
    "ringing_abandon": 1.0,
    "offer_abandon": 0.7,
    "blind_transfer": 4.0,
    "warm_transfer": 2.5,
    "consult_return": 2.0,
    "conference": 1.3,
    "transfer_chain": 1.0,
    "outbound": 11.0,
    "outbound_failed": 4.0,
    "internal": 2.0,
    "email": 23.0,
}
#: Share of work items whose customer-side channels say ``contact`` instead of ``customer``
#: (VCC does not publish the string).
OTHER_ROLE_SHARE = 0.02
OTHER_ROLE = "contact"
#: Ringing time (s) before an offer fails, by reason.
_MISS_RING = {"rejected": (2, 12), "noAnswer": (15, 30), "busy": (0.5, 2)}
_KINDS, _WEIGHTS = tuple(MIX), tuple(MIX.values())


class Spec(NamedTuple):
    """A work item's kind and structure; ``args`` are the kind's own choices."""

    kind: str
    style: str = "ms"
    args: tuple = ()
    role: str = "customer"


class _Draft:
    """The channels of one interaction being laid out."""

    def __init__(self, layout: Layout, style: str, role: str) -> None:
        self.layout, self.style, self.role = layout, style, role
        self.iid, self.conv = layout.uuid(), layout.uuid()
        self.q = SEC if style == "sec" else 1
        self.channels: list[Channel] = []

    def customer(self) -> Channel:
        ch = Channel(self.iid, self.conv, self.layout.uuid(), self.role, self.style)
        self.channels.append(ch)
        return ch

    def agent(self, slot: int) -> Channel:
        ch = Channel(self.iid, self.conv, self.layout.uuid(), "agent", self.style, slot)
        self.channels.append(ch)
        return ch

    def contact(self, kind: str, direction: str, outcome: str, **plan: Any) -> Contact:
        return Contact(kind, direction, outcome, self.channels, **plan)

    def item(self, contact: Contact, connect: int = 0) -> Item:
        end = max(ch.last_time() for ch in self.channels)
        return Item([contact], list(self.channels), end, connect, end)


class Layout:
    """Lays out work items from time 0 with fresh ids and durations drawn from ``rng``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    # -- random helpers ------------------------------------------------------------------

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def dur(self, lo_s: float, hi_s: float, q: int) -> int:
        """A random duration in ms, a positive multiple of ``q``."""
        ms = int(self.rng.uniform(lo_s, hi_s) * SEC)
        return max(q, ms - ms % q)

    def pick(self, options: tuple, weights: tuple) -> Any:
        return self.rng.choices(options, weights)[0]

    def style(self) -> str:
        """Timestamp precision of a contact's notifications."""
        return self.pick(("ms", "7", "sec"), (80, 10, 10))

    # -- specs ---------------------------------------------------------------------------

    def random_call(self, direction: str | None = None, style: str | None = None) -> Spec:
        """A plain inbound (answered) or outbound (connected) call, with holds."""
        direction = direction or self.pick(("inbound", "outbound"), (80, 20))
        style = style or self.style()
        holds = self.pick((0, 1, 2, 3), (55, 25, 13, 7))
        args = (holds, holds > 0 and self.rng.random() < 0.12)
        return Spec("answered" if direction == "inbound" else "outbound", style, args)

    def random_spec(self, budget: int) -> Spec:
        """A random work item using at most ``budget`` (>= 1) interactions, kinds as in :data:`MIX`."""
        rng, pick = self.rng, self.pick
        kind = pick(_KINDS, _WEIGHTS)
        role = OTHER_ROLE if rng.random() < OTHER_ROLE_SHARE else "customer"
        if kind in ("answered", "outbound"):
            return self.random_call("inbound" if kind == "answered" else "outbound")._replace(role=role)
        if kind == "email":
            k = min(pick((0, 1, 2), (40, 40, 20)), budget - 1)
            nested = tuple((self.random_call(), rng.random() < 0.75) for _ in range(k))
            args: tuple = (pick((0, 1, 2, 3), (35, 35, 20, 10)), nested)
        elif kind == "missed_then_answered":
            args = (pick(("rejected", "noAnswer"), (70, 30)),)
        elif kind == "offer_abandon":
            args = tuple(pick(("rejected", "noAnswer", "busy"), (50, 35, 15)) for _ in range(pick((1, 2), (70, 30))))
        elif kind == "conference":
            args = (rng.random() < 0.5, rng.random() < 0.4)
        elif kind == "transfer_chain":
            args = tuple(pick(("blind", "warm"), (60, 40)) for _ in range(2))
        elif kind == "outbound_failed":
            args = (pick(("busy", "noAnswer"), (45, 55)),)
        elif kind == "internal":
            args = (pick(("connected", "noAnswer", "rejected", "busy"), (85, 8, 4, 3)),)
        else:
            args = ()
        return Spec(kind, self.style(), args, role)

    def build(self, spec: Spec) -> Item:
        """The item of ``spec``, durations drawn afresh."""
        return getattr(self, spec.kind)(_Draft(self, spec.style, spec.role), *spec.args)

    # -- pieces --------------------------------------------------------------------------

    def _arrive(self, d: _Draft) -> tuple[Channel, int]:
        """An inbound customer channel, connected at once; returns it and the queue wait."""
        cust = d.customer()
        cust.alerted(0)
        cust.connected(0)
        wait = self.dur(5, 60, d.q) if self.rng.random() < 0.85 else self.dur(60, 240, d.q)
        return cust, wait

    def _ring(self, ag: Channel, t: int, q: int) -> int:
        """An offer to ``ag`` at ``t`` that connects; returns the connect time."""
        ag.alerted(t)
        t += self.dur(3, 20, q)
        ag.connected(t)
        return t

    def _miss(self, ag: Channel, t: int, q: int, reason: str) -> tuple[int, int]:
        """An offer to ``ag`` at ``t`` that fails with ``reason``; returns when it failed and ended."""
        ag.alerted(t)
        t += self.dur(*_MISS_RING[reason], q)
        ag.failed(t, reason)
        end = t + self.dur(0.05, 1, q)
        ag.ended(end, reason if self.rng.random() < 0.5 else None)
        return t, end

    def _talk(self, ag: Channel, cust: Channel, t: int, q: int, holds: int, hangup_held: bool = False) -> int:
        """Talk from ``t`` with ``holds`` holds on both channels; returns when it stops (on the
        last hold when the customer hangs up while held)."""
        both = (ag, cust)
        for i in range(holds):
            t += self.dur(20, 180, q)
            for c in both:
                c.suspend("held", t)
            t += self.dur(10, 120, q)
            if hangup_held and i == holds - 1:
                return t
            for c in both:
                c.resume("retrieved", t)
        return t + self.dur(20, 240, q)

    def _wrap(self, ag: Channel, t: int, q: int, lo: float = 10, hi: float = 120) -> int:
        """Wrap from ``t``; returns the agent channel's end."""
        ag.wrapstarted(t)
        end = t + self.dur(lo, hi, q)
        ag.ended(end, "released")
        return end

    def _hangup(self, ag: Channel, cust: Channel, t: int, q: int) -> None:
        """Both disconnect at ``t``: the customer channel ends, the agent's wraps."""
        for c in (ag, cust):
            c.disconnected(t)
        cust.ended(t, "released")
        self._wrap(ag, t, q)

    def _holds(self) -> int:
        return self.pick((0, 1, 2), (70, 22, 8))

    def _blind(self, frm: Channel, to: Channel, cust: Channel, t: int, q: int) -> int:
        """``frm`` disconnects at ``t`` and wraps; ``to`` is alerted around then (now and then
        just before) and connects after it; returns ``to``'s connect."""
        frm.disconnected(t)
        self._wrap(frm, t, q, 5, 60)
        offer = t - self.dur(0.2, 1.5, q) if self.rng.random() < 0.25 else t + self.dur(0.2, 3, q)
        return self._ring(to, offer, q)

    def _warm(self, frm: Channel, to: Channel, cust: Channel, t: int, q: int) -> int:
        """``frm`` holds the customer at ``t`` and consults ``to``, leaves from hold and wraps;
        ``to`` takes the customer off hold; returns then."""
        for c in (frm, cust):
            c.suspend("held", t)
        connect = self._ring(to, t + self.dur(1, 5, q), q)
        leave = connect + self.dur(10, 90, q)
        frm.disconnected(leave)
        self._wrap(frm, leave, q, 5, 60)
        back = leave + self.dur(0.5, 5, q)
        cust.resume("retrieved", back)
        return back

    # -- kinds ---------------------------------------------------------------------------

    def answered(self, d: _Draft, holds: int, hangup_held: bool) -> Item:
        cust, t = self._arrive(d)
        ag = d.agent(0)
        connect = self._ring(ag, t, d.q)
        self._hangup(ag, cust, self._talk(ag, cust, connect, d.q, holds, hangup_held), d.q)
        return d.item(d.contact("answered", "inbound", "answered", answer=ag, connects=[ag]), connect)

    def _dial(self, d: _Draft) -> tuple[Channel, Channel, int, int]:
        """An outbound call's start: the agent channel alerts and connects (dialing), then
        the customer channel alerts; returns both channels, the agent's connect and the
        customer's alert."""
        ag, cust = d.agent(0), d.customer()
        ag.alerted(0)
        connect = self.dur(0.5, 2, d.q)
        ag.connected(connect)
        t = connect + self.dur(0.3, 1.5, d.q)
        cust.alerted(t)
        return ag, cust, connect, t

    def outbound(self, d: _Draft, holds: int, hangup_held: bool) -> Item:
        q = d.q
        ag, cust, connect, t = self._dial(d)
        t += self.dur(5, 25, q)
        cust.connected(t)
        self._hangup(ag, cust, self._talk(ag, cust, t, q, holds, hangup_held), q)
        return d.item(d.contact("outbound", "outbound", "connected", answer=cust, connects=[ag]), connect)

    def outbound_failed(self, d: _Draft, reason: str) -> Item:
        q = d.q
        ag, cust, connect, t = self._dial(d)
        t += self.dur(1, 4, q) if reason == "busy" else self.dur(20, 40, q)
        cust.failed(t, reason)
        cust.ended(t + self.dur(0.05, 0.5, q), reason if self.rng.random() < 0.5 else None)
        bye = t + self.dur(0.5, 3, q)
        ag.disconnected(bye)
        self._wrap(ag, bye, q, 3, 30)
        return d.item(d.contact("outbound_failed", "outbound", "failed", connects=[ag]), connect)

    def missed_then_answered(self, d: _Draft, reason: str) -> Item:
        q = d.q
        cust, t = self._arrive(d)
        missed, ag = d.agent(1), d.agent(0)
        failed, _ = self._miss(missed, t, q, reason)
        connect = self._ring(ag, failed + self.dur(1, 8, q), q)
        self._hangup(ag, cust, self._talk(ag, cust, connect, q, self._holds()), q)
        return d.item(d.contact("missed_then_answered", "inbound", "answered", answer=ag, connects=[ag]), connect)

    def queue_abandon(self, d: _Draft) -> Item:
        cust, _ = self._arrive(d)
        t = self.dur(1, 5, d.q) if self.rng.random() < 0.15 else self.dur(5, 240, d.q)
        cust.disconnected(t)
        cust.ended(t, "released")
        return d.item(d.contact("queue_abandon", "inbound", "abandoned_before_offer", abandon=cust))

    def ringing_abandon(self, d: _Draft) -> Item:
        q = d.q
        cust, t = self._arrive(d)
        ag = d.agent(0)
        ag.alerted(t)
        t += self.dur(2, 20, q)
        cust.disconnected(t)
        cust.ended(t, "released")
        ag.ended(t + self.dur(0.05, 0.8, q), self.pick(("released", None), (50, 50)))
        return d.item(d.contact("ringing_abandon", "inbound", "abandoned_while_alerting", abandon=cust))

    def offer_abandon(self, d: _Draft, *reasons: str) -> Item:
        q = d.q
        cust, t = self._arrive(d)
        end = t
        for slot, reason in enumerate(reasons):
            failed, end = self._miss(d.agent(slot), t, q, reason)
            t = failed + self.dur(1, 8, q)
        t = end + self.dur(3, 60, q)
        cust.disconnected(t)
        cust.ended(t, "released")
        return d.item(d.contact("offer_abandon", "inbound", "abandoned_after_offer", abandon=cust))

    def _transfers(self, d: _Draft, kind: str, hops: tuple[str, ...]) -> Item:
        """An inbound call handed on along ``hops`` (``blind`` / ``warm``), one more agent each."""
        q = d.q
        cust, t = self._arrive(d)
        agents = [d.agent(slot) for slot in range(len(hops) + 1)]
        connect = self._ring(agents[0], t, q)
        t = self._talk(agents[0], cust, connect, q, self._holds() if len(hops) == 1 else 0)
        for frm, to, hop in zip(agents, agents[1:], hops, strict=False):
            t = (self._blind if hop == "blind" else self._warm)(frm, to, cust, t, q)
            t = self._talk(to, cust, t, q, self._holds() if to is agents[-1] else 0)
        self._hangup(agents[-1], cust, t, q)
        plan = {"answer": agents[0], "connects": agents, "handoffs": [Handoff(h) for h in hops]}
        return d.item(d.contact(kind, "inbound", "answered", **plan), connect)

    def blind_transfer(self, d: _Draft) -> Item:
        return self._transfers(d, "blind_transfer", ("blind",))

    def warm_transfer(self, d: _Draft) -> Item:
        return self._transfers(d, "warm_transfer", ("warm",))

    def transfer_chain(self, d: _Draft, *hops: str) -> Item:
        return self._transfers(d, "transfer_chain", hops)

    def consult_return(self, d: _Draft) -> Item:
        q = d.q
        cust, t = self._arrive(d)
        first, other = d.agent(0), d.agent(1)
        connect = self._ring(first, t, q)
        t = self._talk(first, cust, connect, q, 0)
        for c in (first, cust):
            c.suspend("held", t)
        bye = self._ring(other, t + self.dur(1, 5, q), q) + self.dur(10, 90, q)
        other.disconnected(bye)
        if self.rng.random() < 0.5:
            self._wrap(other, bye, q, 5, 40)
        else:
            other.ended(bye, "released")
        back = bye + self.dur(0.5, 4, q)
        for c in (first, cust):
            c.resume("retrieved", back)
        self._hangup(first, cust, self._talk(first, cust, back, q, self._holds()), q)
        plan = {"answer": first, "connects": [first, other], "handoffs": [Handoff("return")]}
        return d.item(d.contact("consult_return", "inbound", "answered", **plan), connect)

    def conference(self, d: _Draft, held_first: bool, first_leaves: bool) -> Item:
        """The next agent joins at once, or after a consult with the customer on hold (then
        both channels are retrieved); after the three-way talk one agent leaves and wraps."""
        q = d.q
        cust, t = self._arrive(d)
        first, other = d.agent(0), d.agent(1)
        connect = self._ring(first, t, q)
        t = self._talk(first, cust, connect, q, 0)
        if held_first:
            for c in (first, cust):
                c.suspend("held", t)
            join = self._ring(other, t + self.dur(1, 5, q), q) + self.dur(5, 40, q)
            for c in (first, cust):
                c.resume("retrieved", join)
        else:
            join = self._ring(other, t, q)
        leave = join + self.dur(15, 180, q)
        leaver, stays = (first, other) if first_leaves else (other, first)
        leaver.disconnected(leave)
        self._wrap(leaver, leave, q, 5, 40)
        self._hangup(stays, cust, self._talk(stays, cust, leave, q, 0), q)
        handoff = Handoff("warm" if first_leaves else "return", conference=True)
        plan = {"answer": first, "connects": [first, other], "handoffs": [handoff]}
        return d.item(d.contact("conference", "inbound", "answered", **plan), connect)

    def internal(self, d: _Draft, result: str) -> Item:
        """Agent to agent: the caller's channel alerts and connects, the callee's alerts and
        connects (or fails with ``result``); both end as they disconnect (no wrap)."""
        q = d.q
        caller, callee = d.agent(0), d.agent(1)
        caller.alerted(0)
        connect = self.dur(0.5, 2, q)
        caller.connected(connect)
        offer = connect + self.dur(0.3, 1, q)
        if result == "connected":
            bye = self._ring(callee, offer, q) + self.dur(20, 300, q)
            first, last = (caller, callee) if self.rng.random() < 0.5 else (callee, caller)
            lag = self.pick((0, self.dur(0.2, 1, q)), (50, 50))
            for ch, t in ((first, bye), (last, bye + lag)):
                ch.disconnected(t)
                ch.ended(t, "released")
            connects = [caller, callee]
            final = last if lag else callee  # hanging up together: the later connection
        else:
            failed, _ = self._miss(callee, offer, q, result)
            bye = failed + self.dur(0.5, 2, q)
            caller.disconnected(bye)
            caller.ended(bye, "released")
            connects = [caller]
            final = caller
        return d.item(d.contact("internal", "internal", "internal", connects=connects, final=final), connect)

    def email(self, d: _Draft, parks: int, nested: tuple) -> Item:
        q, dur = d.q, self.dur
        cust = d.customer()
        ag = d.agent(0)
        cust.alerted(0)
        cust.connected(0)
        t = dur(2, 60, q)
        ag.alerted(t)
        t += dur(2, 30, q)
        ag.connected(t)
        both = (ag, cust)
        contacts = [d.contact("email", "inbound", "answered", answer=ag, connects=[ag])]
        channels = list(d.channels)
        steps: list = ["park"] * parks + list(nested)
        self.rng.shuffle(steps)
        for step in steps:
            t += dur(20, 120, q)
            if step == "park":
                for c in both:
                    c.suspend("parked", t)
                t += dur(30, 240, q)
                for c in both:
                    c.resume("unparked", t)
                continue
            spec, interrupts = step
            call = self.build(spec)
            call.shift(align(t + dur(5, 60, 1)))
            contacts += call.contacts
            channels += call.channels
            t = call.end
            if interrupts:
                for c in both:
                    c.suspend("interrupted", call.connect)
                t += dur(0.2, 2, q)
                for c in both:
                    c.resume("resumed", t)
        t += dur(20, 120, q)
        for c in both:
            c.disconnected(t)
        cust.ended(t, "released")
        ag.wrapstarted(t)
        end = t + dur(30, 180, q)
        ag.ended(end, "released")
        return Item(contacts, channels, end, 0, end)

"""The simulation: one contact center's agents working shifts (presence changes, login
sessions, ready periods) and the work items they handle (the contacts of
:mod:`pipelines.synthetic.contacts`, emails with the calls nested in them, work cut off at the
end of the data, a few out-of-place events), laid out as :mod:`pipelines.synthetic.plan`
objects. Everything is drawn from ``random.Random(seed)``.

Each work item lies in one ready block of the agent who takes it; the second and third agent
of a contact (a rejected offer, a transfer, a consult, an internal call) is another agent
whose ready block holds that agent's channels with MARGIN to spare (so every agent channel
lies inside one of its agent's login sessions), preferably with no other work booked then."""

from __future__ import annotations

import bisect
import random
from collections import deque
from collections.abc import Iterator

from pipelines.synthetic.config import Config
from pipelines.synthetic.contacts import OTHER_ROLE, Layout, Spec
from pipelines.synthetic.plan import Agent, Block, Channel, Contact, Item, Presence, Session
from pipelines.synthetic.times import DAY, HOUR, MIN, SEC, align, parse_start

#: Interactions one agent handles per day at most (sets how many days are simulated).
PER_AGENT_DAY = 30
#: No work item (a call, or an email with the calls nested in it) lasts longer.
ITEM_MAX = 35 * MIN
#: Work stays this far from presence changes, so channel work lies inside login sessions.
MARGIN = 2 * MIN
#: Another agent's work stays this far from what that agent is booked for, where possible.
REST = 10 * SEC
#: Candidate blocks scanned in full up to this many, else sampled this many times.
_SCAN = 32

#: Presence catalog: canonical type -> (category description, ((subcategory, description), ...)).
_PRESENCES = {
    "ready": ("Ready", (("readyInbound", "Ready (Inbound)"), ("readyOutbound", "Ready (Outbound)"))),
    "away": ("Away", (("break", "Break"), ("meeting", "Team meeting"))),
    "extendedAway": ("Extended Away", (("training", "Training"), ("coaching", "Coaching"))),
    "loggedOut": ("Logged Out", (("loggedOut", "Logged Out"),)),
    "lunch": ("Lunch", (("lunch", "Lunch"),)),
}
#: VCC's other casing of the known types (used now and then).
_CASING = {"ready": "Ready", "away": "Away", "extendedAway": "ExtendedAway", "loggedOut": "LoggedOut"}


def _plain(kind: str, style: str = "ms") -> Spec:
    """A call without holds: inbound answered or outbound connected."""
    return Spec(kind, style, (0, False))


class Overflow(Exception):
    """The planned days cannot hold the interactions: simulate one more day."""


class Simulation:
    """One simulation run over ``days`` days, everything drawn from ``random.Random(seed)``."""

    def __init__(self, cfg: Config, days: int) -> None:
        self.cfg, self.days = cfg, days
        self.rng = random.Random(cfg.seed)
        self.start = parse_start(cfg.start)
        # The night shift runs 4 h either side of a UTC midnight at least 6 h after the start;
        # the data ends 7 h into the last night shift, before its agents log out.
        midnight = -(-(self.start + 6 * HOUR) // DAY) * DAY
        self.night = midnight - 4 * HOUR - self.start
        self.end = self.start + (days - 1) * DAY + self.night + 7 * HOUR
        self.layout = Layout(self.rng)
        uid = self.layout.uuid
        self.pids = {(canon, sub): uid() for canon, (_, subs) in _PRESENCES.items() for sub, _ in subs}
        ids = self.rng.sample(
            range(1000, max(10000, 1000 + 2 * (cfg.agents + 1))), cfg.agents + 1
        )  # 4 digits up to 9,000
        self.agents = [Agent(i, str(a), uid(), [], [], []) for i, a in enumerate(ids[: cfg.agents])]
        self.ghost = Agent(cfg.agents, str(ids[-1]), uid(), [], [], [])
        self.regular: list[Channel] = []  # placed in login sessions, complete before the end
        self.contacts: list[Contact] = []  # every interaction's plan

    # -- agents: shifts, presence, sessions ------------------------------------------------

    def presence(self, ag: Agent, ts: int, canon: str, raw: str | None = None, repeat: bool = False) -> int:
        r = self.rng.random()
        style = "sec" if r < 0.1 else "7" if r < 0.2 else "ms"
        if style == "sec":
            ts -= ts % SEC
        cat_desc, subs = _PRESENCES[canon]
        sub, desc = (ag.presence[-1].sub, ag.presence[-1].desc) if repeat else self.rng.choice(subs)
        if raw is None:
            raw = _CASING[canon] if canon in _CASING and self.rng.random() < 0.15 else canon
        ag.presence.append(Presence(ts, canon, raw, sub, desc, cat_desc, self.pids[canon, sub], style, repeat))
        return ts

    def shift_plan(self, ag: Agent, day: int, login: int, last: bool) -> list[Block]:
        """One shift's presence changes and sessions; returns its ready periods (work blocks)."""
        r = self.rng.randint
        mid_start = ag.idx == 0 and day == 0
        night = ag.idx >= self.cfg.agents - 2
        blocks = []
        if mid_start:  # logged in before the data starts: the first event is a break
            t = self.presence(ag, login + r(15 * MIN, 20 * MIN), "away")
            ag.sessions.append(Session(t))
            cur = self.presence(ag, t + r(8 * MIN, 12 * MIN), "ready")
        else:
            cur = self.presence(ag, login, "ready")
            ag.sessions.append(Session(cur))
        t = self.presence(ag, login + r(90 * MIN, 105 * MIN), "away")
        blocks.append(Block(cur, t, ag, ag.sessions[-1]))
        cur = self.presence(ag, t + r(10 * MIN, 15 * MIN), "ready")
        t = login + r(195 * MIN, 210 * MIN)
        if ag.idx == 1:  # logs out for lunch (twice on day 0) and back in after it
            t = self.presence(ag, t, "loggedOut", raw="loggedOut")
            blocks.append(Block(cur, t, ag, ag.sessions[-1]))
            ag.sessions[-1].logout = t
            if day == 0:
                self.presence(ag, t + r(1500, 3000), "loggedOut", raw="LoggedOut", repeat=True)
            cur = self.presence(ag, t + r(30 * MIN, 40 * MIN), "ready")
            ag.sessions.append(Session(cur))
        else:
            t = self.presence(ag, t, "lunch" if (day + ag.idx) % 2 == 0 else "extendedAway")
            blocks.append(Block(cur, t, ag, ag.sessions[-1]))
            cur = self.presence(ag, t + r(30 * MIN, 40 * MIN), "ready")
        t = self.presence(ag, login + r(300 * MIN, 315 * MIN), "extendedAway" if (day + ag.idx) % 3 == 1 else "away")
        blocks.append(Block(cur, t, ag, ag.sessions[-1]))
        cur = self.presence(ag, t + r(10 * MIN, 15 * MIN), "ready")
        if last and night:  # still working when the data ends: room left for the cut-off channels
            blocks.append(Block(cur, self.end - 30 * MIN, ag, ag.sessions[-1]))
            return blocks
        t = self.presence(ag, login + 8 * HOUR + r(-5 * MIN, 10 * MIN), "loggedOut")
        ag.sessions[-1].logout = t
        blocks.append(Block(cur, t, ag, ag.sessions[-1]))
        return blocks

    def plan_agents(self) -> list[Block]:
        """Every agent's shifts; returns the ready blocks in order of start. Day shifts start
        spread from the start of the data to 2 h before the night shift, the last one (the only
        one when there is a single day agent) overlapping it, so three agents are logged in
        together at some point (a transfer chain needs them)."""
        n_day = self.cfg.agents - 2
        span = max(0, self.night - 2 * HOUR)
        blocks = []
        for day in range(self.days):
            for ag in self.agents:
                offset = self.night if ag.idx >= n_day else span if n_day == 1 else ag.idx * span // (n_day - 1)
                login = self.start + day * DAY + offset + self.rng.randint(0, 10 * MIN)
                blocks += self.shift_plan(ag, day, login, day == self.days - 1)
        blocks.sort(key=lambda b: (b.start, b.agent.idx))
        return blocks

    # -- work items ----------------------------------------------------------------------

    def realize(self, spec: Spec) -> Item:
        """The item of ``spec`` with fresh ids and durations, no longer than ITEM_MAX."""
        while True:
            item = self.layout.build(spec)
            if item.length <= ITEM_MAX:
                return item

    def spec_stream(self, total: int) -> Iterator[Spec]:
        """Work item specs using exactly ``total`` interactions; the ones every dataset must
        contain (every contact kind, timestamp style and customer-side role) are spread in at
        random positions."""
        forced = [
            Spec("answered", "7", (2, False), OTHER_ROLE),
            Spec("answered", "ms", (1, True)),  # customer hangs up while held
            Spec(
                "email",
                "ms",
                (2, ((Spec("answered", "ms", (0, False)), True), (Spec("outbound", "sec", (0, False)), True))),
            ),
            Spec("missed_then_answered", "sec", ("rejected",)),
            Spec("queue_abandon", "ms"),
            Spec("ringing_abandon", "ms"),
            Spec("offer_abandon", "ms", ("rejected", "noAnswer")),
            Spec("blind_transfer", "ms"),
            Spec("warm_transfer", "7"),
            Spec("consult_return", "ms"),
            Spec("conference", "ms", (True, True)),  # after a consult on hold; the first agent leaves
            Spec("conference", "sec", (False, False)),  # joined at once; the consulted agent leaves
            Spec("transfer_chain", "ms", ("blind", "warm")),
            Spec("outbound_failed", "ms", ("busy",)),
            Spec("outbound_failed", "7", ("noAnswer",)),
            Spec("internal", "ms", ("connected",)),
        ]
        self.rng.shuffle(forced)
        size = lambda s: 1 + len(s.args[1]) if s.kind == "email" else 1  # noqa: E731
        reserve = sum(size(s) for s in forced)
        slots = set(self.rng.sample(range(max(len(forced), total // 2)), len(forced)))
        used = k = 0
        while used < total:
            budget = total - used - reserve
            if forced and (k in slots or budget <= 0):
                spec = forced.pop()
                reserve -= size(spec)
            else:
                spec = self.layout.random_spec(budget)
            used += size(spec)
            k += 1
            yield spec

    def place(self, blocks: list[Block], total: int) -> None:
        """Lay ``total`` interactions into the ready blocks, in proportion to their length,
        with random gaps, clear of the work booked for the block's agent as the second or third
        agent of other contacts; an item whose other agents cannot be found logged in and
        ready, or that does not fit, moves on to the next block."""
        staff = _Staff(blocks, self.rng)
        caps = [max(0, b.end - b.start - 2 * MARGIN) for b in blocks]
        whole = sum(caps)
        stream = self.spec_stream(total)
        pending: deque[Item] = deque()
        made = cum = 0
        for k, (block, cap) in enumerate(zip(blocks, caps, strict=True)):
            cum += cap
            target = total * cum // whole
            while made < target:
                item = self.realize(next(stream))
                pending.append(item)
                made += item.n
            c0 = align(block.start + MARGIN)
            stop = block.end - MARGIN
            placed, used = [], 0
            while pending and used + pending[0].length + SEC <= stop - c0:
                item = pending.popleft()
                placed.append(item)
                used += item.length + SEC
            if not placed:
                continue
            weights = [self.rng.random() for _ in range(len(placed) + 1)]
            scale = (stop - c0 - used) / sum(weights)
            cursor, retry = c0, []
            for item, w in zip(placed, weights, strict=False):
                at = staff.clear(k, align(cursor + int(w * scale)), item.length)
                helpers = staff.helpers(k, at, item) if at + item.length <= stop else None
                if helpers is None:
                    retry.append(item)
                    continue
                item.shift(at)
                staff.book(k, at, at + item.length)
                self.assign(item, block.agent, block.session, helpers)
                cursor = at + item.length
            pending.extendleft(reversed(retry))
        if pending:
            raise Overflow

    def assign(
        self, item: Item, ag: Agent, session: Session | None, helpers: list[Block], regular: bool = True
    ) -> None:
        """Give the item's agent channels to ``ag`` (and its login ``session``, if any), those
        of slot 1, 2, ... to the agents of ``helpers``; record its contacts."""
        for ch in item.channels:
            if ch.role == "agent":
                owner, sess = (
                    (ag, session) if ch.slot == 0 else (helpers[ch.slot - 1].agent, helpers[ch.slot - 1].session)
                )
                ch.agent, ch.user = owner.agent_id, owner.user_id
                owner.channels.append(ch)
                if sess is not None:
                    sess.channels.append(ch)
            if regular:
                self.regular.append(ch)
        self.contacts += item.contacts

    def _pair(self, style: str) -> tuple[str, str, Channel, Channel]:
        """A customer and an agent channel of a new interaction."""
        iid, conv = self.layout.uuid(), self.layout.uuid()
        cust = Channel(iid, conv, self.layout.uuid(), "customer", style)
        return iid, conv, cust, Channel(iid, conv, self.layout.uuid(), "agent", style)

    def tails(self) -> list[Channel]:
        """Work still going on when the data ends: the last night agent has an email open
        (connected) and a call on hold; the other night agent is in wrap and dialing out (the
        customer's channel alerting); a customer waits in the queue."""
        end = self.end
        _, _, e_cust, e_ag = self._pair("ms")
        s = end - 25 * MIN + 137
        e_cust.alerted(s)
        e_cust.connected(s)
        e_ag.alerted(s + 20_113)
        e_ag.connected(s + 31_502)
        for c in (e_ag, e_cust):
            c.suspend("parked", s + 4 * MIN)
            c.resume("unparked", s + 6 * MIN + 12_345)
            c.disconnected(end + 5 * MIN)
        e_cust.ended(end + 5 * MIN, "released")
        _, _, h_cust, h_ag = self._pair("7")
        c0 = end - 10 * MIN + 250
        h_cust.alerted(c0)
        h_cust.connected(c0)
        h_ag.alerted(c0 + 15_100)
        h_ag.connected(c0 + 23_400)
        for c in (h_ag, h_cust):
            c.suspend("held", end - 5 * MIN)
            c.resume("retrieved", end - 4 * MIN + 1)
            c.suspend("held", end - 40 * SEC)
            c.resume("retrieved", end + MIN)
        _, _, w_cust, w_ag = self._pair("ms")
        c0 = end - 9 * MIN + 421
        w_cust.alerted(c0)
        w_cust.connected(c0)
        w_ag.alerted(c0 + 20_004)
        w_ag.connected(c0 + 27_777)
        for c in (w_ag, w_cust):
            c.suspend("held", end - 6 * MIN)
            c.resume("retrieved", end - 5 * MIN - 7)
            c.disconnected(end - 45 * SEC)
        w_cust.ended(end - 45 * SEC, "released")
        w_ag.wrapstarted(end - 45 * SEC)
        w_ag.ended(end + 75 * SEC, "released")
        iid, conv = self.layout.uuid(), self.layout.uuid()
        q_cust = Channel(iid, conv, self.layout.uuid(), "customer", "ms")
        q_cust.alerted(end - 40 * SEC + 333)
        q_cust.connected(end - 40 * SEC + 333)
        iid, conv, o_cust, o_ag = self._pair("ms")
        c0 = end - 20 * SEC + 71
        o_ag.alerted(c0)
        o_ag.connected(c0 + 912)
        o_cust.alerted(c0 + 2_040)
        o_cust.connected(end + 9_000)
        last, other = self.agents[-1], self.agents[-2]
        parts = (
            (last, Contact("email", "inbound", "answered", [e_cust, e_ag], answer=e_ag, connects=[e_ag])),
            (last, Contact("answered", "inbound", "answered", [h_cust, h_ag], answer=h_ag, connects=[h_ag])),
            (other, Contact("answered", "inbound", "answered", [w_cust, w_ag], answer=w_ag, connects=[w_ag])),
            (other, Contact("queued", "inbound", "in_progress", [q_cust])),
            (other, Contact("outbound", "outbound", "in_progress", [o_ag, o_cust], connects=[o_ag])),
        )
        channels = []
        for ag, contact in parts:
            self.assign(Item([contact], contact.channels, 0, 0, 0), ag, ag.sessions[-1], [], regular=False)
            channels += contact.channels
        return channels

    def ghost_work(self) -> list[Channel]:
        """Two calls of an agent who has no presence data at all, under an hour apart, the
        first across the first UTC midnight."""
        first = self.realize(self.layout.random_call("inbound", "ms"))
        first.shift(align(self.start + self.night + 4 * HOUR - first.length // 2))
        second = self.realize(self.layout.random_call("outbound", "ms"))
        second.shift(align(first.end + self.rng.randint(10 * MIN, 50 * MIN)))
        for item in (first, second):
            self.assign(item, self.ghost, None, [], regular=False)
        return first.channels + second.channels

    def anomalies(self) -> None:
        """Out-of-place events on complete channels: a ``retrieved`` mid-talk without a hold,
        and an event after ``ended``. Neither changes any timing."""
        talkers = [
            (ch, seg)
            for ch in self.regular
            if ch.role == "agent"
            for seg in ch.segs
            if seg[0] == "connected" and seg[2] is not None and seg[2] - seg[1] >= 2 * SEC
        ]
        for ch, seg in self.rng.sample(talkers, max(1, len(talkers) // 100)):
            if not any(ev[3] for ev in ch.events):
                ch.odd("retrieved", self.rng.randint(seg[1] + 1, seg[2] - 1), "retrieved_without_held")
        for ch in self.rng.sample(self.regular, max(1, len(self.regular) // 200)):
            if not any(ev[3] for ev in ch.events):
                kind = self.rng.choice(("held", "disconnected", "ended", "retrieved"))
                ch.odd(kind, ch.last_time() + self.rng.randint(SEC, 30 * SEC), f"{kind}_after_ended")

    def run(self) -> list[Channel]:
        """Plan everything; returns every channel with events, cut at the end of the data
        (``contacts`` then holds every interaction's plan)."""
        blocks = self.plan_agents()
        total = self.cfg.interactions - 7  # 5 cut-off interactions, 2 of the agent without presence
        self.place(blocks, total)
        self.anomalies()
        channels = self.regular + self.tails() + self.ghost_work()
        for ch in channels:
            ch.cut(self.end)
        for ag in self.agents:
            ag.presence = [p for p in ag.presence if p.ts < self.end]
        return [ch for ch in channels if ch.events]


class _Staff:
    """Finds the second and third agents of a contact: another agent in a ready block that
    holds their channels with MARGIN to spare, preferably one with no other work booked
    within REST of them (an unprocessed block's own work is laid out clear of bookings)."""

    def __init__(self, blocks: list[Block], rng: random.Random) -> None:
        self.blocks, self.rng = blocks, rng
        self.starts = [b.start for b in blocks]
        self.longest = max(b.end - b.start for b in blocks)
        self.work: list[list[tuple[int, int]]] = [[] for _ in blocks]  # booked spans per block

    def book(self, k: int, lo: int, hi: int) -> None:
        self.work[k].append((lo, hi))

    def clear(self, k: int, at: int, length: int) -> int:
        """The earliest start from ``at`` of ``length`` ms of work in block ``k`` clear of its bookings."""
        for lo, hi in sorted(self.work[k]):
            if lo < at + length + REST and hi + REST > at:
                at = max(at, align(hi + REST))
        return at

    def _free(self, j: int, lo: int, hi: int) -> bool:
        return all(e + REST <= lo or s >= hi + REST for s, e in self.work[j])

    def _find(self, lo: int, hi: int, taken: set[int]) -> int | None:
        a = bisect.bisect_left(self.starts, lo - MARGIN - self.longest)
        b = bisect.bisect_right(self.starts, lo - MARGIN)
        if a >= b:
            return None
        n = b - a
        if n <= _SCAN:
            first = self.rng.randrange(n)
            tries = [a + (first + i) % n for i in range(n)]
        else:
            tries = [self.rng.randrange(a, b) for _ in range(_SCAN)]
        fallback = None
        for j in tries:
            blk = self.blocks[j]
            if blk.agent.idx in taken or blk.end - MARGIN < hi:
                continue
            if self._free(j, lo, hi):
                return j
            if fallback is None:
                fallback = j
        return fallback

    def helpers(self, k: int, at: int, item: Item) -> list[Block] | None:
        """Blocks of other agents for the item's slots 1, 2, ... placed at ``at`` (booked), or
        None when some slot finds no agent."""
        spans = item.helper_spans()
        if not spans:
            return []
        taken, found = {self.blocks[k].agent.idx}, []
        for lo, hi in spans:
            j = self._find(at + lo, at + hi, taken)
            if j is None:
                return None
            taken.add(self.blocks[j].agent.idx)
            found.append((j, at + lo, at + hi))
        for j, lo, hi in found:
            self.book(j, lo, hi)
        return [self.blocks[j] for j, _, _ in found]

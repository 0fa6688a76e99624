"""The simulation: one contact center's agents working shifts (presence changes, login
sessions, ready periods) and the work items they handle (calls, emails with the calls nested
in them, work cut off at the end of the data, a few out-of-place events), laid out as
:mod:`pipelines.synthetic.plan` objects. Everything is drawn from ``random.Random(seed)``."""

from __future__ import annotations

import random
import uuid
from collections import deque
from typing import Any

from pipelines.synthetic.config import Config
from pipelines.synthetic.plan import Agent, Block, Channel, Item, Presence, Session
from pipelines.synthetic.times import DAY, HOUR, MIN, SEC, align, parse_start

#: Interactions one agent handles per day at most (sets how many days are simulated).
PER_AGENT_DAY = 30
#: No work item (a call, or an email with the calls nested in it) lasts longer.
ITEM_MAX = 35 * MIN
#: Work stays this far from presence changes, so channel work lies inside login sessions.
MARGIN = 2 * MIN

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
        self.pids = {(canon, sub): self.uuid() for canon, (_, subs) in _PRESENCES.items() for sub, _ in subs}
        ids = self.rng.sample(range(1000, 10000), cfg.agents + 1)
        self.agents = [Agent(i, str(a), self.uuid(), [], [], []) for i, a in enumerate(ids[: cfg.agents])]
        self.ghost = Agent(cfg.agents, str(ids[-1]), self.uuid(), [], [], [])
        self.regular: list[Channel] = []  # placed in login sessions, complete before the end

    # -- random helpers ------------------------------------------------------------------

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def dur(self, lo_s: float, hi_s: float, q: int) -> int:
        """A random duration in ms, a positive multiple of ``q``."""
        ms = int(self.rng.uniform(lo_s, hi_s) * SEC)
        return max(q, ms - ms % q)

    def pick(self, options: tuple, weights: tuple) -> Any:
        return self.rng.choices(options, weights)[0]

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
        n_day = self.cfg.agents - 2
        span = max(0, self.night - 2 * HOUR)
        blocks = []
        for day in range(self.days):
            for ag in self.agents:
                offset = self.night if ag.idx >= n_day else (ag.idx * span // max(1, n_day - 1))
                login = self.start + day * DAY + offset + self.rng.randint(0, 10 * MIN)
                blocks += self.shift_plan(ag, day, login, day == self.days - 1)
        blocks.sort(key=lambda b: (b.start, b.agent.idx))
        return blocks

    # -- work items ----------------------------------------------------------------------

    def new_channel(self, iid: str, conv: str, role: str, style: str) -> Channel:
        return Channel(iid, conv, self.uuid(), role, style)

    def random_call(self, direction: str | None = None, style: str | None = None) -> tuple:
        direction = direction or self.pick(("inbound", "outbound"), (80, 20))
        style = style or self.pick(("ms", "7", "sec"), (80, 10, 10))
        holds = self.pick((0, 1, 2, 3), (55, 25, 13, 7))
        return ("call", direction, style, holds, holds > 0 and self.rng.random() < 0.12)

    def random_spec(self, budget: int) -> tuple:
        """A random work item using at most ``budget`` (>= 1) interactions."""
        kind = self.pick(("call", "failed", "email"), (70, 6, 24))
        style = self.pick(("ms", "7", "sec"), (80, 10, 10))
        if kind == "call":
            return self.random_call(style=style)
        if kind == "failed":
            return ("failed", style)
        k = min(self.pick((0, 1, 2), (40, 40, 20)), budget - 1)
        nested = tuple((self.random_call(), self.rng.random() < 0.75) for _ in range(k))
        return ("email", style, self.pick((0, 1, 2, 3), (35, 35, 20, 10)), nested)

    def build(self, spec: tuple) -> Item:
        if spec[0] == "call":
            return self.call(*spec[1:])
        if spec[0] == "failed":
            return self.failed(spec[1])
        return self.email(*spec[1:])

    def realize(self, spec: tuple) -> Item:
        """The item of ``spec`` with fresh ids and durations, no longer than ITEM_MAX."""
        while True:
            item = self.build(spec)
            if item.length <= ITEM_MAX:
                return item

    def call(self, direction: str, style: str, holds: int, hangup_held: bool) -> Item:
        """Voice call: inbound (customer channel connected at once, agent rung) or outbound
        (agent channel first, then the customer rings); holds on both channels; the customer
        may hang up while held; agent wrap after the disconnect."""
        q = SEC if style == "sec" else 1
        d = self.dur
        iid, conv = self.uuid(), self.uuid()
        cust = self.new_channel(iid, conv, "customer", style)
        ag = self.new_channel(iid, conv, "agent", style)
        if direction == "inbound":
            cust.alerted(0)
            cust.connected(0)
            t = d(5, 60, q)
            ag.alerted(t)
            t += d(3, 20, q)
            ag.connected(t)
            connect = t
        else:
            ag.alerted(0)
            t = connect = d(0.5, 2, q)
            ag.connected(t)
            t += d(0.3, 1.5, q)
            cust.alerted(t)
            t += d(5, 25, q)
            cust.connected(t)
        both = (ag, cust)
        for i in range(holds):
            t += d(20, 180, q)
            for c in both:
                c.suspend("held", t)
            t += d(10, 120, q)
            if hangup_held and i == holds - 1:
                break
            for c in both:
                c.resume("retrieved", t)
        else:
            t += d(20, 240, q)
        for c in both:
            c.disconnected(t)
        cust.ended(t, "released")
        ag.wrapstarted(t)
        end = t + d(10, 120, q)
        ag.ended(end, "released")
        channels = [cust, ag] if direction == "inbound" else [ag, cust]
        return Item(channels, end, 1, connect, end)

    def failed(self, style: str) -> Item:
        """An offer the agent's device refused: alerted -> connectionfailed -> ended."""
        q = SEC if style == "sec" else 1
        ag = self.new_channel(self.uuid(), self.uuid(), "agent", style)
        ag.alerted(0)
        reason = self.pick(("rejected", "busy", "noAnswer"), (50, 30, 20))
        t = self.dur(0.5, 2, q) if reason == "busy" else self.dur(5, 25, q)
        ag.failed(t, reason)
        end = t + self.dur(0.05, 1, q)
        ag.ended(end, reason if self.rng.random() < 0.5 else None)
        return Item([ag], end, 1, t, end)

    def email(self, style: str, parks: int, nested: tuple) -> Item:
        """Email: parked/unparked episodes and calls taken while it is open, each either
        interrupting it (interrupted at the call's connect, resumed after the call's wrap)
        or not; all on both channels."""
        q = SEC if style == "sec" else 1
        d = self.dur
        iid, conv = self.uuid(), self.uuid()
        cust = self.new_channel(iid, conv, "customer", style)
        ag = self.new_channel(iid, conv, "agent", style)
        channels = [cust, ag]
        cust.alerted(0)
        cust.connected(0)
        t = d(2, 60, q)
        ag.alerted(t)
        t += d(2, 30, q)
        ag.connected(t)
        both = (ag, cust)
        steps: list = ["park"] * parks + list(nested)
        self.rng.shuffle(steps)
        for step in steps:
            t += d(20, 120, q)
            if step == "park":
                for c in both:
                    c.suspend("parked", t)
                t += d(30, 240, q)
                for c in both:
                    c.resume("unparked", t)
                continue
            spec, interrupts = step
            call = self.build(spec)
            call.shift(align(t + d(5, 60, 1)))
            channels += call.channels
            t = call.end
            if interrupts:
                for c in both:
                    c.suspend("interrupted", call.connect)
                t += d(0.2, 2, q)
                for c in both:
                    c.resume("resumed", t)
        t += d(20, 120, q)
        for c in both:
            c.disconnected(t)
        cust.ended(t, "released")
        ag.wrapstarted(t)
        end = t + d(30, 180, q)
        ag.ended(end, "released")
        return Item(channels, end, 1 + len(nested), 0, end)

    # -- placing the work ------------------------------------------------------------------

    def spec_stream(self, total: int):
        """Work item specs using exactly ``total`` interactions; the ones every dataset must
        contain are spread in at random positions."""
        forced = [
            ("call", "inbound", "7", 2, False),
            ("call", "inbound", "ms", 1, True),  # customer hangs up while held
            ("call", "outbound", "ms", 1, False),
            ("failed", "sec"),
            (
                "email",
                "ms",
                2,
                ((("call", "inbound", "ms", 0, False), True), (("call", "outbound", "sec", 0, False), True)),
            ),
            ("call", "inbound", "sec", 0, False),
        ]
        self.rng.shuffle(forced)
        size = lambda s: 1 + len(s[3]) if s[0] == "email" else 1  # noqa: E731
        reserve = sum(size(s) for s in forced)
        slots = set(self.rng.sample(range(max(len(forced), total // 2)), len(forced)))
        used = k = 0
        while used < total:
            budget = total - used - reserve
            if forced and (k in slots or budget <= 0):
                spec = forced.pop()
                reserve -= size(spec)
            else:
                spec = self.random_spec(budget)
            used += size(spec)
            k += 1
            yield spec

    def place(self, blocks: list[Block], total: int) -> None:
        """Lay ``total`` interactions into the ready blocks, in proportion to their length,
        with random gaps; items that do not fit move on to the next block."""
        caps = [max(0, b.end - b.start - 2 * MARGIN) for b in blocks]
        whole = sum(caps)
        stream = self.spec_stream(total)
        pending: deque[Item] = deque()
        made = cum = 0
        for block, cap in zip(blocks, caps, strict=True):
            cum += cap
            target = total * cum // whole
            while made < target:
                item = self.realize(next(stream))
                pending.append(item)
                made += item.n
            c0 = align(block.start + MARGIN)
            room = block.end - MARGIN - c0
            placed, used = [], 0
            while pending and used + pending[0].length + SEC <= room:
                item = pending.popleft()
                placed.append(item)
                used += item.length + SEC
            if not placed:
                continue
            weights = [self.rng.random() for _ in range(len(placed) + 1)]
            scale = (room - used) / sum(weights)
            cursor = c0
            for item, w in zip(placed, weights, strict=False):
                cursor = align(cursor + int(w * scale))
                item.shift(cursor)
                cursor += item.length
                self.assign(item.channels, block.agent, block.session)
        if pending:
            raise Overflow

    def assign(self, channels: list[Channel], ag: Agent, session: Session | None, regular: bool = True) -> None:
        """Give the agent channels to ``ag`` (and its login ``session``, if any)."""
        for ch in channels:
            if ch.role == "agent":
                ch.agent, ch.user = ag.agent_id, ag.user_id
                ag.channels.append(ch)
                if session is not None:
                    session.channels.append(ch)
            if regular:
                self.regular.append(ch)

    def tails(self) -> list[Channel]:
        """Work still going on when the data ends: the last night agent has an email open
        (connected) and a call on hold; the other night agent is in wrap."""
        end = self.end
        iid, conv = self.uuid(), self.uuid()
        e_cust, e_ag = self.new_channel(iid, conv, "customer", "ms"), self.new_channel(iid, conv, "agent", "ms")
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
        iid, conv = self.uuid(), self.uuid()
        h_cust, h_ag = self.new_channel(iid, conv, "customer", "7"), self.new_channel(iid, conv, "agent", "7")
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
        iid, conv = self.uuid(), self.uuid()
        w_cust, w_ag = self.new_channel(iid, conv, "customer", "ms"), self.new_channel(iid, conv, "agent", "ms")
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
        self.assign([e_cust, e_ag, h_cust, h_ag], self.agents[-1], self.agents[-1].sessions[-1], regular=False)
        self.assign([w_cust, w_ag], self.agents[-2], self.agents[-2].sessions[-1], regular=False)
        return [e_cust, e_ag, h_cust, h_ag, w_cust, w_ag]

    def ghost_work(self) -> list[Channel]:
        """Two calls of an agent who has no presence data at all, under an hour apart, the
        first across the first UTC midnight."""
        first = self.realize(self.random_call("inbound", "ms"))
        first.shift(align(self.start + self.night + 4 * HOUR - first.length // 2))
        second = self.realize(self.random_call("outbound", "ms"))
        second.shift(align(first.end + self.rng.randint(10 * MIN, 50 * MIN)))
        channels = first.channels + second.channels
        self.assign(channels, self.ghost, None, regular=False)
        return channels

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
        """Plan everything; returns every channel with events, cut at the end of the data."""
        blocks = self.plan_agents()
        total = self.cfg.interactions - 5  # 3 cut-off interactions, 2 of the agent without presence
        self.place(blocks, total)
        self.anomalies()
        channels = self.regular + self.tails() + self.ghost_work()
        for ch in channels:
            ch.cut(self.end)
        for ag in self.agents:
            ag.presence = [p for p in ag.presence if p.ts < self.end]
        return [ch for ch in channels if ch.events]

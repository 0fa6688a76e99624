"""Synthetic VCC webhook traffic, with what a correct pipeline must output known by construction.

:func:`generate` simulates one contact center: agents working shifts (login, breaks, lunch,
logout; one agent's data starts mid-session, one logs out twice at lunch, the two night
agents are still logged in when the data ends, one more agent has no presence data at all),
inbound, outbound and failed voice calls with holds, emails with parks and interruptions by
calls, channels cut off at the end of the data, a few out-of-place events; and delivers the
notifications the way webhooks do: exact duplicates, disorder, retries hours late, garbage
lines, unsupported types, blank lines. It returns the lines and ``truth``, the rows the
pipeline must produce, derived from the simulation's own plan (the segments it laid out,
the sessions it opened), never from ``transforms.timeline`` or ``transforms.presence``.
:func:`run` is ``vccflow generate``: it writes ``notifications-NNNNN.jsonl[.gz]`` and
``truth.json``. Same options, same bytes.

``truth.json`` (times ISO-8601 UTC with 6 fractional digits, durations whole ms):

- ``config``: the options; ``data``: ``start``, ``end_of_data`` (no event at or after it),
  ``days``, ``agent_ids``, ``agents_without_presence``, ``interactions``.
- ``counts``: ``lines = valid + duplicates + sum(dead_letters) + blank`` (blank: empty or
  whitespace-only lines), ``dead_letters`` by code (as ``transforms.events.parse_line``
  classifies them), ``late_deliveries`` (hours late), ``channels``. ``files``: lines per
  file. ``dead_letter_lines``: ``file``, 1-based ``line``, ``error_code``, ``kind``.
- ``channels``: channel id -> its ``channel_sessions`` row (``transforms/timeline.py``
  semantics: totals sum closed segments only, counts include an open episode, ...) with
  ``anomalies`` (names in event-time order: ``retrieved_without_held``, ``<type>_after_ended``)
  and ``segments`` (``seq, state, start_at, end_at, duration_ms, started_by, ended_by``).
- ``presence``: agent id -> intervals (``presence_type`` normalized, ``raw_type`` as sent),
  one per change except an exact repeat of the current presence (same type, id and
  subcategory, e.g. the doubled logout), which is absorbed.
- ``agent_sessions``: agent id -> login sessions (``transforms/presence.py`` semantics): a
  closed session runs login to logout; an open one (``is_open``) to the agent's last known
  time (last presence event or last segment time), so the presence columns always add up
  to ``duration_ms``. Channel work sums the closed segments of the session's agent channels
  (``channel_ids``; all of them lie inside the session); ``busy_ms`` is their wall-clock
  union. ``agent_sessions_inferred``: the agent without presence data: one session
  (``is_inferred``) from its first segment start to its last segment end, all of it
  ``other_presence_ms``.
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import math
import random
import re
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from transforms.collector import paused_gc

SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR

DEFAULT_START = "2024-03-04T08:00:00Z"
TRUTH_FILE = "truth.json"
FILE_PATTERN = re.compile(r"notifications-\d{5}\.jsonl(\.gz)?")
MIN_AGENTS = 3
MIN_INTERACTIONS = 20

#: Interactions one agent handles per day at most (sets how many days are simulated).
PER_AGENT_DAY = 30
#: No work item (a call, or an email with the calls nested in it) lasts longer.
ITEM_MAX = 35 * MIN
#: Work stays this far from presence changes, so channel work lies inside login sessions.
MARGIN = 2 * MIN
#: Shuffled delivery: local displacement bound, share and range of hours-late retries.
SHUFFLE_WINDOW = 3 * MIN
LATE_SHARE = 0.002
LATE_RANGE = (1 * HOUR, 23 * HOUR)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_PAIRS = [a + b for a in _BASE62 for b in _BASE62]  # base62 digit pairs, 0..3843
_BASE62_BYTES = bytes(ord(_BASE62[i % 62]) for i in range(256))  # byte -> base62 character
_KSUID_EPOCH_S = 1_400_000_000
_LINE_PER_ENTRY = ("channels", "presence", "agent_sessions", "agent_sessions_inferred")
_WORK_STATES = ("connected", "held", "parked", "interrupted", "wrap")
_TOTAL_KEYS = {
    "alerting": "alert_ms",
    "connected": "talk_ms",
    "held": "hold_ms",
    "parked": "park_ms",
    "interrupted": "interruption_ms",
    "wrap": "wrap_ms",
}
_EPISODES = {"held": "hold", "parked": "park", "interrupted": "interruption"}
_PRESENCE_COLUMNS = {"ready": "ready_ms", "away": "away_ms", "extendedAway": "extended_away_ms"}
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


@dataclass(frozen=True)
class Config:
    """Generator options (the CLI's, without the output folder). Validated on creation."""

    agents: int = 8
    interactions: int = 200
    seed: int = 1
    duplicates: float = 0.03
    malformed: float = 0.01
    shuffle: bool = False
    files: int = 1
    gzip: bool = False
    start: str = DEFAULT_START

    def __post_init__(self) -> None:
        if self.agents < MIN_AGENTS:
            raise ValueError(f"agents must be >= {MIN_AGENTS} (the special cases need three agents)")
        if self.interactions < MIN_INTERACTIONS:
            raise ValueError(f"interactions must be >= {MIN_INTERACTIONS} (the special cases need them)")
        for name in ("duplicates", "malformed"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1]")
        if self.files < 1:
            raise ValueError("files must be >= 1")
        parse_start(self.start)


@dataclass
class Generated:
    """The generator's result: ``files`` maps each file name to its lines (no newline; a
    blank line is ``b""`` or whitespace) and ``truth`` is the expected output (format: see
    the module docstring)."""

    config: Config
    files: dict[str, list[bytes]]
    truth: dict

    def summary(self) -> str:
        """One line: lines, files, channels, agents."""
        c, d = self.truth["counts"], self.truth["data"]
        dead = sum(c["dead_letters"].values())
        return (
            f"vccflow generate: {c['lines']} lines ({c['valid']} valid, {c['duplicates']} duplicates, "
            f"{dead} dead letters, {c['blank']} blank) in {len(self.files)} file(s); {c['channels']} channels, "
            f"{d['interactions']} interactions, {len(d['agent_ids'])} agents "
            f"(+{len(d['agents_without_presence'])} without presence), {d['days']} day(s) to {d['end_of_data']}"
        )


def parse_start(value: str) -> int:
    """ISO-8601 time with a zone to milliseconds since epoch (sub-millisecond digits dropped)."""
    try:
        text = value.strip()
        dt = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
    except ValueError:
        raise ValueError(f"start must be an ISO-8601 time like {DEFAULT_START}, got {value!r}") from None
    if dt.tzinfo is None:
        raise ValueError(f"start needs a zone (e.g. a trailing Z), got {value!r}")
    return (dt - _EPOCH) // timedelta(milliseconds=1)


@lru_cache(maxsize=1 << 16)
def _hour(hours: int) -> str:
    return (_EPOCH + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:")


def _iso(ms: int, frac: str = "ms") -> str:
    """Milliseconds since epoch as ISO-8601 UTC. ``frac``: ``ms`` (3 digits), ``7`` (7 digits),
    ``us`` (6 digits), ``sec`` (no fraction when the value is a whole second, else 3)."""
    hours, rem = divmod(ms, HOUR)
    m, rem = divmod(rem, MIN)
    s, milli = divmod(rem, SEC)
    head = f"{_hour(hours)}{m:02d}:{s:02d}"
    if frac == "ms" or (frac == "sec" and milli):
        return f"{head}.{milli:03d}Z"
    if frac == "7":
        return f"{head}.{milli:03d}0000Z"
    if frac == "us":
        return f"{head}.{milli:03d}000Z"
    return f"{head}Z"


def _dumps(obj: Any) -> bytes:
    """Compact JSON. The copy trims orjson's oversized buffer (~4 KiB per object)."""
    return bytes(memoryview(orjson.dumps(obj)))


def _iso_or_none(ms: int | None) -> str | None:
    return None if ms is None else _iso(ms, "us")


def _align(ms: int) -> int:
    """Up to the next whole second."""
    return -(-ms // SEC) * SEC


class _Channel:
    """One channel as the simulation lays it out: its events (``[ts, kind, reason, anomaly]``,
    kind without ``channel.``) and its state segments (``[state, start, end, started_by,
    ended_by]``, end None while open), built together so the truth is known by construction."""

    __slots__ = ("cid", "iid", "conv", "role", "style", "agent", "user", "events", "segs")

    def __init__(self, iid: str, conv: str, cid: str, role: str, style: str) -> None:
        self.cid, self.iid, self.conv, self.role, self.style = cid, iid, conv, role, style
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


@dataclass
class _Item:
    """A unit of agent work laid out from time 0: its channels (nested calls included)."""

    channels: list[_Channel]
    length: int
    n: int  # interactions
    connect: int  # agent channel connected (calls)
    end: int  # agent channel ended (calls)

    def shift(self, dt: int) -> None:
        for ch in self.channels:
            ch.shift(dt)
        self.connect += dt
        self.end += dt


@dataclass
class _Presence:
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
class _Session:
    login: int
    logout: int | None = None
    channels: list[_Channel] = field(default_factory=list)  # the agent channels worked in it


@dataclass
class _Agent:
    idx: int
    agent_id: str
    user_id: str
    presence: list[_Presence]
    sessions: list[_Session]
    channels: list[_Channel]


@dataclass
class _Block:
    start: int
    end: int
    agent: _Agent
    session: _Session


class _Overflow(Exception):
    """The planned days cannot hold the interactions: simulate one more day."""


class _Sim:
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
        self.ksuid_count = 0
        self.pids = {(canon, sub): self.uuid() for canon, (_, subs) in _PRESENCES.items() for sub, _ in subs}
        ids = self.rng.sample(range(1000, 10000), cfg.agents + 1)
        self.agents = [_Agent(i, str(a), self.uuid(), [], [], []) for i, a in enumerate(ids[: cfg.agents])]
        self.ghost = _Agent(cfg.agents, str(ids[-1]), self.uuid(), [], [], [])
        self.regular: list[_Channel] = []  # placed in login sessions, complete before the end

    # -- random helpers ------------------------------------------------------------------

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def ksuid(self, ts: int) -> str:
        """27 base62 characters, KSUID-like: 6 for the second (so ids sort by time), 5 for a
        counter (unique by construction), 16 random."""
        self.ksuid_count += 1
        secs, n = max(0, ts // SEC - _KSUID_EPOCH_S), self.ksuid_count
        return (
            _PAIRS[secs // 3844**2 % 3844]
            + _PAIRS[secs // 3844 % 3844]
            + _PAIRS[secs % 3844]
            + _BASE62[n // 3844**2 % 62]
            + _PAIRS[n // 3844 % 3844]
            + _PAIRS[n % 3844]
            + self.rng.randbytes(16).translate(_BASE62_BYTES).decode()
        )

    def dur(self, lo_s: float, hi_s: float, q: int) -> int:
        """A random duration in ms, a positive multiple of ``q``."""
        ms = int(self.rng.uniform(lo_s, hi_s) * SEC)
        return max(q, ms - ms % q)

    def pick(self, options: tuple, weights: tuple) -> Any:
        return self.rng.choices(options, weights)[0]

    # -- agents: shifts, presence, sessions ------------------------------------------------

    def presence(self, ag: _Agent, ts: int, canon: str, raw: str | None = None, repeat: bool = False) -> int:
        r = self.rng.random()
        style = "sec" if r < 0.1 else "7" if r < 0.2 else "ms"
        if style == "sec":
            ts -= ts % SEC
        cat_desc, subs = _PRESENCES[canon]
        sub, desc = (ag.presence[-1].sub, ag.presence[-1].desc) if repeat else self.rng.choice(subs)
        if raw is None:
            raw = _CASING[canon] if canon in _CASING and self.rng.random() < 0.15 else canon
        ag.presence.append(_Presence(ts, canon, raw, sub, desc, cat_desc, self.pids[canon, sub], style, repeat))
        return ts

    def shift_plan(self, ag: _Agent, day: int, login: int, last: bool) -> list[_Block]:
        """One shift's presence changes and sessions; returns its ready periods (work blocks)."""
        r = self.rng.randint
        mid_start = ag.idx == 0 and day == 0
        night = ag.idx >= self.cfg.agents - 2
        blocks = []
        if mid_start:  # logged in before the data starts: the first event is a break
            t = self.presence(ag, login + r(15 * MIN, 20 * MIN), "away")
            ag.sessions.append(_Session(t))
            cur = self.presence(ag, t + r(8 * MIN, 12 * MIN), "ready")
        else:
            cur = self.presence(ag, login, "ready")
            ag.sessions.append(_Session(cur))
        t = self.presence(ag, login + r(90 * MIN, 105 * MIN), "away")
        blocks.append(_Block(cur, t, ag, ag.sessions[-1]))
        cur = self.presence(ag, t + r(10 * MIN, 15 * MIN), "ready")
        t = login + r(195 * MIN, 210 * MIN)
        if ag.idx == 1:  # logs out for lunch (twice on day 0) and back in after it
            t = self.presence(ag, t, "loggedOut", raw="loggedOut")
            blocks.append(_Block(cur, t, ag, ag.sessions[-1]))
            ag.sessions[-1].logout = t
            if day == 0:
                self.presence(ag, t + r(1500, 3000), "loggedOut", raw="LoggedOut", repeat=True)
            cur = self.presence(ag, t + r(30 * MIN, 40 * MIN), "ready")
            ag.sessions.append(_Session(cur))
        else:
            t = self.presence(ag, t, "lunch" if (day + ag.idx) % 2 == 0 else "extendedAway")
            blocks.append(_Block(cur, t, ag, ag.sessions[-1]))
            cur = self.presence(ag, t + r(30 * MIN, 40 * MIN), "ready")
        t = self.presence(ag, login + r(300 * MIN, 315 * MIN), "extendedAway" if (day + ag.idx) % 3 == 1 else "away")
        blocks.append(_Block(cur, t, ag, ag.sessions[-1]))
        cur = self.presence(ag, t + r(10 * MIN, 15 * MIN), "ready")
        if last and night:  # still working when the data ends: room left for the cut-off channels
            blocks.append(_Block(cur, self.end - 30 * MIN, ag, ag.sessions[-1]))
            return blocks
        t = self.presence(ag, login + 8 * HOUR + r(-5 * MIN, 10 * MIN), "loggedOut")
        ag.sessions[-1].logout = t
        blocks.append(_Block(cur, t, ag, ag.sessions[-1]))
        return blocks

    def plan_agents(self) -> list[_Block]:
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

    def new_channel(self, iid: str, conv: str, role: str, style: str) -> _Channel:
        return _Channel(iid, conv, self.uuid(), role, style)

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

    def build(self, spec: tuple) -> _Item:
        if spec[0] == "call":
            return self.call(*spec[1:])
        if spec[0] == "failed":
            return self.failed(spec[1])
        return self.email(*spec[1:])

    def realize(self, spec: tuple) -> _Item:
        """The item of ``spec`` with fresh ids and durations, no longer than ITEM_MAX."""
        while True:
            item = self.build(spec)
            if item.length <= ITEM_MAX:
                return item

    def call(self, direction: str, style: str, holds: int, hangup_held: bool) -> _Item:
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
        return _Item(channels, end, 1, connect, end)

    def failed(self, style: str) -> _Item:
        """An offer the agent's device refused: alerted -> connectionfailed -> ended."""
        q = SEC if style == "sec" else 1
        ag = self.new_channel(self.uuid(), self.uuid(), "agent", style)
        ag.alerted(0)
        reason = self.pick(("rejected", "busy", "noAnswer"), (50, 30, 20))
        t = self.dur(0.5, 2, q) if reason == "busy" else self.dur(5, 25, q)
        ag.failed(t, reason)
        end = t + self.dur(0.05, 1, q)
        ag.ended(end, reason if self.rng.random() < 0.5 else None)
        return _Item([ag], end, 1, t, end)

    def email(self, style: str, parks: int, nested: tuple) -> _Item:
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
            call.shift(_align(t + d(5, 60, 1)))
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
        return _Item(channels, end, 1 + len(nested), 0, end)

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

    def place(self, blocks: list[_Block], total: int) -> None:
        """Lay ``total`` interactions into the ready blocks, in proportion to their length,
        with random gaps; items that do not fit move on to the next block."""
        caps = [max(0, b.end - b.start - 2 * MARGIN) for b in blocks]
        whole = sum(caps)
        stream = self.spec_stream(total)
        pending: deque[_Item] = deque()
        made = cum = 0
        for block, cap in zip(blocks, caps, strict=True):
            cum += cap
            target = total * cum // whole
            while made < target:
                item = self.realize(next(stream))
                pending.append(item)
                made += item.n
            c0 = _align(block.start + MARGIN)
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
                cursor = _align(cursor + int(w * scale))
                item.shift(cursor)
                cursor += item.length
                self.assign(item.channels, block.agent, block.session)
        if pending:
            raise _Overflow

    def assign(self, channels: list[_Channel], ag: _Agent, session: _Session | None, regular: bool = True) -> None:
        """Give the agent channels to ``ag`` (and its login ``session``, if any)."""
        for ch in channels:
            if ch.role == "agent":
                ch.agent, ch.user = ag.agent_id, ag.user_id
                ag.channels.append(ch)
                if session is not None:
                    session.channels.append(ch)
            if regular:
                self.regular.append(ch)

    def tails(self) -> list[_Channel]:
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

    def ghost_work(self) -> list[_Channel]:
        """Two calls of an agent who has no presence data at all, under an hour apart, the
        first across the first UTC midnight."""
        first = self.realize(self.random_call("inbound", "ms"))
        first.shift(_align(self.start + self.night + 4 * HOUR - first.length // 2))
        second = self.realize(self.random_call("outbound", "ms"))
        second.shift(_align(first.end + self.rng.randint(10 * MIN, 50 * MIN)))
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

    def run(self) -> list[_Channel]:
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

    # -- notifications -------------------------------------------------------------------

    def time_field(self, ts: int) -> str:
        """``time``: the notification's creation, ~0.5 s after the event, 7 digits."""
        rnd = self.rng.random
        return f"{_iso(ts + 300 + int(rnd() * 600), 'ms')[:-1]}{int(rnd() * 10000):04d}Z"

    def version(self) -> str:
        return "v0" if self.rng.random() < 0.02 else "v1"

    def channel_object(
        self, ch: _Channel, kind: str, ts: int, reason: str | None, type_: str | None = None, body: dict | None = None
    ) -> dict:
        """A channel notification; ``body`` is its ``data.channel`` when already built."""
        data: dict[str, Any] = {"timestamp": _iso(ts, ch.style), "channel": body or _channel_body(ch)}
        if reason is not None:
            data["reason"] = reason
        return {
            "specversion": "1.0",
            "type": type_ or f"channel.{kind}.{self.version()}",
            "id": self.ksuid(ts),
            "source": "/channel",
            "subject": ch.cid,
            "time": self.time_field(ts),
            "datacontenttype": "application/json",
            "data": data,
        }

    def presence_object(self, ag: _Agent, p: _Presence) -> dict:
        return {
            "specversion": "1.0",
            "type": f"agent.presencechanged.{self.version()}",
            "id": self.ksuid(p.ts),
            "source": "/agent",
            "subject": ag.agent_id,
            "time": self.time_field(p.ts),
            "datacontenttype": "application/json",
            "data": {
                "timestamp": _iso(p.ts, p.style),
                "presence": {
                    "presenceId": p.pid,
                    "category": {"type": p.raw, "description": p.cat_desc, "subcategory": p.sub},
                    "description": p.desc,
                },
                "user": {"agentId": ag.agent_id, "userId": ag.user_id},
            },
        }

    def notifications(self, channels: list[_Channel]) -> list[tuple[int, bytes, str | None]]:
        """Every valid notification once: ``(event time, line, channel id or None)``."""
        out = []
        for ag in self.agents:
            for p in ag.presence:
                out.append((p.ts, _dumps(self.presence_object(ag, p)), None))
        for ch in channels:
            body = _channel_body(ch)
            for ts, kind, reason, _ in ch.events:
                out.append((ts, _dumps(self.channel_object(ch, kind, ts, reason, body=body)), ch.cid))
        return out

    def garbage(self, channels: list[_Channel], valid: list, keys: list[int], n: int) -> list[tuple]:
        """At least ``n`` dead-letter lines ``(key, raw, code, kind)``: every kind once, then random kinds."""
        rng = self.rng

        def base(**changes) -> dict:
            ch = rng.choice(channels)
            ts, kind, reason, _ = rng.choice(ch.events)
            obj = self.channel_object(ch, kind, ts, reason)
            for path, value in changes.items():
                target = obj
                *heads, last = path.split("__")
                for h in heads:
                    target = target[h]
                if value is None:
                    del target[last]
                else:
                    target[last] = value
            return obj

        def truncated_copy() -> tuple:
            i = rng.randrange(len(valid))
            line = valid[i][1]
            return keys[i] - 1, line[: rng.randint(line.index(b'"source"'), len(line) - 2)]

        def encoding() -> bytes:
            raw = _dumps(base())
            return raw.replace(b'"subject":"', b'"subject":"\xc3\x28', 1)

        def foreign(type_: str) -> bytes:
            ch = rng.choice(channels)
            ts = rng.choice(ch.events)[0]
            if type_.startswith("interaction."):
                obj = {
                    "specversion": "1.0",
                    "type": type_,
                    "id": self.ksuid(ts),
                    "source": "/interaction",
                    "subject": ch.iid,
                    "time": self.time_field(ts),
                    "datacontenttype": "application/json",
                    "data": {
                        "timestamp": _iso(ts),
                        "interaction": {"interactionId": ch.iid, "conversationId": ch.conv},
                    },
                }
            else:
                obj = self.channel_object(ch, "held", ts, None, type_)
                if type_.startswith("channel.activityrecord"):
                    obj["data"]["activity"] = {"type": "note", "text": "customer asked for a callback"}
            return _dumps(obj)

        kinds = {
            "truncated_copy": ("invalid_json", None),
            "not_json": (
                "invalid_json",
                lambda: rng.choice(
                    (
                        b"HTTP/1.1 502 Bad Gateway",
                        b"<html><body>upstream timed out</body></html>",
                        b'{"specversion":"1.0",,"type":"channel.held.v1"}',
                        b"{'id': 'single-quoted'}",
                    )
                ),
            ),
            "not_an_object": ("not_an_object", lambda: rng.choice((b"[1,2]", b'"x"', b"42", b"null"))),
            "no_id": ("missing_field", lambda: _dumps(base(id=None))),
            "no_timestamp": ("missing_field", lambda: _dumps(base(data__timestamp=None))),
            "timestamp_word": ("bad_timestamp", lambda: _dumps(base(data__timestamp="yesterday"))),
            "timestamp_impossible": (
                "bad_timestamp",
                lambda: _dumps(base(data__timestamp="2024-13-45T99:00:00Z")),
            ),
            "invalid_utf8": ("invalid_encoding", encoding),
            "data_string": ("invalid_field", lambda: _dumps(base(data="timestamp=2024-03-04T08:00:00Z"))),
            "party_list": ("invalid_field", lambda: _dumps(base(data__channel__party=["agent"]))),
            "detail_record": ("unsupported_type", lambda: foreign("interaction.detailrecord.v0")),
            "activity_record": ("unsupported_type", lambda: foreign("channel.activityrecord.v0")),
            "future_version": ("unsupported_type", lambda: foreign("channel.held.v9")),
        }
        names = list(kinds)
        rng.shuffle(names)
        names += [rng.choice(list(kinds)) for _ in range(n - len(names))]
        out = []
        for name in names:
            code, make = kinds[name]
            if make is None:
                key, raw = truncated_copy()
            else:
                key, raw = rng.randint(self.start, self.end), make()
            out.append((key, raw, code, name))
        return out


def _channel_body(ch: _Channel) -> dict:
    party = {"role": "agent", "agentId": ch.agent, "userId": ch.user} if ch.role == "agent" else {"role": "customer"}
    return {"conversationId": ch.conv, "interactionId": ch.iid, "channelId": ch.cid, "party": party}


def _segment_rows(ch: _Channel) -> list[dict]:
    return [
        {
            "seq": i,
            "state": state,
            "start_at": _iso(start, "us"),
            "end_at": _iso_or_none(end),
            "duration_ms": None if end is None else end - start,
            "started_by": started_by,
            "ended_by": ended_by,
        }
        for i, (state, start, end, started_by, ended_by) in enumerate(ch.segs)
    ]


def _channel_truth(ch: _Channel, duplicates: int) -> dict:
    """The ``channel_sessions`` row (plus its segments) of a channel, from its construction."""
    at: dict[str, int] = {}
    anomalies = []
    fail_reason = end_reason = None
    for ts, kind, reason, anomaly in sorted(ch.events, key=lambda ev: ev[0]):
        if anomaly:
            anomalies.append(anomaly)
            continue
        at.setdefault(kind, ts)
        if kind == "connectionfailed":
            fail_reason = reason
        elif kind == "ended":
            end_reason = reason
    totals = dict.fromkeys(_TOTAL_KEYS.values(), 0)
    counts = dict.fromkeys(_EPISODES, 0)
    longest = dict.fromkeys(_EPISODES, 0)
    disconnect_state = None
    for state, start, end, _, ended_by in ch.segs:
        if state in counts:
            counts[state] += 1
        if end is None:
            continue
        totals[_TOTAL_KEYS[state]] += end - start
        if state in longest:
            longest[state] = max(longest[state], end - start)
        if ended_by == "disconnected":
            disconnect_state = state
    talk, hold, park, intr, wrap = (totals[k] for k in ("talk_ms", "hold_ms", "park_ms", "interruption_ms", "wrap_ms"))
    open_state = ch.segs[-1][0] if ch.segs and ch.segs[-1][2] is None else None
    times = [ev[0] for ev in ch.events]
    return {
        "interaction_id": ch.iid,
        "conversation_id": ch.conv,
        "party_role": ch.role,
        "agent_id": ch.agent,
        "user_id": ch.user,
        "alerted_at": _iso_or_none(at.get("alerted")),
        "connected_at": _iso_or_none(at.get("connected")),
        "disconnected_at": _iso_or_none(at.get("disconnected")),
        "wrap_started_at": _iso_or_none(at.get("wrapstarted")),
        "ended_at": _iso_or_none(at.get("ended")),
        "first_event_at": _iso(min(times), "us"),
        "last_event_at": _iso(max(times), "us"),
        "connection_failed": "connectionfailed" in at,
        "end_reason": end_reason if end_reason is not None else fail_reason,
        "alert_ms": totals["alert_ms"],
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
        "held_at_disconnect": disconnect_state == "held",
        "disconnect_state": disconnect_state,
        "is_complete": "ended" in at,
        "open_state": open_state,
        "event_count": len(ch.events),
        "duplicate_count": duplicates,
        "anomaly_count": len(anomalies),
        "anomalies": anomalies,
        "segments": _segment_rows(ch),
    }


def _presence_truth(ag: _Agent) -> list[dict]:
    """Presence intervals: each change (absorbed exact repeats excepted) to the next one."""
    kept = [p for p in ag.presence if not p.repeat]
    rows = []
    for p, nxt in zip(kept, kept[1:] + [None], strict=True):
        rows.append(
            {
                "presence_type": p.canon,
                "raw_type": p.raw,
                "presence_id": p.pid,
                "presence_subcategory": p.sub,
                "presence_description": p.desc,
                "user_id": ag.user_id,
                "start_at": _iso(p.ts, "us"),
                "end_at": None if nxt is None else _iso(nxt.ts, "us"),
                "duration_ms": None if nxt is None else nxt.ts - p.ts,
            }
        )
    return rows


def _work(channels: list[_Channel]) -> dict:
    """Channel-work columns of a session from its agent channels' closed segments."""
    out = dict.fromkeys(("talk_ms", "hold_ms", "park_ms", "interruption_ms", "wrap_ms"), 0)
    spans, handled = [], 0
    for ch in channels:
        if any(s[0] == "connected" and s[2] is not None for s in ch.segs):
            handled += 1
        for state, start, end, _, _ in ch.segs:
            if end is not None and state in _WORK_STATES:
                out[_TOTAL_KEYS[state]] += end - start
                spans.append((start, end))
    spans.sort()
    busy, cur_s, cur_e = 0, None, None
    for s, e in spans:
        if cur_e is None or s > cur_e:
            busy += 0 if cur_e is None else cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += 0 if cur_e is None else cur_e - cur_s
    out["handle_ms"] = out["talk_ms"] + out["hold_ms"] + out["wrap_ms"]
    return {"channels_handled": handled, **out, "busy_ms": busy, "channel_ids": [ch.cid for ch in channels]}


def _session_row(
    ag: _Agent, login: int, logout: int | None, end: int, presence: dict, work: dict, inferred: bool
) -> dict:
    duration = end - login
    return {
        "session_id": f"{ag.agent_id}:{_iso(login, 'us')}" + (":inferred" if inferred else ""),
        "user_id": ag.user_id,
        "login_at": _iso(login, "us"),
        "logout_at": _iso_or_none(logout),
        "duration_ms": duration,
        "ready_ms": presence.get("ready_ms", 0),
        "away_ms": presence.get("away_ms", 0),
        "extended_away_ms": presence.get("extended_away_ms", 0),
        "other_presence_ms": presence.get("other_presence_ms", 0),
        **work,
        "occupancy": work["busy_ms"] / duration if duration else 0.0,
        "is_open": logout is None and not inferred,
        "is_inferred": inferred,
    }


def _sessions_truth(ag: _Agent) -> list[dict]:
    """Login sessions; an open one runs to the agent's last known time (last presence event,
    repeats included, or last segment time: end of a closed segment, start of an open one)."""
    last_known = max(
        [p.ts for p in ag.presence] + [s[2] if s[2] is not None else s[1] for c in ag.channels for s in c.segs]
    )
    kept = [p for p in ag.presence if not p.repeat]
    starts = [p.ts for p in kept]
    rows = []
    for sess in ag.sessions:
        end = sess.logout if sess.logout is not None else max(last_known, sess.login)
        presence: Counter = Counter()
        for i in range(bisect.bisect_left(starts, sess.login), bisect.bisect_left(starts, end)):
            stop = min(starts[i + 1], end) if i + 1 < len(starts) else end
            presence[_PRESENCE_COLUMNS.get(kept[i].canon, "other_presence_ms")] += stop - starts[i]
        rows.append(_session_row(ag, sess.login, sess.logout, end, presence, _work(sess.channels), False))
    return rows


def _inferred_truth(ag: _Agent) -> list[dict]:
    """The one session inferred from the channel work of an agent without presence data:
    from its first segment start to its last segment end, all of it ``other_presence_ms``."""
    lo = min(s[1] for c in ag.channels for s in c.segs)
    hi = max(s[2] for c in ag.channels for s in c.segs)
    return [_session_row(ag, lo, hi, hi, {"other_presence_ms": hi - lo}, _work(ag.channels), True)]


def _build_truth(sim: _Sim, channels: list[_Channel], lines: dict, dup_by_channel: Counter) -> dict:
    """The ground truth (format: see the module docstring)."""
    ch_rows = {ch.cid: _channel_truth(ch, dup_by_channel[ch.cid]) for ch in channels}
    ch_rows = dict(sorted(ch_rows.items(), key=lambda kv: (kv[1]["first_event_at"], kv[0])))
    return {
        "config": asdict(sim.cfg),
        "data": {
            "start": _iso(sim.start, "us"),
            "end_of_data": _iso(sim.end, "us"),
            "days": sim.days,
            "agent_ids": [ag.agent_id for ag in sim.agents],
            "agents_without_presence": [sim.ghost.agent_id],
            "interactions": len({ch.iid for ch in channels}),
        },
        "counts": {**lines["counts"], "channels": len(ch_rows)},
        "files": lines["files"],
        "dead_letter_lines": lines["dead"],
        "channels": ch_rows,
        "presence": {ag.agent_id: _presence_truth(ag) for ag in sim.agents},
        "agent_sessions": {ag.agent_id: _sessions_truth(ag) for ag in sim.agents},
        "agent_sessions_inferred": {sim.ghost.agent_id: _inferred_truth(sim.ghost)},
    }


def _deliver(sim: _Sim, channels: list[_Channel]) -> tuple[dict[str, list[bytes]], dict, Counter]:
    """Notification lines in delivery order, split into files, with their accounting."""
    cfg, rng = sim.cfg, sim.rng
    valid = sim.notifications(channels)
    if cfg.shuffle:
        keys = [ts + int(rng.random() * SHUFFLE_WINDOW) for ts, _, _ in valid]
        late = rng.sample(range(len(valid)), max(1, round(LATE_SHARE * len(valid))))
        for i in late:
            keys[i] = valid[i][0] + rng.randint(*LATE_RANGE)
    else:
        keys, late = [ts for ts, _, _ in valid], []
    out: list[tuple] = [(keys[i], i, line, None) for i, (_, line, _) in enumerate(valid)]
    dup_by_channel: Counter = Counter()
    n_dup = round(cfg.duplicates * len(valid))
    for i in rng.sample(range(len(valid)), n_dup):
        out.append((keys[i] + rng.randint(500, 10 * MIN), len(out), valid[i][1], None))
        if valid[i][2] is not None:
            dup_by_channel[valid[i][2]] += 1
    n_dead = n_blank = 0
    if cfg.malformed > 0:
        n_dead = round(cfg.malformed * len(valid))
        n_blank = max(2, round(cfg.malformed * len(valid) / 10))
    dead = sim.garbage(channels, valid, keys, n_dead) if cfg.malformed > 0 else []
    for key, raw, code, kind in dead:
        out.append((key, len(out), raw, (code, kind)))
    for _ in range(n_blank):
        out.append((rng.randint(sim.start, sim.end), len(out), rng.choice((b"", b"", b" ")), "blank"))
    out.sort(key=lambda e: (e[0], e[1]))

    ext = ".jsonl.gz" if cfg.gzip else ".jsonl"
    files: dict[str, list[bytes]] = {}
    dead_lines = []
    bounds = [len(out) * k // cfg.files for k in range(cfg.files + 1)]
    for k in range(cfg.files):
        name = f"notifications-{k:05d}{ext}"
        chunk = out[bounds[k] : bounds[k + 1]]
        files[name] = [e[2] for e in chunk]
        for no, e in enumerate(chunk, 1):
            if isinstance(e[3], tuple):
                dead_lines.append({"file": name, "line": no, "error_code": e[3][0], "kind": e[3][1]})
    by_code = Counter(d["error_code"] for d in dead_lines)
    counts = {
        "lines": len(out),
        "blank": n_blank,
        "valid": len(valid),
        "duplicates": n_dup,
        "dead_letters": dict(sorted(by_code.items())),
        "late_deliveries": len(late),
    }
    return files, {"counts": counts, "files": {n: len(v) for n, v in files.items()}, "dead": dead_lines}, dup_by_channel


def generate(config: Config) -> Generated:
    """Simulate, deliver and account; pure (no filesystem), deterministic for a config."""
    days = max(1, math.ceil(config.interactions / (config.agents * PER_AGENT_DAY)))
    with paused_gc():  # millions of long-lived objects, no cycles
        while True:
            sim = _Sim(config, days)
            try:
                channels = sim.run()
                break
            except _Overflow:
                days += 1
        files, lines, dup_by_channel = _deliver(sim, channels)
        return Generated(config, files, _build_truth(sim, channels, lines, dup_by_channel))


def dump_truth(truth: dict, out: BinaryIO) -> None:
    """Write ``truth.json`` to a binary stream: compact JSON, one channel, agent or dead
    letter per line (streamed: no second copy of the truth in memory)."""
    out.write(b"{")
    for i, (key, value) in enumerate(truth.items()):
        out.write((b",\n" if i else b"") + orjson.dumps(key) + b":")
        if isinstance(value, dict) and key in _LINE_PER_ENTRY:
            out.write(b"{")
            for j, (k, v) in enumerate(value.items()):
                out.write((b",\n" if j else b"\n") + orjson.dumps(k) + b":" + orjson.dumps(v))
            out.write(b"}")
        elif isinstance(value, list):
            out.write(b"[")
            for j, v in enumerate(value):
                out.write((b",\n" if j else b"\n") + orjson.dumps(v))
            out.write(b"]")
        else:
            out.write(orjson.dumps(value))
    out.write(b"}\n")


def write_output(generated: Generated, output: str | Path) -> list[Path]:
    """Write the notification files and ``truth.json`` into ``output`` (created if needed);
    earlier ``notifications-NNNNN.jsonl[.gz]`` files there are removed first. Returns the
    paths written. gzip output is byte-stable (no name, mtime 0)."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():
        if FILE_PATTERN.fullmatch(stale.name) and stale.is_file():
            stale.unlink()
    written = []
    for name, lines in generated.files.items():
        payload = b"".join(line + b"\n" for line in lines)
        path = out / name
        if generated.config.gzip:
            with (
                open(path, "wb") as f,
                gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=6) as gz,
            ):
                gz.write(payload)
        else:
            path.write_bytes(payload)
        written.append(path)
    truth = out / TRUTH_FILE
    with open(truth, "wb") as f:
        dump_truth(generated.truth, f)
    return [*written, truth]


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text}")
    return value


def _at_least(low: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text}")
        return value

    return parse


def _start(text: str) -> str:
    try:
        parse_start(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vccflow generate",
        description="Write realistic synthetic VCC webhook notifications (notifications-NNNNN.jsonl[.gz]) and\n"
        "truth.json, the rows a correct pipeline must produce from them, known by construction.\n"
        "Same options, same bytes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  vccflow generate --output /tmp/vcc
  vccflow generate --output samples/vcc-demo --agents 6 --interactions 60 --seed 7 --shuffle --files 2
  vccflow generate --output /tmp/big --agents 200 --interactions 100000 --files 16 --gzip --shuffle
  vccflow generate --output /tmp/clean --duplicates 0 --malformed 0 --start 2024-06-30T12:00:00Z
""",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="folder to write into (created if needed)")
    parser.add_argument(
        "--agents",
        type=_at_least(MIN_AGENTS),
        default=8,
        metavar="N",
        help=f"agents with presence data (>= {MIN_AGENTS}; one more agent without any is added; default 8)",
    )
    parser.add_argument(
        "--interactions",
        type=_at_least(MIN_INTERACTIONS),
        default=200,
        metavar="N",
        help=f"interactions (calls, failed offers, emails; >= {MIN_INTERACTIONS}); more than "
        f"{PER_AGENT_DAY} per agent spread over more days (default 200)",
    )
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default 1)")
    parser.add_argument(
        "--duplicates",
        type=_fraction,
        default=0.03,
        metavar="R",
        help="share of valid notifications delivered a second time, byte for byte (default 0.03)",
    )
    parser.add_argument(
        "--malformed",
        type=_fraction,
        default=0.01,
        metavar="R",
        help="extra dead-letter lines as a share of the valid notifications, at least one of each kind when "
        "above 0 (invalid JSON or UTF-8, not an object, missing or invalid fields, bad timestamps, "
        "unsupported types); blank lines come with them (default 0.01)",
    )
    parser.add_argument(
        "--shuffle",
        action="store_true",
        help=f"deliver out of order: each notification up to {SHUFFLE_WINDOW // MIN} minutes late, "
        f"{LATE_SHARE * 100:.1f}%% of them (at least one) 1 to 23 hours late (default: event-time order)",
    )
    parser.add_argument(
        "--files",
        type=_at_least(1),
        default=1,
        metavar="N",
        help="split the lines, in delivery order, into N files (default 1)",
    )
    parser.add_argument("--gzip", action="store_true", help="write .jsonl.gz files instead of .jsonl")
    parser.add_argument(
        "--start",
        type=_start,
        default=DEFAULT_START,
        metavar="ISO",
        help=f"when the first shift starts; the night shift always crosses a UTC midnight (default {DEFAULT_START})",
    )
    return parser


def run(argv: list[str] | None = None) -> int:
    """``vccflow generate``: generate, write, print a one-line summary; returns 0."""
    args = build_parser().parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k != "output"}
    generated = generate(Config(**options))
    write_output(generated, args.output)
    print(f"{generated.summary()} -> {args.output}")
    return 0

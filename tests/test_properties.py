"""Property tests (issue 7, item 1): generated VALID lifecycles give the same rows whatever the
delivery order and duplication, and the session totals are the sums of the segments.

Strategies build real notifications (JSON bytes, parsed with ``parse_line``) for:

- channel lifecycles per ``shared/spec/vcc-webhooks.md``: alerted -> connected -> any sequence
  of held/retrieved, parked/unparked, interrupted/resumed (a suspension may also end in the
  disconnect) -> disconnected [-> wrapstarted, agent channels] -> ended; alerted ->
  connectionfailed -> ended; each possibly cut off after any event (data ends there);
- event times with equal timestamps, sub-millisecond gaps, ms/us/7-digit/9-digit fractions and
  non-UTC zone offsets. Two events share a timestamp only where the lifecycle tie-break
  (``CHANNEL_RANK``) orders them as generated: that is what "valid" means for equal times;
- agents with presence changes (casing variants, repeats, unknown types) and agent channels.

Deliveries are the events plus exact copies of random ones (same ``(source, id)``), in any
permutation.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from transforms.events import CHANNEL_RANK, Event, parse_line
from transforms.parquet import to_arrow
from transforms.presence import sessionize_agent
from transforms.timeline import ms_between, sessionize_channel

FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(
    max_examples=2,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # a failing pipeline run is not worth shrinking
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY0_US = 1_709_510_400_000_000  # 2024-03-04T00:00:00Z
PAIRS = (("held", "retrieved"), ("parked", "unparked"), ("interrupted", "resumed"))
SUSPENDED = {"held": "held", "parked": "parked", "interrupted": "interrupted"}
RESUMED = {"retrieved": "held", "unparked": "parked", "resumed": "interrupted"}
PRESENCE_TYPES = (
    "ready",
    "Ready",
    "READY",
    "away",
    "Away",
    "extendedAway",
    "ExtendedAway",
    "extended_away",
    "loggedOut",
    "LoggedOut",
    "logged out",
    "training",
)
WORK = {"connected": "talk_ms", "held": "hold_ms", "parked": "park_ms", "interrupted": "interruption_ms"}
WORK_ALL = {**WORK, "wrap": "wrap_ms"}
TOTAL_OF_STATE = {"alerting": "alert_ms", **WORK_ALL}
COUNT_OF_STATE = {"held": "hold_count", "parked": "park_count", "interrupted": "interruption_count"}
LONGEST_OF_STATE = {"held": "longest_hold_ms", "parked": "longest_park_ms", "interrupted": "longest_interruption_ms"}


def rank(kind: str) -> int:
    return CHANNEL_RANK[f"channel.{kind}"]


# --- notifications ---------------------------------------------------------------------


def ts_text(us: int, digits: int, offset_min: int) -> str:
    """``us`` (UTC microseconds) as ISO-8601 with ``digits`` fractional digits and a zone.

    ``digits`` 0 and 3 need a time that is whole at that precision; 7 and 9 add digits past
    the microsecond (the parser truncates them)."""
    local = EPOCH + timedelta(microseconds=us) + timedelta(minutes=offset_min)
    frac = f"{us % 1_000_000:06d}"
    frac = {0: "", 3: "." + frac[:3], 6: "." + frac, 7: "." + frac + "4", 9: "." + frac + "999"}[digits]
    if offset_min == 0:
        zone = "Z"
    else:
        sign = "+" if offset_min > 0 else "-"
        zone = f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"
    return local.strftime("%Y-%m-%dT%H:%M:%S") + frac + zone


@st.composite
def ts_texts(draw, us: int) -> str:
    choices = [6, 7, 9] + ([3] if us % 1000 == 0 else []) + ([0] if us % 1_000_000 == 0 else [])
    return ts_text(us, draw(st.sampled_from(choices)), draw(st.sampled_from((0, 0, 0, 60, -300, 330, 14 * 60))))


@dataclass(frozen=True)
class Note:
    """One generated notification: its JSON line and what it means."""

    raw: bytes
    kind: str  # "alerted", ..., or "presence"
    ts: int
    key: str  # channel id or agent id


def channel_note(kind, ts, text, channel, eid, party, interaction, version, reason=None) -> Note:
    data = {"timestamp": text, "channel": {"interactionId": interaction, "conversationId": "conv-" + interaction}}
    data["channel"]["channelId"] = channel
    if party is not None:
        data["channel"]["party"] = party
    if reason is not None:
        data["reason"] = reason
    obj = {
        "specversion": "1.0",
        "type": f"channel.{kind}.{version}",
        "id": eid,
        "source": "/channel",
        "subject": channel,
        "time": text,
        "datacontenttype": "application/json",
        "data": data,
    }
    return Note(orjson.dumps(obj), kind, ts, channel)


def presence_note(ts, text, agent, user, eid, ptype, presence_id, sub) -> Note:
    category = {"type": ptype, "description": ptype.title()}
    if sub is not None:
        category["subcategory"] = sub
    obj = {
        "specversion": "1.0",
        "type": "agent.presencechanged.v1",
        "id": eid,
        "source": "/agent",
        "subject": agent,
        "time": text,
        "datacontenttype": "application/json",
        "data": {
            "timestamp": text,
            "presence": {"presenceId": presence_id, "category": category, "description": f"{ptype} ({sub})"},
            "user": {"agentId": agent, "userId": user},
        },
    }
    return Note(orjson.dumps(obj), "presence", ts, agent)


def parse(note: Note) -> Event:
    ev = parse_line(note.raw, "gen:1")
    assert isinstance(ev, Event), ev  # the generator only makes valid notifications
    assert ev.ts == note.ts and ev.key == note.key
    return ev


# --- strategies --------------------------------------------------------------------------

GAPS_US = st.one_of(
    st.just(0),
    st.integers(1, 999),  # sub-millisecond
    st.integers(1, 120_000).map(lambda ms: ms * 1000),
    st.integers(1, 7200).map(lambda s: s * 1_000_000),
)


@st.composite
def lifecycle_kinds(draw, agent_channel: bool) -> list[str]:
    kinds = ["alerted"]
    if draw(st.integers(0, 5)) == 0:
        kinds += ["connectionfailed", "ended"]
    else:
        kinds.append("connected")
        for _ in range(draw(st.integers(0, 5))):
            suspend, resume = draw(st.sampled_from(PAIRS))
            kinds.append(suspend)
            if draw(st.integers(0, 5)) == 0:  # hung up while held/parked/interrupted
                break
            kinds.append(resume)
        kinds.append("disconnected")
        if agent_channel and draw(st.booleans()):
            kinds.append("wrapstarted")
        kinds.append("ended")
    cut = draw(st.one_of(st.just(len(kinds)), st.integers(1, len(kinds))))  # data cut off after any event
    return kinds[:cut]


def event_times(draw, kinds: list[str], start: int) -> list[int]:
    """Non-decreasing times; a tie only where the lifecycle rank increases (valid ties)."""
    times = [start]
    for prev, nxt in zip(kinds, kinds[1:], strict=False):
        gap = draw(GAPS_US)
        if gap == 0 and rank(nxt) <= rank(prev):
            gap = 1
        times.append(times[-1] + gap)
    return times


@dataclass(frozen=True)
class Channel:
    channel_id: str
    agent_id: str | None
    kinds: tuple[str, ...]
    times: tuple[int, ...]
    notes: tuple[Note, ...]


@st.composite
def channels(draw, channel_id: str = "ch-1", agent: str | None = "1544", start: int | None = None) -> Channel:
    kinds = draw(lifecycle_kinds(agent is not None))
    if start is None:
        start = DAY0_US + draw(st.integers(0, 2 * 86_400_000)) * 1000 + draw(st.sampled_from((0, 0, 1, 999, 500_000)))
    times = event_times(draw, kinds, start)
    if agent is not None:
        party = {"role": "agent", "agentId": agent, "userId": "u-" + agent}
    else:
        party = draw(st.sampled_from(({"role": "customer"}, {"role": "contact"}, None)))
    interaction = f"int-{channel_id}"
    notes = []
    for i, (kind, ts) in enumerate(zip(kinds, times, strict=True)):
        reason = None
        if kind == "ended":
            reason = draw(st.sampled_from(("released", None)))
        elif kind == "connectionfailed":
            reason = draw(st.sampled_from(("rejected", "busy")))
        text = draw(ts_texts(ts))
        version = draw(st.sampled_from(("v1", "v0")))
        eid = f"2Ve{channel_id}{i:02d}"
        notes.append(channel_note(kind, ts, text, channel_id, eid, party, interaction, version, reason))
    return Channel(channel_id, agent, tuple(kinds), tuple(times), tuple(notes))


@dataclass(frozen=True)
class World:
    agents: tuple[str, ...]
    channels: tuple[Channel, ...]
    presence: tuple[Note, ...]

    @property
    def notes(self) -> list[Note]:
        return [n for c in self.channels for n in c.notes] + list(self.presence)


@st.composite
def worlds(
    draw, max_agents: int = 2, max_channels: int = 4, max_presence: int = 6, presence_ties: bool = True
) -> World:
    """Agents with presence changes and channels (agent channels of these agents and customer
    channels). ``presence_ties``: two presence changes of an agent may share a timestamp."""
    agents = [f"{1544 + i}" for i in range(draw(st.integers(1, max_agents)))]
    base = DAY0_US + draw(st.integers(0, 86_400)) * 1_000_000
    presence = []
    for agent in agents:
        t = base + draw(st.integers(0, 3600)) * 1_000_000
        for i in range(draw(st.integers(0, max_presence))):
            gap = draw(GAPS_US)  # equal times allowed: ordered by id then
            t += gap if gap or presence_ties else 1
            ptype = draw(st.sampled_from(PRESENCE_TYPES))
            pid = draw(st.sampled_from(("p-1", "p-2")))
            sub = draw(st.sampled_from((None, "readyOutbound", "lunch")))
            eid = draw(st.sampled_from(("2Va", "2Vz", "2Vm"))) + f"{agent}{i:02d}"
            presence.append(presence_note(t, draw(ts_texts(t)), agent, "u-" + agent, eid, ptype, pid, sub))
    chans = []
    for i in range(draw(st.integers(1, max_channels))):
        agent = draw(st.sampled_from([*agents, None]))
        start = base + draw(st.integers(0, 4 * 3600)) * 1_000_000 + draw(st.sampled_from((0, 0, 250, 999_999)))
        chans.append(draw(channels(channel_id=f"ch-{i}", agent=agent, start=start)))
    return World(tuple(agents), tuple(chans), tuple(presence))


@st.composite
def deliveries(draw, items: list) -> tuple[list, int]:
    """``items`` plus exact copies of random ones, in a random permutation; and the copy count."""
    copies = draw(st.lists(st.integers(0, len(items) - 1), max_size=len(items))) if items else []
    delivered = list(items) + [items[i] for i in copies]
    order = draw(st.permutations(range(len(delivered))))
    return [delivered[i] for i in order], len(copies)


# --- reference model of a valid lifecycle ------------------------------------------------


def expected_timeline(kinds, times) -> tuple[list[tuple], tuple | None, str | None]:
    """Closed segments ``(state, start, end, started_by, ended_by)``, the open one
    ``(state, start, started_by)`` or None, and the state open at ``disconnected``."""
    closed: list[tuple] = []
    state = start = by = disconnect_state = None
    for kind, t in zip(kinds, times, strict=True):
        if kind != "alerted" and kind != "wrapstarted" and state is not None:
            closed.append((state, start, t, by, kind))
        if kind == "disconnected":
            disconnect_state = state
        if kind == "alerted":
            state, start, by = "alerting", t, kind
        elif kind in ("connected", *RESUMED):
            state, start, by = "connected", t, kind
        elif kind in SUSPENDED:
            state, start, by = SUSPENDED[kind], t, kind
        elif kind == "wrapstarted":
            state, start, by = "wrap", t, kind
        else:  # connectionfailed, disconnected, ended
            state = None
    return closed, ((state, start, by) if state is not None else None), disconnect_state


# --- channel properties -----------------------------------------------------------------


@FAST
@given(st.data())
def test_channel_rows_do_not_depend_on_delivery_order_or_duplicates(data):
    ch = data.draw(channels())
    events = [parse(n) for n in ch.notes]
    ref = sessionize_channel(events)
    delivered, copies = data.draw(deliveries(events))
    got = sessionize_channel(delivered)
    assert got.segments == ref.segments
    strip = lambda s: {k: v for k, v in s.items() if k != "duplicate_count"}  # noqa: E731
    assert strip(got.session) == strip(ref.session)
    assert ref.session["duplicate_count"] == 0
    assert got.session["duplicate_count"] == copies
    assert got.session["event_count"] == len(events)


@FAST
@given(channels())
def test_channel_segments_follow_the_lifecycle_and_sum_to_the_totals(ch):
    events = [parse(n) for n in ch.notes]
    # Deliver newest first: the worst case for the ordering.
    result = sessionize_channel(list(reversed(events)))
    s, segs = result.session, result.segments

    # No anomalies on a valid lifecycle.
    assert s["anomaly_count"] == 0 and s["anomalies"] == []

    # The timeline is the reference model's, in order, numbered 0..n-1.
    closed, open_seg, disconnect_state = expected_timeline(ch.kinds, ch.times)
    got_closed = [(g["state"], g["start_at"], g["end_at"], g["started_by"], g["ended_by"]) for g in segs]
    want = [*closed] + ([(open_seg[0], open_seg[1], None, open_seg[2], None)] if open_seg else [])
    assert got_closed == want
    assert [g["seq"] for g in segs] == list(range(len(segs)))
    for g in segs:
        if g["end_at"] is None:
            assert g["duration_ms"] is None and g is segs[-1]
        else:
            assert g["duration_ms"] == ms_between(g["start_at"], g["end_at"]) >= 0
        assert (g["channel_id"], g["agent_id"]) == (ch.channel_id, ch.agent_id)

    # Per state, closed segment durations sum to the session's totals; counts are segments.
    sums: Counter = Counter()
    longest: Counter = Counter()
    for g in segs:
        if g["duration_ms"] is not None:
            sums[g["state"]] += g["duration_ms"]
            longest[g["state"]] = max(longest[g["state"]], g["duration_ms"])
    for state, col in TOTAL_OF_STATE.items():
        assert s[col] == sums[state], col
    counts = Counter(g["state"] for g in segs)
    for state, col in COUNT_OF_STATE.items():
        assert s[col] == counts[state], col
        assert s[LONGEST_OF_STATE[state]] == longest[state], state
    assert s["connected_ms"] == s["talk_ms"] + s["hold_ms"] + s["park_ms"] + s["interruption_ms"]
    assert s["handle_ms"] == s["talk_ms"] + s["hold_ms"] + s["wrap_ms"]

    # Session facts.
    first = {k: t for k, t in reversed(list(zip(ch.kinds, ch.times, strict=True)))}
    for kind, col in (
        ("alerted", "alerted_at"),
        ("connected", "connected_at"),
        ("disconnected", "disconnected_at"),
        ("wrapstarted", "wrap_started_at"),
        ("ended", "ended_at"),
    ):
        assert s[col] == first.get(kind), col
    assert (s["first_event_at"], s["last_event_at"]) == (ch.times[0], ch.times[-1])
    assert s["connection_failed"] == ("connectionfailed" in ch.kinds)
    assert s["is_complete"] == ("ended" in ch.kinds)
    assert s["open_state"] == (open_seg[0] if open_seg else None)
    assert s["disconnect_state"] == disconnect_state
    assert s["held_at_disconnect"] == (disconnect_state == "held")
    assert s["event_count"] == len(events) and s["duplicate_count"] == 0
    # The rows fit the output schemas.
    to_arrow("channel_sessions", [s])
    to_arrow("channel_segments", segs)


# --- agent properties -------------------------------------------------------------------


def _channel_results(world: World, events_of) -> dict:
    return {c.channel_id: sessionize_channel(events_of(c)) for c in world.channels}


@FAST
@given(st.data())
def test_agent_rows_do_not_depend_on_delivery_order_or_duplicates(data):
    world = data.draw(worlds())
    canonical = {c.channel_id: [parse(n) for n in c.notes] for c in world.channels}
    ref_results = _channel_results(world, lambda c: canonical[c.channel_id])
    ref_segments = [g for r in ref_results.values() for g in r.segments]
    ref_sessions = [r.session for r in ref_results.values()]
    presence = [parse(n) for n in world.presence]

    # Every channel delivered shuffled with copies, and its segments and sessions handed over
    # shuffled with copies too (a retried shard re-emits them), presence events likewise.
    shuffled = {}
    for c in world.channels:
        shuffled[c.channel_id], _ = data.draw(deliveries(canonical[c.channel_id]))
    results = _channel_results(world, lambda c: shuffled[c.channel_id])
    segments, _ = data.draw(deliveries([g for r in results.values() for g in r.segments]))
    sessions, _ = data.draw(deliveries([r.session for r in results.values()]))
    presence_delivered, _ = data.draw(deliveries(presence))

    for agent in world.agents:
        ref = sessionize_agent(agent, presence, ref_segments, ref_sessions)
        got = sessionize_agent(agent, presence_delivered, segments, sessions)
        assert got == ref
        check_agent_invariants(agent, ref, [ref_results[c.channel_id] for c in world.channels])


def check_agent_invariants(agent: str, result, channel_results) -> None:
    """Documented identities of ``transforms.presence`` on one agent's rows."""
    presence, sessions = result
    for a, b in zip(presence, presence[1:], strict=False):
        assert a["end_at"] == b["start_at"] and a["duration_ms"] == ms_between(a["start_at"], b["start_at"]) >= 0
        assert not a["is_open"]
    if presence:
        assert presence[-1]["is_open"] and presence[-1]["end_at"] is None
    for row in sessions:
        parts = row["ready_ms"] + row["away_ms"] + row["extended_away_ms"] + row["other_presence_ms"]
        assert parts == row["duration_ms"] >= 0, row
        assert row["handle_ms"] == row["talk_ms"] + row["hold_ms"] + row["wrap_ms"]
        assert 0 <= row["busy_ms"] <= row["duration_ms"], row
        assert 0.0 <= row["occupancy"] <= 1.0
    assert len({row["session_id"] for row in sessions}) == len(sessions)
    # Channel work is never dropped nor counted twice: the agent's channel totals are
    # split exactly across its sessions (login and inferred).
    own = [r for r in channel_results if r.session["agent_id"] == agent and r.session["party_role"] == "agent"]
    for state, col in WORK_ALL.items():
        assert sum(row[col] for row in sessions) == sum(r.session[col] for r in own), (state, col)
    handled = sum(1 for r in own if any(g["state"] == "connected" and g["end_at"] is not None for g in r.segments))
    assert sum(row["channels_handled"] for row in sessions) == handled
    to_arrow("agent_presence", presence)
    to_arrow("agent_sessions", sessions)


# --- the whole batch job ----------------------------------------------------------------


def _norm(v):
    if isinstance(v, (list, tuple, np.ndarray)):
        return tuple(_norm(x) for x in v)
    if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, np.generic):
        return v.item()
    return v


def canon(df: pd.DataFrame, drop: tuple[str, ...] = ()) -> list[tuple]:
    """A frame as a sorted list of rows (column-name/value pairs), order-independent."""
    df = df.drop(columns=[c for c in drop if c in df.columns])
    rows = [tuple(sorted((k, _norm(v)) for k, v in rec.items())) for rec in df.astype(object).to_dict("records")]
    return sorted(rows, key=repr)


TABLES_COMPARED = ("channel_sessions", "channel_segments", "agent_presence", "agent_sessions")


def run_batch(lines: list[bytes], where: Path) -> dict[str, pd.DataFrame]:
    from pipelines.batch import run

    where.mkdir(parents=True, exist_ok=True)
    (where / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert run(["--input", str(where / "in.jsonl"), "--output", str(where / "out"), "--shards", "2"]) == 0
    return {t: pd.read_parquet(where / "out" / t) for t in TABLES_COMPARED}


def core_tables(world: World) -> dict[str, pd.DataFrame]:
    """What the pure cores make of the world's events, as frames (no ``event_date``)."""
    results = _channel_results(world, lambda c: [parse(n) for n in c.notes])
    presence = [parse(n) for n in world.presence]
    segments = [g for r in results.values() for g in r.segments]
    agents = {e.key for e in presence} | {g["agent_id"] for g in segments if g["party_role"] == "agent"}
    rows = {"agent_presence": [], "agent_sessions": []}
    for agent in sorted(a for a in agents if a is not None):
        res = sessionize_agent(agent, presence, segments, [r.session for r in results.values()])
        rows["agent_presence"] += res.presence
        rows["agent_sessions"] += res.sessions
    rows["channel_sessions"] = [r.session for r in results.values()]
    rows["channel_segments"] = segments
    return {t: to_arrow(t, rows[t]).to_pandas() for t in TABLES_COMPARED}


@SLOW
@given(world=worlds(max_agents=2, max_channels=5), data=st.data())
def test_batch_job_tables_do_not_depend_on_line_order_or_duplicates(world, data, tmp_path_factory):
    lines = [n.raw for n in world.notes]
    runs = []
    for _ in range(2):
        copies = data.draw(st.lists(st.integers(0, len(lines) - 1), min_size=1, max_size=len(lines)))
        rng = random.Random(data.draw(st.integers(0, 2**32)))
        delivered = lines + [lines[i] for i in copies]
        rng.shuffle(delivered)
        tables = run_batch(delivered, tmp_path_factory.mktemp("prop-batch"))
        by_channel = Counter(world.notes[i].key for i in copies if world.notes[i].kind != "presence")
        sessions = tables["channel_sessions"]
        dups = dict(zip(sessions["channel_id"], sessions["duplicate_count"].astype(int), strict=True))
        assert dups == {c.channel_id: by_channel.get(c.channel_id, 0) for c in world.channels}
        runs.append(tables)

    core = core_tables(world)
    for table in TABLES_COMPARED:
        a = canon(runs[0][table], drop=("duplicate_count",))
        assert a == canon(runs[1][table], drop=("duplicate_count",)), table
        assert canon(runs[0][table], drop=("duplicate_count", "event_date")) == canon(
            core[table], drop=("duplicate_count",)
        ), table


def test_simultaneous_presence_changes_pass_validation(tmp_path):
    t = DAY0_US + 9 * 3600 * 1_000_000
    text = ts_text(t, 3, 0)
    lines = [
        presence_note(t, text, "1544", "u-1544", "2Vaaa", "ready", "p-1", None).raw,
        presence_note(t, text, "1544", "u-1544", "2Vbbb", "away", "p-2", None).raw,
    ]
    from pipelines.batch import run

    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert run(["--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"), "--shards", "2"]) == 0
    presence = pd.read_parquet(tmp_path / "out" / "agent_presence")
    assert sorted(presence["presence_type"]) == ["away", "ready"]

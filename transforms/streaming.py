"""Streaming composites: Pub/Sub messages in; the batch job's tables, a raw archive and
dead letters out, computed by the same pure cores (:mod:`transforms.timeline`,
:mod:`transforms.presence`, :mod:`transforms.interaction`, :mod:`transforms.intervals`) as batch.

The graph (labels are stable: a Dataflow ``--update`` maps state by them)::

    messages - Parse -+- (channel id, Received) -+----- Channels -+- (table, row) ------------------+
                      |                          |                +- (agent id, Work) -+            |
                      |                          |                +- (interaction id,  |            |
                      |                          |                   ChannelOpened | ChannelDone)   |
                      |                          |                   -- Interactions --------------+- (table, row)
                      +- (agent id, Received) presence -----------------------+ Agents -+- (table, row)
                      +- (agent id, Activity) agent-channel arrivals ---------+         |
                      |                          +- Service (channel events, channel and interaction rows) -+
                      +- (table, row) dead letters -----------------------------------+- WriteTables
                      +- (event_date, line) valid events --------------------------------- WriteArchive

Time. Event time is ``data.timestamp`` (attached after parsing). State lives in the global
window, keyed by channel or agent, so no element is ever dropped as late by Beam; what is
late is decided here, explicitly, and goes to ``dead_letter`` with code ``late``. Every
timer is an event-time timer set at ``max(event time, arrival time) + delay`` (arrival =
processing time when the element reached the stage): for live data both are the same
instant to a second, and it is the event-time rule; for old events (a replay, a backlog,
VCC's day-long retries, the local runner whose Pub/Sub watermark is the wall clock) the
delay counts from arrival, so a replay is sessionized as if live instead of every timer
being already due. Event-time timers hold the watermark only up to their (future) firing
time, never behind it.

- Channel: its rows are emitted by the end timer, ``grace`` after its first ``ended`` (by
  event time), from every event buffered by then; disorder within the grace is absorbed.
  An expiry timer, ``expire_after`` after its latest activity, emits a channel that never
  ends (``is_complete`` false). Either way its state is cleared but a marker (the
  channel's notification ids) kept for the dedup horizon: a copy of a known id is a
  dropped duplicate, any other event of the channel is ``late``.
- Agent: presence events, the agent's channel work (segments sent by the channel stage
  when a channel is emitted) and counts of its agent-channel events are buffered per
  agent. When its latest presence is ``loggedOut`` and ``grace`` has passed, and every
  agent-channel event that arrived has been accounted for by the channel stage, all its
  rows up to the logout are emitted (closed presence intervals, login sessions with their
  work, inferred sessions); the ``loggedOut`` interval stays open in state until the next
  login. An agent inactive for ``expire_after`` is emitted as is (open rows included), once
  its channel work is in. Presence events older than what was emitted are ``late``.
  Its ``agent_intervals`` go out with those rows: the intervals up to the logout; the
  logout's interval (and any later one with post-logout work) is held in state and
  released ``grace`` after its end if no presence or work came since, else merged into the
  next emission. Parts for an interval already emitted are dropped and counted.
- Service interval (state keyed by interval start): every channel event announces its
  interaction in the interval of its time, and a ``channel.ended`` its channel too; each
  emitted interaction settles the intervals from its ``started_at`` to its last event (with
  its contribution in the first), each emitted channel with an ``ended`` the intervals
  from its ``ended_at`` to its last event (with its handled count in the first). The row is
  emitted once ``grace`` has passed after the interval's end and everything announced in
  it is settled (at the latest at the dedup horizon); contributions after that are
  dropped and counted. So an interval waits for the interactions with an event in it.
  Its messages are appended to a bag and settled when its timer fires (O(1) per message).
- Interaction: the channel stage announces each channel to its interaction's key when it
  buffers the channel's first event with an interaction id (``ChannelOpened``) and sends
  its summary and session row when it emits it (``ChannelDone``, to the same key; a
  channel without interaction id is its own interaction, keyed by its channel id). The
  interaction is emitted ``grace`` after the ``ChannelDone`` that leaves no announced
  channel without its summary, unless a new channel is announced meanwhile: so once every
  channel it has is complete, or was emitted incomplete at its own expiry (then the row
  has ``is_complete`` false). Its channel ids are kept for the dedup horizon: a channel
  emitted after that is ``late`` (raw: its session row as JSON).

Outputs to files are stamped with their arrival time at the writer and grouped in fixed
windows of that time, so a row is written in the window in which it became final, never
dropped by a window that already closed (timer outputs can be behind the DirectRunner's
watermark, which has no timer holds). One Parquet file per window, table and
``event_date`` partition, written under a hidden temporary name and renamed.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
import typing
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import apache_beam as beam
import msgspec
import orjson
import pyarrow as pa
from apache_beam.coders import PickleCoder
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import FixedWindows, TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from schemas import PARTITION_COLUMN, PARTITION_SOURCE
from transforms.events import MAX_EVENT_BYTES, DeadLetter, Event, dead_letter, parse_line, parse_timestamp
from transforms.interaction import channel_summary, interaction_key, interaction_row
from transforms.intervals import (
    AGENT_INTERVAL_COLUMNS,
    DEFAULT_INTERVAL_MINUTES,
    DEFAULT_SHORT_ABANDON_SECONDS,
    SERVICE_INTERVAL_COLUMNS,
    agent_intervals,
    handled_fields,
    interaction_fields,
    interval_ms,
    merge_agent_rows,
    merge_service,
    service_handled,
    service_interactions,
    service_rows,
    take_final,
)
from transforms.parquet import table_file, to_arrow, utc_date, write_parquet
from transforms.presence import LOGGED_OUT, normalize_presence_type, sessionize_agent
from transforms.timeline import sessionize_channel

log = logging.getLogger(__name__)

US = 1_000_000
METRICS = "vccflow"
ARCHIVE_FOLDER = "raw"

# Output tags.
PRESENCE = "presence"
ACTIVITY = "activity"
DEAD = "dead"
ARCHIVE = "archive"
AGENT_WORK = "agent_work"
INTERACTION_WORK = "interaction_work"

KeyedAny = beam.typehints.Tuple[str, beam.typehints.Any]
IntervalKeyed = beam.typehints.Tuple[int, beam.typehints.Any]


class Received(typing.NamedTuple):
    """One valid notification as read: the parsed event, the message bytes, where it came
    from (``pubsub:<message id>`` or ``stream``) and when it was read (µs since epoch)."""

    event: Event
    raw: bytes
    origin: str
    ingested_at: int


class Activity(typing.NamedTuple):
    """To an agent's key: one event of its agent channel ``channel_id`` arrived."""

    channel_id: str


class Work(typing.NamedTuple):
    """To an agent's key from the channel stage: ``consumed`` arrivals of ``channel_id``
    are accounted for; when the channel was emitted, also its segment rows and session row
    (None for an arrival the channel stage dropped as a duplicate or dead-lettered)."""

    channel_id: str
    consumed: int
    segments: list[dict] | None = None
    session: dict | None = None


class ChannelOpened(typing.NamedTuple):
    """To an interaction's key from the channel stage: ``channel_id`` has its first event."""

    channel_id: str


class ChannelDone(typing.NamedTuple):
    """To an interaction's key from the channel stage: ``channel_id`` was emitted, with its
    summary (:func:`transforms.interaction.channel_summary`) and its session row."""

    channel_id: str
    summary: tuple
    session: dict


@dataclass(frozen=True)
class StreamSettings:
    """Timing of the stateful stages, in seconds, the message size cap and the interval
    reports' grid (minutes) and short-abandon threshold (seconds)."""

    grace_seconds: int = 60
    expire_after_seconds: int = 4 * 3600
    dedup_horizon_seconds: int = 86400
    max_event_bytes: int = MAX_EVENT_BYTES
    interval_minutes: int = DEFAULT_INTERVAL_MINUTES
    short_abandon_seconds: int = DEFAULT_SHORT_ABANDON_SECONDS

    def __post_init__(self) -> None:
        for name in (
            "grace_seconds",
            "expire_after_seconds",
            "dedup_horizon_seconds",
            "max_event_bytes",
            "short_abandon_seconds",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        interval_ms(self.interval_minutes)  # one of the grid lengths, or ValueError


def agent_of(ev: Event) -> str | None:
    """The agent whose work a channel event is (agent-role party with an agent id), else None."""
    return ev.agent_id if ev.is_channel and ev.party_role == "agent" and ev.agent_id else None


def archive_line(raw: bytes) -> bytes:
    """A valid notification as one NDJSON line (re-serialized compactly if it spans lines)."""
    raw = raw.strip()
    return orjson.dumps(orjson.loads(raw)) if b"\n" in raw or b"\r" in raw else raw


def dead_letter_row(letter: DeadLetter, ingested_at: int) -> dict:
    """A ``dead_letter`` table row."""
    return {**letter._asdict(), "ingested_at": ingested_at}


def late_row(rec: Received, detail: str) -> dict:
    """The ``dead_letter`` row (code ``late``) of an event that arrived after its result was final."""
    obj = orjson.loads(rec.raw)  # it parsed once: type and id are salvaged for the row
    return dead_letter_row(dead_letter("late", detail, rec.raw, rec.origin, obj), rec.ingested_at)


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / US, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ts(us: int) -> Timestamp:
    return Timestamp(micros=us)


def _later(event_us: int, clock: Callable[[], float], delay_s: int) -> int:
    """``max(event time, arrival time) + delay`` in µs: see the module docstring."""
    return max(event_us, int(clock() * US)) + delay_s * US


def _arm(timer, current_us: int, wanted_us: int) -> int:
    """The expiry wanted at ``max(current_us, wanted_us)``; returns it. ``timer`` is set only
    when none is (``current_us`` 0): a timer that fires before the time wanted is set again
    to it by its handler, so an event moves no timer (one timer write per expiry, not one
    per event)."""
    if not current_us:
        timer.set(_ts(wanted_us))
    return max(current_us, wanted_us)


# --- parsing ---------------------------------------------------------------------------


class ParseMessageFn(beam.DoFn):
    """A Pub/Sub message (``PubsubMessage`` or bytes) in. Out: ``(channel id, Received)``
    at event time (main), ``(agent id, Received)`` of presence events (``presence``),
    ``(agent id, Activity)`` for agent-channel events (``activity``), ``("dead_letter",
    row)`` (``dead``) and ``(event_date, line)`` of every valid event (``archive``)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def process(self, message):
        if isinstance(message, PubsubMessage):
            data = message.data
            origin = f"pubsub:{message.message_id}" if message.message_id else "pubsub"
        else:
            data, origin = message, "stream"
        ingested = time.time_ns() // 1000
        out = parse_line(data, origin, self.max_bytes)
        if isinstance(out, DeadLetter):
            yield beam.pvalue.TaggedOutput(DEAD, ("dead_letter", dead_letter_row(out, ingested)))
            return
        yield beam.pvalue.TaggedOutput(ARCHIVE, (utc_date(out.ts), archive_line(data)))
        rec = Received(out, data, origin, ingested)
        at = _ts(out.ts)
        if not out.is_channel:
            yield beam.pvalue.TaggedOutput(PRESENCE, TimestampedValue((out.key, rec), at))
            return
        yield TimestampedValue((out.key, rec), at)
        agent = agent_of(out)
        if agent is not None:
            yield beam.pvalue.TaggedOutput(ACTIVITY, TimestampedValue((agent, Activity(out.key)), at))


class ParseMessages(beam.PTransform):
    """Messages in; the tagged outputs of :class:`ParseMessageFn` out (main tag ``channel``)."""

    def __init__(self, max_bytes: int = MAX_EVENT_BYTES) -> None:
        super().__init__()
        self.max_bytes = max_bytes

    def expand(self, messages):
        return messages | "ParseMessage" >> beam.ParDo(ParseMessageFn(self.max_bytes)).with_output_types(
            KeyedAny
        ).with_outputs(PRESENCE, ACTIVITY, DEAD, ARCHIVE, main="channel")


# --- state coders ----------------------------------------------------------------------


class EventCoder(beam.coders.Coder):
    """An :class:`Event` in state as a MessagePack array: deterministic, three quarters of its
    pickle's size, a tenth of its encoding cost and a third of its decoding cost. It does not
    read the pickles of the ``PickleCoder`` it replaced: a job whose state holds those is
    drained and restarted, not ``--update``d (no pickle is ever loaded by pipeline code)."""

    _encode = msgspec.msgpack.Encoder().encode
    _decode = msgspec.msgpack.Decoder(Event).decode

    def encode(self, ev: Event) -> bytes:
        return self._encode(ev)

    def decode(self, data: bytes) -> Event:
        return self._decode(data)

    def is_deterministic(self) -> bool:
        return True


# --- channels --------------------------------------------------------------------------


# State and timers of the channel stage (module-level: DoFn parameters are declared once).
_CH_END_TIMER = TimerSpec("end", TimeDomain.WATERMARK)
_CH_EXPIRY_TIMER = TimerSpec("expiry", TimeDomain.WATERMARK)
_CH_EVENTS = beam.DoFn.StateParam(BagStateSpec("events", EventCoder()))
_CH_META = beam.DoFn.StateParam(ReadModifyWriteStateSpec("meta", PickleCoder()))
_CH_END = beam.DoFn.TimerParam(_CH_END_TIMER)
_CH_EXPIRY = beam.DoFn.TimerParam(_CH_EXPIRY_TIMER)


@dataclass
class _ChannelMeta:
    """Small per-channel state next to the event bag."""

    duplicates: int = 0
    consumed: Counter | None = None  # agent id -> arrivals buffered (for the agent ledger)
    ended: int | None = None  # earliest `ended` time (µs)
    expires: int = 0  # when the channel expires (µs), only ever later; its timer may fire earlier, then re-arms
    final: frozenset | None = None  # after emission: the channel's (source, id) pairs
    interaction: str | None = None  # the interaction key the channel was announced to
    ids: set | None = None  # the (source, id) pairs in the event bag: only a known one can be a copy


class SessionizeChannelFn(beam.DoFn):
    """``(channel id, Received)`` in. Out: ``(table, row)`` for ``channel_sessions`` and
    ``channel_segments`` (main, from timers), ``(agent id, Work)`` (``agent_work``),
    ``(interaction id, ChannelOpened | ChannelDone)`` (``interaction_work``) and
    ``("dead_letter", row)`` of late events (``dead``). State and timers: module docstring."""

    def __init__(self, settings: StreamSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.duplicates = Metrics.counter(METRICS, "duplicates_dropped")
        self.late = Metrics.counter(METRICS, "late_events")
        self.emitted = Metrics.counter(METRICS, "channels_emitted")
        self.expired = Metrics.counter(METRICS, "channels_expired")

    def process(
        self,
        element,
        events=_CH_EVENTS,
        meta=_CH_META,
        end=_CH_END,
        expiry=_CH_EXPIRY,
    ):
        channel_id, rec = element
        ev = rec.event
        agent = agent_of(ev)
        stored = meta.read()
        m = stored or _ChannelMeta()
        if m.final is not None:
            if (ev.source, ev.id) in m.final:
                self.duplicates.inc()
            else:
                self.late.inc()
                detail = f"channel {channel_id} was already final; {ev.type} at {_iso(ev.ts)} arrived after"
                yield beam.pvalue.TaggedOutput(DEAD, ("dead_letter", late_row(rec, detail)))
            if agent is not None:
                yield beam.pvalue.TaggedOutput(AGENT_WORK, (agent, Work(channel_id, 1)))
            return
        if m.consumed is None:
            m.consumed = Counter()
        if agent is not None:
            m.consumed[agent] += 1
        if m.ids is None:  # a new channel, or one buffered before the ids were kept (--update)
            m.ids = {(old.source, old.id) for old in events.read()} if stored is not None else set()
        ident = (ev.source, ev.id)
        if ident in m.ids and any(old == ev for old in events.read()):
            # An exact copy: dropped here. A copy with the same id but other content stays in
            # the bag, and the core keeps the same one batch keeps. The bag is read only for
            # an id already in it: O(1) state reads per event, not the whole bag every time.
            m.duplicates += 1
            self.duplicates.inc()
            meta.write(m)
            return
        m.ids.add(ident)
        events.add(ev)
        if m.interaction is None and ev.interaction_id is not None:
            m.interaction = ev.interaction_id
            yield beam.pvalue.TaggedOutput(INTERACTION_WORK, (m.interaction, ChannelOpened(channel_id)))
        if ev.type == "channel.ended" and (m.ended is None or ev.ts < m.ended):
            m.ended = ev.ts
            end.set(_ts(_later(ev.ts, self.clock, self.settings.grace_seconds)))
        m.expires = _arm(expiry, m.expires, _later(ev.ts, self.clock, self.settings.expire_after_seconds))
        meta.write(m)

    @on_timer(_CH_END_TIMER)
    def on_end(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        events=_CH_EVENTS,
        meta=_CH_META,
        expiry=_CH_EXPIRY,
    ):
        yield from self._emit(key, fired, events, meta, expiry)

    @on_timer(_CH_EXPIRY_TIMER)
    def on_expiry(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        events=_CH_EVENTS,
        meta=_CH_META,
        expiry=_CH_EXPIRY,
    ):
        m = meta.read()
        if m is not None and fired.micros < m.expires:
            expiry.set(_ts(m.expires))  # activity since it was set: the expiry is later
            return
        if m is None or m.final is not None:
            events.clear()
            meta.clear()  # the marker's horizon is over: forget the channel
            return
        self.expired.inc()
        yield from self._emit(key, fired, events, meta, expiry)

    def _emit(self, channel_id, fired, events, meta, expiry):
        buffered = list(events.read())
        m = meta.read()
        if not buffered or m is None or m.final is not None:
            return
        result = sessionize_channel(buffered, duplicates=m.duplicates)
        session, segments = result.session, result.segments  # as dicts, made once
        self.emitted.inc()
        yield "channel_sessions", session
        for seg in segments:
            yield "channel_segments", seg
        for agent, n in sorted((m.consumed or {}).items()):
            yield beam.pvalue.TaggedOutput(AGENT_WORK, (agent, Work(channel_id, n, segments, session)))
        summary = channel_summary(result)
        key = m.interaction or interaction_key(summary)
        yield beam.pvalue.TaggedOutput(INTERACTION_WORK, (key, ChannelDone(channel_id, summary, session)))
        events.clear()
        horizon = _later(fired.micros, self.clock, self.settings.dedup_horizon_seconds)
        expiry.set(_ts(horizon))
        meta.write(_ChannelMeta(final=frozenset((ev.source, ev.id) for ev in buffered), expires=horizon))


class SessionizeChannelsStreaming(beam.PTransform):
    """``(channel id, Received)`` at event time in; out: ``(table, row)`` rows (main),
    ``(agent id, Work)`` (``agent_work``), ``(interaction id, ChannelOpened | ChannelDone)``
    (``interaction_work``) and ``("dead_letter", row)`` (``dead``)."""

    def __init__(self, settings: StreamSettings, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.settings = settings
        self.clock = clock

    def expand(self, events):
        return events | "SessionizeChannel" >> beam.ParDo(
            SessionizeChannelFn(self.settings, self.clock)
        ).with_input_types(KeyedAny).with_outputs(AGENT_WORK, INTERACTION_WORK, DEAD, main="rows")


# --- agents ----------------------------------------------------------------------------


# State and timers of the agent stage.
_AG_FLUSH_TIMER = TimerSpec("flush", TimeDomain.WATERMARK)
_AG_EXPIRY_TIMER = TimerSpec("expiry", TimeDomain.WATERMARK)
_AG_PRESENCE = beam.DoFn.StateParam(BagStateSpec("presence", EventCoder()))
_AG_WORK = beam.DoFn.StateParam(BagStateSpec("work", PickleCoder()))
_AG_META = beam.DoFn.StateParam(ReadModifyWriteStateSpec("meta", PickleCoder()))
_AG_FLUSH = beam.DoFn.TimerParam(_AG_FLUSH_TIMER)
_AG_EXPIRY = beam.DoFn.TimerParam(_AG_EXPIRY_TIMER)


@dataclass
class _AgentMeta:
    """Small per-agent state next to the presence and work bags."""

    ledger: Counter | None = None  # channel id -> arrivals not yet accounted for by the channel stage
    due: int | None = None  # a flush is wanted at this event time (µs): logout + grace
    cutoff: int | None = None  # presence before this time (µs) is final
    final: dict | None = None  # (source, id) -> time (µs) of emitted presence events
    expires: int = 0  # when the agent expires (µs), only ever later; its timer may fire earlier, then re-arms
    collect: bool = False  # the expiry timer is the end of the horizon (forget the agent)
    waiting: bool = False  # the inactivity expiry fired while channel work was in flight
    held: dict | None = None  # agent_intervals rows not final yet: interval start (µs) -> values
    frontier: int | None = None  # agent_intervals ending at or before this time (µs) were emitted
    release: int | None = None  # the flush timer is wanted then to emit held intervals (µs)


def _agent_rows(agent_id: str, events: list[Event], work: list[tuple]):
    """The pure agent core over an agent's buffered presence events and channel work."""
    segments = [seg for segs, _ in work for seg in segs]
    sessions = [row for _, row in work if row is not None]
    return sessionize_agent(agent_id, events, segments, sessions)


_END_OF_TIME = 1 << 62  # µs: later than any time


def _settled(m: _AgentMeta) -> bool:
    return not any(m.ledger.values()) if m.ledger else True


class SessionizeAgentFn(beam.DoFn):
    """``(agent id, Received | Activity | Work)`` in. Out: ``(table, row)`` for
    ``agent_presence`` and ``agent_sessions`` (main, from timers) and ``("dead_letter",
    row)`` of late presence events (``dead``). State and timers: module docstring."""

    def __init__(self, settings: StreamSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.duplicates = Metrics.counter(METRICS, "duplicates_dropped")
        self.late = Metrics.counter(METRICS, "late_events")
        self.late_intervals = Metrics.counter(METRICS, "late_agent_interval_parts")
        self.step = interval_ms(settings.interval_minutes)

    def process(
        self,
        element,
        at=beam.DoFn.TimestampParam,
        presence=_AG_PRESENCE,
        work=_AG_WORK,
        meta=_AG_META,
        flush=_AG_FLUSH,
        expiry=_AG_EXPIRY,
    ):
        agent_id, value = element
        m = meta.read() or _AgentMeta()
        if m.ledger is None:
            m.ledger = Counter()
        if isinstance(value, Work):
            self._account(value, at.micros, m, work, flush, expiry)
            meta.write(m)
            return
        if isinstance(value, Activity):
            m.ledger[value.channel_id] += 1
            activity = at.micros
        else:
            ev = value.event
            activity = ev.ts
            if (m.final and (ev.source, ev.id) in m.final) or any(old == ev for old in presence.read()):
                self.duplicates.inc()
                return
            if m.cutoff is not None and ev.ts < m.cutoff:
                self.late.inc()
                detail = f"agent {agent_id} was final up to {_iso(m.cutoff)}; presence at {_iso(ev.ts)} arrived after"
                yield beam.pvalue.TaggedOutput(DEAD, ("dead_letter", late_row(value, detail)))
                return
            presence.add(ev)
            if normalize_presence_type(ev.presence_type) == LOGGED_OUT:
                m.due = max(m.due or 0, _later(ev.ts, self.clock, self.settings.grace_seconds))
                flush.set(_ts(m.due))
        self._active(m, activity, expiry)
        meta.write(m)

    def _active(self, m: _AgentMeta, activity_us: int, expiry) -> None:
        """Activity: the inactivity expiry moves to ``activity + expire_after`` (replacing the
        end of the horizon, if that was what the timer was set for)."""
        if m.collect:
            m.collect, m.expires = False, 0
        m.expires = _arm(expiry, m.expires, _later(activity_us, self.clock, self.settings.expire_after_seconds))

    def _account(self, value: Work, at_us: int, m: _AgentMeta, work, flush, expiry) -> None:
        """Channel work in: settle the ledger, keep the segments; a flush or an expiry that
        waited for this work is re-armed. Work is not activity (its events were)."""
        m.ledger[value.channel_id] -= value.consumed
        if not m.ledger[value.channel_id]:
            del m.ledger[value.channel_id]
        if value.segments is not None:
            work.add((value.segments, value.session))
        if m.collect or not m.expires:  # work after everything was emitted: it needs an expiry
            self._active(m, at_us, expiry)
        if not _settled(m):
            return
        if m.due is not None:
            flush.set(_ts(max(m.due, at_us)))
        elif m.release is not None:
            flush.set(_ts(max(m.release, at_us)))
        if m.waiting:
            m.waiting = False
            m.expires = max(m.expires, at_us)
            expiry.set(_ts(m.expires))

    @on_timer(_AG_FLUSH_TIMER)
    def on_flush(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        presence=_AG_PRESENCE,
        work=_AG_WORK,
        meta=_AG_META,
        flush=_AG_FLUSH,
        expiry=_AG_EXPIRY,
    ):
        m = meta.read()
        if m is not None and m.due is None and m.release is not None:
            yield from self._release(fired, m, presence, work, meta)
            return
        if m is None or m.due is None or fired.micros < m.due or not _settled(m):
            return  # not due, or channel work still in flight: the Work that settles it re-arms
        latest = max(presence.read(), key=lambda ev: (ev.ts, ev.id, ev.source), default=None)
        if latest is None or normalize_presence_type(latest.presence_type) != LOGGED_OUT:
            m.due = None  # logged in again since: the next logout flushes
            if m.release is not None:
                flush.set(_ts(max(m.release, fired.micros)))
            meta.write(m)
            return
        yield from self._emit(key, fired, m, presence, work, meta, expiry, flush)

    @on_timer(_AG_EXPIRY_TIMER)
    def on_expiry(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        presence=_AG_PRESENCE,
        work=_AG_WORK,
        meta=_AG_META,
        flush=_AG_FLUSH,
        expiry=_AG_EXPIRY,
    ):
        m = meta.read()
        if m is not None and fired.micros < m.expires:
            expiry.set(_ts(m.expires))  # activity since it was set: the expiry is later
            return
        if m is not None and not m.collect:
            if not _settled(m):  # channel work in flight: the Work that settles it re-arms
                m.waiting = True
                meta.write(m)
                return
            yield from self._emit(key, fired, m, presence, work, meta, expiry, flush)
            return
        # The horizon is over: emit what is left (an open loggedOut interval, intervals still
        # held) and forget the agent.
        items = list(work.read())
        result = _agent_rows(key, list(presence.read()), items)
        yield from (("agent_presence", row) for row in result.presence)
        yield from (("agent_sessions", row) for row in result.sessions)
        if m is not None:
            self._add_intervals(key, result, items, m)
            yield from self._final_intervals(m, _END_OF_TIME)
        presence.clear()
        work.clear()
        meta.clear()

    def _emit(self, agent_id, fired, m, presence, work, meta, expiry, flush):
        """Emit the agent's rows but an open ``loggedOut`` interval, whose events stay, and its
        final intervals (see :meth:`_add_intervals`); remember what was emitted and arm the
        end of the horizon (and, from a flush, the release of the intervals held)."""
        events = list(presence.read())
        items = list(work.read())
        result = _agent_rows(agent_id, events, items)
        rows = result.presence
        kept: list[Event] = []
        if rows and rows[-1]["presence_type"] == LOGGED_OUT:
            kept_from = rows[-1]["start_at"]
            rows = rows[:-1]
            kept = [ev for ev in events if ev.ts >= kept_from]
            cutoff = kept_from
        else:
            cutoff = max((ev.ts for ev in events), default=None)
        yield from (("agent_presence", row) for row in rows)
        yield from (("agent_sessions", row) for row in result.sessions)
        self._add_intervals(agent_id, result, items, m)
        # After a logout the next login may still add to the logout's interval: it is held.
        yield from self._final_intervals(m, cutoff if kept else _END_OF_TIME)
        m.release = None
        if m.held:
            last_end = max(row[3] for row in m.held.values())
            m.release = _later(last_end, self.clock, self.settings.grace_seconds)
            flush.set(_ts(m.release))
        presence.clear()
        work.clear()
        for ev in kept:
            presence.add(ev)
        final = dict(m.final or {})
        final.update({(ev.source, ev.id): ev.ts for ev in events if ev not in kept})
        if cutoff is not None:
            m.cutoff = cutoff if m.cutoff is None else max(m.cutoff, cutoff)
            horizon = m.cutoff - self.settings.dedup_horizon_seconds * US
            final = {k: t for k, t in final.items() if t >= horizon}
        m.final, m.due, m.collect = final, None, True
        m.expires = _later(fired.micros, self.clock, self.settings.dedup_horizon_seconds)
        expiry.set(_ts(m.expires))
        meta.write(m)

    def _add_intervals(self, agent_id: str, result, items: list[tuple], m: _AgentMeta) -> None:
        """The ``agent_intervals`` of what is being emitted, merged into the held ones; parts of
        intervals already emitted (work that came after them) are dropped and counted."""
        segments = [seg for segs, _ in items for seg in segs]
        sessions = [row for _, row in items if row is not None]
        rows = agent_intervals(agent_id, result.presence, result.sessions, segments, sessions, interval_ms=self.step)
        if m.frontier is not None:
            late = sum(row[3] <= m.frontier for row in rows)
            if late:
                self.late_intervals.inc(late)
                rows = [row for row in rows if row[3] > m.frontier]
        m.held = merge_agent_rows(m.held or {}, rows)

    def _final_intervals(self, m: _AgentMeta, until: int):
        """``("agent_intervals", row)`` of the held intervals ending by ``until`` (µs)."""
        for row in take_final(m.held or {}, until):
            m.frontier = row[3] if m.frontier is None else max(m.frontier, row[3])
            yield "agent_intervals", dict(zip(AGENT_INTERVAL_COLUMNS, row, strict=True))

    def _release(self, fired, m: _AgentMeta, presence, work, meta):
        """The release timer of the intervals held since a flush: those ending before any
        presence or channel work that came since are final; the others wait for the next
        emission. Channel work in flight: the Work that settles it re-arms."""
        if fired.micros < m.release or not _settled(m):
            return
        since = [ev.ts for ev in presence.read() if normalize_presence_type(ev.presence_type) != LOGGED_OUT]
        since += [seg["start_at"] for segs, _ in work.read() for seg in segs if isinstance(seg.get("start_at"), int)]
        yield from self._final_intervals(m, min(since, default=fired.micros))
        m.release = None
        meta.write(m)


class SessionizeAgentsStreaming(beam.PTransform):
    """A tuple of ``(agent id, Received)`` presence events, ``(agent id, Activity)`` and
    ``(agent id, Work)`` in; out: ``(table, row)`` rows (main) and ``("dead_letter", row)``
    (``dead``)."""

    def __init__(self, settings: StreamSettings, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.settings = settings
        self.clock = clock

    def expand(self, inputs):
        return (
            inputs
            | "FlattenAgentInputs" >> beam.Flatten().with_output_types(KeyedAny)
            | "SessionizeAgent"
            >> beam.ParDo(SessionizeAgentFn(self.settings, self.clock))
            .with_input_types(KeyedAny)
            .with_outputs(DEAD, main="rows")
        )


# --- interactions ----------------------------------------------------------------------


# State and timers of the interaction stage.
_IX_FLUSH_TIMER = TimerSpec("flush", TimeDomain.WATERMARK)
_IX_EXPIRY_TIMER = TimerSpec("expiry", TimeDomain.WATERMARK)
_IX_CHANNELS = beam.DoFn.StateParam(BagStateSpec("channels", PickleCoder()))
_IX_META = beam.DoFn.StateParam(ReadModifyWriteStateSpec("meta", PickleCoder()))
_IX_FLUSH = beam.DoFn.TimerParam(_IX_FLUSH_TIMER)
_IX_EXPIRY = beam.DoFn.TimerParam(_IX_EXPIRY_TIMER)


@dataclass
class _InteractionMeta:
    """Small per-interaction state next to the bag of its channels."""

    ledger: Counter | None = None  # channel id -> announced minus done (> 0: still open upstream)
    due: int = 0  # the flush is wanted at this time (µs)
    final: frozenset | None = None  # after emission: its channel ids
    expires: int = 0  # after emission: the end of the marker's horizon (µs)


def _all_done(m: _InteractionMeta) -> bool:
    """Every channel announced to the interaction has been emitted by the channel stage."""
    return not any(n > 0 for n in m.ledger.values()) if m.ledger else True


def _iso_us(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def late_channel_row(interaction_id: str, done: ChannelDone) -> dict:
    """The ``dead_letter`` row (code ``late``, origin ``channel:<id>``) of a channel emitted
    after its interaction was final; ``raw`` is its session row as JSON (times ISO-8601)."""
    session = done.session
    detail = (
        f"interaction {interaction_id} was already final; its {session.get('party_role')} channel "
        f"{done.channel_id} (first event {_iso(session['first_event_at'])}) was emitted after"
    )
    times = {k: _iso_us(v) for k, v in session.items() if k.endswith("_at") and isinstance(v, int)}
    raw = orjson.dumps({**session, **times})
    return dead_letter_row(dead_letter("late", detail, raw, f"channel:{done.channel_id}"), time.time_ns() // 1000)


class SessionizeInteractionFn(beam.DoFn):
    """``(interaction id, ChannelOpened | ChannelDone)`` in. Out: ``("interactions", row)``
    (main, from the flush timer) and ``("dead_letter", row)`` of channels emitted after
    their interaction (``dead``). State and timers: module docstring."""

    def __init__(self, settings: StreamSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.late = Metrics.counter(METRICS, "late_channels")
        self.emitted = Metrics.counter(METRICS, "interactions_emitted")

    def process(
        self,
        element,
        at=beam.DoFn.TimestampParam,
        channels=_IX_CHANNELS,
        meta=_IX_META,
        flush=_IX_FLUSH,
    ):
        key, value = element
        m = meta.read() or _InteractionMeta()
        if m.final is not None:
            if isinstance(value, ChannelDone):
                self.late.inc()
                yield beam.pvalue.TaggedOutput(DEAD, ("dead_letter", late_channel_row(key, value)))
            return
        if m.ledger is None:
            m.ledger = Counter()
        m.ledger[value.channel_id] += 1 if isinstance(value, ChannelOpened) else -1
        if not m.ledger[value.channel_id]:
            del m.ledger[value.channel_id]
        if isinstance(value, ChannelDone):
            channels.add(value)
            if _all_done(m):
                m.due = max(m.due, _later(at.micros, self.clock, self.settings.grace_seconds))
                flush.set(_ts(m.due))
        meta.write(m)

    @on_timer(_IX_FLUSH_TIMER)
    def on_flush(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        channels=_IX_CHANNELS,
        meta=_IX_META,
        expiry=_IX_EXPIRY,
    ):
        m = meta.read()
        if m is None or m.final is not None or fired.micros < m.due or not _all_done(m):
            return  # superseded, or a channel announced since: its ChannelDone re-arms
        done = list(channels.read())
        if not done:
            return
        self.emitted.inc()
        yield "interactions", interaction_row([d.summary for d in done])
        channels.clear()
        horizon = _later(fired.micros, self.clock, self.settings.dedup_horizon_seconds)
        expiry.set(_ts(horizon))
        meta.write(_InteractionMeta(final=frozenset(d.channel_id for d in done), expires=horizon))

    @on_timer(_IX_EXPIRY_TIMER)
    def on_expiry(self, fired=beam.DoFn.TimestampParam, channels=_IX_CHANNELS, meta=_IX_META):
        m = meta.read()
        if m is not None and fired.micros < m.expires:
            return
        channels.clear()
        meta.clear()  # the marker's horizon is over: forget the interaction


class SessionizeInteractionsStreaming(beam.PTransform):
    """``(interaction id, ChannelOpened | ChannelDone)`` in; out: ``("interactions", row)``
    (main) and ``("dead_letter", row)`` (``dead``)."""

    def __init__(self, settings: StreamSettings, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.settings = settings
        self.clock = clock

    def expand(self, work):
        return work | "SessionizeInteraction" >> beam.ParDo(
            SessionizeInteractionFn(self.settings, self.clock)
        ).with_input_types(KeyedAny).with_outputs(DEAD, main="rows")


# --- service intervals -----------------------------------------------------------------


class Pending(typing.NamedTuple):
    """To a service interval's key: an entity (``kind``: ``channel`` or ``interaction``) with
    an event in the interval may still contribute to it; the interval waits for its
    :class:`Done`."""

    kind: str
    id: str


class Done(typing.NamedTuple):
    """To a service interval's key: the entity is final; ``values`` is its contribution to
    the interval (:data:`transforms.intervals.SERVICE_VALUE_COLUMNS` order) or None."""

    kind: str
    id: str
    values: list | None = None


def interval_start_of(us: int, step_ms: int) -> int:
    """The start (µs) of the ``step_ms`` interval holding ``us``."""
    return us // 1000 // step_ms * step_ms * 1000


def announce_service(element, step_ms: int):
    """``(channel id, Received)`` in; ``(interval start, Pending)`` out, in the interval of the
    event's time: its interaction (interaction id, else the channel's own id: the key of the
    interaction core), and for a ``channel.ended`` the channel (its handled count may land
    there)."""
    channel_id, rec = element
    ev = rec.event
    start = interval_start_of(ev.ts, step_ms)
    yield start, Pending("interaction", ev.interaction_id if ev.interaction_id is not None else channel_id)
    if ev.type == "channel.ended":
        yield start, Pending("channel", channel_id)


def _spanned(first_us: int, last_us: int, step_ms: int) -> range:
    """Interval starts (µs) from the one holding ``first_us`` to the one holding ``last_us``."""
    return range(interval_start_of(first_us, step_ms), interval_start_of(last_us, step_ms) + 1, step_ms * 1000)


def service_parts(element, step_ms: int, short_abandon_ms: int):
    """``(table, row)`` in; ``(interval start, Done)`` out: for an ``interactions`` row, every
    interval from its ``started_at`` to its ``last_event_at`` (where its events announced it),
    the first carrying its contribution; for a ``channel_sessions`` row that saw ``ended``,
    every interval from its ``ended_at`` to its ``last_event_at``, the first carrying its
    handled count; for a channel with an interaction id, also its own id as an interaction
    over its events' span (announced by its events without interaction id, if any)."""
    table, row = element
    if table == "dead_letter":
        yield from _late_parts(row, step_ms)
        return
    if table == "interactions":
        contribution = service_interactions(
            [interaction_fields(row)], interval_ms=step_ms, short_abandon_ms=short_abandon_ms
        )
        for start in _spanned(row["started_at"], row["last_event_at"], step_ms):
            yield start, Done("interaction", row["interaction_id"], contribution.get(start))
        return
    if table != "channel_sessions":
        return
    if row["interaction_id"] is not None:
        for start in _spanned(row["first_event_at"], row["last_event_at"], step_ms):
            yield start, Done("interaction", row["channel_id"])
    if row["ended_at"] is not None:
        contribution = service_handled([handled_fields(row)], interval_ms=step_ms)
        for start in _spanned(row["ended_at"], max(row["last_event_at"], row["ended_at"]), step_ms):
            yield start, Done("channel", row["channel_id"], contribution.get(start))


_SV_TIMER = TimerSpec("due", TimeDomain.WATERMARK)
_SV_PARTS = beam.DoFn.StateParam(BagStateSpec("parts", PickleCoder()))
_SV_META = beam.DoFn.StateParam(ReadModifyWriteStateSpec("state", PickleCoder()))
_SV_DUE = beam.DoFn.TimerParam(_SV_TIMER)


def _late_parts(row: dict, step_ms: int):
    """What a ``late`` dead letter settles: an event dead-lettered by the channel stage (the
    notification as ``raw``), at its time; a channel dead-lettered by the interaction stage
    (its session row as ``raw``), its interaction over the channel's span."""
    if row["error_code"] != "late":
        return
    if row["origin"].startswith("channel:"):
        try:
            session = orjson.loads(row["raw"])
            first, last = parse_timestamp(session["first_event_at"]), parse_timestamp(session["last_event_at"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return
        key = session.get("interaction_id") or session.get("channel_id")
        for start in _spanned(first, last, step_ms):
            yield start, Done("interaction", key)
        return
    ev = parse_line(row["raw"].encode("utf-8"), row["origin"], MAX_EVENT_BYTES)
    if isinstance(ev, Event) and ev.is_channel:
        start = interval_start_of(ev.ts, step_ms)
        yield start, Done("interaction", ev.interaction_id if ev.interaction_id is not None else ev.key)
        if ev.type == "channel.ended":
            yield start, Done("channel", ev.key)


@dataclass
class _ServiceMeta:
    """Small state of one service interval next to the bag of its messages."""

    due: int = 0  # when the row is due (µs): interval end + grace
    backstop: int = 0  # when the row is emitted even with entities pending (µs)
    awaiting: set | None = None  # due passed with these (kind, id) pending: the Done of the last re-arms
    emitted: bool = False  # the row was emitted: what comes later is late


def _settle(parts: list) -> tuple[set, list]:
    """The (kind, id) announced and not done, and the :class:`Done` messages, of a bag."""
    done = [m for m in parts if isinstance(m, Done)]
    settled = {(d.kind, d.id) for d in done}
    return {(m.kind, m.id) for m in parts if isinstance(m, Pending)} - settled, done


class ServiceIntervalsFn(beam.DoFn):
    """``(interval start µs, Pending | Done)`` in; ``("service_intervals", row)`` out.

    A service interval is final once ``grace`` has passed after its end (the module's
    ``_later`` rule) and every entity announced in it is done (emitted, or dead-lettered as
    late): its row is then emitted, once, if any contribution came. An entity that never
    comes (malformed input, e.g. a channel naming two interactions) holds the row until the
    dedup horizon after the interval's end: then it is emitted, counted in
    ``vccflow/service_intervals_forced`` (the local runner holds no watermark for timers: a
    test that moves the watermark past that horizon at once can fire it before the last
    contributions). Contributions after emission are dropped and counted
    (``vccflow/late_service_contributions``); the marker is kept for the dedup horizon.

    Cost: a message is appended to the interval's bag (O(1)); the bag is read when the timer
    fires, and while the interval waits only a :class:`Done` of an awaited entity rewrites
    the small state. (An interval's state holding its entity sets, rewritten per message,
    made the stage quadratic in the messages per interval.)"""

    def __init__(self, settings: StreamSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.step = interval_ms(settings.interval_minutes)
        self.late = Metrics.counter(METRICS, "late_service_contributions")
        self.forced = Metrics.counter(METRICS, "service_intervals_forced")

    def process(self, element, at=beam.DoFn.TimestampParam, parts=_SV_PARTS, meta=_SV_META, due=_SV_DUE):
        start, message = element
        m = meta.read()
        if m is None:
            end = start + self.step * 1000
            m = _ServiceMeta(due=_later(end, self.clock, self.settings.grace_seconds))
            m.backstop = max(m.due, _later(end, self.clock, self.settings.dedup_horizon_seconds))
            due.set(_ts(m.due))
            meta.write(m)
        if m.emitted:
            if isinstance(message, Done) and message.values is not None:
                self.late.inc()
            return
        parts.add(message)
        if m.awaiting and isinstance(message, Done) and (message.kind, message.id) in m.awaiting:
            m.awaiting.discard((message.kind, message.id))
            if not m.awaiting:  # the timer settles again, announcements since included
                due.set(_ts(max(m.due, at.micros)))
            meta.write(m)

    @on_timer(_SV_TIMER)
    def on_due(
        self,
        key=beam.DoFn.KeyParam,
        fired=beam.DoFn.TimestampParam,
        parts=_SV_PARTS,
        meta=_SV_META,
        due=_SV_DUE,
    ):
        m = meta.read()
        if m is None or m.emitted:
            parts.clear()
            meta.clear()  # the marker's horizon is over
            return
        pending, done = _settle(list(parts.read()))
        if pending and fired.micros < m.backstop:
            m.awaiting = pending
            due.set(_ts(m.backstop))
            meta.write(m)
            parts.clear()  # compacted: every Done, one announcement per pending entity
            for message in done:
                parts.add(message)
            for kind, ident in sorted(pending):
                parts.add(Pending(kind, ident))
            return
        if pending:
            self.forced.inc()
            log.warning("service interval %s emitted with %d entities never final", _iso(key), len(pending))
        totals = None
        for message in done:
            if message.values is not None:
                totals = merge_service(totals or {}, {key: message.values})
        if totals is not None:
            (row,) = service_rows(totals, interval_ms=self.step)
            yield "service_intervals", dict(zip(SERVICE_INTERVAL_COLUMNS, row, strict=True))
        parts.clear()
        horizon = _later(fired.micros, self.clock, self.settings.dedup_horizon_seconds)
        meta.write(_ServiceMeta(emitted=True, due=horizon))
        due.set(_ts(horizon))


class ServiceIntervalsStreaming(beam.PTransform):
    """A tuple of ``(channel id, Received)`` channel events and ``(table, row)`` rows and late
    dead letters of the channel and interaction stages in; ``("service_intervals", row)``
    out (see :class:`ServiceIntervalsFn`)."""

    def __init__(self, settings: StreamSettings, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.settings = settings
        self.clock = clock

    def expand(self, inputs):
        events, *rows = inputs
        step = interval_ms(self.settings.interval_minutes)
        short_ms = self.settings.short_abandon_seconds * 1000
        announced = events | "Announce" >> beam.FlatMap(announce_service, step)
        done = (
            tuple(rows)
            | "FlattenRows" >> beam.Flatten()
            | "Parts" >> beam.FlatMap(service_parts, step, short_ms).with_output_types(IntervalKeyed)
        )
        return (
            (announced, done)
            | "FlattenServiceInputs" >> beam.Flatten().with_output_types(IntervalKeyed)
            | "ServiceInterval"
            >> beam.ParDo(ServiceIntervalsFn(self.settings, self.clock)).with_input_types(IntervalKeyed)
        )


# --- the whole stream ------------------------------------------------------------------


class SessionizeStream(beam.PTransform):
    """Pub/Sub messages (``PubsubMessage`` or bytes) in. Out: a dict with ``rows``, every
    ``(table, row)`` of the tables (dead letters included), and ``archive``,
    ``(event_date, NDJSON line)`` of every valid event as received (duplicates included)."""

    def __init__(self, settings: StreamSettings, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.settings = settings
        self.clock = clock

    def expand(self, messages):
        parsed = messages | "Parse" >> ParseMessages(self.settings.max_event_bytes)
        channels = parsed.channel | "Channels" >> SessionizeChannelsStreaming(self.settings, self.clock)
        agents = (parsed[PRESENCE], parsed[ACTIVITY], channels[AGENT_WORK]) | "Agents" >> SessionizeAgentsStreaming(
            self.settings, self.clock
        )
        interactions = channels[INTERACTION_WORK] | "Interactions" >> SessionizeInteractionsStreaming(
            self.settings, self.clock
        )
        service = (
            parsed.channel,
            channels.rows,
            interactions.rows,
            channels[DEAD],
            interactions[DEAD],
        ) | "Service" >> ServiceIntervalsStreaming(self.settings, self.clock)
        rows = (
            parsed[DEAD],
            channels.rows,
            channels[DEAD],
            agents.rows,
            agents[DEAD],
            interactions.rows,
            interactions[DEAD],
            service,
        ) | "AllRows" >> beam.Flatten()
        return {"rows": rows, "archive": parsed[ARCHIVE]}


# --- writers ---------------------------------------------------------------------------


def _stamp_arrival(element):
    """The element at its arrival time (now), keyed for the write: ``(table, row)`` by
    ``(table, event_date)``; ``(event_date, line)`` unchanged."""
    key, value = element
    if isinstance(value, dict):
        key = (key, utc_date(value[PARTITION_SOURCE[key]]))
    return TimestampedValue((key, value), time.time())


def window_label(window) -> str:
    """``YYYYMMDDTHHMMSSZ`` of a window's start (UTC)."""
    return window.start.to_utc_datetime().strftime("%Y%m%dT%H%M%SZ")


def _hidden_temp(path: str) -> str:
    """A sibling of ``path`` that readers skip (a name starting with ``.``)."""
    folder, name = path.rsplit("/", 1)
    return f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"


def publish_file(path: str, write: Callable[[str], None]) -> str:
    """Write through ``write(temp)`` to a hidden temporary name, then rename to ``path``:
    readers never see a partial file. Returns ``path``."""
    temp = _hidden_temp(path)
    write(temp)
    FileSystems.rename([temp], [path])
    return path


QUARANTINE_FOLDER = "_quarantine"
_VALIDATION_LOCK = threading.Lock()  # Great Expectations' warning filters are process-wide


def validate_file(table: str, data: pa.Table, day: str):
    """One file's rows against ``table``'s suite (the partition rule included); rules
    across files (uniqueness over the whole table) are for ``vccflow validate``."""
    from transforms.validation import validate_table

    with _VALIDATION_LOCK:
        return validate_table(table, data.append_column(PARTITION_COLUMN, pa.array([day] * data.num_rows)))


class _WriteTableFileFn(beam.DoFn):
    """``((table, event_date), rows)`` of one window pane in; one Parquet file written and,
    with ``validate``, checked by the table's expectation suite: a failing file goes to
    ``ROOT/_quarantine/`` with its verdict next to it (counted, never kept in the table,
    never deleted); out: the path written."""

    def __init__(self, root: str, run_id: str, validate: bool = True) -> None:
        self.root = root
        self.run_id = run_id
        self.validate = validate
        self.quarantined = Metrics.counter("vccflow", "quarantined_files")

    def process(self, element, window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        (table, day), rows = element
        rows = sorted(rows, key=lambda r: r[PARTITION_SOURCE[table]])
        label = f"{window_label(window)}-{self.run_id}-{pane.index}"
        data = to_arrow(table, rows)
        verdict = validate_file(table, data, day) if self.validate else None
        root = self.root
        if verdict is not None and not verdict.success:
            root = FileSystems.join(self.root, QUARANTINE_FOLDER)
            self.quarantined.inc()
        path = publish_file(table_file(root, table, day, label), lambda tmp: write_parquet(tmp, data))
        if verdict is not None and not verdict.success:
            with FileSystems.create(path.removesuffix(".parquet") + ".verdict.json") as f:
                f.write(json.dumps(verdict.as_dict(), indent=2, default=str).encode("utf-8"))
            failed = "; ".join(f"{x.expectation}({', '.join(x.columns)})" for x in verdict.failures)
            log.warning("%s: %d row(s) failed validation (%s), quarantined -> %s", table, len(rows), failed, path)
        else:
            log.info("%s: %d row(s) -> %s", table, len(rows), path)
        yield path


class WriteWindowedTables(beam.PTransform):
    """``(table, row)`` in; under ``root``: one Parquet file per ``window_seconds`` window of
    arrival time, table and ``event_date`` partition, named
    ``<table>/event_date=D/part-<window start>-<run id>-<pane>.parquet``, each validated
    first (see :class:`_WriteTableFileFn`); out: the paths."""

    def __init__(self, root: str, window_seconds: int, run_id: str, validate: bool = True) -> None:
        super().__init__()
        self.root = root
        self.window_seconds = window_seconds
        self.run_id = run_id
        self.validate = validate

    def expand(self, rows):
        return (
            rows
            | "StampArrival" >> beam.Map(_stamp_arrival)
            | "Window" >> beam.WindowInto(FixedWindows(self.window_seconds))
            | "GroupByPartition" >> beam.GroupByKey()
            | "WriteParquet" >> beam.ParDo(_WriteTableFileFn(self.root, self.run_id, self.validate))
        )


class _WriteArchiveFileFn(beam.DoFn):
    """``(event_date, lines)`` of one window pane in; one ``.jsonl.gz`` file written; its path out."""

    def __init__(self, root: str, run_id: str) -> None:
        self.root = root
        self.run_id = run_id

    def process(self, element, window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        day, lines = element
        lines = list(lines)
        payload = gzip.compress(b"".join(line + b"\n" for line in lines), mtime=0)
        name = f"part-{window_label(window)}-{self.run_id}-{pane.index}.jsonl.gz"
        path = FileSystems.join(self.root, ARCHIVE_FOLDER, f"event_date={day}", name)

        def write(tmp: str) -> None:
            with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                f.write(payload)

        yield publish_file(path, write)
        log.info("raw: %d notification(s) -> %s", len(lines), path)


class WriteRawArchive(beam.PTransform):
    """``(event_date, NDJSON line)`` in; under ``root/raw/event_date=D/``: one gzip NDJSON
    file per ``window_seconds`` window of arrival time and event date, readable by
    ``vccflow batch --input 'ROOT/raw/**/*.jsonl.gz'``; out: the paths."""

    def __init__(self, root: str, window_seconds: int, run_id: str) -> None:
        super().__init__()
        self.root = root
        self.window_seconds = window_seconds
        self.run_id = run_id

    def expand(self, lines):
        return (
            lines
            | "StampArrival" >> beam.Map(_stamp_arrival)
            | "Window" >> beam.WindowInto(FixedWindows(self.window_seconds))
            | "GroupByDate" >> beam.GroupByKey()
            | "WriteJsonl" >> beam.ParDo(_WriteArchiveFileFn(self.root, self.run_id))
        )

"""Batch sessionization: thin Beam shells around the pure cores in :mod:`transforms.timeline`,
:mod:`transforms.presence`, :mod:`transforms.interaction` and :mod:`transforms.intervals`.

Events travel in batches keyed by a shard of their entity (channel or agent), so Beam's
per-element cost is paid per batch, not per event; one GroupByKey brings all of a shard's
events together and the pure core runs once per channel and once per agent. The channel
stage ships what the later cores read of each channel the same way, batched per shard: agent
work by agent shard, interaction summaries by interaction shard (one more GroupByKey, the
interaction core once per interaction). The channel and interaction stages also make the
service intervals' contributions, combined globally (:class:`ServiceIntervals`); the agent
stage makes the agent intervals.

Every batch is in parts by a second hash of the key (:func:`transforms.io.part_of`), and each
stage decodes and sessionizes one part of all of a shard's batches at a time
(:func:`_in_parts`): the events a core works on are still in the CPU's cache.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from operator import itemgetter

import apache_beam as beam
import msgspec

from transforms.collector import paused_gc
from transforms.events import FIELD, DeadLetter, Event, batch_parts, decode_part, pack_parts
from transforms.interaction import INTERACTION_COLUMNS, channel_summary, interaction_key, interaction_values
from transforms.intervals import (
    HANDLED_FIELDS,
    INTERACTION_FIELDS,
    agent_intervals,
    merge_all,
    service_handled,
    service_interactions,
    service_rows,
)
from transforms.io import KEY_PARTS, shard_and_part
from transforms.parquet import RowBatch
from transforms.presence import WORK_SEGMENT_FIELDS, agent_segments, sessionize_agent
from transforms.timeline import SEGMENT_COLUMNS, SESSION_COLUMNS, ChannelResult, dedup, sessionize_channel

log = logging.getLogger(__name__)

AGENT_WORK = "agent_work"
INTERACTION_WORK = "interaction_work"
STATS = "stats"
SERVICE = "service"
#: What the agent and interval cores read of a channel's segments and session (the rest stays behind).
_WORK_SESSION_KEYS = ("agent_id", "party_role", "user_id", "first_event_at", "connected_at", "ended_at", "handle_ms")
_work_segment = itemgetter(*map(SEGMENT_COLUMNS.index, WORK_SEGMENT_FIELDS))
_WORK_AGENT = WORK_SEGMENT_FIELDS.index("agent_id")
_work_session = itemgetter(*map(SESSION_COLUMNS.index, _WORK_SESSION_KEYS))
#: What the channel stage reads of a session (event and duplicate counts, agent, role).
_tallies = itemgetter(*map(SESSION_COLUMNS.index, ("event_count", "duplicate_count", "agent_id", "party_role")))
_handled = itemgetter(*map(SESSION_COLUMNS.index, HANDLED_FIELDS))
_interaction_fields = itemgetter(*map(INTERACTION_COLUMNS.index, INTERACTION_FIELDS))


def _label(shard: int) -> str:
    return f"s{shard:05d}"


_KEY = FIELD["key"]


def _in_parts(tagged: Iterable[tuple[str, bytes]]) -> Iterator[list[tuple[str, memoryview]]]:
    """``(tag, part)`` of the i-th part of every packed batch ``(tag, batch)``, for each i:
    each key of a shard is in the same part of every batch the reader or the channel stage
    packed (:func:`transforms.io.part_of`). Batches of different numbers of parts (not
    packed by one rule) come as one group of all their parts."""
    batches = [(tag, batch_parts(batch)) for tag, batch in tagged]
    widths = {len(parts) for _, parts in batches}
    if len(widths) == 1:
        for i in range(widths.pop()):
            yield [(tag, parts[i]) for tag, parts in batches]
    else:
        yield [(tag, part) for tag, parts in batches for part in parts]


def _by_key(batches) -> Iterator[dict[str, list[Event]]]:
    """The events of a shard's packed batches by key, one part of every batch at a time
    (:func:`_in_parts`)."""
    for group in _in_parts(("", batch) for batch in batches):
        by_key: dict[str, list[Event]] = defaultdict(list)
        for _, part in group:
            for ev in decode_part(part):
                by_key[ev[_KEY]].append(ev)
        yield by_key


class SessionizeChannelShardFn(beam.DoFn):
    """``(shard, [packed events])`` in. Out: a :class:`RowBatch` of ``channel_sessions`` and one
    of ``channel_segments`` (main), ``(agent_shard, ("w", bytes))`` of agent channels
    (``agent_work``, :func:`pack_work`), ``(interaction_shard, bytes)`` of every channel's
    summary (``interaction_work``, :func:`pack_summaries`), the shard's ``handled`` service
    contributions (``service``, :func:`transforms.intervals.service_handled`) and a
    statistics dict (``stats``).

    A shard from ``shards`` on holds presence batches of agent shard ``shard - shards``: they
    pass through to ``agent_work`` as ``(agent_shard, ("p", bytes))``."""

    def __init__(self, shards: int, interval_ms: int) -> None:
        self.shards = shards
        self.interval_ms = interval_ms

    def process(self, element):
        shard, batches = element
        if shard >= self.shards:
            for batch in batches:
                yield beam.pvalue.TaggedOutput(AGENT_WORK, (shard - self.shards, ("p", batch)))
            return
        with paused_gc():
            yield from self._sessionize(shard, batches)

    def _sessionize(self, shard, batches):
        started = time.monotonic()
        sessions: list[tuple] = []
        segments: list[tuple] = []
        # per agent shard, per part (of the agent, transforms.io.part_of): segments and sessions
        work: dict[int, list[tuple[list[tuple], list[tuple]]]] = defaultdict(
            lambda: [([], []) for _ in range(KEY_PARTS)]
        )
        # per interaction shard, per part (of the interaction, transforms.io.part_of)
        summaries: dict[int, list[list[tuple]]] = defaultdict(lambda: [[] for _ in range(KEY_PARTS)])
        valid = duplicates = 0
        for events in (events for by_key in _by_key(batches) for events in by_key.values()):
            result = sessionize_channel(events)
            events.clear()  # freed now, while fresh in memory
            sessions.append(result.session_values)
            segments.extend(result.segment_values)
            summary = channel_summary(result)
            interaction_shard, part = shard_and_part(interaction_key(summary), self.shards)
            summaries[interaction_shard][part].append(summary)
            events_, dropped, agent, role = _tallies(result.session_values)
            valid += events_
            duplicates += dropped
            if agent is not None and role == "agent":
                agent_shard, part = shard_and_part(agent, self.shards)
                segs, sess = work[agent_shard][part]
                seg_values, session_values = agent_work(result)
                segs.extend(seg_values)
                sess.append(session_values)
        yield RowBatch("channel_sessions", _label(shard), sessions)
        if segments:
            yield RowBatch("channel_segments", _label(shard), segments)
        for agent_shard, parts in work.items():
            yield beam.pvalue.TaggedOutput(AGENT_WORK, (agent_shard, ("w", pack_work(parts))))
        yield beam.pvalue.TaggedOutput(SERVICE, service_handled(map(_handled, sessions), interval_ms=self.interval_ms))
        for interaction_shard, values in summaries.items():
            yield beam.pvalue.TaggedOutput(INTERACTION_WORK, (interaction_shard, pack_summaries(values)))
        yield beam.pvalue.TaggedOutput(STATS, {"valid": valid, "duplicates": duplicates, "channels": len(sessions)})
        log.info(
            "channel shard %s: %d channels, %d segments, %d events in %.1fs",
            _label(shard), len(sessions), len(segments), valid + duplicates, time.monotonic() - started,
        )  # fmt: skip


class SessionizeChannels(beam.PTransform):
    """Event batches of :class:`transforms.io.ReadNotifications` in: ``(shard, packed
    events)``, channel events under shards below ``shards``, presence events of agent shard
    ``s`` under ``shards + s``. A tuple out: table row batches (:class:`RowBatch`, main), agent
    work ``(agent_shard, ("w", bytes) | ("p", bytes))`` (the agent channels' work and the
    presence batches: all an agent shard needs), interaction work ``(interaction_shard,
    bytes)``, service contributions (``service``) and stats.

    Presence travels with the channels so that each grouping has one input: Beam's local
    runner makes a flatten of several inputs one more stage, which moves all of them through
    a worker (on the bench data at 3x, +76 MiB per worker and a second pass over the agent work).
    """

    def __init__(self, shards: int, interval_ms: int) -> None:
        super().__init__()
        self.shards = shards
        self.interval_ms = interval_ms

    def expand(self, batches):
        return (
            batches
            | "GroupByChannelShard" >> beam.GroupByKey()
            | "SessionizeChannelShard"
            >> beam.ParDo(SessionizeChannelShardFn(self.shards, self.interval_ms))
            .with_output_types(RowBatch)
            .with_outputs(AGENT_WORK, INTERACTION_WORK, STATS, SERVICE, main="rows")
        )


def agent_work(result: ChannelResult) -> tuple[list[tuple], tuple]:
    """What the agent core reads of one channel: its segments and its session as value
    tuples (in the order of :data:`~transforms.presence.WORK_SEGMENT_FIELDS` /
    ``_WORK_SESSION_KEYS``)."""
    return list(map(_work_segment, result.segment_values)), _work_session(result.session_values)


def pack_work(parts: list[tuple[list[tuple], list[tuple]]]) -> bytes:
    """What the agent core needs of some agent channels, as one ``bytes`` value of one part
    per element of ``parts`` (``(segments, sessions)``: value tuples in the order of
    :data:`~transforms.presence.WORK_SEGMENT_FIELDS` / ``_WORK_SESSION_KEYS``), in the
    container of :func:`transforms.events.pack_parts`; :func:`work_of_part` restores a part,
    :func:`unpack_work` all of them."""
    return pack_parts([msgspec.msgpack.encode(part) for part in parts])


def work_of_part(part: memoryview | bytes) -> tuple[list[list], list[dict]]:
    """Segments and sessions of one part of :func:`pack_work`: segments as value lists in
    :data:`~transforms.presence.WORK_SEGMENT_FIELDS` order (the agent core takes them so),
    sessions as dicts keyed by ``_WORK_SESSION_KEYS``."""
    segments, sessions = msgspec.msgpack.decode(part)
    return segments, [dict(zip(_WORK_SESSION_KEYS, s, strict=True)) for s in sessions]


def unpack_work(packed: bytes) -> tuple[list[list], list[dict]]:
    """Segments and sessions of every part of :func:`pack_work`, as :func:`work_of_part` gives them."""
    segments: list[list] = []
    sessions: list[dict] = []
    for part in batch_parts(packed):
        segs, sess = work_of_part(part)
        segments += segs
        sessions += sess
    return segments, sessions


def _sessionize_agent_shard(element, interval_ms: int):
    with paused_gc():
        yield from _agent_shard_rows(*element, interval_ms)


def _agent_parts(tagged) -> Iterator[tuple[dict[str, list[Event]], dict[str, list[list]], dict[str, list[dict]]]]:
    """Presence events, segments and sessions of an agent shard's batches by agent, one part
    of every batch at a time (:func:`_in_parts`)."""
    for group in _in_parts(tagged):
        presence: dict[str, list[Event]] = defaultdict(list)
        segments: dict[str, list[list]] = defaultdict(list)
        sessions: dict[str, list[dict]] = defaultdict(list)
        for kind, part in group:
            if kind == "p":
                for ev in decode_part(part):
                    presence[ev.key].append(ev)
            else:
                segs, sess = work_of_part(part)
                for seg in segs:
                    segments[seg[_WORK_AGENT]].append(seg)
                for row in sess:
                    sessions[row["agent_id"]].append(row)
        yield presence, segments, sessions


def _agent_shard_rows(shard, tagged, interval_ms: int):
    started = time.monotonic()
    presence_rows: list[dict] = []
    session_rows: list[dict] = []
    interval_rows: list[tuple] = []
    valid = duplicates = agents = 0
    for presence, segments, sessions in _agent_parts(tagged):
        for agent in sorted(presence.keys() | segments.keys()):
            events, dropped = dedup(presence.get(agent, ()))
            valid += len(events)
            duplicates += dropped
            agents += 1
            segs, sess = agent_segments(agent, segments.get(agent, ())), sessions.get(agent, ())
            result = sessionize_agent(agent, events, segs, sess)
            presence_rows.extend(result.presence)
            session_rows.extend(result.sessions)
            interval_rows.extend(
                agent_intervals(agent, result.presence, result.sessions, segs, sess, interval_ms=interval_ms)
            )
    if presence_rows:
        yield RowBatch("agent_presence", _label(shard), presence_rows)
    if session_rows:
        yield RowBatch("agent_sessions", _label(shard), session_rows)
    if interval_rows:
        yield RowBatch("agent_intervals", _label(shard), interval_rows)
    yield beam.pvalue.TaggedOutput(STATS, {"valid": valid, "duplicates": duplicates, "agents": agents})
    log.info(
        "agent shard %s: %d agents, %d presence rows, %d sessions in %.1fs",
        _label(shard), agents, len(presence_rows), len(session_rows), time.monotonic() - started,
    )  # fmt: skip


class SessionizeAgents(beam.PTransform):
    """Agent work of :class:`SessionizeChannels` in: ``(agent_shard, ("p", packed presence
    events))`` and ``(agent_shard, ("w", bytes))`` (:func:`pack_work`); table row batches
    (:class:`RowBatch`, main: the agent tables and ``agent_intervals`` on a grid of
    ``interval_ms``) and stats out."""

    def __init__(self, interval_ms: int) -> None:
        super().__init__()
        self.interval_ms = interval_ms

    def expand(self, work):
        return (
            work
            | "GroupByAgentShard" >> beam.GroupByKey()
            | "SessionizeAgentShard"
            >> beam.ParDo(_sessionize_agent_shard, self.interval_ms)
            .with_output_types(RowBatch)
            .with_outputs(STATS, main="rows")
        )


class ServiceIntervals(beam.PTransform):
    """Service contributions (:data:`transforms.intervals.ServiceTotals` dicts, any number;
    a PCollection or a tuple of them) in;
    one :class:`RowBatch` of every ``service_intervals`` row out: the contributions are
    combined globally by :func:`transforms.intervals.merge_all` (associative, so the runner
    combines them partially where they are made)."""

    def __init__(self, interval_ms: int) -> None:
        super().__init__()
        self.interval_ms = interval_ms

    def expand(self, contributions):
        step = self.interval_ms
        if isinstance(contributions, tuple):
            contributions = contributions | "FlattenContributions" >> beam.Flatten()
        return (
            contributions
            | "CombineIntervals" >> beam.CombineGlobally(merge_all)
            | "ServiceRows"
            >> beam.Map(
                lambda totals: RowBatch("service_intervals", "all", service_rows(totals, interval_ms=step))
            ).with_output_types(RowBatch)
        )


def pack_summaries(parts: list[list[tuple]]) -> bytes:
    """Channel summaries (:func:`transforms.interaction.channel_summary`) as one ``bytes``
    value of one part per element of ``parts``, like :func:`pack_work` (each part a
    MessagePack array of summaries, decoded as lists)."""
    return pack_parts([msgspec.msgpack.encode(part) for part in parts])


def _sessionize_interaction_shard(element, interval_ms: int, short_abandon_ms: int):
    with paused_gc():
        yield from _interaction_shard_rows(*element, interval_ms, short_abandon_ms)


def _interaction_shard_rows(shard, batches, interval_ms: int, short_abandon_ms: int):
    started = time.monotonic()
    rows = []
    for group in _in_parts(("", batch) for batch in batches):  # one part of every batch at a time
        by_interaction: dict[str, list[list]] = defaultdict(list)
        for _, part in group:
            for summary in msgspec.msgpack.decode(part):
                by_interaction[interaction_key(summary)].append(summary)
        rows += [interaction_values(channels) for channels in by_interaction.values()]
    if rows:
        yield RowBatch("interactions", _label(shard), rows)
    service = service_interactions(
        map(_interaction_fields, rows), interval_ms=interval_ms, short_abandon_ms=short_abandon_ms
    )
    yield beam.pvalue.TaggedOutput(SERVICE, service)
    yield beam.pvalue.TaggedOutput(STATS, {"interactions": len(rows)})
    log.info("interaction shard %s: %d interactions in %.1fs", _label(shard), len(rows), time.monotonic() - started)


class SessionizeInteractions(beam.PTransform):
    """Interaction work ``(interaction_shard, bytes)`` (:func:`pack_summaries`) in; out:
    ``interactions`` row batches (:class:`RowBatch`, main), their service contributions on a
    grid of ``interval_ms`` (``service``, :func:`transforms.intervals.service_interactions`)
    and stats."""

    def __init__(self, interval_ms: int, short_abandon_ms: int) -> None:
        super().__init__()
        self.interval_ms = interval_ms
        self.short_abandon_ms = short_abandon_ms

    def expand(self, work):
        return (
            work
            | "GroupByInteractionShard" >> beam.GroupByKey()
            | "SessionizeInteractionShard"
            >> beam.ParDo(_sessionize_interaction_shard, self.interval_ms, self.short_abandon_ms)
            .with_output_types(RowBatch)
            .with_outputs(STATS, SERVICE, main="rows")
        )


def dead_letter_rows(element) -> RowBatch:
    """``(path, ingested_at_us, [DeadLetter])`` to a ``dead_letter`` row batch."""
    path, ingested, letters = element
    rows = [{**d._asdict(), "ingested_at": ingested} for d in letters if isinstance(d, DeadLetter)]
    return RowBatch("dead_letter", f"f{zlib.crc32(path.encode('utf-8')):08x}", rows)

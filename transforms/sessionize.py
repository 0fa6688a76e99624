"""Batch sessionization: thin Beam shells around the pure cores in :mod:`transforms.timeline`
and :mod:`transforms.presence`.

Events travel in batches keyed by a shard of their entity (channel or agent), so Beam's
per-element cost is paid per batch, not per event; one GroupByKey brings all of a shard's
events together and the pure core runs once per channel and once per agent.
"""

from __future__ import annotations

import zlib
from collections import defaultdict

import apache_beam as beam

from transforms.events import DeadLetter, Event, unpack
from transforms.io import shard_of
from transforms.presence import sessionize_agent
from transforms.timeline import dedup, sessionize_channel

AGENT_WORK = "agent_work"
STATS = "stats"
#: What the agent core reads of a channel's segments and session (the rest stays behind).
_WORK_SEGMENT_KEYS = ("channel_id", "agent_id", "party_role", "seq", "state", "start_at", "end_at")
_WORK_SESSION_KEYS = ("agent_id", "party_role", "user_id", "first_event_at")


def _label(shard: int) -> str:
    return f"s{shard:05d}"


def _by_key(batches) -> dict[str, list[Event]]:
    by_key: dict[str, list[Event]] = defaultdict(list)
    for batch in batches:
        for ev in unpack(batch):
            by_key[ev.key].append(ev)
    return by_key


class SessionizeChannelShardFn(beam.DoFn):
    """``(shard, [packed [Event]])`` in. Out: ``(table, label, rows)`` for ``channel_sessions`` and
    ``channel_segments`` (main), ``(agent_shard, ([segment], [session]))`` of agent
    channels (``agent_work``) and a statistics dict (``stats``)."""

    def __init__(self, shards: int) -> None:
        self.shards = shards

    def process(self, element):
        shard, batches = element
        sessions: list[dict] = []
        segments: list[dict] = []
        work: dict[int, tuple[list[dict], list[dict]]] = defaultdict(lambda: ([], []))
        valid = duplicates = 0
        for events in _by_key(batches).values():
            result = sessionize_channel(events)
            sessions.append(result.session)
            segments.extend(result.segments)
            valid += result.session["event_count"]
            duplicates += result.session["duplicate_count"]
            agent = result.session["agent_id"]
            if agent is not None and result.session["party_role"] == "agent":
                segs, sess = work[shard_of(agent, self.shards)]
                segs.extend({k: seg[k] for k in _WORK_SEGMENT_KEYS} for seg in result.segments)
                sess.append({k: result.session[k] for k in _WORK_SESSION_KEYS})
        yield "channel_sessions", _label(shard), sessions
        if segments:
            yield "channel_segments", _label(shard), segments
        for agent_shard, pair in work.items():
            yield beam.pvalue.TaggedOutput(AGENT_WORK, (agent_shard, pair))
        yield beam.pvalue.TaggedOutput(STATS, {"valid": valid, "duplicates": duplicates, "channels": len(sessions)})


class SessionizeChannels(beam.PTransform):
    """Channel event batches ``(shard, packed [Event])`` in; a tuple out: table row batches
    ``(table, label, rows)`` (main), agent work ``(agent_shard, ([segment], [session]))``
    and stats."""

    def __init__(self, shards: int) -> None:
        super().__init__()
        self.shards = shards

    def expand(self, batches):
        return (
            batches
            | "GroupByChannelShard" >> beam.GroupByKey()
            | "SessionizeChannelShard"
            >> beam.ParDo(SessionizeChannelShardFn(self.shards)).with_outputs(AGENT_WORK, STATS, main="rows")
        )


def _sessionize_agent_shard(element):
    shard, tagged = element
    presence: dict[str, list[Event]] = defaultdict(list)
    segments: dict[str, list[dict]] = defaultdict(list)
    sessions: dict[str, list[dict]] = defaultdict(list)
    for kind, batch in tagged:
        if kind == "p":
            for ev in unpack(batch):
                presence[ev.key].append(ev)
        else:
            for seg in batch[0]:
                segments[seg["agent_id"]].append(seg)
            for row in batch[1]:
                sessions[row["agent_id"]].append(row)
    presence_rows: list[dict] = []
    session_rows: list[dict] = []
    valid = duplicates = 0
    agents = sorted(presence.keys() | segments.keys())
    for agent in agents:
        events, dropped = dedup(presence.get(agent, ()))
        valid += len(events)
        duplicates += dropped
        result = sessionize_agent(agent, events, segments.get(agent, ()), sessions.get(agent, ()))
        presence_rows.extend(result.presence)
        session_rows.extend(result.sessions)
    if presence_rows:
        yield "agent_presence", _label(shard), presence_rows
    if session_rows:
        yield "agent_sessions", _label(shard), session_rows
    yield beam.pvalue.TaggedOutput(STATS, {"valid": valid, "duplicates": duplicates, "agents": len(agents)})


class SessionizeAgents(beam.PTransform):
    """Presence event batches ``(shard, packed [Event])`` and agent work ``(shard, ([segment],
    [session]))`` in (as a pair); table row batches (main) and stats out."""

    def expand(self, pair):
        presence, work = pair
        tagged_p = presence | "TagPresence" >> beam.MapTuple(lambda s, evs: (s, ("p", evs)))
        tagged_w = work | "TagWork" >> beam.MapTuple(lambda s, pair: (s, ("w", pair)))
        return (
            (tagged_p, tagged_w)
            | "FlattenAgentInputs" >> beam.Flatten()
            | "GroupByAgentShard" >> beam.GroupByKey()
            | "SessionizeAgentShard" >> beam.ParDo(_sessionize_agent_shard).with_outputs(STATS, main="rows")
        )


def dead_letter_rows(element) -> tuple[str, str, list[dict]]:
    """``(path, ingested_at_us, [DeadLetter])`` to a ``dead_letter`` row batch."""
    path, ingested, letters = element
    rows = [{**d._asdict(), "ingested_at": ingested} for d in letters if isinstance(d, DeadLetter)]
    return "dead_letter", f"f{zlib.crc32(path.encode('utf-8')):08x}", rows

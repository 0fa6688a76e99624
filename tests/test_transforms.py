"""Beam composites on small hand-made inputs (TestPipeline on the in-process runner)."""

from __future__ import annotations

from operator import itemgetter

import apache_beam as beam
import pandas as pd
from apache_beam.testing.util import assert_that, equal_to

from tests.test_timeline import T0, ev
from transforms.events import DeadLetter, Event, pack
from transforms.io import shard_of
from transforms.parquet import RowBatch, RowBatchCoder, WriteTables
from transforms.sessionize import (
    SessionizeAgents,
    SessionizeChannels,
    agent_work,
    dead_letter_rows,
    pack_work,
    unpack_work,
)
from transforms.timeline import SESSION_COLUMNS


def presence(kind: str, at_s: float, agent: str = "1544", id_: str | None = None) -> Event:
    return Event(
        "/agent",
        id_ or f"p-{kind}-{at_s}",
        "agent.presencechanged",
        T0 + round(at_s * 1_000_000),
        agent,
        agent_id=agent,
        user_id="u1",
        presence_type=kind,
    )


def call(channel: str, start: float, role: str = "agent") -> list[Event]:
    return [
        ev("alerted", start, channel, role),
        ev("connected", start + 5, channel, role),
        ev("held", start + 20, channel, role),
        ev("retrieved", start + 30, channel, role),
        ev("disconnected", start + 65, channel, role),
        ev("wrapstarted", start + 65, channel, role),
        ev("ended", start + 95, channel, role),
    ]


def test_sessionize_channels_groups_batches_per_channel_and_routes_agent_work(pipeline):
    a, b = call("chA", 0), call("chB", 100, role="customer")
    dup = a[2]
    pres = pack([presence("ready", 0)])
    # one channel split over two batches of the same shard, with a duplicate; a presence batch
    # of agent shard 1 (under shard 4 + 1) passes through to the agent work untouched
    batches = [
        (shard_of("chA", 4), pack(a[:3])),
        (shard_of("chA", 4), pack(a[3:] + [dup])),
        (shard_of("chB", 4), pack(b)),
        (4 + 1, pres),
    ]
    with pipeline as p:
        out = p | beam.Create(batches) | SessionizeChannels(shards=4, interval_ms=15 * 60_000)
        columns = ("channel_id", "talk_ms", "hold_ms", "wrap_ms", "duplicate_count")
        values = itemgetter(*map(SESSION_COLUMNS.index, columns))  # rows are value tuples in column order
        sessions = out.rows | beam.FlatMap(lambda t: list(map(values, t[2])) if t[0] == "channel_sessions" else [])
        assert_that(sessions, equal_to([("chA", 50000, 10000, 30000, 1), ("chB", 50000, 10000, 30000, 0)]))
        work = out.agent_work | beam.MapTuple(
            lambda shard, tagged: (
                (shard, "p", tagged[1] == pres)
                if tagged[0] == "p"
                else (
                    shard,
                    tagged[0],
                    sorted({s[0] for s in unpack_work(tagged[1])[0]}),  # channel_id first
                    len(unpack_work(tagged[1])[1]),
                )
            )
        )
        assert_that(work, equal_to([(shard_of("1544", 4), "w", ["chA"], 1), (1, "p", True)]), label="work")
        stats = out.stats | beam.CombineGlobally(
            lambda ds: {k: sum(d[k] for d in ds) for k in ("valid", "duplicates", "channels")}
        )
        assert_that(stats, equal_to([{"valid": 14, "duplicates": 1, "channels": 2}]), label="stats")


def _one_channel_work(result):
    segments, session = agent_work(result)
    return segments, [session]


def test_sessionize_agents_joins_presence_and_channel_work(pipeline):
    from transforms.timeline import sessionize_channel

    result = sessionize_channel(call("chA", 100))
    shard = shard_of("1544", 4)
    pres = [presence("ready", 0), presence("away", 200), presence("loggedOut", 400), presence("loggedOut", 400)]
    with pipeline as p:
        work = p | beam.Create([(shard, ("p", pack(pres))), (shard, ("w", pack_work([_one_channel_work(result)])))])
        out = work | SessionizeAgents(interval_ms=15 * 60_000)
        rows = out.rows | beam.FlatMap(lambda t: [(t[0], len(t[2]))])
        # 0-400 s after T0 (08:00:00Z) lies in one 15-minute interval: one agent_intervals row
        assert_that(rows, equal_to([("agent_presence", 3), ("agent_sessions", 1), ("agent_intervals", 1)]))
        sess = out.rows | "S" >> beam.FlatMap(
            lambda t: (
                [
                    (r["duration_ms"], r["ready_ms"], r["away_ms"], r["talk_ms"], r["busy_ms"], r["channels_handled"])
                    for r in t[2]
                ]
                if t[0] == "agent_sessions"
                else []
            )
        )
        assert_that(sess, equal_to([(400000, 200000, 200000, 50000, 90000, 1)]), label="session")
        stats = out.stats | beam.Map(lambda d: (d["valid"], d["duplicates"], d["agents"]))
        assert_that(stats, equal_to([(3, 1, 1)]), label="stats")


def test_write_tables_partitions_by_utc_date(tmp_path, pipeline):
    from transforms.timeline import sessionize_channel

    late = sessionize_channel(call("chLate", 16 * 3600 - 10)).session  # 2024-03-04T23:59:50Z
    early = sessionize_channel(call("chEarly", 0)).session
    dl = dead_letter_rows((str(tmp_path / "x.jsonl"), T0, [DeadLetter("invalid_json", "bad", "{", 1, False, "x:1")]))
    with pipeline as p:
        counts = (
            p | beam.Create([("channel_sessions", "s00001", [late, early]), dl]) | WriteTables(str(tmp_path / "out"))
        )
        assert_that(counts, equal_to([{"rows.channel_sessions": 2}, {"rows.dead_letter": 1}]))
    files = sorted(x.relative_to(tmp_path / "out").as_posix() for x in (tmp_path / "out").rglob("*.parquet"))
    assert files == [
        "channel_sessions/event_date=2024-03-04/part-s00001.parquet",
        "dead_letter/event_date=2024-03-04/part-" + dl[1] + ".parquet",
    ]
    df = pd.read_parquet(tmp_path / "out" / "channel_sessions")
    assert sorted(df["channel_id"]) == ["chEarly", "chLate"]
    assert str(df["ended_at"].dtype) == "datetime64[us, UTC]"
    assert df.set_index("channel_id").loc["chLate", "ended_at"] == pd.Timestamp("2024-03-05T00:01:25Z")


def test_every_row_batch_collection_of_the_batch_graph_has_the_row_batch_coder(tmp_path):
    """Beam sizes sampled outputs with their PCollection's coder: row batches must not get a
    generic coder, which would encode every sampled batch whole."""
    from pipelines.batch import build_pipeline

    p = beam.Pipeline()
    build_pipeline(p, [str(tmp_path / "x.jsonl")], str(tmp_path / "out"), 4, 1 << 20)
    writers = {}

    class Visit(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node):
            if isinstance(node.transform, WriteTables):
                writers[node.full_label] = node.inputs[0]

    p.visit(Visit())
    assert set(writers) == {
        "WriteChannelTables",
        "WriteAgentTables",
        "WriteServiceIntervals",
        "WriteInteractionTables",
        "WriteDeadLetters",
    }
    for pcoll in writers.values():
        assert pcoll.element_type is RowBatch
        assert isinstance(beam.coders.registry.get_coder(pcoll.element_type), RowBatchCoder)


def test_no_grouping_of_the_batch_graph_reads_a_flatten_of_big_collections(tmp_path):
    """Beam's local runner turns a flatten of several inputs into a stage of its own that
    moves every input through a worker (per-worker memory then grows with the input): the
    event groupings read one PCollection each; only the small statistics and service
    contributions are flattened."""
    from pipelines.batch import build_pipeline

    p = beam.Pipeline()
    build_pipeline(p, [str(tmp_path / "x.jsonl")], str(tmp_path / "out"), 4, 1 << 20)
    flattens, groupings = set(), {}

    class Visit(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(node.transform, beam.Flatten):
                flattens.update(id(out) for out in node.outputs.values())
            if isinstance(node.transform, beam.GroupByKey):
                groupings[node.full_label] = node.inputs[0]

    p.visit(Visit())
    shards = {label for label in groupings if label.endswith("Shard")}
    assert shards == {
        "Channels/GroupByChannelShard",
        "Agents/GroupByAgentShard",
        "Interactions/GroupByInteractionShard",
    }, sorted(groupings)
    assert all(id(groupings[label]) not in flattens for label in shards)
    assert not any(label.startswith(("Agents/Flatten", "Channels/Flatten")) for label in groupings)


def test_channel_stage_groups_each_key_across_batches_one_part_at_a_time():
    """The reader packs a shard's channel events in parts by key (transforms.io.part_of); the
    channel stage decodes the i-th part of every batch together. Batches of another shape
    (one part) are taken all at once, so no key is ever split."""
    from transforms.events import add_to_batch, new_batch, packed_batch
    from transforms.io import KEY_PARTS, part_of
    from transforms.sessionize import _by_key

    channels = {f"ch{i}": call(f"ch{i}", 10 * i) for i in range(40)}

    def reader_batch(events):
        buffers, counts = [new_batch() for _ in range(KEY_PARTS)], [0] * KEY_PARTS
        for e in events:
            add_to_batch(e, buffers[part_of(e.key, 4)], -1)
            counts[part_of(e.key, 4)] += 1
        return packed_batch(buffers, counts)

    first = [e for evs in channels.values() for e in evs[:3]]
    rest = [e for evs in channels.values() for e in evs[3:]]
    groups = list(_by_key([reader_batch(first), reader_batch(rest)]))
    assert len(groups) == KEY_PARTS
    assert sorted(k for g in groups for k in g) == sorted(channels)  # each key in one group only
    for i, group in enumerate(groups):
        assert {part_of(k, 4) for k in group} <= {i}
        for key, events in group.items():
            assert events == channels[key]  # batch order, then order within the batch
    (mixed,) = _by_key([reader_batch(first), pack(rest)])
    assert dict(mixed) == channels


def test_agent_stage_groups_each_agent_across_batches_one_part_at_a_time():
    """Presence batches (the reader's) and agent work (the channel stage's) come in parts by
    agent (transforms.io.part_of); the agent stage takes the i-th part of every batch together."""
    from transforms.events import add_to_batch, new_batch, packed_batch
    from transforms.io import KEY_PARTS, part_of
    from transforms.sessionize import _agent_parts

    agents = [f"a{i}" for i in range(30)]
    events = {a: [presence("ready", i, a), presence("away", i + 60, a)] for i, a in enumerate(agents)}
    buffers, counts = [new_batch() for _ in range(KEY_PARTS)], [0] * KEY_PARTS
    for a in agents:
        for e in events[a]:
            add_to_batch(e, buffers[part_of(a, 4)], -1)
            counts[part_of(a, 4)] += 1
    parts = [([], []) for _ in range(KEY_PARTS)]
    for a in agents:  # one segment and one session of each agent, as agent_work gives them
        parts[part_of(a, 4)][0].append((f"ch-{a}", a, "agent", 0, "connected", T0, T0 + 1000))
        parts[part_of(a, 4)][1].append((a, "agent", "u1", T0, T0, T0 + 2000, 1))
    tagged = [("p", packed_batch(buffers, counts)), ("w", pack_work(parts))]
    groups = list(_agent_parts(tagged))
    assert len(groups) == KEY_PARTS
    seen = []
    for i, (pres, segs, sess) in enumerate(groups):
        assert set(pres) == set(segs) == set(sess) == {a for a in agents if part_of(a, 4) == i}
        seen += list(pres)
        for a in pres:
            assert pres[a] == events[a] and segs[a] == [[f"ch-{a}", a, "agent", 0, "connected", T0, T0 + 1000]]
            assert sess[a][0]["agent_id"] == a
    assert sorted(seen) == sorted(agents)
    # batches of another shape (one part) are taken with all the others at once
    tagged.append(("p", pack([presence("ready", 500, "a0", id_="late")])))
    ((pres, segs, _),) = _agent_parts(tagged)
    assert set(pres) == set(agents) and pres["a0"] == [*events["a0"], presence("ready", 500, "a0", id_="late")]

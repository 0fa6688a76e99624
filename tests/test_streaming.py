"""The streaming composites on TestStream (Beam's BundleBasedDirectRunner, the only local
runner with TestStream, state, timers and streaming), the ``vccflow stream`` and
``vccflow publish`` commands, and the Dataflow job graph built offline with ``--dry_run``.

Timers are driven by the TestStream watermark alone: the stages get a clock stuck at the
epoch, so ``max(event time, arrival time) + delay`` is pure event time here."""

from __future__ import annotations

import gzip
import json
import random
import re
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pandas as pd
import pyarrow as pa
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.timestamp import Timestamp

from pipelines import batch, generate, publish, stream
from schemas import TABLES
from transforms.events import Event, parse_line
from transforms.streaming import (
    Received,
    SessionizeStream,
    StreamSettings,
    WriteRawArchive,
    WriteWindowedTables,
)

ROOT = Path(__file__).resolve().parents[1]
US = 1_000_000
T0 = 1_709_539_200 * US  # 2024-03-04T08:00:00Z
ROW_TABLES = (
    "channel_sessions",
    "channel_segments",
    "agent_presence",
    "agent_sessions",
    "interactions",
    "agent_intervals",
    "service_intervals",
)


def epoch_clock() -> float:
    """A clock stuck at the epoch: every timer falls back to pure event time."""
    return 0.0


def ms(us: int) -> Timestamp:
    """A TestStream watermark (whole milliseconds)."""
    return Timestamp(micros=us // 1000 * 1000)


def streaming_pipeline() -> beam.Pipeline:
    options = PipelineOptions([])
    options.view_as(StandardOptions).streaming = True
    return beam.Pipeline(runner=BundleBasedDirectRunner(), options=options)


def notification(
    kind: str,
    at_s: float,
    channel: str = "ch1",
    id_: str | None = None,
    interaction: str = "int1",
    agent: str | None = "1544",
) -> bytes:
    """A ``channel.<kind>.v1`` notification of an agent channel (of a customer channel when
    ``agent`` is None), ``at_s`` seconds after T0."""
    party = {"role": "agent", "agentId": agent, "userId": "u1"} if agent is not None else {"role": "customer"}
    stamp = pd.Timestamp(T0 + round(at_s * US), unit="us", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return json.dumps(
        {
            "specversion": "1.0",
            "type": f"channel.{kind}.v1",
            "id": id_ or f"{channel}-{kind}-{at_s}",
            "source": "/channel",
            "subject": channel,
            "time": stamp,
            "datacontenttype": "application/json",
            "data": {
                "timestamp": stamp,
                "channel": {
                    "channelId": channel,
                    "interactionId": interaction,
                    "conversationId": "conv1",
                    "party": party,
                },
            },
        }
    ).encode()


def call(channel: str, start_s: float, ended: bool = True) -> list[bytes]:
    kinds = [("alerted", 0), ("connected", 5), ("held", 20), ("retrieved", 30), ("disconnected", 65)]
    kinds += [("wrapstarted", 65), ("ended", 95)] if ended else []
    return [notification(kind, start_s + dt, channel) for kind, dt in kinds]


def rows_of(out, table: str, fields: tuple[str, ...]):
    """``(table, row)`` elements of one table, projected on ``fields``, as tuples."""
    return out["rows"] | f"Rows{table}{len(fields)}" >> beam.FlatMap(
        lambda tr: [tuple(tr[1][f] for f in fields)] if tr[0] == table else []
    )


def event_dead_letters(out, fields: tuple[str, ...]):
    """Dead letters of notifications, projected on ``fields``: the interaction stage's late
    channels (origin ``channel:<id>``) left out."""

    def of_events(tr):
        table, row = tr
        return (
            [tuple(row[f] for f in fields)]
            if table == "dead_letter" and not row["origin"].startswith("channel:")
            else []
        )

    return out["rows"] | f"EventDeadLetters{len(fields)}" >> beam.FlatMap(of_events)


def read_table(root: Path, table: str) -> pd.DataFrame:
    """A table as a DataFrame sorted by every column (order-free comparisons)."""
    df = pd.read_parquet(root / table)
    df["event_date"] = df["event_date"].astype(str)
    for field in TABLES[table]:
        if field.type == pa.list_(pa.string()):
            df[field.name] = df[field.name].map(lambda a: ",".join(a))
    return df.sort_values(list(df.columns)).reset_index(drop=True)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """A small generated day: 3 agents (+1 without presence), 20 interactions, duplicates,
    dead letters, anomalies, channels cut off at the end of the data."""
    folder = tmp_path_factory.mktemp("generated")
    assert generate.run(["--output", str(folder), "--agents", "3", "--interactions", "30", "--seed", "3"]) == 0
    return folder


def run_batch(paths: list[str], out: Path) -> None:
    """The batch job's graph (no validation), in-process."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    with beam.Pipeline(runner=FnApiRunner()) as p:
        batch.build_pipeline(p, paths, str(out), shards=4, max_bytes=1 << 20)


def test_stream_tables_equal_the_batch_job_and_the_archive_recomputes_them(generated, tmp_path):
    """Acceptance 4 and 6: the same events (duplicates and disorder within the grace) give the
    batch job's rows, row for row, as windowed Parquet; the raw archive recomputes them."""
    paths = sorted(str(p) for p in generated.glob("notifications-*.jsonl"))
    lines = [line for path in paths for line in Path(path).read_bytes().split(b"\n") if line.strip()]
    # Arrival: up to two minutes after event time, in arrival order; the watermark follows
    # arrival (as Pub/Sub's does), so the grace, fifteen minutes, absorbs the disorder and the
    # generator's duplicates (up to ten minutes late).
    rng = random.Random(5)
    arrivals, last = [], T0
    for n, line in enumerate(lines):
        parsed = parse_line(line, "x")
        last = parsed.ts if isinstance(parsed, Event) else last
        arrivals.append((last + rng.randint(0, 120 * US), n, line))
    arrivals.sort()
    seen: dict[str, int] = {}
    overtaken = 0  # channel events arriving after a later event of their channel
    for _, _, line in arrivals:
        parsed = parse_line(line, "x")
        if isinstance(parsed, Event):
            overtaken += parsed.ts < seen.get(parsed.key, parsed.ts)
            seen[parsed.key] = max(parsed.ts, seen.get(parsed.key, parsed.ts))
    assert overtaken > 10
    events = EventStream()
    for n in range(0, len(arrivals), 20):  # arrivals in chunks of 20, the watermark after each
        chunk = arrivals[n : n + 20]
        events = events.add_elements([line for _, _, line in chunk]).advance_watermark_to(ms(chunk[-1][0]))
    # past the channels' expiry (4 h of silence: the cut-off ones), step by step so the
    # interactions they close are emitted before the service intervals' backstop (a day)
    for hours in (5, 6, 7):
        events = events.advance_watermark_to(ms(arrivals[-1][0] + hours * 3600 * US))
    events = events.advance_watermark_to(ms(arrivals[-1][0] + 3 * 86400 * US)).advance_watermark_to_infinity()

    live = tmp_path / "live"
    settings = StreamSettings(grace_seconds=900, expire_after_seconds=4 * 3600, dedup_horizon_seconds=86400)
    with streaming_pipeline() as p:
        out = p | events | SessionizeStream(settings, clock=epoch_clock)
        out["rows"] | "WriteTables" >> WriteWindowedTables(str(live), 60, "test")
        out["archive"] | "WriteArchive" >> WriteRawArchive(str(live), 60, "test")

    reference = tmp_path / "batch"
    run_batch(paths, reference)
    for table in ROW_TABLES:
        pd.testing.assert_frame_equal(read_table(live, table), read_table(reference, table), obj=table)
    assert read_table(live, "channel_sessions")["duplicate_count"].sum() > 0
    streamed_dead = Counter(pd.read_parquet(live / "dead_letter")["error_code"])
    assert streamed_dead == Counter(pd.read_parquet(reference / "dead_letter")["error_code"])
    assert "late" not in streamed_dead

    files = sorted(p.relative_to(live).as_posix() for p in live.rglob("*") if p.is_file())
    assert not [f for f in files if "/." in f or f.startswith(".")], "a temporary file is visible"
    name = re.compile(r"([a-z_]+)/event_date=\d{4}-\d{2}-\d{2}/part-\d{8}T\d{6}Z-test-0\.(parquet|jsonl\.gz)")
    matches = [name.fullmatch(f) for f in files]
    assert all(matches), files
    kinds = {(m.group(1), m.group(2)) for m in matches}
    assert kinds == {
        ("raw", "jsonl.gz"),
        *((table, "parquet") for table in (*ROW_TABLES, "dead_letter")),
    }

    archived = sum(len(gzip.decompress(p.read_bytes()).splitlines()) for p in (live / "raw").rglob("*.jsonl.gz"))
    truth = json.loads((generated / "truth.json").read_text())
    assert archived == truth["counts"]["valid"] + truth["counts"]["duplicates"]
    recomputed = tmp_path / "recomputed"
    run_batch(sorted(str(p) for p in (live / "raw").rglob("*.jsonl.gz")), recomputed)
    for table in ROW_TABLES:
        pd.testing.assert_frame_equal(read_table(recomputed, table), read_table(reference, table), obj=table)


def test_an_event_after_its_channel_was_final_is_a_late_dead_letter():
    events = call("chA", 0)
    late = notification("held", 40, "chA", id_="late-1")
    message = PubsubMessage(notification("resumed", 50, "chA", id_="late-2"), {"event_id": "late-2"}, message_id="m42")
    stream_ = (
        EventStream()
        .add_elements(events)
        .advance_watermark_to(ms(T0 + 95 * US + 61 * US))  # past ended + grace
        .add_elements([late, message, events[1]])  # two late events and a duplicate
        .advance_watermark_to(ms(T0 + 10 * 86400 * US))
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as p:
        out = p | stream_ | SessionizeStream(StreamSettings(grace_seconds=60), clock=epoch_clock)
        sessions = rows_of(out, "channel_sessions", ("channel_id", "event_count", "is_complete", "hold_ms"))
        assert_that(sessions, equal_to([("chA", 7, True, 10_000)]), label="one final row")
        dead = rows_of(out, "dead_letter", ("error_code", "origin", "event_id", "event_type", "raw"))
        expected = [
            ("late", "stream", "late-1", "channel.held.v1", late.decode()),
            ("late", "pubsub:m42", "late-2", "channel.resumed.v1", message.data.decode()),
        ]
        assert_that(dead, equal_to(expected), label="late dead letters")


def test_an_inactive_channel_expires_incomplete_and_its_state_is_cleared():
    expire, horizon = 3600, 86400
    first = call("chB", 0, ended=False)[:2]  # alerted, connected: never ends
    again = notification("held", 100, "chB", id_="after-expiry")
    much_later = notification("held", expire + horizon + 500, "chB", id_="after-horizon")
    stream_ = (
        EventStream()
        .add_elements(first)
        .advance_watermark_to(ms(T0 + (5 + expire + 1) * US))  # inactivity expiry
        .add_elements([again])  # state cleared, marker kept: late
        .advance_watermark_to(ms(T0 + (5 + expire + horizon + 1) * US))  # the marker's horizon is over
        .add_elements([much_later])  # a fresh channel fragment
        .advance_watermark_to(ms(T0 + (expire + horizon + 500 + expire + 1) * US))
        .advance_watermark_to_infinity()
    )
    settings = StreamSettings(grace_seconds=60, expire_after_seconds=expire, dedup_horizon_seconds=horizon)
    with streaming_pipeline() as p:
        out = p | stream_ | SessionizeStream(settings, clock=epoch_clock)
        fields = ("channel_id", "event_count", "is_complete", "open_state", "alert_ms")
        expected = [("chB", 2, False, "connected", 5000), ("chB", 1, False, None, 0)]
        assert_that(rows_of(out, "channel_sessions", fields), equal_to(expected), label="expired rows")
        # (the fragment's interaction may be final still: the interaction stage's dead letters are left out)
        late = event_dead_letters(out, ("error_code", "event_id"))
        assert_that(late, equal_to([("late", "after-expiry")]), label="late")


def test_duplicates_are_dropped_within_the_horizon_even_after_emission():
    horizon = 7200
    events = call("chC", 0)
    stream_ = (
        EventStream()
        .add_elements(events + [events[2]])  # a duplicate before emission: counted in the row
        .advance_watermark_to(ms(T0 + (95 + 61) * US))  # emitted
        .add_elements([events[3]])  # a duplicate after emission, within the horizon: dropped
        .advance_watermark_to(ms(T0 + (95 + 60 + horizon + 10) * US))  # the horizon is over
        .add_elements([events[4]])  # remembered no more: a new fragment, emitted at expiry
        .advance_watermark_to(ms(T0 + 10 * 86400 * US))
        .advance_watermark_to_infinity()
    )
    settings = StreamSettings(grace_seconds=60, expire_after_seconds=600, dedup_horizon_seconds=horizon)
    with streaming_pipeline() as p:
        out = p | stream_ | SessionizeStream(settings, clock=epoch_clock)
        fields = ("channel_id", "event_count", "duplicate_count", "is_complete")
        expected = [("chC", 7, 1, True), ("chC", 1, 0, False)]
        assert_that(rows_of(out, "channel_sessions", fields), equal_to(expected), label="rows")
        # (the fragment's interaction may be final still: the interaction stage's dead letters are left out)
        assert_that(event_dead_letters(out, ("error_code",)), equal_to([]), label="no dead letter")


def presence(kind: str, at_s: float) -> bytes:
    """An ``agent.presencechanged.v1`` notification of agent 1544, ``at_s`` seconds after T0."""
    stamp = pd.Timestamp(T0 + round(at_s * US), unit="us", tz="UTC").isoformat().replace("+00:00", "Z")
    return json.dumps(
        {
            "type": "agent.presencechanged.v1",
            "id": f"p-{kind}-{at_s}",
            "source": "/agent",
            "subject": "1544",
            "data": {
                "timestamp": stamp,
                "presence": {"presenceId": kind, "category": {"type": kind}},
                "user": {"agentId": "1544", "userId": "u1"},
            },
        }
    ).encode()


def test_a_logout_flushes_the_agent_once_its_channel_work_is_in():
    work = call("chD", 100)
    stream_ = (
        EventStream()
        .add_elements([presence("ready", 0), *work[:5]])
        .add_elements([presence("loggedOut", 180)])  # the call is still in wrap
        .advance_watermark_to(ms(T0 + 250 * US))  # logout + grace passed: the flush waits for chD
        .add_elements(work[5:])  # ended at 195
        .advance_watermark_to(ms(T0 + 400 * US))
        .add_elements([presence("away", 100)])  # before the emitted logout: late
        .advance_watermark_to(ms(T0 + 10 * 86400 * US))
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as p:
        out = p | stream_ | SessionizeStream(StreamSettings(grace_seconds=60), clock=epoch_clock)
        fields = ("agent_id", "duration_ms", "talk_ms", "hold_ms", "wrap_ms", "channels_handled", "is_inferred")
        expected = [("1544", 180_000, 50_000, 10_000, 15_000, 1, False), ("1544", 15_000, 0, 0, 15_000, 0, True)]
        assert_that(rows_of(out, "agent_sessions", fields), equal_to(expected), label="sessions")
        presence_rows = rows_of(out, "agent_presence", ("presence_type", "duration_ms"))
        assert_that(presence_rows, equal_to([("ready", 180_000), ("loggedOut", None)]), label="presence")
        assert_that(rows_of(out, "dead_letter", ("error_code",)), equal_to([("late",)]), label="late")
        # the logout's interval is held after the flush, then released grace after its end
        fields = ("interval_start", "logged_in_ms", "ready_ms", "other_presence_ms", "busy_ms", "idle_ms", "handled")
        expected = [(T0, 195_000, 180_000, 15_000, 90_000, 100_000, 1)]
        assert_that(rows_of(out, "agent_intervals", fields), equal_to(expected), label="intervals")


def test_agent_intervals_held_after_a_logout_take_a_login_in_the_same_interval_like_batch(tmp_path):
    """Logout at 08:03 (flushed at 08:04 once the call is in), login at 08:10 before the
    08:00 interval's release, logout at 08:20: one row per interval, equal to batch's."""
    lines = [presence("ready", 0), *call("chE", 100), presence("loggedOut", 180)]
    later = [presence("ready", 600), *call("chF", 700), presence("loggedOut", 1200)]
    stream_ = (
        EventStream()
        .add_elements(lines)
        .advance_watermark_to(ms(T0 + 400 * US))  # flushed: 08:00 held
        .add_elements(later[:3])
        .advance_watermark_to(ms(T0 + 1000 * US))  # the release (08:16) finds the login: still held
        .add_elements(later[3:])
        .advance_watermark_to(ms(T0 + 10 * 86400 * US))
        .advance_watermark_to_infinity()
    )
    live = tmp_path / "live"
    with streaming_pipeline() as p:
        out = p | stream_ | SessionizeStream(StreamSettings(grace_seconds=60), clock=epoch_clock)
        out["rows"] | "WriteTables" >> WriteWindowedTables(str(live), 60, "test", validate=False)
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines + later) + b"\n")
    run_batch([str(tmp_path / "in.jsonl")], tmp_path / "batch")
    streamed = read_table(live, "agent_intervals")
    pd.testing.assert_frame_equal(streamed, read_table(tmp_path / "batch", "agent_intervals"))
    assert list(streamed["logged_in_ms"]) == [195_000 + 300_000, 300_000]


def customer_leg(channel: str, interaction: str | None, start: float, hangup: float | None) -> list[bytes]:
    """An inbound customer channel, connected at ``start`` until ``hangup`` (None: never ends)."""
    kinds = [("alerted", start), ("connected", start)]
    kinds += [("disconnected", hangup), ("ended", hangup)] if hangup is not None else []
    return [notification(k, t, channel, interaction=interaction, agent=None) for k, t in kinds]


def agent_leg(channel: str, interaction: str, agent: str, *steps: tuple[str, float]) -> list[bytes]:
    return [notification(k, t, channel, interaction=interaction, agent=agent) for k, t in steps]


def answer(alert: float, connect: float, disconnect: float, end: float) -> list[tuple[str, float]]:
    return [("alerted", alert), ("connected", connect), ("disconnected", disconnect), ("wrapstarted", disconnect)] + [
        ("ended", end)
    ]


def core_interactions(lines: list[bytes]) -> list[dict]:
    """The batch cores' interactions rows of these notifications (channel core, then interaction core)."""
    from transforms.interaction import channel_summary, interaction_key, interaction_row
    from transforms.timeline import sessionize_channel

    by_channel: dict[str, list[Event]] = {}
    for line in lines:
        ev = parse_line(line, "x")
        by_channel.setdefault(ev.key, []).append(ev)
    by_interaction: dict[str, list[tuple]] = {}
    for events in by_channel.values():
        summary = channel_summary(sessionize_channel(events))
        by_interaction.setdefault(interaction_key(summary), []).append(summary)
    return [interaction_row(summaries) for summaries in by_interaction.values()]


def test_stream_interactions_are_the_cores_rows_despite_disorder_duplicates_and_long_wraps():
    """An interaction waits for every channel announced to it: the second agent's long wrap
    (ending 10 minutes after the caller hung up, far beyond the grace) is in its one row."""
    lines = [
        *customer_leg("cA", "iA", 0, 300),
        *agent_leg("agA1", "iA", "a1", *answer(5, 10, 100, 130)),
        *agent_leg("agA2", "iA", "a2", *answer(99, 105, 300, 900)),
        *customer_leg("cB", "iB", 20, 50),
        *agent_leg("agB", "iB", "a3", ("alerted", 40), ("connectionfailed", 50), ("ended", 50)),
        *agent_leg("agC", "iC", "a1", *answer(1000, 1001, 1030, 1040)),
        *agent_leg("agC2", "iC", "a2", ("alerted", 1002), ("connected", 1006), ("disconnected", 1030), ("ended", 1031)),
        *customer_leg("cD", "iD", 0, None),
        *agent_leg("agD", "iD", "a4", ("alerted", 10), ("connected", 20)),
        *customer_leg("cE", None, 0, 10),
    ]
    rng = random.Random(7)
    arrivals = sorted(
        (parse_line(line, "x").ts + rng.randint(0, 30 * US), n, line)
        for n, line in enumerate(lines + rng.sample(lines, 8))  # 8 duplicates
    )
    events = EventStream()
    for arrival, _, line in arrivals:
        events = events.add_elements([line]).advance_watermark_to(ms(arrival))
    events = events.advance_watermark_to(ms(T0 + 10 * 86400 * US)).advance_watermark_to_infinity()
    expected = core_interactions(lines)
    by_id = {row["interaction_id"]: row for row in expected}
    assert (by_id["iA"]["blind_transfers"], by_id["iA"]["ended_at"]) == (1, T0 + 900 * US)
    assert by_id["iB"]["outcome"] == "abandoned_while_alerting" and by_id["iC"]["direction"] == "internal"
    assert (by_id["iD"]["is_complete"], by_id["iD"]["outcome"]) == (False, "answered")
    assert by_id["cE"]["inference"] == ["direction", "interaction_id_missing"]

    settings = StreamSettings(grace_seconds=60, expire_after_seconds=3600, dedup_horizon_seconds=86400)
    with streaming_pipeline() as p:
        out = p | events | SessionizeStream(settings, clock=epoch_clock)
        columns = tuple(TABLES["interactions"].names)
        rows = rows_of(out, "interactions", columns)
        assert_that(rows, equal_to([tuple(r[c] for c in columns) for r in expected]), label="interactions")
        assert_that(rows_of(out, "dead_letter", ("error_code",)), equal_to([]), label="no dead letter")


def test_a_channel_emitted_after_its_interaction_was_final_is_a_late_dead_letter():
    first = [*customer_leg("cL", "iL", 0, 60), *agent_leg("agL", "iL", "a1", *answer(5, 10, 60, 90))]
    callback = agent_leg("agL2", "iL", "a2", *answer(300, 302, 360, 400))
    stream_ = (
        EventStream()
        .add_elements(first)
        .advance_watermark_to(ms(T0 + (90 + 60 + 60 + 1) * US))  # the channels, then the interaction, final
        .add_elements(callback)
        .advance_watermark_to(ms(T0 + (400 + 60 + 1) * US))  # its channel emitted, within the marker's horizon
        .advance_watermark_to(ms(T0 + 10 * 86400 * US))
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as p:
        out = p | stream_ | SessionizeStream(StreamSettings(grace_seconds=60), clock=epoch_clock)
        fields = ("interaction_id", "agent_channels", "agent_path", "is_complete")
        assert_that(rows_of(out, "interactions", fields), equal_to([("iL", 1, ["a1"], True)]), label="one row")
        dead = rows_of(out, "dead_letter", ("error_code", "origin", "event_type", "error_detail", "raw"))
        raw = rows_of(out, "dead_letter", ("raw",)) | beam.Map(lambda r: json.loads(r[0]))
        assert_that(
            dead | beam.Map(lambda d: d[:3] + (d[3].startswith("interaction iL was already final; its agent"),)),
            equal_to([("late", "channel:agL2", None, True)]),
            label="late channel",
        )
        assert_that(
            raw | beam.Map(lambda r: (r["channel_id"], r["interaction_id"], r["ended_at"], r["handle_ms"])),
            equal_to([("agL2", "iL", "2024-03-04T08:06:40.000000Z", 98_000)]),
            label="its session row",
        )
        assert_that(rows_of(out, "channel_sessions", ("channel_id",)), equal_to([("cL",), ("agL",), ("agL2",)]))


def dry_run_args(*extra: str) -> list[str]:
    return [
        "--subscription",
        "projects/vccflow-dry-run/subscriptions/vcc",
        "--output",
        "gs://vccflow-dry-run/live",
        *extra,
    ]


def test_dataflow_dry_run_builds_a_streaming_job_with_stable_steps():
    """Acceptance 8: the Dataflow job is built offline (``--dry_run``); streaming, Streaming
    Engine, the documented step names and ``id_label`` on the Pub/Sub read."""
    from apache_beam.portability.api import beam_runner_api_pb2
    from google.cloud import dataflow

    dataflow_args = [
        "--runner=DataflowRunner",
        "--project=vccflow-dry-run",
        "--region=europe-west1",
        "--temp_location=gs://vccflow-dry-run/tmp",
        "--enable_streaming_engine",
        "--dry_run=True",
    ]
    known, beam_args = stream.build_parser().parse_known_args(
        dry_run_args("--id-attribute", "event_id", *dataflow_args)
    )
    options = stream.pipeline_options(beam_args)
    p = beam.Pipeline(options=options)
    stream.build_pipeline(p, known, "dryrun")
    job = p.run().job
    assert job.proto.type == dataflow.JobType.JOB_TYPE_STREAMING
    assert options.view_as(GoogleCloudOptions).enable_streaming_engine
    steps = {t.unique_name: t for t in job.proto_pipeline.components.transforms.values()}
    assert {
        "ReadPubSub",
        "Sessionize/Parse/ParseMessage",
        "Sessionize/Channels/SessionizeChannel",
        "Sessionize/Agents/SessionizeAgent",
        "Sessionize/Interactions/SessionizeInteraction",
        "Sessionize/Service/ServiceInterval",
        "WriteTables/GroupByPartition",
        "WriteTables/WriteParquet",
        "WriteArchive/WriteJsonl",
    } <= steps.keys()
    read = beam_runner_api_pb2.PubSubReadPayload.FromString(steps["ReadPubSub/Read"].spec.payload)
    assert (read.subscription, read.id_attribute, read.with_attributes) == (
        "projects/vccflow-dry-run/subscriptions/vcc",
        "event_id",
        True,
    )


def test_the_local_runner_is_the_bundle_based_direct_runner_without_id_label():
    known, beam_args = stream.build_parser().parse_known_args(dry_run_args("--id-attribute", "event_id"))
    for args in (beam_args, ["--runner", "DirectRunner"]):
        options = stream.pipeline_options(args)
        assert options.view_as(StandardOptions).runner == "BundleBasedDirectRunner"
        assert options.view_as(StandardOptions).streaming
    from apache_beam.portability.api import beam_runner_api_pb2

    p = beam.Pipeline(options=stream.pipeline_options(beam_args))
    stream.build_pipeline(p, known, "local")
    [read] = [t for t in p.to_runner_api().components.transforms.values() if t.unique_name == "ReadPubSub/Read"]
    assert beam_runner_api_pb2.PubSubReadPayload.FromString(read.spec.payload).id_attribute == ""


def test_stream_command_refuses_bad_options(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        stream.run(["--topic", "projects/p/topics/t", "--subscription", "projects/p/subscriptions/s", "--output", "x"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        stream.run(["--topic", "projects/p/topics/t", "--output", "x", "--grace-seconds", "0"])
    (tmp_path / "notes.txt").write_text("mine")
    from pipelines.outputs import OutputError

    with pytest.raises(OutputError):
        stream.run(["--topic", "projects/p/topics/t", "--output", str(tmp_path)])


def test_flex_template_metadata_matches_the_stream_options():
    metadata = json.loads((ROOT / "metadata.json").read_text())
    options = {s for action in stream.build_parser()._actions for s in action.option_strings}
    names = [param["name"] for param in metadata["parameters"]]
    assert names and all(f"--{name}" in options for name in names)
    assert {"subscription", "output"} <= set(names)


def test_rebase_shifts_event_and_notification_time_by_whole_seconds_keeping_digits():
    raw = notification("held", 0.25, "chR")
    obj = json.loads(raw)
    obj["time"] = "2024-03-04T08:00:00.7654321Z"
    raw = json.dumps(obj).encode()
    shifted = json.loads(publish.rebase(raw, 86400 * US))
    assert shifted["data"]["timestamp"] == "2024-03-05T08:00:00.250Z"
    assert shifted["time"] == "2024-03-05T08:00:00.7654321Z"
    assert {k: v for k, v in shifted.items() if k not in ("time", "data")} == {
        k: v for k, v in obj.items() if k not in ("time", "data")
    }
    assert publish.rebase(b"{not json", 86400 * US) == b"{not json"
    assert publish.attributes(raw) == {"event_id": "chR-held-0.25"}


def test_rebase_offset_moves_the_newest_event_to_now(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([*call("chN", 0), b"garbage", b""]))
    now = T0 + 1000 * US + 123_456
    offset = publish.rebase_offset([str(path)], now)
    assert offset % US == 0
    assert T0 + 95 * US + offset <= now < T0 + 95 * US + offset + US
    assert [len(r) > 0 for r in publish.read_records([str(path)])] == [True] * 8


def test_a_file_failing_its_suite_is_quarantined_with_its_verdict(tmp_path):
    """Issue 4, streaming: each finalized file is validated; a failing one goes to
    ``_quarantine/`` with its verdict next to it, never into the table."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from transforms.timeline import sessionize_channel

    def call(channel: str) -> list[Event]:
        base = {"source": "/channel", "interaction_id": "i", "party_role": "agent", "agent_id": "7"}
        steps = [("alerted", 0), ("connected", 5), ("held", 20), ("retrieved", 30), ("disconnected", 60)]
        steps += [("wrapstarted", 60), ("ended", 90)]
        return [
            Event(id=f"{channel}{i}", type=f"channel.{k}", ts=T0 + s * US, key=channel, **base)
            for i, (k, s) in enumerate(steps)
        ]

    good = sessionize_channel(call("good")).session
    bad = {**sessionize_channel(call("bad")).session, "channel_id": "bad", "hold_ms": -5}
    with beam.Pipeline(runner=FnApiRunner()) as p:
        (
            p
            | "Good" >> beam.Create([("channel_sessions", good)])
            | "W1" >> WriteWindowedTables(str(tmp_path / "ok"), 60, "t")
        )
        (
            p
            | "Bad" >> beam.Create([("channel_sessions", bad)])
            | "W2" >> WriteWindowedTables(str(tmp_path / "q"), 60, "t")
        )
    assert list(pd.read_parquet(tmp_path / "ok" / "channel_sessions")["channel_id"]) == ["good"]
    assert not (tmp_path / "ok" / "_quarantine").exists()
    assert not (tmp_path / "q" / "channel_sessions").exists()
    files = sorted(p for p in (tmp_path / "q" / "_quarantine" / "channel_sessions").rglob("*") if p.is_file())
    assert [p.name.split(".", 1)[1] for p in files] == ["parquet", "verdict.json"]
    assert files[0].parent.name == "event_date=2024-03-04"
    verdict = json.loads(files[1].read_text())
    assert verdict["success"] is False
    assert any(f["columns"] == ["hold_ms"] for f in verdict["failures"])
    assert list(pd.read_parquet(files[0])["hold_ms"]) == [-5]


def test_a_service_interval_waits_for_every_channel_and_interaction_announced_in_it():
    """One jump of the watermark makes every timer due at once (the local runner holds no
    watermark for timers): each interval still waits for the channels that ended in it and
    the interaction with events in it (``int1``, final only when ``chU`` expires four hours
    later), then emits its row once. The interaction has no customer channel: internal, so
    chU connecting while chT was is no consult."""
    events = call("chS", 0) + call("chT", 850) + call("chU", 860, ended=False)  # chT ends 08:15:45
    jump = ms(T0 + 10 * 86400 * US)
    stream_ = EventStream().add_elements(events).advance_watermark_to(jump).advance_watermark_to_infinity()
    settings = StreamSettings(grace_seconds=60, dedup_horizon_seconds=30 * 86400)  # no backstop in the jump
    with streaming_pipeline() as p:
        out = p | stream_ | SessionizeStream(settings, clock=epoch_clock)
        fields = ("interval_start", "interval_end", "handled", "handle_ms_of_handled", "inbound", "consults")
        expected = [(T0, T0 + 900 * US, 1, 90_000, 0, 0), (T0 + 900 * US, T0 + 1800 * US, 1, 90_000, 0, 0)]
        assert_that(rows_of(out, "service_intervals", fields), equal_to(expected), label="service")
        interactions = rows_of(out, "interactions", ("interaction_id", "direction", "is_complete"))
        assert_that(interactions, equal_to([("int1", "internal", False)]), label="interactions")


def test_a_late_event_announced_to_a_service_interval_is_settled_by_its_dead_letter():
    """A ``held`` of 08:16:40 arriving after its channel was final (it ended 08:01:35) is
    announced to the 08:15 interval (parse cannot know) and dead-lettered by the channel
    stage: its dead letter settles that announcement, so no interval waits for the dedup
    horizon for it."""
    from transforms.streaming import Done, Pending, announce_service, service_parts

    late = notification("held", 1000, "chA", id_="late-1")
    stream_ = (
        EventStream()
        .add_elements(call("chA", 0))
        .advance_watermark_to(ms(T0 + 300 * US))  # chA final (ended 08:01:35 + 60 s), int1 too
        .add_elements([late])
        .advance_watermark_to(ms(T0 + 10 * 86400 * US))
        .advance_watermark_to_infinity()
    )
    step = 15 * 60_000
    announced = list(announce_service(("chA", Received(parse_line(late, "stream"), late, "stream", 0)), step))
    assert announced == [(T0 + 900 * US, Pending("interaction", "int1"))]

    def settles_the_announcement(dead):
        (row,) = [row for table, row in dead if row["error_code"] == "late"]
        assert list(service_parts(("dead_letter", row), step, 5000)) == [(T0 + 900 * US, Done("interaction", "int1"))]

    with streaming_pipeline() as p:
        out = p | stream_ | SessionizeStream(StreamSettings(grace_seconds=60), clock=epoch_clock)
        fields = ("interval_start", "handled", "handle_ms_of_handled")
        assert_that(rows_of(out, "service_intervals", fields), equal_to([(T0, 1, 90_000)]), label="service")
        dead = out["rows"] | beam.Filter(lambda tr: tr[0] == "dead_letter")
        assert_that(dead, settles_the_announcement, label="settled")

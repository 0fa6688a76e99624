"""Streaming job: VCC notifications from Pub/Sub in; the batch job's Parquet tables, a raw
archive and dead letters out, a file per table and window within minutes of each channel
ending.

    vccflow stream --subscription projects/P/subscriptions/S --output out/live

Reads the messages (one notification each) from ``--subscription`` (or a temporary
subscription to ``--topic``), sessionizes channels and agents with event-time state and
timers around the batch job's pure cores (:mod:`transforms.streaming`), and writes
``channel_sessions``, ``channel_segments``, ``agent_presence``, ``agent_sessions`` and
``dead_letter`` as hive-partitioned Parquet under ``--output`` (local or ``gs://``), one
file per ``--window-seconds`` window, table and ``event_date``, plus every valid
notification under ``--output/raw/event_date=D/*.jsonl.gz`` for ``vccflow batch``.

Streaming mode is always on. Arguments it does not know are Beam pipeline options. Without
``--runner`` (or with ``--runner DirectRunner``) the job runs in-process on Beam's
``BundleBasedDirectRunner``: Beam 2.77's default ``DirectRunner`` first tries to download
and start the Prism runner, which cannot run ``ReadFromPubSub``, and only then falls back to
it. The local job runs until Ctrl-C (or SIGTERM); ``--runner DataflowRunner`` submits the
job and returns.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import uuid

import apache_beam as beam
from apache_beam.io.gcp.pubsub import ReadFromPubSub
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions

from pipelines.options import add_interval_options, positive_int
from pipelines.outputs import OutputError
from schemas import TABLES
from transforms.events import MAX_EVENT_BYTES
from transforms.streaming import (
    ARCHIVE_FOLDER,
    QUARANTINE_FOLDER,
    SessionizeStream,
    StreamSettings,
    WriteRawArchive,
    WriteWindowedTables,
)

log = logging.getLogger(__name__)

LOCAL_RUNNER = "BundleBasedDirectRunner"
_DIRECT_ALIASES = {"direct", "directrunner", "switchingdirectrunner", "bundlebaseddirect", "bundlebaseddirectrunner"}

EXAMPLES = """examples:
  vccflow stream --subscription projects/my-project/subscriptions/vcc --output out/live
  vccflow stream --topic projects/my-project/topics/vcc --output out/live --window-seconds 30 --grace-seconds 10
  vccflow stream --subscription projects/my-project/subscriptions/vcc --output gs://bucket/vcc-live \\
      --id-attribute event_id --runner DataflowRunner --project my-project --region europe-west1 \\
      --temp_location gs://bucket/tmp --setup_file ./setup.py --enable_streaming_engine
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vccflow stream",
        description="Sessionize VCC webhook notifications from Pub/Sub into Parquet tables, continuously.",
        epilog=EXAMPLES + "\nAny other --option is passed to Beam's PipelineOptions (streaming is always on).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--subscription",
        metavar="SUB",
        help="read this subscription, e.g. projects/my-project/subscriptions/vcc",
    )
    source.add_argument(
        "--topic",
        metavar="TOPIC",
        help="read this topic through a temporary subscription (sees only messages published after the start)",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="output root (local or gs://), e.g. out/live")
    parser.add_argument(
        "--window-seconds",
        "--window_seconds",
        type=positive_int,
        default=60,
        metavar="N",
        help="one file per table, partition and N-second window of rows becoming final (default 60)",
    )
    parser.add_argument(
        "--grace-seconds",
        "--grace_seconds",
        type=positive_int,
        default=60,
        metavar="N",
        help="a channel is final N seconds of event time after its `ended`; later events are dead "
        "letters `late` (default 60)",
    )
    parser.add_argument(
        "--expire-after-seconds",
        "--expire_after_seconds",
        type=positive_int,
        default=4 * 3600,
        metavar="N",
        help="a channel or agent without activity for N seconds is emitted as it is (incomplete) "
        "and its state cleared (default 14400)",
    )
    parser.add_argument(
        "--dedup-horizon-seconds",
        "--dedup_horizon_seconds",
        type=positive_int,
        default=86400,
        metavar="N",
        help="after emission, notification ids are remembered N seconds (duplicates dropped, "
        "other events `late`); VCC retries for a day (default 86400)",
    )
    parser.add_argument(
        "--id-attribute",
        "--id_attribute",
        metavar="ATTR",
        help="message attribute holding the notification id; Dataflow deduplicates redeliveries "
        "on it (id_label; ignored by the local runner), e.g. event_id as set by vccflow publish",
    )
    parser.add_argument(
        "--max-event-bytes",
        "--max_event_bytes",
        type=positive_int,
        default=MAX_EVENT_BYTES,
        metavar="N",
        help=f"messages larger than this become 'oversized' dead letters (default {MAX_EVENT_BYTES})",
    )
    add_interval_options(parser, underscore_aliases=True)
    return parser


def settings_of(known: argparse.Namespace) -> StreamSettings:
    return StreamSettings(
        grace_seconds=known.grace_seconds,
        expire_after_seconds=known.expire_after_seconds,
        dedup_horizon_seconds=known.dedup_horizon_seconds,
        max_event_bytes=known.max_event_bytes,
        interval_minutes=known.interval_minutes,
        short_abandon_seconds=known.short_abandon_seconds,
    )


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options with streaming on and the local runner unless another one is asked for."""
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    standard.streaming = True
    if standard.runner is None and options.view_as(GoogleCloudOptions).template_location:
        standard.runner = "DataflowRunner"  # a Flex Template launch
    elif standard.runner is None or str(standard.runner).lower() in _DIRECT_ALIASES:
        standard.runner = LOCAL_RUNNER
    return options


def is_local(options: PipelineOptions) -> bool:
    return options.view_as(StandardOptions).runner == LOCAL_RUNNER


def check_output_root(root: str) -> None:
    """Refuse a local root that is a file or holds anything but vccflow tables and the archive."""
    if "://" in root or not os.path.exists(root):
        return
    if not os.path.isdir(root):
        raise OutputError(f"output {root!r} is a file, not a folder")
    ours = set(TABLES) | {ARCHIVE_FOLDER, QUARANTINE_FOLDER, "_run_report.json", "_validation"}
    foreign = sorted(name for name in os.listdir(root) if name not in ours and not name.startswith("."))
    if foreign:
        raise OutputError(f"refusing to write into {root!r}: it holds files that are not vccflow output")


def build_pipeline(p: beam.Pipeline, known: argparse.Namespace, run_id: str) -> None:
    """The streaming graph: read, sessionize, write tables and archive under ``known.output``.
    Top-level labels (ReadPubSub, Sessionize, WriteTables, WriteArchive) are stable for
    Dataflow ``--update``."""
    dataflow = not is_local(p.options)
    read = ReadFromPubSub(
        topic=known.topic,
        subscription=known.subscription,
        id_label=known.id_attribute if dataflow else None,
        with_attributes=True,
    )
    root = known.output.rstrip("/")
    out = p | "ReadPubSub" >> read | "Sessionize" >> SessionizeStream(settings_of(known))
    out["rows"] | "WriteTables" >> WriteWindowedTables(root, known.window_seconds, run_id)
    out["archive"] | "WriteArchive" >> WriteRawArchive(root, known.window_seconds, run_id)


def _stop(signum, frame):  # pragma: no cover - exercised by the end-to-end test in a subprocess
    raise KeyboardInterrupt


def run(argv: list[str] | None = None) -> int:
    """Run the streaming job: locally until interrupted (exit 0), or submit it (exit 0)."""
    parser = build_parser()
    known, beam_args = parser.parse_known_args(argv)
    check_output_root(known.output.rstrip("/"))
    options = pipeline_options(beam_args)
    run_id = uuid.uuid4().hex[:8]
    p = beam.Pipeline(options=options)
    build_pipeline(p, known, run_id)
    result = p.run()
    if not is_local(options):
        print(f"vccflow stream: job submitted to {options.view_as(StandardOptions).runner} (run {run_id})")
        return 0
    source = known.subscription or known.topic
    print(
        f"vccflow stream: reading {source}, writing {known.output} every {known.window_seconds}s "
        f"(run {run_id}); Ctrl-C stops",
        flush=True,
    )
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    signal.signal(signal.SIGTERM, _stop)
    try:
        result.wait_until_finish()
    except KeyboardInterrupt:
        result.cancel()
        print("vccflow stream: stopped; rows not final yet were not written (the local runner has no drain)")
    return 0


def main() -> int:
    """``python -m pipelines.stream`` (and the Flex Template entry point)."""
    from pipelines.cli import setup_logging

    setup_logging(False)
    try:
        return run(sys.argv[1:])
    except OutputError as exc:
        print(f"vccflow stream: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Replay files of VCC notifications into a Pub/Sub topic: the local stand-in for the webhook
receiver that feeds ``vccflow stream`` in production.

    vccflow publish --topic projects/P/topics/T --input 'archive/*.jsonl' --rate 200 --rebase-time

Every non-blank line (NDJSON, ``.gz``, or one event / an array of events per ``.json`` file,
local or ``gs://``) becomes one message, in file order, unchanged unless ``--rebase-time``;
lines that are not valid notifications are published too (the job dead-letters them).
Valid notifications carry the attribute ``event_id``, the notification id (for
``vccflow stream --id-attribute event_id``: Dataflow then drops redelivered copies).
Messages go out in file order, a chunk at a time (each chunk acknowledged before the next),
so the stream sees them nearly in order; what disorder remains is absorbed by its grace.

``--rebase-time`` shifts ``data.timestamp`` and ``time`` of every valid notification by one
offset, a whole number of seconds, so that the newest event happened now: durations, order
and fractional digits are kept. The local runner's Pub/Sub watermark is the wall clock, so
a local demo needs events near now. Honours ``PUBSUB_EMULATOR_HOST``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.events import MAX_EVENT_BYTES, Event, parse_line, parse_timestamp, split_json_document
from transforms.io import expand_patterns, iter_lines

log = logging.getLogger(__name__)

ID_ATTRIBUTE = "event_id"
CHUNK = 100
_TOPIC_RE = re.compile(r"projects/[^/]+/topics/[^/]+")
_FRACTION_RE = re.compile(r"[T ]\d{2}:\d{2}:\d{2}[.,](\d+)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

EXAMPLES = """examples:
  vccflow publish --topic projects/my-project/topics/vcc --input 'samples/vcc-demo/notifications-*.jsonl'
  PUBSUB_EMULATOR_HOST=localhost:8085 vccflow publish --topic projects/demo/topics/vcc \\
      --input /tmp/vcc/notifications-00000.jsonl --rate 500 --rebase-time
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vccflow publish",
        description="Replay files of VCC webhook notifications into a Pub/Sub topic, one message per notification.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--topic", required=True, metavar="TOPIC", help="projects/PROJECT/topics/TOPIC")
    parser.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="GLOB",
        help="file glob of notifications (NDJSON, .gz, .json documents; local or gs://); repeatable",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=100.0,
        metavar="N",
        help="messages per second at most; 0 for no limit (default 100)",
    )
    parser.add_argument(
        "--rebase-time",
        action="store_true",
        help="shift every event time by one whole-second offset so the newest event is now",
    )
    return parser


def read_records(paths: list[str]) -> Iterator[bytes]:
    """Every non-blank record of the files, in order (the batch reader's file formats)."""
    for path in paths:
        with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
            if path.lower().removesuffix(".gz").endswith(".json"):
                content = f.read()
                items = split_json_document(content)
                if items is not None:
                    yield from items
                    continue
                f = io.BytesIO(content)
            for _, line, _ in iter_lines(f, MAX_EVENT_BYTES):
                if line.strip():
                    yield line


def format_time(us: int, fraction: str) -> str:
    """UTC ISO-8601 of ``us`` with the given fractional digits (the original's, kept as is)."""
    text = (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def _shift(value: str, offset_us: int) -> str:
    m = _FRACTION_RE.search(value)
    fraction = m.group(1) if m else ""
    return format_time(parse_timestamp(value) + offset_us, fraction)


def rebase(raw: bytes, offset_us: int) -> bytes:
    """A valid notification with ``data.timestamp`` and ``time`` shifted by ``offset_us``
    (a multiple of one second, so fractional digits are unchanged); anything else as is."""
    if not isinstance(parse_line(raw, "publish"), Event):
        return raw
    obj = orjson.loads(raw)
    data = obj["data"]
    data["timestamp"] = _shift(data["timestamp"], offset_us)
    with contextlib.suppress(KeyError, ValueError):  # no or unreadable notification time: left as is
        obj["time"] = _shift(obj["time"], offset_us)
    return orjson.dumps(obj)


def rebase_offset(paths: list[str], now_us: int) -> int:
    """The whole-second offset that moves the newest valid event time to at most ``now_us``."""
    times = (ev.ts for raw in read_records(paths) if isinstance(ev := parse_line(raw, "publish"), Event))
    newest = max(times, default=None)
    if newest is None:
        return 0
    return (now_us - newest) // 1_000_000 * 1_000_000


def attributes(raw: bytes) -> dict[str, str]:
    """``event_id`` of a valid notification, else no attribute."""
    ev = parse_line(raw, "publish")
    return {ID_ATTRIBUTE: ev.id} if isinstance(ev, Event) else {}


def _settle(futures: list) -> int:
    """Wait for every publish; returns how many failed (each logged)."""
    failed = 0
    for future in futures:
        try:
            future.result(timeout=60)
        except Exception as exc:  # every failed message is counted and reported
            failed += 1
            log.warning("publish failed: %s", exc)
    return failed


def run(argv: list[str] | None = None) -> int:
    """Publish; returns 0 when every message was accepted, 1 otherwise."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not _TOPIC_RE.fullmatch(args.topic):
        parser.error(f"--topic must look like projects/PROJECT/topics/TOPIC, got {args.topic!r}")
    if args.rate < 0:
        parser.error("--rate must be >= 0")
    from google.cloud import pubsub_v1

    paths = expand_patterns(args.input)
    offset = rebase_offset(paths, time.time_ns() // 1000) if args.rebase_time else 0
    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=100, max_latency=0.02)
    )
    started = time.monotonic()
    pending: list = []
    sent = failed = 0
    for n, raw in enumerate(read_records(paths)):
        if args.rate:
            ahead = started + n / args.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        data = rebase(raw, offset) if offset else raw
        pending.append(publisher.publish(args.topic, data, **attributes(data)))
        sent += 1
        if len(pending) >= CHUNK:
            failed += _settle(pending)
            pending = []
    failed += _settle(pending)
    elapsed = time.monotonic() - started
    shift = f", event times shifted by {offset // 1_000_000}s" if offset else ""
    print(
        f"vccflow publish: {sent - failed} of {sent} message(s) from {len(paths)} file(s) "
        f"to {args.topic} in {elapsed:.1f}s{shift}"
    )
    return 0 if not failed else 1


if __name__ == "__main__":
    import sys

    sys.exit(run())

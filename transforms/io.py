"""Reading archived notifications: file patterns in, parsed events (sharded in batches) out.

Files are opened through Beam's ``FileSystems`` (local paths, ``gs://`` and every other
registered scheme), ``.gz`` decompressed by extension. A file holds newline-delimited JSON;
a ``.json`` file may instead hold one event or a JSON array of events. Each file is read
by one worker, line by line with line numbers, so every dead letter names its origin.
"""

from __future__ import annotations

import io
import logging
import re
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.collector import paused_gc
from transforms.events import (
    MAX_EVENT_BYTES,
    PRESENCE_TYPE,
    DeadLetter,
    Event,
    add_to_batch,
    dead_letter,
    new_batch,
    packed_batch,
    parse_lines,
    split_json_document,
)

log = logging.getLogger(__name__)

#: Bytes read at a time. A block's lines are parsed into events all at once, then packed:
#: 1 MiB of lines (~2,000 events, ~2 MB of Python objects) stays in a core's cache between
#: the two passes, 8 MiB did not (reading the bench data: 7% less CPU, bench/README.md).
CHUNK_BYTES = 1 << 20
#: Events a reader buffers before it emits them as one batch per shard: big enough to make
#: Beam's per-element cost negligible, and a channel's events share a batch often enough
#: that its ids compress (80k: shuffled bytes -10% against 20k on the benchmark data).
BATCH_EVENTS = 80_000
#: A progress line is logged every this many lines of one file.
PROGRESS_LINES = 500_000

EVENTS = "events"
DEAD = "dead"
STATS = "stats"


_crc32 = zlib.crc32

_WILDCARD_RE = re.compile(r"[*?\[]")


class NoInputError(ValueError):
    """A glob matched no file."""


def is_hidden_match(pattern: str, path: str) -> bool:
    """Whether ``path``, matched by ``pattern``, is hidden: a file or folder below the
    pattern's literal folder whose name starts with ``.``, where the pattern's own parts
    there do not (the writers' temporary files: a half-written file is never read). A
    pattern without wildcards names its file on purpose."""
    wildcard = _WILDCARD_RE.search(pattern)
    if wildcard is None:
        return False
    prefix = pattern[: pattern.rfind("/", 0, wildcard.start()) + 1]
    if any(part.startswith(".") for part in pattern[len(prefix) :].split("/")):
        return False
    rest = path[len(prefix) :] if path.startswith(prefix) else path.rsplit("/", 1)[-1]
    return any(part.startswith(".") for part in rest.split("/"))


def expand_patterns(patterns: list[str]) -> list[str]:
    """Every file matching any pattern, sorted, de-duplicated, hidden files left out (see
    :func:`is_hidden_match`). Raises NoInputError for a pattern that matches nothing (an
    empty success would hide a typo)."""
    paths: set[str] = set()
    results = FileSystems.match(patterns)
    for pattern, result in zip(patterns, results, strict=True):
        found = [
            m.path for m in result.metadata_list if not m.path.endswith("/") and not is_hidden_match(pattern, m.path)
        ]
        if not found:
            raise NoInputError(f"no input file matches {pattern!r}")
        paths.update(found)
    return sorted(paths)


def total_size(paths: list[str]) -> int:
    """Bytes stored in ``paths`` (compressed size for ``.gz``), 0 for a path that vanished."""
    results = FileSystems.match(paths)
    return sum(m.size_in_bytes or 0 for r in results for m in r.metadata_list)


#: Notification NDJSON compresses about this well with gzip (generated data: 9-11x).
GZIP_RATIO = 10


def input_weight(paths: list[str]) -> int:
    """Uncompressed bytes of ``paths``, estimated: a ``.gz`` file counts ``GZIP_RATIO`` times
    its size on disk."""
    results = FileSystems.match(paths)
    return sum(
        (m.size_in_bytes or 0) * (GZIP_RATIO if m.path.endswith(".gz") else 1) for r in results for m in r.metadata_list
    )


def shard_of(key: str, shards: int) -> int:
    """Stable shard of an entity key (same on every worker and run)."""
    return zlib.crc32(key.encode("utf-8")) % shards


#: Parts of each batch of events (see :func:`part_of`): a shard of the bench data then holds
#: ~2,600 channel events per part, ~2.5 MB of Python objects once decoded (16 parts were
#: 5% slower in the channel stage, 1 part 12%; 64 no faster).
KEY_PARTS = 32


def shard_and_part(key: str, shards: int) -> tuple[int, int]:
    """``(shard_of(key, shards), part_of(key, shards))``, from one hash: the part is the rest
    of the same CRC-32 (the reader's loop computes it inline, once per event)."""
    rest, shard = divmod(zlib.crc32(key.encode("utf-8")), shards)
    return shard, rest % KEY_PARTS


def part_of(key: str, shards: int) -> int:
    """The part of its shard's batches an entity's events go to (stable, like :func:`shard_of`,
    and independent of it). The channel and agent stages decode and sessionize a shard one
    part of all its batches at a time: 1/:data:`KEY_PARTS` of the shard's events in memory at
    once, so they stay in a core's cache while it works on them (bench/README.md)."""
    return shard_and_part(key, shards)[1]


def iter_line_blocks(stream, max_bytes: int = MAX_EVENT_BYTES) -> Iterator[tuple[int, list[bytes], dict[int, int]]]:
    """The lines of a binary stream a chunk at a time: ``(first_line_no, lines, sizes)``.

    Lines are numbered from 1 and split on ``\\n``; a trailing ``\\r`` is dropped; the last
    line counts only if it is not empty. A line longer than ``max_bytes`` is cut to
    ``max_bytes + 1`` bytes, so memory stays bounded whatever the input; ``sizes`` maps the
    index (in ``lines``) of every line whose true length differs from its bytes to that length.
    """
    keep = max_bytes + 1
    head, head_size, head_cr = b"", 0, False  # a line begun in earlier chunks: kept bytes, true size, ends in \r
    line_no = 1
    while chunk := stream.read(CHUNK_BYTES):
        lines = chunk.split(b"\n")
        rest = lines.pop()
        if lines:
            whole: dict[int, tuple[int, bool]] = {}  # index -> (true size, true line ends in \r) of long/joined lines
            if head_size:
                first = lines[0]
                whole[0] = (head_size + len(first), first.endswith(b"\r") if first else head_cr)
                lines[0] = head + first[: keep - len(head)] if len(head) < keep else head
            if max(map(len, lines)) > keep:
                for i, line in enumerate(lines):
                    if len(line) > keep:
                        whole[i] = (len(line), line.endswith(b"\r"))
                        lines[i] = line[:keep]
            if b"\r" in chunk:
                for i, line in enumerate(lines):
                    if line.endswith(b"\r") and i not in whole:
                        lines[i] = line[:-1]
            sizes = {}
            for i, (size, cr) in whole.items():
                line, size = _drop_cr(lines[i], size, cr)
                lines[i] = line
                if size != len(line):
                    sizes[i] = size
            yield line_no, lines, sizes
            line_no += len(lines)
            head, head_size = rest[:keep], len(rest)
            head_cr = rest.endswith(b"\r")
        elif rest:
            head_size += len(rest)
            head_cr = rest.endswith(b"\r")
            if len(head) < keep:
                head += rest[: keep - len(head)]
    if head_size:
        line, size = _drop_cr(head, head_size, head_cr)
        yield line_no, [line], ({0: size} if size != len(line) else {})


def iter_lines(stream, max_bytes: int = MAX_EVENT_BYTES) -> Iterator[tuple[int, bytes, int]]:
    """Yield ``(line_no, line, size)`` for each line of a binary stream, as
    :func:`iter_line_blocks` splits and cuts them (``size``: the line's true length)."""
    for first, lines, sizes in iter_line_blocks(stream, max_bytes):
        for i, line in enumerate(lines):
            yield first + i, line, sizes.get(i, len(line))


def _drop_cr(line: bytes, size: int, cr: bool) -> tuple[bytes, int]:
    """Drop a line's trailing ``\\r`` (``cr``): from its size, and from the kept bytes only
    when the kept bytes are the whole line (a cut line ends before its ``\\r``)."""
    if not cr:
        return line, size
    return (line[:-1] if len(line) == size else line), size - 1


def _is_json_document(path: str) -> bool:
    name = path.lower().removesuffix(".gz")
    return name.endswith(".json")


def _now_us() -> int:
    return int(datetime.now(UTC).timestamp() * 1_000_000)


class ReadFileFn(beam.DoFn):
    """One file path in. Out: batches ``(shard, bytes)`` of packed events (see
    :func:`transforms.events.packed_batch`, main output) in :data:`KEY_PARTS` parts by
    :func:`part_of` of their key: channel events by channel shard (below ``shards``),
    presence events of agent shard ``s`` under ``shards + s``; one ``(path,
    ingested_at_us, [DeadLetter])`` per file with rejects (``dead``) and one statistics dict
    per file (``stats``)."""

    def __init__(self, shards: int, max_bytes: int = MAX_EVENT_BYTES) -> None:
        self.shards = shards
        self.max_bytes = max_bytes

    def _blocks(self, path: str) -> Iterator[tuple[str, int, list[bytes] | None, dict[int, int] | str]]:
        """``(origin_format, first, records, sizes)`` per block of records: lines (origin
        ``path:n``, see :func:`iter_line_blocks`) or the items of a JSON array (``path[n]``).
        A file that cannot be read to its end ends with ``(origin_format, n, None, reason)``."""
        where = 1
        try:
            with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
                if _is_json_document(path):
                    content = f.read()
                    items = split_json_document(content)
                    if items is not None:
                        yield "{}[{}]", 1, items, {}
                        return
                    f = io.BytesIO(content)
                for first, lines, sizes in iter_line_blocks(f, self.max_bytes):
                    yield "{}:{}", first, lines, sizes
                    where = first + len(lines)
        except (OSError, EOFError, zlib.error) as exc:
            yield "{}:{}", where, None, f"cannot read {path}: {type(exc).__name__}: {exc}"

    def process(self, path: str):
        with paused_gc():
            yield from self._read(path)

    def _read(self, path: str):
        started = time.monotonic()
        ingested = _now_us()
        shards, max_bytes = self.shards, self.max_bytes
        # the KEY_PARTS parts of a batch per channel shard, then per agent shard: each event is
        # encoded into its part as soon as it is parsed (it is freed while fresh in memory)
        parts = [[new_batch() for _ in range(KEY_PARTS)] for _ in range(2 * shards)]
        counts = [[0] * KEY_PARTS for _ in range(2 * shards)]
        dead: list[DeadLetter] = []
        lines = blank = buffered = 0
        next_report = PROGRESS_LINES
        for origin, first, records, sizes in self._blocks(path):
            if records is None:
                log.error("%s", sizes)
                dead.append(dead_letter("unreadable", sizes, b"", origin.format(path, first)))
                lines += 1
                continue
            lines += len(records)
            outs = parse_lines(records, max_bytes, sizes)
            rejects = 0
            for out in outs:
                if type(out) is Event:
                    rest, i = divmod(_crc32(out.key.encode("utf-8")), shards)  # shard_and_part, inlined
                    if out.type == PRESENCE_TYPE:
                        i += shards
                    j = rest % KEY_PARTS
                    add_to_batch(out, parts[i][j], -1)
                    counts[i][j] += 1
                else:
                    rejects += 1
            if rejects:  # blank lines and dead letters (rare): a second pass, for their line numbers
                for i, out in enumerate(outs):
                    if out is None:
                        blank += 1
                    elif type(out) is DeadLetter:
                        dead.append(out._replace(origin=origin.format(path, first + i)))
            buffered += len(outs) - rejects
            del outs
            if buffered >= BATCH_EVENTS:
                yield from self._flush(parts, counts)
                buffered = 0
            if lines >= next_report:
                next_report += PROGRESS_LINES
                elapsed = time.monotonic() - started
                log.info("reading %s: %d lines so far (%.0f lines/s)", path, lines, lines / max(elapsed, 1e-6))
        yield from self._flush(parts, counts)
        if dead:
            yield beam.pvalue.TaggedOutput(DEAD, (path, ingested, dead))
        elapsed = time.monotonic() - started
        log.info(
            "read %s: %d lines, %d dead letters in %.1fs (%.0f lines/s)",
            path,
            lines,
            len(dead),
            elapsed,
            lines / max(elapsed, 1e-6),
        )
        stats = Counter(f"dead.{d.error_code}" for d in dead)
        stats.update(files=1, lines=lines, blank=blank)
        yield beam.pvalue.TaggedOutput(STATS, dict(stats))

    @staticmethod
    def _flush(parts: list[list[bytearray]], counts: list[list[int]]):
        """Emit every non-empty batch (channel shards, then presence shards) and empty it."""
        for i, (buffers, numbers) in enumerate(zip(parts, counts, strict=True)):
            if any(numbers):
                yield i, packed_batch(buffers, numbers)
                numbers[:] = [0] * len(numbers)


class ReadNotifications(beam.PTransform):
    """File paths (already expanded, see :func:`expand_patterns`) in; a tuple of
    PCollections out: ``events``, batches ``(shard, bytes)`` of packed events (channel events
    under ``shard < shards``, presence events of agent shard ``s`` under ``shards + s``, as
    :class:`transforms.sessionize.SessionizeChannels` takes them), ``dead`` ``(path,
    ingested_at_us, [DeadLetter])`` and ``stats`` dicts."""

    def __init__(self, shards: int, max_bytes: int = MAX_EVENT_BYTES) -> None:
        super().__init__()
        self.shards = shards
        self.max_bytes = max_bytes

    def expand(self, paths):
        outs = (
            paths
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadAndParse"
            >> beam.ParDo(ReadFileFn(self.shards, self.max_bytes)).with_outputs(DEAD, STATS, main=EVENTS)
        )
        return outs

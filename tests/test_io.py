"""Reading notification files: line splitting, compression, JSON documents, globs."""

from __future__ import annotations

import gzip
import io

import apache_beam as beam
import orjson
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tests.test_events import HELD, PRESENCE, with_
from transforms import io as vio
from transforms.events import (
    PRESENCE_TYPE,
    Event,
    add_to_batch,
    batch_parts,
    decode_part,
    new_batch,
    pack,
    packed_batch,
    parse_line,
    unpack,
)
from transforms.io import (
    KEY_PARTS,
    NoInputError,
    ReadNotifications,
    expand_patterns,
    iter_lines,
    part_of,
    shard_and_part,
    shard_of,
)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
def test_iter_lines_any_chunking(monkeypatch, chunk):
    monkeypatch.setattr(vio, "CHUNK_BYTES", chunk)
    data = b"ab\r\n\nxxxxxxxxxx\nlast"
    assert list(iter_lines(io.BytesIO(data), max_bytes=4)) == [
        (1, b"ab", 2),
        (2, b"", 0),
        (3, b"xxxxx", 10),
        (4, b"last", 4),
    ]


def test_iter_lines_trailing_newline_adds_no_line():
    assert list(iter_lines(io.BytesIO(b"a\nb\n"))) == [(1, b"a", 1), (2, b"b", 1)]
    assert list(iter_lines(io.BytesIO(b""))) == []


def test_shard_is_stable():
    assert shard_of("740109c1-12d5-430f-9543-131fe5c4edcb", 16) == shard_of("740109c1-12d5-430f-9543-131fe5c4edcb", 16)
    assert {shard_of(f"c{i}", 8) for i in range(200)} == set(range(8))


def test_a_batch_filled_one_event_at_a_time_packs_as_pack_does_and_starts_over_empty():
    events = [parse_line(orjson.dumps(_held(i, f"ch{i % 3}")), "") for i in range(40)]
    events += [parse_line(orjson.dumps(PRESENCE), "")]
    assert all(type(e) is Event for e in events)
    buffer = new_batch()
    for ev in events[:25]:
        add_to_batch(ev, buffer, -1)
    first = packed_batch([buffer], [25])
    for ev in events[25:]:
        add_to_batch(ev, buffer, -1)
    second = packed_batch([buffer], [len(events) - 25])
    assert unpack(first) == unpack(pack(events[:25])) == events[:25]
    assert unpack(second) == events[25:]  # nothing of the first batch is left in the buffer


def test_a_batch_of_parts_gives_back_each_part_and_every_event():
    events = [parse_line(orjson.dumps(_held(i, f"ch{i % 5}")), "") for i in range(30)]
    buffers = [new_batch() for _ in range(4)]
    for ev in events:
        add_to_batch(ev, buffers[int(ev.key[2:]) % 4], -1)
    counts = [sum(int(ev.key[2:]) % 4 == j for ev in events) for j in range(4)]
    batch = packed_batch(buffers, counts)
    parts = [decode_part(part) for part in batch_parts(batch)]
    assert parts == [[ev for ev in events if int(ev.key[2:]) % 4 == j] for j in range(4)]
    assert unpack(batch) == [ev for part in parts for ev in part]
    assert all(len(b) == len(new_batch()) for b in buffers)  # emptied for the next batch
    empty = packed_batch(buffers, [0, 0, 0, 0])
    assert [decode_part(part) for part in batch_parts(empty)] == [[], [], [], []] and unpack(empty) == []


def test_part_of_is_stable_and_independent_of_the_shard():
    keys = [f"c{i}" for i in range(2000)]
    assert part_of(keys[0], 18) == part_of(keys[0], 18)
    assert {part_of(k, 18) for k in keys} == set(range(KEY_PARTS))
    in_one_shard = [k for k in keys if shard_of(k, 18) == 3]
    assert len({part_of(k, 18) for k in in_one_shard}) == KEY_PARTS  # a shard's keys spread over every part


def test_expand_patterns_sorted_and_missing_is_an_error(tmp_path):
    for name in ("b.jsonl", "a.jsonl", "c.txt"):
        (tmp_path / name).write_text("")
    got = expand_patterns([str(tmp_path / "*.jsonl"), str(tmp_path / "a.jsonl")])
    assert got == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    with pytest.raises(NoInputError, match="nope"):
        expand_patterns([str(tmp_path / "*.jsonl"), str(tmp_path / "nope*.jsonl")])


def test_expand_patterns_skips_hidden_files_and_folders(tmp_path):
    """Writers (``vccflow receive``, the stream job) write under a hidden name and rename:
    a glob, ``**`` included, never picks up a half-written file."""
    for name in ("d/a.jsonl", "d/.a.jsonl.tmp", "d/.b.jsonl", ".tmp/c.jsonl", "e.jsonl", ".e.jsonl"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert expand_patterns([str(tmp_path / "**" / "*.jsonl*")]) == [str(tmp_path / "d" / "a.jsonl")]
    assert expand_patterns([str(tmp_path / "**")]) == [str(tmp_path / "d" / "a.jsonl"), str(tmp_path / "e.jsonl")]
    assert expand_patterns([str(tmp_path / "*.jsonl")]) == [str(tmp_path / "e.jsonl")]
    # named on purpose: a literal path, or a pattern whose own part starts with "."
    assert expand_patterns([str(tmp_path / "d" / ".b.jsonl")]) == [str(tmp_path / "d" / ".b.jsonl")]
    assert expand_patterns([str(tmp_path / ".tmp" / "*.jsonl")]) == [str(tmp_path / ".tmp" / "c.jsonl")]
    assert expand_patterns([str(tmp_path / "d" / ".*")]) == [
        str(tmp_path / "d" / ".a.jsonl.tmp"),
        str(tmp_path / "d" / ".b.jsonl"),
    ]
    with pytest.raises(NoInputError):
        expand_patterns([str(tmp_path / "d" / "*.tmp")])


def _held(i: int, channel: str = "ch1") -> dict:
    ev = with_(HELD, "id", f"id{i}")
    ev = with_(ev, "subject", channel)
    return with_(ev, "data.channel.channelId", channel)


def test_read_notifications_plain_gzip_and_json_documents(tmp_path, pipeline):
    (tmp_path / "a.jsonl").write_bytes(orjson.dumps(_held(1)) + b"\n\n" + b"{broken\n" + orjson.dumps(PRESENCE) + b"\n")
    with gzip.open(tmp_path / "b.jsonl.gz", "wb") as f:
        f.write(orjson.dumps(_held(2, "ch2")) + b"\n" + b"[1]")
    (tmp_path / "c.json").write_bytes(orjson.dumps([_held(3), _held(4, "ch2"), {"no": "type"}]))
    (tmp_path / "d.json").write_bytes(orjson.dumps(_held(5, "canal-ñ")))  # a key whose UTF-8 is not ASCII
    paths = expand_patterns([str(tmp_path / "*")])
    with pipeline as p:
        out = p | beam.Create(paths) | ReadNotifications(shards=4)
        channel_ids = out.events | "Ids" >> beam.FlatMapTuple(
            lambda shard, evs: [(shard, e.key, e.id) for e in unpack(evs) if shard < 4]
        )
        assert_that(
            channel_ids,
            equal_to(
                [
                    (shard_of("ch1", 4), "ch1", "id1"),
                    (shard_of("ch2", 4), "ch2", "id2"),
                    (shard_of("ch1", 4), "ch1", "id3"),
                    (shard_of("ch2", 4), "ch2", "id4"),
                    (shard_of("canal-ñ", 4), "canal-ñ", "id5"),
                ]
            ),
            label="channel",
        )
        presence = out.events | "P" >> beam.FlatMapTuple(
            lambda shard, evs: [(shard, e.key, e.type) for e in unpack(evs) if shard >= 4]
        )
        assert_that(presence, equal_to([(4 + shard_of("1544", 4), "1544", PRESENCE_TYPE)]), label="presence")
        dead = out.dead | "D" >> beam.FlatMapTuple(lambda path, at, ds: [(d.error_code, d.origin) for d in ds])
        assert_that(
            dead,
            equal_to(
                [
                    ("invalid_json", f"{tmp_path}/a.jsonl:3"),
                    ("not_an_object", f"{tmp_path}/b.jsonl.gz:2"),
                    ("missing_field", f"{tmp_path}/c.json[3]"),
                ]
            ),
            label="dead",
        )
        totals = out.stats | beam.CombineGlobally(
            lambda ds: {k: sum(d.get(k, 0) for d in ds) for k in ("files", "lines", "blank")}
        )
        assert_that(totals, equal_to([{"files": 4, "lines": 10, "blank": 1}]), label="stats")


def test_oversized_line_dead_letter_keeps_true_size(tmp_path, pipeline):
    (tmp_path / "a.jsonl").write_bytes(b"{" + b" " * 5000 + b"}\n" + orjson.dumps(_held(1)) + b"\n")
    with pipeline as p:
        out = p | beam.Create([str(tmp_path / "a.jsonl")]) | ReadNotifications(shards=2, max_bytes=2000)
        dead = out.dead | beam.FlatMapTuple(
            lambda path, at, ds: [(d.error_code, d.raw_bytes, d.raw_truncated) for d in ds]
        )
        assert_that(dead, equal_to([("oversized", 5002, True)]))


def test_shard_and_part_is_both_from_one_hash():
    for key in ("ch1", "canal-ñ", "740109c1-12d5-430f-9543-131fe5c4edcb"):
        for shards in (1, 4, 18, 50):
            assert shard_and_part(key, shards) == (shard_of(key, shards), part_of(key, shards))

"""Parsing notifications into events or dead letters."""

from __future__ import annotations

import copy
import json

import orjson
import pytest

from transforms.events import (
    DeadLetter,
    Event,
    parse_line,
    parse_object,
    parse_timestamp,
    split_json_document,
    split_type,
)

HELD = {
    "specversion": "1.0",
    "type": "channel.held.v1",
    "id": "2VejGqWZPqHXHVNcfUPUO8IASAp",
    "source": "/channel",
    "subject": "740109c1-12d5-430f-9543-131fe5c4edcb",
    "time": "2022-08-30T14:34:36.6134321Z",
    "datacontenttype": "application/json",
    "data": {
        "timestamp": "2022-08-30T14:34:36.088Z",
        "channel": {
            "conversationId": "3e71f453-116a-3abc-7769-bc678ef6e080",
            "interactionId": "1371f451-116a-4abc-8869-bc678ef67070",
            "channelId": "740109c1-12d5-430f-9543-131fe5c4edcb",
            "party": {"role": "agent", "agentId": "1544", "userId": "ef71f453-556a-3abc-7769-bc678ef6e090"},
        },
    },
}
PRESENCE = {
    "specversion": "1.0",
    "type": "agent.presencechanged.v1",
    "id": "2VejGqWZPqHXHVNcfUPUO8IASAq",
    "source": "/agent",
    "subject": "1544",
    "time": "2023-09-20T09:49:06.6134321Z",
    "datacontenttype": "application/json",
    "data": {
        "timestamp": "2023-09-20T09:49:05.946Z",
        "presence": {
            "presenceId": "3bf05984-1957-4e56-9c2c-ce04fa9b3ffc",
            "category": {"type": "ready", "description": "Ready", "subcategory": "readyOutbound"},
            "description": "Ready (Outbound)",
        },
        "user": {"agentId": "1544", "userId": "e56a3bb6-1881-46cc-9e26-0191c7b1187f"},
    },
}


def line(obj) -> bytes:
    return orjson.dumps(obj)


def with_(obj: dict, path: str, value) -> dict:
    out = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node = out
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return out


def test_channel_event_from_the_docs():
    ev = parse_line(line(HELD), "f:1")
    assert isinstance(ev, Event)
    assert ev.type == "channel.held" and ev.source == "/channel" and ev.id == "2VejGqWZPqHXHVNcfUPUO8IASAp"
    assert ev.key == "740109c1-12d5-430f-9543-131fe5c4edcb"
    assert ev.ts == parse_timestamp("2022-08-30T14:34:36.088Z") == 1661870076088000
    assert (ev.party_role, ev.agent_id, ev.user_id) == ("agent", "1544", "ef71f453-556a-3abc-7769-bc678ef6e090")
    assert ev.interaction_id == "1371f451-116a-4abc-8869-bc678ef67070"
    assert ev.is_channel


def test_presence_event_from_the_docs():
    ev = parse_line(line(PRESENCE), "f:2")
    assert isinstance(ev, Event) and not ev.is_channel
    assert (ev.key, ev.agent_id, ev.presence_type, ev.presence_subcategory) == (
        "1544",
        "1544",
        "ready",
        "readyOutbound",
    )
    assert ev.presence_description == "Ready (Outbound)"
    assert ev.presence_id == "3bf05984-1957-4e56-9c2c-ce04fa9b3ffc"


@pytest.mark.parametrize("version", ["v0", "v1"])
def test_both_versions_accepted_and_compared_without_suffix(version):
    ev = parse_line(line(with_(HELD, "type", f"channel.held.{version}")), "f:1")
    assert ev.type == "channel.held"


def test_reason_on_ended_and_failed():
    ended = with_(with_(HELD, "type", "channel.ended.v1"), "data.reason", "released")
    assert parse_line(line(ended), "x").reason == "released"


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("2022-08-30T14:34:36.088Z", 1661870076088000),
        ("2022-08-30T14:34:36.6134321Z", 1661870076613432),
        ("2022-08-30T14:34:36Z", 1661870076000000),
        ("2022-08-30T14:34:36.1Z", 1661870076100000),
        ("2022-08-30T16:34:36.088+02:00", 1661870076088000),
        ("2022-08-30T10:04:36.088-0430", 1661870076088000),
    ],
)
def test_timestamps_any_precision_and_zone(text, micros):
    assert parse_timestamp(text) == micros


@pytest.mark.parametrize(
    "text", ["yesterday", "2022-13-01T00:00:00Z", "2022-08-30T14:34:36", 1661870076, None, "2022-02-30T00:00:00Z"]
)
def test_bad_timestamps(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_split_type():
    assert split_type("agent.presencechanged.v1") == ("agent.presencechanged", "v1")
    assert split_type("channel.held") == ("channel.held", None)
    assert split_type("channel.vip") == ("channel.vip", None)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"type": "channel.held.v1", "id": ', "invalid_json"),
        (b"\xff\xfe{}", "invalid_encoding"),
        (b"[1, 2]", "not_an_object"),
        (b'"just a string"', "not_an_object"),
        (line(with_(HELD, "id", KeyError)), "missing_field"),
        (line(with_(HELD, "source", "")), "missing_field"),
        (line(with_(HELD, "data.timestamp", KeyError)), "missing_field"),
        (line(with_(HELD, "data.channel", KeyError)), "missing_field"),
        (line(with_(with_(HELD, "data.channel.channelId", KeyError), "subject", KeyError)), "missing_field"),
        (line(with_(HELD, "data.timestamp", "yesterday")), "bad_timestamp"),
        (line(with_(HELD, "data.timestamp", "2024-13-45T99:00:00Z")), "bad_timestamp"),
        (line(with_(HELD, "data", "a string")), "invalid_field"),
        (line(with_(HELD, "id", {"nested": 1})), "invalid_field"),
        (line(with_(HELD, "data.channel.party", [1])), "invalid_field"),
        (line(with_(HELD, "type", "interaction.detailrecord.v0")), "unsupported_type"),
        (line(with_(HELD, "type", "channel.held.v9")), "unsupported_type"),
        (line(with_(PRESENCE, "data.presence", KeyError)), "missing_field"),
        (line(with_(PRESENCE, "data.presence.category.type", KeyError)), "missing_field"),
        (b'{"a": 1e400}', "invalid_json"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),
    ],
)
def test_unusable_inputs_become_dead_letters_with_a_code(raw, code):
    out = parse_line(raw, "file.jsonl:7")
    assert isinstance(out, DeadLetter)
    assert out.error_code == code, out.error_detail
    assert out.origin == "file.jsonl:7" and out.raw_bytes == len(raw) and out.error_detail


def test_dead_letter_salvages_type_and_id():
    out = parse_line(line(with_(HELD, "type", "interaction.detailrecord.v0")), "x")
    assert (out.event_type, out.event_id) == ("interaction.detailrecord.v0", "2VejGqWZPqHXHVNcfUPUO8IASAp")


def test_oversized_is_rejected_before_parsing_and_raw_capped():
    raw = line(with_(HELD, "subject", "x" * 5000))
    out = parse_line(raw, "x", max_bytes=1000)
    assert out.error_code == "oversized" and out.raw_bytes == len(raw)
    big = b"z" * 100_000
    out = parse_line(big, "x", max_bytes=10, size=3_000_000)
    assert out.raw_bytes == 3_000_000 and out.raw_truncated and len(out.raw) == 8192


def test_agent_id_falls_back_to_subject():
    ev = parse_line(line(with_(PRESENCE, "data.user", KeyError)), "x")
    assert ev.key == "1544" and ev.user_id is None


def test_split_json_document():
    assert split_json_document(b'[{"a":1}, {"b":2}]') == [b'{"a":1}', b'{"b":2}']
    assert split_json_document(b' {"a": 1}\n') == [b'{"a": 1}']
    assert split_json_document(b'{"a":1}\n{"b":2}\n') is None
    assert split_json_document(b"42") is None


# --- the documented-shape fast path decides exactly as the full path -----------------------------


def full_path(raw: bytes):
    return parse_object(orjson.loads(raw), raw, "f:1")


FAST_PATH_VARIANTS = {
    "documented channel event": line(HELD),
    "documented presence event": line(PRESENCE),
    "escaped quote and newline": line(with_(HELD, "data.channel.party.userId", 'a"b\nc')),
    "unicode escape": line(HELD).replace(b'"1544"', b'"15\\u0034\\u0034"'),
    "non-ASCII text": line(with_(PRESENCE, "data.presence.description", "Prêt ☕")),
    "unknown member": line(with_(HELD, "data.channel.direction", "inbound")),
    "integer id": line(with_(HELD, "id", 12345)),
    "integer agent id": line(with_(HELD, "data.channel.party.agentId", 1544)),
    "number in an ignored member": line(with_(HELD, "time", 1.5e300)),
    "empty texts": line(with_(with_(HELD, "data.channel.channelId", ""), "data.channel.party.role", "")),
    "null party": line(with_(HELD, "data.channel.party", None)),
    "whitespace around": b"  " + line(PRESENCE) + b"\t ",
    "repeated member, last wins": line(HELD)[:-1] + b',"type":"channel.retrieved.v0"}',
    "repeated member of another type": line(HELD)[:-1] + b',"data":{"timestamp":"2022-08-30T14:34:36Z"}}',
    "seven fractional digits": line(with_(HELD, "data.timestamp", "2022-08-30T14:34:36.0881234Z")),
    "offset zone": line(with_(HELD, "data.timestamp", "2022-08-30T16:34:36.088+02:00")),
    "blank before a time": line(with_(HELD, "data.timestamp", "   2022-08-30T14:34:36.088Z")),
    "empty category type": line(with_(PRESENCE, "data.presence.category.type", "")),
}


@pytest.mark.parametrize("name", sorted(FAST_PATH_VARIANTS))
def test_fast_path_decides_as_the_full_path(name):
    raw = FAST_PATH_VARIANTS[name]
    assert parse_line(raw, "f:1") == full_path(raw)


@pytest.mark.parametrize(
    "text",
    [
        "2024-03-04T08:01:31.351Z",
        "2024-03-04T08:01:31.35xZ",
        "2024-03-04T08:01:31.3510Z",
        "2024-03-04T08:01:31,351Z",
        "2024-03-04T08:01:31.\u0663\u0665\u0661Z",
        "2024-03-04T08:01:60.351Z",
        "2024-03-04T24:01:31.351Z",
        "2024-03-04T08:01:31.351z",
        "2024-03-04T08:01:31Z",
        "2024-03-04T08:01:31.Z",
        "2024-03-04 08:01:31.351Z",
    ],
)
def test_the_cached_timestamp_path_reads_as_parse_timestamp(text):
    from transforms.events import _timestamp_fast

    try:
        expected = parse_timestamp(text)
    except ValueError:
        expected = None
    assert _timestamp_fast(text) == expected
    assert _timestamp_fast(text) == expected  # cached the second time


#: Serializations of documented events other producers use: the fast path takes them all.
TAKEN_BY_THE_FAST_PATH = {
    "documented channel event": line(HELD),
    "documented presence event": line(PRESENCE),
    "members in another order": orjson.dumps(dict(reversed(list(HELD.items())))),
    "json.dumps spacing": json.dumps(PRESENCE).encode(),
    "escaped slashes": line(HELD).replace(b'"/channel"', b'"\\/channel"'),
    "unicode escapes of ASCII": line(PRESENCE).replace(b'"Ready"', b'"\\u0052eady"'),
    "ensure_ascii escapes": json.dumps(with_(PRESENCE, "data.presence.description", "Prêt ☕ 🎧")).encode(),
    "non-ASCII text": line(with_(PRESENCE, "data.presence.description", "Prêt ☕ 🎧")),
    "seven fractional digits": line(with_(HELD, "data.timestamp", "2022-08-30T14:34:36.0881234Z")),
}


@pytest.mark.parametrize("name", sorted(TAKEN_BY_THE_FAST_PATH))
def test_documented_events_however_serialized_take_the_fast_path(name):
    from transforms.events import _event_fast

    raw = TAKEN_BY_THE_FAST_PATH[name]
    event = _event_fast(raw)
    assert event is not None  # not left to the full path: ~2x the cost (bench/README.md)
    assert event == full_path(raw) == parse_line(raw, "f:1")


#: Members the documented shape does not have: the events without them, built by the full path.
ADDED_MEMBERS = {
    "extension attributes": {"traceparent": "00-4bf92f35-01", **HELD, "vonageregion": "eu", "sequence": 42},
    "non-ASCII extension attribute": {**HELD, "vonagetenant": "Société Générale"},
    "dataschema": {**HELD, "dataschema": "https://example.com/channel.v1.json"},
    "extra keys under data": with_(with_(HELD, "data.tenantId", "acme"), "data.channel.channelType", "voice"),
    "nested extra object": with_(PRESENCE, "data.extra", {"a": [1, 2.5, None, True, {"b": "c"}]}),
    "number time": with_(HELD, "time", 1700000000),
}


@pytest.mark.parametrize("name", sorted(ADDED_MEMBERS))
def test_added_members_change_nothing(name):
    obj = ADDED_MEMBERS[name]
    base = PRESENCE if obj["type"].startswith("agent") else HELD
    event = parse_line(line(obj), "f:1")
    assert isinstance(event, Event) and event == full_path(line(obj)) == parse_line(line(base), "f:1")


@pytest.mark.parametrize(
    ("path", "value", "text"),
    [("id", 12345, "12345"), ("id", 2**64 - 1, str(2**64 - 1)), ("source", -(2**63), str(-(2**63)))],
)
def test_integer_texts_are_their_decimal_text(path, value, text):
    event = parse_line(line(with_(HELD, path, value)), "f:1")
    assert event == parse_line(line(with_(HELD, path, text)), "f:1")


#: Texts msgspec would accept and orjson does not, were unknown members skipped: the fast
#: path leaves them to the full path (as it does every unknown member).
LEFT_TO_THE_FULL_PATH = {
    "infinite number in an unknown member": (line(HELD)[:-1] + b',"x":1e400}', "invalid_json"),
    "300-digit number in an unknown member": (line(HELD)[:-1] + b',"x":' + b"9" * 310 + b"}", "invalid_json"),
    "invalid UTF-8 in an unknown member": (line({**HELD, "x": "é"}).replace("é".encode(), b"\xe9"), "invalid_encoding"),
    "lone surrogate in an unknown member": (line(HELD)[:-1] + b',"x":"\\ud800"}', "invalid_encoding"),
    "integer id past 64 bits": (json.dumps(with_(HELD, "id", 2**64)).encode(), "invalid_field"),
    "integer id below -2**63": (json.dumps(with_(HELD, "id", -(2**63) - 1)).encode(), "invalid_field"),
    "deep nesting in an unknown member": (
        line(HELD)[:-1] + b',"x":' + b"[" * 1100 + b"]" * 1100 + b"}",
        "invalid_json",
    ),
}


@pytest.mark.parametrize("name", sorted(LEFT_TO_THE_FULL_PATH))
def test_what_only_msgspec_accepts_is_left_to_the_full_path(name):
    from transforms.events import _event_fast

    raw, code = LEFT_TO_THE_FULL_PATH[name]
    assert _event_fast(raw) is None
    out = parse_line(raw, "f:1")
    assert isinstance(out, DeadLetter) and out.error_code == code, out


@pytest.mark.parametrize("documented_share", [0.0, 0.3, 0.6, 1.0])
def test_a_block_parses_as_each_line_does_whichever_way_it_goes(documented_share):
    """Past its probe, a block of mostly extended notifications skips the fast path; a block of
    mostly documented ones does not: either way, line by line, the outcome of parse_line."""
    from transforms.events import PROBE_LINES, parse_lines

    extended = [line(obj) for obj in ADDED_MEMBERS.values()]
    documented = [line(HELD), line(PRESENCE), *TAKEN_BY_THE_FAST_PATH.values()]
    odd = [b"", b"  ", b"{", b"[]", line(with_(HELD, "id", 7)), b'{"type":"channel.held.v1"}', b"\xff"]
    lines = []
    for i in range(3 * PROBE_LINES):
        pool = documented if (i * 0.618) % 1 < documented_share else extended
        lines.append(pool[i % len(pool)] if i % 9 else odd[i % len(odd)])
    expected = [None if not raw or raw.isspace() else parse_line(raw, "") for raw in lines]
    assert parse_lines(lines) == expected

"""Parsing VCC webhook notifications: raw bytes in, an :class:`Event` or a :class:`DeadLetter` out.

Pure Python (no Beam). The rules follow ``shared/spec/vcc-webhooks.md``: a CloudEvents 1.0
structured envelope, ``type`` compared without its ``.vN`` suffix (``.v0`` and ``.v1``
accepted), event time from ``data.timestamp`` at any fractional precision (kept to the
microsecond). Nothing here raises on bad input: every input becomes exactly one event or
one dead letter with a code from :data:`schemas.ERROR_CODES`.

A notification of the documented shape (in any member order, escapes and non-ASCII text
included) is decoded by msgspec into strict structs (:func:`_event_fast`); everything else
goes through orjson and the rule-by-rule checks of :func:`event_from_object`. Both paths
build the same event (tested on every fuzz input): a change to a field rule goes into both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
from functools import lru_cache
from typing import Any, NamedTuple

import msgspec
import orjson
import pyarrow as pa

#: Default cap on one notification's size (real ones are under 2 KiB).
MAX_EVENT_BYTES = 1 << 20
#: How much of a rejected input is kept in ``dead_letter.raw``.
RAW_CAP_CHARS = 8192

SUPPORTED_VERSIONS = frozenset({"v0", "v1"})

#: Lifecycle position of each channel event type: the tie-break for equal timestamps.
CHANNEL_RANK = {
    "channel.alerted": 0,
    "channel.connected": 1,
    "channel.held": 2,
    "channel.parked": 2,
    "channel.interrupted": 2,
    "channel.retrieved": 3,
    "channel.unparked": 3,
    "channel.resumed": 3,
    "channel.connectionfailed": 4,
    "channel.disconnected": 5,
    "channel.wrapstarted": 6,
    "channel.ended": 7,
}
PRESENCE_TYPE = "agent.presencechanged"
EVENT_TYPES = frozenset(CHANNEL_RANK) | {PRESENCE_TYPE}

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY_US = 86_400_000_000
#: Event times must stay within the calendar (years 1 to 9999) once converted to UTC.
_MIN_US = (date.min.toordinal() - _EPOCH_ORDINAL) * _DAY_US
_MAX_US = (date.max.toordinal() + 1 - _EPOCH_ORDINAL) * _DAY_US - 1
_TS_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(Z|z|[+-]\d{2}:?\d{2})\Z", re.ASCII
)


class Event(NamedTuple):
    """One valid notification, flattened. ``ts`` is event time in microseconds since epoch.

    ``key`` is the entity the event belongs to: the channel id for channel events, the
    agent id for presence events. Channel-only and presence-only fields are None elsewhere.
    """

    source: str
    id: str
    type: str  # without version, e.g. "channel.held"
    ts: int
    key: str
    interaction_id: str | None = None
    conversation_id: str | None = None
    party_role: str | None = None
    agent_id: str | None = None
    user_id: str | None = None
    reason: str | None = None
    presence_id: str | None = None
    presence_type: str | None = None
    presence_subcategory: str | None = None
    presence_description: str | None = None

    @property
    def is_channel(self) -> bool:
        return self.type != PRESENCE_TYPE


#: Position of each :class:`Event` field, for the loops that run once per event: indexing a
#: tuple costs a fraction of reading a NamedTuple attribute, which is a descriptor call.
FIELD = {name: i for i, name in enumerate(Event._fields)}


_CODEC = pa.Codec("zstd")
_BATCH_ENCODER = msgspec.msgpack.Encoder()
_BATCH_DECODER = msgspec.msgpack.Decoder(list[Event])


def compress(data: bytes) -> bytes:
    """``data`` zstd-compressed, prefixed with its size (a shuffle moves ~5x fewer bytes)."""
    return len(data).to_bytes(8, "little") + _CODEC.compress(data, asbytes=True)


def decompress(packed: bytes) -> bytes:
    return _CODEC.decompress(packed[8:], decompressed_size=int.from_bytes(packed[:8], "little"), asbytes=True)


# A packed batch is zstd-compressed (:func:`compress`) ``P, end_1 ... end_P, part_1 ... part_P``:
# the number of parts and the end of each part in the part bytes (4-byte little-endian
# integers), then the parts, each a MessagePack array of events. A reader splits a shard's
# events into parts by a hash of their key, so that a consumer can decode and handle the
# same part of all of a shard's batches at a time (:func:`batch_parts`). Other values (the
# channel stage's agent work) travel in the same container (:func:`pack_parts`).
_U32 = 4


def pack_parts(parts: list[bytes | bytearray]) -> bytes:
    """Encoded parts (each a MessagePack value) as one packed batch; :func:`batch_parts`
    gives them back."""
    head = bytearray(len(parts).to_bytes(_U32, "little"))
    end = 0
    for part in parts:
        end += len(part)
        head += end.to_bytes(_U32, "little")
    return compress(b"".join([head, *parts]))


def pack(events: list[Event]) -> bytes:
    """Events as one packed batch of one part: a batch crosses a shuffle as a single ``bytes``
    value, which every runner moves without decoding it; :func:`unpack` restores it."""
    return pack_parts([_BATCH_ENCODER.encode(events)])


def batch_parts(batch: bytes) -> list[memoryview]:
    """The parts of a packed batch, decompressed and still encoded, in order
    (:func:`decode_part` decodes one)."""
    raw = memoryview(decompress(batch))
    count = int.from_bytes(raw[:_U32], "little")
    base = _U32 * (count + 1)
    parts, start = [], 0
    for i in range(1, count + 1):
        end = int.from_bytes(raw[_U32 * i : _U32 * (i + 1)], "little")
        parts.append(raw[base + start : base + end])
        start = end
    return parts


def decode_part(part: memoryview | bytes) -> list[Event]:
    """The events of one part of :func:`batch_parts`."""
    return _BATCH_DECODER.decode(part)


def unpack(batch: bytes) -> list[Event]:
    """Every event of a packed batch, part after part."""
    parts = batch_parts(batch)
    if len(parts) == 1:
        return decode_part(parts[0])
    return [ev for part in parts for ev in decode_part(part)]


#: A MessagePack array header (array 32) whose count :func:`packed_batch` fills in.
_ARRAY_HEADER = b"\xdd\x00\x00\x00\x00"
#: ``add_to_batch(event, buffer, -1)`` appends one event to a :func:`new_batch` buffer.
add_to_batch = _BATCH_ENCODER.encode_into


def new_batch() -> bytearray:
    """An empty batch (or part of one) that a reader fills one event at a time with
    :func:`add_to_batch`, while each event is fresh in memory, then packs with
    :func:`packed_batch`."""
    return bytearray(_ARRAY_HEADER)


def packed_batch(buffers: list[bytearray], counts: list[int]) -> bytes:
    """The events added to each of ``buffers`` (``counts[i]`` of them to ``buffers[i]``) as
    one packed batch whose parts are the buffers, in order (:func:`batch_parts` gives them
    back, :func:`unpack` every event); each buffer is emptied for the next batch."""
    for buffer, count in zip(buffers, counts, strict=True):
        buffer[1:5] = count.to_bytes(4, "big")
    packed = pack_parts(buffers)
    for buffer in buffers:
        del buffer[len(_ARRAY_HEADER) :]
    return packed


class DeadLetter(NamedTuple):
    """An input that is not a usable event, with why. ``raw`` is already capped."""

    error_code: str
    error_detail: str
    raw: str
    raw_bytes: int
    raw_truncated: bool
    origin: str
    event_type: str | None = None
    event_id: str | None = None


class _Reject(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@lru_cache(maxsize=4096)
def _day_us(date_text: str) -> int:
    """Microseconds from the epoch to 00:00 UTC of ``YYYY-MM-DD`` (ValueError if invalid)."""
    y, m, d = int(date_text[0:4]), int(date_text[5:7]), int(date_text[8:10])
    return (date(y, m, d).toordinal() - _EPOCH_ORDINAL) * _DAY_US


def parse_timestamp(value: Any) -> int:
    """ISO-8601 time with a zone (``Z`` or ``+hh:mm``) to microseconds since epoch.

    Any number of fractional digits is accepted; digits past the microsecond are
    truncated. Raises ValueError for anything else.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO-8601 string, got {type(value).__name__}")
    m = _TS_RE.match(value.strip())
    if not m:
        raise ValueError(f"not an ISO-8601 time with zone: {value[:64]!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    hh, mi, ss = int(hour), int(minute), int(second)
    if hh > 23 or mi > 59 or ss > 59:
        raise ValueError(f"time of day out of range: {value[:64]!r}")
    micros = _day_us(f"{year}-{month}-{day}") + ((hh * 60 + mi) * 60 + ss) * 1_000_000
    if frac:
        micros += int((frac + "00000")[:6])
    if zone not in ("Z", "z"):
        oh, om = int(zone[1:3]), int(zone[-2:])
        if oh > 23 or om > 59:
            raise ValueError(f"bad zone offset {zone!r}")
        micros -= (1 if zone[0] == "+" else -1) * (oh * 60 + om) * 60_000_000
    if not _MIN_US <= micros <= _MAX_US:
        raise ValueError(f"time outside years 1-9999 in UTC: {value[:64]!r}")
    return micros


#: ``YYYY-MM-DDTHH:MM:SS`` -> microseconds at that second (UTC), for :func:`_timestamp_fast`.
_SECOND_US: dict[str, int | None] = {}
_SECOND_CACHE_KEYS = 1 << 17


def _second_us(prefix: str) -> int | None:
    """Microseconds at ``YYYY-MM-DDTHH:MM:SS`` read as UTC, None if not such a time (cached)."""
    try:
        base = parse_timestamp(prefix + "Z")
    except ValueError:
        base = None
    if len(_SECOND_US) >= _SECOND_CACHE_KEYS:
        _SECOND_US.clear()
    _SECOND_US[prefix] = base
    return base


def _timestamp_fast(value: Any) -> int | None:
    """:func:`parse_timestamp` of ``value``, or None where it raises; UTC times
    (``YYYY-MM-DDTHH:MM:SS[.f...]Z``) take a path cached per second."""
    if type(value) is str and len(value) >= 20 and value[-1] == "Z":
        prefix = value[:19]
        base = _SECOND_US.get(prefix, -1)
        if base == -1:
            base = _second_us(prefix)
        if base is not None:
            if len(value) == 24 and value[19] == ".":  # the usual: milliseconds
                millis = value[20:23]
                if millis.isdigit() and millis.isascii():
                    return base + int(millis) * 1000
            frac = value[20:-1]
            if not frac and len(value) == 20:
                return base
            if value[19] in ".," and frac.isdigit() and frac.isascii():
                return base + int((frac + "00000")[:6])
    try:
        return parse_timestamp(value)
    except (ValueError, OverflowError):
        return None


def split_type(raw_type: str) -> tuple[str, str | None]:
    """``"channel.held.v1"`` -> ``("channel.held", "v1")``; no suffix -> version None."""
    head, _, tail = raw_type.rpartition(".")
    if head and len(tail) > 1 and tail[0] == "v" and tail[1:].isdigit():
        return head, tail
    return raw_type, None


def _text(value: Any, field: str, required: bool = False) -> str | None:
    if type(value) is str and value:
        return value
    if value is None or value == "":
        if required:
            raise _Reject("missing_field", f"missing {field}")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _Reject("invalid_field", f"{field} must be a string, got {type(value).__name__}")
    return str(value)


def _obj(value: Any, field: str) -> dict:
    if value is None:
        raise _Reject("missing_field", f"missing {field}")
    if not isinstance(value, dict):
        raise _Reject("invalid_field", f"{field} must be an object, got {type(value).__name__}")
    return value


def event_from_object(obj: Any) -> Event:
    """Validate one decoded notification. Raises ``_Reject`` (internal) on bad input."""
    if not isinstance(obj, dict):
        raise _Reject("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    raw_type = _text(obj.get("type"), "type", required=True)
    event_id = _text(obj.get("id"), "id", required=True)
    source = _text(obj.get("source"), "source", required=True)
    etype = _TYPE_SPELLINGS.get(raw_type)  # the accepted spellings, looked up; else why not:
    if etype is None:
        etype, version = split_type(raw_type)
        if etype not in EVENT_TYPES:
            raise _Reject("unsupported_type", f"unsupported event type {raw_type!r}")
        raise _Reject("unsupported_type", f"unsupported version {version!r} of {etype}")
    data = _obj(obj.get("data"), "data")
    if "timestamp" not in data or data["timestamp"] in (None, ""):
        raise _Reject("missing_field", "missing data.timestamp")
    ts = _timestamp_fast(data["timestamp"])  # parse_timestamp, cached per second; else why not:
    if ts is None:
        try:
            ts = parse_timestamp(data["timestamp"])
        except (ValueError, OverflowError) as exc:
            raise _Reject("bad_timestamp", f"data.timestamp: {exc}") from None
    subject = _text(obj.get("subject"), "subject")

    if etype == PRESENCE_TYPE:
        presence = _obj(data.get("presence"), "data.presence")
        category = presence.get("category")
        category = _obj(category, "data.presence.category") if category is not None else {}
        user = data.get("user")
        user = _obj(user, "data.user") if user is not None else {}
        agent_id = _text(user.get("agentId"), "data.user.agentId") or subject
        if agent_id is None:
            raise _Reject("missing_field", "missing data.user.agentId (and subject)")
        ptype = _text(category.get("type"), "data.presence.category.type", required=True)
        return _new_event(Event, (  # every field of Event, in order
            source, event_id, etype, ts, agent_id, None, None, None, agent_id,
            _text(user.get("userId"), "data.user.userId"),
            None,
            _text(presence.get("presenceId"), "data.presence.presenceId"),
            ptype,
            _text(category.get("subcategory"), "data.presence.category.subcategory"),
            _text(presence.get("description"), "data.presence.description")
            or _text(category.get("description"), "data.presence.category.description"),
        ))  # fmt: skip

    channel = _obj(data.get("channel"), "data.channel")
    channel_id = _text(channel.get("channelId"), "data.channel.channelId") or subject
    if channel_id is None:
        raise _Reject("missing_field", "missing data.channel.channelId (and subject)")
    party = channel.get("party")
    party = _obj(party, "data.channel.party") if party is not None else {}
    return _new_event(Event, (  # every field of Event, in order
        source, event_id, etype, ts, channel_id,
        _text(channel.get("interactionId"), "data.channel.interactionId"),
        _text(channel.get("conversationId"), "data.channel.conversationId"),
        _text(party.get("role"), "data.channel.party.role"),
        _text(party.get("agentId"), "data.channel.party.agentId"),
        _text(party.get("userId"), "data.channel.party.userId"),
        _text(data.get("reason"), "data.reason"),
        None, None, None, None,
    ))  # fmt: skip


#: Every accepted spelling of a type (bare, ``.v0``, ``.v1``) to the type without version.
_TYPE_SPELLINGS = {f"{t}{v}": t for t in EVENT_TYPES for v in ("", *(f".{v}" for v in SUPPORTED_VERSIONS))}

# --- the fast path: notifications of the documented shape, decoded by msgspec --------------

_Text = str | None


class _Strict(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A documented object of the notification: every member a string, null or a documented object.

    ``gc=False``: these objects hold only strings and each other, so they cannot form a cycle,
    and leaving them out of the cyclic collector's lists makes reading ~10% cheaper."""


class _Party(_Strict):
    role: _Text = None
    agentId: _Text = None
    userId: _Text = None


class _Channel(_Strict):
    channelId: _Text = None
    interactionId: _Text = None
    conversationId: _Text = None
    party: _Party | None = None


class _Category(_Strict):
    type: _Text = None
    subcategory: _Text = None
    description: _Text = None


class _Presence(_Strict):
    presenceId: _Text = None
    description: _Text = None
    category: _Category | None = None


class _User(_Strict):
    agentId: _Text = None
    userId: _Text = None


class _Data(_Strict):
    timestamp: _Text = None
    reason: _Text = None
    channel: _Channel | None = None
    presence: _Presence | None = None
    user: _User | None = None


class _Envelope(_Strict):
    specversion: _Text = None
    type: _Text = None
    id: _Text = None
    source: _Text = None
    subject: _Text = None
    time: _Text = None
    datacontenttype: _Text = None
    data: _Data | None = None


_DOCUMENTED = msgspec.json.Decoder(_Envelope)


def _event_fast(raw: bytes) -> Event | None:
    """:func:`parse_line`'s event for a notification of the documented shape, or None (then
    the full path decides).

    A text whose members are all documented and all strings, nulls or documented objects is
    decoded here, in any member order, with any escapes and any UTF-8 text (msgspec checks
    every string it decodes, and here it decodes all of them); such a text is also valid
    JSON to orjson, with the same values, so the event is the one :func:`event_from_object`
    builds. Other members or types (CloudEvents extension attributes, integer ids) are left
    to the full path, which costs about twice as much (bench/README.md).
    """
    try:
        env = _DOCUMENTED.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):  # not JSON, not of this shape, not UTF-8
        return None
    return _event_from_envelope(env)


def _event_from_envelope(env: _Envelope) -> Event | None:
    """The event of a decoded envelope, as :func:`event_from_object` builds it, or None where
    that one would reject it (the full path then says why)."""
    etype, event_id, source, data = _TYPE_SPELLINGS.get(env.type), env.id, env.source, env.data
    if etype is None or not event_id or not source or data is None:
        return None
    ts = _timestamp_fast(data.timestamp)
    if ts is None:
        return None
    subject = env.subject or None
    if etype == PRESENCE_TYPE:
        presence, user = data.presence, data.user
        if presence is None or presence.category is None or not presence.category.type:
            return None
        category = presence.category
        agent = (user.agentId if user is not None else None) or subject
        if agent is None:
            return None
        return _new_event(Event, (
            source, event_id, etype, ts, agent, None, None, None, agent,
            (user.userId or None) if user is not None else None, None,
            presence.presenceId or None, category.type, category.subcategory or None,
            presence.description or category.description or None,
        ))  # fmt: skip
    channel = data.channel
    if channel is None:
        return None
    channel_id = channel.channelId or subject
    if channel_id is None:
        return None
    party = channel.party or _NO_PARTY
    return _new_event(Event, (
        source, event_id, etype, ts, channel_id, channel.interactionId or None, channel.conversationId or None,
        party.role or None, party.agentId or None, party.userId or None, data.reason or None,
        None, None, None, None,
    ))  # fmt: skip


_NO_PARTY = _Party()
#: Builds an Event from a full tuple of its fields without the keyword-handling constructor.
_new_event = tuple.__new__


def _cap(raw: bytes | str) -> tuple[str, int, bool]:
    if isinstance(raw, bytes):
        size = len(raw)
        window = raw[: RAW_CAP_CHARS * 4]  # enough bytes for RAW_CAP_CHARS characters
        text = window.decode("utf-8", errors="replace")
        cut = len(window) < size  # bytes past the window are not in the text
    else:
        text = raw
        size = len(raw.encode("utf-8", errors="replace"))
        cut = False
    truncated = cut or len(text) > RAW_CAP_CHARS
    return text[:RAW_CAP_CHARS], size, truncated


def dead_letter(
    code: str, detail: str, raw: bytes | str, origin: str, obj: Any = None, size: int | None = None
) -> DeadLetter:
    """Build a dead letter, capping ``raw`` and salvaging ``type``/``id`` when readable.

    ``size`` is the input's true size when ``raw`` was already cut by the reader.
    """
    text, raw_size, truncated = _cap(raw)
    if size is not None and size > raw_size:
        raw_size, truncated = size, True
    etype = eid = None
    if isinstance(obj, dict):
        etype = obj.get("type") if isinstance(obj.get("type"), str) else None
        eid = obj.get("id") if isinstance(obj.get("id"), str) else None
    return DeadLetter(code, detail, text, raw_size, truncated, origin, etype, eid)


def parse_object(obj: Any, raw: bytes | str, origin: str) -> Event | DeadLetter:
    """An already-decoded JSON value to an event or a dead letter."""
    try:
        return event_from_object(obj)
    except _Reject as rej:
        return dead_letter(rej.code, rej.detail, raw, origin, obj)


def parse_line(
    raw: bytes | str, origin: str, max_bytes: int = MAX_EVENT_BYTES, size: int | None = None
) -> Event | DeadLetter:
    """One notification as bytes (or text) to an event or a dead letter. Never raises.

    ``size`` is the true input size when a reader has already cut ``raw`` short.
    """
    if size is None:
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", errors="replace"))
    if size > max_bytes:
        return dead_letter("oversized", f"{size} bytes exceeds the cap of {max_bytes}", raw, origin, size=size)
    if type(raw) is bytes and (event := _event_fast(raw)) is not None:
        return event
    return _parse_full(raw, origin)


def _parse_full(raw: bytes | str, origin: str) -> Event | DeadLetter:
    """:func:`parse_line` of a line within the size cap, on the full path (orjson and
    :func:`event_from_object`), for a line the fast path has already declined."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        msg = str(exc)
        code = "invalid_encoding" if "UTF-8" in msg or "surrogate" in msg else "invalid_json"
        return dead_letter(code, msg, raw, origin)
    return parse_object(obj, raw, origin)


#: Lines of a block that :func:`parse_lines` tries on the fast path to choose its way for the rest.
PROBE_LINES = 32


def parse_lines(
    lines: Sequence[bytes], max_bytes: int = MAX_EVENT_BYTES, sizes: Mapping[int, int] | None = None
) -> list[Event | DeadLetter | None]:
    """:func:`parse_line` of every line of a block (origins left empty), None for a blank line.

    ``sizes`` maps the index of each line a reader cut short (or stripped) to its true size.
    Lines of the documented shape are decoded first, all in one pass; the others then go
    through the full path one by one. When the block's first :data:`PROBE_LINES` lines are
    mostly not of the documented shape (a producer that adds extension attributes, say),
    the block goes through the full path only: trying the fast path first would cost a
    line ~30% more (bench/README.md). Either way every line gets the same outcome.
    """
    fast = _event_fast
    out: list[Event | DeadLetter | None] = [fast(raw) if len(raw) <= max_bytes else None for raw in lines[:PROBE_LINES]]
    if len(lines) > PROBE_LINES:
        if sum(event is not None for event in out) * 2 >= len(out):
            out += [fast(raw) if len(raw) <= max_bytes else None for raw in lines[PROBE_LINES:]]
        else:
            out += [None] * (len(lines) - PROBE_LINES)
    if sizes:
        for i in sizes:
            out[i] = None
    for i, event in enumerate(out):
        if event is None and not (raw := lines[i]).isspace() and raw:
            if sizes and i in sizes or len(raw) > max_bytes:
                out[i] = parse_line(raw, "", max_bytes, sizes.get(i) if sizes else None)
            else:  # declined by the fast path already, or a block for the full path
                out[i] = _parse_full(raw, "")
    return out


def split_json_document(content: bytes) -> list[bytes] | None:
    """A whole ``.json`` document holding one event or an array of events, as one
    compact JSON text per event; None when ``content`` is not a single JSON object or
    array (read it as newline-delimited JSON instead)."""
    try:
        doc = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, dict):
        return [content.strip()]
    if isinstance(doc, list):
        return [orjson.dumps(item) for item in doc]
    return None

"""The pyarrow schemas of every table vccflow writes: the single source of truth.

Writers build their Arrow tables from these schemas, the expectation suites derive
columns and nullability from them, and the README's column reference is generated from
the ``doc`` metadata of each field. Every table is a hive-partitioned dataset whose
partition column ``event_date`` (UTC date of the row's start, ``YYYY-MM-DD``) lives in
the folder names, not in the files.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
MS = pa.int64()
COUNT = pa.int64()

PARTITION_COLUMN = "event_date"

#: States of a channel timeline, in the order they usually occur.
CHANNEL_STATES = ("alerting", "connected", "held", "parked", "interrupted", "wrap")

#: Every ``dead_letter.error_code`` the pipeline produces.
ERROR_CODES = (
    "invalid_json",
    "invalid_encoding",
    "not_an_object",
    "missing_field",
    "invalid_field",
    "bad_timestamp",
    "unsupported_type",
    "oversized",
    "unreadable",
    "late",
)


def _f(name: str, type_: pa.DataType, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


CHANNEL_SESSIONS = pa.schema(
    [
        _f("channel_id", pa.string(), "VCC channel id (`data.channel.channelId`); unique", False),
        _f("interaction_id", pa.string(), "interaction the channel belongs to"),
        _f("conversation_id", pa.string(), "conversation the channel belongs to"),
        _f("party_role", pa.string(), "`agent` for agent channels, else the customer-side role"),
        _f("agent_id", pa.string(), "agent id on agent channels, null otherwise"),
        _f("user_id", pa.string(), "agent's user id on agent channels, null otherwise"),
        _f("alerted_at", TS, "time of `channel.alerted`"),
        _f("connected_at", TS, "time of `channel.connected`"),
        _f("disconnected_at", TS, "time of `channel.disconnected`"),
        _f("wrap_started_at", TS, "time of `channel.wrapstarted`"),
        _f("ended_at", TS, "time of `channel.ended`"),
        _f("first_event_at", TS, "earliest event of the channel (partitioning time)", False),
        _f("last_event_at", TS, "latest event of the channel", False),
        _f("connection_failed", pa.bool_(), "`channel.connectionfailed` was seen", False),
        _f("end_reason", pa.string(), "`data.reason` of `channel.ended` (or of the failure)"),
        _f("alert_ms", MS, "time alerting before connect/failure", False),
        _f("connected_ms", MS, "talk + hold + park + interruption", False),
        _f("talk_ms", MS, "connected time not held, parked or interrupted", False),
        _f("hold_ms", MS, "total of closed hold episodes", False),
        _f("park_ms", MS, "total of closed park episodes", False),
        _f("interruption_ms", MS, "total of closed interruption episodes", False),
        _f("wrap_ms", MS, "after-contact work, wrap start to ended", False),
        _f("handle_ms", MS, "talk + hold + wrap (the AHT numerator)", False),
        _f("hold_count", COUNT, "hold episodes started", False),
        _f("park_count", COUNT, "park episodes started", False),
        _f("interruption_count", COUNT, "interruption episodes started", False),
        _f("longest_hold_ms", MS, "longest closed hold episode, 0 if none", False),
        _f("longest_park_ms", MS, "longest closed park episode, 0 if none", False),
        _f("longest_interruption_ms", MS, "longest closed interruption episode, 0 if none", False),
        _f("held_at_disconnect", pa.bool_(), "the channel disconnected while held", False),
        _f("disconnect_state", pa.string(), "state open when `channel.disconnected` came"),
        _f("is_complete", pa.bool_(), "`channel.ended` was seen", False),
        _f("open_state", pa.string(), "state still open at the end of the data, if any"),
        _f("event_count", COUNT, "distinct events of the channel (after dedup)", False),
        _f("duplicate_count", COUNT, "duplicate notifications dropped for this channel", False),
        _f("anomaly_count", COUNT, "out-of-place events (ignored for timing)", False),
        _f("anomalies", pa.list_(pa.string()), "one entry per anomaly, e.g. `retrieved_without_held`", False),
    ]
)

CHANNEL_SEGMENTS = pa.schema(
    [
        _f("channel_id", pa.string(), "VCC channel id", False),
        _f("interaction_id", pa.string(), "interaction the channel belongs to"),
        _f("conversation_id", pa.string(), "conversation the channel belongs to"),
        _f("agent_id", pa.string(), "agent id on agent channels"),
        _f("party_role", pa.string(), "party role of the channel"),
        _f("seq", COUNT, "0-based position of the segment in the channel's timeline", False),
        _f("state", pa.string(), "one of " + ", ".join(CHANNEL_STATES), False),
        _f("start_at", TS, "segment start", False),
        _f("end_at", TS, "segment end; null while open"),
        _f("duration_ms", MS, "end - start in ms; null while open"),
        _f("started_by", pa.string(), "event type (no version) that opened the segment", False),
        _f("ended_by", pa.string(), "event type that closed it (`retrieved`, `disconnected`, ...)"),
    ]
)

#: The per-channel timing metrics and outcome flags every implementation of the timeline
#: rules must agree on (batch, streaming, the benchmark's SQL reference).
CHANNEL_METRICS = (
    *(
        f.name
        for f in CHANNEL_SESSIONS
        if f.name.endswith(("_ms", "_count")) and f.name not in ("event_count", "duplicate_count", "anomaly_count")
    ),
    "connection_failed",
    "is_complete",
    "open_state",
)

AGENT_PRESENCE = pa.schema(
    [
        _f("agent_id", pa.string(), "VCC agent id", False),
        _f("user_id", pa.string(), "agent's user id"),
        _f("presence_id", pa.string(), "`data.presence.presenceId`"),
        _f("presence_type", pa.string(), "lower camel case: ready, away, extendedAway, loggedOut or raw", False),
        _f("presence_subcategory", pa.string(), "`category.subcategory`"),
        _f("presence_description", pa.string(), "`presence.description`"),
        _f("start_at", TS, "interval start (this change's time)", False),
        _f("end_at", TS, "next change's time; null while open"),
        _f("duration_ms", MS, "end - start in ms; null while open"),
        _f("is_open", pa.bool_(), "no later change seen", False),
    ]
)

AGENT_SESSIONS = pa.schema(
    [
        _f("agent_id", pa.string(), "VCC agent id", False),
        _f("user_id", pa.string(), "agent's user id"),
        _f("session_id", pa.string(), "deterministic id: agent id and login time", False),
        _f("login_at", TS, "first non-loggedOut presence (or first channel work if inferred)", False),
        _f("logout_at", TS, "the loggedOut closing the session (inferred: end of the work); null while open"),
        _f("duration_ms", MS, "logout - login; for open sessions up to the last event seen", False),
        _f("ready_ms", MS, "time in ready presence", False),
        _f("away_ms", MS, "time in away presence", False),
        _f("extended_away_ms", MS, "time in extendedAway presence", False),
        _f("other_presence_ms", MS, "time in any other presence", False),
        _f("channels_handled", COUNT, "connected agent channels within the session", False),
        _f("talk_ms", MS, "talk time of the agent's channels within the session", False),
        _f("hold_ms", MS, "hold time within the session", False),
        _f("park_ms", MS, "park time within the session", False),
        _f("interruption_ms", MS, "interruption time within the session", False),
        _f("wrap_ms", MS, "wrap time within the session", False),
        _f("handle_ms", MS, "talk + hold + wrap within the session", False),
        _f("busy_ms", MS, "wall-clock time with >= 1 channel connected or in wrap", False),
        _f("occupancy", pa.float64(), "busy_ms / duration_ms, in [0, 1]", False),
        _f("is_open", pa.bool_(), "no loggedOut seen yet", False),
        _f("is_inferred", pa.bool_(), "built from channel work without presence data", False),
    ]
)

DEAD_LETTER = pa.schema(
    [
        _f("error_code", pa.string(), "one of " + ", ".join(ERROR_CODES), False),
        _f("error_detail", pa.string(), "human-readable reason", False),
        _f("raw", pa.string(), "the input as text (UTF-8, invalid bytes replaced), capped", False),
        _f("raw_bytes", COUNT, "size of the original input in bytes", False),
        _f("raw_truncated", pa.bool_(), "`raw` was cut at the cap", False),
        _f("origin", pa.string(), "`file:line` (1-based) or `pubsub:message-id`", False),
        _f("event_type", pa.string(), "`type` of the notification, when it could be read"),
        _f("event_id", pa.string(), "`id` of the notification, when it could be read"),
        _f("ingested_at", TS, "when the pipeline read the input", False),
    ]
)

#: Every output table by folder name.
TABLES: dict[str, pa.Schema] = {
    "channel_sessions": CHANNEL_SESSIONS,
    "channel_segments": CHANNEL_SEGMENTS,
    "agent_presence": AGENT_PRESENCE,
    "agent_sessions": AGENT_SESSIONS,
    "dead_letter": DEAD_LETTER,
}

#: Column whose UTC date is each table's partition.
PARTITION_SOURCE = {
    "channel_sessions": "first_event_at",
    "channel_segments": "start_at",
    "agent_presence": "start_at",
    "agent_sessions": "login_at",
    "dead_letter": "ingested_at",
}


def dataset_schema(table: str) -> pa.Schema:
    """The schema a reader sees: the table's columns plus the ``event_date`` partition."""
    return TABLES[table].append(pa.field(PARTITION_COLUMN, pa.string(), nullable=False))

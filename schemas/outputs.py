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

#: ``interactions.direction`` values (inferred: the payload has no direction).
DIRECTIONS = ("inbound", "outbound", "internal")

#: ``interactions.outcome`` values, per direction.
OUTCOMES = (
    "answered",
    "abandoned_before_offer",
    "abandoned_while_alerting",
    "abandoned_after_offer",
    "connected",
    "failed",
    "in_progress",
    "internal",
)

#: The abandoned outcomes of inbound interactions.
ABANDONED_OUTCOMES = ("abandoned_before_offer", "abandoned_while_alerting", "abandoned_after_offer")

INTERACTIONS = pa.schema(
    [
        _f("interaction_id", pa.string(), "VCC interaction id (`data.channel.interactionId`); unique", False),
        _f("conversation_id", pa.string(), "conversation id of its channels (the earliest channel's on conflict)"),
        _f("started_at", TS, "earliest event of any of its channels", False),
        _f("ended_at", TS, "latest `ended_at` of its channels; null unless every channel is complete"),
        _f("last_event_at", TS, "latest event of any of its channels", False),
        _f("duration_ms", MS, "ended_at - started_at; null while not complete"),
        _f("is_complete", pa.bool_(), "every channel of the interaction saw `channel.ended`", False),
        _f("customer_channels", COUNT, "channels whose party role is not `agent`", False),
        _f("agent_channels", COUNT, "channels whose party role is `agent`", False),
        _f("distinct_agents", COUNT, "distinct agent ids over its agent channels", False),
        _f("direction", pa.string(), "inferred: " + ", ".join(DIRECTIONS) + " (see README, Interactions)", False),
        _f("outcome", pa.string(), "one of " + ", ".join(OUTCOMES), False),
        _f("offers", COUNT, "agent channels that alerted (offers to agents)", False),
        _f("first_offered_at", TS, "inbound: earliest `alerted_at` of an agent channel"),
        _f("answered_at", TS, "inbound: earliest agent `connected_at`; outbound: earliest customer `connected_at`"),
        _f("time_to_answer_ms", MS, "answered_at - started_at (arrival-based speed of answer, IVR and queue included)"),
        _f("wait_before_offer_ms", MS, "inbound: first_offered_at - started_at"),
        _f("ring_ms", MS, "alerting time of the answering channel (agent inbound, customer outbound)"),
        _f("abandon_ms", MS, "abandoned outcomes: first customer channel's end - started_at"),
        _f("transfers", COUNT, "blind + warm transfers between consecutive agent connections", False),
        _f("blind_transfers", COUNT, "next agent connected at or after the previous one disconnected", False),
        _f("warm_transfers", COUNT, "consults after which the earlier agent disconnected first", False),
        _f("consults", COUNT, "next agent connected while the previous one was connected", False),
        _f("conferences", COUNT, "consults with a customer channel connected (not held) during the overlap", False),
        _f("agent_path", pa.list_(pa.string()), "agent ids in order of first connection, each once", False),
        _f("first_agent_id", pa.string(), "first agent to connect"),
        _f("final_agent_id", pa.string(), "agent whose connected phase ended last (who had the contact at the end)"),
        _f("talk_ms", MS, "talk time over the agent channels", False),
        _f("hold_ms", MS, "hold time over the agent channels", False),
        _f("park_ms", MS, "park time over the agent channels", False),
        _f("interruption_ms", MS, "interruption time over the agent channels", False),
        _f("wrap_ms", MS, "wrap time over the agent channels", False),
        _f("handle_ms", MS, "talk + hold + wrap over the agent channels", False),
        _f("customer_hold_ms", MS, "hold time over the customer channels (what the customer experienced)", False),
        _f("customer_hold_count", COUNT, "hold episodes over the customer channels", False),
        _f("hold_abandon", pa.bool_(), "a customer channel disconnected while held", False),
        _f("anomaly_count", COUNT, "anomalies of its channels plus disagreements between them", False),
        _f("inference", pa.list_(pa.string()), "what was inferred or found inconsistent, e.g. `direction`", False),
    ]
)

#: The answer and abandon thresholds (seconds) of the service-level columns.
SERVICE_THRESHOLDS = (10, 20, 30, 60, 120)

AGENT_INTERVALS = pa.schema(
    [
        _f("agent_id", pa.string(), "VCC agent id", False),
        _f("user_id", pa.string(), "agent's user id"),
        _f("interval_start", TS, "interval start (UTC grid of --interval-minutes)", False),
        _f("interval_end", TS, "interval end (exclusive)", False),
        _f("logged_in_ms", MS, "time in any non-loggedOut presence or in an inferred session", False),
        _f("ready_ms", MS, "time in ready presence", False),
        _f("away_ms", MS, "time in away presence", False),
        _f("extended_away_ms", MS, "time in extendedAway presence", False),
        _f("other_presence_ms", MS, "time in any other non-loggedOut presence, or inferred (presence unknown)", False),
        _f("alert_ms", MS, "alerting time of the agent's channels, clipped to the interval", False),
        _f("talk_ms", MS, "talk time, clipped to the interval", False),
        _f("hold_ms", MS, "hold time, clipped to the interval", False),
        _f("park_ms", MS, "park time, clipped to the interval", False),
        _f("interruption_ms", MS, "interruption time, clipped to the interval", False),
        _f("wrap_ms", MS, "wrap time, clipped to the interval", False),
        _f("busy_ms", MS, "wall-clock time with >= 1 channel connected, held, parked, interrupted or in wrap", False),
        _f("active_channel_ms", MS, "the same time summed per channel (>= busy_ms)", False),
        _f("max_concurrency", COUNT, "most channels active at once", False),
        _f("idle_ms", MS, "ready with no channel alerting, active or in wrap", False),
        _f("offers", COUNT, "agent channels alerted in the interval", False),
        _f("answered", COUNT, "agent channels connected in the interval", False),
        _f("missed", COUNT, "alerting ended in the interval without connecting", False),
        _f("handled", COUNT, "connected agent channels that ended in the interval", False),
        _f("handle_ms_of_handled", MS, "handle_ms of those channels (end-attributed AHT numerator)", False),
    ]
)

_WITHIN = [
    _f(f"{kind}_within_{s}s", COUNT, f"inbound {kind} within {s} s of arrival", False)
    for kind in ("answered", "abandoned")
    for s in SERVICE_THRESHOLDS
]

SERVICE_INTERVALS = pa.schema(
    [
        _f("interval_start", TS, "interval start (UTC grid of --interval-minutes)", False),
        _f("interval_end", TS, "interval end (exclusive)", False),
        _f("inbound", COUNT, "inbound interactions that arrived (started_at) in the interval", False),
        _f("answered", COUNT, "of those, answered", False),
        _f("abandoned", COUNT, "of those, abandoned (before offer, while alerting or after offer)", False),
        _f("short_abandoned", COUNT, "of those, abandoned under --short-abandon-seconds", False),
        _f("in_progress", COUNT, "of those, neither answered nor abandoned yet", False),
        *_WITHIN,
        _f("sum_time_to_answer_ms", MS, "sum of time_to_answer_ms of the answered", False),
        _f("max_time_to_answer_ms", MS, "largest time_to_answer_ms of the answered, 0 if none", False),
        _f("sum_abandon_ms", MS, "sum of abandon_ms of the abandoned", False),
        _f("outbound", COUNT, "outbound interactions started in the interval", False),
        _f("outbound_connected", COUNT, "of those, connected", False),
        _f("transfers", COUNT, "transfers of the interactions started in the interval", False),
        _f("consults", COUNT, "consults of the interactions started in the interval", False),
        _f("conferences", COUNT, "conferences of the interactions started in the interval", False),
        _f("handled", COUNT, "connected agent channels that ended in the interval", False),
        _f("handle_ms_of_handled", MS, "handle_ms of those channels", False),
    ]
)

#: Every output table by folder name.
TABLES: dict[str, pa.Schema] = {
    "channel_sessions": CHANNEL_SESSIONS,
    "channel_segments": CHANNEL_SEGMENTS,
    "agent_presence": AGENT_PRESENCE,
    "agent_sessions": AGENT_SESSIONS,
    "interactions": INTERACTIONS,
    "agent_intervals": AGENT_INTERVALS,
    "service_intervals": SERVICE_INTERVALS,
    "dead_letter": DEAD_LETTER,
}

#: Column whose UTC date is each table's partition.
PARTITION_SOURCE = {
    "channel_sessions": "first_event_at",
    "channel_segments": "start_at",
    "agent_presence": "start_at",
    "agent_sessions": "login_at",
    "interactions": "started_at",
    "agent_intervals": "interval_start",
    "service_intervals": "interval_start",
    "dead_letter": "ingested_at",
}


def dataset_schema(table: str) -> pa.Schema:
    """The schema a reader sees: the table's columns plus the ``event_date`` partition."""
    return TABLES[table].append(pa.field(PARTITION_COLUMN, pa.string(), nullable=False))

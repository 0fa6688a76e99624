-- DuckDB reference for the vccflow benchmark: per-channel metrics from raw VCC notification
-- lines, in plain SQL, following the same rules as transforms/events.py (parsing) and
-- transforms/timeline.py (the channel timeline).
--
-- Input:  the variable `input`, a list of NDJSON file paths or globs, set before this script:
--             SET VARIABLE input = ['bench/data/.../notifications-*.jsonl'];
-- Output: the table `channel_metrics` (one row per channel) and the one-row table
--         `reference_stats` (valid channel events read, duplicates dropped, channels, anomalous
--         channels). bench/reference.py runs it and writes channel_metrics to Parquet.
--
-- Rules reproduced here:
--   * a line is read as text (read_csv with a delimiter that never occurs in JSON, no quoting);
--     lines DuckDB cannot decode as UTF-8 are skipped (ignore_errors): they are
--     `invalid_encoding` dead letters for vccflow too;
--   * a usable channel event is a JSON object whose `type` is a channel lifecycle type with an
--     optional .v0/.v1 suffix, with non-empty string/integer `id` and `source`, a `data` object
--     holding a `timestamp` that is ISO-8601 with a zone (any fractional precision, truncated
--     to the microsecond) and a `data.channel` object giving the channel id (or `subject`); the
--     optional text fields must be strings or integers and `party` an object, exactly as
--     transforms/events.py rejects them (those lines are dead letters for vccflow);
--   * duplicates are dropped on (source, id) within a channel, among valid events only (a
--     corrupted copy never shadows the valid one); when copies differ, the timing of the copy
--     transforms.timeline.dedup keeps (the smallest by content) is used;
--   * order: data.timestamp, then lifecycle rank (alerted 0 < connected 1 <
--     held/parked/interrupted 2 < retrieved/unparked/resumed 3 < connectionfailed 4 <
--     disconnected 5 < wrapstarted 6 < ended 7), then id, then source;
--   * in a valid lifecycle every event closes the state that was open and opens the state its
--     type implies (alerted -> alerting, connected/retrieved/unparked/resumed -> connected,
--     held -> held, parked -> parked, interrupted -> interrupted, wrapstarted -> wrap;
--     connectionfailed, disconnected and ended open nothing), so a state's segment runs from its
--     event to the next event (LEAD). Totals are sums of closed segments, each
--     `end_us // 1000 - start_us // 1000` (floored per endpoint); a segment with no following
--     event is open: not in the totals, but named in open_state and counted in the counts;
--   * a channel is `anomalous` when some event does not fit the state left by the previous one
--     (retrieved without held, anything after ended, ...). While every event fits, the state
--     after each one is the one its type implies, so this pairwise check flags exactly the
--     channels for which transforms/timeline.py records at least one anomaly. Their timing
--     columns are NULL here (the state machine after an ignored event is not reproduced): the
--     benchmark compares anomalous channels on their existence, the anomaly flag, event and
--     duplicate counts and first/last event times only, and counts them.
--
-- Known gaps (inputs the generator never produces): DuckDB's JSON reader accepts trailing commas
-- and NaN/Infinity, which orjson rejects, and takes the first of duplicated keys where orjson
-- takes the last; a time padded with non-ASCII whitespace (Python's strip() removes it);
-- integers beyond 64 bits; a line's size counts a trailing CR.

CREATE OR REPLACE TEMP MACRO vcc_text_ok(t) AS t IS NULL OR t IN ('NULL', 'VARCHAR', 'BIGINT', 'UBIGINT');

-- Floor division by 1000 (DuckDB's // truncates toward zero).
CREATE OR REPLACE TEMP MACRO vcc_ms(us) AS us // 1000 - CASE WHEN us % 1000 < 0 THEN 1 ELSE 0 END;

CREATE OR REPLACE TEMP TABLE vcc_events AS
WITH lines AS (
    SELECT line
    FROM read_csv(
        getvariable('input'),
        columns = {'line': 'VARCHAR'},
        delim = chr(1),
        quote = '',
        escape = '',
        header = false,
        auto_detect = false,
        new_line = '\n',
        ignore_errors = true,
        max_line_size = 2097152
    )
),
docs AS MATERIALIZED (
    SELECT
        json_extract_string(
            line, ['$.type', '$.id', '$.source', '$.subject', '$.data.timestamp', '$.data.channel.channelId']
        ) AS v,
        -- a `type` or `data.timestamp` that passes the checks below is a string, and so is
        -- the document an object: their JSON types need no check of their own
        json_type(
            line,
            [
                '$.id', '$.source', '$.subject', '$.data', '$.data.channel', '$.data.channel.channelId',
                '$.data.channel.party', '$.data.channel.interactionId', '$.data.channel.conversationId',
                '$.data.channel.party.role', '$.data.channel.party.agentId', '$.data.channel.party.userId',
                '$.data.reason'
            ]
        ) AS t
    FROM lines
    -- 1 MiB: transforms.events.MAX_EVENT_BYTES (bigger lines are `oversized` dead letters)
    WHERE strlen(line) <= 1048576 AND json_valid(line)
),
typed AS MATERIALIZED (
    SELECT
        -- `type` without a .v0/.v1 suffix (other versions stay and are not channel types)
        CASE WHEN suffix(v[1], '.v0') OR suffix(v[1], '.v1') THEN v[1][:-4] ELSE v[1] END AS type,
        v[2] AS id,
        v[3] AS source,
        coalesce(nullif(v[6], ''), nullif(v[4], '')) AS channel_id,
        regexp_extract(
            v[5],
            '^\s*(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(Z|z|[+-]\d{2}:?\d{2})\s*$',
            ['y', 'mo', 'd', 'h', 'mi', 's', 'f', 'z']
        ) AS p
    FROM docs
    WHERE t[1] IN ('VARCHAR', 'BIGINT', 'UBIGINT') AND v[2] <> ''
        AND t[2] IN ('VARCHAR', 'BIGINT', 'UBIGINT') AND v[3] <> ''
        AND vcc_text_ok(t[3])
        AND t[4] = 'OBJECT'
        AND t[5] = 'OBJECT'
        AND vcc_text_ok(t[6])
        AND (t[7] IS NULL OR t[7] IN ('NULL', 'OBJECT'))
        AND vcc_text_ok(t[8]) AND vcc_text_ok(t[9]) AND vcc_text_ok(t[10])
        AND vcc_text_ok(t[11]) AND vcc_text_ok(t[12]) AND vcc_text_ok(t[13])
),
stamped AS (
    SELECT
        *,
        epoch_us(
            try(
                make_timestamp(
                    try_cast(p.y AS BIGINT),
                    try_cast(p.mo AS BIGINT),
                    try_cast(p.d AS BIGINT),
                    try_cast(p.h AS BIGINT),
                    try_cast(p.mi AS BIGINT),
                    try_cast(p.s AS BIGINT)
                )
            )
        )
        + CASE WHEN p.f = '' THEN 0 ELSE try_cast(rpad(left(p.f, 6), 6, '0') AS BIGINT) END
        - CASE
            WHEN p.z IN ('Z', 'z') THEN 0
            ELSE (CASE WHEN left(p.z, 1) = '-' THEN -1 ELSE 1 END)
                * (try_cast(substr(p.z, 2, 2) AS BIGINT) * 3600 + try_cast(right(p.z, 2) AS BIGINT) * 60) * 1000000
        END AS ts
    FROM typed
    -- p.y = '': the time is not ISO-8601 with a zone (then every group is empty)
    WHERE type IN (
            'channel.alerted', 'channel.connected', 'channel.held', 'channel.parked', 'channel.interrupted',
            'channel.retrieved', 'channel.unparked', 'channel.resumed', 'channel.connectionfailed',
            'channel.disconnected', 'channel.wrapstarted', 'channel.ended'
        )
        AND channel_id IS NOT NULL AND p.y <> ''
),
checked AS (
    SELECT *
    FROM stamped
    -- within years 1 to 9999 once in UTC (transforms.events.parse_timestamp's range)
    WHERE ts BETWEEN -62135596800000000 AND 253402300799999999
        -- what make_timestamp would carry over (24:00, :60) is refused like the parser does
        AND try_cast(p.y AS INT) >= 1
        AND try_cast(p.h AS INT) <= 23
        AND try_cast(p.mi AS INT) <= 59
        AND try_cast(p.s AS INT) <= 59
        AND (p.z IN ('Z', 'z') OR (try_cast(substr(p.z, 2, 2) AS INT) <= 23 AND try_cast(right(p.z, 2) AS INT) <= 59))
)
SELECT channel_id, source, id, type[9:] AS et, ts
FROM checked;

CREATE OR REPLACE TEMP TABLE channel_metrics AS
WITH dedup AS (
    -- one row per (channel, source, id). When copies differ, transforms.timeline.dedup keeps the
    -- smallest by content: by type, then by the time as text, then by fields that do not
    -- change any metric; so the smallest (type, time as text) gives the kept copy's timing.
    SELECT
        channel_id,
        source,
        id,
        count(*) - 1 AS dropped,
        min({'et': et, 'ts': ts::VARCHAR}) AS kept
    FROM vcc_events
    GROUP BY channel_id, source, id
),
ranked AS (
    SELECT
        channel_id,
        source,
        id,
        dropped,
        kept.et AS et,
        kept.ts::BIGINT AS ts,
        CASE kept.et
            WHEN 'alerted' THEN 0
            WHEN 'connected' THEN 1
            WHEN 'held' THEN 2
            WHEN 'parked' THEN 2
            WHEN 'interrupted' THEN 2
            WHEN 'retrieved' THEN 3
            WHEN 'unparked' THEN 3
            WHEN 'resumed' THEN 3
            WHEN 'connectionfailed' THEN 4
            WHEN 'disconnected' THEN 5
            WHEN 'wrapstarted' THEN 6
            WHEN 'ended' THEN 7
        END AS rank
    FROM dedup
),
ordered AS (
    SELECT
        channel_id,
        dropped,
        et,
        ts,
        lag(et) OVER w AS prev_et,
        lead(ts) OVER w AS next_ts,
        CASE et
            WHEN 'alerted' THEN 'alerting'
            WHEN 'connected' THEN 'connected'
            WHEN 'held' THEN 'held'
            WHEN 'parked' THEN 'parked'
            WHEN 'interrupted' THEN 'interrupted'
            WHEN 'retrieved' THEN 'connected'
            WHEN 'unparked' THEN 'connected'
            WHEN 'resumed' THEN 'connected'
            WHEN 'wrapstarted' THEN 'wrap'
        END AS state
    FROM ranked
    WINDOW w AS (PARTITION BY channel_id ORDER BY ts, rank, id, source)
),
steps AS (
    SELECT
        channel_id,
        dropped,
        et,
        ts,
        state,
        next_ts IS NULL AS is_last,
        CASE WHEN state IS NOT NULL AND next_ts IS NOT NULL THEN vcc_ms(next_ts) - vcc_ms(ts) END AS seg_ms,
        -- does this event fit the state left by the previous one (all earlier events fitting)?
        CASE et
            WHEN 'alerted' THEN prev_et IS NULL
            WHEN 'connected' THEN prev_et IS NULL OR prev_et = 'alerted'
            WHEN 'connectionfailed' THEN prev_et IS NULL OR prev_et = 'alerted'
            WHEN 'held' THEN prev_et IN ('connected', 'retrieved', 'unparked', 'resumed')
            WHEN 'parked' THEN prev_et IN ('connected', 'retrieved', 'unparked', 'resumed')
            WHEN 'interrupted' THEN prev_et IN ('connected', 'retrieved', 'unparked', 'resumed')
            WHEN 'retrieved' THEN prev_et = 'held'
            WHEN 'unparked' THEN prev_et = 'parked'
            WHEN 'resumed' THEN prev_et = 'interrupted'
            WHEN 'disconnected' THEN prev_et IN (
                'alerted', 'connected', 'held', 'parked', 'interrupted', 'retrieved', 'unparked', 'resumed'
            )
            WHEN 'wrapstarted' THEN prev_et IS NULL OR prev_et = 'disconnected'
            WHEN 'ended' THEN prev_et IS DISTINCT FROM 'ended'
        END AS fits
    FROM ordered
),
per_channel AS (
    SELECT
        channel_id,
        count(*) AS event_count,
        sum(dropped)::BIGINT AS duplicate_count,
        count(*) FILTER (WHERE NOT fits) > 0 AS anomalous,
        coalesce(sum(seg_ms) FILTER (WHERE state = 'alerting')::BIGINT, 0) AS alert_ms,
        coalesce(sum(seg_ms) FILTER (WHERE state = 'connected')::BIGINT, 0) AS talk_ms,
        coalesce(sum(seg_ms) FILTER (WHERE state = 'held')::BIGINT, 0) AS hold_ms,
        coalesce(sum(seg_ms) FILTER (WHERE state = 'parked')::BIGINT, 0) AS park_ms,
        coalesce(sum(seg_ms) FILTER (WHERE state = 'interrupted')::BIGINT, 0) AS interruption_ms,
        coalesce(sum(seg_ms) FILTER (WHERE state = 'wrap')::BIGINT, 0) AS wrap_ms,
        coalesce(max(seg_ms) FILTER (WHERE state = 'held'), 0) AS longest_hold_ms,
        coalesce(max(seg_ms) FILTER (WHERE state = 'parked'), 0) AS longest_park_ms,
        coalesce(max(seg_ms) FILTER (WHERE state = 'interrupted'), 0) AS longest_interruption_ms,
        count(*) FILTER (WHERE et = 'held') AS hold_count,
        count(*) FILTER (WHERE et = 'parked') AS park_count,
        count(*) FILTER (WHERE et = 'interrupted') AS interruption_count,
        bool_or(et = 'connectionfailed') AS connection_failed,
        bool_or(et = 'ended') AS is_complete,
        any_value(state) FILTER (WHERE is_last) AS open_state,
        min(ts) AS first_event_us,
        max(ts) AS last_event_us
    FROM steps
    GROUP BY channel_id
)
SELECT
    channel_id,
    anomalous,
    event_count,
    duplicate_count,
    first_event_us,
    last_event_us,
    CASE WHEN NOT anomalous THEN alert_ms END AS alert_ms,
    CASE WHEN NOT anomalous THEN talk_ms + hold_ms + park_ms + interruption_ms END AS connected_ms,
    CASE WHEN NOT anomalous THEN talk_ms END AS talk_ms,
    CASE WHEN NOT anomalous THEN hold_ms END AS hold_ms,
    CASE WHEN NOT anomalous THEN park_ms END AS park_ms,
    CASE WHEN NOT anomalous THEN interruption_ms END AS interruption_ms,
    CASE WHEN NOT anomalous THEN wrap_ms END AS wrap_ms,
    CASE WHEN NOT anomalous THEN talk_ms + hold_ms + wrap_ms END AS handle_ms,
    CASE WHEN NOT anomalous THEN hold_count END AS hold_count,
    CASE WHEN NOT anomalous THEN park_count END AS park_count,
    CASE WHEN NOT anomalous THEN interruption_count END AS interruption_count,
    CASE WHEN NOT anomalous THEN longest_hold_ms END AS longest_hold_ms,
    CASE WHEN NOT anomalous THEN longest_park_ms END AS longest_park_ms,
    CASE WHEN NOT anomalous THEN longest_interruption_ms END AS longest_interruption_ms,
    CASE WHEN NOT anomalous THEN connection_failed END AS connection_failed,
    CASE WHEN NOT anomalous THEN is_complete END AS is_complete,
    CASE WHEN NOT anomalous THEN open_state END AS open_state
FROM per_channel;

CREATE OR REPLACE TEMP TABLE reference_stats AS
SELECT
    (SELECT count(*) FROM vcc_events) AS channel_events,
    (SELECT sum(duplicate_count) FROM channel_metrics) AS duplicates_dropped,
    (SELECT count(*) FROM channel_metrics) AS channels,
    (SELECT count(*) FILTER (WHERE anomalous) FROM channel_metrics) AS anomalous_channels;

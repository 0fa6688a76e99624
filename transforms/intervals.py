"""Interval reports: one agent's ``agent_intervals`` rows, and ``service_intervals`` as an
additive aggregation of small per-interaction and per-channel contributions.

Pure Python (no Beam), the one rule set used by the batch and the streaming pipelines.
Rows are value tuples in the column order of :mod:`schemas.outputs` (:data:`AGENT_INTERVAL_COLUMNS`,
:data:`SERVICE_INTERVAL_COLUMNS`); timestamps are integers (microseconds since epoch, UTC).

Grid and time
    - A fixed grid of ``interval_ms`` (15, 30 or 60 minutes) aligned on the UTC epoch:
      interval ``k`` is ``[k * interval, (k + 1) * interval)``.
    - Every time is first floored to whole milliseconds (``t // 1000``, as every duration
      of the project, :func:`transforms.timeline.ms_between`), and a duration ``[a, b)``
      puts ``min(b, boundary) - a`` milliseconds in each interval it crosses: the pieces
      add up exactly to the unsplit duration (``b // 1000 - a // 1000``), whatever the
      grid. A segment ending exactly on a boundary puts nothing in the next interval.
    - Counts are attributed to the interval of one instant, named per column.

Agent intervals (``agent_intervals``), from the agent core's rows and the agent's channel work
    - Presence time is the login sessions' time of :func:`transforms.presence.sessionize_agent`,
      split: every non-``loggedOut`` presence interval, an open one up to the end of its
      open session (the agent's last known time, as ``agent_sessions.duration_ms``).
      Time of INFERRED sessions (channel work outside every login session: an agent
      without presence data, wrap continuing past a logout) is logged-in time of unknown
      presence, in ``other_presence_ms``, exactly as ``agent_sessions`` counts it. So the
      presence columns of an agent's intervals sum to those of its ``agent_sessions``
      rows, and every millisecond of channel work lies in logged-in time:
      ``busy_ms <= logged_in_ms`` on every row.
    - Channel time: the agent's own agent-role segments (the agent core's rule, one copy
      per ``(channel_id, seq)``), closed ones only (an open segment counts in no duration,
      as in the channel totals), split: ``alert_ms`` (alerting), ``talk_ms`` (connected),
      ``hold_ms``, ``park_ms``, ``interruption_ms``, ``wrap_ms``; their sums over the
      intervals are the ``channel_sessions`` totals of the agent's channels.
    - ``busy_ms``: the wall-clock union of the closed connected/held/parked/interrupted/wrap
      time of all its channels (concurrent channels count once; sums to
      ``agent_sessions.busy_ms``); ``active_channel_ms`` the same summed per channel
      (``= talk + hold + park + interruption + wrap``); ``max_concurrency`` the most such
      channels at one millisecond of the interval (0 when none).
    - ``idle_ms``: ready time with no closed alerting, active or wrap time of any channel.
    - Counts: ``offers`` by the start of the alerting segment (``alerted_at``),
      ``answered`` by the start of the first connected segment (``connected_at``),
      ``missed`` by the end of a closed alerting segment of a channel that never
      connected, ``handled`` and ``handle_ms_of_handled`` by ``ended_at`` of a channel
      that connected and ended (its whole ``handle_ms``).
    - A row exists for every interval with any millisecond of presence or channel time or
      any count; zero-length segments and presence intervals make none.

Service intervals (``service_intervals``)
    - Contributions are ``{interval_start_us: values}`` dicts (values in the order of
      :data:`SERVICE_VALUE_COLUMNS`), merged by :func:`merge_service` (a sum per column, the
      maximum for ``max_time_to_answer_ms``): associative and commutative, so they can be
      combined in any grouping and order.
    - Per interaction (``interactions`` rows), by the interval of ``started_at``: inbound
      ones count in ``inbound`` and in one of ``answered``, ``abandoned`` (the three
      abandoned outcomes) or ``in_progress``; answered ones add ``time_to_answer_ms`` to
      ``sum_`` and ``max_time_to_answer_ms`` and count in ``answered_within_{X}s`` when
      ``time_to_answer_ms <= X s``; abandoned ones add ``abandon_ms`` to ``sum_abandon_ms``,
      count in ``abandoned_within_{X}s`` when ``abandon_ms <= X s`` and in
      ``short_abandoned`` when ``abandon_ms < short_abandon_ms``; outbound ones in
      ``outbound`` (and ``outbound_connected``); every interaction adds its ``transfers``,
      ``consults`` and ``conferences``.
    - Per channel, by the interval of ``ended_at``: every agent-role channel that connected
      and ended counts in ``handled`` and adds its ``handle_ms`` (agent channels without an
      agent id included).
    - A row exists for every interval with any contribution.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import itemgetter

from schemas.outputs import AGENT_INTERVALS, SERVICE_INTERVALS, SERVICE_THRESHOLDS
from transforms.presence import AWAY, EXTENDED_AWAY, LOGGED_OUT, READY, WORK_COLUMNS, agent_segments

#: The interval lengths ``--interval-minutes`` accepts, and the default.
INTERVAL_MINUTES = (15, 30, 60)
DEFAULT_INTERVAL_MINUTES = 15
#: ``--short-abandon-seconds``: an abandon under this many seconds is a short abandon.
DEFAULT_SHORT_ABANDON_SECONDS = 5

#: ``agent_intervals`` / ``service_intervals`` columns, in the order of a row's value tuple.
AGENT_INTERVAL_COLUMNS = tuple(AGENT_INTERVALS.names)
SERVICE_INTERVAL_COLUMNS = tuple(SERVICE_INTERVALS.names)
#: The columns after ``agent_id, user_id, interval_start, interval_end``: an interval's values.
AGENT_VALUE_COLUMNS = AGENT_INTERVAL_COLUMNS[4:]
#: The columns after ``interval_start, interval_end``: a service contribution's values.
SERVICE_VALUE_COLUMNS = SERVICE_INTERVAL_COLUMNS[2:]

#: Service contributions: interval start (µs) -> values in :data:`SERVICE_VALUE_COLUMNS` order.
ServiceTotals = dict[int, list[int]]

_A = {name: i for i, name in enumerate(AGENT_VALUE_COLUMNS)}
_S = {name: i for i, name in enumerate(SERVICE_VALUE_COLUMNS)}
_AGENT_WIDTH = len(AGENT_VALUE_COLUMNS)
_SERVICE_WIDTH = len(SERVICE_VALUE_COLUMNS)
_LOGGED_IN = _A["logged_in_ms"]
_PRESENCE = {READY: _A["ready_ms"], AWAY: _A["away_ms"], EXTENDED_AWAY: _A["extended_away_ms"]}
_OTHER = _A["other_presence_ms"]
_ACTIVE = _A["active_channel_ms"]
#: Segment state -> the columns a closed piece of it adds to.
_STATE_COLUMNS = {state: (_A[column], _ACTIVE) for state, column in WORK_COLUMNS.items()}
_STATE_COLUMNS["alerting"] = (_A["alert_ms"],)
_MAX_TTA = _S["max_time_to_answer_ms"]
_ABANDONED = frozenset({"abandoned_before_offer", "abandoned_while_alerting", "abandoned_after_offer"})
_THRESHOLDS_MS = tuple(s * 1000 for s in SERVICE_THRESHOLDS)
_ANSWERED_WITHIN = tuple(_S[f"answered_within_{s}s"] for s in SERVICE_THRESHOLDS)
_ABANDONED_WITHIN = tuple(_S[f"abandoned_within_{s}s"] for s in SERVICE_THRESHOLDS)
(
    _INBOUND, _ANSWERED, _ABANDONED_COUNT, _SHORT, _IN_PROGRESS, _SUM_TTA, _SUM_ABANDON,
    _OUTBOUND, _OUTBOUND_CONNECTED, _TRANSFERS, _CONSULTS, _CONFERENCES,
) = (
    _S[c]
    for c in (
        "inbound", "answered", "abandoned", "short_abandoned", "in_progress", "sum_time_to_answer_ms",
        "sum_abandon_ms", "outbound", "outbound_connected", "transfers", "consults", "conferences",
    )
)  # fmt: skip
#: What :func:`service_interactions` reads of an interaction: these values, in this order.
INTERACTION_FIELDS = (
    "started_at",
    "direction",
    "outcome",
    "time_to_answer_ms",
    "abandon_ms",
    "transfers",
    "consults",
    "conferences",
)
#: What :func:`service_handled` reads of a channel: these values, in this order.
HANDLED_FIELDS = ("party_role", "connected_at", "ended_at", "handle_ms")
_interaction_of_dict = itemgetter(*INTERACTION_FIELDS)
_handled_of_dict = itemgetter(*HANDLED_FIELDS)


def interval_ms(minutes: int) -> int:
    """The grid step of ``--interval-minutes`` in milliseconds; only :data:`INTERVAL_MINUTES`."""
    if minutes not in INTERVAL_MINUTES:
        raise ValueError(f"interval minutes must be one of {', '.join(map(str, INTERVAL_MINUTES))}, got {minutes}")
    return minutes * 60_000


def _spread(acc: dict[int, list[int]], start: int, end: int, columns: Sequence[int], step: int) -> None:
    """Add ``[start, end)`` (ms) to ``columns`` of each interval it crosses, split at boundaries."""
    k = start // step
    while start < end:
        stop = (k + 1) * step
        if stop > end:
            stop = end
        row = acc.get(k)
        if row is None:
            row = acc[k] = [0] * _AGENT_WIDTH
        for c in columns:
            row[c] += stop - start
        start = stop
        k += 1


def _count(acc: dict[int, list[int]], at_ms: int, column: int, value: int, step: int) -> None:
    k = at_ms // step
    row = acc.get(k)
    if row is None:
        row = acc[k] = [0] * _AGENT_WIDTH
    row[column] += value


def _union(pieces: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Disjoint blocks covering ``pieces`` (``(start, end)`` ms, ``start < end``), in order."""
    blocks: list[tuple[int, int]] = []
    cur_s = cur_e = None
    for s, e in sorted(pieces):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                blocks.append((cur_s, cur_e))
            cur_s, cur_e = s, e
        elif e > cur_e:
            cur_e = e
    if cur_e is not None:
        blocks.append((cur_s, cur_e))
    return blocks


def _minus(pieces: list[tuple[int, int]], blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``pieces`` (disjoint, in order) without the time of ``blocks`` (disjoint, in order)."""
    out: list[tuple[int, int]] = []
    j = 0
    for s, e in pieces:
        while j < len(blocks) and blocks[j][1] <= s:
            j += 1
        pos, i = s, j
        while pos < e and i < len(blocks) and blocks[i][0] < e:
            bs, be = blocks[i]
            if bs > pos:
                out.append((pos, bs))
            if be > pos:
                pos = be
            i += 1
        if pos < e:
            out.append((pos, e))
    return out


def _max_concurrency(acc: dict[int, list[int]], pieces: list[tuple[int, int]], step: int) -> None:
    """``max_concurrency`` of every interval: the most ``pieces`` covering one millisecond."""
    column = _A["max_concurrency"]
    changes = sorted([(s, 1) for s, _ in pieces] + [(e, -1) for _, e in pieces])  # ends first at a tie
    level = 0
    for i, (t, delta) in enumerate(changes):
        level += delta
        if level <= 0 or i + 1 == len(changes):
            continue
        nxt = changes[i + 1][0]
        if nxt <= t:
            continue
        for k in range(t // step, (nxt - 1) // step + 1):
            row = acc[k]  # the pieces' time made the row
            if level > row[column]:
                row[column] = level


def _busy(acc: dict[int, list[int]], pieces: list[tuple[int, int]], step: int) -> None:
    """``busy_ms`` (the union of ``pieces``) and ``max_concurrency`` of every interval.

    The union's blocks are independent: a block whose pieces only touch (each starts at or
    after the end of the ones before it, as the segments of one channel do) has one piece at
    every millisecond, so only blocks with an overlap need :func:`_max_concurrency`."""
    busy, column = (_A["busy_ms"],), _A["max_concurrency"]
    block: list[tuple[int, int]] = []
    overlap = False
    cur_s = cur_e = 0
    for piece in sorted(pieces):
        s, e = piece
        if block and s <= cur_e:  # joins the block (touching included, as in _union)
            if s < cur_e:
                overlap = True
            if e > cur_e:
                cur_e = e
            block.append(piece)
            continue
        if block:
            _block(acc, block, overlap, cur_s, cur_e, busy, column, step)
        block, overlap, cur_s, cur_e = [piece], False, s, e
    if block:
        _block(acc, block, overlap, cur_s, cur_e, busy, column, step)


def _block(
    acc: dict[int, list[int]],
    block: list[tuple[int, int]],
    overlap: bool,
    start: int,
    end: int,
    busy: tuple[int],
    column: int,
    step: int,
) -> None:
    """One block ``[start, end)`` of :func:`_busy`: its busy time and its concurrency."""
    _spread(acc, start, end, busy, step)
    if overlap:
        _max_concurrency(acc, block, step)
        return
    for k in range(start // step, (end - 1) // step + 1):
        row = acc[k]  # the pieces' time made the row
        if row[column] < 1:
            row[column] = 1


def agent_intervals(
    agent_id: str,
    presence: Iterable[dict],
    sessions: Iterable[dict],
    channel_segments: Iterable[dict | Sequence],
    channels: Iterable[dict] = (),
    *,
    interval_ms: int,
) -> list[tuple]:
    """ONE agent's ``agent_intervals`` rows (value tuples in :data:`AGENT_INTERVAL_COLUMNS`
    order, by interval start).

    ``presence`` and ``sessions``: the agent's ``agent_presence`` and ``agent_sessions`` rows
    as :func:`~transforms.presence.sessionize_agent` makes them (dicts). ``channel_segments``:
    what ``sessionize_agent`` takes (row dicts or :data:`~transforms.presence.WORK_SEGMENT_FIELDS`
    value sequences; only the agent's own agent-role ones are used). ``channels``: its
    channels' ``channel_sessions`` values as dicts with at least ``party_role, agent_id,
    connected_at, ended_at, handle_ms`` (for ``handled``). ``interval_ms``: the grid step.
    See the module docstring for the rules.
    """
    step = interval_ms
    acc: dict[int, list[int]] = {}
    sessions = list(sessions)
    user_id = next((s["user_id"] for s in sessions if s["user_id"] is not None), None)
    open_end = None  # end (ms) of the open login session: the agent's last known time
    ready: list[tuple[int, int]] = []
    for s in sessions:
        if s["is_inferred"]:
            _spread(acc, s["login_at"] // 1000, s["logout_at"] // 1000, (_LOGGED_IN, _OTHER), step)
        elif s["is_open"]:
            open_end = s["login_at"] // 1000 + s["duration_ms"]
    for row in presence:
        ptype = row["presence_type"]
        if ptype == LOGGED_OUT:
            continue
        start, end = row["start_at"] // 1000, row["end_at"]
        end = open_end if end is None else end // 1000
        if end is None or end <= start:
            continue
        column = _PRESENCE.get(ptype, _OTHER)
        _spread(acc, start, end, (_LOGGED_IN, column), step)
        if column == _PRESENCE[READY]:
            ready.append((start, end))

    active: list[tuple[int, int]] = []
    occupied: list[tuple[int, int]] = []
    connected_at: dict = {}  # channel id -> start (ms) of its first connected segment
    alerts: list[tuple[int, int | None, object]] = []  # (start, end or None, channel id)
    for a, b, state, channel in agent_segments(agent_id, channel_segments):
        a //= 1000
        if state == "alerting":
            alerts.append((a, None if b is None else b // 1000, channel))
        elif state == "connected" and (channel not in connected_at or a < connected_at[channel]):
            connected_at[channel] = a
        if b is None:
            continue  # open: in no duration
        b //= 1000
        columns = _STATE_COLUMNS.get(state)
        if columns is None or b <= a:
            continue
        k = a // step
        if b <= (k + 1) * step:  # within one interval (the usual case): _spread inlined
            row = acc.get(k)
            if row is None:
                row = acc[k] = [0] * _AGENT_WIDTH
            for c in columns:
                row[c] += b - a
        else:
            _spread(acc, a, b, columns, step)
        occupied.append((a, b))
        if state != "alerting":
            active.append((a, b))
    _busy(acc, active, step)
    for piece in _minus(sorted(ready), _union(occupied)):
        _spread(acc, *piece, (_A["idle_ms"],), step)

    for a, b, channel in alerts:
        _count(acc, a, _A["offers"], 1, step)
        if b is not None and channel not in connected_at:
            _count(acc, b, _A["missed"], 1, step)
    for a in connected_at.values():
        _count(acc, a, _A["answered"], 1, step)
    for ch in channels:
        if ch.get("party_role") != "agent" or ch.get("agent_id") != agent_id:
            continue
        ended = ch.get("ended_at")
        if ch.get("connected_at") is None or ended is None:
            continue
        _count(acc, ended // 1000, _A["handled"], 1, step)
        _count(acc, ended // 1000, _A["handle_ms_of_handled"], ch.get("handle_ms") or 0, step)

    us = step * 1000
    return [(agent_id, user_id, k * us, (k + 1) * us, *acc[k]) for k in sorted(acc)]


# --- service intervals ---------------------------------------------------------------------


def _service_row(totals: ServiceTotals, at_us: int, step: int) -> list[int]:
    start = at_us // 1000 // step * step * 1000
    row = totals.get(start)
    if row is None:
        row = totals[start] = [0] * _SERVICE_WIDTH
    return row


def service_interactions(
    interactions: Iterable[Sequence], *, interval_ms: int, short_abandon_ms: int, into: ServiceTotals | None = None
) -> ServiceTotals:
    """The contributions of interactions, each as its :data:`INTERACTION_FIELDS` values
    (:func:`interaction_fields` of an ``interactions`` row dict), added to ``into`` (a new
    dict by default), which is returned."""
    totals: ServiceTotals = {} if into is None else into
    for started, direction, outcome, tta, waited, transfers, consults, conferences in interactions:
        if started is None:
            continue
        row = _service_row(totals, started, interval_ms)
        if direction == "inbound":
            row[_INBOUND] += 1
            if outcome == "answered":
                row[_ANSWERED] += 1
                if tta is not None:
                    row[_SUM_TTA] += tta
                    if tta > row[_MAX_TTA]:
                        row[_MAX_TTA] = tta
                    for limit, column in zip(_THRESHOLDS_MS, _ANSWERED_WITHIN, strict=True):
                        row[column] += tta <= limit
            elif outcome in _ABANDONED:
                row[_ABANDONED_COUNT] += 1
                if waited is not None:
                    row[_SUM_ABANDON] += waited
                    row[_SHORT] += waited < short_abandon_ms
                    for limit, column in zip(_THRESHOLDS_MS, _ABANDONED_WITHIN, strict=True):
                        row[column] += waited <= limit
            else:
                row[_IN_PROGRESS] += 1
        elif direction == "outbound":
            row[_OUTBOUND] += 1
            row[_OUTBOUND_CONNECTED] += outcome == "connected"
        row[_TRANSFERS] += transfers or 0
        row[_CONSULTS] += consults or 0
        row[_CONFERENCES] += conferences or 0
    return totals


def service_handled(
    channels: Iterable[Sequence], *, interval_ms: int, into: ServiceTotals | None = None
) -> ServiceTotals:
    """The ``handled`` contributions of channels, each as its :data:`HANDLED_FIELDS` values
    (``party_role, connected_at, ended_at, handle_ms``), added to ``into`` (a new dict by
    default), which is returned."""
    totals: ServiceTotals = {} if into is None else into
    handled, handle_ms = _S["handled"], _S["handle_ms_of_handled"]
    for role, connected, ended, handle in channels:
        if role == "agent" and connected is not None and ended is not None:
            row = _service_row(totals, ended, interval_ms)
            row[handled] += 1
            row[handle_ms] += handle or 0
    return totals


def interaction_fields(interaction: dict) -> tuple:
    """An ``interactions`` row dict's :data:`INTERACTION_FIELDS` values."""
    return _interaction_of_dict(interaction)


def handled_fields(channel: dict) -> tuple:
    """A ``channel_sessions`` row dict's :data:`HANDLED_FIELDS` values."""
    return _handled_of_dict(channel)


def merge_service(into: ServiceTotals, other: ServiceTotals) -> ServiceTotals:
    """``other`` added to ``into`` (sums; the maximum of ``max_time_to_answer_ms``); returns ``into``."""
    for start, values in other.items():
        row = into.get(start)
        if row is None:
            into[start] = list(values)
            continue
        for i, v in enumerate(values):
            if i == _MAX_TTA:
                if v > row[i]:
                    row[i] = v
            else:
                row[i] += v
    return into


def merge_all(contributions: Iterable[ServiceTotals]) -> ServiceTotals:
    """Every contribution merged into a new dict (the combine function of the batch job)."""
    total: ServiceTotals = {}
    for c in contributions:
        merge_service(total, c)
    return total


def service_rows(totals: ServiceTotals, *, interval_ms: int) -> list[tuple]:
    """``service_intervals`` rows (value tuples in :data:`SERVICE_INTERVAL_COLUMNS` order) by
    interval start."""
    us = interval_ms * 1000
    return [(start, start + us, *totals[start]) for start in sorted(totals)]


# --- agent interval rows made in parts (streaming) -------------------------------------------

_MAX_CONCURRENCY = 4 + _A["max_concurrency"]


def merge_agent_rows(into: dict[int, list], rows: Iterable[Sequence]) -> dict[int, list]:
    """``agent_intervals`` rows of one agent computed in parts over disjoint stretches of time,
    merged per interval into ``into`` (interval start -> row values as a list): sums, the
    maximum of ``max_concurrency``, the first known ``user_id``; returns ``into``."""
    for row in rows:
        cur = into.get(row[2])
        if cur is None:
            into[row[2]] = list(row)
            continue
        if cur[1] is None:
            cur[1] = row[1]
        for i in range(4, len(row)):
            if i == _MAX_CONCURRENCY:
                if row[i] > cur[i]:
                    cur[i] = row[i]
            else:
                cur[i] += row[i]
    return into


def take_final(held: dict[int, list], until: int) -> list[tuple]:
    """The rows of ``held`` whose interval ends at or before ``until`` (µs), removed from it,
    by interval start."""
    done = sorted(start for start, row in held.items() if row[3] <= until)
    return [tuple(held.pop(start)) for start in done]

"""Agent sessionization: one agent's presence events and channel segments in, its rows out.

Pure Python (no Beam, no pandas), the one rule set used by the batch and the streaming
pipelines. Rows are plain dicts keyed by the column names of ``schemas.outputs``
(``AGENT_PRESENCE`` and ``AGENT_SESSIONS``); timestamps are integers (microseconds since
epoch, UTC); durations are whole milliseconds, ``end // 1000 - start // 1000``
(:func:`transforms.timeline.ms_between`), so contiguous pieces always add up exactly.

Presence (``agent_presence``)
    - Presence events are deduplicated on ``(source, id)`` and ordered by ``(ts, id)``;
      arrival order does not matter.
    - Each change starts an interval and ends the previous one; the last interval is open
      (``end_at``/``duration_ms`` None, ``is_open`` True).
    - A change that repeats the current presence exactly (same normalized type, same
      ``presence_id``, same subcategory; e.g. a logout notified twice with two ids) is
      absorbed: it starts no interval (it still counts as a sign of life, see below). A
      change of ``presence_id`` or subcategory within one type DOES start a new interval.
    - ``presence_type`` is normalized by :func:`normalize_presence_type`; unknown types are
      kept raw and counted in ``other_presence_ms``.

Login sessions (``agent_sessions``, ``is_inferred`` False)
    - A session runs from the first non-``loggedOut`` presence to the next ``loggedOut``
      (``logout_at``). Data starting mid-session (first event ``away``, ``ready``, ...)
      opens a session at that first event. ``loggedOut`` outside a session changes nothing.
    - With no ``loggedOut`` after it the session is open: ``is_open`` True, ``logout_at``
      None and ``duration_ms`` runs up to the agent's last known time: the latest of its
      last presence event (absorbed repeats included) and its last segment time (end of a
      closed segment, start of an open one).
    - ``ready_ms + away_ms + extended_away_ms + other_presence_ms == duration_ms`` always:
      closed sessions sum their presence intervals; open sessions sum their closed
      intervals plus the open one up to the session's end used for ``duration_ms``.
    - ``session_id`` is ``"{agent_id}:{login_at ISO-8601 UTC, microseconds}"``
      (``":inferred"`` appended for inferred rows, ``"#2"``, ``"#3"``... on the unlikely
      collision of two identical ids).

Channel work per session
    - Only the agent's own agent-role segments count (``party_role == "agent"`` and
      ``agent_id`` equal to this agent). Segment copies with the same ``(channel_id, seq)``
      count once (the closed copy wins over an open one).
    - Each closed segment is clipped to the half-open session ``[login_at, logout_at)``;
      a segment spanning a boundary is split, so no millisecond is counted twice.
    - ``talk_ms`` / ``hold_ms`` / ``park_ms`` / ``interruption_ms`` / ``wrap_ms`` sum the
      clipped connected / held / parked / interrupted / wrap pieces;
      ``handle_ms = talk + hold + wrap``. Open segments (``end_at`` None) count in no
      duration anywhere (same rule as the channel totals).
    - ``channels_handled`` counts the channels whose first closed ``connected`` segment
      starts inside the session: each channel is counted in exactly one row.
    - ``busy_ms`` is the wall-clock union of the clipped closed pieces in states
      connected/held/parked/interrupted/wrap (concurrent channels count once);
      ``occupancy = busy_ms / duration_ms`` (0.0 when the duration is 0), within [0, 1].

Inferred sessions (``is_inferred`` True)
    - Segment time outside every login session (an agent without presence data, work
      before the first login, between sessions, or after a logout such as wrap that
      continues past it) is never dropped: the uncovered pieces of each gap between
      login sessions are grouped into stretches, a new stretch starting whenever the agent
      is idle for more than ``idle_split_ms`` (default 4 h; None: one stretch per gap).
      Every state, alerting included, and the start of an open segment mark the agent
      as present.
    - Each stretch is one row from its earliest to its latest uncovered time:
      ``login_at`` = earliest, ``logout_at`` = latest (there is no ``loggedOut``),
      ``is_open`` False, ``duration_ms`` between the two, and all of it in
      ``other_presence_ms`` (the presence is unknown) so the per-type identity holds.

Odd input is ignored, not raised on: presence events of other types or agents, and segment
dicts without an integer ``start_at``. Segment dicts must otherwise carry the keys the
batch and streaming shells always send (``channel_id``, ``seq``, ``end_at``, ...; a missing
one is a ``KeyError``). An agent with no presence events and no usable segments gets two
empty lists.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from operator import attrgetter, itemgetter
from typing import NamedTuple

from transforms.events import PRESENCE_TYPE, Event
from transforms.timeline import dedup, ms_between

READY = "ready"
AWAY = "away"
EXTENDED_AWAY = "extendedAway"
LOGGED_OUT = "loggedOut"

#: Default idle time (ms) that splits uncovered channel work into separate inferred sessions.
DEFAULT_IDLE_SPLIT_MS = 4 * 3600 * 1000

#: Segment states that make an agent busy, and the session column each one sums into.
WORK_COLUMNS = {
    "connected": "talk_ms",
    "held": "hold_ms",
    "parked": "park_ms",
    "interrupted": "interruption_ms",
    "wrap": "wrap_ms",
}
_KNOWN_TYPES = {"ready": READY, "away": AWAY, "extendedaway": EXTENDED_AWAY, "loggedout": LOGGED_OUT}
_PRESENCE_COLUMNS = {READY: "ready_ms", AWAY: "away_ms", EXTENDED_AWAY: "extended_away_ms"}
_INF = float("inf")
_FOLD = str.maketrans("", "", " _-\t")  # deletes what normalize_presence_type ignores
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AgentResult(NamedTuple):
    """Rows of one agent: ``agent_presence`` rows and ``agent_sessions`` rows, by start time."""

    presence: list[dict]
    sessions: list[dict]


#: A channel segment as the agent core also takes it: these values in this order (what the
#: batch job ships to its agents stage) instead of a ``channel_segments`` row dict.
WORK_SEGMENT_FIELDS = ("channel_id", "agent_id", "party_role", "seq", "state", "start_at", "end_at")
_WORK_SEGMENT_WIDTH = len(WORK_SEGMENT_FIELDS)

#: A segment clipped to one session or gap: ``(start, end, state, channel_id, closed)``.
#: ``closed`` False: an open segment's start (``end == start``). Plain tuples, not a
#: NamedTuple: an agent has hundreds of them.
_Piece = tuple[int, int, str | None, str | None, bool]
#: A usable segment of the agent: ``(start_at, end_at, state, channel_id)``.
_Segment = tuple[int, int | None, str | None, str | None]
_START = itemgetter(0)
_BOUNDS = itemgetter(0, 1)
_PRESENCE_ORDER = attrgetter("ts", "id", "source")


def normalize_presence_type(raw: str | None) -> str:
    """Known presence types to lower camel case, ignoring case, spaces, ``_`` and ``-``.

    ``READY`` -> ``ready``, ``Extended Away``/``extended_away`` -> ``extendedAway``,
    ``LoggedOut``/``logged_out`` -> ``loggedOut``. Anything else is returned unchanged
    (never dropped); None becomes ``"unknown"``.
    """
    if raw is None:
        return "unknown"
    text = str(raw)
    folded = text.translate(_FOLD).lower()
    return _KNOWN_TYPES.get(folded, text)


def _iso(us: int) -> str:
    try:
        return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (OverflowError, ValueError, TypeError):
        return str(us)


def _presence_rows(agent_id: str, events: list[Event]) -> list[dict]:
    """Ordered, deduplicated presence events to interval rows (the last one open)."""
    rows: list[dict] = []
    ident = None
    for ev in events:
        ptype = normalize_presence_type(ev.presence_type)
        cur = (ptype, ev.presence_id, ev.presence_subcategory)
        if rows and cur == ident:
            if rows[-1]["user_id"] is None:
                rows[-1]["user_id"] = ev.user_id
            continue
        if rows:
            prev = rows[-1]
            prev["end_at"] = ev.ts
            prev["duration_ms"] = ms_between(prev["start_at"], ev.ts)
            prev["is_open"] = False
        ident = cur
        rows.append(
            {
                "agent_id": agent_id,
                "user_id": ev.user_id,
                "presence_id": ev.presence_id,
                "presence_type": ptype,
                "presence_subcategory": ev.presence_subcategory,
                "presence_description": ev.presence_description,
                "start_at": ev.ts,
                "end_at": None,
                "duration_ms": None,
                "is_open": True,
            }
        )
    return rows


class AgentSegments(list):
    """The usable segments of ONE agent, as :func:`agent_segments` finds them: given as
    ``channel_segments`` to :func:`sessionize_agent` or
    :func:`transforms.intervals.agent_intervals` for the same agent, they are used as they are
    (a shell that calls both filters the agent's segments once)."""

    __slots__ = ("agent_id",)

    def __init__(self, agent_id: str, segments: Iterable[_Segment]) -> None:
        super().__init__(segments)
        self.agent_id = agent_id


def agent_segments(agent_id: str, channel_segments: Iterable[dict | Sequence]) -> AgentSegments:
    """The agent's own agent-role segments with a usable start, one copy per (channel, seq);
    a missing ``end_at`` is read as None (an open segment), like every other missing key.
    A segment is a row dict or a value sequence in :data:`WORK_SEGMENT_FIELDS` order;
    anything else is skipped. An :class:`AgentSegments` of this agent is returned as it is."""
    if type(channel_segments) is AgentSegments and channel_segments.agent_id == agent_id:
        return channel_segments
    keyed: dict[tuple, _Segment] = {}
    loose: list[_Segment] = []
    for seg in channel_segments:
        if isinstance(seg, (list, tuple)) and len(seg) == _WORK_SEGMENT_WIDTH:  # the usual case first
            channel_id, agent, role, seq, state, start, end = seg
            if role != "agent" or agent != agent_id:
                continue
        elif isinstance(seg, dict):
            if seg.get("party_role") != "agent" or seg.get("agent_id") != agent_id:
                continue
            channel_id, seq, state = seg.get("channel_id"), seg.get("seq"), seg.get("state")
            start, end = seg.get("start_at"), seg.get("end_at")
        else:
            continue
        if type(start) is not int and not _is_time(start):
            continue
        if end is not None and type(end) is not int and not _is_time(end):
            continue
        piece = (start, end, state, channel_id)
        if channel_id is None or seq is None:
            loose.append(piece)
            continue
        key = (channel_id, seq)
        cur = keyed.setdefault(key, piece)
        if cur is not piece and _copy_rank(piece) > _copy_rank(cur):
            keyed[key] = piece
    return AgentSegments(agent_id, [*keyed.values(), *loose])


def _is_time(value: object) -> bool:
    """An int that is not a bool (``type(value) is int`` is the quick test for the usual case)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _copy_rank(seg: _Segment) -> tuple:
    start, end, state, _ = seg
    return (end is not None, end if end is not None else -1, -start, str(state))


def _work(pieces: list[_Piece], first_connect: dict) -> dict:
    """Channel-work columns of one session from its clipped pieces; ``first_connect``: channel
    id -> start of its first closed connected segment (the piece starting there counts it)."""
    out = dict.fromkeys(WORK_COLUMNS.values(), 0)
    busy: list[_Piece] = []
    handled = set()
    for piece in pieces:
        start, end, state, channel_id, closed = piece
        if not closed:
            continue
        col = WORK_COLUMNS.get(state)
        if col is not None:
            out[col] += end // 1000 - start // 1000  # ms_between(start, end)
            busy.append(piece)
        if state == "connected" and first_connect.get(channel_id) == start:
            handled.add(channel_id)
    busy.sort(key=_START)  # pieces starting together merge into one block whatever their order
    busy_ms = 0
    cur_s = cur_e = None
    for s, e, _, _, _ in busy:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                busy_ms += ms_between(cur_s, cur_e)
            cur_s, cur_e = s, e
        elif e > cur_e:
            cur_e = e
    if cur_e is not None:
        busy_ms += ms_between(cur_s, cur_e)
    out["handle_ms"] = out["talk_ms"] + out["hold_ms"] + out["wrap_ms"]
    out["busy_ms"] = busy_ms
    out["channels_handled"] = len(handled)
    return out


def _session_row(
    agent_id: str,
    user_id: str | None,
    session_id: str,
    login: int,
    logout: int | None,
    duration: int,
    presence_ms: dict,
    work: dict,
    is_open: bool,
    is_inferred: bool,
) -> dict:
    occupancy = work["busy_ms"] / duration if duration > 0 else 0.0
    return {
        "agent_id": agent_id,
        "user_id": user_id,
        "session_id": session_id,
        "login_at": login,
        "logout_at": logout,
        "duration_ms": duration,
        "ready_ms": presence_ms.get("ready_ms", 0),
        "away_ms": presence_ms.get("away_ms", 0),
        "extended_away_ms": presence_ms.get("extended_away_ms", 0),
        "other_presence_ms": presence_ms.get("other_presence_ms", 0),
        "channels_handled": work["channels_handled"],
        "talk_ms": work["talk_ms"],
        "hold_ms": work["hold_ms"],
        "park_ms": work["park_ms"],
        "interruption_ms": work["interruption_ms"],
        "wrap_ms": work["wrap_ms"],
        "handle_ms": work["handle_ms"],
        "busy_ms": work["busy_ms"],
        "occupancy": min(1.0, max(0.0, occupancy)),
        "is_open": is_open,
        "is_inferred": is_inferred,
    }


def sessionize_agent(
    agent_id: str,
    presence_events: Iterable[Event],
    channel_segments: Iterable[dict | Sequence],
    channel_sessions: Iterable[dict] = (),
    *,
    idle_split_ms: int | None = DEFAULT_IDLE_SPLIT_MS,
) -> AgentResult:
    """All presence events and channel segments of ONE agent (any order, duplicates allowed).

    ``presence_events``: ``agent.presencechanged`` events of the agent (others ignored).
    ``channel_segments``: ``channel_segments`` row dicts (``sessionize_channel(...).segments``), or
    value sequences in :data:`WORK_SEGMENT_FIELDS` order; any channel's may be passed, only
    this agent's agent-role ones are used.
    ``channel_sessions``: optional ``channel_sessions`` rows, used only for ``user_id``
    when no presence event carries one. ``idle_split_ms``: idle time splitting inferred
    sessions (None: one per gap between login sessions). See the module docstring for the
    rules. Never raises on odd input.
    """
    events = [
        ev for ev in presence_events if ev.type == PRESENCE_TYPE and (ev.key == agent_id or ev.agent_id == agent_id)
    ]
    distinct, _ = dedup(events)
    distinct.sort(key=_PRESENCE_ORDER)
    presence = _presence_rows(agent_id, distinct)
    segments = agent_segments(agent_id, channel_segments)
    if not presence and not segments:
        return AgentResult([], [])

    agent_user = next((ev.user_id for ev in distinct if ev.user_id is not None), None)
    if agent_user is None:
        fallback = [
            (cs.get("first_event_at") or 0, str(cs.get("user_id")))
            for cs in channel_sessions
            if isinstance(cs, dict)
            and cs.get("party_role") == "agent"
            and cs.get("agent_id") == agent_id
            and cs.get("user_id") is not None
        ]
        agent_user = min(fallback)[1] if fallback else None

    # Login sessions from presence intervals: (login, logout or None, first row, end row).
    logins: list[tuple[int, int | None, int, int]] = []
    first = None
    for i, row in enumerate(presence):
        if row["presence_type"] == LOGGED_OUT:
            if first is not None:
                logins.append((presence[first]["start_at"], row["start_at"], first, i))
                first = None
        elif first is None:
            first = i
    if first is not None:
        logins.append((presence[first]["start_at"], None, first, len(presence)))

    starts = [s for s, _, _, _ in logins]
    ends = [e if e is not None else _INF for _, e, _, _ in logins]
    n = len(logins)

    # One pass over the segments: the agent's last known time (closes an open login
    # session), the closed connected segments, and every segment clipped to the sessions
    # it overlaps, the uncovered pieces going to their gap (gap i lies before session i).
    # Sorted session bounds + bisect: O(log n) per segment.
    last_known = max((ev.ts for ev in distinct), default=None)
    connects: list[tuple] = []
    in_session: list[list[_Piece]] = [[] for _ in range(n)]
    in_gap: dict[int, list[_Piece]] = defaultdict(list)
    for a, b, state, ch in segments:
        t = b if b is not None and b > a else a  # max(a, b)
        if last_known is None or t > last_known:
            last_known = t
        closed = b is not None
        if closed and state == "connected":
            connects.append((ch, a))
        i = bisect.bisect_right(ends, a)
        if not closed or b <= a:  # a point: open segment start or zero-length (or inverted) segment
            piece = (a, a, state, ch, closed)
            if i < n and starts[i] <= a:
                in_session[i].append(piece)
            else:
                in_gap[i].append(piece)
            continue
        if i < n and starts[i] <= a and b <= ends[i]:  # within one session: the usual case
            in_session[i].append((a, b, state, ch, True))
            continue
        pos = a
        while pos < b:
            if i < n and starts[i] <= pos:
                stop = ends[i] if ends[i] < b else b  # min(b, ends[i])
                if stop > pos:
                    in_session[i].append((pos, stop, state, ch, True))
                    pos = stop
                i += 1
            else:
                stop = (starts[i] if starts[i] < b else b) if i < n else b  # min(b, starts[i])
                in_gap[i].append((pos, stop, state, ch, True))
                pos = stop
    first_connect: dict = {}  # channel id -> start of its first closed connected segment
    for ch, a in connects:
        if ch not in first_connect or a < first_connect[ch]:
            first_connect[ch] = a

    rows: list[tuple[tuple, dict]] = []
    used_ids: dict[str, int] = {}

    def unique(sid: str) -> str:
        k = used_ids.get(sid, 0) + 1
        used_ids[sid] = k
        return sid if k == 1 else f"{sid}#{k}"

    for idx, (login, logout, lo, hi) in enumerate(logins):
        is_open = logout is None
        end = logout if logout is not None else max(last_known, login)
        presence_ms = dict.fromkeys(("ready_ms", "away_ms", "extended_away_ms", "other_presence_ms"), 0)
        user = None
        for row in presence[lo:hi]:
            row_end = row["end_at"] if row["end_at"] is not None else end
            col = _PRESENCE_COLUMNS.get(row["presence_type"], "other_presence_ms")
            presence_ms[col] += ms_between(row["start_at"], row_end)
            if user is None:
                user = row["user_id"]
        row = _session_row(
            agent_id,
            user if user is not None else agent_user,
            unique(f"{agent_id}:{_iso(login)}"),
            login,
            logout,
            ms_between(login, end),
            presence_ms,
            _work(in_session[idx], first_connect),
            is_open,
            False,
        )
        rows.append(((login, False), row))

    for gap in sorted(in_gap):
        pieces = sorted(in_gap[gap], key=_BOUNDS)
        stretches: list[list[_Piece]] = []
        stretch_end = None
        for p in pieces:
            start, end = p[0], p[1]
            if stretch_end is None or (idle_split_ms is not None and ms_between(stretch_end, start) > idle_split_ms):
                stretches.append([])
                stretch_end = end
            stretches[-1].append(p)
            stretch_end = max(stretch_end, end)
        for group in stretches:
            s = group[0][0]
            e = max(p[1] for p in group)
            duration = ms_between(s, e)
            row = _session_row(
                agent_id,
                agent_user,
                unique(f"{agent_id}:{_iso(s)}:inferred"),
                s,
                e,
                duration,
                {"other_presence_ms": duration},
                _work(group, first_connect),
                False,
                True,
            )
            rows.append(((s, True), row))

    rows.sort(key=lambda kv: kv[0])
    return AgentResult(presence, [r for _, r in rows])

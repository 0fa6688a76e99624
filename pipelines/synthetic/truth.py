"""The ground truth: the rows a correct pipeline must produce, derived from the simulation's
own plan (the segments it laid out, the sessions it opened), never from ``transforms.timeline``
or ``transforms.presence``.

``truth.json`` (times ISO-8601 UTC with 6 fractional digits, durations whole ms):

- ``config``: the options; ``data``: ``start``, ``end_of_data`` (no event at or after it),
  ``days``, ``agent_ids``, ``agents_without_presence``, ``interactions``.
- ``counts``: ``lines = valid + duplicates + sum(dead_letters) + blank`` (blank: empty or
  whitespace-only lines), ``dead_letters`` by code (as ``transforms.events.parse_line``
  classifies them), ``late_deliveries`` (hours late), ``channels``. ``files``: lines per
  file. ``dead_letter_lines``: ``file``, 1-based ``line``, ``error_code``, ``kind``.
- ``channels``: channel id -> its ``channel_sessions`` row (``transforms/timeline.py``
  semantics: totals sum closed segments only, counts include an open episode, ...) with
  ``anomalies`` (names in event-time order: ``retrieved_without_held``, ``<type>_after_ended``)
  and ``segments`` (``seq, state, start_at, end_at, duration_ms, started_by, ended_by``).
- ``presence``: agent id -> intervals (``presence_type`` normalized, ``raw_type`` as sent),
  one per change except an exact repeat of the current presence (same type, id and
  subcategory, e.g. the doubled logout), which is absorbed.
- ``agent_sessions``: agent id -> login sessions (``transforms/presence.py`` semantics): a
  closed session runs login to logout; an open one (``is_open``) to the agent's last known
  time (last presence event or last segment time), so the presence columns always add up
  to ``duration_ms``. Channel work sums the closed segments of the session's agent channels
  (``channel_ids``; all of them lie inside the session); ``busy_ms`` is their wall-clock
  union. ``agent_sessions_inferred``: the agent without presence data: one session
  (``is_inferred``) from its first segment start to its last segment end, all of it
  ``other_presence_ms``.
- ``interactions``: interaction id -> its ``interactions`` row (every column of
  ``schemas.outputs.INTERACTIONS`` but the partition; lists as lists), from what the
  simulation planned for the contact (direction, outcome, the channel that answered, the
  customer channel whose end is the abandon, the agent channels in the order they connected,
  the hand-offs it laid out), never by running interaction rules over the channels; times and
  totals are those of its channels. ``counts`` adds ``interactions``, ``outcomes`` (rows per
  outcome) and ``contact_kinds`` (rows per kind of :mod:`pipelines.synthetic.contacts`;
  ``queued``: the customer still waiting when the data ends).

Rules where the spec leaves room (the interactions core decides the same):

- ``inference`` always names ``direction`` (the payload has none), then ``customer_role``
  when a non-agent channel's role is not exactly ``customer``.
- ``first_offered_at`` and ``wait_before_offer_ms`` are for inbound rows only; outbound:
  ``answered_at`` is the first customer ``connected_at``, ``time_to_answer_ms = answered_at -
  started_at``, ``ring_ms`` that customer channel's ``alert_ms``. ``ring_ms`` is null when
  nothing answered. Internal rows have no answer, offer or abandon timing (all null).
- ``outcome`` ``answered`` (inbound) / ``connected`` (outbound) as soon as the answer
  happened, even when the interaction is cut off later; ``in_progress`` only while it is
  neither answered nor over (a customer in the queue, a call still dialing).
- The abandon time is the first customer channel's ``disconnected_at`` (the hang-up), else
  its ``ended_at``; ``abandon_ms`` only for the abandoned outcomes.
- Hand-offs: a blind transfer is ``B.connected_at >= A.disconnected_at`` (equal counts as
  blind); an agent channel that never connected takes no part; internal rows (agent to
  agent, no customer) have no hand-offs (a call between two agents is not a consult or a
  transfer, as in Genesys Cloud's ``nConsult``/``nTransferred``), only their ``agent_path``.
- ``final_agent_id`` is the agent whose connected phase ends last: the one the hand-offs
  leave the customer with (after a consult that returns, the first agent); an internal call
  names the agent who hung up last (together: the one who connected later).
- ``ended_at`` and ``duration_ms`` are null unless every channel is complete.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import asdict
from typing import BinaryIO

import orjson

from pipelines.synthetic.plan import Agent, Channel, Contact
from pipelines.synthetic.scenarios import Simulation
from pipelines.synthetic.times import iso, iso_or_none

_LINE_PER_ENTRY = ("channels", "interactions", "presence", "agent_sessions", "agent_sessions_inferred")
_AGENT_TOTALS = ("talk_ms", "hold_ms", "park_ms", "interruption_ms", "wrap_ms", "handle_ms")
_WORK_STATES = ("connected", "held", "parked", "interrupted", "wrap")
_TOTAL_KEYS = {
    "alerting": "alert_ms",
    "connected": "talk_ms",
    "held": "hold_ms",
    "parked": "park_ms",
    "interrupted": "interruption_ms",
    "wrap": "wrap_ms",
}
_EPISODES = {"held": "hold", "parked": "park", "interrupted": "interruption"}
_PRESENCE_COLUMNS = {"ready": "ready_ms", "away": "away_ms", "extendedAway": "extended_away_ms"}


def _segment_rows(ch: Channel) -> list[dict]:
    return [
        {
            "seq": i,
            "state": state,
            "start_at": iso(start, "us"),
            "end_at": iso_or_none(end),
            "duration_ms": None if end is None else end - start,
            "started_by": started_by,
            "ended_by": ended_by,
        }
        for i, (state, start, end, started_by, ended_by) in enumerate(ch.segs)
    ]


def _channel_truth(ch: Channel, duplicates: int, at: dict[str, int]) -> dict:
    """The ``channel_sessions`` row (plus its segments) of a channel, from its construction;
    ``at`` is filled with the first time of each of its (in-place) event kinds."""
    anomalies = []
    fail_reason = end_reason = None
    for ts, kind, reason, anomaly in sorted(ch.events, key=lambda ev: ev[0]):
        if anomaly:
            anomalies.append(anomaly)
            continue
        at.setdefault(kind, ts)
        if kind == "connectionfailed":
            fail_reason = reason
        elif kind == "ended":
            end_reason = reason
    totals = dict.fromkeys(_TOTAL_KEYS.values(), 0)
    counts = dict.fromkeys(_EPISODES, 0)
    longest = dict.fromkeys(_EPISODES, 0)
    disconnect_state = None
    for state, start, end, _, ended_by in ch.segs:
        if state in counts:
            counts[state] += 1
        if end is None:
            continue
        totals[_TOTAL_KEYS[state]] += end - start
        if state in longest:
            longest[state] = max(longest[state], end - start)
        if ended_by == "disconnected":
            disconnect_state = state
    talk, hold, park, intr, wrap = (totals[k] for k in ("talk_ms", "hold_ms", "park_ms", "interruption_ms", "wrap_ms"))
    open_state = ch.segs[-1][0] if ch.segs and ch.segs[-1][2] is None else None
    times = [ev[0] for ev in ch.events]
    return {
        "interaction_id": ch.iid,
        "conversation_id": ch.conv,
        "party_role": ch.role,
        "agent_id": ch.agent,
        "user_id": ch.user,
        "alerted_at": iso_or_none(at.get("alerted")),
        "connected_at": iso_or_none(at.get("connected")),
        "disconnected_at": iso_or_none(at.get("disconnected")),
        "wrap_started_at": iso_or_none(at.get("wrapstarted")),
        "ended_at": iso_or_none(at.get("ended")),
        "first_event_at": iso(min(times), "us"),
        "last_event_at": iso(max(times), "us"),
        "connection_failed": "connectionfailed" in at,
        "end_reason": end_reason if end_reason is not None else fail_reason,
        "alert_ms": totals["alert_ms"],
        "connected_ms": talk + hold + park + intr,
        "talk_ms": talk,
        "hold_ms": hold,
        "park_ms": park,
        "interruption_ms": intr,
        "wrap_ms": wrap,
        "handle_ms": talk + hold + wrap,
        "hold_count": counts["held"],
        "park_count": counts["parked"],
        "interruption_count": counts["interrupted"],
        "longest_hold_ms": longest["held"],
        "longest_park_ms": longest["parked"],
        "longest_interruption_ms": longest["interrupted"],
        "held_at_disconnect": disconnect_state == "held",
        "disconnect_state": disconnect_state,
        "is_complete": "ended" in at,
        "open_state": open_state,
        "event_count": len(ch.events),
        "duplicate_count": duplicates,
        "anomaly_count": len(anomalies),
        "anomalies": anomalies,
        "segments": _segment_rows(ch),
    }


def _presence_truth(ag: Agent) -> list[dict]:
    """Presence intervals: each change (absorbed exact repeats excepted) to the next one."""
    kept = [p for p in ag.presence if not p.repeat]
    rows = []
    for p, nxt in zip(kept, kept[1:] + [None], strict=True):
        rows.append(
            {
                "presence_type": p.canon,
                "raw_type": p.raw,
                "presence_id": p.pid,
                "presence_subcategory": p.sub,
                "presence_description": p.desc,
                "user_id": ag.user_id,
                "start_at": iso(p.ts, "us"),
                "end_at": None if nxt is None else iso(nxt.ts, "us"),
                "duration_ms": None if nxt is None else nxt.ts - p.ts,
            }
        )
    return rows


def _work(channels: list[Channel]) -> dict:
    """Channel-work columns of a session from its agent channels' closed segments."""
    out = dict.fromkeys(("talk_ms", "hold_ms", "park_ms", "interruption_ms", "wrap_ms"), 0)
    spans, handled = [], 0
    for ch in channels:
        if any(s[0] == "connected" and s[2] is not None for s in ch.segs):
            handled += 1
        for state, start, end, _, _ in ch.segs:
            if end is not None and state in _WORK_STATES:
                out[_TOTAL_KEYS[state]] += end - start
                spans.append((start, end))
    spans.sort()
    busy, cur_s, cur_e = 0, None, None
    for s, e in spans:
        if cur_e is None or s > cur_e:
            busy += 0 if cur_e is None else cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += 0 if cur_e is None else cur_e - cur_s
    out["handle_ms"] = out["talk_ms"] + out["hold_ms"] + out["wrap_ms"]
    return {"channels_handled": handled, **out, "busy_ms": busy, "channel_ids": [ch.cid for ch in channels]}


def _session_row(
    ag: Agent, login: int, logout: int | None, end: int, presence: dict, work: dict, inferred: bool
) -> dict:
    duration = end - login
    return {
        "session_id": f"{ag.agent_id}:{iso(login, 'us')}" + (":inferred" if inferred else ""),
        "user_id": ag.user_id,
        "login_at": iso(login, "us"),
        "logout_at": iso_or_none(logout),
        "duration_ms": duration,
        "ready_ms": presence.get("ready_ms", 0),
        "away_ms": presence.get("away_ms", 0),
        "extended_away_ms": presence.get("extended_away_ms", 0),
        "other_presence_ms": presence.get("other_presence_ms", 0),
        **work,
        "occupancy": work["busy_ms"] / duration if duration else 0.0,
        "is_open": logout is None and not inferred,
        "is_inferred": inferred,
    }


def _sessions_truth(ag: Agent) -> list[dict]:
    """Login sessions; an open one runs to the agent's last known time (last presence event,
    repeats included, or last segment time: end of a closed segment, start of an open one)."""
    last_known = max(
        [p.ts for p in ag.presence] + [s[2] if s[2] is not None else s[1] for c in ag.channels for s in c.segs]
    )
    kept = [p for p in ag.presence if not p.repeat]
    starts = [p.ts for p in kept]
    rows = []
    for sess in ag.sessions:
        end = sess.logout if sess.logout is not None else max(last_known, sess.login)
        presence: Counter = Counter()
        for i in range(bisect.bisect_left(starts, sess.login), bisect.bisect_left(starts, end)):
            stop = min(starts[i + 1], end) if i + 1 < len(starts) else end
            presence[_PRESENCE_COLUMNS.get(kept[i].canon, "other_presence_ms")] += stop - starts[i]
        rows.append(_session_row(ag, sess.login, sess.logout, end, presence, _work(sess.channels), False))
    return rows


def _inferred_truth(ag: Agent) -> list[dict]:
    """The one session inferred from the channel work of an agent without presence data:
    from its first segment start to its last segment end, all of it ``other_presence_ms``."""
    lo = min(s[1] for c in ag.channels for s in c.segs)
    hi = max(s[2] for c in ag.channels for s in c.segs)
    return [_session_row(ag, lo, hi, hi, {"other_presence_ms": hi - lo}, _work(ag.channels), True)]


def _left(at: dict[str, int]) -> int:
    """When a customer channel's customer left: its hang-up, else its end."""
    return at["disconnected"] if "disconnected" in at else at["ended"]


def _interaction_truth(c: Contact, at: dict[str, dict[str, int]], rows: dict[str, dict]) -> dict:
    """The ``interactions`` row of a contact: what was planned for it, with its channels'
    times and totals (``at``: first time of each event kind per channel; ``rows``: the
    channels' truth rows)."""
    chans = [ch for ch in c.channels if ch.events]
    agents = [rows[ch.cid] for ch in chans if ch.role == "agent"]
    customers = [rows[ch.cid] for ch in chans if ch.role != "agent"]
    started = min(ev[0] for ch in chans for ev in ch.events)
    complete = all("ended" in at[ch.cid] for ch in chans)
    ended = max(at[ch.cid]["ended"] for ch in chans) if complete else None
    offers = [at[ch.cid]["alerted"] for ch in chans if ch.role == "agent" and "alerted" in at[ch.cid]]
    first_offered = min(offers) if c.direction == "inbound" and offers else None
    answered = at[c.answer.cid]["connected"] if c.answer is not None else None
    path = list(dict.fromkeys(ch.agent for ch in c.connects))
    kinds = Counter(h.kind for h in c.handoffs)
    totals = {col: sum(r[col] for r in agents) for col in _AGENT_TOTALS}
    inference = ["direction"] + (["customer_role"] if any(r["party_role"] != "customer" for r in customers) else [])
    return {
        "interaction_id": chans[0].iid,
        "conversation_id": chans[0].conv,
        "started_at": iso(started, "us"),
        "ended_at": iso_or_none(ended),
        "last_event_at": iso(max(ev[0] for ch in chans for ev in ch.events), "us"),
        "duration_ms": None if ended is None else ended - started,
        "is_complete": complete,
        "customer_channels": len(customers),
        "agent_channels": len(agents),
        "distinct_agents": len({r["agent_id"] for r in agents}),
        "direction": c.direction,
        "outcome": c.outcome,
        "offers": len(offers),
        "first_offered_at": iso_or_none(first_offered),
        "answered_at": iso_or_none(answered),
        "time_to_answer_ms": None if answered is None else answered - started,
        "wait_before_offer_ms": None if first_offered is None else first_offered - started,
        "ring_ms": None if c.answer is None else rows[c.answer.cid]["alert_ms"],
        "abandon_ms": None if c.abandon is None else _left(at[c.abandon.cid]) - started,
        "transfers": kinds["blind"] + kinds["warm"],
        "blind_transfers": kinds["blind"],
        "warm_transfers": kinds["warm"],
        "consults": kinds["warm"] + kinds["return"],
        "conferences": sum(h.conference for h in c.handoffs),
        "agent_path": path,
        "first_agent_id": c.connects[0].agent if c.connects else None,
        "final_agent_id": final.agent if (final := c.final_agent()) is not None else None,
        **totals,
        "customer_hold_ms": sum(r["hold_ms"] for r in customers),
        "customer_hold_count": sum(r["hold_count"] for r in customers),
        "hold_abandon": any(r["held_at_disconnect"] for r in customers),
        "anomaly_count": sum(r["anomaly_count"] for r in agents + customers),
        "inference": inference,
    }


def build_truth(sim: Simulation, channels: list[Channel], lines: dict, dup_by_channel: Counter) -> dict:
    """The ground truth (format: see the module docstring)."""
    at: dict[str, dict[str, int]] = {ch.cid: {} for ch in channels}
    ch_rows = {ch.cid: _channel_truth(ch, dup_by_channel[ch.cid], at[ch.cid]) for ch in channels}
    it_rows = {c.channels[0].iid: _interaction_truth(c, at, ch_rows) for c in sim.contacts}
    ch_rows = dict(sorted(ch_rows.items(), key=lambda kv: (kv[1]["first_event_at"], kv[0])))
    it_rows = dict(sorted(it_rows.items(), key=lambda kv: (kv[1]["started_at"], kv[0])))
    return {
        "config": asdict(sim.cfg),
        "data": {
            "start": iso(sim.start, "us"),
            "end_of_data": iso(sim.end, "us"),
            "days": sim.days,
            "agent_ids": [ag.agent_id for ag in sim.agents],
            "agents_without_presence": [sim.ghost.agent_id],
            "interactions": len(it_rows),
        },
        "counts": {
            **lines["counts"],
            "channels": len(ch_rows),
            "interactions": len(it_rows),
            "outcomes": dict(sorted(Counter(r["outcome"] for r in it_rows.values()).items())),
            "contact_kinds": dict(sorted(Counter(c.kind for c in sim.contacts).items())),
        },
        "files": lines["files"],
        "dead_letter_lines": lines["dead"],
        "channels": ch_rows,
        "interactions": it_rows,
        "presence": {ag.agent_id: _presence_truth(ag) for ag in sim.agents},
        "agent_sessions": {ag.agent_id: _sessions_truth(ag) for ag in sim.agents},
        "agent_sessions_inferred": {sim.ghost.agent_id: _inferred_truth(sim.ghost)},
    }


def dump_truth(truth: dict, out: BinaryIO) -> None:
    """Write ``truth.json`` to a binary stream: compact JSON, one channel, agent or dead
    letter per line (streamed: no second copy of the truth in memory)."""
    out.write(b"{")
    for i, (key, value) in enumerate(truth.items()):
        out.write((b",\n" if i else b"") + orjson.dumps(key) + b":")
        if isinstance(value, dict) and key in _LINE_PER_ENTRY:
            out.write(b"{")
            for j, (k, v) in enumerate(value.items()):
                out.write((b",\n" if j else b"\n") + orjson.dumps(k) + b":" + orjson.dumps(v))
            out.write(b"}")
        elif isinstance(value, list):
            out.write(b"[")
            for j, v in enumerate(value):
                out.write((b",\n" if j else b"\n") + orjson.dumps(v))
            out.write(b"]")
        else:
            out.write(orjson.dumps(value))
    out.write(b"}\n")

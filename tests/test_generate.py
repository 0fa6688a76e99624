"""The traffic generator: determinism, options, accounting, and a truth that agrees with the
generated lines and with itself. (The pipeline is compared with the truth elsewhere.)"""

from __future__ import annotations

import gzip
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from pipelines.generate import TRUTH_FILE, Config, generate, run
from transforms.events import DeadLetter, parse_line, parse_timestamp

EPISODES = {"held": "hold", "parked": "park", "interrupted": "interruption"}
TOTALS = {
    "alerting": "alert_ms",
    "connected": "talk_ms",
    "held": "hold_ms",
    "parked": "park_ms",
    "interrupted": "interruption_ms",
    "wrap": "wrap_ms",
}
WORK = ("talk_ms", "hold_ms", "park_ms", "interruption_ms", "wrap_ms", "handle_ms")


def us(iso: str | None) -> int | None:
    return None if iso is None else parse_timestamp(iso)


@pytest.fixture(scope="module")
def gen():
    return generate(Config(agents=5, interactions=150, seed=3, shuffle=True, files=3))


@pytest.fixture(scope="module")
def parsed(gen):
    """Every line through the real parser: blanks, dead letters by (file, line), events."""
    blank, dead, events = 0, {}, []
    for name, lines in gen.files.items():
        for no, raw in enumerate(lines, 1):
            if not raw.strip():
                blank += 1
                continue
            out = parse_line(raw, f"{name}:{no}")
            if isinstance(out, DeadLetter):
                dead[name, no] = (out.error_code, raw)
            else:
                events.append(out)
    return blank, dead, events


def read_dir(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    args = ["--agents", "4", "--interactions", "40", "--shuffle", "--files", "2", "--gzip"]
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert run(["--output", str(tmp_path / name), "--seed", seed, *args]) == 0
    a, b, c = (read_dir(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_cli_files_gzip_truth_and_summary(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notifications-00007.jsonl").write_text("stale\n")
    assert run(["--output", str(out), "--agents", "3", "--interactions", "30", "--files", "3", "--gzip"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and "lines" in printed[0] and "3 file(s)" in printed[0] and "channels" in printed[0]
    names = sorted(p.name for p in out.glob("notifications-*"))
    assert names == [f"notifications-0000{i}.jsonl.gz" for i in range(3)]
    truth = orjson.loads((out / TRUTH_FILE).read_bytes())
    lines = [gzip.decompress((out / n).read_bytes()).split(b"\n")[:-1] for n in names]
    assert [len(x) for x in lines] == [truth["files"][n] for n in names]
    assert sum(len(x) for x in lines) == truth["counts"]["lines"]


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        run(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text
    for option in ("--output", "--agents", "--interactions", "--seed", "--duplicates", "--malformed"):
        assert option in text
    for option in ("--shuffle", "--files", "--gzip", "--start"):
        assert option in text


@pytest.mark.parametrize(
    "argv", [["--agents", "2"], ["--duplicates", "1.5"], ["--files", "0"], ["--start", "yesterday"], []]
)
def test_bad_options_are_usage_errors(argv, tmp_path):
    with pytest.raises(SystemExit) as exc:
        run((["--output", str(tmp_path)] if argv else []) + argv)
    assert exc.value.code == 2


def test_config_validates():
    with pytest.raises(ValueError):
        Config(interactions=5)
    with pytest.raises(ValueError):
        Config(start="2024-03-04T08:00:00")  # no zone


def test_accounting_closes(gen, parsed):
    c = gen.truth["counts"]
    blank, dead, events = parsed
    assert c["lines"] == sum(len(v) for v in gen.files.values())
    assert gen.truth["data"]["interactions"] == gen.config.interactions
    assert len({r["interaction_id"] for r in gen.truth["channels"].values()}) == gen.config.interactions
    assert c["lines"] == c["valid"] + c["duplicates"] + sum(c["dead_letters"].values()) + c["blank"]
    assert blank == c["blank"]
    distinct = {(e.source, e.id) for e in events}
    assert len(distinct) == c["valid"]
    assert len(events) - len(distinct) == c["duplicates"]


def test_every_line_classified_as_the_truth_says(gen, parsed):
    _, dead, _ = parsed
    expected = {(d["file"], d["line"]): d["error_code"] for d in gen.truth["dead_letter_lines"]}
    assert {k: code for k, (code, _) in dead.items()} == expected
    assert dict(Counter(expected.values())) == gen.truth["counts"]["dead_letters"]
    kinds = {d["kind"] for d in gen.truth["dead_letter_lines"]}
    assert {"truncated_copy", "invalid_utf8", "no_id", "no_timestamp", "future_version", "detail_record"} <= kinds
    codes = set(expected.values())
    assert codes == {
        "invalid_json",
        "invalid_encoding",
        "not_an_object",
        "missing_field",
        "invalid_field",
        "bad_timestamp",
        "unsupported_type",
    }


def test_truncated_copy_keeps_the_id_of_a_valid_event(gen, parsed):
    _, dead, events = parsed
    ids = {e.id for e in events}
    copies = [raw for (f, n), (_, raw) in dead.items() if (f, n) in _kind_lines(gen, "truncated_copy")]
    assert copies
    for raw in copies:
        start = raw.index(b'"id":"') + 6
        assert raw[start : raw.index(b'"', start)].decode() in ids


def _kind_lines(gen, kind: str) -> set:
    return {(d["file"], d["line"]) for d in gen.truth["dead_letter_lines"] if d["kind"] == kind}


def test_channel_events_match_the_truth(gen, parsed):
    """Per channel: distinct events, duplicate copies, attributes and lifecycle times as the
    parser reads them (this also checks every timestamp format round-trips exactly)."""
    _, _, events = parsed
    by_channel = defaultdict(list)
    for e in events:
        if e.is_channel:
            by_channel[e.key].append(e)
    channels = gen.truth["channels"]
    assert by_channel.keys() == channels.keys()
    for cid, evs in by_channel.items():
        row = channels[cid]
        distinct = {e.id: e for e in evs}
        assert len(distinct) == row["event_count"], cid
        assert len(evs) - len(distinct) == row["duplicate_count"], cid
        times = sorted(e.ts for e in distinct.values())
        assert (times[0], times[-1]) == (us(row["first_event_at"]), us(row["last_event_at"]))
        for e in distinct.values():
            assert (e.interaction_id, e.conversation_id, e.party_role, e.agent_id, e.user_id) == (
                row["interaction_id"],
                row["conversation_id"],
                row["party_role"],
                row["agent_id"],
                row["user_id"],
            )
        firsts = {}
        for e in sorted(distinct.values(), key=lambda e: e.ts):
            firsts.setdefault(e.type, e.ts)
        for kind, col in (("alerted", "alerted_at"), ("connected", "connected_at"), ("ended", "ended_at")):
            if row["anomaly_count"] == 0:
                assert firsts.get(f"channel.{kind}") == us(row[col]), (cid, kind)
        assert ("channel.connectionfailed" in firsts) == row["connection_failed"]


def test_presence_events_match_the_truth(gen, parsed):
    _, _, events = parsed
    by_agent = defaultdict(dict)
    for e in events:
        if not e.is_channel:
            by_agent[e.key][e.id] = e
    presence = gen.truth["presence"]
    assert by_agent.keys() == presence.keys()
    for agent, evs in by_agent.items():
        starts = [us(r["start_at"]) for r in presence[agent]]
        ordered = sorted(evs.values(), key=lambda e: e.ts)
        # every change starts a row, except an exact repeat of the current presence (absorbed)
        ident = [(e.presence_type.lower(), e.presence_id, e.presence_subcategory) for e in ordered]
        kept = [e for i, e in enumerate(ordered) if i == 0 or ident[i] != ident[i - 1]]
        assert [e.ts for e in kept] == starts


def test_channel_truth_is_consistent(gen):
    for cid, row in gen.truth["channels"].items():
        segs = row["segments"]
        closed = [s for s in segs if s["end_at"] is not None]
        assert [s["seq"] for s in segs] == list(range(len(segs)))
        assert all(s["end_at"] is not None for s in segs[:-1]), cid
        for s in closed:
            assert s["duration_ms"] * 1000 == us(s["end_at"]) - us(s["start_at"]) >= 0
        for a, b in zip(segs, segs[1:], strict=False):
            assert us(a["end_at"]) <= us(b["start_at"]), cid
        for state, col in TOTALS.items():
            assert row[col] == sum(s["duration_ms"] for s in closed if s["state"] == state), (cid, col)
        for state, name in EPISODES.items():
            assert row[f"{name}_count"] == sum(s["state"] == state for s in segs)
            assert row[f"longest_{name}_ms"] == max([s["duration_ms"] for s in closed if s["state"] == state] or [0])
        assert row["connected_ms"] == row["talk_ms"] + row["hold_ms"] + row["park_ms"] + row["interruption_ms"]
        assert row["handle_ms"] == row["talk_ms"] + row["hold_ms"] + row["wrap_ms"]
        last = segs[-1] if segs else None
        assert row["open_state"] == (last["state"] if last and last["end_at"] is None else None)
        assert row["is_complete"] == (row["ended_at"] is not None)
        assert row["anomaly_count"] == len(row["anomalies"])
        assert row["held_at_disconnect"] == (row["disconnect_state"] == "held")
        assert (row["party_role"] == "agent") == (row["agent_id"] is not None)


def test_session_truth_is_consistent(gen):
    channels = gen.truth["channels"]
    sessions = {**gen.truth["agent_sessions"], **gen.truth["agent_sessions_inferred"]}
    seen = Counter()
    for agent, rows in sessions.items():
        for s in rows:
            login, logout = us(s["login_at"]), us(s["logout_at"])
            presence = s["ready_ms"] + s["away_ms"] + s["extended_away_ms"] + s["other_presence_ms"]
            assert presence == s["duration_ms"], (agent, s["login_at"])
            assert s["is_open"] == (s["logout_at"] is None)
            if logout is not None:
                assert s["duration_ms"] * 1000 == logout - login
            mine = [channels[c] for c in s["channel_ids"]]
            seen.update(s["channel_ids"])
            for col in WORK:
                assert s[col] == sum(c[col] for c in mine), (agent, col)
            # handled: a closed connected segment (a channel cut off in its first connection is not yet)
            closed_talk = [any(g["state"] == "connected" and g["end_at"] for g in c["segments"]) for c in mine]
            assert s["channels_handled"] == sum(closed_talk)
            assert max([c["connected_ms"] + c["wrap_ms"] for c in mine] or [0]) <= s["busy_ms"]
            assert s["busy_ms"] <= min(s["duration_ms"], sum(c["connected_ms"] + c["wrap_ms"] for c in mine))
            for c in mine:
                assert c["agent_id"] == agent and c["party_role"] == "agent"
                first = us(c["first_event_at"])
                assert login <= first and (logout is None or us(c["last_event_at"]) <= logout)
    agent_channels = [cid for cid, c in channels.items() if c["party_role"] == "agent"]
    assert sorted(seen) == sorted(agent_channels) and set(seen.values()) == {1}


def test_scenarios_are_all_there(gen):
    t = gen.truth
    rows = list(t["channels"].values())
    assert {r["open_state"] for r in rows} >= {None, "connected", "held", "wrap"}
    assert any(r["held_at_disconnect"] for r in rows)
    assert any(r["connection_failed"] and r["end_reason"] in ("rejected", "busy", "noAnswer") for r in rows)
    assert any(r["park_count"] >= 2 for r in rows) and any(r["interruption_count"] >= 2 for r in rows)
    assert any(r["alert_ms"] == 0 and r["alerted_at"] is not None for r in rows)
    names = {a for r in rows for a in r["anomalies"]}
    assert "retrieved_without_held" in names and any(n.endswith("_after_ended") for n in names)
    assert any(r["first_event_at"][:10] != r["last_event_at"][:10] for r in rows)  # across midnight UTC
    sessions = [s for rows in t["agent_sessions"].values() for s in rows]
    assert any(s["is_open"] for s in sessions)
    assert any(s["login_at"][:10] != (s["logout_at"] or t["data"]["end_of_data"])[:10] for s in sessions)
    first_types = {rows[0]["presence_type"] for rows in t["presence"].values()}
    assert first_types - {"ready"}, "an agent's data starts mid-session"
    types = {r["presence_type"] for rows in t["presence"].values() for r in rows}
    assert types >= {"ready", "away", "extendedAway", "loggedOut", "lunch"}
    assert {r["raw_type"] for rows in t["presence"].values() for r in rows} & {"Ready", "Away", "LoggedOut"}
    assert [s["is_inferred"] for rows in t["agent_sessions_inferred"].values() for s in rows] == [True]
    assert t["counts"]["late_deliveries"] >= 1


def test_timestamp_formats_vary(gen):
    stamps = Counter()
    for lines in gen.files.values():
        for raw in lines:
            if raw.startswith(b'{"specversion"') and b'"timestamp":"' in raw:
                value = raw.split(b'"timestamp":"', 1)[1].split(b'"', 1)[0]
                frac = value.rsplit(b".", 1)[1] if b"." in value else b"Z"
                stamps[len(frac) - 1] += 1
    assert stamps[3] and stamps[7] and stamps[0]


def test_fractions_roughly_as_asked():
    t = generate(Config(agents=4, interactions=400, seed=9, duplicates=0.1, malformed=0.05)).truth["counts"]
    assert abs(t["duplicates"] / t["valid"] - 0.1) < 0.01
    assert abs(sum(t["dead_letters"].values()) / t["valid"] - 0.05) < 0.01
    clean = generate(Config(agents=4, interactions=40, seed=9, duplicates=0, malformed=0)).truth["counts"]
    assert clean["duplicates"] == clean["blank"] == 0 and clean["dead_letters"] == {}
    assert clean["lines"] == clean["valid"]


def test_start_option_moves_the_data_and_still_crosses_midnight():
    t = generate(Config(agents=3, interactions=30, start="2024-06-30T21:15:00Z")).truth
    assert t["data"]["start"] == "2024-06-30T21:15:00.000000Z"
    firsts = sorted(r["first_event_at"] for r in t["channels"].values())
    assert firsts[0] >= "2024-06-30T21:15"
    assert any(r["first_event_at"][:10] != r["last_event_at"][:10] for r in t["channels"].values())


# --- interactions -----------------------------------------------------------------------

OPEN = 1 << 62  # an open connected phase runs past any time of the data


def _by_interaction(truth: dict) -> dict[str, list[dict]]:
    grouped = defaultdict(list)
    for cid, row in truth["channels"].items():
        grouped[row["interaction_id"]].append({**row, "channel_id": cid})
    return grouped


def _phase(ch: dict) -> tuple[int, int]:
    """The connected phase of an agent channel, in us: from ``connected_at`` to the first of
    ``disconnected_at``, ``wrap_started_at``, ``ended_at`` (open: ``OPEN``)."""
    return us(ch["connected_at"]), us(ch["disconnected_at"] or ch["wrap_started_at"] or ch["ended_at"]) or OPEN


def _handoffs(channels: list[dict]) -> Counter:
    """The spec's hand-off rules over consecutive agent connections (the generator plans them;
    this re-reads them from the channel truth)."""
    agents = sorted((c for c in channels if c["party_role"] == "agent" and c["connected_at"]), key=_phase)
    talking = [
        (us(s["start_at"]), us(s["end_at"]) or OPEN)
        for c in channels
        if c["party_role"] != "agent"
        for s in c["segments"]
        if s["state"] == "connected"
    ]
    out = Counter()
    for a, b in zip(agents, agents[1:], strict=False):
        (_, a_end), (b_start, b_end) = _phase(a), _phase(b)
        if b_start >= a_end:
            out["blind"] += 1
            continue
        out["consult"] += 1
        if a_end < b_end:
            out["warm"] += 1
        stop = min(a_end, b_end)
        if any(min(e, stop) - max(s, b_start) >= 1000 for s, e in talking):
            out["conference"] += 1
    return out


def test_interaction_rows_have_the_schema_columns(gen):
    from schemas.outputs import INTERACTIONS

    rows = gen.truth["interactions"]
    assert len(rows) == gen.config.interactions == gen.truth["counts"]["interactions"]
    assert {tuple(r) for r in rows.values()} == {tuple(INTERACTIONS.names)}
    assert set(rows) == set(_by_interaction(gen.truth))
    assert gen.truth["counts"]["outcomes"] == dict(sorted(Counter(r["outcome"] for r in rows.values()).items()))
    assert sum(gen.truth["counts"]["contact_kinds"].values()) == len(rows)


def test_interactions_agree_with_their_channels(gen):
    for iid, chs in _by_interaction(gen.truth).items():
        row = gen.truth["interactions"][iid]
        agents = [c for c in chs if c["party_role"] == "agent"]
        customers = [c for c in chs if c["party_role"] != "agent"]
        started = min(us(c["first_event_at"]) for c in chs)
        assert us(row["started_at"]) == started and row["conversation_id"] == chs[0]["conversation_id"]
        assert us(row["last_event_at"]) == max(us(c["last_event_at"]) for c in chs)
        assert row["is_complete"] == all(c["is_complete"] for c in chs)
        ended = max(us(c["ended_at"]) for c in chs) if row["is_complete"] else None
        assert us(row["ended_at"]) == ended
        assert row["duration_ms"] == (None if ended is None else (ended - started) // 1000)
        assert (row["customer_channels"], row["agent_channels"]) == (len(customers), len(agents))
        assert row["distinct_agents"] == len({c["agent_id"] for c in agents})
        earliest = min(chs, key=lambda c: (us(c["first_event_at"]), c["party_role"] == "agent"))
        direction = "internal" if not customers else "inbound" if earliest["party_role"] != "agent" else "outbound"
        assert row["direction"] == direction, iid
        assert row["offers"] == sum(c["alerted_at"] is not None for c in agents)
        answering = agents if direction == "inbound" else customers if direction == "outbound" else []
        connected = sorted((c for c in answering if c["connected_at"]), key=lambda c: us(c["connected_at"]))
        answered = us(connected[0]["connected_at"]) if connected else None
        assert us(row["answered_at"]) == answered, iid
        assert row["time_to_answer_ms"] == (None if answered is None else (answered - started) // 1000)
        assert row["ring_ms"] == (connected[0]["alert_ms"] if connected else None)
        offered = [us(c["alerted_at"]) for c in agents if c["alerted_at"]] if direction == "inbound" else []
        assert us(row["first_offered_at"]) == (min(offered) if offered else None)
        assert row["wait_before_offer_ms"] == ((min(offered) - started) // 1000 if offered else None)
        for col in ("talk_ms", "hold_ms", "park_ms", "interruption_ms", "wrap_ms", "handle_ms"):
            assert row[col] == sum(c[col] for c in agents), (iid, col)
        assert row["customer_hold_ms"] == sum(c["hold_ms"] for c in customers)
        assert row["customer_hold_count"] == sum(c["hold_count"] for c in customers)
        assert row["hold_abandon"] == any(c["held_at_disconnect"] for c in customers)
        assert row["anomaly_count"] == sum(c["anomaly_count"] for c in chs)
        roles = {c["party_role"] for c in customers}
        assert row["inference"] == ["direction"] + (["customer_role"] if roles - {"customer"} else [])
        by_connect = sorted((c for c in agents if c["connected_at"]), key=_phase)
        assert row["agent_path"] == list(dict.fromkeys(c["agent_id"] for c in by_connect))
        assert row["first_agent_id"] == (by_connect[0]["agent_id"] if by_connect else None)
        # the phase that ends last (open last; ties: the later connection)
        last = max(enumerate(by_connect), key=lambda kc: (_phase(kc[1])[1], kc[0]), default=None)
        assert row["final_agent_id"] == (last[1]["agent_id"] if last else None), iid


def test_interaction_outcomes_match_the_channels(gen):
    for iid, chs in _by_interaction(gen.truth).items():
        row = gen.truth["interactions"][iid]
        agents = [c for c in chs if c["party_role"] == "agent"]
        customers = sorted((c for c in chs if c["party_role"] != "agent"), key=lambda c: us(c["first_event_at"]))
        outcome, started = row["outcome"], us(row["started_at"])
        if row["direction"] == "internal":
            assert outcome == "internal"
            continue
        if row["direction"] == "outbound":
            connected = any(c["connected_at"] for c in customers)
            done = all(c["is_complete"] for c in customers)
            assert outcome == ("connected" if connected else "failed" if done else "in_progress"), iid
            continue
        hung_up = us(customers[0]["disconnected_at"] or customers[0]["ended_at"])
        alerted = [us(c["alerted_at"]) for c in agents if c["alerted_at"]]
        ringing = [
            c
            for c in agents
            for s in c["segments"]
            if s["state"] == "alerting" and us(s["start_at"]) <= (hung_up or 0) < (us(s["end_at"]) or OPEN)
        ]
        if row["answered_at"]:
            expected = "answered"
        elif hung_up is None:
            expected = "in_progress"
        elif not alerted or min(alerted) > hung_up:
            expected = "abandoned_before_offer"
        else:
            expected = "abandoned_while_alerting" if ringing else "abandoned_after_offer"
        assert outcome == expected, iid
        assert row["abandon_ms"] == ((hung_up - started) // 1000 if outcome.startswith("abandoned") else None)


def test_interaction_handoffs_match_the_channels(gen):
    for iid, chs in _by_interaction(gen.truth).items():
        row = gen.truth["interactions"][iid]
        got = (row["transfers"], row["blind_transfers"], row["warm_transfers"], row["consults"], row["conferences"])
        if row["direction"] == "internal":  # an agent-to-agent call hands no customer on
            assert got == (0, 0, 0, 0, 0), iid
            continue
        h = _handoffs(chs)
        assert got == (h["blind"] + h["warm"], h["blind"], h["warm"], h["consult"], h["conference"]), iid


def test_every_contact_kind_outcome_and_handoff_is_there(gen):
    from pipelines.synthetic.contacts import MIX
    from schemas.outputs import OUTCOMES

    rows = list(gen.truth["interactions"].values())
    assert set(gen.truth["counts"]["contact_kinds"]) == set(MIX) | {"queued"}
    assert {r["outcome"] for r in rows} == set(OUTCOMES)
    assert {(r["direction"], r["outcome"]) for r in rows if r["outcome"] == "in_progress"} == {
        ("inbound", "in_progress"),
        ("outbound", "in_progress"),
    }
    assert any(r["blind_transfers"] and not r["warm_transfers"] for r in rows)
    assert any(r["warm_transfers"] and not r["conferences"] for r in rows)
    assert any(r["consults"] > r["warm_transfers"] and not r["conferences"] for r in rows)  # consult returns
    assert any(r["conferences"] and r["warm_transfers"] for r in rows)
    assert any(r["conferences"] and not r["transfers"] for r in rows)
    assert any(r["transfers"] == 2 and r["blind_transfers"] == 1 and len(r["agent_path"]) == 3 for r in rows)
    assert any(r["outcome"] == "answered" and r["offers"] == 2 and r["distinct_agents"] == 2 for r in rows)
    assert any(r["outcome"] == "abandoned_after_offer" and r["offers"] == 2 for r in rows)
    assert any(r["direction"] == "internal" and len(r["agent_path"]) == 2 for r in rows)
    assert any(r["hold_abandon"] for r in rows) and any("customer_role" in r["inference"] for r in rows)
    assert any(not r["is_complete"] and r["outcome"] == "answered" for r in rows)

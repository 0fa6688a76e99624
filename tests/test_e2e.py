"""End to end: ``vccflow generate`` traffic through ``vccflow batch``, compared with the
ground truth the generator knows by construction (never with the sessionizer's output)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "vcc-demo"

CHANNEL_COLUMNS = [
    "interaction_id", "conversation_id", "party_role", "agent_id", "user_id",
    "alerted_at", "connected_at", "disconnected_at", "wrap_started_at", "ended_at", "first_event_at", "last_event_at",
    "connection_failed", "end_reason", "alert_ms", "connected_ms", "talk_ms", "hold_ms", "park_ms", "interruption_ms",
    "wrap_ms", "handle_ms", "hold_count", "park_count", "interruption_count", "longest_hold_ms", "longest_park_ms",
    "longest_interruption_ms", "held_at_disconnect", "disconnect_state", "is_complete", "open_state", "event_count",
    "duplicate_count", "anomaly_count", "anomalies",
]  # fmt: skip
SEGMENT_COLUMNS = ["seq", "state", "start_at", "end_at", "duration_ms", "started_by", "ended_by"]
PRESENCE_COLUMNS = ["presence_type", "presence_id", "presence_subcategory", "start_at", "end_at", "duration_ms"]
SESSION_COLUMNS = [
    "session_id", "login_at", "logout_at", "duration_ms", "ready_ms", "away_ms", "extended_away_ms",
    "other_presence_ms", "channels_handled", "talk_ms", "hold_ms", "park_ms", "interruption_ms", "wrap_ms",
    "handle_ms", "busy_ms", "is_open", "is_inferred",
]  # fmt: skip


def plain(value):
    """Parquet values as the truth file writes them: ISO-8601 with microseconds, None, lists."""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if value is None or value is pd.NaT or (isinstance(value, float) and pd.isna(value)):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def records(df: pd.DataFrame, columns: list[str]) -> list[dict]:
    return [{c: plain(row[c]) for c in columns} for _, row in df.iterrows()]


#: The default runner's two modes: in-process (small inputs) and one worker process
#: (:mod:`pipelines.worker`) per core (from 64 MiB of input on), forced here on a small input.
RUNNER_MODES = {
    "in_process": [],
    "two_worker_processes": ["--direct_num_workers=2"],
}


@pytest.fixture(scope="module", params=sorted(RUNNER_MODES))
def run(tmp_path_factory, request):
    base = tmp_path_factory.mktemp("e2e")
    gen = base / "gen"
    args = ["--output", str(gen), "--agents", "8", "--interactions", "160", "--seed", "11", "--shuffle"]
    args += ["--files", "3", "--gzip", "--duplicates", "0.05", "--malformed", "0.02"]
    assert main(["generate", *args]) == 0
    out = base / "out"
    batch = ["batch", "--input", str(gen / "notifications-*.jsonl.gz"), "--output", str(out), "--shards", "5"]
    assert main([*batch, *RUNNER_MODES[request.param]]) == 0
    truth = json.loads((gen / "truth.json").read_text())
    return out, truth


def test_every_channel_matches_the_truth(run):
    out, truth = run
    sessions = pd.read_parquet(out / "channel_sessions").set_index("channel_id")
    assert sessions.index.is_unique
    assert set(sessions.index) == set(truth["channels"])
    assert sessions["is_complete"].sum() > 0 and (~sessions["is_complete"]).sum() >= 3
    for channel_id, expected in truth["channels"].items():
        got = {c: plain(sessions.loc[channel_id, c]) for c in CHANNEL_COLUMNS}
        assert got == {c: expected[c] for c in CHANNEL_COLUMNS}, channel_id


def test_every_segment_matches_the_truth(run):
    out, truth = run
    segments = pd.read_parquet(out / "channel_segments").sort_values(["channel_id", "seq"])
    by_channel = {cid: records(df, SEGMENT_COLUMNS) for cid, df in segments.groupby("channel_id")}
    expected = {
        cid: [{c: s[c] for c in SEGMENT_COLUMNS} for s in ch["segments"]] for cid, ch in truth["channels"].items()
    }
    assert by_channel == {cid: segs for cid, segs in expected.items() if segs}


def test_dead_letters_and_accounting_match_the_truth(run):
    out, truth = run
    counts = truth["counts"]
    dead = pd.read_parquet(out / "dead_letter")
    assert dead["error_code"].value_counts().to_dict() == counts["dead_letters"]
    assert dead["origin"].str.match(r".*notifications-\d{5}\.jsonl\.gz:\d+$").all()
    report = json.loads((out / "_run_report.json").read_text())
    assert (report["lines"], report["blank_lines"], report["valid_events"], report["duplicates_dropped"]) == (
        counts["lines"],
        counts["blank"],
        counts["valid"],
        counts["duplicates"],
    )
    assert report["dead_letters_by_code"] == counts["dead_letters"] and report["accounting_closes"]
    assert report["validation"]["success"]
    assert report["rows"]["channel_sessions"] == len(truth["channels"])


def test_presence_intervals_match_the_truth(run):
    out, truth = run
    presence = pd.read_parquet(out / "agent_presence").sort_values(["agent_id", "start_at"])
    got = {aid: records(df, PRESENCE_COLUMNS) for aid, df in presence.groupby("agent_id")}
    expected = {aid: [{c: p[c] for c in PRESENCE_COLUMNS} for p in rows] for aid, rows in truth["presence"].items()}
    assert got == expected


def test_agent_sessions_and_their_work_match_the_truth(run):
    out, truth = run
    sessions = pd.read_parquet(out / "agent_sessions").sort_values(["agent_id", "login_at"])
    got = {aid: records(df, SESSION_COLUMNS) for aid, df in sessions.groupby("agent_id")}
    expected: dict[str, list[dict]] = {}
    for group in ("agent_sessions", "agent_sessions_inferred"):
        for aid, rows in truth[group].items():
            expected.setdefault(aid, []).extend({c: r[c] for c in SESSION_COLUMNS} for r in rows)
    for rows in expected.values():
        rows.sort(key=lambda r: r["login_at"])
    assert got == expected
    assert (sessions["occupancy"].between(0, 1)).all()
    assert sessions["is_inferred"].any() and sessions["is_open"].any()


def test_demo_command_on_the_bundled_sample(tmp_path):
    """What ``make demo`` runs, through the installed console script."""
    vccflow = Path(sys.executable).with_name("vccflow")
    out = tmp_path / "demo"
    cmd = [str(vccflow), "batch", "--input", str(SAMPLE / "notifications-*.jsonl"), "--output", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    truth = json.loads((SAMPLE / "truth.json").read_text())
    assert f"channel_sessions {len(truth['channels'])}," in done.stdout
    assert "mean handle" in done.stdout and "validation: passed" in done.stdout
    assert len(pd.read_parquet(out / "channel_sessions")) == len(truth["channels"])


INTERVAL = pd.Timedelta(minutes=15)
AGENT_DURATIONS = ["ready_ms", "away_ms", "extended_away_ms", "other_presence_ms", "busy_ms"]
CHANNEL_DURATIONS = {"alerting": "alert_ms", "connected": "talk_ms", "held": "hold_ms", "parked": "park_ms",
                     "interrupted": "interruption_ms", "wrap": "wrap_ms"}  # fmt: skip


def _ms(text: str | None):
    """Whole milliseconds since the epoch of a truth time (floored, as every duration)."""
    return None if text is None else pd.Timestamp(text).value // 1_000_000


def test_agent_intervals_add_up_to_the_true_sessions_and_channels(run):
    """Issue 16, acceptance 4: per agent, the sum over its intervals of each duration is the
    total of its true agent_sessions (presence, busy) and agent-role channels (alert ... wrap);
    the counts are its channels' (offers, answered, missed, handled)."""
    out, truth = run
    intervals = pd.read_parquet(out / "agent_intervals")
    assert not intervals.duplicated(["agent_id", "interval_start"]).any()
    assert ((intervals["interval_end"] - intervals["interval_start"]) == INTERVAL).all()
    assert (intervals["interval_start"].dt.minute % 15 == 0).all() and intervals["max_concurrency"].max() >= 2
    got = intervals.groupby("agent_id").sum(numeric_only=True)
    expected: dict[str, dict] = {}
    for group in ("agent_sessions", "agent_sessions_inferred"):
        for agent, rows in truth[group].items():
            row = expected.setdefault(agent, dict.fromkeys([*AGENT_DURATIONS, "logged_in_ms"], 0))
            for r in rows:
                row["logged_in_ms"] += r["duration_ms"]
                for column in AGENT_DURATIONS:
                    row[column] += r[column]
    for channel in truth["channels"].values():
        if channel["party_role"] != "agent" or channel["agent_id"] is None:
            continue
        row = expected[channel["agent_id"]]
        for column in CHANNEL_DURATIONS.values():
            row[column] = row.get(column, 0) + channel[column]
        connected, ended = channel["connected_at"] is not None, channel["ended_at"] is not None
        missed = channel["alerted_at"] is not None and not connected and channel["open_state"] != "alerting"
        for column, count in [("offers", channel["alerted_at"] is not None), ("answered", connected),
                              ("missed", missed), ("handled", connected and ended)]:  # fmt: skip
            row[column] = row.get(column, 0) + count
        row["handle_ms_of_handled"] = row.get("handle_ms_of_handled", 0) + (
            channel["handle_ms"] if connected and ended else 0
        )
    assert sorted(got.index) == sorted(expected)
    for agent, row in expected.items():
        assert {c: int(got.loc[agent, c]) for c in row} == row, agent
    assert expected[next(iter(truth["agent_sessions_inferred"]))]["other_presence_ms"] > 0


def test_agent_interval_channel_time_is_the_true_segments_clipped_to_each_interval(run):
    """The split itself, by an independent clip of every true segment to every interval."""
    out, truth = run
    expected: dict[tuple, int] = {}
    for channel in truth["channels"].values():
        if channel["party_role"] != "agent" or channel["agent_id"] is None:
            continue
        for seg in channel["segments"]:
            if seg["end_at"] is None:
                continue
            start, end = _ms(seg["start_at"]), _ms(seg["end_at"])
            step = 15 * 60_000
            for k in range(start // step, (end - 1) // step + 1 if end > start else start // step):
                piece = min(end, (k + 1) * step) - max(start, k * step)
                key = (channel["agent_id"], k * step, CHANNEL_DURATIONS[seg["state"]])
                expected[key] = expected.get(key, 0) + piece
    intervals = pd.read_parquet(out / "agent_intervals")
    got = {
        (row.agent_id, row.interval_start.value // 1_000_000, column): getattr(row, column)
        for row in intervals.itertuples()
        for column in CHANNEL_DURATIONS.values()
        if getattr(row, column)
    }
    assert got == {k: v for k, v in expected.items() if v}


def test_service_intervals_count_the_true_agent_channels_by_their_end(run):
    out, truth = run
    service = pd.read_parquet(out / "service_intervals")
    assert service["interval_start"].is_unique
    handled = [
        c for c in truth["channels"].values() if c["party_role"] == "agent" and c["connected_at"] and c["ended_at"]
    ]
    by_interval: dict[int, list[int]] = {}
    for c in handled:
        row = by_interval.setdefault(_ms(c["ended_at"]) // (15 * 60_000), [0, 0])
        row[0] += 1
        row[1] += c["handle_ms"]
    got = {
        row.interval_start.value // (15 * 60 * 10**9): [row.handled, row.handle_ms_of_handled]
        for row in service.itertuples()
        if row.handled
    }
    assert got == by_interval and sum(n for n, _ in got.values()) == len(handled) > 0


def test_service_intervals_add_up_to_the_interactions_table(run):
    """Issue 16, acceptance 4: per interval of arrival, the service counts are those of the
    true interactions table (pandas over the generator's rows, independent of the interval
    core and of the interactions the pipeline built)."""
    out, truth = run
    interactions = pd.DataFrame(list(truth["interactions"].values()))
    interactions["started_at"] = pd.to_datetime(interactions["started_at"])
    service = pd.read_parquet(out / "service_intervals").set_index("interval_start")
    frame = interactions.assign(
        interval_start=interactions["started_at"].dt.floor("15min"),
        inbound=interactions["direction"] == "inbound",
        outbound=interactions["direction"] == "outbound",
    )
    inbound = frame["inbound"]
    frame["answered"] = inbound & (frame["outcome"] == "answered")
    frame["abandoned"] = inbound & frame["outcome"].str.startswith("abandoned")
    frame["in_progress"] = inbound & ~frame["answered"] & ~frame["abandoned"]
    frame["outbound_connected"] = frame["outbound"] & (frame["outcome"] == "connected")
    frame["sum_time_to_answer_ms"] = frame["time_to_answer_ms"].where(frame["answered"], 0)
    frame["sum_abandon_ms"] = frame["abandon_ms"].where(frame["abandoned"], 0)
    for s in (10, 20, 30, 60, 120):
        frame[f"answered_within_{s}s"] = frame["answered"] & (frame["time_to_answer_ms"] <= s * 1000)
        frame[f"abandoned_within_{s}s"] = frame["abandoned"] & (frame["abandon_ms"] <= s * 1000)
    frame["short_abandoned"] = frame["abandoned"] & (frame["abandon_ms"] < 5000)
    columns = [c for c in service.columns if c not in ("interval_end", "event_date", "handled", "handle_ms_of_handled")]
    columns.remove("max_time_to_answer_ms")
    expected = frame.groupby("interval_start")[columns].sum().astype("int64")
    expected["max_time_to_answer_ms"] = frame["sum_time_to_answer_ms"].groupby(frame["interval_start"]).max()
    # every interval an interaction arrived in has its row (the others: handled only, zeros here)
    got = service[[*columns, "max_time_to_answer_ms"]].astype("int64")
    assert (got.drop(expected.index) == 0).all().all()
    pd.testing.assert_frame_equal(got.loc[expected.index], expected.astype("int64"), check_names=False)
    assert got["inbound"].sum() == (interactions["direction"] == "inbound").sum() > 0
    assert got["outbound"].sum() == (interactions["direction"] == "outbound").sum() > 0


def test_every_interaction_matches_the_truth(run):
    """Issue 15, acceptance 5: every interactions row and column is the one the generator
    planned (its contact kinds: abandons by stage, rejected offers, transfers, consults,
    conferences, chains, outbound failures, internal calls)."""
    from schemas.outputs import INTERACTIONS

    out, truth = run
    rows = pd.read_parquet(out / "interactions").set_index("interaction_id")
    assert rows.index.is_unique and set(rows.index) == set(truth["interactions"])
    columns = [c for c in INTERACTIONS.names if c not in ("interaction_id", "event_date")]
    for interaction_id, expected in truth["interactions"].items():
        got = {c: plain(rows.loc[interaction_id, c]) for c in columns}
        assert got == {c: expected[c] for c in columns}, interaction_id
    kinds = truth["counts"]["contact_kinds"]
    assert len(kinds) >= 14 and min(kinds.values()) >= 1
    assert rows["outcome"].value_counts().to_dict() == truth["counts"]["outcomes"]

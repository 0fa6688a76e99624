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

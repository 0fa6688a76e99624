"""End to end on the real Pub/Sub emulator: a generated conversation set is published with
``vccflow publish --rebase-time`` while ``vccflow stream`` runs on the local runner in a
subprocess; its Parquet files are compared to the generator's truth, then the job is
stopped with SIGINT. A dummy agent's presence heartbeat keeps the local runner's wall-clock
watermark moving once the data is in. Skipped when the emulator is not installed, except where ``CI=true``."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.dataset as ds

from pipelines import generate, publish
from schemas.outputs import CHANNEL_METRICS as METRICS
from tests.pubsub_emulator import stop_group

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "vccflow-e2e"
#: The wait for the tables fails after this long without a new row (the local runner is
#: slow on a loaded 2-core machine, so the clock restarts with every row that lands) ...
STALL_S = 90
#: ... or after this long in all.
WAIT_S = 420
HEARTBEAT_AGENT = "e2e-heartbeat"


def heartbeat(n: int) -> bytes:
    """A presence notification of a dummy agent, now: it keeps the local runner's wall-clock
    watermark moving (its Pub/Sub reads return at once instead of waiting ~30 s for data)."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    event = {
        "specversion": "1.0",
        "type": "agent.presencechanged.v1",
        "id": f"heartbeat-{n}",
        "source": "/agent",
        "subject": HEARTBEAT_AGENT,
        "time": now,
        "data": {"timestamp": now, "presence": {"category": {"type": "ready"}}, "user": {"agentId": HEARTBEAT_AGENT}},
    }
    return json.dumps(event).encode()


def publish_heartbeats(topic: str, stop: threading.Event) -> None:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    n = 0
    while not stop.wait(0.5):
        publisher.publish(topic, heartbeat(n)).result(timeout=10)
        n += 1


def read_rows(root: Path, table: str) -> list[dict]:
    folder = root / table
    if not folder.is_dir():
        return []
    return ds.dataset(folder, format="parquet", partitioning="hive").to_table().to_pylist()


def start_stream_job(subscription: str, out: Path, log: Path) -> subprocess.Popen:
    """``vccflow stream`` on the local runner in its own process group, short windows."""
    command = [sys.executable, "-m", "pipelines.stream", "--subscription", subscription, "--output", str(out)]
    command += ["--window-seconds", "2", "--grace-seconds", "2", "--expire-after-seconds", "20"]
    with open(log, "wb") as sink:
        return subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_tables(job: subprocess.Popen, out: Path, truth: dict, log: Path) -> tuple[list[dict], list[dict]]:
    """The ``channel_sessions`` and non-``late`` ``dead_letter`` rows, once there are as many
    as the truth has and every interaction is in (fails if the job dies, if ``STALL_S`` pass
    without a new row, or after ``WAIT_S``)."""
    start = last_progress = time.monotonic()
    expected_dead = sum(truth["counts"]["dead_letters"].values())
    seen = (0, 0, 0)
    while True:
        sessions = read_rows(out, "channel_sessions")
        dead = [r for r in read_rows(out, "dead_letter") if r["error_code"] != "late"]
        interactions = read_rows(out, "interactions")
        now = (len(sessions), len(dead), len(interactions))
        if now[0] >= len(truth["channels"]) and now[1] >= expected_dead and now[2] >= len(truth["interactions"]):
            return sessions, dead
        if now != seen:
            seen, last_progress = now, time.monotonic()
        assert job.poll() is None, f"the stream job died:\n{log.read_text(errors='replace')[-3000:]}"
        stalled, waited = time.monotonic() - last_progress, time.monotonic() - start
        assert stalled < STALL_S and waited < WAIT_S, (
            f"after {waited:.0f}s ({stalled:.0f}s without a new row): {now[0]} of {len(truth['channels'])} "
            f"channels, {now[1]} of {expected_dead} dead letters, {now[2]} of {len(truth['interactions'])} "
            "interactions\n" + log.read_text(errors="replace")[-3000:]
        )
        time.sleep(1)


def iso(value):
    """A Parquet value as the truth file writes it (ISO-8601 UTC with microseconds)."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if isinstance(value, datetime) else value


def assert_tables_match_truth(out: Path, truth: dict, sessions: list[dict], dead: list[dict]) -> None:
    """Channel rows, segments, dead letters and the raw archive are the generator's truth."""
    by_id = {row["channel_id"]: row for row in sessions}
    assert len(by_id) == len(sessions), "a channel was emitted twice"
    assert by_id.keys() == truth["channels"].keys()
    for channel_id, expected in truth["channels"].items():
        got = {k: by_id[channel_id][k] for k in METRICS}
        assert got == {k: expected[k] for k in METRICS}, channel_id
    segments = read_rows(out, "channel_segments")
    assert len(segments) == sum(len(ch["segments"]) for ch in truth["channels"].values())
    interactions = {row["interaction_id"]: row for row in read_rows(out, "interactions")}
    assert interactions.keys() == truth["interactions"].keys()
    # ``--rebase-time`` moved every event by one whole-second shift: the same for every time
    some_id, some = next(iter(truth["interactions"].items()))
    shift = interactions[some_id]["started_at"] - datetime.fromisoformat(some["started_at"])
    assert shift.microseconds == 0
    for interaction_id, expected in truth["interactions"].items():
        row = interactions[interaction_id]
        got = {k: iso(row[k] - shift if isinstance(row[k], datetime) else row[k]) for k in expected}
        assert got == expected, interaction_id

    codes = {}
    for row in dead:
        codes[row["error_code"]] = codes.get(row["error_code"], 0) + 1
        assert row["origin"].startswith("pubsub:")
    assert codes == truth["counts"]["dead_letters"]

    archived = [
        line
        for path in (out / "raw").rglob("*.jsonl.gz")
        for line in gzip.decompress(path.read_bytes()).splitlines()
        if HEARTBEAT_AGENT.encode() not in line
    ]
    assert len(archived) == truth["counts"]["valid"] + truth["counts"]["duplicates"]
    assert not [p for p in out.rglob(".*")], "a temporary file was left visible in the output"


def test_stream_job_on_the_emulator_matches_the_generator_truth(pubsub_emulator, tmp_path, monkeypatch):
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    topic = f"projects/{PROJECT}/topics/notifications"
    subscription = f"projects/{PROJECT}/subscriptions/vccflow"
    pubsub_v1.PublisherClient().create_topic(name=topic)
    pubsub_v1.SubscriberClient().create_subscription(name=subscription, topic=topic)

    data = tmp_path / "generated"
    assert generate.run(["--output", str(data), "--agents", "3", "--interactions", "30", "--seed", "11"]) == 0
    truth = json.loads((data / "truth.json").read_text())

    out = tmp_path / "live"
    log = tmp_path / "stream.log"
    job = start_stream_job(subscription, out, log)
    stop = threading.Event()
    beats = threading.Thread(target=publish_heartbeats, args=(topic, stop), daemon=True)
    try:
        inputs = str(data / "notifications-*.jsonl")
        assert publish.run(["--topic", topic, "--input", inputs, "--rate", "1000", "--rebase-time"]) == 0
        beats.start()
        sessions, dead = wait_for_tables(job, out, truth, log)
    finally:
        code = stop_group(job, signal.SIGINT, 45)  # heartbeats still on: the job's last read returns at once
        stop.set()
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert_tables_match_truth(out, truth, sessions, dead)

"""End to end on the real Pub/Sub emulator: a generated conversation set is published with
``vccflow publish --rebase-time`` while ``vccflow stream`` runs on the local runner in a
subprocess; its Parquet files are compared to the generator's truth, then the job is
stopped with SIGINT. A dummy agent's presence heartbeat keeps the local runner's wall-clock
watermark moving once the data is in. Skipped when the emulator is not installed, except where ``CI=true``."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from pipelines import generate, publish
from schemas.outputs import CHANNEL_METRICS as METRICS
from tests.pubsub_emulator import start_emulator, stop_group

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "vccflow-e2e"
WAIT_S = 90
HEARTBEAT_AGENT = "e2e-heartbeat"


@pytest.fixture(scope="module")
def pubsub_emulator(tmp_path_factory):
    emulator = start_emulator(tmp_path_factory.mktemp("emulator"))
    if emulator is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("the Pub/Sub emulator is not installed (CI=true: required)")
        pytest.skip("the Pub/Sub emulator is not installed")
    yield emulator
    emulator.stop()


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
    expected_dead = truth["counts"]["dead_letters"]

    out = tmp_path / "live"
    log = tmp_path / "stream.log"
    command = [sys.executable, "-m", "pipelines.stream", "--subscription", subscription, "--output", str(out)]
    command += ["--window-seconds", "2", "--grace-seconds", "2", "--expire-after-seconds", "20"]
    with open(log, "wb") as sink:
        job = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    stop = threading.Event()
    beats = threading.Thread(target=publish_heartbeats, args=(topic, stop), daemon=True)
    try:
        inputs = str(data / "notifications-*.jsonl")
        assert publish.run(["--topic", topic, "--input", inputs, "--rate", "1000", "--rebase-time"]) == 0
        beats.start()
        deadline = time.monotonic() + WAIT_S
        while True:
            sessions = read_rows(out, "channel_sessions")
            dead = [r for r in read_rows(out, "dead_letter") if r["error_code"] != "late"]
            if len(sessions) >= len(truth["channels"]) and len(dead) >= sum(expected_dead.values()):
                break
            assert job.poll() is None, f"the stream job died:\n{log.read_text(errors='replace')[-3000:]}"
            assert time.monotonic() < deadline, (
                f"after {WAIT_S}s: {len(sessions)} of {len(truth['channels'])} channels, {len(dead)} dead letters\n"
                + log.read_text(errors="replace")[-3000:]
            )
            time.sleep(1)
    finally:
        code = stop_group(job, signal.SIGINT, 45)  # heartbeats still on: the job's last read returns at once
        stop.set()
    assert code == 0, log.read_text(errors="replace")[-3000:]

    by_id = {row["channel_id"]: row for row in sessions}
    assert len(by_id) == len(sessions), "a channel was emitted twice"
    assert by_id.keys() == truth["channels"].keys()
    for channel_id, expected in truth["channels"].items():
        got = {k: by_id[channel_id][k] for k in METRICS}
        assert got == {k: expected[k] for k in METRICS}, channel_id
    segments = read_rows(out, "channel_segments")
    assert len(segments) == sum(len(ch["segments"]) for ch in truth["channels"].values())

    codes = {}
    for row in dead:
        codes[row["error_code"]] = codes.get(row["error_code"], 0) + 1
        assert row["origin"].startswith("pubsub:")
    assert codes == expected_dead

    archived = [
        line
        for path in (out / "raw").rglob("*.jsonl.gz")
        for line in gzip.decompress(path.read_bytes()).splitlines()
        if HEARTBEAT_AGENT.encode() not in line
    ]
    assert len(archived) == truth["counts"]["valid"] + truth["counts"]["duplicates"]
    assert not [p for p in out.rglob(".*")], "a temporary file was left visible in the output"

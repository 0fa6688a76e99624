"""End to end through the front door: ``vccflow generate`` traffic, each notification signed
as VCC signs it and POSTed to ``vccflow receive``, then

- Pub/Sub: receiver -> emulator -> ``vccflow stream`` -> Parquet, equal to the generator's
  truth (the steps of tests/test_pubsub_e2e.py, with the receiver in place of ``vccflow
  publish``);
- files: receiver -> hourly NDJSON -> ``vccflow batch --input 'DIR/**/*.jsonl*'`` ->
  Parquet, equal to the truth, while another receiver still writes a hidden file there.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pandas as pd

from pipelines import generate, publish
from pipelines.cli import main
from schemas.outputs import CHANNEL_METRICS as METRICS
from tests.pubsub_emulator import stop_group
from tests.receiver_process import start_receiver
from tests.test_e2e import plain
from tests.test_pubsub_e2e import assert_tables_match_truth, publish_heartbeats, start_stream_job, wait_for_tables

PROJECT = "vccflow-receive-e2e"


def generated(tmp_path: Path) -> tuple[list[bytes], dict]:
    """The generator's notifications (blank lines left out: VCC posts none), as delivered:
    duplicates, garbage and disorder included; and its truth."""
    data = tmp_path / "generated"
    assert generate.run(["--output", str(data), "--agents", "3", "--interactions", "30", "--seed", "11"]) == 0
    paths = sorted(str(p) for p in data.glob("notifications-*.jsonl"))
    return list(publish.read_records(paths)), json.loads((data / "truth.json").read_text())


def post_all(receiver, bodies: list[bytes], threads: int = 4) -> list[int]:
    """POST every body (signed) from a few concurrent clients; the statuses in body order."""
    statuses = [0] * len(bodies)

    def client(k: int) -> None:
        for i in range(k, len(bodies), threads):
            statuses[i] = receiver.post(bodies[i])[0]

    workers = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return statuses


def test_signed_traffic_through_the_receiver_and_the_stream_job_matches_the_truth(
    pubsub_emulator, tmp_path, monkeypatch
):
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    topic = f"projects/{PROJECT}/topics/notifications"
    subscription = f"projects/{PROJECT}/subscriptions/vccflow"
    pubsub_v1.PublisherClient().create_topic(name=topic)
    pubsub_v1.SubscriberClient().create_subscription(name=subscription, topic=topic)
    out, log = tmp_path / "live", tmp_path / "stream.log"
    job = start_stream_job(subscription, out, log)  # first: it takes longest to start
    stop = threading.Event()
    receiver = None
    try:
        records, truth = generated(tmp_path)
        # the local runner's watermark is the wall clock: events shifted to now, as publish --rebase-time does
        paths = sorted(str(p) for p in (tmp_path / "generated").glob("notifications-*.jsonl"))
        offset = publish.rebase_offset(paths, time.time_ns() // 1000)
        bodies = [publish.rebase(raw, offset) for raw in records]
        receiver = start_receiver(tmp_path / "receiver", "--topic", topic)
        assert post_all(receiver, bodies) == [204] * len(bodies)
        threading.Thread(target=publish_heartbeats, args=(topic, stop), daemon=True).start()
        sessions, dead = wait_for_tables(job, out, truth, log)
    finally:
        code = stop_group(job, signal.SIGINT, 45)
        stop.set()
        receiver_code = receiver.stop() if receiver else None
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert receiver_code == 0
    assert_tables_match_truth(out, truth, sessions, dead)
    counters = json.loads(receiver.stderr.read_text().split("counters: ")[-1].splitlines()[0])
    assert counters["accepted"] == len(bodies) and counters["rejected_total"] == counters["failed_total"] == 0


def test_signed_traffic_through_the_file_sink_and_the_batch_job_matches_the_truth(tmp_path):
    records, truth = generated(tmp_path)
    archive = tmp_path / "archive"
    receiver = start_receiver(tmp_path / "receiver", "--output", str(archive))
    half = len(records) // 2
    try:
        assert post_all(receiver, records[:half]) == [204] * half
    finally:
        assert receiver.stop() == 0
    receiver = start_receiver(tmp_path / "receiver", "--output", str(archive))  # a restart: a second file
    assert post_all(receiver, records[half:]) == [204] * (len(records) - half)
    assert receiver.stop() == 0

    # another receiver is still writing: read, its hidden file would add a dead letter
    writing = start_receiver(tmp_path / "writing", "--output", str(archive))
    try:
        assert writing.post(b'{"not": "in the truth", ') == (204, None)
        assert len(list(archive.glob("*/.notifications-*.jsonl"))) == 1
        out = tmp_path / "out"
        assert main(["batch", "--input", str(archive / "**" / "*.jsonl*"), "--output", str(out)]) == 0
    finally:
        assert writing.stop() == 0

    sessions = pd.read_parquet(out / "channel_sessions").set_index("channel_id")
    assert sessions.index.is_unique and set(sessions.index) == set(truth["channels"])
    columns = (*METRICS, "event_count", "duplicate_count")
    for channel_id, expected in truth["channels"].items():
        got = {k: plain(sessions.loc[channel_id, k]) for k in columns}
        assert got == {k: expected[k] for k in columns}, channel_id
    dead = pd.read_parquet(out / "dead_letter")
    assert dead["error_code"].value_counts().to_dict() == truth["counts"]["dead_letters"]

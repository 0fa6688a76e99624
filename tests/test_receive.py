"""``vccflow receive`` with the Pub/Sub sink, as a real process on a loopback port, real HTTP
requests, the real Pub/Sub emulator: what is accepted is published as received (with the
attribute ``event_id``), what is refused is answered 401/413/415 with its reason and never
published, a publish failure is 503 and never 2xx, and no secret or token reaches a log."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import threading
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core.exceptions import DeadlineExceeded

from pipelines.receive import build_parser
from pipelines.receiver.signature import sign
from tests.pubsub_emulator import start_emulator
from tests.receiver_process import KEY, OLD_KEY, OLD_SECRET, SECRET, start_receiver
from transforms.events import MAX_EVENT_BYTES

PROJECT = "vccflow-receive"
TOPIC = f"projects/{PROJECT}/topics/notifications"
SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/check"


def event(n: int | str, **extra) -> bytes:
    notification = {
        "specversion": "1.0",
        "type": "agent.presencechanged.v1",
        "id": f"receive-test-{n}",
        "source": "/agent",
        "time": "2024-03-04T08:00:00.000Z",
        "data": {"timestamp": "2024-03-04T08:00:00.000Z", "user": {"agentId": "a1"}},
        **extra,
    }
    return json.dumps(notification).encode()


@pytest.fixture(scope="module")
def emulator_env(pubsub_emulator):
    """``PUBSUB_EMULATOR_HOST`` for this process, the topic and a subscription to check it."""
    from google.cloud import pubsub_v1

    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_emulator.host
    pubsub_v1.PublisherClient().create_topic(name=TOPIC)
    subscriber = pubsub_v1.SubscriberClient()
    subscriber.create_subscription(name=SUBSCRIPTION, topic=TOPIC)
    yield subscriber
    if previous is None:
        del os.environ["PUBSUB_EMULATOR_HOST"]
    else:
        os.environ["PUBSUB_EMULATOR_HOST"] = previous


@pytest.fixture(scope="module")
def receiver(tmp_path_factory, emulator_env):
    """One receiver for the module: two secrets (the new one and the old one, rotation)
    in one variable, the default body cap."""
    server = start_receiver(
        tmp_path_factory.mktemp("receiver"),
        "--topic",
        TOPIC,
        "--secret-env",
        "VCC_SECRETS",
        env={"VCC_SECRETS": f"{SECRET}, {OLD_SECRET}"},
    )
    yield server
    server.stop()


def drain(subscriber, marker: bytes, timeout_s: float = 30) -> list:
    """Pull (and ack) every message until one with data ``marker`` came, then once more:
    everything published up to the marker."""
    received = []
    deadline = time.monotonic() + timeout_s
    seen = False
    while True:
        try:
            wait = 1 if seen else 5
            pulled = subscriber.pull(subscription=SUBSCRIPTION, max_messages=100, timeout=wait).received_messages
        except DeadlineExceeded:
            pulled = []
        messages = [m.message for m in pulled]
        if pulled:
            subscriber.acknowledge(subscription=SUBSCRIPTION, ack_ids=[m.ack_id for m in pulled])
        received += messages
        if seen:
            return received
        seen = any(m.data == marker for m in messages)
        assert time.monotonic() < deadline, f"{marker!r} not received in {timeout_s}s"


def test_a_signed_notification_is_published_as_received_with_its_event_id(receiver, emulator_env):
    body = event(1)
    assert receiver.post(body) == (204, None)
    [message] = drain(emulator_env, body)
    assert message.data == body
    assert dict(message.attributes) == {"event_id": "receive-test-1"}
    # both content types; parameters such as charset are fine
    for i, content_type in enumerate(["application/json", "application/cloudevents+json; charset=utf-8"], 2):
        assert receiver.post(event(i), content_type=content_type) == (204, None)
        assert [m.data for m in drain(emulator_env, event(i))] == [event(i)]


def test_bodies_that_are_not_events_are_published_as_received_without_event_id(receiver, emulator_env):
    bodies = [
        b"not json at all \xff\xfe",
        b"[1, 2, 3]",
        b'{"type": "channel.held.v1"}',  # an object without id
        b'{"id": 42}',  # an id that is not a string
        b'{"id": "' + b"x" * 1100 + b'"}',  # longer than a Pub/Sub attribute may be
        b'{"id": "cut',
        b'  {"id": "pretty",\n  "type": "x"}\n',
    ]
    for body in bodies:
        assert receiver.post(body) == (204, None), body
    messages = drain(emulator_env, bodies[-1])
    assert sorted(m.data for m in messages) == sorted(bodies)
    by_data = {m.data: dict(m.attributes) for m in messages}
    assert [by_data[b] for b in bodies[:-1]] == [{}] * (len(bodies) - 1)
    assert by_data[bodies[-1]] == {"event_id": "pretty"}


def test_every_refusal_is_401_with_its_reason_and_nothing_is_published(receiver, emulator_env):
    body = event("refused")
    now = time.time()
    digest = hashlib.sha256(body).hexdigest()
    claims = {"iat": int(now), "exp": int(now) + 300, "payload_hash": digest}

    def encoded(part: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "missing": [None],
        "malformed": [
            "Basic dXNlcjpwYXNz",
            "Bearer",
            sign(body, KEY, now).split()[1],  # the token without "Bearer"
            "Bearer not.a.jwt",
            "Bearer " + jwt.api_jws.encode(b"signed, but not a JSON object", KEY, algorithm="HS256"),
        ],
        "bad_signature": [sign(body, b"another secret, not configured!!", now)],
        "bad_hash": [sign(body + b" ", KEY, now), "Bearer " + jwt.encode({**claims, "payload_hash": "00" * 32}, KEY)],
        "expired": [sign(body, KEY, now - 400)],  # issued 400 s ago: expired 100 s ago, beyond the 30 s leeway
        "bad_alg": [
            "Bearer " + encoded({"alg": "none", "typ": "JWT"}) + "." + encoded(claims) + ".",
            "Bearer " + jwt.encode(claims, KEY * 2, algorithm="HS512"),
            "Bearer " + jwt.encode(claims, rsa_key, algorithm="RS256"),
        ],
        "missing_claim": ["Bearer " + jwt.encode({"exp": int(now) + 300}, KEY)],
    }
    before = receiver.metrics()["rejected"]
    for reason, headers in cases.items():
        for header in headers:
            assert receiver.post(body, signature=header) == (401, reason), header
    after = receiver.metrics()["rejected"]
    assert {r: after.get(r, 0) - before.get(r, 0) for r in cases} == {r: len(h) for r, h in cases.items()}

    marker = event("marker after the refusals")
    assert receiver.post(marker) == (204, None)
    assert [m.data for m in drain(emulator_env, marker)] == [marker]


def test_rotation_both_configured_secrets_are_accepted(receiver, emulator_env):
    assert receiver.post(event("new"), key=KEY) == (204, None)
    assert receiver.post(event("old"), key=OLD_KEY) == (204, None)
    assert receiver.post(event("neither"), key=bytes(32)) == (401, "bad_signature")
    received = [m.data for m in drain(emulator_env, event("old"))]
    assert sorted(received) == sorted([event("new"), event("old")])


def test_content_types_other_than_json_are_415(receiver):
    for content_type in ["text/plain", "application/x-www-form-urlencoded", None]:
        assert receiver.post(event("ct"), content_type=content_type) == (415, "unsupported_media_type")


def test_body_cap_is_the_pipelines_and_beyond_it_is_413(receiver, emulator_env):
    assert build_parser().parse_args(["--topic", TOPIC]).max_body_bytes == MAX_EVENT_BYTES
    head = b'{"id": "big", "pad": "'
    biggest = head + b"x" * (MAX_EVENT_BYTES - len(head) - 2) + b'"}'
    assert len(biggest) == MAX_EVENT_BYTES
    assert receiver.post(biggest) == (204, None)
    [message] = drain(emulator_env, biggest)
    assert message.data == biggest and dict(message.attributes) == {"event_id": "big"}

    # declared too large: refused from the headers, before the body is read
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as s:
        s.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\n"
            + f"Content-Length: {MAX_EVENT_BYTES + 1}\r\nVonage-Signature: Bearer x\r\n\r\n".encode()
        )
        assert s.recv(4096).startswith(b"HTTP/1.1 413")
    # chunked, no length: refused once more than the cap has arrived
    status, answer = _post_chunked(receiver.port, biggest + b"y")
    assert (status, json.loads(answer)) == (413, {"error": "too_large"})
    assert receiver.metrics()["rejected"]["too_large"] == 2


def _post_chunked(port: int, body: bytes) -> tuple[int, bytes]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/cloudevents+json", "Vonage-Signature": sign(body, KEY, time.time())}
        chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
        connection.request("POST", "/", body=chunks, headers=headers, encode_chunked=True)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_empty_signed_body_is_400_and_other_routes_are_http_errors(receiver):
    assert receiver.post(b"") == (400, "empty_body")
    assert receiver.request("GET", "/")[0] == 405
    assert receiver.request("POST", "/elsewhere", event(0), {"Content-Type": "application/json"})[0] == 404
    assert receiver.request("GET", "/healthz") == (200, b'{"status":"ok"}')


def test_metrics_count_outcomes_and_the_access_log_has_one_line_per_request(receiver, emulator_env):
    before = receiver.metrics()
    lines_before = len(receiver.access_log())
    accepted = [event("m1"), event("m2")]
    assert [receiver.post(b) for b in accepted] == [(204, None)] * 2
    assert receiver.post(b"") == (400, "empty_body")
    assert receiver.post(event("m3"), signature=None) == (401, "missing")
    assert receiver.post(event("m4"), content_type="text/plain") == (415, "unsupported_media_type")
    after = receiver.metrics()
    assert after["accepted"] - before["accepted"] == 2
    assert after["accepted_bytes"] - before["accepted_bytes"] == sum(map(len, accepted))
    assert after["rejected_total"] - before["rejected_total"] == 3
    assert after["rejected_total"] == sum(after["rejected"].values())
    assert after["failed_total"] == 0 and after["in_flight"] == 0 and after["uptime_s"] >= 0
    drain(emulator_env, accepted[-1])

    new = receiver.access_log()[lines_before:]
    posts = [e for e in new if e["method"] == "POST"]
    assert [(e["status"], e["reason"], e["event_id"]) for e in posts] == [
        (204, None, "receive-test-m1"),
        (204, None, "receive-test-m2"),
        (400, "empty_body", None),
        (401, "missing", None),
        (415, "unsupported_media_type", None),
    ]
    assert [e["bytes"] for e in posts[:2]] == [len(b) for b in accepted]
    assert all(e["path"] == "/" and e["latency_ms"] >= 0 and e["remote"] == "127.0.0.1" for e in posts)
    assert [e["severity"] for e in posts] == ["INFO", "INFO", "WARNING", "WARNING", "WARNING"]


def test_no_secret_or_token_reaches_the_logs(receiver):
    """Last of the module: every token sent so far, good or bad, and both secrets."""
    logs = receiver.logs()
    assert receiver.tokens and "listening" in logs
    for secret, key in ((SECRET, KEY), (OLD_SECRET, OLD_KEY)):
        for form in (secret, base64.urlsafe_b64encode(key).decode(), key.hex()):
            assert form not in logs
    leaked = [t for t in receiver.tokens if len(t) > 8 and t in logs]
    assert not leaked
    signatures = [t.split(".")[2] for t in receiver.tokens if t.count(".") == 2]
    assert not [s for s in signatures if len(s) > 8 and s in logs]  # not even the signature part of one


def test_a_publish_failure_is_503_and_never_2xx(tmp_path, monkeypatch):
    """Own emulator: it is stopped under the receiver's feet."""
    from google.cloud import pubsub_v1

    (tmp_path / "emulator").mkdir()
    emulator = start_emulator(tmp_path / "emulator")
    if emulator is None:
        pytest.skip("the Pub/Sub emulator is not installed")
    try:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
        pubsub_v1.PublisherClient().create_topic(name=TOPIC)
        server = start_receiver(
            tmp_path, "--topic", TOPIC, "--publish-timeout-seconds", "2", env={"PUBSUB_EMULATOR_HOST": emulator.host}
        )
        try:
            assert server.post(event("before")) == (204, None)
            emulator.stop()
            results = []
            threads = [
                threading.Thread(target=lambda i=i: results.append(server.post(event(f"lost-{i}")))) for i in range(8)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(results) == 8
            assert {status for status, _ in results} == {503}
            assert {reason for _, reason in results} <= {"publish_failed", "publish_timeout"}
            metrics = server.metrics()
            assert metrics["accepted"] == 1 and metrics["failed_total"] == 8
            assert sum(e["status"] == 204 for e in server.access_log()) == 1
        finally:
            assert server.stop() == 0
    finally:
        emulator.stop()


def test_sigterm_waits_for_a_publish_in_flight_then_exits_0(tmp_path, emulator_env):
    """A notification waiting for its batch (sent 1.5 s after it came) when SIGTERM comes is
    still published and answered 204 before the process exits."""
    server = start_receiver(tmp_path, "--topic", TOPIC, "--batch-latency-ms", "1500")
    body = event("in flight at shutdown")
    result = []
    client = threading.Thread(target=lambda: result.append(server.post(body)))
    client.start()
    deadline = time.monotonic() + 10
    while server.metrics()["in_flight"] == 0:
        assert time.monotonic() < deadline and client.is_alive(), "the request never arrived"
        time.sleep(0.02)
    os.killpg(server.process.pid, signal.SIGTERM)
    client.join(30)
    assert result == [(204, None)]
    assert server.process.wait(30) == 0
    assert [m.data for m in drain(emulator_env, body)] == [body]

"""``vccflow receive --output DIR``: each accepted notification is one NDJSON line, written
and fsync'd before the 2xx, in one hidden file per hour and process renamed when the hour
closes or at shutdown; restarts never overwrite; a crashed process's file is recovered; a
disk error is 503; SIGTERM finishes the requests in flight. Real processes and real HTTP,
except where a fake clock or a watched ``os.fsync`` needs the sink in this process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from pipelines.receive import build_parser, serve
from pipelines.receiver.signature import sign
from pipelines.receiver.sinks import FileSink
from tests.pubsub_emulator import free_port
from tests.receiver_process import KEY, ROOT, SECRET, start_receiver
from transforms.io import expand_patterns


def body(n: int, pad: int = 0) -> bytes:
    return json.dumps({"specversion": "1.0", "type": "x", "id": f"file-{n}", "pad": "p" * pad}).encode()


def visible(root: Path) -> list[Path]:
    return [Path(p) for p in expand_patterns([str(root / "**" / "*.jsonl*")])]


def hidden(root: Path) -> list[Path]:
    return sorted(root.glob("*/.notifications-*"))


def lines(paths: list[Path]) -> list[bytes]:
    return [line for p in paths for line in p.read_bytes().splitlines()]


@contextlib.contextmanager
def receiver_in_this_process(argv: list[str]):
    """The command's own ``serve`` on a loop in a thread (so that this process can watch
    its system calls); yields the port."""
    port = free_port()
    args = build_parser().parse_args(["--host", "127.0.0.1", "--port", str(port), *argv])
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(serve(args, [KEY], stop)))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert time.monotonic() < deadline and thread.is_alive(), "the receiver did not start"
            time.sleep(0.05)
        yield port
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


def post(port: int, data: bytes, path: str = "/") -> int:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/cloudevents+json", "Vonage-Signature": sign(data, KEY, time.time())}
    try:
        connection.request("POST", path, body=data, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_each_line_is_on_disk_and_fsynced_before_its_2xx(tmp_path, monkeypatch):
    synced: list[tuple[str, int]] = []  # (file, its size) after each fsync returned
    real_fsync = os.fsync

    def watched_fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_size))

    monkeypatch.setattr(os, "fsync", watched_fsync)
    out = tmp_path / "archive"
    with receiver_in_this_process(["--output", str(out)]) as port:
        for n in range(5):
            assert post(port, body(n)) == 204
            [current] = hidden(out)  # still hidden: the hour is not over
            content = current.read_bytes()
            assert content.endswith(body(n) + b"\n")  # readable right after the 2xx
            assert any(path == str(current) and size >= len(content) for path, size in synced), n
        # concurrent requests: every one answered 204, every line there (written together)
        statuses: list[int] = []
        threads = [threading.Thread(target=lambda n=n: statuses.append(post(port, body(n)))) for n in range(5, 35)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [204] * 30
        [current] = hidden(out)
        assert sorted(current.read_bytes().splitlines()) == sorted(body(n) for n in range(35))
    [closed] = visible(out)
    assert not hidden(out) and closed.name == current.name[1:]
    assert closed.parent.name == f"received_date={datetime.now(UTC):%Y-%m-%d}"


def test_hours_rotate_files_close_without_traffic_and_globs_see_only_closed_files(tmp_path):
    root = tmp_path / "archive"
    now = [datetime(2024, 3, 4, 13, 59, 59, 500000, tzinfo=UTC).timestamp()]

    async def scenario() -> None:
        sink = FileSink(root, clock=lambda: now[0], host="testhost", pid=4242)
        await sink.start()
        await sink.put(b'{"n": 1}', None)
        assert [p.name for p in hidden(root)] == [".notifications-20240304T13-testhost-4242-20240304T135959Z-0.jsonl"]
        assert not list(root.glob("*/notifications-*"))
        now[0] += 1.0  # 14:00:00.5, and no request: the sink closes the hour by itself
        deadline = time.monotonic() + 10
        while hidden(root):
            assert time.monotonic() < deadline, "the file of 13:00 was not closed"
            await asyncio.sleep(0.05)
        assert [p.name for p in visible(root)] == ["notifications-20240304T13-testhost-4242-20240304T135959Z-0.jsonl"]
        await sink.put(b'{"n": 2}', None)
        await sink.put(b'{"n": 3}\r\n{"n": 3.5}', None)  # one notification, one line
        now[0] = datetime(2024, 3, 5, 0, 0, 1, tzinfo=UTC).timestamp()
        await sink.put(b'{"n": 4}', None)
        assert len(visible(root)) == 2 and len(hidden(root)) == 1
        await sink.close()

    asyncio.run(scenario())
    assert not hidden(root)
    files = visible(root)
    assert [f"{p.parent.name}/{p.name}" for p in files] == [
        "received_date=2024-03-04/notifications-20240304T13-testhost-4242-20240304T135959Z-0.jsonl",
        "received_date=2024-03-04/notifications-20240304T14-testhost-4242-20240304T135959Z-1.jsonl",
        "received_date=2024-03-05/notifications-20240305T00-testhost-4242-20240304T135959Z-2.jsonl",
    ]
    assert [p.read_bytes() for p in files] == [b'{"n": 1}\n', b'{"n": 2}\n{"n": 3}  {"n": 3.5}\n', b'{"n": 4}\n']


def test_a_restart_never_overwrites_and_a_crashed_process_file_is_recovered(tmp_path):
    out = tmp_path / "archive"
    first = start_receiver(tmp_path, "--output", str(out))
    assert [post(first.port, body(n)) for n in range(3)] == [204] * 3
    assert first.stop() == 0
    second = start_receiver(tmp_path, "--output", str(out))
    assert [post(second.port, body(n)) for n in range(3, 5)] == [204] * 2
    second.stop(signal.SIGKILL)  # killed: its file stays hidden
    assert second.process.returncode == -signal.SIGKILL
    [left] = hidden(out)
    with open(left, "ab") as f:
        f.write(b'{"torn": "a line being written when the process died')
    assert len(visible(out)) == 1

    third = start_receiver(tmp_path, "--output", str(out))
    try:
        assert not hidden(out)  # renamed at the start, cut after its last complete line
        assert "left hidden by a process that died" in third.stderr.read_text()
        assert post(third.port, body(5)) == 204
    finally:
        assert third.stop() == 0
    files = visible(out)
    assert len(files) == 3 and len({p.name for p in files}) == 3
    assert sorted(lines(files)) == sorted(body(n) for n in range(6))


def test_a_live_writers_hidden_file_is_left_alone(tmp_path):
    async def scenario() -> None:
        writer = FileSink(tmp_path, host="samehost", pid=1)
        await writer.start()
        await writer.put(b'{"n": 1}', None)
        starting = FileSink(tmp_path, host="samehost", pid=2)
        await starting.start()  # recovers dead writers' files only: this one is locked
        assert len(hidden(tmp_path)) == 1
        await starting.close()
        await writer.close()

    asyncio.run(scenario())
    assert not hidden(tmp_path) and lines(visible(tmp_path)) == [b'{"n": 1}']


def test_a_disk_error_is_503_and_the_file_keeps_exactly_the_accepted_lines(tmp_path):
    """The kernel refuses to grow any file of the receiver past 4,000 bytes (RLIMIT_FSIZE):
    three lines of 1,300 bytes fit in a file, the fourth does not."""

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))

    out = tmp_path / "archive"
    server = start_receiver(tmp_path, "--output", str(out), "--no-access-log", preexec_fn=limit_file_size)
    try:
        statuses = [server.post(body(n, pad=1250)) for n in range(5)]
        metrics = server.metrics()
    finally:
        assert server.stop() == 0
    assert statuses == [(204, None)] * 3 + [(503, "disk_error"), (204, None)]
    assert metrics["failed"] == {"disk_error": 1} and metrics["accepted"] == 4
    files = visible(out)
    assert not hidden(out) and len(files) == 2
    assert lines(files) == [body(n, pad=1250) for n in (0, 1, 2, 4)]  # no part of the refused one


def test_sigterm_stops_accepting_finishes_requests_in_flight_and_exits_0(tmp_path):
    out = tmp_path / "archive"
    server = start_receiver(tmp_path, "--output", str(out))
    data = body(1)
    head = (
        f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\n"
        f"Content-Length: {len(data)}\r\nVonage-Signature: {sign(data, KEY, time.time())}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(head + data[:10])  # in flight: the handler waits for the rest of the body
        time.sleep(0.5)
        os.killpg(server.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while True:  # the listening socket closes: no new connection
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.05)
        assert server.process.poll() is None  # still finishing the request in flight
        s.sendall(data[10:])
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 204")
    assert server.process.wait(30) == 0
    assert lines(visible(out)) == [data] and not hidden(out)
    assert "stopped; 1 accepted" in server.stdout.read_text()


def test_custom_path_and_verbose_logs_hold_no_secret(tmp_path):
    out = tmp_path / "archive"
    server = start_receiver(tmp_path, "--output", str(out), "--path", "/vcc/notifications", verbose=True)
    try:
        assert server.post(body(1), path="/vcc/notifications") == (204, None)
        assert server.post(body(2)) == (404, None)
        assert server.post(body(3), path="/vcc/notifications", key=bytes(32)) == (401, "bad_signature")
    finally:
        assert server.stop() == 0
    assert lines(visible(out)) == [body(1)]
    logs = server.logs()
    assert SECRET not in logs and KEY.hex() not in logs
    assert not [t for t in server.tokens if t in logs or t.split(".")[-1] in logs]


def test_a_missing_or_unusable_secret_exits_2_without_showing_it(tmp_path):
    command = [sys.executable, "-m", "pipelines.cli", "receive", "--output", str(tmp_path), "--port", "1"]
    environ = {k: v for k, v in os.environ.items() if k != "VCC_WEBHOOK_SECRET"}
    missing = subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert "VCC_WEBHOOK_SECRET is not set" in missing.stderr
    bad = subprocess.run(
        [*command, "--secret-env", "MY_SECRET"],
        cwd=ROOT,
        env={**environ, "MY_SECRET": "hunter2-is-not-base64!"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "secret #1 in MY_SECRET" in bad.stderr and "hunter2" not in bad.stderr + bad.stdout

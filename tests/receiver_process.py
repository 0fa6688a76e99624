"""``vccflow receive`` for tests: started as a real process (the console command's code path)
on a free loopback port, in its own process group, waited for on ``/healthz``; requests over
real HTTP (http.client); stopped by signal with its exit code."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.receiver.signature import sign
from tests.pubsub_emulator import free_port, stop_group

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 90.0
#: The subscription secrets the tests configure (Base64, as VCC shows them) and their keys.
KEY = bytes(range(100, 132))
OLD_KEY = bytes(range(7, 39))
SECRET = base64.b64encode(KEY).decode()
OLD_SECRET = base64.b64encode(OLD_KEY).decode()
CLOUDEVENTS = "application/cloudevents+json"


@dataclass
class Receiver:
    """A running receiver; ``stdout`` holds its access log, ``stderr`` its other logs."""

    process: subprocess.Popen
    port: int
    stdout: Path
    stderr: Path
    tokens: list[str] = field(default_factory=list)

    def request(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body or None, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def post(
        self,
        body: bytes,
        signature: str | None = "sign",
        content_type: str | None = CLOUDEVENTS,
        key: bytes = KEY,
        path: str = "/",
    ) -> tuple[int, str | None]:
        """POST ``body``, signed with ``key`` unless ``signature`` is given (None: no header);
        returns the status and the reason code of a refusal."""
        headers = {}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if signature == "sign":
            signature = sign(body, key, time.time())
        if signature is not None:
            headers["Vonage-Signature"] = signature
            self.tokens.append(signature.split()[-1])
        status, answer = self.request("POST", path, body, headers)
        reason = json.loads(answer)["error"] if status >= 400 and answer.startswith(b"{") else None
        return status, reason

    def metrics(self) -> dict:
        status, body = self.request("GET", "/metrics")
        assert status == 200
        return json.loads(body)

    def logs(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def access_log(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.read_text().splitlines() if line.startswith("{")]

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int | None:
        """Signal the process group; the exit code (None if it had to be killed)."""
        if self.process.poll() is not None:
            return self.process.returncode
        return stop_group(self.process, sig, timeout_s)


def start_receiver(workdir: Path, *args: str, env: dict | None = None, verbose: bool = False, **popen) -> Receiver:
    """``vccflow [--verbose] receive --host 127.0.0.1 --port <free> ARGS`` with
    ``VCC_WEBHOOK_SECRET`` set to :data:`SECRET` (unless ``env`` says otherwise); returns once
    ``/healthz`` answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    n = len(list(workdir.glob("receiver-*.out")))
    stdout, stderr = workdir / f"receiver-{n}.out", workdir / f"receiver-{n}.err"
    command = [sys.executable, "-m", "pipelines.cli", *(["--verbose"] if verbose else []), "receive"]
    command += ["--host", "127.0.0.1", "--port", str(port), *args]
    environ = {**os.environ, "VCC_WEBHOOK_SECRET": SECRET, **(env or {})}
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=out, stderr=err, env=environ, start_new_session=True, **popen
        )
    receiver = Receiver(process, port, stdout, stderr)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vccflow receive exited with {process.returncode}:\n{receiver.logs()[-3000:]}")
        try:
            if receiver.request("GET", "/healthz")[0] == 200:
                return receiver
        except OSError:
            pass
        time.sleep(0.1)
    receiver.stop(signal.SIGKILL)
    raise RuntimeError(f"vccflow receive did not answer within {START_TIMEOUT_S}s:\n{receiver.logs()[-3000:]}")

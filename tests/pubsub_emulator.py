"""The real Pub/Sub emulator for tests: found on the machine, started on a free port in its
own process group, waited for, and stopped with its whole group (the launcher script
starts a JVM as a child)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


def emulator_command(host: str, port: int) -> list[str] | None:
    """The command starting the emulator on ``host:port``, or None when it is not installed."""
    if EMULATOR.is_file() and os.access(EMULATOR, os.X_OK):
        return [str(EMULATOR), f"--host={host}", f"--port={port}"]
    gcloud = shutil.which("gcloud")
    if gcloud and (Path(gcloud).resolve().parent.parent / "platform" / "pubsub-emulator").is_dir():
        return [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port={host}:{port}"]
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Emulator:
    """A running emulator: ``host`` is the ``PUBSUB_EMULATOR_HOST`` value."""

    host: str
    process: subprocess.Popen
    log: Path

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}/", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL if it lingers."""
        if self.process.poll() is None:
            stop_group(self.process, signal.SIGTERM, STOP_TIMEOUT_S)


def stop_group(process: subprocess.Popen, sig: int, timeout_s: float) -> int | None:
    """Send ``sig`` to the process group led by ``process``; SIGKILL the group if the leader
    is not gone within ``timeout_s``. Returns the leader's exit code (None if killed)."""
    try:
        os.killpg(process.pid, sig)
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)
        return None
    except ProcessLookupError:
        return process.wait(timeout=timeout_s)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # children left behind by the leader


def start_emulator(workdir: Path) -> Emulator | None:
    """Start the emulator on a free local port; None when it is not installed. Raises
    RuntimeError if it does not answer within ``START_TIMEOUT_S``."""
    host = "127.0.0.1"
    port = free_port()
    command = emulator_command(host, port)
    if command is None:
        return None
    log = workdir / "pubsub-emulator.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    emulator = Emulator(f"{host}:{port}", process, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if emulator.answers():
            return emulator
        if process.poll() is not None:
            break
        time.sleep(0.25)
    emulator.stop()
    raise RuntimeError(f"Pub/Sub emulator did not start: {log.read_text(errors='replace')[-2000:]}")

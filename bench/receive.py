"""Benchmark of ``vccflow receive`` (``make bench-receive``): requests/s and latency of one
receiver process on this machine, with a real HTTP load generator and the real Pub/Sub
emulator.

    .venv/bin/python bench/receive.py [--rates 170,1700,max] [--runs 3] [--duration 20] [--sink pubsub]

1. Generates notifications with ``vccflow generate`` and signs each one as VCC does
   (``Vonage-Signature``, HS256, tokens valid for the whole benchmark): a file of
   ``--requests`` pre-signed requests that ``bench/receive.lua`` cycles through.
2. Starts the Pub/Sub emulator (``tests/pubsub_emulator.py``) with a topic, and one
   receiver process, ``python -m pipelines.receive`` as the container runs it, with its
   defaults (access log on, to a file) and ``--topic`` (or ``--output`` for ``--sink file``).
3. For each run and each offered rate, interleaved (run 1: every rate, run 2: every rate,
   ...): ``wrk`` (one thread, ``--connections`` keep-alive connections) for ``--duration``
   seconds, paced by the script at the offered rate (``max``: as fast as the connections
   go). Measures the achieved requests/s, wrk's latency percentiles (from the first byte
   sent to the last byte received), the non-2xx answers, and the CPU-seconds the receiver
   and the emulator used over the wall time.
4. Prints each measurement as it is made, then the medians per rate, and writes every run
   with the machine (cores, load average before each measurement) to
   ``bench/out/receive.json``.

Needs ``wrk`` (Debian: ``apt-get install wrk``) and the emulator (gcloud's
``pubsub-emulator`` component). The emulator's topic has no subscription: it acknowledges
and drops, as a production topic's publish does not wait for subscribers.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines import generate, publish  # noqa: E402
from pipelines.receiver.signature import sign  # noqa: E402
from tests.pubsub_emulator import free_port, start_emulator, stop_group  # noqa: E402

LUA = ROOT / "bench" / "receive.lua"
OUT = ROOT / "bench" / "out"
KEY = bytes(range(64, 96))
TOPIC = "projects/vccflow-bench/topics/notifications"


def say(msg: str) -> None:
    print(msg, flush=True)


def signed_requests(workdir: Path, count: int, valid_s: float) -> Path:
    """``count`` generated notifications, each with its ``Vonage-Signature``, one
    ``<signature>\\t<body>`` line each."""
    data = workdir / "generated"
    interactions = max(20, count // 12)
    args = ["--output", str(data), "--agents", str(max(3, interactions // 30)), "--interactions", str(interactions)]
    assert generate.run([*args, "--seed", "5"]) == 0
    now = time.time()
    path = workdir / "requests.tsv"
    n = 0
    with open(path, "wb") as out:
        for body in publish.read_records(sorted(str(p) for p in data.glob("notifications-*.jsonl"))):
            if any(c in body for c in (b"\t", b"\n", b"\r")):
                continue
            out.write(sign(body, KEY, now, ttl_s=valid_s).encode() + b"\t" + body + b"\n")
            n += 1
            if n == count:
                break
    say(f"  {n} signed requests, {path.stat().st_size / n:.0f} bytes a line on average")
    return path


def group_cpu_s(pgid: int) -> float:
    """CPU-seconds (user + system) of every process of a process group."""
    total = 0.0
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid:
                t = p.cpu_times()
                total += t.user + t.system
        except (psutil.Error, ProcessLookupError):
            continue
    return total


def start_receiver(workdir: Path, sink: str, emulator_host: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    target = ["--topic", TOPIC] if sink == "pubsub" else ["--output", str(workdir / "archive")]
    command = [sys.executable, "-m", "pipelines.receive", "--host", "127.0.0.1", "--port", str(port), *target]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PUBSUB_EMULATOR_HOST": emulator_host,
        "VCC_WEBHOOK_SECRET": base64.b64encode(KEY).decode(),
    }
    with open(workdir / "receiver.out", "wb") as out, open(workdir / "receiver.err", "wb") as err:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True)
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return process, port
        except OSError:
            time.sleep(0.1)
        if process.poll() is not None:
            break
    raise RuntimeError(f"the receiver did not start: {(workdir / 'receiver.err').read_text()[-2000:]}")


def measure(port: int, requests: Path, rate: float, args, receiver: int, emulator: int) -> dict:
    """One wrk run at ``rate`` requests/s (0: unpaced)."""
    load = os.getloadavg()[0]
    cpu_r, cpu_e, wall = group_cpu_s(receiver), group_cpu_s(emulator), time.monotonic()
    command = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "10s"]
    command += ["-s", str(LUA), f"http://127.0.0.1:{port}/", "--", str(requests), str(rate), "1"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.monotonic() - wall
    cpu_r, cpu_e = group_cpu_s(receiver) - cpu_r, group_cpu_s(emulator) - cpu_e
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    seconds = summary["duration_us"] / 1e6
    n = summary["requests"]
    ok = sum(v for k, v in summary["statuses"].items() if k.startswith("2"))
    lat = summary["latency_us"]
    return {
        "offered": rate or "max",
        "achieved_rps": round(n / seconds, 1),
        "requests": n,
        "non_2xx": n - ok,
        "socket_errors": sum(v for k, v in summary["errors"].items() if k != "status"),
        "p50_ms": lat["p50"] / 1000,
        "p90_ms": lat["p90"] / 1000,
        "p99_ms": lat["p99"] / 1000,
        "p999_ms": lat["p999"] / 1000,
        "max_ms": lat["max"] / 1000,
        "receiver_cpu_s": round(cpu_r, 2),
        "receiver_cores": round(cpu_r / wall, 2),
        "receiver_us_per_request": round(cpu_r / max(n, 1) * 1e6),
        "emulator_cpu_s": round(cpu_e, 2),
        "wall_s": round(wall, 2),
        "load_1min_before": round(load, 2),
    }


def line(m: dict) -> str:
    return (
        f"offered {str(m['offered']):>5}/s: {m['achieved_rps']:7.0f} req/s, p50 {m['p50_ms']:6.1f} ms, "
        f"p99 {m['p99_ms']:6.1f} ms, non-2xx {m['non_2xx']}, receiver {m['receiver_cores']:.2f} cores "
        f"({m['receiver_us_per_request']} us/req), emulator {m['emulator_cpu_s']:.1f} CPU-s, "
        f"load {m['load_1min_before']:.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="170,1700,max", help="offered requests/s, comma-separated; max: unpaced")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs of every rate (default 3)")
    parser.add_argument("--duration", type=int, default=20, help="seconds per measurement (default 20)")
    parser.add_argument("--connections", type=int, default=64, help="wrk's keep-alive connections (default 64)")
    parser.add_argument("--requests", type=int, default=5000, help="distinct pre-signed requests (default 5000)")
    parser.add_argument("--sink", choices=["pubsub", "file"], default="pubsub")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    rates = [0.0 if r.strip() == "max" else float(r) for r in args.rates.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="vccflow-bench-receive-"))
    say(f"vccflow receive benchmark: {os.cpu_count()} cores, sink {args.sink}, rates {args.rates}, {args.runs} runs")
    valid_s = 600 + args.runs * len(rates) * (args.duration + 10)
    requests = signed_requests(workdir, args.requests, valid_s)
    emulator = start_emulator(workdir)
    if emulator is None:
        parser.error("the Pub/Sub emulator is not installed (gcloud components install pubsub-emulator)")
    receiver = None
    runs: list[dict] = []
    try:
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
        from google.cloud import pubsub_v1

        pubsub_v1.PublisherClient().create_topic(name=TOPIC)
        receiver, port = start_receiver(workdir, args.sink, emulator.host)
        say("  warm-up (5 s, unpaced)")
        warm = argparse.Namespace(**{**vars(args), "duration": 5})
        measure(port, requests, 0, warm, receiver.pid, emulator.process.pid)
        for run in range(1, args.runs + 1):
            for rate in rates:
                m = measure(port, requests, rate, args, receiver.pid, emulator.process.pid)
                m["run"] = run
                runs.append(m)
                say(f"  run {run} {line(m)}")
    finally:
        if receiver is not None:
            stop_group(receiver, signal.SIGTERM, 30)
        emulator.stop()
    medians = []
    for rate in rates:
        ms = [m for m in runs if m["offered"] == (rate or "max")]
        medians.append({k: statistics.median(m[k] for m in ms) for k in ms[0] if isinstance(ms[0][k], int | float)})
        medians[-1]["offered"] = rate or "max"
    say("\nmedians of the runs:")
    say("| offered req/s | achieved req/s | p50 ms | p99 ms | non-2xx | receiver cores | receiver µs/request |")
    say("|---|---|---|---|---|---|---|")
    for m in medians:
        say(
            f"| {m['offered']} | {m['achieved_rps']:.0f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | "
            f"{m['non_2xx']:.0f} | {m['receiver_cores']:.2f} | {m['receiver_us_per_request']:.0f} |"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": {k: v for k, v in vars(args).items()},
        "runs": runs,
        "medians": medians,
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
    }
    (OUT / "receive.json").write_text(json.dumps(result, indent=2))
    say(f"written to {OUT / 'receive.json'}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

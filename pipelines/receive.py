"""The webhook receiver: VCC's HTTP POSTs in, each verified and kept before it is answered.

    vccflow receive --port 8080 --topic projects/P/topics/T --secret-env VCC_WEBHOOK_SECRET
    vccflow receive --port 8080 --output archive/ --secret-env VCC_WEBHOOK_SECRET

Every ``POST`` to ``--path`` (default ``/``) must carry a valid ``Vonage-Signature``
(:mod:`pipelines.receiver.signature`); its raw body is then published to ``--topic`` (for
``vccflow stream``; attribute ``event_id``) or appended to hourly NDJSON files under
``--output`` (for ``vccflow batch --input 'DIR/**/*.jsonl*'``), and only once it is safe
is the request answered 2xx; else 503 and VCC retries for a day
(:mod:`pipelines.receiver.app` lists every status). The secrets (Base64, as VCC shows
them) come from environment variables only, never from the command line: each
``--secret-env`` variable holds one secret or several (commas or whitespace between them),
any of which may have signed a request (rotation).

SIGTERM or SIGINT: the listening socket is closed, requests in flight are finished, the
file renamed (or the publisher flushed), the counters logged; exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
import warnings

import orjson

from transforms.events import MAX_EVENT_BYTES

log = logging.getLogger("pipelines.receive")  # also when run as __main__ (the container)

DEFAULT_SECRET_ENV = "VCC_WEBHOOK_SECRET"
RECOMMENDED_KEY_BYTES = 32
_TOPIC_RE = re.compile(r"projects/[^/]+/topics/[^/]+")

EXAMPLES = """examples:
  VCC_WEBHOOK_SECRET=... vccflow receive --port 8080 --topic projects/my-project/topics/vcc
  VCC_WEBHOOK_SECRET=... vccflow receive --port 8080 --output /var/lib/vccflow/archive
  VCC_WEBHOOK_SECRET="$NEW,$OLD" vccflow receive --topic projects/my-project/topics/vcc   # rotation
  vccflow batch --input '/var/lib/vccflow/archive/**/*.jsonl*' --output out/daily
"""


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vccflow receive",
        description="Receive VCC webhook notifications over HTTP: verify each signature, publish it to "
        "Pub/Sub or append it to hourly files, answer 2xx once it is safe.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sink = parser.add_mutually_exclusive_group(required=True)
    sink.add_argument("--topic", metavar="TOPIC", help="publish to projects/PROJECT/topics/TOPIC")
    sink.add_argument("--output", metavar="DIR", help="append to DIR/received_date=D/notifications-<hour>-....jsonl")
    parser.add_argument(
        "--secret-env",
        action="append",
        metavar="VAR",
        help="environment variable holding the Base64 secret(s) of the subscription; repeatable "
        f"(default {DEFAULT_SECRET_ENV})",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", "8080")),
        help="TCP port (default: $PORT, else 8080)",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--path", default="/", help="path VCC posts to (default /)")
    parser.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=MAX_EVENT_BYTES,
        metavar="N",
        help=f"larger bodies are refused with 413 (default {MAX_EVENT_BYTES}, the pipeline's cap)",
    )
    parser.add_argument(
        "--leeway-seconds",
        type=float,
        default=30.0,
        metavar="S",
        help="a token is accepted up to S seconds after its exp (clock skew; default 30)",
    )
    parser.add_argument(
        "--publish-timeout-seconds",
        type=_positive_float,
        default=5.0,
        metavar="S",
        help="answer 503 when Pub/Sub has not acknowledged within S seconds (default 5; VCC waits 10)",
    )
    parser.add_argument(
        "--batch-latency-ms",
        type=_positive_float,
        default=10.0,
        metavar="MS",
        help="Pub/Sub: concurrent notifications share a publish request sent at most MS after the first (default 10)",
    )
    parser.add_argument(
        "--shutdown-timeout-seconds",
        type=_positive_float,
        default=8.0,
        metavar="S",
        help="on SIGTERM, wait at most S seconds for requests in flight (default 8; Cloud Run kills after 10)",
    )
    parser.add_argument("--no-access-log", action="store_true", help="no JSON line per request on stdout")
    return parser


def make_sink(args: argparse.Namespace):
    from pipelines.receiver.sinks import FileSink, PubSubSink

    if args.topic:
        return PubSubSink(args.topic, args.publish_timeout_seconds, args.batch_latency_ms / 1000)
    return FileSink(args.output)


def setup_access_log(enabled: bool) -> None:
    """The access log: bare JSON lines on stdout (structured logs on Cloud Run)."""
    from pipelines.receiver.app import access_log

    access_log.propagate = False
    access_log.handlers.clear()
    if enabled:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
    else:
        access_log.setLevel(logging.CRITICAL + 1)


async def serve(args: argparse.Namespace, keys: list[bytes], stop: asyncio.Event | None = None) -> dict:
    """Serve until ``stop`` is set (by default: until SIGTERM or SIGINT); returns the final
    counters."""
    from aiohttp import web

    from pipelines.receiver.app import JsonAccessLogger, Receiver, Settings, access_log, build_app

    settings = Settings(tuple(keys), args.path, args.max_body_bytes, args.leeway_seconds)
    receiver = Receiver(settings, make_sink(args))
    runner = web.AppRunner(
        build_app(receiver),
        access_log_class=JsonAccessLogger,
        access_log=access_log,
        shutdown_timeout=args.shutdown_timeout_seconds,
    )
    await runner.setup()
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, args.host, args.port, backlog=1024)
        await site.start()
        print(
            f"vccflow receive: listening on http://{args.host}:{args.port}{args.path} "
            f"({len(keys)} secret(s)), to {receiver.sink.describe()}",
            flush=True,
        )
        await stop.wait()
        log.info("stopping: no new connection; finishing the requests in flight")
        await site.stop()
        unanswered = await receiver.drain(args.shutdown_timeout_seconds)
        if unanswered:
            log.warning("%d request(s) still in flight after %gs: cut", unanswered, args.shutdown_timeout_seconds)
    finally:
        await runner.cleanup()
    return receiver.counters.snapshot()


def event_loop_runner():
    """``uvloop.run`` where uvloop is installed (about twice the requests per CPU-second),
    else ``asyncio.run``."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def run(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT: exit 0; 2 for a missing or unusable secret."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.topic and not _TOPIC_RE.fullmatch(args.topic):
        parser.error(f"--topic must look like projects/PROJECT/topics/TOPIC, got {args.topic!r}")
    if not args.path.startswith("/") or args.path in ("/healthz", "/metrics"):
        parser.error("--path must start with / and be neither /healthz nor /metrics")
    from jwt.warnings import InsecureKeyLengthWarning

    from pipelines.receiver.signature import load_keys

    try:
        keys = load_keys(args.secret_env or [DEFAULT_SECRET_ENV], os.environ)
    except ValueError as exc:
        print(f"vccflow receive: error: {exc}", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)  # said once, here
    for i, key in enumerate(keys):
        if len(key) < RECOMMENDED_KEY_BYTES:
            log.warning("secret #%d is %d bytes, below the %d recommended for HS256", i + 1, len(key), 32)
    setup_access_log(not args.no_access_log)
    counters = event_loop_runner()(serve(args, keys))
    log.info("counters: %s", orjson.dumps(counters).decode())
    print(
        f"vccflow receive: stopped; {counters['accepted']} accepted, {counters['rejected_total']} rejected, "
        f"{counters['failed_total']} failed (503)",
        flush=True,
    )
    return 0


def main() -> int:
    """``python -m pipelines.receive`` (the container's entry point: no Beam import)."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("pipelines").setLevel(logging.INFO)
    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

"""The HTTP side of ``vccflow receive`` (aiohttp): ``POST <path>`` takes a notification,
``GET /healthz`` answers while the server runs, ``GET /metrics`` returns the counters.

A notification is answered, in this order of checks:

- 415 ``unsupported_media_type``: neither ``application/cloudevents+json`` nor
  ``application/json``;
- 413 ``too_large``: a body over the cap (the pipeline's ``MAX_EVENT_BYTES`` by default);
- 401 with a reason of :data:`.signature.REASONS`: the ``Vonage-Signature`` does not
  verify; nothing is kept;
- 400 ``empty_body``: signed, but nothing to keep;
- 503 ``publish_failed``, ``publish_timeout`` or ``disk_error``: the sink could not make it
  safe (VCC retries);
- 204: the sink holds it (Pub/Sub acknowledged, or the line is fsync'd). What the body
  holds plays no part: a signed body that is not JSON, or not a known event, is kept as
  received and the pipeline dead-letters it.

Every response is one JSON line on the access log (``pipelines.receiver.access``):
method, path, status, latency, body bytes, reason, event id; never a header value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from pipelines.receiver.signature import HEADER, Rejection, verify
from pipelines.receiver.sinks import MAX_ATTRIBUTE_BYTES, SinkError

log = logging.getLogger(__name__)
access_log = logging.getLogger("pipelines.receiver.access")

CONTENT_TYPES = frozenset({"application/cloudevents+json", "application/json"})
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
_JSON = "application/json"


class Sink(Protocol):
    async def start(self) -> None: ...
    async def put(self, body: bytes, event_id: str | None) -> None: ...
    async def close(self) -> None: ...
    def describe(self) -> str: ...


@dataclass(frozen=True)
class Settings:
    """What a notification must satisfy: signed with one of ``keys`` (HMAC keys, the
    decoded secrets), posted to ``path``, at most ``max_body_bytes``, its token's ``exp``
    at most ``leeway_s`` past."""

    keys: tuple[bytes, ...]
    path: str
    max_body_bytes: int
    leeway_s: float


@dataclass
class Counters:
    """Requests to the notification path by outcome, since the start."""

    started: float = field(default_factory=time.time)
    accepted: int = 0
    accepted_bytes: int = 0
    rejected: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)

    def snapshot(self) -> dict:
        return {
            "accepted": self.accepted,
            "accepted_bytes": self.accepted_bytes,
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_total": sum(self.rejected.values()),
            "failed": dict(sorted(self.failed.items())),
            "failed_total": sum(self.failed.values()),
            "uptime_s": round(time.time() - self.started, 1),
        }


def event_id_of(body: bytes) -> str | None:
    """The CloudEvent ``id`` of a body that is a JSON object with a non-empty string id
    (short enough for a Pub/Sub attribute), else None."""
    if body.lstrip()[:1] != b"{":
        return None
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    value = obj.get("id") if isinstance(obj, dict) else None
    if isinstance(value, str) and value and len(value.encode()) <= MAX_ATTRIBUTE_BYTES:
        return value
    return None


class Receiver:
    """The request handlers around one sink."""

    def __init__(self, settings: Settings, sink: Sink, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.sink = sink
        self.counters = Counters()
        self._clock = clock
        self._in_flight = 0
        self._stopping = False
        self._idle = asyncio.Event()

    async def drain(self, timeout_s: float) -> int:
        """For a shutdown, once no new connection is accepted: answer the notifications in
        flight (their headers arrived; bodies may still be arriving, which aiohttp's own
        shutdown would cut), each with ``Connection: close``, waiting at most ``timeout_s``.
        Returns how many were still unanswered."""
        self._stopping = True
        if self._in_flight:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._idle.wait()
        return self._in_flight

    async def notify(self, request: web.Request) -> web.Response:
        self._in_flight += 1
        try:
            response = await self._answer(request)
        finally:
            self._in_flight -= 1
            if self._stopping and not self._in_flight:
                self._idle.set()
        if self._stopping:
            response.force_close()
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        status, reason, size, event_id = await self._take(request)
        counters = self.counters
        if status < 300:
            counters.accepted += 1
            counters.accepted_bytes += size
            response = web.Response(status=status)
        else:
            (counters.failed if status >= 500 else counters.rejected)[reason] += 1
            response = web.Response(status=status, body=b'{"error":"%s"}' % reason.encode(), content_type=_JSON)
            if status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        response["reason"], response["bytes"], response["event_id"] = reason, size, event_id
        return response

    async def _take(self, request: web.Request) -> tuple[int, str | None, int, str | None]:
        """``(status, reason, body bytes, event id)`` of one notification."""
        settings = self.settings
        if request.content_type not in CONTENT_TYPES:
            return 415, "unsupported_media_type", 0, None
        length = request.content_length
        if length is not None and length > settings.max_body_bytes:
            return 413, "too_large", length, None
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return 413, "too_large", settings.max_body_bytes + 1, None
        verdict = verify(body, request.headers.get(HEADER), settings.keys, settings.leeway_s, self._clock())
        if isinstance(verdict, Rejection):
            return 401, verdict.reason, len(body), None
        if not body:
            return 400, "empty_body", 0, None
        event_id = event_id_of(body)
        try:
            await self.sink.put(body, event_id)
        except SinkError as exc:
            log.warning("not kept (%s): %s", exc.reason, exc.detail)
            return 503, exc.reason, len(body), event_id
        return 204, None, len(body), event_id

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=_JSON)

    async def metrics(self, request: web.Request) -> web.Response:
        snapshot = {**self.counters.snapshot(), "in_flight": self._in_flight}
        return web.Response(body=orjson.dumps(snapshot), content_type=_JSON)


class JsonAccessLogger(AbstractAccessLogger):
    """One JSON line per response (Cloud Logging reads ``severity``); no header values,
    no query string."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        status = response.status
        entry = {
            "severity": "INFO" if status < 400 else "WARNING" if status < 500 else "ERROR",
            "method": request.method,
            "path": request.path[:200],
            "status": status,
            "latency_ms": round(time * 1000, 2),
            "bytes": response.get("bytes", 0),
            "reason": response.get("reason"),
            "event_id": response.get("event_id"),
            "remote": request.remote,
        }
        self.logger.info(orjson.dumps(entry).decode())


def build_app(receiver: Receiver) -> web.Application:
    """The application: routes, the body cap, and the sink started and closed with it
    (closed after the in-flight requests are answered)."""
    app = web.Application(client_max_size=receiver.settings.max_body_bytes)
    app.router.add_post(receiver.settings.path, receiver.notify)
    app.router.add_get(HEALTH_PATH, receiver.health)
    app.router.add_get(METRICS_PATH, receiver.metrics)

    async def start_sink(app: web.Application) -> None:
        await receiver.sink.start()

    async def close_sink(app: web.Application) -> None:
        await receiver.sink.close()

    app.on_startup.append(start_sink)
    app.on_cleanup.append(close_sink)
    return app

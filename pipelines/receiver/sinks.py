"""Where ``vccflow receive`` puts an accepted notification, and when it is safe.

Both sinks have ``await put(body, event_id)``, which returns once the notification is safe
(Pub/Sub acknowledged the publish; the line is written and fsync'd) or raises
:class:`SinkError` (the receiver then answers 503 and VCC retries), ``start()`` and
``close()`` (which returns once everything accepted is safe, and the file renamed).

- :class:`PubSubSink`: one message per notification, the body as received, attribute
  ``event_id`` when known (Dataflow's ``id_label`` deduplication).
- :class:`FileSink`: NDJSON, one line per notification, one file per UTC hour and process,
  under ``DIR/received_date=YYYY-MM-DD/``; written under a hidden name (``.notifications-...``)
  and renamed when its hour closes or at shutdown, so a glob (``DIR/**/*.jsonl*``, which
  :func:`transforms.io.expand_patterns` reads without hidden files) never sees a
  half-written file. Lines of concurrent requests are written and fsync'd together (group
  commit). Names carry the host, the pid, the process's start time and a sequence number,
  and are created exclusively: a restart never overwrites a file. A hidden file left by a
  process of this host that died (killed, power loss) is renamed at the next start, its
  last incomplete line (never acknowledged) cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

ID_ATTRIBUTE = "event_id"
#: Pub/Sub's limit on an attribute value.
MAX_ATTRIBUTE_BYTES = 1024
PREFIX = "notifications-"
SUFFIX = ".jsonl"
PARTITION = "received_date"
_NEWLINES = bytes.maketrans(b"\r\n", b"  ")
_HOST_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")


class SinkError(Exception):
    """A notification could not be made safe: ``reason`` is ``publish_failed``,
    ``publish_timeout`` or ``disk_error``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class PubSubSink:
    """Publishes each notification to ``topic`` (``projects/P/topics/T``) and waits for the
    server's acknowledgement, at most ``timeout_s``. Notifications of concurrent requests
    share one publish request, sent ``max_latency_s`` after the first of them (or at
    ``max_messages`` / ``max_bytes``).

    The batching runs on the server's event loop with the GAPIC asyncio client (grpc.aio):
    the threaded ``PublisherClient`` costs about twice the CPU per message here and, with
    the event loop busy, its commit threads wait for the GIL (p99 over 100 ms at 1,000
    req/s on 2 cores). A failed publish is retried (the client's retryable codes) until
    ``timeout_s``. Honours ``PUBSUB_EMULATOR_HOST``; otherwise Application Default
    Credentials (on Cloud Run, the service's account).
    """

    def __init__(
        self,
        topic: str,
        timeout_s: float,
        max_latency_s: float,
        max_messages: int = 100,
        max_bytes: int = 1_000_000,
    ) -> None:
        self.topic = topic
        self.timeout_s = timeout_s
        self.max_latency_s = max_latency_s
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._client = None
        self._message = None  # the raw protobuf PubsubMessage class
        self._pending: list[tuple[object, asyncio.Future]] = []
        self._pending_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task] = set()

    def describe(self) -> str:
        return f"Pub/Sub topic {self.topic}"

    async def start(self) -> None:
        from google.api_core import exceptions, retry_async
        from google.pubsub_v1.services.publisher.async_client import PublisherAsyncClient
        from google.pubsub_v1.services.publisher.transports.grpc_asyncio import PublisherGrpcAsyncIOTransport
        from google.pubsub_v1.types import pubsub
        from grpc import aio

        emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
        if emulator:
            transport = PublisherGrpcAsyncIOTransport(channel=aio.insecure_channel(emulator))
            self._client = PublisherAsyncClient(transport=transport)
        else:
            self._client = PublisherAsyncClient()
        self._request = pubsub.PublishRequest
        self._message = pubsub.PubsubMessage.pb()
        retryable = (
            exceptions.Aborted,
            exceptions.Cancelled,
            exceptions.DeadlineExceeded,
            exceptions.InternalServerError,
            exceptions.ResourceExhausted,
            exceptions.ServiceUnavailable,
            exceptions.Unknown,
        )
        self._retry = retry_async.AsyncRetry(
            predicate=retry_async.if_exception_type(*retryable),
            initial=0.05,
            maximum=1.0,
            multiplier=2,
            timeout=self.timeout_s,
        )

    async def put(self, body: bytes, event_id: str | None) -> None:
        future = asyncio.get_running_loop().create_future()
        message = self._message(data=body, attributes={ID_ATTRIBUTE: event_id} if event_id else None)
        size = len(body) + 64
        if self._pending and self._pending_bytes + size > self.max_bytes:
            self._flush()
        self._pending.append((message, future))
        self._pending_bytes += size
        if len(self._pending) >= self.max_messages:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_latency_s, self._flush)
        await future

    def _flush(self) -> None:
        """Send what is pending as one publish request."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[object, asyncio.Future]]) -> None:
        raw = self._request.pb()(topic=self.topic, messages=[message for message, _ in batch])
        try:
            async with asyncio.timeout(self.timeout_s):  # one timer per batch, not per message
                await self._client.publish(request=self._request.wrap(raw), retry=self._retry, timeout=self.timeout_s)
        except Exception as exc:  # any failure of the client or the server: VCC retries
            if isinstance(exc, TimeoutError):
                error = SinkError("publish_timeout", f"no acknowledgement within {self.timeout_s:g}s")
            else:
                error = SinkError("publish_failed", f"{type(exc).__name__}: {str(exc)[:200]}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
        else:
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def close(self) -> None:
        """Send what is pending, wait for every publish in flight, close the channel."""
        self._flush()
        if self._sending:
            await asyncio.wait(set(self._sending))
        if self._client is not None:
            await self._client.transport.close()


@dataclass
class _OpenFile:
    fd: int
    hidden: Path
    final: Path
    hour: str
    size: int = 0  # bytes written and fsync'd


class FileSink:
    """Appends each notification as one NDJSON line (its CR and LF bytes, only ever
    whitespace between JSON tokens, made spaces) to the current hour's file under ``root``.
    ``clock`` gives the time (Unix seconds) that decides the hour of a write."""

    def __init__(
        self,
        root: str | os.PathLike,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.root = Path(root)
        self._clock = clock
        self._host = _HOST_UNSAFE.sub("_", host or socket.gethostname()) or "host"
        self._pid = os.getpid() if pid is None else pid
        self._start = datetime.fromtimestamp(clock(), UTC).strftime("%Y%m%dT%H%M%SZ")
        self._seq = 0
        self._file: _OpenFile | None = None
        self._queue: list[tuple[bytes, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        self._timer: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vccflow-file-sink")

    def describe(self) -> str:
        return f"files under {self.root}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.root.mkdir(parents=True, exist_ok=True)
        recovered = await loop.run_in_executor(self._pool, self.recover)
        for path in recovered:
            log.warning("renamed %s, left hidden by a process that died", path)
        self._timer = loop.create_task(self._close_hours())

    async def put(self, body: bytes, event_id: str | None) -> None:
        line = (body.translate(_NEWLINES) if b"\n" in body or b"\r" in body else body) + b"\n"
        future = asyncio.get_running_loop().create_future()
        self._queue.append((line, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        await future

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        while self._flusher is not None and not self._flusher.done():
            await self._flusher
        await asyncio.get_running_loop().run_in_executor(self._pool, self._finish)
        self._pool.shutdown()

    async def _flush(self) -> None:
        """Write and fsync what is queued, one group at a time, until nothing is left."""
        loop = asyncio.get_running_loop()
        while self._queue:
            group, self._queue = self._queue, []
            try:
                await loop.run_in_executor(self._pool, self._commit, [line for line, _ in group], self._clock())
            except Exception as exc:  # a disk error (or anything else): every line of the group is refused
                if not isinstance(exc, OSError):
                    log.exception("file sink failed")
                error = SinkError("disk_error", f"{type(exc).__name__}: {exc}"[:200])
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)
            else:
                for _, future in group:
                    if not future.done():
                        future.set_result(None)

    async def _close_hours(self) -> None:
        """Rename the file of an hour once the hour is over, even without more traffic."""
        loop = asyncio.get_running_loop()
        while True:
            now = self._clock()
            await asyncio.sleep(3600 - now % 3600 + 0.01)
            await loop.run_in_executor(self._pool, self._commit, [], self._clock())

    # Below: file operations, run in the sink's one thread, in order.

    def _commit(self, lines: list[bytes], now: float) -> None:
        """Write ``lines`` to the file of ``now``'s hour and fsync it; the file of an
        earlier hour is renamed first. On an error the file is cut back to what was
        fsync'd, renamed, and the next write opens a new one."""
        hour = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H")
        if self._file is not None and self._file.hour != hour:
            self._finish()
        if not lines:
            return
        if self._file is None:
            self._file = self._open(hour)
        f = self._file
        data = memoryview(b"".join(lines))
        try:
            while data:
                data = data[os.write(f.fd, data) :]
            os.fsync(f.fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(f.fd, f.size)
                os.fsync(f.fd)
            with contextlib.suppress(OSError):  # else left hidden: renamed by the next start
                self._finish()
            raise
        f.size += sum(map(len, lines))

    def _open(self, hour: str) -> _OpenFile:
        folder = self.root / f"{PARTITION}={hour[:4]}-{hour[4:6]}-{hour[6:8]}"
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            name = f"{PREFIX}{hour}-{self._host}-{self._pid}-{self._start}-{self._seq}{SUFFIX}"
            self._seq += 1
            hidden, final = folder / f".{name}", folder / name
            if final.exists():
                continue
            try:
                fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while written: see recover()
            _fsync_folder(folder)
            return _OpenFile(fd, hidden, final, hour)

    def _finish(self) -> None:
        """Close the current file and make it visible (removed if nothing was written)."""
        f, self._file = self._file, None
        if f is None:
            return
        os.close(f.fd)
        if f.size:
            os.rename(f.hidden, f.final)
            log.info("closed %s (%d bytes)", f.final, f.size)
        else:
            f.hidden.unlink(missing_ok=True)
        _fsync_folder(f.hidden.parent)

    def recover(self) -> list[Path]:
        """Rename the hidden files that processes of this host left behind (not locked by
        a live writer), cut after their last newline; returns the new names."""
        renamed = []
        for hidden in sorted(self.root.glob(f"{PARTITION}=*/.{PREFIX}*-{self._host}-*{SUFFIX}")):
            fd = os.open(hidden, os.O_RDWR | os.O_CLOEXEC)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process is writing it
                size = _complete_size(fd)
                os.ftruncate(fd, size)
                os.fsync(fd)
                final = hidden.with_name(hidden.name[1:])
                if size == 0:
                    hidden.unlink()
                elif not final.exists():
                    os.rename(hidden, final)
                    renamed.append(final)
                _fsync_folder(hidden.parent)
            finally:
                os.close(fd)
        return renamed


def _complete_size(fd: int) -> int:
    """Bytes of ``fd`` up to and including its last newline."""
    end = os.lseek(fd, 0, os.SEEK_END)
    pos = end
    while pos > 0:
        step = min(pos, 1 << 16)
        chunk = os.pread(fd, step, pos - step)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return pos - step + cut + 1
        pos -= step
    return 0


def _fsync_folder(folder: Path) -> None:
    """Make a file's creation or rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

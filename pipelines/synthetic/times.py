"""Time units (milliseconds since the epoch) and the ISO-8601 forms of the generated data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR

DEFAULT_START = "2024-03-04T08:00:00Z"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_start(value: str) -> int:
    """ISO-8601 time with a zone to milliseconds since epoch (sub-millisecond digits dropped)."""
    try:
        text = value.strip()
        dt = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
    except ValueError:
        raise ValueError(f"start must be an ISO-8601 time like {DEFAULT_START}, got {value!r}") from None
    if dt.tzinfo is None:
        raise ValueError(f"start needs a zone (e.g. a trailing Z), got {value!r}")
    return (dt - _EPOCH) // timedelta(milliseconds=1)


@lru_cache(maxsize=1 << 16)
def _hour(hours: int) -> str:
    return (_EPOCH + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:")


def iso(ms: int, frac: str = "ms") -> str:
    """Milliseconds since epoch as ISO-8601 UTC. ``frac``: ``ms`` (3 digits), ``7`` (7 digits),
    ``us`` (6 digits), ``sec`` (no fraction when the value is a whole second, else 3)."""
    hours, rem = divmod(ms, HOUR)
    m, rem = divmod(rem, MIN)
    s, milli = divmod(rem, SEC)
    head = f"{_hour(hours)}{m:02d}:{s:02d}"
    if frac == "ms" or (frac == "sec" and milli):
        return f"{head}.{milli:03d}Z"
    if frac == "7":
        return f"{head}.{milli:03d}0000Z"
    if frac == "us":
        return f"{head}.{milli:03d}000Z"
    return f"{head}Z"


def iso_or_none(ms: int | None) -> str | None:
    """The truth's form (6 fractional digits) of a time, or None."""
    return None if ms is None else iso(ms, "us")


def align(ms: int) -> int:
    """Up to the next whole second."""
    return -(-ms // SEC) * SEC

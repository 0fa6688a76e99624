"""The plan's events as VCC webhook notifications: CloudEvents 1.0 structured JSON, one line
each, with KSUID-like ids, a ``time`` ~0.5 s after the event, mostly ``.v1`` types and the
timestamp precision of each channel's style."""

from __future__ import annotations

import random
from typing import Any

import orjson

from pipelines.synthetic.plan import Agent, Channel, Presence
from pipelines.synthetic.times import SEC, iso

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_PAIRS = [a + b for a in _BASE62 for b in _BASE62]  # base62 digit pairs, 0..3843
_BASE62_BYTES = bytes(ord(_BASE62[i % 62]) for i in range(256))  # byte -> base62 character
_KSUID_EPOCH_S = 1_400_000_000


def dumps(obj: Any) -> bytes:
    """Compact JSON. The copy trims orjson's oversized buffer (~4 KiB per object)."""
    return bytes(memoryview(orjson.dumps(obj)))


def channel_body(ch: Channel) -> dict:
    """``data.channel`` of a channel's notifications."""
    party = {"role": "agent", "agentId": ch.agent, "userId": ch.user} if ch.role == "agent" else {"role": ch.role}
    return {"conversationId": ch.conv, "interactionId": ch.iid, "channelId": ch.cid, "party": party}


class Notifier:
    """Builds notifications, drawing ids and creation times from ``rng``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.ksuid_count = 0

    def ksuid(self, ts: int) -> str:
        """27 base62 characters, KSUID-like: 6 for the second (so ids sort by time), 5 for a
        counter (unique by construction), 16 random."""
        self.ksuid_count += 1
        secs, n = max(0, ts // SEC - _KSUID_EPOCH_S), self.ksuid_count
        return (
            _PAIRS[secs // 3844**2 % 3844]
            + _PAIRS[secs // 3844 % 3844]
            + _PAIRS[secs % 3844]
            + _BASE62[n // 3844**2 % 62]
            + _PAIRS[n // 3844 % 3844]
            + _PAIRS[n % 3844]
            + self.rng.randbytes(16).translate(_BASE62_BYTES).decode()
        )

    def time_field(self, ts: int) -> str:
        """``time``: the notification's creation, ~0.5 s after the event, 7 digits."""
        rnd = self.rng.random
        return f"{iso(ts + 300 + int(rnd() * 600), 'ms')[:-1]}{int(rnd() * 10000):04d}Z"

    def version(self) -> str:
        """The type's version suffix: mostly ``v1``, now and then the early-access ``v0``."""
        return "v0" if self.rng.random() < 0.02 else "v1"

    def channel_object(
        self, ch: Channel, kind: str, ts: int, reason: str | None, type_: str | None = None, body: dict | None = None
    ) -> dict:
        """A channel notification; ``body`` is its ``data.channel`` when already built."""
        data: dict[str, Any] = {"timestamp": iso(ts, ch.style), "channel": body or channel_body(ch)}
        if reason is not None:
            data["reason"] = reason
        return {
            "specversion": "1.0",
            "type": type_ or f"channel.{kind}.{self.version()}",
            "id": self.ksuid(ts),
            "source": "/channel",
            "subject": ch.cid,
            "time": self.time_field(ts),
            "datacontenttype": "application/json",
            "data": data,
        }

    def presence_object(self, ag: Agent, p: Presence) -> dict:
        """An ``agent.presencechanged`` notification."""
        return {
            "specversion": "1.0",
            "type": f"agent.presencechanged.{self.version()}",
            "id": self.ksuid(p.ts),
            "source": "/agent",
            "subject": ag.agent_id,
            "time": self.time_field(p.ts),
            "datacontenttype": "application/json",
            "data": {
                "timestamp": iso(p.ts, p.style),
                "presence": {
                    "presenceId": p.pid,
                    "category": {"type": p.raw, "description": p.cat_desc, "subcategory": p.sub},
                    "description": p.desc,
                },
                "user": {"agentId": ag.agent_id, "userId": ag.user_id},
            },
        }

    def notifications(self, agents: list[Agent], channels: list[Channel]) -> list[tuple[int, bytes, str | None]]:
        """Every valid notification once: ``(event time, line, channel id or None)``."""
        out = []
        for ag in agents:
            for p in ag.presence:
                out.append((p.ts, dumps(self.presence_object(ag, p)), None))
        for ch in channels:
            body = channel_body(ch)
            for ts, kind, reason, _ in ch.events:
                out.append((ts, dumps(self.channel_object(ch, kind, ts, reason, body=body)), ch.cid))
        return out

"""How webhooks deliver the notifications: exact duplicates, disorder (local displacement and
retries hours late), garbage lines of every dead-letter kind, blank lines; split into files,
with the accounting the truth needs."""

from __future__ import annotations

from collections import Counter

from pipelines.synthetic.notifications import Notifier, dumps
from pipelines.synthetic.plan import Channel
from pipelines.synthetic.scenarios import Simulation
from pipelines.synthetic.times import HOUR, MIN, iso

#: Shuffled delivery: local displacement bound, share and range of hours-late retries.
SHUFFLE_WINDOW = 3 * MIN
LATE_SHARE = 0.002
LATE_RANGE = (1 * HOUR, 23 * HOUR)


def _garbage(
    sim: Simulation, notifier: Notifier, channels: list[Channel], valid: list, keys: list[int], n: int
) -> list[tuple]:
    """At least ``n`` dead-letter lines ``(key, raw, code, kind)``: every kind once, then random kinds."""
    rng = sim.rng

    def base(**changes) -> dict:
        ch = rng.choice(channels)
        ts, kind, reason, _ = rng.choice(ch.events)
        obj = notifier.channel_object(ch, kind, ts, reason)
        for path, value in changes.items():
            target = obj
            *heads, last = path.split("__")
            for h in heads:
                target = target[h]
            if value is None:
                del target[last]
            else:
                target[last] = value
        return obj

    def truncated_copy() -> tuple:
        i = rng.randrange(len(valid))
        line = valid[i][1]
        return keys[i] - 1, line[: rng.randint(line.index(b'"source"'), len(line) - 2)]

    def encoding() -> bytes:
        raw = dumps(base())
        return raw.replace(b'"subject":"', b'"subject":"\xc3\x28', 1)

    def foreign(type_: str) -> bytes:
        ch = rng.choice(channels)
        ts = rng.choice(ch.events)[0]
        if type_.startswith("interaction."):
            obj = {
                "specversion": "1.0",
                "type": type_,
                "id": notifier.ksuid(ts),
                "source": "/interaction",
                "subject": ch.iid,
                "time": notifier.time_field(ts),
                "datacontenttype": "application/json",
                "data": {
                    "timestamp": iso(ts),
                    "interaction": {"interactionId": ch.iid, "conversationId": ch.conv},
                },
            }
        else:
            obj = notifier.channel_object(ch, "held", ts, None, type_)
            if type_.startswith("channel.activityrecord"):
                obj["data"]["activity"] = {"type": "note", "text": "customer asked for a callback"}
        return dumps(obj)

    kinds = {
        "truncated_copy": ("invalid_json", None),
        "not_json": (
            "invalid_json",
            lambda: rng.choice(
                (
                    b"HTTP/1.1 502 Bad Gateway",
                    b"<html><body>upstream timed out</body></html>",
                    b'{"specversion":"1.0",,"type":"channel.held.v1"}',
                    b"{'id': 'single-quoted'}",
                )
            ),
        ),
        "not_an_object": ("not_an_object", lambda: rng.choice((b"[1,2]", b'"x"', b"42", b"null"))),
        "no_id": ("missing_field", lambda: dumps(base(id=None))),
        "no_timestamp": ("missing_field", lambda: dumps(base(data__timestamp=None))),
        "timestamp_word": ("bad_timestamp", lambda: dumps(base(data__timestamp="yesterday"))),
        "timestamp_impossible": (
            "bad_timestamp",
            lambda: dumps(base(data__timestamp="2024-13-45T99:00:00Z")),
        ),
        "invalid_utf8": ("invalid_encoding", encoding),
        "data_string": ("invalid_field", lambda: dumps(base(data="timestamp=2024-03-04T08:00:00Z"))),
        "party_list": ("invalid_field", lambda: dumps(base(data__channel__party=["agent"]))),
        "detail_record": ("unsupported_type", lambda: foreign("interaction.detailrecord.v0")),
        "activity_record": ("unsupported_type", lambda: foreign("channel.activityrecord.v0")),
        "future_version": ("unsupported_type", lambda: foreign("channel.held.v9")),
    }
    names = list(kinds)
    rng.shuffle(names)
    names += [rng.choice(list(kinds)) for _ in range(n - len(names))]
    out = []
    for name in names:
        code, make = kinds[name]
        if make is None:
            key, raw = truncated_copy()
        else:
            key, raw = rng.randint(sim.start, sim.end), make()
        out.append((key, raw, code, name))
    return out


def deliver(sim: Simulation, channels: list[Channel]) -> tuple[dict[str, list[bytes]], dict, Counter]:
    """Notification lines in delivery order, split into files, with their accounting."""
    cfg, rng = sim.cfg, sim.rng
    notifier = Notifier(rng)
    valid = notifier.notifications(sim.agents, channels)
    if cfg.shuffle:
        keys = [ts + int(rng.random() * SHUFFLE_WINDOW) for ts, _, _ in valid]
        late = rng.sample(range(len(valid)), max(1, round(LATE_SHARE * len(valid))))
        for i in late:
            keys[i] = valid[i][0] + rng.randint(*LATE_RANGE)
    else:
        keys, late = [ts for ts, _, _ in valid], []
    out: list[tuple] = [(keys[i], i, line, None) for i, (_, line, _) in enumerate(valid)]
    dup_by_channel: Counter = Counter()
    n_dup = round(cfg.duplicates * len(valid))
    for i in rng.sample(range(len(valid)), n_dup):
        out.append((keys[i] + rng.randint(500, 10 * MIN), len(out), valid[i][1], None))
        if valid[i][2] is not None:
            dup_by_channel[valid[i][2]] += 1
    n_dead = n_blank = 0
    if cfg.malformed > 0:
        n_dead = round(cfg.malformed * len(valid))
        n_blank = max(2, round(cfg.malformed * len(valid) / 10))
    dead = _garbage(sim, notifier, channels, valid, keys, n_dead) if cfg.malformed > 0 else []
    for key, raw, code, kind in dead:
        out.append((key, len(out), raw, (code, kind)))
    for _ in range(n_blank):
        out.append((rng.randint(sim.start, sim.end), len(out), rng.choice((b"", b"", b" ")), "blank"))
    out.sort(key=lambda e: (e[0], e[1]))

    ext = ".jsonl.gz" if cfg.gzip else ".jsonl"
    files: dict[str, list[bytes]] = {}
    dead_lines = []
    bounds = [len(out) * k // cfg.files for k in range(cfg.files + 1)]
    for k in range(cfg.files):
        name = f"notifications-{k:05d}{ext}"
        chunk = out[bounds[k] : bounds[k + 1]]
        files[name] = [e[2] for e in chunk]
        for no, e in enumerate(chunk, 1):
            if isinstance(e[3], tuple):
                dead_lines.append({"file": name, "line": no, "error_code": e[3][0], "kind": e[3][1]})
    by_code = Counter(d["error_code"] for d in dead_lines)
    counts = {
        "lines": len(out),
        "blank": n_blank,
        "valid": len(valid),
        "duplicates": n_dup,
        "dead_letters": dict(sorted(by_code.items())),
        "late_deliveries": len(late),
    }
    return files, {"counts": counts, "files": {n: len(v) for n, v in files.items()}, "dead": dead_lines}, dup_by_channel

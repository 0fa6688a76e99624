"""A variant of a benchmark data set: the same notifications, serialized the ways other producers do.

    python bench/variant.py SOURCE_DIR TARGET_DIR

Every line of ``SOURCE_DIR/notifications-*.jsonl`` that is a JSON object is written again
with, each at random (seeded by the line's position, so the variant is reproducible):

- CloudEvents extension attributes (``traceparent``, ``dataschema``, a non-ASCII
  ``vonagetenant``, a numeric ``sequence``), before or after the documented members;
- the members in another order (``data`` first, ``id`` last, ...);
- extra members under ``data`` and ``data.channel`` (``tenantId``, ``channelType``);
- ``data.timestamp`` with 7 fractional digits (trailing zeros: the same microsecond);
- ``\\/`` for ``/`` and ``\\u00XX`` escapes of ASCII letters in text values (same text);
- Python's ``json.dumps`` spacing (``", "`` and ``": "``).

Values the documented members carry are unchanged, so the variant holds the same events as
its source and vccflow's tables agree with the source's, dead letters aside (a line that is
not a JSON object is copied as it is; its dead letter's ``raw`` is the same). The counts of
the source's ``_complete.json`` hold for the variant; it is copied with a ``variant`` note.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

EXTENSIONS = (
    ("traceparent", lambda r: f"00-{r.getrandbits(128):032x}-{r.getrandbits(64):016x}-01"),
    ("dataschema", lambda r: "https://developer.vonage.com/webhooks/vcc/schema/channel.v1.json"),
    ("vonagetenant", lambda r: r.choice(["Société Générale", "Müller & Söhne GmbH", "東京センター"])),
    ("sequence", lambda r: r.randrange(1, 10**12)),
)


def _escape(text: str, rng: random.Random) -> str:
    """``text`` as a JSON string literal with some ASCII letters as ``\\u00XX`` and ``/`` as ``\\/``."""
    body = json.dumps(text)[1:-1].replace("/", "\\/")
    out = []
    for ch in body:
        out.append(f"\\u{ord(ch):04x}" if ch.isalpha() and ch.isascii() and rng.random() < 0.1 else ch)
    return '"' + "".join(out) + '"'


def _dump(value, rng: random.Random, escape: bool, spaced: bool) -> str:
    """JSON text of ``value``; with ``escape``, strings escaped by :func:`_escape`."""
    colon, comma = (": ", ", ") if spaced else (":", ",")
    if isinstance(value, dict):
        members = (_dump(k, rng, escape, spaced) + colon + _dump(v, rng, escape, spaced) for k, v in value.items())
        return "{" + comma.join(members) + "}"
    if isinstance(value, list):
        return "[" + comma.join(_dump(v, rng, escape, spaced) for v in value) + "]"
    if isinstance(value, str) and escape:
        return _escape(value, rng)
    return json.dumps(value, ensure_ascii=False)


def _shuffled(obj: dict, rng: random.Random) -> dict:
    items = list(obj.items())
    rng.shuffle(items)
    return dict(items)


def vary(line: bytes, rng: random.Random) -> bytes:
    """One line of the variant (the line itself when it is not a JSON object)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return line
    if not isinstance(obj, dict):
        return line
    data = obj.get("data")
    if isinstance(data, dict):
        ts = data.get("timestamp")
        if isinstance(ts, str) and len(ts) == 24 and ts.endswith("Z") and ts[19] == "." and rng.random() < 0.5:
            data["timestamp"] = ts[:23] + "0000Z"
        if rng.random() < 0.5:
            data["tenantId"] = "acme-contact-center"
        channel = data.get("channel")
        if isinstance(channel, dict) and rng.random() < 0.5:
            channel["channelType"] = rng.choice(["voice", "chat", "email"])
        if rng.random() < 0.5:
            obj["data"] = _shuffled(data, rng)
    extras = {name: make(rng) for name, make in EXTENSIONS if rng.random() < 0.6}
    obj = {**extras, **obj} if rng.random() < 0.5 else {**obj, **extras}
    if rng.random() < 0.5:
        obj = _shuffled(obj, rng)
    try:
        return _dump(obj, rng, escape=rng.random() < 0.3, spaced=rng.random() < 0.3).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (an invalid_encoding dead letter): kept as it was
        return line


def make_variant(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("notifications-*.jsonl")):
        with open(path, "rb") as src, open(target / path.name, "wb") as out:
            for n, raw in enumerate(src):
                line, newline = (raw[:-1], b"\n") if raw.endswith(b"\n") else (raw, b"")
                out.write(vary(line, random.Random(f"{path.name}:{n}")) + newline)
    info = json.loads((source / "_complete.json").read_text(encoding="utf-8"))
    info["variant"] = f"bench/variant.py of {source.name}"
    info["bytes"] = sum(p.stat().st_size for p in target.glob("notifications-*.jsonl"))
    (target / "_complete.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.split("\n\n")[1])
    make_variant(Path(sys.argv[1]), Path(sys.argv[2]))

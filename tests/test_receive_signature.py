"""The pure signature check of ``vccflow receive`` (pipelines/receiver/signature.py) on
hand-made tokens: every accepted and every refused form, secret rotation, secret decoding."""

from __future__ import annotations

import base64
import hashlib
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from pipelines.receiver.signature import REASONS, Rejection, decode_secret, load_keys, sign, verify

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
NOW = 1_709_500_000.0
BODY = b'{"specversion":"1.0","type":"agent.presencechanged.v1","id":"n-1","data":{}}'
HASH = hashlib.sha256(BODY).hexdigest()


def token(claims: dict, key: bytes = KEY, algorithm: str = "HS256") -> str:
    return "Bearer " + jwt.encode(claims, key, algorithm=algorithm)


def unsigned(header: dict, claims: dict, signature: bytes = b"") -> str:
    """A compact JWS with any header, and any (or no) signature bytes."""

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return "Bearer " + ".".join(part(x) for x in (json.dumps(header).encode(), json.dumps(claims).encode(), signature))


def reason(header: str | None, body: bytes = BODY, keys=(KEY,), leeway: float = 30, now: float = NOW) -> str | None:
    verdict = verify(body, header, list(keys), leeway, now)
    return verdict.reason if isinstance(verdict, Rejection) else None


GOOD = {"iat": int(NOW), "exp": int(NOW) + 300, "payload_hash": HASH}


def test_a_token_made_as_vcc_makes_it_is_accepted_with_its_claims():
    header = sign(BODY, KEY, NOW)
    assert verify(BODY, header, [KEY], 30, NOW) == GOOD
    assert verify(BODY, header, [KEY], 0, NOW + 300) == GOOD  # the last second of its life
    assert reason(token(GOOD).replace("Bearer", "bearer")) is None  # the scheme is case-insensitive
    assert reason("Bearer   " + token(GOOD)[7:] + "  ") is None
    assert reason(token({**GOOD, "payload_hash": HASH.upper()})) is None  # hex digits in either case


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("Basic dXNlcjpwYXNz", "malformed"),
        ("Bearer", "malformed"),
        ("Bearer ", "malformed"),
        (token(GOOD)[7:], "malformed"),  # the token without the scheme
        ("Token " + token(GOOD)[7:], "malformed"),
        ("Bearer not-a-token", "malformed"),
        ("Bearer a.b", "malformed"),
        ("Bearer " + token(GOOD)[7:].replace(".", " ", 1), "malformed"),
        ("Bearer " + jwt.encode({"x": 1}, KEY, algorithm="HS256").rsplit(".", 1)[0] + ".%%%", "malformed"),
        (token(GOOD, key=OTHER), "bad_signature"),
        (token(GOOD)[:-3] + ("AAA" if not token(GOOD).endswith("AAA") else "BBB"), "bad_signature"),
        (unsigned({"alg": "none", "typ": "JWT"}, GOOD), "bad_alg"),
        (unsigned({"alg": "None"}, GOOD), "bad_alg"),
        (unsigned({"typ": "JWT"}, GOOD, b"sig"), "bad_alg"),  # no alg at all
        (token(GOOD, key=KEY * 2, algorithm="HS512"), "bad_alg"),
        (token(GOOD, key=KEY * 2, algorithm="HS384"), "bad_alg"),
        (token({k: v for k, v in GOOD.items() if k != "exp"}), "missing_claim"),
        (token({k: v for k, v in GOOD.items() if k != "payload_hash"}), "missing_claim"),
        (token({**GOOD, "exp": "tomorrow"}), "malformed"),
        (token({**GOOD, "exp": True}), "malformed"),
        (token({**GOOD, "payload_hash": 42}), "malformed"),
        (token({**GOOD, "exp": int(NOW) - 31}), "expired"),  # beyond the 30 s leeway
        (token({**GOOD, "payload_hash": hashlib.sha256(BODY + b" ").hexdigest()}), "bad_hash"),
        (token({**GOOD, "payload_hash": HASH[:-1]}), "bad_hash"),
        (token({**GOOD, "payload_hash": "é" * 64}), "bad_hash"),
    ],
)
def test_refusals_carry_their_reason(header, expected):
    assert expected in REASONS
    assert reason(header) == expected


def test_rs256_is_refused_even_when_its_signature_is_valid():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert reason(token(GOOD, key=private, algorithm="RS256")) == "bad_alg"


def test_the_hash_covers_the_raw_bytes():
    header = sign(BODY, KEY, NOW)
    assert reason(header, body=BODY + b"\n") == "bad_hash"
    assert reason(header, body=json.dumps(json.loads(BODY)).encode()) == "bad_hash"  # same JSON, other bytes
    assert reason(sign(b"", KEY, NOW), body=b"") is None


def test_expiry_leeway():
    header = sign(BODY, KEY, NOW, ttl_s=300)
    assert reason(header, now=NOW + 300 + 30) is None
    assert reason(header, now=NOW + 300 + 31) == "expired"
    assert reason(header, leeway=0, now=NOW + 301) == "expired"
    assert reason(header, leeway=120, now=NOW + 419) is None
    # issued "in the future" (a clock ahead of ours): only the expiry counts
    assert reason(sign(BODY, KEY, NOW + 3600), now=NOW) is None


def test_rotation_any_configured_key_verifies():
    assert reason(sign(BODY, OTHER, NOW), keys=[KEY, OTHER]) is None
    assert reason(sign(BODY, KEY, NOW), keys=[KEY, OTHER]) is None
    assert reason(sign(BODY, bytes(32), NOW), keys=[KEY, OTHER]) == "bad_signature"
    # the hash is checked with the key that verified: a wrong hash stays bad_hash
    assert reason(sign(BODY + b"x", OTHER, NOW), keys=[KEY, OTHER]) == "bad_hash"


def test_decode_secret_accepts_standard_and_url_safe_base64_with_or_without_padding():
    raw = bytes([250, 251, 252, 253, 254, 255, 0, 1])
    standard = base64.b64encode(raw).decode()
    assert "+" in standard or "/" in standard
    assert decode_secret(standard) == raw
    assert decode_secret(base64.urlsafe_b64encode(raw).decode()) == raw
    assert decode_secret(standard.rstrip("=")) == raw
    assert decode_secret(f"  {standard}\n") == raw


@pytest.mark.parametrize("bad", ["not base64!", "abc$", "", "===="])
def test_decode_secret_refuses_without_showing_the_secret(bad):
    with pytest.raises(ValueError) as caught:
        decode_secret(bad)
    assert bad.strip() == "" or bad not in str(caught.value)


def test_load_keys_reads_every_variable_and_separator_in_order_without_repeats():
    a, b, c = (base64.b64encode(bytes([i]) * 32).decode() for i in (1, 2, 3))
    environ = {"NEW": f"{a}, {b}\n", "OLD": f"{c} {a}"}
    assert load_keys(["NEW", "OLD"], environ) == [bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32]


def test_load_keys_errors_name_the_variable_never_the_value():
    with pytest.raises(ValueError, match="SECRET_X is not set"):
        load_keys(["SECRET_X"], {})
    with pytest.raises(ValueError, match="SECRET_X is not set or empty"):
        load_keys(["SECRET_X"], {"SECRET_X": " , "})
    good = base64.b64encode(b"k" * 32).decode()
    with pytest.raises(ValueError, match=r"secret #2 in SECRET_X") as caught:
        load_keys(["SECRET_X"], {"SECRET_X": f"{good},s3cr3t-but-not-base64!"})
    assert "s3cr3t" not in str(caught.value) and good not in str(caught.value)

"""VCC's webhook signature, checked on the raw body (``shared/spec/vcc-webhooks.md``,
Delivery semantics): header ``Vonage-Signature: Bearer <JWT>``, HS256 keyed with the
Base64-decoded subscription secret, claim ``payload_hash`` the hex SHA-256 of the body,
``exp`` five minutes after issue.

Pure: :func:`verify` takes the body, the header, the keys and the time, and returns the
token's claims or a :class:`Rejection` with a short reason code (one of :data:`REASONS`).
Only HS256 is accepted (``none``, HS384/512, RS256, ... are ``bad_alg``); several keys may
be given (secret rotation): a token signed with any of them is accepted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jwt

HEADER = "Vonage-Signature"
ALGORITHM = "HS256"
#: Why a request was refused, in the order the checks run.
REASONS = ("missing", "malformed", "bad_alg", "bad_signature", "missing_claim", "expired", "bad_hash")

_DECODE_OPTIONS = {
    "verify_signature": True,
    "verify_exp": False,  # checked below against the caller's clock
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
    "require": [],
}
_SEPARATORS = re.compile(r"[\s,]+")


class Rejection(NamedTuple):
    """A refused signature: ``reason`` one of :data:`REASONS`, ``detail`` for humans
    (never the token or a key)."""

    reason: str
    detail: str


def verify(
    body: bytes, header: str | None, keys: Sequence[bytes], leeway_s: float, now: float
) -> dict[str, Any] | Rejection:
    """The claims of a valid ``Vonage-Signature`` header for ``body`` at time ``now``
    (Unix seconds), else the :class:`Rejection`. ``exp`` must be a number and ``now`` at
    most ``exp + leeway_s``; ``payload_hash`` must equal the SHA-256 of ``body`` (compared
    in constant time; hex digits in either case)."""
    if header is None or not header.strip():
        return Rejection("missing", f"no {HEADER} header")
    parts = header.split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1].strip():
        return Rejection("malformed", f"{HEADER} is not 'Bearer <token>'")
    token = parts[1].strip()
    claims = None
    for key in keys:
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], options=_DECODE_OPTIONS)
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidAlgorithmError:
            return Rejection("bad_alg", f"the token's algorithm is not {ALGORITHM}")
        except jwt.InvalidTokenError:
            return Rejection("malformed", "the token is not a JWS compact serialization of a JSON object")
        break
    if claims is None:
        return Rejection("bad_signature", "signed with none of the configured secrets")
    for name in ("exp", "payload_hash"):
        if name not in claims:
            return Rejection("missing_claim", f"the token has no {name!r} claim")
    exp, claimed = claims["exp"], claims["payload_hash"]
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return Rejection("malformed", "claim 'exp' is not a number")
    if now > exp + leeway_s:
        return Rejection("expired", f"the token expired {now - exp:.0f}s ago")
    if not isinstance(claimed, str):
        return Rejection("malformed", "claim 'payload_hash' is not a string")
    if not hmac.compare_digest(hashlib.sha256(body).hexdigest().encode(), claimed.lower().encode()):
        return Rejection("bad_hash", "payload_hash is not the SHA-256 of the body")
    return claims


def sign(body: bytes, key: bytes, now: float, ttl_s: float = 300.0) -> str:
    """The ``Vonage-Signature`` value VCC sends with ``body``: ``Bearer`` and an HS256 token
    with ``iat`` = ``now``, ``exp`` ``ttl_s`` later and ``payload_hash``. For tests, the
    benchmark and smoke tests of a deployment."""
    claims = {"iat": int(now), "exp": int(now + ttl_s), "payload_hash": hashlib.sha256(body).hexdigest()}
    return "Bearer " + jwt.encode(claims, key, algorithm=ALGORITHM)


def decode_secret(text: str) -> bytes:
    """The HMAC key of a subscription secret: its Base64 decoding (standard or URL-safe
    alphabet, padding optional). Raises ValueError, without the secret in the message."""
    text = text.strip()
    try:
        key = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a secret is not valid Base64") from None
    if not key:
        raise ValueError("a secret is empty")
    return key


def load_keys(names: Iterable[str], environ: Mapping[str, str]) -> list[bytes]:
    """The keys of every secret held by the environment variables ``names`` (each holds one
    secret or several separated by commas or whitespace, for rotation), in order, without
    repeats. Raises ValueError naming the variable, never showing its value."""
    keys: list[bytes] = []
    for name in names:
        secrets = [s for s in _SEPARATORS.split(environ.get(name, "")) if s]
        if not secrets:
            raise ValueError(f"environment variable {name} is not set or empty")
        for i, secret in enumerate(secrets):
            try:
                key = decode_secret(secret)
            except ValueError as exc:
                raise ValueError(f"secret #{i + 1} in {name}: {exc}") from None
            if key not in keys:
                keys.append(key)
    return keys

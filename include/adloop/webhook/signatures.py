"""Signed requests: Stripe's webhook signatures, and the same scheme for the app's own calls.

Stripe signs each delivery with the endpoint's secret (`whsec_...`):

    Stripe-Signature: t=1700000000,v1=<hex HMAC-SHA256(secret, f"{t}.{raw_body}")>

Several `v1` values appear while a secret is being rolled; any one that matches passes. The
signature covers the raw body, so it is checked before the JSON is parsed. The timestamp bounds
replays to the tolerance (300 s, Stripe's default); inside it, a replayed delivery is caught by
the event id (see the receiver's `stripe_webhook_events`).

The app (bookings, consent) signs its calls the same way in an `Adloop-Signature` header with a
secret shared with adloop, so one verifier serves both and the app can reuse `sign()`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

DEFAULT_TOLERANCE_SECONDS = 300
SCHEME = "v1"


class SignatureError(ValueError):
    """The request is not signed by a known secret inside the tolerance; the message says why."""


def compute(secret: str, timestamp: int, payload: bytes) -> str:
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The header value for a payload: `t=<unix>,v1=<hex>`."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={timestamp},{SCHEME}={compute(secret, timestamp, payload)}"


def verify(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check a signature header against the raw payload; the signed timestamp when it is valid."""
    if not secrets:
        raise SignatureError("no signing secret is configured")
    if not header:
        raise SignatureError("no signature header")
    timestamp = None
    candidates = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("the signature header's timestamp is not an integer") from None
        elif key == SCHEME and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError(f"the signature header has no timestamp or no {SCHEME} signature")

    now = time.time() if now is None else now
    # Stripe bounds the age only; a timestamp far in the future is as suspicious, so it is bounded too.
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"the signed timestamp is {int(now - timestamp)} s off, outside {tolerance} s")
    for secret in secrets:
        expected = compute(secret, timestamp, payload)
        if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            return timestamp
    raise SignatureError("no signature matches the payload with a configured secret")

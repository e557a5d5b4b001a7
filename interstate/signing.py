"""HMAC-SHA256 request signatures between peers (docs/interstate.md, section 2).

canonical = METHOD \\n PATH \\n TIMESTAMP \\n NONCE \\n hex(sha256(BODY)); signature = hex HMAC(secret, canonical).
"""

import hashlib
import hmac
import re
import secrets
import time

KEY_ID = "X-CAD-Key-Id"
TIMESTAMP = "X-CAD-Timestamp"
NONCE = "X-CAD-Nonce"
SIGNATURE = "X-CAD-Signature"
IDEMPOTENCY_KEY = "Idempotency-Key"
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
KEY_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def canonical(*, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return "\n".join([method.upper(), path, timestamp, nonce, hashlib.sha256(body).hexdigest()]).encode()


def signature(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(
    *, key_id: str, secret: str, method: str, path: str, body: bytes = b"", now: float | None = None
) -> dict:
    """The authentication headers of one request (a fresh nonce each call)."""
    timestamp = str(int(now if now is not None else time.time()))
    nonce = secrets.token_urlsafe(18)
    message = canonical(method=method, path=path, timestamp=timestamp, nonce=nonce, body=body)
    return {KEY_ID: key_id, TIMESTAMP: timestamp, NONCE: nonce, SIGNATURE: signature(secret, message)}


def matches(secret: str, message: bytes, presented: str) -> bool:
    return hmac.compare_digest(signature(secret, message), presented.lower())

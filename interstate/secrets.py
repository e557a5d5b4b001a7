"""Peer HMAC secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under a key derived
from the setting CAD_INTERSTATE_KEY (or, when unset in development, from SECRET_KEY).

HMAC needs the plaintext secret on both sides of a peer link, so the secret cannot be hashed like a password;
it is encrypted, and the admin and the management command never show it back after creation or rotation.
"""

import base64
import functools
import hashlib
import secrets as random_source

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SECRET_BYTES = 32


def _material() -> str:
    return settings.CAD_INTERSTATE_KEY or f"derived-from-secret-key:{settings.SECRET_KEY}"


@functools.lru_cache(maxsize=8)
def _fernet(material: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(material.encode()).digest()))


def encrypt(plaintext: str) -> str:
    return _fernet(_material()).encrypt(plaintext.encode()).decode()


@functools.lru_cache(maxsize=1024)
def _decrypt(material: str, token: str) -> str:
    # Every signed request, sent or received, needs its peer's secret: decrypted once per process (for the
    # key in force: a changed key is a different entry), not per request.
    return _fernet(material).decrypt(token.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _decrypt(_material(), token)
    except InvalidToken:
        raise ImproperlyConfigured(
            "A peer secret cannot be decrypted: CAD_INTERSTATE_KEY (or SECRET_KEY) changed since it was "
            "stored. Rotate the peer's secrets: manage.py interstate_peer rotate-secret CODE"
        ) from None


def new_secret() -> str:
    """A fresh random HMAC secret (URL-safe text, 256 bits)."""
    return random_source.token_urlsafe(SECRET_BYTES)


def new_key_id(code: str) -> str:
    return f"{code.lower()}-{random_source.token_hex(6)}"

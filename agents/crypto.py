"""Encryption of stored secrets (org token copies, LINE credentials, callback secrets) and token digests."""

from __future__ import annotations

import base64
import hashlib
import secrets
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(secret_key: str) -> Fernet:
    key = hashlib.sha256(("comms-at-rest:" + secret_key).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(plaintext: str) -> str:
    if not plaintext:
        return ""
    return _fernet(settings.SECRET_KEY).encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    if not ciphertext:
        return ""
    try:
        return _fernet(settings.SECRET_KEY).decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        # SECRET_KEY changed since it was stored: the value is unrecoverable, say so instead of crashing.
        return ""


def token_digest(token: str) -> str:
    """SHA-256 is enough: tokens carry 256 bits of randomness, so no stretching is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def new_secret() -> str:
    return "cbs_" + secrets.token_urlsafe(32)

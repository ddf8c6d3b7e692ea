"""Passwords and session tokens, without the web framework (``cellwatch users`` uses them too).

Argon2id (RFC 9106) through argon2-cffi, at the cost the settings give; a login for an
unknown user verifies against a dummy hash so that timing does not reveal which names
exist. Session tokens are 256 random bits; only their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MAX_PASSWORD_CHARS = 1024


def check_username(username: str) -> str:
    if not USERNAME_RE.fullmatch(username):
        raise ValueError("user names are 1-64 characters of A-Z a-z 0-9 . _ @ - (not starting with punctuation)")
    return username


def check_password(password: str, min_length: int) -> str:
    if len(password) < min_length:
        raise ValueError(f"the password must have at least {min_length} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"the password must have at most {MAX_PASSWORD_CHARS} characters")
    if password.strip() != password or not password.strip():
        raise ValueError("the password must not start or end with spaces")
    return password


class Passwords:
    """Argon2id hashing with the configured cost."""

    def __init__(self, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 4) -> None:
        self._hasher = argon2.PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
        self._dummy: str | None = None
        self._lock = threading.Lock()

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; with ``password_hash=None`` it spends the same time and says no."""
        if password_hash is None:
            with self._lock:
                if self._dummy is None:
                    self._dummy = self._hasher.hash(secrets.token_hex(16))
            password_hash = self._dummy
            password = password + "\x00never"
        try:
            return bool(self._hasher.verify(password_hash, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()

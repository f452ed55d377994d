"""Tokens: constant-time checks, hashes for storage, fingerprints for audit (never the token)."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_bot_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What is stored for a bot token: SHA-256 is enough for 256-bit random tokens."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def matches_hash(token: str, stored_hash: str) -> bool:
    """Constant-time check of a presented token against what :func:`hash_token` stored."""
    return hmac.compare_digest(hash_token(token), stored_hash)


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, fit for audit records and logs."""
    return hash_token(token)[:12]


def tokens_equal(given: str, expected: str) -> bool:
    # Compare digests so that neither the length nor non-ASCII input leaks through timing.
    return hmac.compare_digest(hash_token(given), hash_token(expected))


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or None if absent or malformed."""
    if not header or len(header) > 4096:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token

"""API keys (bearer tokens) and per-key rate limits.

Keys are never stored: a session is owned by a key's id, the first 16 hex digits of its
SHA-256. With no keys configured every request is the one local user ("local"), and the
server refuses to listen anywhere but on loopback.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import threading
import time
from collections.abc import Iterable

from ..errors import InputError
from .errors import ApiError

LOCAL = "local"
KEY_CHARACTERS = re.compile(r"[\x21-\x7e]+")
RATE_PER_MINUTE = 120  # requests per key; bursts up to the same number


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class Keys:
    def __init__(self, keys: Iterable[str] = ()) -> None:
        cleaned = [k.strip() for k in keys if k and k.strip()]
        for k in cleaned:
            if len(k) < 8:
                raise InputError("an API key needs at least 8 characters")
            if not KEY_CHARACTERS.fullmatch(k):
                # a client sends it in an HTTP header, which carries no other characters as
                # they were typed: such a key could never be matched
                raise InputError(
                    "an API key may hold only visible ASCII characters (letters, digits and "
                    "punctuation; no spaces, no accented or other letters)"
                )
        self._ids = {key_id(k): k for k in cleaned}

    @classmethod
    def parse(cls, flags: Iterable[str], environ_value: str | None) -> Keys:
        """``--api-key`` flags (repeatable) and ``ROLECAST_SERVER_KEYS`` (comma-separated)."""
        from_env = (environ_value or "").split(",")
        return cls([*flags, *from_env])

    def __bool__(self) -> bool:
        return bool(self._ids)

    def authenticate(self, header: str | None) -> str:
        """The key id of an ``Authorization: Bearer KEY`` header (``local`` with no keys set)."""
        if not self._ids:
            return LOCAL
        if not header or not header.lower().startswith("bearer "):
            raise ApiError(
                401,
                "an API key is needed: Authorization: Bearer KEY",
                "invalid_request_error",
                "missing_api_key",
            )
        given = header[7:].strip()
        kid = key_id(given)
        known = self._ids.get(kid)
        if known is None or not hmac.compare_digest(known.encode(), given.encode()):
            raise ApiError(401, "incorrect API key", "invalid_request_error", "invalid_api_key")
        return kid


def check_bind(host: str, keys: Keys) -> None:
    """With no keys, only loopback: a keyless server on a network is anybody's server."""
    if keys:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise InputError(
            f"refusing to listen on {host} without API keys: give --api-key KEY (or set "
            "ROLECAST_SERVER_KEYS), or listen on 127.0.0.1"
        )


class RateLimiter:
    """A token bucket per key: ``rate`` requests per minute, bursts up to ``rate``."""

    def __init__(self, rate: int = RATE_PER_MINUTE) -> None:
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, kid: str) -> float:
        """0 when the request may go; otherwise the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        per_second = self.rate / 60
        with self._lock:
            tokens, last = self._buckets.get(kid, (float(self.rate), now))
            tokens = min(float(self.rate), tokens + (now - last) * per_second)
            if tokens < 1:
                self._buckets[kid] = (tokens, now)
                return (1 - tokens) / per_second
            self._buckets[kid] = (tokens - 1, now)
            return 0.0

"""A short-lived token → identity cache for socket connects, which revocation empties at once.

A reconnect storm (a deploy, a network blip) makes every client present its token again
within seconds; each check is a signature verification and two database reads. Sockets
therefore look the token up here first (:func:`app.auth.tokens.authenticate_socket`).

Why it can never let a revoked token in:

* An entry lives ``TOKEN_CACHE_SECONDS`` at most and never past the token's own ``exp``,
  so an expired token always misses and is refused by the full check.
* Revocation (:meth:`TokenCache.revoke`) drops the token's entry *and* remembers its
  ``jti`` until the token would expire: a lookup that started before the revocation
  cannot put the entry back (:meth:`TokenCache.put` refuses a remembered ``jti``), and a
  connection that authenticated just before can be caught after it registered
  (:meth:`TokenCache.is_revoked`). Every process calls ``revoke`` when it hears of a
  revocation (``app.realtime.connections``), the one that revoked first of all.

Entries are keyed by the SHA-256 of the token, so no token is kept in memory as text.
Both maps are bounded: the oldest entry goes first.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Identity:
    """Who a socket authenticated as: enough to serve it without the ``User`` row."""

    user_id: int
    username: str
    #: ``User.to_dict()`` as it was at the check (the Socket.IO greeting carries it).
    user: dict[str, Any]
    jti: str
    #: The token's ``exp`` (epoch seconds), if it has one.
    expires_at: float | None


def _key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenCache:
    """Identities of recently checked access tokens; ``ttl`` 0 turns caching off."""

    def __init__(self, ttl: float = 30.0, size: int = 10_000) -> None:
        self._lock = threading.Lock()
        #: token hash → (monotonic time the entry stops being used, identity)
        self._entries: OrderedDict[bytes, tuple[float, Identity]] = OrderedDict()
        #: jti → the token's exp (epoch seconds): revoked, so never cached again.
        self._revoked: OrderedDict[str, float] = OrderedDict()
        self.configure(ttl, size)

    def configure(self, ttl: float, size: int) -> None:
        """Set the lifetime and the bound (applies to entries added from now on)."""
        self.ttl = max(0.0, ttl)
        self.size = max(1, size)

    def get(self, token: str) -> Identity | None:
        """The identity checked for ``token`` within the last ``ttl`` seconds, if any."""
        key = _key(token)
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            if hit[0] <= time.monotonic() or hit[1].jti in self._revoked:
                del self._entries[key]
                return None
            return hit[1]

    def put(self, token: str, identity: Identity) -> None:
        """Remember a token that passed the full check (not if it was revoked meanwhile)."""
        lifetime = self.ttl
        if identity.expires_at is not None:
            lifetime = min(lifetime, identity.expires_at - time.time())
        if lifetime <= 0:
            return
        with self._lock:
            if identity.jti in self._revoked:
                return
            self._entries[_key(token)] = (time.monotonic() + lifetime, identity)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def revoke(self, jti: str, expires_at: float | None) -> None:
        """Forget every entry of token ``jti`` and never cache it again (until it expires)."""
        now = time.time()
        with self._lock:
            for key in [key for key, (_, identity) in self._entries.items() if identity.jti == jti]:
                del self._entries[key]
            self._revoked[jti] = expires_at if expires_at is not None else now + 86_400
            self._revoked.move_to_end(jti)
            while self._revoked and (len(self._revoked) > self.size * 10 or next(iter(self._revoked.values())) <= now):
                self._revoked.popitem(last=False)

    def is_revoked(self, jti: str | None) -> bool:
        """True when this process has heard that token ``jti`` was revoked."""
        return jti is not None and jti in self._revoked

    def clear(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self._entries.clear()
            self._revoked.clear()


#: The process's cache, configured from ``TOKEN_CACHE_SECONDS`` / ``TOKEN_CACHE_SIZE``.
token_cache = TokenCache()

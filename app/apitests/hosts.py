"""The outbound allowlist: API test requests go only to hosts named in API_TEST_ALLOWED_HOSTS.

The URL's host is compared as written (case-insensitive, IPv6 brackets removed), with no
DNS lookup, so a name cannot be pointed somewhere else between the check and the request.
Redirects are never followed, so an allowed host cannot bounce a request elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit


class HostRefused(Exception):
    """A URL the allowlist refuses; ``code`` and ``message`` go into the step result."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def normalise_hosts(hosts: Iterable[str]) -> frozenset[str]:
    """Lower-case names without brackets, ready for lookups."""
    return frozenset(h.strip().strip("[]").lower() for h in hosts if h.strip())


def check_url(url: str, allowed: frozenset[str]) -> str:
    """Return the URL's host if allowed; raise :class:`HostRefused` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise HostRefused("unsupported_scheme", f"only http and https URLs can be tested, got {url!r}")
    host = (parts.hostname or "").lower()
    if not host:
        raise HostRefused("invalid_url", f"the URL {url!r} has no host")
    if host not in allowed:
        raise HostRefused("host_not_allowed", f"host '{host}' is not allowed by API_TEST_ALLOWED_HOSTS")
    return host

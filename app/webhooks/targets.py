"""Where webhooks may point: ``WEBHOOK_ALLOWED_HOSTS``, in the spirit of the API tests'
allowlist (``app/apitests/hosts.py``), plus a guard against private addresses.

Entries are host names or addresses as written (compared case-insensitively, brackets
removed), ``*.example.com`` (any name under that domain) or ``*`` (any host). A host
listed as written is allowed whatever it is, loopback included; a host admitted by a
pattern must be public: a private, loopback, link-local or reserved address — as written
in the URL or, at send time, as its name resolves — is refused, so a user cannot make the
server call its own network. Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from ..apitests.hosts import HostRefused, normalise_hosts

__all__ = ["HostRefused", "check_target", "check_resolved", "normalise_hosts"]

#: Names that always mean this machine (RFC 6761), whatever DNS says.
LOCAL_NAMES = ("localhost", "localhost.localdomain")


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not address.is_global or address.is_multicast


def _by_pattern(host: str, allowed: frozenset[str]) -> bool:
    if "*" in allowed:
        return True
    return any(entry.startswith("*.") and host.endswith(entry[1:]) for entry in allowed)


def check_target(url: str, allowed: frozenset[str]) -> str:
    """The URL's host if a webhook may point there; :class:`HostRefused` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise HostRefused("unsupported_scheme", f"a webhook URL is http:// or https://, got {url!r}")
    host = (parts.hostname or "").lower()
    if not host:
        raise HostRefused("invalid_url", f"the URL {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise HostRefused("invalid_url", "a webhook URL carries no user name or password (sign with the secret)")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number in range)
    except ValueError:
        raise HostRefused("invalid_url", f"the URL {url!r} has an invalid port") from None
    if host in allowed:
        return host
    address = _address(host)
    if (address is not None and _private(address)) or host in LOCAL_NAMES or host.endswith(".localhost"):
        raise HostRefused(
            "host_not_allowed",
            f"host '{host}' is a private or loopback address; list it in WEBHOOK_ALLOWED_HOSTS to allow it",
        )
    if not _by_pattern(host, allowed):
        raise HostRefused("host_not_allowed", f"host '{host}' is not allowed by WEBHOOK_ALLOWED_HOSTS")
    return host


def check_resolved(url: str, allowed: frozenset[str], *, resolve: object = None) -> None:
    """At send time: a host admitted by a pattern must resolve to public addresses only.

    Runs ``getaddrinfo`` (green under eventlet). Hosts listed as written are trusted as
    the operator listed them.
    """
    host = check_target(url, allowed)
    if host in allowed or _address(host) is not None:
        return
    lookup = resolve or socket.getaddrinfo
    try:
        infos: Iterable[tuple[object, ...]] = lookup(host, None)  # type: ignore[operator]
    except OSError as exc:
        raise HostRefused("unresolvable", f"cannot resolve '{host}': {exc}") from None
    for info in infos:
        address = _address(str(info[4][0]).split("%")[0])  # type: ignore[index]
        if address is None or _private(address):
            raise HostRefused("host_not_allowed", f"host '{host}' resolves to a private address ({address})")

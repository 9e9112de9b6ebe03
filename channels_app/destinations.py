"""Which hosts we POST to on a tenant's behalf: public addresses only, unless the operator allows a host.

A `callbackUrl` is chosen by an org token, so without a check it reaches whatever the server can
reach: loopback admin ports, the cloud metadata service (169.254.169.254), the private network. It is
checked when it is set (provision, the admin) and again at every delivery, where the host is
resolved once, every address it resolves to is checked, and the connection goes to a checked address
(channels_app.callbacks), so a DNS answer that changes between the check and the connect (rebinding)
cannot move it. `CALLBACK_ALLOWED_HOSTS` names hosts an operator wants reachable anyway (an internal
agent runner); they skip the address check, nothing else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections import OrderedDict
from urllib.parse import SplitResult, urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes that carry an IPv4 address the packet ends up at: NAT64 (RFC 6052, the last 32 bits).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# A resolved and checked host is reused this long: a resolution costs a thread hop per callback, and a
# cached answer is as safe as a fresh one (the connection goes to the checked address either way).
RESOLVED_TTL_SECONDS = 30.0
RESOLVED_CACHE_SIZE = 1024


class DestinationRefused(Exception):
    """The URL is not one we may POST to; the message says why, in words fit for the API client."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address, where the tunnel delivers
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_is_public(address: IPAddress) -> bool:
    """Whether `address` is a unicast address on the public internet.

    `is_global` alone is not enough: Python counts multicast (224.0.0.0/4, ff00::/8) as global, and an
    IPv6 address can carry an IPv4 one (mapped, 6to4, Teredo, NAT64) that is private.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return address_is_public(embedded)
    return address.is_global and not (
        address.is_multicast
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_reserved
        or address.is_unspecified
    )


def _allowed_hosts() -> frozenset[str]:
    return frozenset(host.strip().lower().strip("[]").rstrip(".") for host in settings.CALLBACK_ALLOWED_HOSTS)


def host_allowed(host: str) -> bool:
    """Whether the operator listed `host` in CALLBACK_ALLOWED_HOSTS (names and addresses, compared as written)."""
    return host.lower().rstrip(".") in _allowed_hosts()


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _parsed(url: str) -> tuple[SplitResult, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise DestinationRefused("callbackUrl is not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused("callbackUrl must be an http(s) URL with a host.")
    if any(character <= " " or character == "\x7f" for character in url):
        raise DestinationRefused("callbackUrl must not contain spaces or control characters.")
    return parts, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _refuse_special_name(host: str) -> None:
    # RFC 6761: "localhost" and its subdomains are loopback, whatever a resolver answers or fails to.
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        raise DestinationRefused(
            f"callbackUrl must reach a public address; {host} is loopback. "
            "An operator can allow an internal host with CALLBACK_ALLOWED_HOSTS."
        )


def _refuse_unless_public(host: str, addresses: list[IPAddress]) -> None:
    for address in addresses:
        if not address_is_public(address):
            raise DestinationRefused(
                f"callbackUrl must reach a public address; {host} is {address}, which is not. "
                "An operator can allow an internal host with CALLBACK_ALLOWED_HOSTS."
            )


def _addresses(infos: list[tuple[object, object, object, object, tuple[object, ...]]]) -> list[IPAddress]:
    found: list[IPAddress] = []
    for info in infos:
        # sockaddr[0] is the address; an IPv6 one may carry a "%scope" suffix, which is never public.
        text = str(info[4][0])
        if "%" in text:
            text = text.split("%", 1)[0]
            found.append(ipaddress.IPv6Address(f"{text}%1"))
            continue
        address = ipaddress.ip_address(text)
        if address not in found:
            found.append(address)
    return found


def callback_url_check(url: str) -> None:
    """Refuse a callbackUrl that is malformed or reaches a non-public address; used where one is set.

    A name that does not resolve now is accepted: it may be set up later, and every delivery checks
    again before it connects. Blocking (DNS): call it from a worker thread, never from the event loop.
    """
    _parts, host, port = _parsed(url)
    if host_allowed(host):
        return
    literal = _ip_literal(host)
    if literal is not None:
        _refuse_unless_public(host, [literal])
        return
    _refuse_special_name(host)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return
    _refuse_unless_public(host, _addresses(infos))  # type: ignore[arg-type]


class ResolveFailed(Exception):
    """The host did not resolve now (a transient failure: the attempt is retried later)."""


# (host, port) → (expires at, addresses), most recently used last. Checked on every use, not when
# stored, so a change of CALLBACK_ALLOWED_HOSTS applies at once.
_resolved: OrderedDict[tuple[str, int], tuple[float, list[IPAddress]]] = OrderedDict()


async def _resolve(host: str, port: int) -> tuple[float, list[IPAddress]]:
    """(until when the answer may be used, the addresses) of `host`, from the cache or resolved now."""
    key = (host.lower(), port)
    now = time.monotonic()
    cached = _resolved.get(key)
    if cached is not None and cached[0] > now:
        _resolved.move_to_end(key)
        return cached
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolveFailed(f"{host} does not resolve ({exc})") from None
    addresses = _addresses(infos)  # type: ignore[arg-type]
    if not addresses:
        raise ResolveFailed(f"{host} resolves to no address")
    answer = _resolved[key] = (now + RESOLVED_TTL_SECONDS, addresses)
    while len(_resolved) > RESOLVED_CACHE_SIZE:
        _resolved.popitem(last=False)
    return answer


Destination = tuple[SplitResult, str, int, list[str]]

# url → (until when, the CALLBACK_ALLOWED_HOSTS it was checked under, the answer): the checks below
# cost a fifth of a callback's CPU on the event loop, and their answer changes only with the URL, the
# allowed hosts and the name's addresses, whose cached answer (_resolved) bounds how long it is kept.
# Refusals are not kept: they are checked again each time.
_checked: OrderedDict[str, tuple[float, tuple[str, ...], Destination]] = OrderedDict()


async def destination_addresses(url: str) -> Destination:
    """For a delivery: the URL's parts, host, port and the checked addresses to connect to.

    Raises DestinationRefused (not a public address: never worth retrying) or ResolveFailed.
    """
    allowed = tuple(settings.CALLBACK_ALLOWED_HOSTS)
    now = time.monotonic()
    cached = _checked.get(url)
    if cached is not None and cached[0] > now and cached[1] == allowed:
        return cached[2]
    until, answer = await _destination_checked(url)
    _checked[url] = (until, allowed, answer)
    _checked.move_to_end(url)
    while len(_checked) > RESOLVED_CACHE_SIZE:
        _checked.popitem(last=False)
    return answer


async def _destination_checked(url: str) -> tuple[float, Destination]:
    parts, host, port = _parsed(url)
    literal = _ip_literal(host)
    if literal is None and not host_allowed(host):
        _refuse_special_name(host)
    if literal is not None:
        until, addresses = time.monotonic() + RESOLVED_TTL_SECONDS, [literal]
    else:
        until, addresses = await _resolve(host, port)
    if not host_allowed(host):
        _refuse_unless_public(host, addresses)
    # A scoped (link-local) address can only be here for an allowed host; it is connected without its scope.
    return until, (parts, host, port, [str(address).split("%", 1)[0] for address in addresses])

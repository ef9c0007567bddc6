"""Where deliveries may go: URL rules, address rules, and a resolver that connects only to the
addresses it has just checked.

A target is refused unless it is ``https`` (or its host is listed in the ``http`` allow-list) and
every address its host resolves to is globally routable. The same check runs when a
configuration is saved and on every new connection of every attempt: the delivery client's
resolver (``VettingResolver``) resolves the host once, refuses the whole host if any address is
not public, and hands exactly those addresses to aiohttp, which connects to them with the URL's
host name as ``Host`` header and TLS SNI. No second lookup happens, so DNS rebinding between
check and connect is closed. IP-literal hosts never reach a resolver; ``check_url`` checks them.

``WEBHOOKS_ALLOW_PRIVATE_TARGETS`` (dev and test only; refused in production) lets plain ``http``
through and exactly the loopback addresses (127.0.0.0/8, ::1), for a receiver on the developer's
machine; link-local, cloud metadata (169.254.169.254, fd00:ec2::254) and every other
non-public address stay refused.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TargetRefused(OSError):
    """The URL or one of its addresses may not be delivered to. ``str()`` says why."""


def _nets(*pairs: tuple[str, str]) -> list[tuple[IPNetwork, str]]:
    return [(ipaddress.ip_network(net), label) for net, label in pairs]


#: Checked in order; the first match names the refusal. Anything else must also be ``is_global``.
BLOCKED = _nets(
    ("169.254.169.254/32", "the cloud metadata address"),
    ("fd00:ec2::254/128", "the cloud metadata address"),
    ("0.0.0.0/8", "'this network' (0.0.0.0/8)"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "shared address space (CGNAT, 100.64.0.0/10)"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol assignment"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "the 6to4 relay anycast"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("::/96", "an IPv4-compatible address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001::/32", "a Teredo address"),
    ("2001:db8::/32", "a documentation address"),
    ("2002::/16", "a 6to4 address"),
    ("fc00::/7", "a unique-local (private) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: What ``allow_private`` opens: a receiver on this machine, nothing else.
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def address_problem(address: str | IPAddress) -> str | None:
    """Why ``address`` is not a place to deliver to, or ``None`` if it is globally routable."""
    ip = address if not isinstance(address, str) else ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped
        form = "IPv4-mapped"
        if embedded is None and ip in NAT64:
            embedded, form = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
        if embedded is not None:
            inner = address_problem(embedded)
            return None if inner is None else f"the {form} form of {inner} ({embedded})"
    for network, label in BLOCKED:
        if ip.version == network.version and ip in network:
            return label
    if not ip.is_global:
        return "not a globally routable address"
    return None


def is_loopback(address: str | IPAddress) -> bool:
    """127.0.0.0/8 or ::1 itself (not an IPv4-mapped or NAT64 form of it)."""
    ip = address if not isinstance(address, str) else ipaddress.ip_address(address.split("%")[0])
    return any(ip.version == net.version and ip in net for net in LOOPBACK)


def ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class TargetPolicy:
    """``allow_private`` is the dev/test-only switch: plain http, and loopback addresses."""

    allow_private: bool = False
    http_hosts: frozenset[str] = frozenset()

    def http_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(
            host == allowed or (allowed.startswith("*.") and host.endswith(allowed[1:]))
            for allowed in self.http_hosts
        )

    def check_url(self, url: str) -> tuple[str, int]:
        """Scheme and host rules, plus the address rule for an IP-literal host.
        Returns (host, port). The verdict depends on the URL and the policy only (no DNS): it
        is worked out once per (policy, URL) and remembered, as every attempt checks again."""
        verdict = _url_verdict(self, url)
        if isinstance(verdict, str):
            raise TargetRefused(verdict)
        return verdict

    def _check_url(self, url: str) -> tuple[str, int]:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise TargetRefused(f"not a valid URL: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise TargetRefused("the URL must use https")
        host = parts.hostname
        if not host:
            raise TargetRefused("the URL has no host")
        if scheme == "http" and not (self.allow_private or self.http_allowed(host)):
            raise TargetRefused("only https URLs are allowed")
        literal = ip_literal(host)
        if literal is not None:
            self.check_address(literal, host=host)
        return host, port or (443 if scheme == "https" else 80)

    def check_address(self, address: str | IPAddress, *, host: str) -> None:
        problem = address_problem(address)
        if problem is not None and not (self.allow_private and is_loopback(address)):
            shown = f"{host!r} resolves to {address}" if str(address) != host else str(address)
            raise TargetRefused(f"{shown}: {problem}")


@functools.lru_cache(maxsize=4096)
def _url_verdict(policy: TargetPolicy, url: str) -> tuple[str, int] | str:
    """(host, port), or why the URL is refused."""
    try:
        return policy._check_url(url)
    except TargetRefused as exc:
        return str(exc)


class Lookup(Protocol):
    """Name -> addresses. The system resolver in production, a fixed table in tests."""

    async def lookup(self, host: str, port: int) -> list[str]: ...


@dataclass(frozen=True)
class SystemLookup:
    timeout_s: float = 5.0

    async def lookup(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=self.timeout_s
        )
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


class StaticLookup:
    """A hosts table (name -> addresses) for tests and benchmarks; other names go to
    ``fallback`` or do not resolve. Mutable, so a test can re-point a name between saving a
    configuration and delivering to it. ``calls`` records every name looked up."""

    def __init__(
        self, hosts: Mapping[str, Iterable[str]], *, fallback: Lookup | None = None
    ) -> None:
        self.hosts = {name.lower(): list(addresses) for name, addresses in hosts.items()}
        self.fallback = fallback
        self.calls: list[str] = []

    async def lookup(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        found = self.hosts.get(host.lower().rstrip("."))
        if found:
            return list(found)
        if self.fallback is not None:
            return await self.fallback.lookup(host, port)
        raise socket.gaierror(socket.EAI_NONAME, f"{host} does not resolve")


async def vet(url: str, policy: TargetPolicy, resolver: Lookup) -> list[str]:
    """The save-time check: the URL rules, then every resolved address. Returns the addresses."""
    host, port = policy.check_url(url)
    literal = ip_literal(host)
    if literal is not None:
        return [str(literal)]
    try:
        addresses = await resolver.lookup(host, port)
    except (OSError, TimeoutError) as exc:
        raise TargetRefused(f"{host!r} does not resolve") from exc
    if not addresses:
        raise TargetRefused(f"{host!r} does not resolve")
    for address in addresses:
        policy.check_address(address, host=host)
    return addresses


class VettingResolver(AbstractResolver):
    """aiohttp resolver: one lookup, every address checked, exactly those addresses returned
    (the connector connects to them; the request keeps the host name for Host and SNI)."""

    def __init__(self, lookup: Lookup, policy: TargetPolicy) -> None:
        self._lookup = lookup
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            addresses = await self._lookup.lookup(host, port)
        except TimeoutError as exc:
            raise OSError(f"{host!r}: DNS lookup timed out") from exc
        if not addresses:
            raise OSError(f"{host!r} does not resolve")
        for address in addresses:
            self._policy.check_address(address, host=host)
        return [
            ResolveResult(
                hostname=host,
                host=address.split("%")[0],
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None

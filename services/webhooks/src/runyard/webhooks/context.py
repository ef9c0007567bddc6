"""The service's own runtime objects (``runtime.context``): the DNS lookup that target checks
use and the HTTP client that delivers."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from runyard.shared.runtime import Runtime
from runyard.webhooks.config import Settings
from runyard.webhooks.ssrf import Lookup, SystemLookup, VettingResolver


@dataclass(frozen=True)
class Context:
    lookup: Lookup
    http: aiohttp.ClientSession


ServiceRuntime = Runtime[Settings, Context]


def new_http_session(settings: Settings, lookup: Lookup | None = None) -> aiohttp.ClientSession:
    """The delivery client. Every new connection resolves through ``VettingResolver`` (one
    lookup, every address checked, exactly those addresses connected to; no DNS cache). No
    cookies carried between endpoints, no proxy settings from the environment."""
    resolver = VettingResolver(
        lookup or SystemLookup(timeout_s=settings.dns_timeout_s), settings.target_policy()
    )
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=settings.delivery_concurrency, resolver=resolver, use_dns_cache=False
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


async def open_context(runtime: ServiceRuntime, *, lookup: Lookup | None = None) -> Context:
    """``lookup`` replaces the system DNS resolver (tests point host names at chosen addresses
    with ``ssrf.StaticLookup``)."""
    resolver = lookup or SystemLookup(timeout_s=runtime.settings.dns_timeout_s)
    return Context(lookup=resolver, http=new_http_session(runtime.settings, resolver))


async def close_context(context: Context) -> None:
    await context.http.close()

"""Allowed hosts: a request whose Host header names no host the site serves gets 400.

Without this check, a forged Host header reaches whatever builds absolute URLs from it
(password-reset links, redirects) and poisons caches keyed on it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from aiohttp import hdrs, web

from aiosite.keys import PROBE

logger = logging.getLogger("aiosite.security")

# Host names, IPv4 addresses and bracketed IPv6 addresses, with an optional port.
_HOST = re.compile(r"([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(?::[0-9]{1,5})?")
# Decisions kept; a client inventing hosts cannot grow the cache past this.
CACHE_SIZE = 1024
_SHOWN_LENGTH = 100

# What a client is told in production, for an unknown or an invalid Host alike.
NOT_SERVED = "Bad Request: this site does not serve the requested host."
MISSING = (
    "The request has no Host header. Browsers always send one; a client that does not "
    "must add it (Host: the site's domain name)."
)


def split_host(value: str) -> str | None:
    """The host name of a Host header, lower case, without port or trailing dot; None
    when it is no valid host."""
    value = value.strip().lower()
    match = _HOST.fullmatch(value)
    if match is None:
        return None
    return match.group(1).removesuffix(".")


def host_matches(host: str, pattern: str) -> bool:
    """Whether ``host`` is what an allowed_hosts entry names: the exact name, "*", or,
    for ".example.com", example.com and its subdomains."""
    if pattern == "*":
        return True
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    return host == pattern


def checks_host(route: web.AbstractRoute) -> bool:
    """Whether the allowed-hosts hook runs for ``route``: not for one marked PROBE."""
    return not getattr(route.handler, PROBE, False)


class AllowedHosts:
    """The request hook; decisions are cached per Host header value.

    In production the page says only that the host is not served: repeating the Host
    value would reflect what a client sent, and naming the setting tells a visitor how
    the site is configured. Debug mode shows both, and the log line always does.
    """

    def __init__(self, patterns: Sequence[str], *, debug: bool = False) -> None:
        self.patterns = tuple(p.removesuffix(".") for p in patterns)
        self.debug = debug
        self._cache: dict[str, str | None] = {}

    def __call__(self, request: web.Request) -> None:
        # Read the header, not request.host: without one aiohttp falls back to the
        # address the connection arrived on, which would pass for an allowed host.
        raw = request.headers.get(hdrs.HOST)
        if raw is None:
            raise web.HTTPBadRequest(text=MISSING)
        try:
            refusal = self._cache[raw]
        except KeyError:
            refusal = self._decide(raw)
        # A site whose core runs as a middleware calls the hook on every route; the
        # marker is read only for a refusal, so an allowed host pays nothing for it.
        if refusal is not None and not getattr(request.match_info.handler, PROBE, False):
            raise web.HTTPBadRequest(text=refusal)

    def _decide(self, raw: str) -> str | None:
        """None for an allowed host, else the message to refuse it with."""
        host = split_host(raw)
        shown = raw if len(raw) <= _SHOWN_LENGTH else raw[:_SHOWN_LENGTH] + "…"
        refusal: str | None
        if host is None:
            refusal = f"The Host header {shown!r} is not a valid host name."
            logged = "Refused a request with the invalid Host header %r"
        elif any(host_matches(host, pattern) for pattern in self.patterns):
            refusal = logged = None
        else:
            refusal = (
                f"This site does not serve the host {host!r}. If it should, add {host!r} "
                "to the setting security.allowed_hosts (or '.' + the domain for the domain "
                "and all its subdomains)."
            )
            logged = "Refused a request for the host %r (not in security.allowed_hosts)"
        if logged is not None:
            # Once per host while it is cached, so a scanner cannot flood the log.
            logger.warning(logged, shown)
            if not self.debug:
                refusal = NOT_SERVED
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[raw] = refusal
        return refusal

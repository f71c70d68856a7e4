"""Origins (scheme, host, port) of requests and of the pages that sent them.

A browser names the page a request came from in ``Origin`` (and ``Referer``); a request
from another site that the CSRF token somehow let through still fails this check.
"""

from __future__ import annotations

from collections.abc import Sequence

from yarl import URL

# scheme, host (lower case, IPv6 without brackets), port (the scheme's default if none).
Origin = tuple[str, str, int | None]


def parse_origin(value: str) -> Origin | None:
    """The origin of a URL or of an ``Origin`` header value; None when it has none."""
    try:
        url = URL(value)
        # yarl decodes an IDNA host lazily: "https://xn--" fails here, not above.
        host, port = url.host, url.port
    except (ValueError, TypeError):  # UnicodeError is a ValueError
        return None
    if url.scheme not in ("http", "https") or not host:
        return None
    return url.scheme, host.lower(), port


def request_origin(host_header: str, *, secure: bool) -> Origin | None:
    """The origin a request was addressed to: its scheme and its Host header."""
    return parse_origin(f"{'https' if secure else 'http'}://{host_header}")


class TrustedOrigins:
    """``security.csrf_trusted_origins``: exact origins, and ``scheme://*.domain`` for a
    domain's subdomains."""

    def __init__(self, origins: Sequence[str]) -> None:
        exact: set[Origin] = set()
        wildcards: list[tuple[str, str, int | None]] = []
        for text in origins:
            scheme, _, rest = text.partition("://")
            if rest.startswith("*."):
                parsed = parse_origin(f"{scheme}://{rest[2:]}")
                if parsed is not None:
                    wildcards.append((parsed[0], "." + parsed[1], parsed[2]))
            else:
                parsed = parse_origin(text)
                if parsed is not None:
                    exact.add(parsed)
        self.exact = frozenset(exact)
        self.wildcards = tuple(wildcards)

    def __contains__(self, origin: Origin) -> bool:
        if origin in self.exact:
            return True
        scheme, host, port = origin
        return any(
            scheme == w_scheme and port == w_port and host.endswith(suffix)
            for w_scheme, suffix, w_port in self.wildcards
        )

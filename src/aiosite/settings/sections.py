"""The site-wide settings sections: ``site``, ``server``, ``debug``, ``logging``, ``redis``,
``security``.

These are read across the site (the secret key by sessions, auth and the debug page;
``debug.enabled`` by nearly every battery; the Redis server by whatever keeps state there),
so they belong to no one battery. Each battery and app declares its own section beside
its code (``aiosite.db.config``, ``App(settings=...)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

# A problem ``aiosite check --deploy`` reports: level, and a message that starts with
# the dotted key and ends with what to do.
DeployProblem = tuple[Literal["error", "warning"], str]


class Section(BaseModel):
    """A settings section: unknown keys are errors, values are immutable.

    Subclass it to declare a battery's or an app's section (``App(settings=...)``); a
    field without a default must then be set in the YAML files or the environment.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def deploy_problems(self) -> Iterable[DeployProblem]:
        """What makes these values unfit for a public site (``aiosite check --deploy``):
        ``("warning", "auth.hasher: ... : what to do")``; nothing by default."""
        return ()


class UncheckedSection(Section):
    """A section kept as written, unchecked, where its owner is not loaded: by a
    migration, which reads only ``database``, or while an app fails to import (the
    site's start reports that)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class SiteSettings(Section):
    name: str = "aiosite site"
    # The project's own Python package: its templates/, static/ and site.py hooks.
    package: str | None = None


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    reload: bool = False
    access_log: bool = False
    # Largest request body aiohttp reads into memory (bytes); a body declared larger is
    # refused with 413 before any of it is read (docs/security.md#request-bodies).
    client_max_size: int = Field(default=1024**2, gt=0)
    # Against slow and idle clients (docs/security.md#connection-timeouts). Seconds a
    # client has to send a request's line and headers, from their first byte (from the
    # moment it connects, for a connection's first request); then 408 and close.
    head_timeout: float = Field(default=10.0, gt=0)
    # Seconds a request body may take, plus one second for every body_min_rate bytes
    # received: a body sent slower than body_min_rate bytes a second is cut off (408).
    body_timeout: float = Field(default=10.0, gt=0)
    body_min_rate: int = Field(default=1024, gt=0)
    # Seconds an idle keep-alive connection stays open between requests.
    keepalive_timeout: float = Field(default=15.0, gt=0)
    # Connections one process holds at once; one more is answered 503 and closed.
    max_connections: int = Field(default=1000, gt=0)


class DebugSettings(Section):
    enabled: bool = False
    toolbar: bool = True
    detect_blocking: bool = False
    block_threshold_ms: int = Field(default=100, gt=0)


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class RedisSettings(Section):
    """The site's Redis server, for every battery that uses one (Redis sessions first):
    each client is made by ``aiosite.services.redis.redis_client`` with these bounds."""

    url: str = "redis://127.0.0.1:6379/0"
    # Seconds to open a connection; then the request that needed it gets a 503.
    connect_timeout: float = Field(default=2.0, gt=0)
    # Seconds to wait for a reply (a paused or black-holed server): never retried.
    socket_timeout: float = Field(default=2.0, gt=0)
    # A pooled connection idle longer than this (seconds) is PINGed before reuse; 0: never.
    health_check_interval: int = Field(default=15, ge=0)
    # Connections per process; a request waits connect_timeout for a free one.
    max_connections: int = Field(default=100, gt=0)


# The prefix `aiosite new` gives the keys it writes into development.yaml and test.yaml:
# a site outside those environments refuses to start with such a key (aiosite.security).
INSECURE_KEY_PREFIX = "aiosite-insecure-"


class SecuritySettings(Section):
    """Secrets, allowed hosts, CSRF and the security headers (docs/security.md)."""

    # Encrypts session cookies and signs what must not be forged. Pass it in production
    # as AIOSITE_SECURITY__SECRET_KEY; `aiosite new` writes a development one.
    secret_key: SecretStr | None = None
    # Earlier keys, still accepted for reading (sessions made before a key change).
    secret_key_fallbacks: list[SecretStr] = Field(default_factory=list)
    # Host names the site answers; others get 400. ".example.com" matches the domain
    # and its subdomains; "*" matches any host (never in production).
    allowed_hosts: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1", "[::1]"])
    # Trust X-Forwarded-Proto from the proxy in front (nginx) to tell HTTPS requests.
    trust_proxy_headers: bool = False
    # Origins (scheme://host[:port]) other than the site's own allowed to POST to it.
    csrf_trusted_origins: list[str] = Field(default_factory=list)
    # The cookie that holds the CSRF secret of a visitor whose session holds nothing
    # (HttpOnly, SameSite=Lax). Secure null: on outside development and test; a Secure
    # cookie's name gets the __Host- prefix (docs/csrf.md#where-the-secret-lives).
    csrf_cookie_name: str = Field(default="aiosite_csrf", pattern=r"^[A-Za-z0-9_.-]+$")
    csrf_cookie_secure: bool | None = None
    # Sent with every HTML response; null or "" sends none.
    content_security_policy: str | None = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )
    frame_options: Literal["DENY", "SAMEORIGIN"] | None = "DENY"
    referrer_policy: str | None = "same-origin"
    # Strict-Transport-Security, sent with HTTPS responses only; 0 sends none.
    hsts_seconds: int = Field(default=31_536_000, ge=0)
    hsts_include_subdomains: bool = False
    hsts_preload: bool = False
    # The Server header of every response: aiohttp's own names Python's and its
    # versions, which help an attacker more than anybody else.
    server_header: str = Field(
        default="aiosite", min_length=1, pattern=r"^[\x21-\x7e][\x20-\x7e]*$"
    )

    def secret_values(self) -> list[str]:
        """The secret key, if set, then its fallbacks: what signs and must never show."""
        keys = (self.secret_key, *self.secret_key_fallbacks)
        return [key.get_secret_value() for key in keys if key is not None]

    @field_validator("allowed_hosts")
    @classmethod
    def _lower_hosts(cls, value: list[str]) -> list[str]:
        hosts = [host.strip().lower() for host in value]
        for host in hosts:
            # A port outside IPv6's brackets, a scheme or a path: the Host header is
            # compared without its port, so such an entry would never match.
            if not host or "/" in host or ":" in host.rpartition("]")[2]:
                raise ValueError(
                    f"{host!r} is not a host name; write it without scheme or port, "
                    "e.g. example.com, .example.com (with its subdomains) or [::1]"
                )
        return hosts

    @field_validator("csrf_trusted_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            scheme, sep, rest = origin.partition("://")
            if not sep or scheme not in {"http", "https"} or not rest or "/" in rest:
                raise ValueError(
                    f"{origin!r} is not an origin; write scheme://host[:port], "
                    "e.g. https://example.com"
                )
        return [origin.lower() for origin in value]

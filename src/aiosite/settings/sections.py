"""The site-wide settings sections: ``site``, ``server``, ``debug``, ``logging``, ``security``.

These are read across the site (the secret key by sessions, auth and the debug page;
``debug.enabled`` by nearly every battery), so they belong to no one battery. Each
battery and app declares its own section beside its code (``aiosite.db.config``,
``App(settings=...)``).
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
    # Largest request body aiohttp reads into memory (bytes).
    client_max_size: int = Field(default=1024**2, gt=0)


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

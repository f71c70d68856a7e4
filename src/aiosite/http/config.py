"""The ``http:`` settings section: the site's outbound client and its named services."""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Iterable
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from yarl import URL

from aiosite.settings import DeployProblem, Section


@functools.cache
def _default_user_agent() -> str:
    try:
        return f"aiosite/{importlib.metadata.version('aiosite')}"
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "aiosite"


class TimeoutSettings(Section):
    """Seconds for one attempt of an outbound request."""

    # To open a connection (TCP and TLS); a pooled connection needs none.
    connect: float = Field(default=2.0, gt=0)
    # For the whole attempt: connecting, sending, and reading the whole response.
    total: float = Field(default=10.0, gt=0)


class TimeoutOverride(Section):
    """A service's own timeouts; a key left out keeps the site's (``http.timeout``)."""

    connect: float | None = Field(default=None, gt=0)
    total: float | None = Field(default=None, gt=0)


class BackoffSettings(Section):
    """The waits between retries: exponential from ``initial`` (doubling each time) up
    to ``max``, plus a random jitter of up to ``jitter`` seconds, so that many clients
    that failed together do not retry together."""

    initial: float = Field(default=0.1, ge=0)
    max: float = Field(default=2.0, ge=0)
    jitter: float = Field(default=0.1, ge=0)


class BackoffOverride(Section):
    """A service's own backoff; a key left out keeps the site's (``http.backoff``)."""

    initial: float | None = Field(default=None, ge=0)
    max: float | None = Field(default=None, ge=0)
    jitter: float | None = Field(default=None, ge=0)

    def over(self, site: BackoffSettings) -> BackoffSettings:
        return site.model_copy(update=self.model_dump(exclude_none=True))


class BreakerSettings(Section):
    """A circuit breaker: after ``failures`` failed attempts in a row it opens and calls
    fail at once; ``reset_after`` seconds later it lets one call through to probe the
    upstream, and its outcome closes the breaker (a success) or opens it again (a
    failure)."""

    failures: int = Field(default=5, ge=1)
    reset_after: float = Field(default=30.0, gt=0)


class BreakerOverride(Section):
    """A service's own circuit breaker; a key left out keeps the site's
    (``http.circuit_breaker``, or the defaults when the site has none)."""

    failures: int | None = Field(default=None, ge=1)
    reset_after: float | None = Field(default=None, gt=0)

    def over(self, site: BreakerSettings | None) -> BreakerSettings:
        base = site or BreakerSettings()
        return base.model_copy(update=self.model_dump(exclude_none=True))


class ServiceSettings(Section):
    """One upstream the site calls by name: ``service(request, "weather")``."""

    base_url: str
    timeout: TimeoutOverride = Field(default_factory=TimeoutOverride)
    # null: the site's ``http.retries``. A key of ``backoff`` left out is the site's
    # (``http.backoff``), as are those of ``timeout``.
    retries: int | None = Field(default=None, ge=0)
    backoff: BackoffOverride | None = None
    # Written as null in the YAML files: no breaker for this service; left out: the
    # site's; a key of it left out: the site's value of that key.
    circuit_breaker: BreakerOverride | None = None
    # Sent with every request to the service, and dropped from a redirect to another
    # origin. Secret, as an API key may be one: pass such a key in the environment. An
    # underscore in a header's name becomes a hyphen, so that the environment can name
    # it (AIOSITE_HTTP__SERVICES__WEATHER__HEADERS__X_API_KEY sends x-api-key).
    headers: dict[str, SecretStr] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            url = URL(value)
        except (TypeError, ValueError):
            url = None
        if url is None or url.scheme not in {"http", "https"} or not url.host:
            raise ValueError(
                f"{value!r} is not an http(s) URL; write e.g. https://api.example.com "
                "or http://127.0.0.1:8001/v2"
            )
        if url.query_string or url.fragment:
            raise ValueError(
                f"{value!r}: a base URL has no query or fragment; pass query parameters "
                "with each call (params=...)"
            )
        return value

    @field_validator("headers")
    @classmethod
    def _hyphenated(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        # Environment variables cannot spell a hyphen, and proxies (nginx by default)
        # drop a header whose name has an underscore: no header should have one.
        return {name.replace("_", "-"): secret for name, secret in value.items()}

    def backoff_or(self, default: BackoffSettings) -> BackoffSettings:
        """This service's backoff: its own keys over the site's."""
        return default if self.backoff is None else self.backoff.over(default)

    def breaker_or(self, default: BreakerSettings | None) -> BreakerSettings | None:
        """This service's circuit breaker: none when it says ``null``, else its own keys
        over the site's (the site's alone when it sets none)."""
        if "circuit_breaker" not in self.model_fields_set:
            return default
        if self.circuit_breaker is None:
            return None
        return self.circuit_breaker.over(default)


class HttpSettings(Section):
    """The site's outbound HTTP client and named upstream services (docs/http-client.md)."""

    timeout: TimeoutSettings = Field(default_factory=TimeoutSettings)
    # Connections the site's client holds open at once, in all (0: no limit) and to
    # one host (0: no limit); a request beyond them waits for a free one.
    limit: int = Field(default=100, ge=0)
    limit_per_host: int = Field(default=0, ge=0)
    user_agent: str = Field(default_factory=_default_user_agent, min_length=1)
    # A response body larger than this (bytes) is refused: an upstream answers 502.
    max_response_size: int = Field(default=10 * 1024**2, gt=0)
    # Defaults for every service: retries of idempotent requests, their backoff, and
    # the circuit breaker (null: none).
    retries: int = Field(default=2, ge=0)
    backoff: BackoffSettings = Field(default_factory=BackoffSettings)
    circuit_breaker: BreakerSettings | None = Field(default_factory=BreakerSettings)
    # any: requests go wherever they are sent. loopback: only to loopback addresses
    # (127.0.0.0/8, ::1, localhost), where fake upstreams listen; anything else fails
    # before connecting (tests: config/test.yaml, and aiosite's pytest plugin).
    outbound: Literal["any", "loopback"] = "any"
    services: dict[str, ServiceSettings] = Field(default_factory=dict)

    def deploy_problems(self) -> Iterable[DeployProblem]:
        if self.outbound == "loopback":
            yield (
                "warning",
                "http.outbound: 'loopback' blocks every call to a real upstream; set it "
                "in config/test.yaml only",
            )

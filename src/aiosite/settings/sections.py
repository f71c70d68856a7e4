"""The site-wide settings sections: ``site``, ``server``, ``debug``, ``logging``, ``redis``,
``security``, ``deploy``.

These are read across the site (the secret key by sessions, auth and the debug page;
``debug.enabled`` by nearly every battery; the Redis server by whatever keeps state there),
so they belong to no one battery. Each battery and app declares its own section beside
its code (``aiosite.db.config``, ``App(settings=...)``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

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
    # `aiosite serve`, the production server (docs/serving.md). Worker processes; 0: one
    # per CPU.
    workers: int = Field(default=0, ge=0)
    # Addresses to listen on, "host:port", "[::1]:port" or "unix:/path/to.sock" (a
    # relative path is the project's); empty: host and port above.
    bind: list[str] = Field(default_factory=list)
    # Seconds a worker may stay unresponsive (its event loop blocked) before it is killed
    # and replaced.
    worker_timeout: int = Field(default=30, gt=0)
    # Seconds a stopping worker (SIGTERM, SIGHUP) gives requests in flight to finish.
    graceful_timeout: int = Field(default=30, gt=0)
    # Seconds a stopping worker keeps its idle keep-alive connections open (answering
    # what still comes on them with "Connection: close") so that a proxy in front closes
    # them itself: closed under it, a request it just sent would fail (a POST is never
    # retried). Within graceful_timeout; `aiosite run` does not wait.
    drain_timeout: float = Field(default=5.0, ge=0)
    # Requests after which a worker is replaced (0: never), plus up to jitter more, so
    # that the workers are not all replaced at once.
    max_requests: int = Field(default=0, ge=0)
    max_requests_jitter: int = Field(default=0, ge=0)
    # File the server writes its process id to (relative: the project's); null: none.
    pid_file: str | None = None
    # The access log line: null, aiosite's (with request id and milliseconds); else
    # aiohttp's format directives (docs/serving.md#access-log).
    access_log_format: str | None = None

    @field_validator("access_log_format")
    @classmethod
    def _check_access_log_format(cls, value: str | None) -> str | None:
        return None if value is None else check_access_log_format(value)

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, value: list[str]) -> list[str]:
        for address in value:
            if address.startswith("unix:"):
                if not address[len("unix:") :]:
                    raise ValueError(f"{address!r}: a unix socket needs a path, unix:/path")
                continue
            host, sep, port = address.rpartition(":")
            if not sep or not host or not port.isdigit() or int(port) > 65535:
                raise ValueError(
                    f"{address!r} is not an address: write host:port (127.0.0.1:8000, "
                    "[::1]:8000) or unix:/path/to.sock"
                )
        return value


# aiohttp's access log directives (aiohttp.web_log.AccessLogger); %{NAME}e (the
# environment, secrets included) is left out, as is %%, which aiohttp mangles.
_LOG_DIRECTIVE = re.compile(r"%(?:\{[A-Za-z0-9\-_]+\}[io]|Tf|[atPrsbTD])")
LOG_DIRECTIVES = "%a %t %r %s %b %T %Tf %D %P %{Header}i %{Header}o"


def check_access_log_format(value: str) -> str:
    """``value`` when it is an access log format aiohttp formats; ValueError otherwise."""
    rest = _LOG_DIRECTIVE.sub("", value)
    if "%" in rest:
        bad = re.match(r"%(\{[^}]*\}?.?|.?)", rest[rest.index("%") :])
        directive = bad.group(0) if bad else "%"
        raise ValueError(f"unknown directive {directive!r}: use {LOG_DIRECTIVES}")
    if not value.strip():
        raise ValueError("empty: leave it null for aiosite's line")
    return value


class TlsSettings(Section):
    """``deploy.tls``: the certificate nginx serves HTTPS with (certbot's files, say)."""

    certificate: Path
    key: Path
    # Addresses nginx takes HTTPS on; deploy.listen then only redirects to them.
    listen: list[str] = Field(default_factory=lambda: ["443"])


def _variable_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError("not a variable name: letters, digits and '_', e.g. TZ")
    return value


def _one_line(value: str) -> str:
    # A newline would start a line of its own choosing in the generated files.
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError("holds a newline or another control character: remove it")
    return value


_VariableName = Annotated[str, AfterValidator(_variable_name)]
_OneLine = Annotated[str, AfterValidator(_one_line)]


class DeploySettings(Section):
    """What ``aiosite deploy nginx|systemd|supervisor`` writes into those files beyond
    the rest of the settings (docs/deployment.md)."""

    # The service's name (systemd unit, supervisor program, nginx upstream, /etc/<name>/);
    # null: the project's package.
    name: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    # nginx's server_name; null: security.allowed_hosts without the local names.
    server_names: list[str] | None = None
    # Where nginx takes plain HTTP: ports or address:port, as nginx's listen.
    listen: list[str] = Field(default_factory=lambda: ["80"])
    tls: TlsSettings | None = None
    # The sites nginx forwards to, host:port or unix:/path; empty: server.bind (or
    # server.host:port) of this machine. Several hosts: list each one.
    upstreams: list[str] = Field(default_factory=list)
    # A URL nginx serves uploads.media_root under, for public uploads; null: none (the
    # site's views serve uploads and decide who may download what).
    media_url: str | None = None
    # nginx's client_max_body_size (bytes); null: the largest body the site accepts
    # (server.client_max_size plus uploads.max_size).
    client_max_body_size: int | None = Field(default=None, gt=0)
    # Seconds nginx waits between two reads from the site: longer than the slowest
    # response's pauses (websockets ping every channels heartbeat, event streams every
    # sse.keepalive).
    proxy_read_timeout: float = Field(default=60.0, gt=0)
    # The account the service runs as: POSIX names (lower case, digits, '_' and '-').
    user: str = "www-data"
    group: str = "www-data"
    # null: the project's directory.
    working_directory: Path | None = None
    # The command that serves the site; null: this virtualenv's `aiosite serve`.
    command: str | None = None
    # Extra environment variables written into the unit and program files, which anyone
    # on the machine may read: never secrets (those go to env_file).
    environment: dict[_VariableName, _OneLine] = Field(default_factory=dict)
    # KEY=value lines with the secrets, readable by root only; null: /etc/<name>/env.
    env_file: Path | None = None

    @field_validator("media_url")
    @classmethod
    def _url_slashes(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("/"):
            raise ValueError("must start with '/', e.g. /media/")
        return value if value.endswith("/") else value + "/"

    @field_validator("user", "group")
    @classmethod
    def _account_name(cls, value: str) -> str:
        # What useradd accepts; anything else could end the line it is written on.
        if len(value) > 32 or not re.fullmatch(r"[a-z_][a-z0-9_-]*\$?", value):
            raise ValueError(
                "an account name: up to 32 lower-case letters, digits, '_' or '-', "
                "not starting with a digit or '-', e.g. www-data"
            )
        return value


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


def _loopback() -> list[IPv4Network | IPv6Network]:
    return [IPv4Network("127.0.0.0/8"), IPv6Network("::1/128")]


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
    # Trust X-Forwarded-Proto and X-Forwarded-For from the proxy in front (nginx) to tell
    # HTTPS requests and the client's address...
    trust_proxy_headers: bool = False
    # ...when the request comes from one of these networks (the proxy's address; a unix
    # socket's peer is always trusted): any client reaching the site directly could send
    # those headers too.
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(default_factory=_loopback)
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

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if not isinstance(value, list):
            return value
        networks = []
        for entry in value:
            try:
                networks.append(ip_network(entry) if isinstance(entry, str) else entry)
            except ValueError as exc:
                raise ValueError(
                    f"{entry!r} is not a network ({exc}); write an address or a network, "
                    "e.g. 10.0.0.5, 10.0.0.0/8 or fd00::/8"
                ) from None
        return networks

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

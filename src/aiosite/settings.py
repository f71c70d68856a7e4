"""Typed settings: built-in defaults, then YAML layers, then environment variables.

Layers, later wins:

1. the defaults below;
2. ``config/default.yaml``;
3. ``config/<env>.yaml``, where env is ``AIOSITE_ENV`` (``development`` unless set);
4. environment variables ``AIOSITE_<SECTION>__<KEY>``, e.g. ``AIOSITE_SERVER__PORT=9000``.

Validation errors name the file (or environment variable) and the dotted key that
supplied the bad value, because pydantic alone only knows the merged result.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from aiosite.exceptions import ImproperlyConfigured

ENV_PREFIX = "AIOSITE_"
ENV_VAR = "AIOSITE_ENV"
DEFAULT_ENV = "development"
CONFIG_DIR = "config"
# Settings fields that are facts of the run, not settings a file may set.
FACTS = {
    "env": f"the environment is chosen by {ENV_VAR}",
    "project_dir": "the project directory is where config/ is",
}


class Section(BaseModel):
    """A settings section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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


class StaticSettings(Section):
    url: str = "/static/"
    serve: bool = True
    max_age: int = Field(default=3600, ge=0)

    @field_validator("url")
    @classmethod
    def _slashes(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value if value.endswith("/") else value + "/"


class TemplateSettings(Section):
    # None: follow debug.enabled (re-read changed templates while debugging).
    auto_reload: bool | None = None


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class DatabaseSettings(Section):
    """The site's database: SQLite (aiosqlite) by default, PostgreSQL (asyncpg) for real.

    A relative SQLite path is relative to the project directory. ``postgresql://`` and
    ``sqlite://`` URLs get their async driver; other drivers must be async ones.
    """

    url: str = "sqlite+aiosqlite:///var/db.sqlite3"
    # PostgreSQL only: the schema the site's tables live in (its search_path);
    # `aiosite db migrate` creates it when missing.
    # Lower case: PostgreSQL folds unquoted names, as in search_path, to lower case.
    schema_name: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]*$")
    pool_size: int = Field(default=5, ge=1)
    max_overflow: int = Field(default=10, ge=0)
    # Seconds a request waits for a free pooled connection before a 503.
    pool_timeout: float = Field(default=10.0, gt=0)
    # Seconds after which a pooled connection is replaced; -1 keeps them.
    pool_recycle: int = Field(default=-1, ge=-1)
    # Test each connection with a round trip before use (costs one per request).
    pool_pre_ping: bool = False
    # Seconds to wait for a new connection (PostgreSQL) or a lock (SQLite).
    connect_timeout: float = Field(default=5.0, gt=0)
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalize_database_url(value)

    @model_validator(mode="after")
    def _schema_on_postgresql(self) -> DatabaseSettings:
        if self.schema_name is not None and not self.url.startswith("postgresql"):
            raise ValueError("schema_name is a PostgreSQL setting; remove it for this database")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Settings show up in debug pages and logs; the password must not.
        for name, value in super().__repr_args__():
            yield name, hide_password(value) if name == "url" else value


# The prefix `aiosite new` gives the keys it writes into development.yaml and test.yaml:
# a site outside those environments refuses to start with such a key.
INSECURE_KEY_PREFIX = "aiosite-insecure-"
# Environments run on a developer's machine or CI, where development keys, plain-HTTP
# cookies and debug pages are allowed; every other environment is treated as production.
LOCAL_ENVS = frozenset({"development", "test"})
MIN_SECRET_KEY_LENGTH = 32


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


class SessionSettings(Section):
    """Browser sessions (aiohttp-session): an encrypted cookie, or Redis."""

    backend: Literal["cookie", "redis"] = "cookie"
    cookie_name: str = Field(default="aiosite_session", pattern=r"^[A-Za-z0-9_.-]+$")
    # Seconds a session lives after its last change; null: until the browser closes
    # (Redis keeps such sessions for redis_ttl).
    max_age: int | None = Field(default=14 * 24 * 3600, gt=0)
    # null: Secure outside development and test, i.e. sent over HTTPS only.
    cookie_secure: bool | None = None
    cookie_samesite: Literal["Lax", "Strict", "None"] = "Lax"
    cookie_domain: str | None = None
    cookie_path: str = "/"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Seconds Redis keeps a session with no max_age.
    redis_ttl: int = Field(default=14 * 24 * 3600, gt=0)
    redis_prefix: str = "aiosite:session:"


class PasswordHasherSettings(Section):
    """argon2id parameters; a stored hash made with others is rehashed at login."""

    time_cost: int = Field(default=3, ge=1)
    memory_cost: int = Field(default=65_536, ge=8)  # KiB
    parallelism: int = Field(default=4, ge=1)


class AuthSettings(Section):
    """aiosite.contrib.auth: users, login, permissions (docs/auth.md)."""

    # A route name or a path: where login_required sends anonymous users.
    login_url: str = "auth:login"
    login_redirect: str = "/"
    logout_redirect: str = "/"
    # Whether anyone may sign up at /auth/register.
    registration: bool = True
    password_min_length: int = Field(default=8, ge=1)
    hasher: PasswordHasherSettings = PasswordHasherSettings()
    # Failed logins allowed in throttle_window seconds, per account and per client IP.
    throttle_account: int = Field(default=5, ge=1)
    throttle_ip: int = Field(default=20, ge=1)
    throttle_window: int = Field(default=900, ge=1)


def check_media_types(values: list[str]) -> list[str]:
    """``values`` lower-cased and stripped; ValueError names the first that is not a
    content type (type/subtype, or type/* for a family; no parameters)."""
    checked = []
    for value in values:
        media_type = value.strip().lower()
        kind, sep, subtype = media_type.partition("/")
        if not sep or not kind or not subtype or kind == "*" or ";" in media_type:
            raise ValueError(
                f"{value!r} is not a content type; write type/subtype, e.g. "
                "image/png, or type/* for a family, e.g. image/*"
            )
        checked.append(media_type)
    return checked


class UploadSettings(Section):
    """File uploads stored under media_root (docs/uploads.md)."""

    # Relative to the project directory; never inside a static folder.
    media_root: Path = Path("var/media")
    # The largest upload a route accepts unless it sets its own (bytes).
    max_size: int = Field(default=10 * 1024**2, gt=0)
    # Content types accepted unless a route names its own; "image/*" for a family.
    allowed_types: list[str] = Field(
        default_factory=lambda: [
            "image/png",
            "image/jpeg",
            "image/gif",
            "image/webp",
            "application/pdf",
            "text/plain",
        ]
    )
    # Files one request may upload, unless a route sets its own.
    max_files: int = Field(default=10, gt=0)
    # Text fields one upload form may carry (they are held in memory).
    max_fields: int = Field(default=100, gt=0)

    @field_validator("allowed_types")
    @classmethod
    def _media_types(cls, value: list[str]) -> list[str]:
        return check_media_types(value)


# Drivers aiosite picks when a URL names none; `postgres://` is Heroku's spelling.
_DEFAULT_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def normalize_database_url(value: str) -> str:
    """The URL with an async driver; ValueError says what is wrong with it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    scheme, sep, rest = value.partition("://")
    if not sep:
        raise ValueError("not a database URL; expected e.g. sqlite+aiosqlite:///var/db.sqlite3")
    scheme = _DEFAULT_DRIVERS.get(scheme, scheme)
    value = f"{scheme}://{rest}"
    try:
        dialect = make_url(value).get_dialect()
    except NoSuchModuleError:
        raise ValueError(
            f"unknown database driver {scheme!r}; use sqlite+aiosqlite:// or postgresql+asyncpg://"
        ) from None
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is no number
        raise ValueError(f"cannot parse the database URL ({exc})") from None
    if not getattr(dialect, "is_async", False):
        raise ValueError(
            f"the driver {scheme!r} is not async; use sqlite+aiosqlite:// or postgresql+asyncpg://"
        )
    return value


def hide_password(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs and messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(unparsable URL)"


class Settings(BaseSettings):
    """All of a site's settings; hangs on the application under ``keys.SETTINGS``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    env: str = DEFAULT_ENV
    project_dir: Path = Path()
    apps: list[str] = Field(default_factory=list)
    site: SiteSettings = SiteSettings()
    server: ServerSettings = ServerSettings()
    debug: DebugSettings = DebugSettings()
    static: StaticSettings = StaticSettings()
    templates: TemplateSettings = TemplateSettings()
    logging: LoggingSettings = LoggingSettings()
    database: DatabaseSettings = DatabaseSettings()
    security: SecuritySettings = SecuritySettings()
    session: SessionSettings = SessionSettings()
    auth: AuthSettings = AuthSettings()
    uploads: UploadSettings = UploadSettings()

    @model_validator(mode="before")
    @classmethod
    def _debug_shorthand(cls, data: Any) -> Any:
        # `debug: true` in YAML is short for `debug: {enabled: true}`.
        if isinstance(data, dict) and isinstance(data.get("debug"), bool | str):
            value = data["debug"]
            if isinstance(value, str) and value.lower() not in {"true", "false", "1", "0"}:
                return data
            data = {**data, "debug": {"enabled": value}}
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment variables beat the YAML layers, which arrive as init kwargs.
        return env_settings, init_settings

    @property
    def is_local(self) -> bool:
        """Development or test: not a site the public reaches."""
        return self.env in LOCAL_ENVS

    @property
    def session_cookie_secure(self) -> bool:
        """Whether the session cookie is Secure: as set, else outside development/test."""
        secure = self.session.cookie_secure
        return not self.is_local if secure is None else secure

    @property
    def media_root(self) -> Path:
        return self.project_dir / self.uploads.media_root

    @property
    def templates_auto_reload(self) -> bool:
        auto = self.templates.auto_reload
        return self.debug.enabled if auto is None else auto


def secret_key_problems(settings: Settings) -> list[str]:
    """Everything wrong with the secret keys for a public site: the key itself (as
    ``secret_key_problem``), and development keys among the fallbacks, which anyone with
    the project's code could use to forge sessions."""
    problems = [problem] if (problem := secret_key_problem(settings)) is not None else []
    for index, old in enumerate(settings.security.secret_key_fallbacks):
        if old.get_secret_value().startswith(INSECURE_KEY_PREFIX):
            problems.append(
                f"security.secret_key_fallbacks: item {index} is a development key "
                f"({INSECURE_KEY_PREFIX}...), which anyone with the project's code can use "
                "to forge sessions: remove it"
            )
    return problems


def secret_key_problem(settings: Settings) -> str | None:
    """What is wrong with the secret key for a public site, or None."""
    key = settings.security.secret_key
    where = "set it in AIOSITE_SECURITY__SECRET_KEY"
    make = 'python -c "import secrets; print(secrets.token_urlsafe(50))"'
    if key is None or not key.get_secret_value().strip():
        return f"security.secret_key: missing; {where} (make one with {make})"
    value = key.get_secret_value()
    if value.startswith(INSECURE_KEY_PREFIX):
        return (
            f"security.secret_key: a development key ({INSECURE_KEY_PREFIX}...); "
            f"{where} to a new one (make one with {make})"
        )
    if len(value) < MIN_SECRET_KEY_LENGTH or len(set(value)) < 5:
        return (
            f"security.secret_key: too weak (under {MIN_SECRET_KEY_LENGTH} characters or "
            f"too few different ones); {where} to a new one (make one with {make})"
        )
    return None


def current_env(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get(ENV_VAR) or DEFAULT_ENV


def find_project_dir(start: Path | None = None) -> Path | None:
    """The nearest directory at or above ``start`` that holds ``config/default.yaml``."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_DIR / "default.yaml").is_file():
            return candidate
    return None


def load_settings(project_dir: Path | str, env: str | None = None) -> Settings:
    """Read the project's settings for ``env``; raise ImproperlyConfigured on any error."""
    project_dir = Path(project_dir).resolve()
    env = env or current_env()
    merged: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    for name in ("default.yaml", f"{env}.yaml"):
        path = project_dir / CONFIG_DIR / name
        layer = _read_yaml(path, project_dir)
        label = _relative(path, project_dir)
        for fact in FACTS:
            if fact in layer:
                raise ImproperlyConfigured(f"{label}: {fact}: not a setting ({FACTS[fact]})")
        for key_path in _key_paths(layer):
            origins[key_path] = label
        _deep_merge(merged, layer)
    _refuse_unknown_env_sections()
    merged["env"] = env
    merged["project_dir"] = project_dir
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        raise ImproperlyConfigured(_explain(exc, origins)) from None
    except SettingsError as exc:
        # pydantic-settings could not parse an environment variable (e.g. a list not
        # written as JSON); name the variable.
        raise ImproperlyConfigured(_explain_env_parse(exc)) from None
    # The chosen env and the project directory are facts, not overridable settings.
    return settings.model_copy(update={"env": env, "project_dir": project_dir})


def _refuse_unknown_env_sections() -> None:
    # pydantic-settings drops AIOSITE_SEVER__PORT silently (no field "sever"); a typo in
    # a section name deserves the same error as one in a key. Variables without "__"
    # may belong to other tools (AIOSITE_REQUIRE_SERVICES) and are left alone.
    sections = set(Settings.model_fields)
    for name in os.environ:
        if name.startswith(ENV_PREFIX) and "__" in name:
            section = name[len(ENV_PREFIX) :].partition("__")[0].lower()
            if section not in sections:
                raise ImproperlyConfigured(
                    f"environment variable {name}: {section}: unknown settings section "
                    f"(sections: {', '.join(sorted(sections - set(FACTS)))})"
                )


def _explain_env_parse(exc: SettingsError) -> str:
    message = str(exc)
    for name in sorted(os.environ):
        if name.startswith(ENV_PREFIX):
            field_name = name[len(ENV_PREFIX) :].lower()
            if f'"{field_name}"' in message:
                return (
                    f"environment variable {name}: {field_name}: cannot parse the value; "
                    'write lists and mappings as JSON, e.g. \'["a", "b"]\''
                )
    return f"environment variables: {message}"


def _read_yaml(path: Path, project_dir: Path) -> dict[str, Any]:
    label = _relative(path, project_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = ""
        if path.name != "default.yaml":
            hint = f" (create it, or set {ENV_VAR} to an environment that has a file)"
        raise ImproperlyConfigured(f"{label}: settings file not found{hint}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ImproperlyConfigured(yaml_error(label, exc)) from None
    except ValueError as exc:
        # PyYAML raises a bare ValueError for an impossible date (2026-13-01).
        raise ImproperlyConfigured(f"{label}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ImproperlyConfigured(
            f"{label}: expected a mapping of settings at the top level, got {type(data).__name__}"
        )
    return data


def yaml_error(label: str, exc: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: ``file:line:column: invalid YAML: problem``."""
    mark = getattr(exc, "problem_mark", None)
    where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{label}{where}: invalid YAML: {problem}"


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _key_paths(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in data.items():
        path = (*prefix, str(key))
        yield path
        if isinstance(value, Mapping):
            yield from _key_paths(value, path)


def _deep_merge(into: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        current = into.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            _deep_merge(current, value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _explain(exc: ValidationError, origins: Mapping[tuple[str, ...], str]) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        key = ".".join(loc) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        elif "input" in error and not isinstance(error["input"], dict | list):
            shown = error["input"]
            if loc[-1:] == ("url",) and isinstance(shown, str):
                shown = hide_password(shown)
            message = f"{message.removeprefix('Value error, ')} (got {shown!r})"
        lines.append(f"{_origin(loc, origins)}: {key}: {message}")
    return "\n".join(lines)


def _origin(loc: tuple[str, ...], origins: Mapping[tuple[str, ...], str]) -> str:
    # The most specific source wins: an environment variable, else the last YAML file
    # that set the key (or its nearest parent).
    for end in range(len(loc), 0, -1):
        env_name = ENV_PREFIX + "__".join(loc[:end]).upper()
        if env_name in os.environ:
            return f"environment variable {env_name}"
    for end in range(len(loc), 0, -1):
        if loc[:end] in origins:
            return origins[loc[:end]]
    return "settings"

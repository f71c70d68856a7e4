"""``Settings``: the site-wide sections, plus one section per battery and app that asks.

The class a site's settings are validated with is composed when they are loaded: the
base below with one field per declared section (``database`` from aiosite.db, ``auth``
from ``App("auth", settings=AuthSettings)``...). So ``settings.database`` works, pydantic
validates every section and pydantic-settings reads ``AIOSITE_DATABASE__URL`` as for any
field; code reads a section typed with ``settings.section(DatabaseSettings)``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import Field, create_model, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from aiosite.exceptions import ImproperlyConfigured
from aiosite.settings.sections import (
    DebugSettings,
    DeploySettings,
    LoggingSettings,
    RedisSettings,
    Section,
    SecuritySettings,
    ServerSettings,
    SiteSettings,
)

ENV_PREFIX = "AIOSITE_"
DEFAULT_ENV = "development"
# Environments run on a developer's machine or CI, where development keys, plain-HTTP
# cookies and debug pages are allowed; every other environment is treated as production.
LOCAL_ENVS = frozenset({"development", "test"})

S = TypeVar("S", bound=Section)


class Settings(BaseSettings):
    """A site's settings; hangs on the application under ``aiosite.SETTINGS``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )
    # The sections of batteries and apps this class was composed with, by model.
    section_names: ClassVar[Mapping[type[Section], str]] = {}

    env: str = DEFAULT_ENV
    project_dir: Path = Path()
    apps: list[str] = Field(default_factory=list)
    site: SiteSettings = SiteSettings()
    server: ServerSettings = ServerSettings()
    debug: DebugSettings = DebugSettings()
    logging: LoggingSettings = LoggingSettings()
    redis: RedisSettings = RedisSettings()
    security: SecuritySettings = SecuritySettings()
    deploy: DeploySettings = DeploySettings()

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

    @model_validator(mode="before")
    @classmethod
    def _every_section(cls, data: Any) -> Any:
        # A section no file names is validated as written empty, so that a key it
        # requires is reported by its dotted name (not from inside a default factory).
        if isinstance(data, dict) and cls.section_names:
            data = {**{name: {} for name in cls.section_names.values()}, **data}
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

    def section(self, model: type[S]) -> S:
        """The section declared with ``model``, e.g. ``settings.section(AuthSettings)``."""
        name = type(self).section_names.get(model)
        if name is None:
            raise ImproperlyConfigured(
                f"{model.__qualname__} is not a settings section of this site: it is declared "
                "by a battery or by App(settings=...) of an app listed in apps:, and the "
                "settings must be loaded with aiosite.load_settings"
            )
        value: S = getattr(self, name)
        return value

    def __reduce__(self) -> tuple[Any, ...]:
        # A composed class is made at run time, under the base class's name: pickle
        # (a worker process, a cache) rebuilds it from its sections instead.
        sections = tuple((name, model) for model, name in type(self).section_names.items())
        return (_restore, (sections, dict(self)))

    @property
    def is_local(self) -> bool:
        """Development or test: not a site the public reaches."""
        return self.env in LOCAL_ENVS

    def secure_cookie(self, setting: bool | None) -> bool:
        """A cookie's Secure flag from its setting (``session.cookie_secure``,
        ``security.csrf_cookie_secure``): as set; null is on outside development and
        test, where a site is reached over HTTPS."""
        return not self.is_local if setting is None else setting


def _restore(sections: tuple[tuple[str, type[Section]], ...], values: dict[str, Any]) -> Settings:
    return _compose(sections).model_construct(**values)


def settings_class(sections: Mapping[str, type[Section]]) -> type[Settings]:
    """``Settings`` with a field for each of ``sections`` (name: model)."""
    return _compose(tuple(sections.items()))


@functools.lru_cache(maxsize=16)
def _compose(sections: tuple[tuple[str, type[Section]], ...]) -> type[Settings]:
    if not sections:
        return Settings
    clash = [name for name, _ in sections if name in Settings.model_fields]
    if clash:
        raise ImproperlyConfigured(
            f"settings section {clash[0]!r} is the site's own; a battery or app must use "
            "another name"
        )
    fields: dict[str, Any] = {
        name: (model, Field(default_factory=model)) for name, model in sections
    }
    composed: type[Settings] = create_model(
        "Settings", __base__=Settings, __module__=Settings.__module__, **fields
    )
    composed.section_names = {model: name for name, model in sections}
    return composed

"""Loading settings: built-in defaults, then YAML layers, then environment variables.

Layers, later wins:

1. the defaults of each section's model;
2. ``config/default.yaml``;
3. ``config/<env>.yaml``, where env is ``AIOSITE_ENV`` (``development`` unless set);
4. environment variables ``AIOSITE_<SECTION>__<KEY>``, e.g. ``AIOSITE_SERVER__PORT=9000``.

Validation errors name the file (or environment variable) and the dotted key that
supplied the bad value, because pydantic alone only knows the merged result.
"""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from aiosite.exceptions import ImproperlyConfigured
from aiosite.settings.schema import DEFAULT_ENV, ENV_PREFIX, Settings, settings_class
from aiosite.settings.sections import Section

# libyaml's safe loader when PyYAML was built with it: ten times as fast as the Python one
# (20 ms of a site's startup for two files); same data, its own wording of syntax errors.
try:
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # pragma: no cover (PyYAML without libyaml)
    from yaml import SafeLoader  # type: ignore[assignment]

ENV_VAR = "AIOSITE_ENV"
CONFIG_DIR = "config"
# Settings fields that are facts of the run, not settings a file may set.
FACTS = {
    "env": f"the environment is chosen by {ENV_VAR}",
    "project_dir": "the project directory is where config/ is",
}
# The sections of the batteries and apps a site's site-wide settings (its apps:) bring;
# the second argument names the sections the files and environment set beyond those.
SectionProvider = Callable[[Settings, Collection[str]], Mapping[str, type[Section]]]
SettingsT = TypeVar("SettingsT", bound=Settings)


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


def read_settings(
    project_dir: Path | str, env: str | None = None, *, sections: SectionProvider | None = None
) -> Settings:
    """Read the project's settings for ``env``; raise ImproperlyConfigured on any error.

    ``sections`` gives the sections the site-wide settings bring (aiosite.load_settings
    passes the batteries' and the listed apps'); without it only the site-wide sections
    are known.
    """
    project_dir = Path(project_dir).resolve()
    env = env or current_env()
    merged, origins = _read_layers(project_dir, env)
    facts = {"env": env, "project_dir": project_dir}
    merged.update(facts)
    settings_cls = Settings
    if sections is not None:
        # The site-wide part first: it names the apps, whose sections come next.
        site_wide = {key: value for key, value in merged.items() if key in Settings.model_fields}
        core = _validate(Settings, site_wide, origins).model_copy(update=facts)
        named = {key for key in merged if key not in Settings.model_fields} | set(_env_sections())
        settings_cls = settings_class(sections(core, named))
    _refuse_unknown_env_sections(settings_cls)
    # The chosen env and the project directory are facts, not overridable settings.
    return _validate(settings_cls, merged, origins).model_copy(update=facts)


def revalidate(settings_cls: type[SettingsT], values: Mapping[str, Any]) -> SettingsT:
    """``values`` (the fields of other settings) as ``settings_cls``, without reading the
    environment again; ImproperlyConfigured with one line per error."""
    try:
        return settings_cls.model_validate(dict(values))
    except ValidationError as exc:
        raise ImproperlyConfigured(_explain(exc, {}, settings_cls)) from None


def _read_layers(project_dir: Path, env: str) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    merged: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    for name in ("default.yaml", f"{env}.yaml"):
        path = project_dir / CONFIG_DIR / name
        layer = _read_yaml(path, project_dir)
        label = project_relative(path, project_dir)
        for fact in FACTS:
            if fact in layer:
                raise ImproperlyConfigured(f"{label}: {fact}: not a setting ({FACTS[fact]})")
        for key_path in _key_paths(layer):
            origins[key_path] = label
        _deep_merge(merged, layer)
    return merged, origins


def _validate(
    settings_cls: type[SettingsT], data: dict[str, Any], origins: Mapping[tuple[str, ...], str]
) -> SettingsT:
    try:
        return settings_cls(**data)
    except ValidationError as exc:
        raise ImproperlyConfigured(_explain(exc, origins, settings_cls)) from None
    except SettingsError as exc:
        # pydantic-settings could not parse an environment variable (e.g. a list not
        # written as JSON); name the variable.
        raise ImproperlyConfigured(_explain_env_parse(exc)) from None


def _env_sections() -> dict[str, str]:
    """The sections the environment sets, each with a variable that names it. Variables
    without "__" may belong to other tools (AIOSITE_REQUIRE_SERVICES) and are left alone."""
    found: dict[str, str] = {}
    for name in os.environ:
        if name.startswith(ENV_PREFIX) and "__" in name:
            found.setdefault(name[len(ENV_PREFIX) :].partition("__")[0].lower(), name)
    return found


def _refuse_unknown_env_sections(settings_cls: type[Settings]) -> None:
    # pydantic-settings drops AIOSITE_SEVER__PORT silently (no field "sever"); a typo in
    # a section name deserves the same error as one in a key.
    sections = set(settings_cls.model_fields)
    for section, name in _env_sections().items():
        if section not in sections:
            known = sorted(sections - set(FACTS))
            close = difflib.get_close_matches(section, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ImproperlyConfigured(
                f"environment variable {name}: {section}: unknown settings section "
                f"({hint}sections: {', '.join(known)})"
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
    label = project_relative(path, project_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = ""
        if path.name != "default.yaml":
            hint = f" (create it, or set {ENV_VAR} to an environment that has a file)"
        raise ImproperlyConfigured(f"{label}: settings file not found{hint}") from None
    try:
        data = yaml.load(text, Loader=SafeLoader)
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


def project_relative(path: str | Path, project_dir: Path) -> str:
    """A file as messages name it: relative to the project directory when it is inside
    it (wherever the command runs from), else as given."""
    try:
        return str(Path(path).resolve().relative_to(project_dir.resolve()))
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


def _explain(
    exc: ValidationError,
    origins: Mapping[tuple[str, ...], str],
    model: type[BaseModel] | None = None,
) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        key = ".".join(loc) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown setting" + _suggestion(model, loc)
        elif error["type"] == "missing":
            variable = ENV_PREFIX + "__".join(loc).upper()
            message = f"missing; set it in config/default.yaml or as {variable}"
        elif "input" in error and not isinstance(error["input"], dict | list):
            shown = error["input"]
            if loc[-1:] == ("url",) and isinstance(shown, str):
                shown = hide_password(shown)
            message = f"{message.removeprefix('Value error, ')} (got {shown!r})"
        lines.append(f"{_origin(loc, origins)}: {key}: {message}")
    return "\n".join(lines)


def _suggestion(model: type[BaseModel] | None, loc: tuple[str, ...]) -> str:
    """``; did you mean 'server'?`` for a misspelled key, from the keys its section knows."""
    for part in loc[:-1]:
        field = model.model_fields.get(part) if model is not None else None
        model = _model_of(field.annotation) if field is not None else None
    if model is None or not loc:
        return ""
    known = [name for name in model.model_fields if name not in FACTS]
    close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The settings model a field holds (``Section`` or ``Section | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType):
        models = [model for arg in annotation.__args__ if (model := _model_of(arg))]
        return models[0] if len(models) == 1 else None
    return None


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


def hide_password(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs and messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(unparsable URL)"

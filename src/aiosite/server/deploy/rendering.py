"""Rendering the deployment files from their templates (``templates/*.j2``).

Each file format quotes differently; the filters below do it, so that a value with a
space or a percent sign in it cannot change what a line means. None of the formats can
hold a newline in a value: ``deploy_values`` refuses control characters, naming the
setting, and the filters refuse them again.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import jinja2

from aiosite.exceptions import ImproperlyConfigured
from aiosite.server.deploy.values import DeployValues, check_nginx_values

Kind = Literal["nginx", "systemd", "supervisor"]
KINDS: tuple[Kind, ...] = ("nginx", "systemd", "supervisor")
_TEMPLATES = {
    "nginx": "nginx.conf.j2",
    "systemd": "systemd.service.j2",
    "supervisor": "supervisor.conf.j2",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def render(kind: Kind, values: DeployValues) -> str:
    """The text of the ``kind`` file for ``values``."""
    if kind == "nginx":
        check_nginx_values(values)
    template = _environment().get_template(_TEMPLATES[kind])
    return template.render(v=_TemplateValues(values))


class _TemplateValues:
    """``values`` plus what only one format needs."""

    def __init__(self, values: DeployValues) -> None:
        self._values = values

    def __getattr__(self, name: str) -> object:
        return getattr(self._values, name)

    @property
    def supervisor_command(self) -> tuple[str, ...]:
        # supervisor reads no environment file: a shell reads it (as systemd's
        # EnvironmentFile= would), then becomes the server, keeping its signals.
        env_file = shlex.quote(str(self._values.env_file))
        script = f'if [ -e {env_file} ]; then set -a; . {env_file}; set +a; fi; exec "$0" "$@"'
        return ("/bin/sh", "-c", script, *self._values.command)


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        # Configuration files, not HTML: every value goes through a quoting filter of
        # its format instead.
        autoescape=False,  # noqa: S701
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Every value written, filtered or not (a comment's too): on one line.
        finalize=single_line,
    )
    environment.filters.update(
        seconds=nginx_seconds,
        size=nginx_size,
        systemd_word=systemd_word,
        systemd_text=systemd_text,
        systemd_command=systemd_command,
        supervisor_text=supervisor_text,
        supervisor_value=supervisor_value,
    )
    return environment


def nginx_seconds(value: float) -> str:
    """``10s``, or ``1500ms`` for a fraction."""
    return f"{int(value)}s" if float(value).is_integer() else f"{round(value * 1000)}ms"


def nginx_size(value: int) -> str:
    """``11m``, ``512k`` or bytes, as exact as the value."""
    for unit, factor in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if value % factor == 0:
            return f"{value // factor}{unit}"
    return str(value)


def single_line(value: object) -> str:
    """``value`` as text, refused when it holds a newline or another control character."""
    text = str(value)
    if _CONTROL.search(text):
        raise ImproperlyConfigured(
            f"{text!r} holds a newline or another control character, which no "
            "deployment file can hold in a value: remove it"
        )
    return text


def systemd_text(value: object) -> str:
    """A free-text value (``Description=``): specifiers (``%``) taken literally."""
    return single_line(value).replace("%", "%%")


def systemd_word(value: object) -> str:
    """One word of a unit setting: double-quoted when it holds a space or a quote;
    ``%`` specifiers and ``$`` variables taken literally."""
    text = systemd_text(value).replace("$", "$$")
    if any(char in text for char in " \t\"'\\;"):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def systemd_command(words: Iterable[str]) -> str:
    """``ExecStart=``'s command line: each word quoted as needed."""
    return " ".join(systemd_word(word) for word in words)


def supervisor_text(value: object) -> str:
    """A supervisor value: words joined as its shell-like parser splits them, ``%``
    doubled (supervisor expands ``%(name)s``)."""
    text = shlex.join(value) if isinstance(value, tuple) else str(value)
    return single_line(text).replace("%", "%%")


def supervisor_value(value: str) -> str:
    """A value inside ``environment=KEY="..."``."""
    return single_line(value).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")

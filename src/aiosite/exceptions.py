"""The exceptions aiosite raises for mistakes a user can make and fix.

Each carries a message written for that user; the CLI prints it as one line, the
HTTP layer turns request errors into 4xx pages. None of them needs a traceback.
"""

from __future__ import annotations


class AiositeError(Exception):
    """Base class of every error aiosite raises on purpose."""


class ImproperlyConfigured(AiositeError):
    """The settings, an app declaration or the project layout is wrong."""


class MissingDependency(ImproperlyConfigured):
    """A feature was asked for whose optional package is not installed."""

    def __init__(self, feature: str, package: str, extra: str | None = None) -> None:
        hint = f"pip install 'aiosite[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{feature} needs the package {package!r}: {hint}")


class DatabaseUnavailable(AiositeError):
    """A database connection could not be made (server down, refused, timed out)."""


class SessionStoreUnavailable(AiositeError):
    """The session store (Redis) could not be reached or did not answer in time; the
    client's error is the ``__cause__``. Raised by aiosite's session storage only, so a
    site's own Redis client errors are not taken for a sessions outage."""


class CommandError(AiositeError):
    """A CLI command cannot do what was asked; printed as one line, exit status 2."""


class NoReverseMatch(AiositeError):
    """A route name or its parameters do not match any route."""


def one_line(exc: object) -> str:
    """``Type: first line of the message``, for an error shown or logged in one line
    (drivers put the SQL and its parameters on the lines after the first)."""
    lines = str(exc).strip().splitlines()
    name = type(exc).__name__
    return f"{name}: {lines[0]}" if lines else name

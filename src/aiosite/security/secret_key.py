"""The secret-key policy: a site the public reaches needs a strong key of its own.

Checked before anything else when a site is built (``refuse_public_site_without_secret_key``)
and reported by ``aiosite check --deploy``.
"""

from __future__ import annotations

from aiosite.exceptions import ImproperlyConfigured
from aiosite.settings import INSECURE_KEY_PREFIX, Settings

MIN_SECRET_KEY_LENGTH = 32


def refuse_public_site_without_secret_key(settings: Settings) -> None:
    """A site outside development and test needs a secret key of its own, whatever
    uses it (cookie or Redis sessions, auth's session hashes)."""
    if settings.is_local:
        return
    refusal = f"; the {settings.env!r} environment refuses to start without a secret key of its own"
    problems = secret_key_problems(settings)
    if problems:
        raise ImproperlyConfigured("\n".join(problem + refusal for problem in problems))


def secret_key_problems(settings: Settings) -> list[str]:
    """Everything wrong with the secret keys for a public site: the key itself (as
    ``secret_key_problem``), and development keys among the fallbacks, which anyone with
    the project's code could use to forge sessions."""
    problems = [problem] if (problem := secret_key_problem(settings)) is not None else []
    return problems + fallback_key_problems(settings)


def fallback_key_problems(settings: Settings) -> list[str]:
    """The development keys among ``security.secret_key_fallbacks``."""
    return [
        f"security.secret_key_fallbacks: item {index} is a development key "
        f"({INSECURE_KEY_PREFIX}...), which anyone with the project's code can use "
        "to forge sessions: remove it"
        for index, old in enumerate(settings.security.secret_key_fallbacks)
        if old.get_secret_value().startswith(INSECURE_KEY_PREFIX)
    ]


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

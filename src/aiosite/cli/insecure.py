"""``aiosite serve`` refuses to start a site that would be insecure on the internet:
debug on, a missing or development secret key, no allowed host names (or "*").

The problems and their wording are those of ``aiosite check --deploy``; only the
errors of these settings stop the server (``--insecure`` lets it start anyway).
"""

from __future__ import annotations

from aiosite.checks import deploy_checks
from aiosite.exceptions import CommandError
from aiosite.settings import Settings

REFUSED = frozenset(
    {
        "debug.enabled",
        "security.secret_key",
        "security.secret_key_fallbacks",
        "security.allowed_hosts",
    }
)


def insecure_problems(settings: Settings) -> list[str]:
    """The deployment errors that make the server refuse to start."""
    found = []
    for problem in deploy_checks(settings):
        if problem.level != "error" or problem.key not in REFUSED:
            continue
        hosts = settings.security.allowed_hosts
        if problem.key == "security.allowed_hosts" and hosts and "*" not in hosts:
            # Only local names: unreachable by name, not insecure (a smoke test on this
            # machine serves that way); `check --deploy` says so.
            continue
        found.append(problem.message)
    return found


def refuse_insecure(settings: Settings) -> None:
    """Raise CommandError naming every problem and its fix, in one line."""
    problems = insecure_problems(settings)
    if problems:
        raise CommandError(
            f"refusing to serve the {settings.env!r} environment insecurely: "
            + " | ".join(problems)
            + "; fix this or pass --insecure"
        )
